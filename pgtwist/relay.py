"""One client's session: between its connection and its backend links.

The relay forwards the client's raw frames to the link(s) the routing chain
chooses and streams the servers' bytes back unchanged; it reads only the
frames that change its state (ReadyForQuery, ErrorResponse, ParameterStatus,
Copy*; see linkevents.py).  Per-message routing is in handlers.py, and what
transaction pooling changes in txhandlers.py.  A session holds links to several backends, keyed by node id: the
primary's is opened at startup, the load-balance node's when first needed.
:class:`~pgtwist.conn.ordering.Ordering` keeps responses in the client's order.

Client frames are processed from a backlog.  A frame whose routing needs
something not yet at hand (a catalog fact, a link still connecting, a
standby's COMMIT to finish first) makes the relay pause the client and retry
that same frame once the wait is over.
"""

from __future__ import annotations

from collections import deque

from twisted.internet import defer
from twisted.python.failure import Failure

from .auth import SessionAuth
from .conn.backend import LoginFailed
from .conn.frontend import (
    CancelRequested,
    Frames,
    FrontendMachine,
    FrontendState,
    GSSENCRequested,
    SSLRequested,
    StartupReceived,
)
from .conn.ordering import Ordering
from .flow import _LinksProducer, _Valve, _ValveHandle
from .handlers import _WAIT, ClientMessages
from .linkevents import LinkEvents
from .logs import logger
from .pool import PoolExhausted
from .protocols.backend import BackendLink
from .protocols.fastwrite import make_writer
from .session import Session
from .startup import SessionStartup
from .timeouts import call_later
from .txhandlers import TxnMessages
from .wire import codes
from .wire import messages as m
from .wire.errors import (
    ADMIN_SHUTDOWN,
    CONNECTION_FAILURE,
    INTERNAL_ERROR,
    ProtocolViolation,
)

IDLE_SESSION_TIMEOUT = "57P05"


class CatalogUnavailable(Exception):
    pass


class LinkUnavailable(Exception):
    def __init__(self, error: bytes):
        super().__init__("no backend link")
        self.error = error


# RESET ALL leaves the role and the session user alone (GUC_NO_RESET_ALL).  A SET SESSION
# AUTHORIZATION the session sent itself pins it; one run inside a function is undone here.
_RESET_ALL = m.query("SET SESSION AUTHORIZATION DEFAULT; RESET ROLE; RESET ALL")

log = logger(__name__)


class Relay(SessionStartup, LinkEvents, TxnMessages, ClientMessages):
    """Application logic for one client connection."""

    def __init__(self, proxy, transport):
        self.proxy = proxy
        self.config = proxy.config
        self.router = proxy.router
        self.transport = transport
        self.write = make_writer(transport)
        self.machine = FrontendMachine(self.config.max_message_length)
        self.links: dict[int, BackendLink] = {}
        self.opening: dict[int, defer.Deferred] = {}
        self.primary_link: BackendLink | None = None
        self.ordering = Ordering()
        self.backlog: deque = deque()
        self.waiting = False
        self.copy_link: BackendLink | None = None
        self.closed = False
        self._out: dict[BackendLink, list] = {}
        self._run: list | None = None   # [link, buf, start, end]: contiguous frames to one link
        self._draining = False
        self._holding = False           # some link is paused until its responses' turn
        self._looked_up = None          # (info, facts) fetched for the frame being retried
        self.auth: SessionAuth | None = None
        self.backend_secret = None      # what backend logins use once the client is in
        self.poolable = True            # False when the servers checked the client's password
        self.skip_until_sync = False    # extended protocol after a pgtwist-made error
        self.skip_status = codes.TXN_FAILED  # the ReadyForQuery status that skip ends with
        # Transaction pooling: links go back to the pool between transactions unless a
        # session feature pins them (pgtwist.txhandlers).
        self.txn_pooling = proxy.pooling.mode == "transaction"
        self.pinned: str | None = None
        if self.txn_pooling:
            self._handlers = self._tx_handlers
        self._shadow_sent: tuple | None = None
        self.link_errors: dict[int, bytes] = {}  # node -> error for the frame that waited
        peer = transport.getPeer()
        self.session: Session = proxy.new_session(
            self, f"{getattr(peer, 'host', 'local')}:{getattr(peer, 'port', '')}"
        )
        self.session.client_ip = getattr(peer, "host", None)
        # Client reading pauses when any backend link's send buffer is full,
        # or while the relay waits before routing a frame...
        self.client_valve = _Valve(transport)
        # ...and backend reading pauses while the client's send buffer is full.
        self.links_paused = False
        transport.registerProducer(_LinksProducer(self), True)
        # authentication_timeout 0 disables it (as in Pgpool-II): no timer at all.
        self.auth_timer = call_later(
            proxy.reactor, self.config.authentication_timeout, self._auth_timeout
        )
        self.idle_limit = float(self.config.params.get("client_idle_limit", 0))
        self.idle_timer = (proxy.reactor.callLater(self.idle_limit, self._idle_timeout)
                           if self.idle_limit > 0 else None)


    # -- client side -----------------------------------------------------------------
    def client_data(self, data: bytes) -> None:
        """Feed client bytes; ``b""`` resumes reading what the machine kept unread."""
        if self.closed:
            return
        if self.idle_timer is not None:
            self.idle_timer.reset(self.idle_limit)
        machine = self.machine
        try:
            # A loop, not recursion: each answer (to an SSLRequest, a StartupMessage, a
            # password message) decides how the machine reads the bytes that follow.
            while True:
                if machine.state is FrontendState.AUTHENTICATING:
                    machine.expecting = self.auth.expecting if self.auth is not None else None
                events = machine.receive(data)
                data = b""
                for event in events:
                    if type(event) is Frames:
                        self.backlog.append([event.buf, event.frames, 0])
                        if not self.waiting:
                            self._drain()
                        else:
                            # More input while a frame waits: stop reading until it is routed.
                            self.client_valve.hold(self)
                    elif type(event) is StartupReceived:
                        self._startup(event)
                    elif type(event) is SSLRequested:
                        self._ssl_request()
                    elif type(event) is GSSENCRequested:
                        self.write(b"N")  # GSSAPI encryption is not offered
                        if machine.leftover:
                            raise ProtocolViolation(
                                "received unencrypted data after GSSAPI encryption request")
                    elif type(event) is CancelRequested:
                        self.proxy.cancel(event.pid, event.secret)
                        self.transport.loseConnection()
                    elif isinstance(event, ProtocolViolation):
                        raise event  # after the whole frames that came before it
                    if self.closed:
                        return
                if not (events and machine.leftover):
                    break
            # Unread input held while authenticating stays bounded: stop reading.
            valve = self.client_valve
            if machine.leftover and machine.stalled:
                valve.hold(machine)
            elif machine in valve.holders:
                valve.release(machine)
        except ProtocolViolation as exc:
            log.info("client {addr}: protocol violation: {msg}",
                     addr=self.session.client_address, msg=exc.message)
            self.fatal(exc.sqlstate, exc.message)
        except Exception:
            log.failure("unexpected error handling client data")
            self.fatal(INTERNAL_ERROR, "internal error in pgtwist; the session was closed")

    def _ssl_request(self) -> None:
        """Answer one SSLRequest (the machine refuses a second, as PostgreSQL does)."""
        tls = self.proxy.server_tls
        if tls is None or self.session.ssl:
            self.write(b"N")
            if self.machine.leftover:
                # PostgreSQL refuses bytes sent ahead of its answer, even after 'N'.
                raise ProtocolViolation("received unencrypted data after SSL request")
            return
        if self.machine.leftover:
            raise ProtocolViolation("received unencrypted data after SSL request")
        self.write(b"S")
        self.transport.startTLS(tls)
        self.write = self.transport.write  # TLS: no direct socket writes
        self.session.ssl = True
        self.machine.gss_done = True  # no GSSENCRequest inside TLS

    def _drain(self) -> None:
        """Route queued client frames until done or a frame must wait."""
        backlog = self.backlog
        handlers = self._handlers
        self._draining = True
        try:
            while backlog and not self.closed:
                entry = backlog[0]
                buf, frames, i = entry
                n = len(frames)
                while i < n:
                    code, start, end = frames[i]
                    try:
                        answer = handlers[code](self, code, buf, start, end)
                    except LinkUnavailable as exc:
                        self._unavailable(code, exc.error)
                        answer = None
                    if answer is _WAIT:
                        if self.waiting:
                            entry[2] = i
                            self._flush_out()
                            return
                        continue  # the wait ended at once: route the same frame again
                    if self.closed:
                        return
                    i += 1
                backlog.popleft()
            self._flush_out()
        finally:
            self._draining = False

    def _wait(self, d: defer.Deferred):
        """Route nothing more until ``d`` fires, then resume routing.  (The client is
        only paused if it sends more meanwhile: most waits, for a pooled link, end
        before it does, and pausing costs two epoll calls.)"""
        self.waiting = True

        def resume(result):
            self.waiting = False
            self.client_valve.release(self)
            if isinstance(result, Failure):
                log.failure("error while a client frame waited", result)
                self.fatal(INTERNAL_ERROR, "internal error in pgtwist; the session was closed")
            elif self._draining:
                return  # fired synchronously: _drain retries the frame itself
            elif not self.closed:
                try:
                    self._drain()
                except ProtocolViolation as exc:
                    self.fatal(exc.sqlstate, exc.message)
                except Exception:
                    log.failure("unexpected error routing client data")
                    self.fatal(INTERNAL_ERROR, "internal error in pgtwist; the session was closed")

        d.addBoth(resume)
        return _WAIT

    # -- sending -------------------------------------------------------------------------
    def _send(self, link: BackendLink, data: bytes) -> None:
        if self._run is not None:
            self._end_run()
        out = self._out.get(link)
        if out is None:
            self._out[link] = [data]
        else:
            out.append(data)

    def _send_frame(self, link: BackendLink, buf: bytes, start: int, end: int) -> None:
        """Queue ``buf[start:end]`` for ``link``; neighbouring frames merge without copying."""
        run = self._run
        if run is not None:
            if run[0] is link and run[1] is buf and run[3] == start:
                run[3] = end
                return
            self._end_run()
        self._run = [link, buf, start, end]

    def _end_run(self) -> None:
        link, buf, start, end = self._run
        self._run = None
        data = buf if (start == 0 and end == len(buf)) else buf[start:end]
        out = self._out.get(link)
        if out is None:
            self._out[link] = [data]
        else:
            out.append(data)

    def _flush_out(self) -> None:
        if self._run is not None:
            self._end_run()
        if not self._out:
            return
        outs, self._out = self._out, {}
        for link, parts in outs.items():
            if not link.closed:
                link.write(parts[0] if len(parts) == 1 else b"".join(parts))

    def _forward(self, link: BackendLink, buf: bytes, start: int, end: int,
                 sync: bool = False) -> None:
        """Send the client's frame ``buf[start:end]`` as part of the visible response stream."""
        ordering = self.ordering
        tail = ordering.tail_open()
        if tail is not None and tail.link is not link:
            self._close_segment(tail)
        seg = ordering.segment(link)
        self._send_frame(link, buf, start, end)
        if sync:
            ordering.synced(seg)
            link.inflight += 1

    def _close_segment(self, seg) -> None:
        """End a batch pgtwist is splitting: our own Sync, whose ReadyForQuery is hidden."""
        self._send(seg.link, m.SYNC)
        self.ordering.synced(seg, own=True)
        seg.link.inflight += 1

    def _shadow(self, link: BackendLink, frames: bytes, syncs: int = 1, on_done=None,
                capture: list | None = None) -> None:
        """Send messages whose responses the client must not see (BOTH copies, replays);
        ``capture`` collects those responses' bytes for pgtwist itself."""
        seg = self.ordering.open_segment(link)
        if seg is not None:
            self._close_segment(seg)
        shadow = self.ordering.segment(link, forward=False)
        shadow.pending = syncs
        shadow.closed = True
        shadow.on_done = on_done
        shadow.capture = capture
        link.inflight += syncs
        self._send(link, frames)

    def _local(self, data: bytes, status: int | None = None, ready: bool = True) -> None:
        """Answer from pgtwist itself, in order with backend responses."""
        tail = self.ordering.tail_open()
        if tail is not None:
            self._close_segment(tail)
        self._flush_out()
        if ready:
            if status is None:
                s = self.session
                status = codes.TXN_FAILED if s.failed_elsewhere else s.txn_status
            data += m.ready_for_query(status)
        out = self.ordering.local(data)
        if out:
            self.write(b"".join(out))

    # -- links ----------------------------------------------------------------------------
    def _link(self, node_id: int):
        """The ready link to ``node_id``, or a Deferred while it opens.

        Raises LinkUnavailable when the last attempt to get one failed (pool exhausted,
        server down): the frame that waited for it gets that error instead of waiting again.
        """
        if self.link_errors:
            error = self.link_errors.pop(node_id, None)
            if error is not None:
                raise LinkUnavailable(error)
        link = self.links.get(node_id)
        if link is not None and not link.closed:
            return link
        d = self.opening.get(node_id)
        if d is None:
            node = self.proxy.cluster.nodes[node_id]
            d = self.open_link(node, self.backend_secret)
            self.opening[node_id] = d
            d.addCallback(self._link_opened, node_id)
            d.addErrback(self._link_failed, node_id)
            if node_id not in self.opening:  # a pooled link, handed over at once
                link = self.links.get(node_id)
                if link is not None and not link.closed:
                    return link
        waiter = defer.Deferred()
        d.addBoth(lambda r: (waiter.callback(None), r)[1])
        return waiter

    def _link_opened(self, link, node_id: int):
        self.opening.pop(node_id, None)
        if link is None:
            return None
        s = self.session
        # Put the session's state on this link: its SETs (after a RESET ALL if the link
        # carries another session's), then the open transaction.
        want = tuple(s.replay)
        replay = []
        if link.last_session is not None and link.last_session is not s:
            # Another session ran statements here since the last reset.  What they
            # changed is not all visible to pgtwist (DO blocks, functions with SET
            # clauses, set_config inside functions): put everything back first.
            replay.append(_RESET_ALL)
            replay.extend(m.query(sql) for sql in want)
        elif link.state != want:
            if link.state:
                replay.append(_RESET_ALL)
            replay.extend(m.query(sql) for sql in want)
        link.state = want
        link.state_owner = s
        link.last_session = s
        if self.txn_pooling and node_id == s.primary_id:
            self.primary_link = link
            self.ordering.primary = link
        if s.txn_begin_for_standby:
            replay.append(m.query(s.txn_begin_for_standby))
        if replay:
            self._shadow(link, b"".join(replay), syncs=len(replay))
            self._flush_out()
        return link

    def _link_failed(self, failure: Failure, node_id: int):
        self.opening.pop(node_id, None)
        if self.closed:
            return None  # e.g. the checkout cancelled by close()
        exc = failure.value
        if failure.check(PoolExhausted):
            why = exc.message
            error = m.error_response(exc.sqlstate, exc.message)
        elif failure.check(LoginFailed):
            why = exc.fields.get("M", "login failed")
            error = m.error_response(exc.fields.get("C", CONNECTION_FAILURE),
                                     f"could not connect to node {node_id}: {why}")
        else:
            why = failure.getErrorMessage()
            error = m.error_response(CONNECTION_FAILURE,
                                     f"could not connect to node {node_id}: {why}")
        log.warn("session {pid}: could not open a link to node {node}: {why}",
                 pid=self.session.pid, node=node_id, why=why)
        s = self.session
        if s.lb_node == node_id and node_id != s.primary_id:
            # Reads fall back to the primary without bothering the client.
            s.lb_node = self.proxy.cluster.primary_id
        else:
            self.link_errors[node_id] = error
        return None

    def _unavailable(self, code: int, error: bytes) -> None:
        """The frame being routed needed a link that could not be had: it fails alone."""
        if code in (codes.QUERY, codes.FUNCTION_CALL, codes.SYNC):
            self._local(error, status=ord(self.session.route_status))
        else:  # the extended protocol: this error, then nothing until Sync
            self.skip_until_sync = True
            self.skip_status = ord(self.session.route_status)
            self._local(error, ready=False)

    def open_link(self, node, secret, fresh: bool = False):
        d = self.proxy.pooling.checkout(self.session, node, secret, pooled=self.poolable,
                                        fresh=fresh)
        return d.addCallbacks(self._adopt, self._open_failed, callbackArgs=(node,),
                              errbackArgs=(node,))

    def _adopt(self, link: BackendLink, node):
        """A link checked out for this session becomes one of its links."""
        self.proxy.cluster.mark_up(node.node_id)
        if self.closed:
            self.proxy.pooling.release(link, clean=True, reset=not self.txn_pooling)
            return None
        self.links[node.node_id] = link
        link.transport.registerProducer(_ValveHandle(self.client_valve), True)
        if self.links_paused:
            link.transport.pauseProducing()
        link.attach(self)
        return link

    def _open_failed(self, failure: Failure, node):
        if failure.check(LoginFailed):
            self._login_failed(node, failure.value)
        return failure

    def _login_failed(self, node, exc: LoginFailed) -> None:
        if exc.sqlstate == CONNECTION_FAILURE:
            self.proxy.cluster.mark_down(node.node_id)

    def _catalog_query(self, sql: str) -> defer.Deferred:
        """Rows of ``sql`` run on the session's own primary link, unseen by the client.

        Catalog lookups go where the session's statements go, so they need no
        connection of their own and count against the same limits (Pgpool-II also runs
        them on the session's backend connection, inside its transaction if one is open).
        """
        s = self.session
        if s.route_status == "E" or s.failed_elsewhere:
            return defer.fail(CatalogUnavailable("the session's transaction is aborted"))
        try:
            link = self._link(s.primary_id)
        except LinkUnavailable as exc:
            # The frame waiting for these facts needs that link too: it gets the error.
            self.link_errors[s.primary_id] = exc.error
            return defer.fail(CatalogUnavailable("no link to the primary"))
        if isinstance(link, defer.Deferred):
            return link.addCallback(lambda _: self._catalog_query(sql))
        captured: list[bytes] = []
        done = defer.Deferred()
        self._shadow(link, m.query(sql), capture=captured,
                     on_done=lambda: done.callback(None))
        self._flush_out()
        return done.addCallback(lambda _: m.query_rows(b"".join(captured)))

    # -- cancel & shutdown -----------------------------------------------------------------------
    def cancel_backends(self) -> None:
        for link in list(self.links.values()):
            if self.ordering.busy(link) or link.inflight:
                log.debug("session {pid}: cancelling node {node} (inflight {n})",
                          pid=self.session.pid, node=link.node_id, n=link.inflight)
                self.proxy.send_cancel(link)

    def _idle_timeout(self) -> None:
        """client_idle_limit: an idle client is told why and disconnected."""
        if self.closed:
            return
        if not self.ordering.idle:  # still waiting for a result: not idle
            self.idle_timer = self.proxy.reactor.callLater(self.idle_limit, self._idle_timeout)
            return
        self.idle_timer = None
        self.fatal(IDLE_SESSION_TIMEOUT,
                   f"terminating connection because client_idle_limit ({self.idle_limit:g} s) "
                   "was reached")

    def fatal(self, sqlstate: str, message: str) -> None:
        self._send_and_close(m.error_response(sqlstate, message, "FATAL"))

    def shutdown(self) -> None:
        self.fatal(ADMIN_SHUTDOWN, "terminating connection due to pgtwist shutdown")

    def _send_and_close(self, frame: bytes) -> None:
        if not self.closed:
            self.write(frame)
        self.close()

    def close(self) -> None:
        """End the session: release links, then close the client connection."""
        if self.closed:
            return
        self.closed = True
        self.machine.close()
        if self.auth_timer.active():
            self.auth_timer.cancel()
        if self.idle_timer is not None and self.idle_timer.active():
            self.idle_timer.cancel()
        self.proxy.end_session(self.session)
        if self.auth is not None:
            self.auth.release()  # a pre-authentication slot it holds or waits for
        for d in list(self.opening.values()):
            d.cancel()  # leave the pool's queue: nobody will use that link now
        for link in list(self.links.values()):
            self._release(link)
        self.links.clear()
        # Twisted's TLS layer only shuts down once no producer is registered.
        if getattr(self.transport, "producer", None) is not None:
            self.transport.unregisterProducer()
        self.transport.loseConnection()
        if self.session.ssl:
            # Safety net: a peer that never answers the close_notify must not keep
            # the socket forever.
            self.proxy.reactor.callLater(5.0, self._abort)

    def _abort(self) -> None:
        if self.transport.connected:
            self.transport.abortConnection()

    def client_lost(self) -> None:
        self.close()

    def _release(self, link: BackendLink) -> None:
        """Give a link back to the pool; one still busy is cancelled and closed instead."""
        busy = link.inflight or link is self.copy_link or self.ordering.busy(link)
        log.debug("session {pid}: releasing node {node} link (inflight {n}, copy {c}, "
                  "segments {seg}, fatal {f})", pid=self.session.pid, node=link.node_id,
                  n=link.inflight, c=link is self.copy_link, seg=self.ordering.busy(link),
                  f=link.fatal_seen)
        if busy and not link.closed:
            self.proxy.send_cancel(link)
            if link is self.copy_link:
                link.write(m.frame(codes.COPY_FAIL, m.cstr("client disconnected")))
        link.owner = None
        # Transaction pooling keeps an idle link's statements and state for the next
        # session; a pinned or unfinished one is reset like a session-pooled link.
        keep = (self.txn_pooling and self.pinned is None and not busy
                and link.txn_status == codes.TXN_IDLE)
        if keep and link.state_owner is self.session:
            link.state = tuple(self.session.replay)
        self.proxy.pooling.release(link, clean=not busy and not link.fatal_seen, reset=not keep)
