"""What ``read_consistency: lsn`` knows: the WAL positions reads must see, and how far
each replica has replayed.

Commit LSNs come from the sessions (pgtwist.session.consistency pipelines a hidden
``pg_current_wal_insert_lsn()`` after a writing transaction's end, on the same primary link):
from the moment that statement is sent until the answer is in, the write is *pending*
and no replica can be proven fresh for the reads that must see it.  Replay LSNs come from
one persistent connection per standby (as ``sr_check_user``), polled every
``read_consistency_poll_interval`` while writes happened recently or reads wait, and at
once when a read finds no fresh replica.  A capture that never answers (its link lost,
its session gone) is settled by a poll of the primary's own position once the link is
idle: the commit is behind that position, so reads stay consistent (fail closed).
"""

from __future__ import annotations

from twisted.internet import defer
from zope.interface import implementer

from .conn.auth import Secret
from .interfaces import ILinkOwner
from .logs import logger
from .options import ConsistencyOptions
from .protocols.backend import connect_backend
from .routing.consistency import is_fresh, parse_lsn
from .timeouts import call_later
from .wire import codes
from .wire import messages as m

log = logger(__name__)

# The insert position: with synchronous_commit off the write position (pg_current_wal_lsn)
# can still be short of the commit record's end when the commit returns.
CAPTURE_QUERY = "SELECT pg_catalog.pg_current_wal_insert_lsn()"
REPLAY_QUERY = "SELECT pg_catalog.pg_last_wal_replay_lsn()"
SETTLE_SECONDS = 1.0     # a capture unanswered this long is settled by a primary poll
ACTIVE_SECONDS = 2.0     # poll replicas this long after the last write
RETRY_SECONDS = 1.0      # a probe connection that failed is retried after this long


class SessionLsn:
    """One session's part: a write not yet captured, its own writes' LSN and pending."""

    __slots__ = ("dirty", "lsn", "pending", "waited", "counted")

    def __init__(self) -> None:
        self.dirty = False     # wrote on the primary since its last capture
        self.lsn = 0           # highest commit LSN of this session's writes
        self.pending = 0       # its captures not answered yet
        self.waited = None     # the QueryInfo of the read that waited (one wait per frame)
        self.counted = None    # the read whose outcome is counted (until it is sent)


class Capture:
    """One write being learnt: settled once by its answer or by the sweep."""

    __slots__ = ("user", "rec", "busy", "deadline", "done")

    def __init__(self, user: str, rec: SessionLsn, busy, deadline: float) -> None:
        self.user = user
        self.rec = rec
        self.busy = busy           # busy() -> the capture's link may still answer it
        self.deadline = deadline
        self.done = False


class LsnTracker:
    def __init__(self, reactor, cluster, options: ConsistencyOptions, config=None) -> None:
        self.reactor = reactor
        self.cluster = cluster
        self.options = options
        self.config = config
        self.lsn = 0                            # global: every write's commit LSN
        self.pending = 0
        self.user_lsn: dict[str, int] = {}
        self.user_pending: dict[str, int] = {}
        self.counts = {"replica_fresh": 0, "waited_replica": 0, "primary": 0,
                       "captures": 0, "settled_by_poll": 0}
        self._open: set[Capture] = set()
        self._sweep = None
        self._tick = None
        self._last_write = -1e9
        self._waiters: list = []
        self._probes: dict[int, _Probe] = {}

    @property
    def on(self) -> bool:
        return self.options.on

    def configure(self, options: ConsistencyOptions, config=None) -> None:
        """A reload: new settings; what was learnt stays."""
        self.options = options
        if config is not None:
            self.config = config

    # -- writes ---------------------------------------------------------------------------
    @staticmethod
    def record(s) -> SessionLsn:
        rec = s.consistency
        if rec is None:
            rec = s.consistency = SessionLsn()
        return rec

    def begin(self, s, busy) -> Capture:
        """A writing transaction's end was sent: its write counts from now on."""
        rec = self.record(s)
        rec.dirty = False
        rec.pending += 1
        self.pending += 1
        self.user_pending[s.user] = self.user_pending.get(s.user, 0) + 1
        self.counts["captures"] += 1
        now = self.reactor.seconds()
        self._last_write = now
        cap = Capture(s.user, rec, busy, now + SETTLE_SECONDS)
        self._open.add(cap)
        if self._sweep is None:
            self._sweep = call_later(self.reactor, SETTLE_SECONDS, self._settle_stuck)
        return cap

    def end(self, cap: Capture, lsn: int | None) -> None:
        """The capture's answer (None: no position in it; the sweep settles it later)."""
        if cap.done or lsn is None:
            return
        cap.done = True
        self._open.discard(cap)
        rec = cap.rec
        rec.pending -= 1
        rec.lsn = max(rec.lsn, lsn)
        self.pending -= 1
        left = self.user_pending.get(cap.user, 1) - 1
        if left > 0:
            self.user_pending[cap.user] = left
        else:
            self.user_pending.pop(cap.user, None)
        if lsn > self.user_lsn.get(cap.user, 0):
            self.user_lsn[cap.user] = lsn
        if lsn > self.lsn:
            self.lsn = lsn
        self._keep_polling()
        self._check_waiters()

    def _settle_stuck(self) -> None:
        self._sweep = None
        now = self.reactor.seconds()
        for cap in list(self._open):
            if cap.deadline > now:
                continue
            if cap.busy():
                cap.deadline = now + SETTLE_SECONDS
                continue
            cap.deadline = now + SETTLE_SECONDS   # retried if the poll fails

            def settled(rows, cap=cap):
                lsn = parse_lsn(rows[0][0]) if rows and rows[0] else None
                if lsn is not None and not cap.done:
                    self.counts["settled_by_poll"] += 1
                    self.end(cap, lsn)

            primary = self.cluster.primary_id
            if primary is not None:
                self._probe(primary).query(CAPTURE_QUERY).addCallbacks(settled, lambda f: None)
        if self._open:
            self._sweep = call_later(self.reactor, SETTLE_SECONDS, self._settle_stuck)

    # -- reads ------------------------------------------------------------------------------
    def need(self, s) -> tuple[int, bool]:
        """(LSN a replica must have replayed for ``s``'s reads, a write still pending)."""
        scope = self.options.scope
        if scope == "global":
            return self.lsn, self.pending > 0
        if scope == "user":
            return self.user_lsn.get(s.user, 0), s.user in self.user_pending
        rec = s.consistency
        if rec is None:
            return 0, False
        return rec.lsn, rec.pending > 0

    def fresh_key(self, s):
        """What a cached decision for ``s``'s read depends on: None (no requirement) or
        (pending, which nodes are fresh)."""
        required, pending = self.need(s)
        if required <= 0 and not pending:
            return None
        if pending:
            return True
        return tuple(n.replay_lsn is not None and n.replay_lsn >= required
                     for n in self.cluster.nodes)

    def replay_lsns(self) -> tuple[int | None, ...]:
        return tuple(n.replay_lsn for n in self.cluster.nodes)

    def satisfied(self, s) -> bool:
        required, pending = self.need(s)
        if pending:
            return False
        lsns = self.replay_lsns()
        primary = self.cluster.primary_id
        return any(is_fresh(lsns, n.node_id, required) for n in self.cluster.nodes
                   if n.node_id != primary and n.status != "down")

    def wait_fresh(self, s) -> defer.Deferred:
        """Fires when a standby has replayed what ``s`` must see, or after the wait bound."""
        d = defer.Deferred()
        entry = [s, d, None]
        entry[2] = call_later(self.reactor, self.options.wait, self._give_up, entry)
        self._waiters.append(entry)
        self.poll()
        return d

    def _give_up(self, entry) -> None:
        if entry in self._waiters:
            self._waiters.remove(entry)
            entry[1].callback(False)

    def _check_waiters(self) -> None:
        if not self._waiters:
            return
        for entry in list(self._waiters):
            if self.satisfied(entry[0]):
                self._waiters.remove(entry)
                if entry[2] is not None and entry[2].active():
                    entry[2].cancel()
                entry[1].callback(True)

    # -- replay polling -------------------------------------------------------------------------
    def poll(self) -> None:
        """Ask every standby its replay position now (one query in flight per node)."""
        primary = self.cluster.primary_id
        for n in self.cluster.nodes:
            if n.node_id == primary or n.status == "down":
                continue
            probe = self._probe(n.node_id)
            if probe.busy:
                continue
            probe.query(REPLAY_QUERY).addCallbacks(self._replayed, self._poll_failed,
                                                   callbackArgs=(n,), errbackArgs=(n,))
        self._keep_polling()

    def _replayed(self, rows, node) -> None:
        # The latest reading, never a maximum: see Cluster._role_ok.  NULL (not replaying):
        # unknown, so not fresh.
        node.replay_lsn = parse_lsn(rows[0][0]) if rows and rows[0] else None
        self._check_waiters()

    def _poll_failed(self, failure, node) -> None:
        node.replay_lsn = None  # unknown: not fresh
        log.debug("replay LSN poll of node {node} failed: {why}", node=node.node_id,
                  why=failure.getErrorMessage())

    def _keep_polling(self) -> None:
        if self._tick is not None or not self.on:
            return
        if self._waiters or self.reactor.seconds() - self._last_write < ACTIVE_SECONDS:
            self._tick = call_later(self.reactor, self.options.poll_interval, self._ticked)

    def _ticked(self) -> None:
        self._tick = None
        self.poll()

    def _probe(self, node_id: int) -> _Probe:
        probe = self._probes.get(node_id)
        if probe is None:
            probe = self._probes[node_id] = _Probe(self, node_id)
        return probe

    def _secret(self) -> Secret | None:
        c = self.config
        if c.sr_check_password:
            return Secret(plaintext=c.sr_check_password)
        return self.cluster.secret_for(c.sr_check_user)

    def stop(self) -> None:
        for timer in (self._tick, self._sweep):
            if timer is not None and timer.active():
                timer.cancel()
        self._tick = self._sweep = None
        for probe in self._probes.values():
            probe.close()
        self._probes.clear()


@implementer(ILinkOwner)
class _Probe:
    """A persistent connection to one node running one small query at a time."""

    def __init__(self, tracker: LsnTracker, node_id: int) -> None:
        self.tracker = tracker
        self.node_id = node_id
        self.link = None
        self.connecting = None
        self.busy = False
        self.failed_at = -1e9
        self._rows = b""
        self._error = None
        self._done: defer.Deferred | None = None

    def query(self, sql: str) -> defer.Deferred:
        if self.busy:
            return defer.fail(RuntimeError("a query is in flight"))
        t = self.tracker
        if self.link is None or self.link.closed:
            if t.reactor.seconds() - self.failed_at < RETRY_SECONDS:
                return defer.fail(RuntimeError("probe connection failed recently"))
            self.busy = True
            c = t.config
            b = t.cluster.nodes[self.node_id].backend
            d = connect_backend(t.reactor, self.node_id, b.hostname, b.port, c.sr_check_user,
                                {"database": c.sr_check_database,
                                 "application_name": "pgtwist"},
                                t._secret(), c.connect_timeout / 1000.0,
                                t.cluster.tls_for(b))

            def connected(link):
                self.busy = False
                self.link = link
                link.attach(self)
                return self.query(sql)

            def failed(f):
                self.busy = False
                self.failed_at = t.reactor.seconds()
                return f

            return d.addCallbacks(connected, failed)
        self.busy = True
        self._rows, self._error = b"", None
        self._done = defer.Deferred()
        self.link.write(m.query(sql))
        return self._done

    def backend_items(self, link, items) -> None:
        for item in items:
            if type(item) is not tuple:
                self._rows += item
            elif item[0] == codes.ERROR_RESPONSE:
                self._error = item[1]
            elif item[0] == codes.READY_FOR_QUERY:
                d, self._done = self._done, None
                self.busy = False
                if d is None:
                    continue
                if self._error is not None:
                    d.errback(RuntimeError("the LSN query failed"))
                    continue
                try:
                    d.callback(m.query_rows(self._rows))
                except m.QueryError as exc:
                    d.errback(exc)

    def link_lost(self, link, reason) -> None:
        self.link = None
        self.busy = False
        self.failed_at = self.tracker.reactor.seconds()
        d, self._done = self._done, None
        if d is not None:
            d.errback(RuntimeError("the probe connection closed"))

    def close(self) -> None:
        if self.link is not None:
            self.link.terminate()
            self.link = None
