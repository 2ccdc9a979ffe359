"""What the servers' answers mean to a session.

``backend_items`` routes each scanned chunk through the session's Ordering to the
client and acts on the frames the scanner watches: ReadyForQuery (transaction state,
links going back to the pool), ParameterStatus, ParseComplete and ErrorResponse (which
statements a server really holds, bookkeeping an error undoes), CopyIn/Both.  The
per-server facts go to the link's ServerState (pgtwist.conn.server), the session's
to its state (pgtwist.session.state).
"""

from __future__ import annotations

from time import perf_counter

from ..logs import logger
from ..wire import codes
from ..wire.errors import CONNECTION_FAILURE, INTERNAL_ERROR
from .ordering import COPY_SETTLED, SHADOW_PARAMETER_STATUS, UNDO
from .placement import SkipProbe

log = logger(__name__)


class Replies:
    """The backend side of one session (its relay hands it each link's stream)."""

    def __init__(self, session, ordering, links, mode, router, cluster, write, fatal,
                 close, retry=None) -> None:
        self.session = session
        self.ordering = ordering
        self.links = links
        self.mode = mode
        self.router = router
        self.cluster = cluster
        self.write = write      # to the client; replaced when TLS starts
        self.fatal = fatal      # fatal(sqlstate, message): tell the client, end the session
        self.close = close      # end the session
        self.retry = retry      # StandbyRetry: a standby's read-only refusal, retried
        self.txn_latency = None  # pgtwist.metrics.stats.Histogram when timing is on
        self._txn_t0 = 0.0

    def backend_items(self, link, items: list) -> None:
        if self.session.closed:
            return
        retry = self.retry
        if retry is not None and retry.records:
            for part in retry.split(link, items):
                self._relay(link, part)
        else:
            self._relay(link, items)

    def _relay(self, link, items: list) -> None:
        if self.session.closed:
            return
        try:
            out, events, hold = self.ordering.receive(link, items)
            if out:
                self.write(out[0] if len(out) == 1 else b"".join(out))
            if events:
                self._events(link, events)
            links = self.links
            if hold and not self.session.closed:
                links.hold(link)
            if links.holding:
                links.resume_held()
        except Exception:
            log.failure("unexpected error relaying server data")
            self.fatal(INTERNAL_ERROR, "internal error in pgtwist; the session was closed")

    def _events(self, link, events) -> None:
        s = self.session
        server = link.server
        primary = self.links.primary
        idle = False
        for code, body in events:
            if code == codes.READY_FOR_QUERY:
                if s.skipping_link is link:
                    s.skipping_link = None
                status = body[0]
                idle = status == codes.TXN_IDLE
                server.ready(status)
                if link is s.copy_link:
                    s.copy_link = None
                    server.copy_execute = False
                    _fire(server.copy_resolved())  # a Sync waiting for the Query's end
                if link is primary:
                    if self.txn_latency is not None and status != s.txn_status:
                        self._time_transaction(s.txn_status, status)
                    s.txn_status = status
                    self.router.after_ready(s, status, not self.ordering.busy(link))
                    if status == codes.TXN_IDLE:
                        s.failed_elsewhere = False
                elif status == codes.TXN_FAILED and link in self.ordering.failed \
                        and not self.ordering.inflight(link):
                    # The client saw this standby's error inside its transaction: the
                    # transaction is aborted for it, whichever node the next statement
                    # would reach (protocol-pitfalls: 25P02 until ROLLBACK).  Only the
                    # standby's last answer tells: a ROLLBACK the client pipelined behind
                    # the failed statement may already have ended the transaction (and its
                    # ReadyForQuery from the primary may have come first).
                    s.failed_elsewhere = True
            elif code == codes.PARAMETER_STATUS or code == SHADOW_PARAMETER_STATUS:
                name, value = server.parameter_status(body)
                if code == codes.PARAMETER_STATUS and link is primary:
                    s.parameters[name] = value  # what the client was told
                    self.mode.parameter_reported(name, value)
            elif code == codes.PARSE_COMPLETE:
                stmt = server.parse_complete()
                if stmt is not None and stmt is s.probe:
                    stmt.settled.callback(None)
            elif code == codes.ERROR_RESPONSE:
                self._error(link, body)
            elif code == codes.COPY_IN_RESPONSE or code == codes.COPY_BOTH_RESPONSE:
                s.copy_link = link
                _fire(server.copy_in())
            elif code == COPY_SETTLED:
                if server.copy_execute and link is not s.copy_link:
                    # Its COPY failed, or ended, without copy-in.
                    server.copy_execute = False
                    _fire(server.copy_resolved())
            elif code == UNDO:
                # An error ended the statements that filed these: what they did is void.
                server.undone(body)
                s.undo(body)
        if idle:
            self.mode.release_idle(link)

    def _time_transaction(self, before: int, status: int) -> None:
        """A transaction block runs from the sync point whose answer opened it (its
        BEGIN) to the ReadyForQuery that closes it."""
        if before == codes.TXN_IDLE:
            self._txn_t0 = self.ordering.done_t0 or perf_counter()
        elif status == codes.TXN_IDLE and self._txn_t0:
            self.txn_latency.observe(perf_counter() - self._txn_t0)
            self._txn_t0 = 0.0

    def _error(self, link, body: bytes) -> None:
        """An ErrorResponse: the server skips the rest of its batch part up to its Sync.

        Exactly the Parses of that part still unanswered never happen (Ordering.error_of
        counts them: the oldest the link awaits); a Parse sent after the part's Sync, in
        the next part of a batch pgtwist split, is still answered and stays awaited.  The
        skip probe is settled only when it is one of them (its part failed).
        """
        s = self.session
        server = link.server
        self.cluster.nodes[link.node_id].backend_error(body)  # pool_backend_stats
        seg, unanswered = self.ordering.error_of(link)
        if seg is not None and seg.forward and not seg.closed:
            # An extended-protocol message failed: the server now skips to Sync, and so
            # does pgtwist with the rest of the client's batch.
            s.skipping_link = link
            if not s.skip_until_sync:
                s.skip_until_sync = True
                s.skip_status = codes.TXN_IDLE if s.route_status == "I" else codes.TXN_FAILED
        for stmt in server.failed(body, unanswered):
            if isinstance(stmt, SkipProbe):
                if not stmt.settled.called:
                    stmt.settled.callback(None)
                continue
            stmt.nodes.discard(link.node_id)
            if not stmt.confirmed and s.statements.get(stmt.name) is stmt:
                # Its Parse failed: the name is what it was before (none, or 42P05's).
                if stmt.replaces is None:
                    del s.statements[stmt.name]
                else:
                    s.statements[stmt.name] = stmt.replaces
        self.mode.server_error(link, body)
        if link is self.links.primary and b"\0C25006\0" in body:
            # "read-only transaction" from the node we took for the primary: after a
            # failover the old writer comes back as a reader under the same name.
            self.cluster.suspect_primary(link.node_id)

    def link_lost(self, link, reason) -> None:
        link.server.copy_execute = False
        _fire(link.server.copy_resolved())  # a Sync waiting on this COPY is routed (and fails)
        links = self.links
        links.forget(link)
        if self.retry is not None:
            self.retry.forget(link)
        s = self.session
        if s.closed:
            return
        owed = any(seg.forward for seg in self.ordering.by_link.get(link, ()))
        released = self.ordering.drop_link(link)
        if released:
            self.write(b"".join(released))
        if link is links.primary or owed:
            if not link.server.fatal_seen:
                self.fatal(CONNECTION_FAILURE,
                           f"server closed the connection unexpectedly (node {link.node_id})")
            else:
                self.close()
            return
        log.warn("session {pid}: link to node {node} lost; reads go to the primary",
                 pid=s.pid, node=link.node_id)
        self.cluster.mark_down(link.node_id)
        if s.lb_node == link.node_id:
            s.lb_node = s.primary_id


def _fire(waiter) -> None:
    if waiter is not None:
        waiter.callback(None)
