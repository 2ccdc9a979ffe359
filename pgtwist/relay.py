"""One client's session: between its connection and its backend links.

The relay forwards the client's raw frames to the link(s) chosen for them and
streams the servers' bytes back unchanged; it reads only the frames that
change its state (ReadyForQuery, ErrorResponse, ParameterStatus, Copy*).
A session may hold links to several backends, keyed by node id; in this
version every statement is sent to the primary.
"""

from __future__ import annotations

from twisted.internet.interfaces import IPushProducer
from twisted.python.failure import Failure
from zope.interface import implementer

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
from .logs import logger
from .protocols.backend import BackendLink, connect_backend
from .protocols.fastwrite import make_writer
from .session import Session
from .wire import codes
from .wire import messages as m
from .wire.errors import (
    ADMIN_SHUTDOWN,
    CONNECTION_FAILURE,
    FEATURE_NOT_SUPPORTED,
    INTERNAL_ERROR,
    PROTOCOL_VIOLATION,
    ProtocolViolation,
)

log = logger(__name__)

_FATAL_MARKERS = (b"SFATAL\0", b"SPANIC\0")


@implementer(IPushProducer)
class _Valve:
    """Pauses one transport while any of its holders asks (several links may)."""

    def __init__(self, transport):
        self.transport = transport
        self.holders: set = set()

    def hold(self, holder) -> None:
        if not self.holders:
            self.transport.pauseProducing()
        self.holders.add(holder)

    def release(self, holder) -> None:
        if holder in self.holders:
            self.holders.discard(holder)
            if not self.holders:
                self.transport.resumeProducing()


@implementer(IPushProducer)
class _ValveHandle:
    """What one consumer registers: its pause requests go into a shared valve."""

    def __init__(self, valve: _Valve):
        self.valve = valve

    def pauseProducing(self) -> None:
        self.valve.hold(self)

    def resumeProducing(self) -> None:
        self.valve.release(self)

    def stopProducing(self) -> None:
        self.valve.release(self)


class Relay:
    """Application logic for one client connection."""

    def __init__(self, proxy, transport):
        self.proxy = proxy
        self.config = proxy.config
        self.transport = transport
        self.write = make_writer(transport)
        self.machine = FrontendMachine(self.config.max_message_length)
        self.links: dict[int, BackendLink] = {}
        self.primary_link: BackendLink | None = None
        self.closed = False
        peer = transport.getPeer()
        self.session: Session = proxy.new_session(self, f"{getattr(peer, 'host', 'local')}:{getattr(peer, 'port', '')}")
        # Client reading pauses when any backend link's send buffer is full...
        self.client_valve = _Valve(transport)
        # ...and backend reading pauses while the client's send buffer is full.
        self.links_paused = False
        transport.registerProducer(_LinksProducer(self), True)
        self.auth_timer = proxy.reactor.callLater(
            self.config.authentication_timeout, self._auth_timeout
        )

    # -- client side ---------------------------------------------------------------
    def client_data(self, data: bytes) -> None:
        if self.closed:
            return
        try:
            events = self.machine.receive(data)
            for event in events:
                if type(event) is Frames:
                    self._frames(event.buf, event.frames)
                elif type(event) is StartupReceived:
                    self._startup(event)
                elif type(event) in (SSLRequested, GSSENCRequested):
                    self.write(b"N")  # encryption is not offered (yet)
                elif type(event) is CancelRequested:
                    self.proxy.cancel(event.pid, event.secret)
                    self.transport.loseConnection()
                if self.closed:
                    break
        except ProtocolViolation as exc:
            log.info("client {addr}: protocol violation: {msg}", addr=self.session.client_address, msg=exc.message)
            self.fatal(exc.sqlstate, exc.message)
        except Exception:
            log.failure("unexpected error handling client data")
            self.fatal(INTERNAL_ERROR, "internal error in pgtwist; the session was closed")

    def _frames(self, buf: bytes, frames: list) -> None:
        link = self.primary_link
        if link is None or link.closed:
            raise ProtocolViolation("no backend connection for this session", CONNECTION_FAILURE)
        syncs = 0
        end_at = len(buf)
        terminate = False
        for code, start, _end in frames:
            if code in codes.SYNC_POINTS:
                syncs += 1
            elif code == codes.TERMINATE:
                terminate = True
                end_at = start - 5
                break
        if end_at:
            link.inflight += syncs
            link.write(buf if end_at == len(buf) else buf[:end_at])
        if terminate:
            self.close()

    def _startup(self, event: StartupReceived) -> None:
        s = self.session
        params = dict(event.params)
        if "replication" in params and params["replication"].lower() not in ("false", "off", "0", "no"):
            raise ProtocolViolation("pgtwist does not proxy replication connections", FEATURE_NOT_SUPPORTED)
        s.user = params.pop("user")
        s.database = params.setdefault("database", s.user)
        s.startup_params = params
        self._negotiate = None
        if event.minor_version > 0 or event.unsupported_options:
            self._negotiate = m.negotiate_protocol_version(
                0, [o.encode() for o in event.unsupported_options]
            )
        secret = self.proxy.secret_for(s.user)
        d = self.proxy.cluster.primary_for(s.user, secret)
        d.addCallback(self._open_primary, secret)
        d.addCallbacks(self._startup_done, self._startup_failed)

    def _open_primary(self, node, secret):
        if self.closed:
            return None
        return self.open_link(node, secret)

    def open_link(self, node, secret):
        s = self.session
        d = connect_backend(
            self.proxy.reactor, node.node_id, node.backend.hostname, node.backend.port,
            s.user, s.startup_params, secret, self.config.connect_timeout / 1000.0,
        )

        def ready(link: BackendLink):
            self.proxy.cluster.mark_up(node.node_id)
            if self.closed:
                link.terminate()
                return None
            self.links[node.node_id] = link
            link.transport.registerProducer(_ValveHandle(self.client_valve), True)
            if self.links_paused:
                link.transport.pauseProducing()
            link.attach(self)
            return link

        def failed(failure: Failure):
            if failure.check(LoginFailed) and failure.value.sqlstate == CONNECTION_FAILURE:
                self.proxy.cluster.mark_down(node.node_id)
            return failure

        return d.addCallbacks(ready, failed)

    def _startup_done(self, link: BackendLink | None) -> None:
        if link is None or self.closed:
            return
        if self.auth_timer.active():
            self.auth_timer.cancel()
        self.primary_link = link
        s = self.session
        s.parameters.update(link.parameters)
        s.txn_status = link.txn_status
        out = [self._negotiate] if self._negotiate else []
        out.append(m.AUTH_OK)
        out.extend(link.login.parameter_frames)
        out.append(m.backend_key_data(s.pid, s.secret))
        out.append(m.ready_for_query(link.txn_status))
        self.machine.authenticated()
        self.write(b"".join(out))
        log.debug("session {pid}: {user}@{db} ready on node {node}", pid=s.pid, user=s.user,
                  db=s.database, node=link.node_id)

    def _startup_failed(self, failure: Failure) -> None:
        if self.closed:
            return
        if failure.check(LoginFailed):
            exc = failure.value
            log.info("session {pid}: login as {user} failed: {msg}", pid=self.session.pid,
                     user=self.session.user, msg=exc.fields.get("M", ""))
            self._send_and_close(exc.raw or self._fatal_frame(exc.fields))
            return
        log.failure("session startup failed", failure)
        self.fatal(INTERNAL_ERROR, "internal error in pgtwist during session startup")

    @staticmethod
    def _fatal_frame(fields: dict[str, str]) -> bytes:
        return m.error_response(
            fields.get("C", CONNECTION_FAILURE), fields.get("M", "connection failed"), "FATAL",
            detail=fields.get("D"), hint=fields.get("H"),
        )

    def _auth_timeout(self) -> None:
        if self.machine.state is not FrontendState.READY and not self.closed:
            self.fatal(PROTOCOL_VIOLATION, "canceling authentication due to timeout")

    # -- backend side ----------------------------------------------------------------
    def backend_items(self, link: BackendLink, items: list) -> None:
        if self.closed:
            return
        try:
            self._backend_items(link, items)
        except Exception:
            log.failure("unexpected error relaying server data")
            self.fatal(INTERNAL_ERROR, "internal error in pgtwist; the session was closed")

    def _backend_items(self, link: BackendLink, items: list) -> None:
        write = self.write
        for item in items:
            if type(item) is bytes:
                write(item)
                continue
            code, body = item
            if code == codes.READY_FOR_QUERY:
                if link.inflight:
                    link.inflight -= 1
                link.txn_status = body[0]
                link.copy_in = False
                if link is self.primary_link:
                    self.session.txn_status = body[0]
            elif code == codes.PARAMETER_STATUS:
                name, value = m.decode_parameter_status(body)
                self.session.parameters[name] = value
            elif code == codes.ERROR_RESPONSE:
                link.copy_in = False
                if body.startswith(_FATAL_MARKERS) or b"\0SFATAL\0" in body or b"\0SPANIC\0" in body:
                    link.fatal_seen = True
            elif code == codes.COPY_IN_RESPONSE or code == codes.COPY_BOTH_RESPONSE:
                link.copy_in = True

    def link_lost(self, link: BackendLink, reason) -> None:
        if self.links.get(link.node_id) is link:
            del self.links[link.node_id]
        if self.closed:
            return
        if link is self.primary_link:
            if not getattr(link, "fatal_seen", False):
                self._send_and_close(
                    m.error_response(
                        CONNECTION_FAILURE,
                        f"server closed the connection unexpectedly (node {link.node_id})",
                        "FATAL",
                    )
                )
            else:
                self.close()

    # -- cancel & shutdown -----------------------------------------------------------
    def cancel_backends(self) -> None:
        for link in list(self.links.values()):
            self.proxy.send_cancel(link)

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
        self.proxy.end_session(self.session)
        for link in list(self.links.values()):
            self._release(link)
        self.links.clear()
        self.transport.loseConnection()

    def client_lost(self) -> None:
        self.close()

    def _release(self, link: BackendLink) -> None:
        """Close a link; one still busy is cancelled first so the server stops work."""
        if link.closed:
            return
        if link.inflight or link.copy_in:
            self.proxy.send_cancel(link)
            if link.copy_in:
                link.write(m.frame(codes.COPY_FAIL, m.cstr("client disconnected")))
        link.owner = None
        link.terminate()


@implementer(IPushProducer)
class _LinksProducer:
    """Registered on the client transport: a slow client pauses every link."""

    def __init__(self, relay: Relay):
        self.relay = relay

    def pauseProducing(self) -> None:
        self.relay.links_paused = True
        for link in self.relay.links.values():
            if not link.closed:
                link.transport.pauseProducing()

    def resumeProducing(self) -> None:
        self.relay.links_paused = False
        for link in self.relay.links.values():
            if not link.closed:
                link.transport.resumeProducing()

    def stopProducing(self) -> None:
        self.relay.links_paused = False
