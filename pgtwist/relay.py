"""One client's session: between its connection and its backend links.

The relay forwards the client's raw frames to the link(s) the routing chain
chooses and streams the servers' bytes back unchanged; it reads only the
frames that change its state (ReadyForQuery, ErrorResponse, ParameterStatus,
Copy*).  A session holds links to several backends, keyed by node id: the
primary's is opened at startup, the load-balance node's when first needed.
:class:`~pgtwist.conn.ordering.Ordering` keeps responses in the client's order.

Client frames are processed from a backlog.  A frame whose routing needs
something not yet at hand (a catalog fact, a link still connecting, a
standby's COMMIT to finish first) makes the relay pause the client and retry
that same frame once the wait is over.
"""

from __future__ import annotations

import re
from collections import deque

from twisted.internet import defer
from twisted.internet.interfaces import IPushProducer
from twisted.python.failure import Failure
from zope.interface import implementer

from . import admin
from .auth import AuthRefused, SessionAuth, backend_secret
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
from .logs import logger
from .protocols.backend import BackendLink, connect_backend
from .protocols.fastwrite import make_writer
from .routing.rules import prepared_body_sql
from .routing.values import Target
from .session import Session, Statement
from .wire import codes
from .wire import messages as m
from .wire.errors import (
    ADMIN_SHUTDOWN,
    CONNECTION_FAILURE,
    FEATURE_NOT_SUPPORTED,
    INTERNAL_ERROR,
    INVALID_AUTHORIZATION,
    INVALID_PASSWORD,
    PROTOCOL_VIOLATION,
    ProtocolViolation,
)

log = logger(__name__)

_FATAL_MARKERS = (b"SFATAL\0", b"SPANIC\0")
_WAIT = object()  # a frame handler's answer: retry this frame after the wait
_SKIP = object()  # answer the client 25P02 and ignore the batch up to Sync
_ABORTED = m.error_response(
    "25P02", "current transaction is aborted, commands ignored until end of transaction block")


_CURSOR_NAME = re.compile(r'("(?:[^"]|"")+"|[A-Za-z_][\w$]*)\s*;?\s*$')


def _cursor_name(sql: str) -> str | None:
    """The cursor a FETCH/MOVE/CLOSE names (its last word), as PostgreSQL folds it."""
    found = _CURSOR_NAME.search(sql)
    if found is None:
        return None
    name = found.group(1)
    if name.startswith('"'):
        return name[1:-1].replace('""', '"')
    return name.lower()


def _route_node(node_id: int):
    from .routing.values import node

    return node(node_id, f"node {node_id}: holds the cursor").by("relay")


def info_sql(buf: bytes, start: int, end: int) -> str:
    return buf[start:end - 1].decode("utf-8", "replace")


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


def _cstr_pair(buf: bytes, start: int) -> tuple[bytes, bytes]:
    """The first two NUL-terminated strings of a (validated) body."""
    a = buf.find(b"\0", start)
    b = buf.find(b"\0", a + 1)
    return buf[start:a], buf[a + 1:b]


class Relay:
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
        self._looked_up = None          # (info, facts) fetched for the frame being retried
        self.auth: SessionAuth | None = None
        self.backend_secret = None      # what backend logins use once the client is in
        self.skip_until_sync = False    # extended protocol after a pgtwist-made error
        self._shadow_sent: tuple | None = None
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
        self.auth_timer = proxy.reactor.callLater(
            self.config.authentication_timeout, self._auth_timeout
        )

    # -- client side -----------------------------------------------------------------
    def client_data(self, data: bytes) -> None:
        if self.closed:
            return
        try:
            for event in self.machine.receive(data):
                if type(event) is Frames:
                    self.backlog.append([event.buf, event.frames, 0])
                    if not self.waiting:
                        self._drain()
                elif type(event) is StartupReceived:
                    self._startup(event)
                elif type(event) is SSLRequested:
                    self._ssl_request()
                elif type(event) is GSSENCRequested:
                    self.write(b"N")  # GSSAPI encryption is not offered
                elif type(event) is CancelRequested:
                    self.proxy.cancel(event.pid, event.secret)
                    self.transport.loseConnection()
                if self.closed:
                    break
        except ProtocolViolation as exc:
            log.info("client {addr}: protocol violation: {msg}",
                     addr=self.session.client_address, msg=exc.message)
            self.fatal(exc.sqlstate, exc.message)
        except Exception:
            log.failure("unexpected error handling client data")
            self.fatal(INTERNAL_ERROR, "internal error in pgtwist; the session was closed")

    def _ssl_request(self) -> None:
        rest, self.machine.leftover = self.machine.leftover, b""
        tls = self.proxy.server_tls
        if tls is None or self.session.ssl:
            self.write(b"N")
            if rest:
                self.client_data(rest)
            return
        if rest:
            raise ProtocolViolation("received unencrypted data after SSL request")
        self.write(b"S")
        self.transport.startTLS(tls)
        self.write = self.transport.write  # TLS: no direct socket writes
        self.session.ssl = True

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
                    if handlers[code](self, code, buf, start, end) is _WAIT:
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
        """Pause the client until ``d`` fires, then resume routing."""
        self.waiting = True
        self.client_valve.hold(self)

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

    def _shadow(self, link: BackendLink, frames: bytes, syncs: int = 1, on_done=None) -> None:
        """Send messages whose responses the client must not see (BOTH copies, replays)."""
        seg = self.ordering.open_segment(link)
        if seg is not None:
            self._close_segment(seg)
        shadow = self.ordering.segment(link, forward=False)
        shadow.pending = syncs
        shadow.closed = True
        shadow.on_done = on_done
        link.inflight += syncs
        self._send(link, frames)

    def _local(self, data: bytes, status: int | None = None, ready: bool = True) -> None:
        """Answer from pgtwist itself, in order with backend responses."""
        tail = self.ordering.tail_open()
        if tail is not None:
            self._close_segment(tail)
        self._flush_out()
        if ready:
            data += m.ready_for_query(self.session.txn_status if status is None else status)
        out = self.ordering.local(data)
        if out:
            self.write(b"".join(out))

    # -- links ----------------------------------------------------------------------------
    def _link(self, node_id: int):
        """The ready link to ``node_id``, or a Deferred while it opens."""
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
        waiter = defer.Deferred()
        d.addBoth(lambda r: (waiter.callback(None), r)[1])
        return waiter

    def _link_opened(self, link, node_id: int):
        self.opening.pop(node_id, None)
        if link is None:
            return None
        s = self.session
        # Replay the session state this link missed: SETs, then the open transaction.
        replay = [m.query(sql) for sql in s.replay]
        if s.txn_begin_for_standby:
            replay.append(m.query(s.txn_begin_for_standby))
        if replay:
            self._shadow(link, b"".join(replay), syncs=len(replay))
            self._flush_out()
        return link

    def _link_failed(self, failure: Failure, node_id: int):
        self.opening.pop(node_id, None)
        log.warn("session {pid}: could not open a link to node {node}: {why}",
                 pid=self.session.pid, node=node_id, why=failure.getErrorMessage())
        if self.session.lb_node == node_id:
            # Reads fall back to the primary without bothering the client.
            self.session.lb_node = self.proxy.cluster.primary_id
        return None

    def open_link(self, node, secret):
        s = self.session
        d = connect_backend(
            self.proxy.reactor, node.node_id, node.backend.hostname, node.backend.port,
            s.user, s.startup_params, secret, self.config.connect_timeout / 1000.0,
            self.proxy.backend_tls(node.backend),
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

    # -- startup ----------------------------------------------------------------------------
    def _startup(self, event: StartupReceived) -> None:
        s = self.session
        params = dict(event.params)
        if params.get("replication", "false").lower() not in ("false", "off", "0", "no"):
            raise ProtocolViolation("pgtwist does not proxy replication connections",
                                    FEATURE_NOT_SUPPORTED)
        s.user = params.pop("user")
        s.database = params.setdefault("database", s.user)
        s.startup_params = params
        if event.minor_version > 0 or event.unsupported_options:
            # PostgreSQL puts the whole newest version (3.0) here; libpq 18 reads it so.
            self.write(m.negotiate_protocol_version(
                codes.PROTOCOL_3_0, [o.encode() for o in event.unsupported_options]
            ))
        if self.config.params.get("ssl_require") and not s.ssl and s.client_ip:
            self.fatal(INVALID_AUTHORIZATION, "pgtwist accepts only SSL connections")
            return
        self.auth = SessionAuth(self)
        d = self._authenticate()
        d.addCallbacks(self._startup_done, self._startup_failed)

    @defer.inlineCallbacks
    def _authenticate(self):
        """Authenticate the client and log in to the primary; fires with the primary link."""
        auth, s, proxy = self.auth, self.session, self.proxy
        method = auth.method_for_session()  # pool_hba.conf, or None: follow the primary
        primary = yield proxy.cluster.primary_for(s.user, proxy.secret_for(s.user))
        if method is not None:
            if method == "cert":
                auth.check_cert()
                backend = proxy.secret_for(s.user)
            elif method == "trust":
                backend = proxy.secret_for(s.user)
            else:
                secret = yield auth.lookup_secret()
                first, done = auth.begin(method, secret)
                self.write(first)
                backend = yield done
            self.backend_secret = backend
            link = yield self._open_primary(primary, backend)
            return link
        # Pgpool-II without pool_hba: ask the client for what the primary asks for.
        secret = yield auth.lookup_secret()
        if secret is not None and secret.plaintext is None and secret.scram_verifier:
            # Pass-through: only the client's own SCRAM proof can open the backends.
            first, done = auth.begin("scram-sha-256", secret)
            self.write(first)
            self.backend_secret = yield done
            link = yield self._open_primary(primary, self.backend_secret)
            return link
        backend = backend_secret(secret)
        try:
            link = yield self._open_primary(primary, backend)
        except LoginFailed as exc:
            if not (exc.sqlstate == INVALID_PASSWORD and backend is None
                    and self.config.params.get("allow_clear_text_frontend_auth")):
                raise
            # allow_clear_text_frontend_auth: the client's clear-text password goes on.
            first, done = auth.begin("password", None, collect_only=True)
            self.write(first)
            backend = yield done
            link = yield self._open_primary(primary, backend)
            self.backend_secret = backend
            return link
        self.backend_secret = backend
        method = link.login.auth_method
        if method != "trust" and secret is not None:
            first, done = auth.begin(method, secret)
            self.write(first)
            yield done
        return link

    def _open_primary(self, node, secret):
        if self.closed:
            return defer.succeed(None)
        return self.open_link(node, secret)

    def _startup_done(self, link: BackendLink | None) -> None:
        if link is None or self.closed:
            return
        if self.auth_timer.active():
            self.auth_timer.cancel()
        self.primary_link = link
        self.ordering.primary = link
        s = self.session
        s.primary_id = link.node_id
        s.parameters.update(link.parameters)
        s.txn_status = link.txn_status
        s.lb_node, reason = self.router.choose_lb_node(s)
        log.debug("session {pid}: load-balance node {node} ({reason})", pid=s.pid,
                  node=s.lb_node, reason=reason)
        out = [m.AUTH_OK]
        out.extend(link.login.parameter_frames)
        out.append(m.backend_key_data(s.pid, s.secret))
        out.append(m.ready_for_query(link.txn_status))
        self.machine.authenticated()
        self.write(b"".join(out))

    def _startup_failed(self, failure: Failure) -> None:
        if self.closed:
            return
        if failure.check(AuthRefused):
            exc = failure.value
            log.info("session {pid}: authentication of {user} refused: {msg}",
                     pid=self.session.pid, user=self.session.user, msg=exc.log_message)
            self.fatal(exc.sqlstate, exc.message)
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

    # -- routing -------------------------------------------------------------------------------
    def _facts(self, info):
        """Catalog facts for ``info``, or _WAIT while they are looked up."""
        s = self.session
        looked = self._looked_up
        if looked is not None and looked[0] is info:
            self._looked_up = None
            return looked[1]
        facts = self.router.facts(s.database, info, s)
        if facts is not None:
            return facts
        d = self.router.lookup(s.database, info, s.user, self.proxy.secret_for(s.user))

        def keep(facts):
            self._looked_up = (info, facts)  # used by the retry of this same frame

        return self._wait(d.addCallback(keep))

    def _decide(self, info, sql: str):
        """RouteDecision for ``info`` now, or _WAIT while catalog facts load."""
        facts = self._facts(info)
        if facts is _WAIT:
            return _WAIT
        return self.router.decide(info, self.session, facts, sql)

    def _follow(self, info, sql: str):
        """Decision for a statement that uses another: SQL EXECUTE runs where (and as) its
        PREPARE does; FETCH/MOVE/CLOSE of a protocol-level portal go to that portal's node.

        Returns (decision or _WAIT, the SqlPrepared being executed or None).
        """
        s = self.session
        if info.execute_name is not None:
            prepared = s.sql_prepared.get(info.execute_name)
            if prepared is not None:
                # Routed like its body: the text the policies see is the body too.
                return self._decide(prepared.info, prepared_body_sql(prepared.sql)), prepared
        elif info.command in ("FETCH", "MOVE", "CLOSE") and s.portals:
            name = _cursor_name(sql)
            node_id = s.portals.get(name.encode()) if name else None
            if node_id is not None:
                return _route_node(node_id), None
        return self._decide(info, sql), None

    def _prepared_on(self, link, prepared) -> None:
        """Make sure a SQL PREPAREd statement exists on ``link`` before EXECUTE uses it."""
        if prepared is not None and link.node_id not in prepared.nodes:
            self._shadow(link, m.query(prepared.sql))
            prepared.nodes.add(link.node_id)

    def _target_link(self, decision):
        """The link for a single-node decision (PRIMARY / EITHER / NODE), or a wait."""
        target = decision.target
        if target is Target.NODE:
            node_id = decision.node
        elif target is Target.EITHER:
            node_id = self.session.lb_node
        else:
            node_id = self.session.primary_id
        if node_id is None or not self.proxy.cluster.usable(node_id):
            node_id = self.session.primary_id
        link = self._link(node_id)
        if isinstance(link, defer.Deferred):
            return self._wait(link)
        return link

    def _lb_link_if_open(self) -> BackendLink | None:
        s = self.session
        if s.lb_node is None or s.lb_node == s.primary_id:
            return None
        link = self.links.get(s.lb_node)
        return link if link is not None and not link.closed else None

    # -- client message handlers -----------------------------------------------------------------
    def _on_query(self, code, buf, start, end):
        raw = buf[start:end - 1]
        sql = raw.decode("utf-8", "replace")
        special = admin.match(sql)
        if special is not None:
            return self._admin(special)
        info = self.router.classify(sql)
        s = self.session
        if s.failed_elsewhere:
            return self._in_failed_transaction(info, buf, start, end)
        decision, prepared = self._follow(info, sql)
        if decision is _WAIT:
            return _WAIT
        if info.deallocate_name not in (None, "*"):
            prepared = s.sql_prepared.get(info.deallocate_name)
        if decision.target is Target.REJECT:
            self._local(m.error_response("42501", decision.reason))
            return None
        if prepared is not None and info.deallocate_name is not None:
            return self._deallocate(info, prepared, sql, buf, start, end)
        if decision.target is Target.BOTH:
            return self._both(info, sql, buf, start, end)
        link = self._target_link(decision)
        if link is _WAIT:
            return _WAIT
        self._prepared_on(link, prepared)
        self._forward(link, buf, start - 5, end, sync=True)
        self.router.after_statement(s, info, decision, link.node_id, sql)
        return None

    def _in_failed_transaction(self, info, buf, start, end):
        """The transaction failed on a standby: only its end may pass, as ROLLBACK."""
        s = self.session
        if info.command == "ROLLBACK TO":
            return self._both(info, info_sql(buf, start, end), buf, start, end)
        if info.command not in ("ROLLBACK", "COMMIT", "PREPARE TRANSACTION"):
            self._local(_ABORTED)
            return None
        # PostgreSQL answers COMMIT of an aborted transaction by rolling back ("ROLLBACK").
        primary = self._link(s.primary_id)
        if isinstance(primary, defer.Deferred):
            return self._wait(primary)
        for link in self.links.values():
            if link is not primary and not link.closed and link.txn_status != codes.TXN_IDLE:
                self._shadow(link, m.query("ROLLBACK"))
        frame = buf if info.command == "ROLLBACK" else m.query("ROLLBACK")
        if frame is buf:
            self._forward(primary, buf, start - 5, end, sync=True)
        else:
            self._forward(primary, frame, 0, len(frame), sync=True)
        s.failed_elsewhere = False
        self.router.after_statement(s, self.router.classify("ROLLBACK"), None,
                                    primary.node_id, "ROLLBACK")
        return None

    def _deallocate(self, info, prepared, sql: str, buf, start, end):
        """SQL DEALLOCATE: answered by one node holding the statement, shadowed to the rest."""
        nodes = sorted(prepared.nodes)
        link = self._link(nodes[0])
        if isinstance(link, defer.Deferred):
            return self._wait(link)
        for other in nodes[1:]:
            olink = self.links.get(other)
            if olink is not None and not olink.closed:
                self._shadow(olink, m.query(sql))
        self._forward(link, buf, start - 5, end, sync=True)
        self.router.after_statement(self.session, info, None, link.node_id, sql)
        return None

    def _both(self, info, sql: str, buf, start, end):
        """A BOTH statement: the primary answers the client; the LB node gets a shadow copy."""
        s = self.session
        primary = self._link(s.primary_id)
        if isinstance(primary, defer.Deferred):
            return self._wait(primary)
        standby = self._lb_link_if_open()
        key = (id(buf), start)
        if standby is not None and self._shadow_sent != key:
            text = info.standby_text or sql
            if info.is_transaction_end and standby.txn_status != codes.TXN_IDLE:
                # Pgpool-II's order: COMMIT/ROLLBACK on the standby first, the primary last.
                self._shadow_sent = key
                done = defer.Deferred()
                self._shadow(standby, m.query(text), on_done=lambda: done.callback(None))
                self._flush_out()
                return self._wait(done)
            if not info.is_transaction_end or standby.txn_status != codes.TXN_IDLE:
                self._shadow(standby, m.query(text))
        self._shadow_sent = None
        self._forward(primary, buf, start - 5, end, sync=True)
        self.router.after_statement(s, info, None, primary.node_id, sql)
        return None

    def _on_parse(self, code, buf, start, end):
        name, sql_raw, _oids = m.decode_parse(buf[start:end])
        s = self.session
        sql = sql_raw.decode("utf-8", "replace")
        info = self.router.classify_parse(sql)
        if self.skip_until_sync:
            return self._skip(code)
        if s.failed_elsewhere:
            if info.command not in ("ROLLBACK", "COMMIT", "PREPARE TRANSACTION"):
                return self._skip(code)
            # Ending the aborted transaction: COMMIT becomes ROLLBACK, as PostgreSQL does.
            s.failed_elsewhere = False
            if info.command != "ROLLBACK":
                sql = "ROLLBACK"
                info = self.router.classify_parse(sql)
                buf = m.frame(codes.PARSE, m.cstr(name) + m.cstr(sql) + b"\0\0")
                start, end = 5, len(buf)
        decision, prepared = self._follow(info, sql)
        if decision is _WAIT:
            return _WAIT
        if info.deallocate_name not in (None, "*") and info.deallocate_name in s.sql_prepared:
            home = min(s.sql_prepared[info.deallocate_name].nodes)
            decision = _route_node(home)
        if decision.target is Target.BOTH or decision.target is Target.REJECT:
            link = self._target_link(self.router.PRIMARY)
        else:
            link = self._target_link(decision)
        if link is _WAIT:
            return _WAIT
        self._prepared_on(link, prepared)
        stmt = Statement(name, sql, buf[start - 5:end], info, {link.node_id})
        s.statements[name] = stmt
        link.pending_parses.append(stmt)  # confirmed by its ParseComplete
        self._forward(link, buf, start - 5, end)
        return None

    def _statement_link(self, stmt: Statement | None):
        """Where a statement's next use goes: re-routed now, re-parsed there if missing."""
        s = self.session
        if stmt is None:
            return self._current_or_primary()
        decision, prepared = self._follow(stmt.info, stmt.sql)
        if decision is _WAIT:
            return _WAIT
        if stmt.info.deallocate_name not in (None, "*"):
            return self._link_ready(min(stmt.nodes))
        if decision.target is Target.BOTH or decision.target is Target.REJECT:
            decision = self.router.PRIMARY
        link = self._target_link(decision)
        if link is _WAIT:
            return _WAIT
        if link.node_id not in stmt.nodes:
            if s.route_status == "E" and not stmt.info.is_transaction_end:
                # An aborted transaction refuses the Parse; the client must see what
                # PostgreSQL would say of the statement itself: 25P02.
                return _SKIP
            # Parse it there first; its ParseComplete is not the client's business.
            self._shadow(link, stmt.parse_frame + m.SYNC)
            link.pending_parses.append(stmt)
            stmt.nodes.add(link.node_id)
        self._prepared_on(link, prepared)
        s.last_statement = stmt
        return link

    def _link_ready(self, node_id: int):
        link = self._link(node_id)
        return self._wait(link) if isinstance(link, defer.Deferred) else link

    def _current_or_primary(self):
        tail = self.ordering.tail_open()
        if tail is not None:
            return tail.link
        link = self._link(self.session.primary_id)
        return self._wait(link) if isinstance(link, defer.Deferred) else link

    def _on_bind(self, code, buf, start, end):
        if self.session.failed_elsewhere or self.skip_until_sync:
            return self._skip(code)
        portal, name = _cstr_pair(buf, start)
        s = self.session
        stmt = s.statements.get(name)
        link = self._statement_link(stmt)
        if link is _WAIT:
            return _WAIT
        if link is _SKIP:
            return self._skip(code)
        s.portals[portal] = link.node_id
        self._forward(link, buf, start - 5, end)
        if stmt is not None:
            self.router.after_statement(s, stmt.info, None, link.node_id, stmt.sql)
            if stmt.info.route == "both":
                standby = self._lb_link_if_open()
                if standby is not None and not stmt.info.is_transaction_end:
                    self._shadow(standby, m.query(stmt.info.standby_text or stmt.sql))
                elif standby is not None and standby.txn_status != codes.TXN_IDLE:
                    self._shadow(standby, m.query(stmt.sql))
        return None

    def _portal_link(self, name: bytes):
        node_id = self.session.portals.get(name)
        if node_id is not None:
            link = self.links.get(node_id)
            if link is not None and not link.closed:
                return link
        return self._current_or_primary()

    def _on_describe(self, code, buf, start, end):
        if self.session.failed_elsewhere or self.skip_until_sync:
            return self._skip(code)
        kind = buf[start]
        name = buf[start + 1:end - 1]
        if kind == 0x53:  # 'S'
            link = self._statement_link(self.session.statements.get(name))
        else:
            link = self._portal_link(name)
        if link is _WAIT:
            return _WAIT
        if link is _SKIP:
            return self._skip(code)
        self._forward(link, buf, start - 5, end)
        return None

    def _on_execute(self, code, buf, start, end):
        if self.session.failed_elsewhere or self.skip_until_sync:
            return self._skip(code)
        name = buf[start:buf.find(b"\0", start)]
        link = self._portal_link(name)
        if link is _WAIT:
            return _WAIT
        self._forward(link, buf, start - 5, end)
        return None

    def _on_close(self, code, buf, start, end):
        if self.session.failed_elsewhere or self.skip_until_sync:
            return self._skip(code)
        kind = buf[start]
        name = buf[start + 1:end - 1]
        s = self.session
        if kind == 0x53:
            stmt = s.statements.pop(name, None)
            nodes = sorted(stmt.nodes) if stmt else []
            link = self._current_or_primary() if not nodes else self._link(nodes[0])
            if isinstance(link, defer.Deferred):
                return self._wait(link)
            if link is _WAIT:
                return _WAIT
            for other in nodes[1:]:
                olink = self.links.get(other)
                if olink is not None and not olink.closed:
                    self._shadow(olink, buf[start - 5:end] + m.SYNC)
        else:
            node_id = s.portals.pop(name, None)
            link = self.links.get(node_id) if node_id is not None else None
            if link is None or link.closed:
                link = self._current_or_primary()
                if link is _WAIT:
                    return _WAIT
        self._forward(link, buf, start - 5, end)
        return None

    def _skip(self, code):
        """Extended protocol in an aborted transaction: one error, then nothing until Sync."""
        if not self.skip_until_sync:
            log.debug("session {pid}: aborted transaction, {msg} answered 25P02",
                      pid=self.session.pid, msg=codes.FRONTEND_NAMES.get(code, code))
            self.skip_until_sync = True
            self._local(_ABORTED, ready=False)
        return None

    def _on_sync(self, code, buf, start, end):
        if self.skip_until_sync:
            self.skip_until_sync = False
            self._local(b"", status=codes.TXN_FAILED)
            return None
        link = self._current_or_primary()
        if link is _WAIT:
            return _WAIT
        self._forward(link, buf, start - 5, end, sync=True)
        return None

    def _on_flush(self, code, buf, start, end):
        tail = self.ordering.tail_open()
        if tail is not None:
            self._send_frame(tail.link, buf, start - 5, end)
        return None

    def _on_function_call(self, code, buf, start, end):
        link = self._link(self.session.primary_id)
        if isinstance(link, defer.Deferred):
            return self._wait(link)
        self._forward(link, buf, start - 5, end, sync=True)
        return None

    def _on_copy(self, code, buf, start, end):
        link = self.copy_link or self.primary_link
        if link is not None and not link.closed:
            self._send_frame(link, buf, start - 5, end)
        return None

    def _on_password(self, code, buf, start, end):
        reply = self.auth.receive(buf[start:end]) if self.auth is not None else b""
        if reply:
            self.write(reply)
        return None

    def _on_terminate(self, code, buf, start, end):
        self._flush_out()
        self.close()
        return None

    _handlers = {
        codes.QUERY: _on_query,
        codes.PARSE: _on_parse,
        codes.BIND: _on_bind,
        codes.DESCRIBE: _on_describe,
        codes.EXECUTE: _on_execute,
        codes.CLOSE: _on_close,
        codes.SYNC: _on_sync,
        codes.FLUSH: _on_flush,
        codes.FUNCTION_CALL: _on_function_call,
        codes.COPY_DATA: _on_copy,
        codes.COPY_DONE: _on_copy,
        codes.COPY_FAIL: _on_copy,
        codes.TERMINATE: _on_terminate,
        codes.PASSWORD: _on_password,
    }

    # -- commands answered by pgtwist ----------------------------------------------------------
    def _admin(self, special):
        kind, arg = special
        s = self.session
        if kind == "show" and arg == "pool_nodes":
            self._local(admin.pool_nodes(self.proxy.cluster, s.lb_node))
        elif kind == "show":
            self._local(admin.pool_version())
        elif kind == "explain":
            info = self.router.classify(arg)
            facts = self._facts(info)
            if facts is _WAIT:
                return _WAIT
            explanation = self.router.explain(info, s, facts, arg)
            node = self.router.node_of(explanation.decision, s)
            self._local(admin.explain_route(explanation, node))
        else:
            self._local(admin.error("42601", f"unknown pgtwist command: {arg[:60]}"))
        return None

    # -- backend side ----------------------------------------------------------------------------
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
            if self._any_held:
                self._resume_held()
        except Exception:
            log.failure("unexpected error relaying server data")
            self.fatal(INTERNAL_ERROR, "internal error in pgtwist; the session was closed")

    def _events(self, link: BackendLink, events) -> None:
        s = self.session
        for code, body in events:
            if code == codes.READY_FOR_QUERY:
                if link.inflight:
                    link.inflight -= 1
                status = body[0]
                link.txn_status = status
                if link is self.copy_link:
                    self.copy_link = None
                if link is self.primary_link:
                    s.txn_status = status
                    self.router.after_ready(s, status, not self.ordering.busy(link))
                    if status == codes.TXN_IDLE:
                        s.failed_elsewhere = False
                elif status == codes.TXN_FAILED and link in self.ordering.failed:
                    # The client saw this standby's error inside its transaction: the
                    # transaction is aborted for it, whichever node the next statement
                    # would reach (protocol-pitfalls: 25P02 until ROLLBACK).
                    s.failed_elsewhere = True
            elif code == codes.PARAMETER_STATUS:
                if link is self.primary_link:
                    name, value = m.decode_parameter_status(body)
                    s.parameters[name] = value
            elif code == codes.PARSE_COMPLETE:
                if link.pending_parses:
                    link.pending_parses.popleft()
            elif code == codes.ERROR_RESPONSE:
                if link.pending_parses:
                    # The server skips to Sync: the Parses not yet answered never happened.
                    for stmt in link.pending_parses:
                        stmt.nodes.discard(link.node_id)
                    link.pending_parses.clear()
                if body.startswith(_FATAL_MARKERS) or b"\0SFATAL\0" in body \
                        or b"\0SPANIC\0" in body:
                    link.fatal_seen = True
                if link is self.primary_link and b"\0C25006\0" in body:
                    # "read-only transaction" from the node we took for the primary: after a
                    # failover the old writer comes back as a reader under the same name.
                    self.proxy.cluster.suspect_primary(link.node_id)
            elif code == codes.COPY_IN_RESPONSE or code == codes.COPY_BOTH_RESPONSE:
                self.copy_link = link

    @property
    def _any_held(self) -> bool:
        return any(link.held for link in self.links.values())

    def _resume_held(self) -> None:
        """Resume links paused for holding too much, once their turn has come."""
        fifo = self.ordering.fifo
        head = fifo[0].link if fifo else None
        for other in self.links.values():
            if other.held and not other.closed and (other is head or head is None):
                other.held = False
                if not self.links_paused:
                    other.transport.resumeProducing()

    def link_lost(self, link: BackendLink, reason) -> None:
        if self.links.get(link.node_id) is link:
            del self.links[link.node_id]
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

    # -- cancel & shutdown -----------------------------------------------------------------------
    def cancel_backends(self) -> None:
        for link in list(self.links.values()):
            if self.ordering.busy(link) or link.inflight:
                log.debug("session {pid}: cancelling node {node} (inflight {n})",
                          pid=self.session.pid, node=link.node_id, n=link.inflight)
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
        if link.inflight or link is self.copy_link or self.ordering.busy(link):
            self.proxy.send_cancel(link)
            if link is self.copy_link:
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
            if not link.closed and not link.held:
                link.transport.resumeProducing()

    def stopProducing(self) -> None:
        self.relay.links_paused = False
