"""A read a standby refuses as read-only (SQLSTATE 25006) runs again on the primary.

The catalog calls some functions stable that a standby cannot run: pg_current_xact_id(),
or a stable function calling a writing one.  Such a statement, sent to a standby as a
simple Query outside a transaction, is *offered* here.  Until its answer shows whether it
failed so, nothing of the answer reaches the client: Replies passes the standby's items
through :meth:`StandbyRetry.split`, which withholds them while the statement's segment
is undecided.  The first ErrorResponse decides: 25006 sends the same Query to the
primary, whose answer takes the segment's place in the client's order (the standby's is
dropped); any other error, the ReadyForQuery, or more than ``HOLD_BYTES`` withheld lets
the standby's answer through unchanged.  Each retry is counted (``SHOW pgtwist_pool``:
``standby_read_only_retries``).

A retry happens only when it cannot change what the client's other statements see: the
session holds a primary link with nothing in flight but earlier retries, no batch is
open and the session is still outside a transaction.  Otherwise the client gets the standby's error,
as before.  Extended-protocol batches are not retried (their statements and portals live
on the standby they were parsed on).
"""

from __future__ import annotations

from ..logs import logger
from ..wire import codes

log = logger(__name__)

# Bytes of one undecided answer withheld at most; past that it streams as usual.
HOLD_BYTES = 65536
_READ_ONLY = b"\0C25006\0"
COUNTER = "standby_read_only_retries"


class StandbyRetry:
    def __init__(self, session, ordering, outbox, links, pooling) -> None:
        self.session = session
        self.ordering = ordering
        self.out = outbox
        self.links = links
        self.counters = pooling.counters
        self.records: dict = {}   # standby Segment -> the Query frame to resend
        self._held: dict = {}     # link -> [items withheld, their bytes]
        self._resent: set = set()  # retries still in flight on the primary

    # -- sending side: Requests ------------------------------------------------------------------
    def offer(self, link, info, buf: bytes, start: int, end: int) -> None:
        """The simple Query frame ``buf[start:end]`` just went to standby ``link`` (its
        segment is the link's newest): retry it on the primary if the standby refuses it
        as read-only."""
        # Only a function call can make a read write (a standby refuses it): a read without
        # one is never offered (nor copied), so its answer streams through untouched.
        if (info.functions and info.is_read and not info.copy_to_stdout
                and not info.multi_statement and self.session.route_status == "I"):
            self.records[self.ordering.by_link[link][-1]] = buf[start:end]

    # -- receiving side: Replies -----------------------------------------------------------------
    def split(self, link, items: list):
        """Yield ``items`` in parts Ordering may receive now; withhold the answer of an
        offered segment until it is decided."""
        records = self.records
        held = self._held.pop(link, None)
        while items:
            q = self.ordering.by_link.get(link)
            seg = q[0] if q else None
            if seg not in records:
                if held is not None:  # its offer was withdrawn: what was withheld goes on
                    items = held[0] + items
                    held = None
                if not any(s in records for s in q or ()):
                    yield items
                    return
                end = _first_ready(items)  # an offered segment follows: stop at this one's end
                if end is None:
                    yield items
                    return
                yield items[:end + 1]
                items = items[end + 1:]
                continue
            parts, size = held if held is not None else ([], 0)
            held = None
            decided = None
            taken = 0
            for item in items:
                taken += 1
                parts.append(item)
                if type(item) is bytes:
                    size += len(item)
                    if size > HOLD_BYTES:
                        decided = "release"
                elif item[0] == codes.ERROR_RESPONSE:
                    decided = "retry" if _READ_ONLY in item[1] else "release"
                elif item[0] == codes.READY_FOR_QUERY:
                    decided = "release"
                if decided is not None:
                    break
            if decided is None:
                self._held[link] = (parts, size)
                return
            frame = records.pop(seg)
            if decided == "retry":
                self._resend(seg, frame)
            yield parts
            items = items[taken:]

    def _resend(self, seg, frame: bytes) -> None:
        """Send ``frame`` to the primary in ``seg``'s place, if nothing else is affected."""
        s = self.session
        primary = self.links.get(s.primary_id)
        ordering = self.ordering
        pending = ordering.by_link.get(primary) or ()
        self._resent.intersection_update(pending)
        if (primary is None or primary.closed or s.route_status != "I"
                or any(x not in self._resent for x in pending)
                or ordering.tail_open() is not None
                or s.skip_until_sync or s.copy_link is not None):
            log.debug("session {pid}: read-only refusal on node {node} not retried",
                      pid=s.pid, node=seg.link.node_id)
            return
        new = ordering.segment(primary)
        self.out.send(primary, frame)
        ordering.synced(new)
        ordering.redirect(seg, new)
        self._resent.add(new)
        self.out.flush()
        self.counters[COUNTER] += 1
        log.debug("session {pid}: node {node} refused a read as read-only; retried on the "
                  "primary", pid=s.pid, node=seg.link.node_id)

    def forget(self, link) -> None:
        """``link`` was lost: its withheld answer and offers go with it."""
        self._held.pop(link, None)
        for seg in [seg for seg in self.records if seg.link is link]:
            del self.records[seg]


def _first_ready(items: list) -> int | None:
    for i, item in enumerate(items):
        if type(item) is not bytes and item[0] == codes.READY_FOR_QUERY:
            return i
    return None
