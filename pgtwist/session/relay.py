"""One client's session: its connection, and the objects between it and its links.

The relay is the Protocol-facing glue: it feeds the client's bytes to the frontend
machine, answers the negotiation requests, and drains the frames into the session's
client-message handlers (pgtwist.session.requests), which forward them to the links
the routing chain chooses; the servers' bytes come back through
pgtwist.session.replies, unchanged, in the client's order (pgtwist.session.ordering).
The objects it builds are listed in pgtwist.session; each gets what it uses.

Client frames are processed from a backlog.  A frame whose routing needs something
not yet at hand (a catalog fact, a link still connecting, a standby's COMMIT to
finish first) makes the relay pause the client and retry that same frame once the
wait is over.
"""

from __future__ import annotations

from collections import deque

from twisted.internet import defer
from twisted.python.failure import Failure
from zope.interface import implementer

from ..conn.frontend import (
    CancelRequested,
    Frames,
    FrontendMachine,
    FrontendState,
    GSSENCRequested,
    SSLRequested,
    StartupReceived,
)
from ..interfaces import ILinkOwner
from ..logs import SETTINGS, logger, session_settings
from ..protocols.fastwrite import make_writer
from ..sessionlog import SessionLog
from ..timeouts import call_later
from ..wire import codes
from ..wire import messages as m
from ..wire.errors import ADMIN_SHUTDOWN, INTERNAL_ERROR, ProtocolViolation
from .copyin import CopyIn
from .flow import LinksProducer, Valve
from .links import LinkSet, LinkUnavailable
from .ordering import Ordering
from .outbox import Outbox
from .placement import WAIT, Placement
from .replies import Replies
from .requests import Requests
from .retry import StandbyRetry
from .startup import Startup

IDLE_SESSION_TIMEOUT = "57P05"

log = logger(__name__)


@implementer(ILinkOwner)
class Relay:
    """One client connection and its session.  ``backend_items`` / ``link_lost`` (the
    links' ILinkOwner callbacks) are the session's Replies' own bound methods."""

    logset = SETTINGS   # the logging switches (pgtwist.logs); per session from __init__ on
    slog = None

    def __init__(self, proxy, transport):
        self.proxy = proxy
        self.config = config = proxy.config
        self.router = router = proxy.router
        self.transport = transport
        self.write = make_writer(transport)
        self.machine = FrontendMachine(config.max_message_length)
        self.backlog: deque = deque()
        self.waiting = False
        self.closed = False
        self._draining = False
        self.auth = None                # pgtwist.auth.session.SessionAuth, from the StartupMessage on
        peer = transport.getPeer()
        self.session = s = proxy.new_session(
            self, f"{getattr(peer, 'host', 'local')}:{getattr(peer, 'port', '')}"
        )
        s.client_ip = getattr(peer, "host", None)
        # Logging switches: one attribute test on the paths below when a switch is off.
        self.logset = logset = session_settings(s)
        self.slog = slog = SessionLog(s, logset, proxy.reactor)
        slog.connected()
        # Client reading pauses when any backend link's send buffer is full, or while
        # the relay waits before routing a frame (and links pause for a slow client).
        self.client_valve = Valve(transport)
        cluster, pooling = proxy.cluster, proxy.pooling
        self.ordering = ordering = Ordering()
        self.out = out = Outbox(ordering, s, self.write)
        self.links = links = LinkSet(s, ordering, out, pooling, cluster, proxy.send_cancel,
                                     self.client_valve, self)
        self.place = place = Placement(s, out, links, ordering, router, cluster, self._wait,
                                       lambda f, *a: proxy.reactor.callLater(0, f, *a))
        self.mode = mode = proxy.pool_mode(s, out, links, ordering, place, router, cluster,
                                           pooling, self.backlog)
        links.mode = mode
        retry = StandbyRetry(s, ordering, out, links, pooling)
        self.requests = requests = Requests(s, out, links, ordering, place, mode, router,
                                            cluster, pooling,
                                            CopyIn(s, out, links, ordering, place), retry)
        requests.logset = place.logset = logset
        requests.slog = place.slog = slog
        self.replies = replies = Replies(s, ordering, links, mode, router, cluster,
                                         self.write, self.fatal, self.close, retry)
        self.backend_items = replies.backend_items
        self.link_lost = replies.link_lost
        self.startup = Startup(self, s, links, ordering, mode, router, proxy)
        stats = getattr(proxy, "stats", None)
        if stats is not None:   # pgtwist.metrics.stats: what the session counts and times
            place.stats = stats
            ordering.latency = stats.query
            replies.txn_latency = stats.transaction
        self._handlers = requests.handlers()
        self._handlers[codes.PASSWORD] = self._on_password
        self._handlers[codes.TERMINATE] = self._on_terminate
        transport.registerProducer(LinksProducer(links), True)
        # authentication_timeout 0 disables it (as in Pgpool-II): no timer at all.
        self.auth_timer = call_later(proxy.reactor, config.authentication_timeout,
                                     self._auth_timeout)
        self.idle_limit = float(config.params.get("client_idle_limit", 0))
        self.idle_timer = (proxy.reactor.callLater(self.idle_limit, self._idle_timeout)
                           if self.idle_limit > 0 else None)

    def _set_writer(self, write) -> None:
        self.write = self.out.write = self.replies.write = write

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
                        if self.logset.frames:
                            self.slog.frames(event.buf, event.frames)
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
                        if self.logset.client_messages:
                            self.slog.cancel(event.pid)
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

    def _startup(self, event: StartupReceived) -> None:
        self.startup.start(event)

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
        self._set_writer(self.transport.write)  # TLS: no direct socket writes
        self.session.ssl = True
        self.machine.gss_done = True  # no GSSENCRequest inside TLS

    def _on_password(self, code, buf, start, end):
        if self.auth is None:
            raise ProtocolViolation("unexpected password message")
        self.auth.receive(buf[start:end])
        return None

    def _on_terminate(self, code, buf, start, end):
        self.out.flush()
        self.close()
        return None

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
                        answer = handlers[code](code, buf, start, end)
                    except LinkUnavailable as exc:
                        self.place.unavailable(code, exc.error)
                        answer = None
                    if answer is WAIT:
                        if self.waiting:
                            entry[2] = i
                            self.out.flush()
                            return
                        continue  # the wait ended at once: route the same frame again
                    if self.closed:
                        return
                    i += 1
                backlog.popleft()
            self.out.flush()
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
        return WAIT

    # -- cancel & shutdown -----------------------------------------------------------------------
    def cancel_backends(self) -> None:
        self.links.cancel_all()

    def _auth_timeout(self) -> None:
        self.startup.auth_timeout()

    def set_log_settings(self) -> None:
        """PGPOOL SET / RESET of a logging switch: this session's switches from now on."""
        logset = session_settings(self.session)
        self.logset = self.requests.logset = self.place.logset = logset
        if self.slog is not None:
            self.slog.settings = logset

    def set_idle_limit(self, seconds: float) -> None:
        """PGPOOL SET client_idle_limit: this session's limit from now on (0: none)."""
        self.idle_limit = seconds
        if self.idle_timer is not None and self.idle_timer.active():
            self.idle_timer.cancel()
        self.idle_timer = (self.proxy.reactor.callLater(seconds, self._idle_timeout)
                           if seconds > 0 else None)

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
        self.send_and_close(m.error_response(sqlstate, message, "FATAL"))

    def shutdown(self) -> None:
        self.fatal(ADMIN_SHUTDOWN, "terminating connection due to pgtwist shutdown")

    def send_and_close(self, frame: bytes) -> None:
        if not self.closed:
            self.write(frame)
        self.close()

    def close(self) -> None:
        """End the session: release links, then close the client connection."""
        if self.closed:
            return
        self.closed = self.session.closed = True
        self.machine.close()
        if self.slog is not None:
            self.slog.disconnected()
        if self.auth_timer.active():
            self.auth_timer.cancel()
        if self.idle_timer is not None and self.idle_timer.active():
            self.idle_timer.cancel()
        self.proxy.end_session(self.session)
        if self.auth is not None:
            self.auth.release()  # a pre-authentication slot it holds or waits for
        self.links.close()
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
