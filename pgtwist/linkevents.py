"""What the servers' answers mean to a session (the relay's backend side).

``backend_items`` routes each scanned chunk through the session's Ordering to the
client and acts on the frames the scanner watches: ReadyForQuery (transaction state,
links going back to the pool), ParameterStatus, ParseComplete and ErrorResponse (which
statements a server really holds, bookkeeping an error undoes), CopyIn/Both.  A
mixin of Relay, apart from relay.py, which owns the client side and the sending.
"""

from __future__ import annotations

from .conn.ordering import SHADOW_PARAMETER_STATUS
from .handlers import _FATAL_MARKERS
from .logs import logger
from .protocols.backend import BackendLink
from .wire import codes
from .wire import messages as m
from .wire.errors import CONNECTION_FAILURE, INTERNAL_ERROR

log = logger(__name__)


class LinkEvents:
    """Mixin for Relay: frames from the backend links."""

    def backend_items(self, link: BackendLink, items: list) -> None:
        if self.closed:
            return
        try:
            out, events, hold = self.ordering.receive(link, items)
            if out:
                self.write(out[0] if len(out) == 1 else b"".join(out))
            if events:
                self._events(link, events)
            if hold and not self.closed:
                link.transport.pauseProducing()
                link.held = True
                self._holding = True
            if self._holding:
                self._resume_held()
        except Exception:
            log.failure("unexpected error relaying server data")
            self.fatal(INTERNAL_ERROR, "internal error in pgtwist; the session was closed")

    def _events(self, link: BackendLink, events) -> None:
        s = self.session
        idle = False
        for code, body in events:
            if code == codes.READY_FOR_QUERY:
                if link.inflight:
                    link.inflight -= 1
                if self._skipping_link is link:
                    self._skipping_link = None
                status = body[0]
                idle = status == codes.TXN_IDLE
                link.ready_seen += 1
                if link.undo:
                    link.undo = [u for u in link.undo if u[0] > link.ready_seen]
                link.txn_status = status
                if link is self.copy_link:
                    self.copy_link = None
                    link.copy_execute = False
                elif link.copy_execute and link.ready_seen > link.copy_from:
                    link.copy_execute = False  # its COPY ended without copy-in
                    link.copy_resolved()
                if link is self.primary_link:
                    s.txn_status = status
                    self.router.after_ready(s, status, not self.ordering.busy(link))
                    if status == codes.TXN_IDLE:
                        s.failed_elsewhere = False
                elif status == codes.TXN_FAILED and link in self.ordering.failed \
                        and not link.inflight:
                    # The client saw this standby's error inside its transaction: the
                    # transaction is aborted for it, whichever node the next statement
                    # would reach (protocol-pitfalls: 25P02 until ROLLBACK).  Only the
                    # standby's last answer tells: a ROLLBACK the client pipelined behind
                    # the failed statement may already have ended the transaction (and its
                    # ReadyForQuery from the primary may have come first).
                    s.failed_elsewhere = True
            elif code == codes.PARAMETER_STATUS or code == SHADOW_PARAMETER_STATUS:
                name, value = m.decode_parameter_status(body)
                link.parameters[name] = value
                if code == codes.PARAMETER_STATUS and link is self.primary_link:
                    s.parameters[name] = value  # what the client was told
                    if self.txn_pooling:
                        # set_config() and the like change reported settings without a
                        # SET statement; the report is kept to be re-applied like one.
                        self.router.remember_parameter(s, name, value)
            elif code == codes.PARSE_COMPLETE:
                if link.pending_parses:
                    stmt = link.pending_parses.popleft()
                    stmt.confirmed = True
                    if stmt is self._probe:
                        stmt.settled.callback(None)
            elif code == codes.ERROR_RESPONSE:
                seg = self.ordering.by_link.get(link)
                if seg and seg[0].forward and not seg[0].closed:
                    # An extended-protocol message failed: the server now skips to Sync,
                    # and so does pgtwist with the rest of the client's batch.
                    self._skipping_link = link
                    if not self.skip_until_sync:
                        self.skip_until_sync = True
                        self.skip_status = codes.TXN_IDLE if s.route_status == "I" \
                            else codes.TXN_FAILED
                probe = self._probe
                if probe is not None and probe in link.pending_parses:
                    if probe.segment.error:
                        link.pending_parses.remove(probe)
                        probe.settled.callback(None)
                    else:
                        # An error of an earlier, synced part: the probe's part is not
                        # skipped for it, and its ParseComplete will come.
                        link.pending_parses.remove(probe)
                if link.pending_parses:
                    # The server skips to Sync: the Parses not yet answered never happened.
                    for stmt in link.pending_parses:
                        stmt.nodes.discard(link.node_id)
                        link.forget(stmt)
                        if not stmt.confirmed and s.statements.get(stmt.name) is stmt:
                            del s.statements[stmt.name]  # its Parse failed: no such name
                    link.pending_parses.clear()
                if probe is not None and not probe.settled.called and not probe.segment.error:
                    link.pending_parses.append(probe)
                if link.undo:
                    self._undo(link)
                if link.copy_execute and link is not self.copy_link \
                        and link.ready_seen >= link.copy_from:
                    # The COPY failed (or a statement before it did): no copy-in.
                    link.copy_execute = False
                    link.copy_resolved()
                if body.startswith(_FATAL_MARKERS) or b"\0SFATAL\0" in body \
                        or b"\0SPANIC\0" in body:
                    link.fatal_seen = True
                if link is self.primary_link and b"\0C25006\0" in body:
                    # "read-only transaction" from the node we took for the primary: after a
                    # failover the old writer comes back as a reader under the same name.
                    self.proxy.cluster.suspect_primary(link.node_id)
            elif code == codes.COPY_IN_RESPONSE or code == codes.COPY_BOTH_RESPONSE:
                self.copy_link = link
                link.copy_resolved()
        if idle and self.txn_pooling:
            self._tx_release_idle(link)

    def _file_undo(self, link: BackendLink, synced: bool) -> None:
        """After a statement went to ``link``: a SET it made outside an explicit
        transaction is undone if an error ends its implicit transaction."""
        s = self.session
        snapshot, s.implicit_undo = s.implicit_undo, None
        target = link.ready_seen + link.inflight + (0 if synced else 1)
        link.undo.append((target, lambda: s.replay.__setitem__(slice(None), snapshot)))

    @staticmethod
    def _undo(link: BackendLink) -> None:
        """An error before the next ReadyForQuery: what its statements recorded is void."""
        due = link.ready_seen + 1
        for target, undo in reversed(link.undo):  # the oldest snapshot is restored last
            if target == due:
                undo()
        link.undo = [u for u in link.undo if u[0] != due]

    def _resume_held(self) -> None:
        """Resume links paused for holding too much, once their turn has come."""
        fifo = self.ordering.fifo
        head = fifo[0].link if fifo else None
        still = False
        for other in self.links.values():
            if other.held and not other.closed:
                if other is head or head is None:
                    other.held = False
                    if not self.links_paused:
                        other.transport.resumeProducing()
                else:
                    still = True
        self._holding = still

    def link_lost(self, link: BackendLink, reason) -> None:
        link.copy_execute = False
        link.copy_resolved()  # a Sync waiting on this link's COPY is routed (and fails)
        if self.links.get(link.node_id) is link:
            del self.links[link.node_id]
            # Its slot under backend_max_connections is free again: close() releases
            # only the links still in self.links.
            link.owner = None
            self.proxy.pooling.release(link, clean=False)
        if self.closed:
            return
        owed = any(seg.forward for seg in self.ordering.by_link.get(link, ()))
        released = self.ordering.drop_link(link)
        if released:
            self.write(b"".join(released))
        if link is self.primary_link or owed:
            if not link.fatal_seen:
                self._send_and_close(m.error_response(
                    CONNECTION_FAILURE,
                    f"server closed the connection unexpectedly (node {link.node_id})", "FATAL",
                ))
            else:
                self.close()
            return
        log.warn("session {pid}: link to node {node} lost; reads go to the primary",
                 pid=self.session.pid, node=link.node_id)
        self.proxy.cluster.mark_down(link.node_id)
        if self.session.lb_node == link.node_id:
            self.session.lb_node = self.session.primary_id
