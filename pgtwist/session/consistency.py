"""A session's part in ``read_consistency: lsn`` (pgtwist.lsn holds the shared state).

Writes: when a sync point that ends a writing transaction goes to the primary (a COMMIT,
an autocommit write, the Sync after one), pgtwist pipelines ``pg_current_wal_insert_lsn()``
behind it on the same link as a hidden shadow segment.  Its answer is at or past the
commit's LSN and reaches nobody but pgtwist; the commit is not delayed (its answer is
relayed as it comes), and the shadow keeps the link busy, so transaction pooling gives it
back only once the capture is answered.

Reads: a read that the ``read_consistency`` policy keeps on the primary may first wait
(``read_consistency_wait``) for a replica to catch up; each outcome is counted.
"""

from __future__ import annotations

from ..lsn import CAPTURE_QUERY
from ..routing.consistency import NAME, parse_lsn
from ..routing.values import Target
from ..sql.info import EITHER
from ..wire import messages as m

_CAPTURE = m.query(CAPTURE_QUERY)


def after_sync(s, link, out, ordering, tracker) -> None:
    """A sync point was just queued for ``link``: capture the commit LSN if it ends a
    writing transaction on the primary."""
    rec = s.consistency
    if (rec is None or not rec.dirty or s.route_status != "I"
            or link.node_id != s.primary_id or link.closed):
        return

    def busy() -> bool:
        return not link.closed and not s.closed and ordering.busy(link)

    cap = tracker.begin(s, busy)
    if link.server.copy_execute or s.copy_link is not None:
        # A COPY FROM STDIN still running: a capture behind it would wait in its copy-in,
        # and the client may send nothing after its end.  Its rows count from now on
        # (reads stay on the primary) until, once the link is idle, a poll of the
        # primary's position settles it (LsnTracker's sweep).
        return
    captured: list[bytes] = []

    def done() -> None:
        try:
            lsn = _first_lsn(captured)
        except m.QueryError:
            lsn = None  # settled by a primary poll once the link is idle
        tracker.end(cap, lsn)

    out.shadow(link, _CAPTURE, on_done=done, capture=captured)


def _first_lsn(captured: list[bytes]) -> int | None:
    rows = m.query_rows(b"".join(captured))
    return parse_lsn(rows[0][0]) if rows and rows[0] else None


def read_decided(place, info, decision):
    """``decision`` for a read, or WAIT while a stale read waits for a replica."""
    if info.route != EITHER:
        return decision
    tracker = place.router.consistency
    s = place.session
    if decision.policy != NAME and tracker.fresh_key(s) is None:
        # Nothing this read must see (the common case): nothing to wait for or count.
        rec = s.consistency
        if rec is not None:
            rec.waited = None
        return decision
    rec = tracker.record(s)
    if rec.counted is info:
        return decision   # decided again after waiting for a link: counted already
    waited = rec.waited is info
    if decision.policy == NAME and decision.target is Target.PRIMARY:
        tracker.poll()   # on demand: the next reads see a fresher position
        if tracker.options.wait > 0 and not waited:
            tracker.record(s).waited = info
            return place.wait(tracker.wait_fresh(s))
        rec.waited = None
        rec.counted = info
        tracker.counts["primary"] += 1
        return decision
    rec.waited = None
    target = decision.target
    if target is Target.NODE:
        to_standby = decision.node != s.primary_id
    else:
        to_standby = target is Target.EITHER and s.lb_node != s.primary_id
    if to_standby:
        rec.counted = info
        if waited:
            tracker.counts["waited_replica"] += 1
        elif tracker.need(s)[0] > 0:
            tracker.counts["replica_fresh"] += 1
    return decision
