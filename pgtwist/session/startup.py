"""Session startup: authenticate the client, log in to the primary, say ReadyForQuery.

Glue between the client's relay (its connection: writes, the frontend machine, the
authentication timer) and pgtwist.auth.session.SessionAuth, which works on the relay too.
"""

from __future__ import annotations

from twisted.internet import defer
from twisted.python.failure import Failure

from ..auth.session import AuthRefused, SecretLookupFailed, SessionAuth, backend_secret
from ..conn.backend import LoginFailed, SecretMissing
from ..conn.frontend import (
    FrontendState,
    StartupReceived,
)
from ..logs import logger
from ..pooling.pool import PoolExhausted
from ..protocols.backend import BackendLink
from ..wire import codes
from ..wire import messages as m
from ..wire.errors import (
    CONNECTION_FAILURE,
    FEATURE_NOT_SUPPORTED,
    INTERNAL_ERROR,
    INVALID_AUTHORIZATION,
    PROTOCOL_VIOLATION,
    ProtocolViolation,
)

log = logger(__name__)



class Startup:
    """From StartupMessage to the first ReadyForQuery."""

    def __init__(self, relay, session, links, ordering, mode, router, proxy) -> None:
        self.relay = relay
        self.session = session
        self.links = links
        self.ordering = ordering
        self.mode = mode
        self.router = router
        self.proxy = proxy
        self.config = proxy.config

    def start(self, event: StartupReceived) -> None:
        s = self.session
        params = dict(event.params)
        if params.get("replication", "false").lower() not in ("false", "off", "0", "no"):
            raise ProtocolViolation("pgtwist does not proxy replication connections",
                                    FEATURE_NOT_SUPPORTED)
        s.user = params.pop("user")
        # PostgreSQL: a missing or empty database is the user's name, before hba
        # matching, pool keys and the backend login see it.
        s.database = params["database"] = params.get("database") or s.user
        s.startup_params = params
        if event.minor_version > 0 or event.unsupported_options:
            # PostgreSQL puts the whole newest version (3.0) here; libpq 18 reads it so.
            self.relay.write(m.negotiate_protocol_version(
                codes.PROTOCOL_3_0, [o.encode() for o in event.unsupported_options]
            ))
        if self.config.params.get("ssl_require") and not s.ssl and s.client_ip:
            self.relay.fatal(INVALID_AUTHORIZATION, "pgtwist accepts only SSL connections")
            return
        self.relay.auth = SessionAuth(self.relay)
        d = self._authenticate()
        d.addCallbacks(self._startup_done, self._startup_failed)

    @defer.inlineCallbacks
    def _authenticate(self):
        """Authenticate the client and log in to the primary; fires with the primary link.

        A client gets in only by proving a secret to pgtwist, by a fresh login of its
        own that the server judged (its ``trust``, or its clear-text password with
        allow_clear_text_frontend_auth), or by pool_hba.conf's own trust/cert.  A cached
        link never stands in for any of these.
        """
        auth, s, proxy = self.relay.auth, self.session, self.proxy
        method = auth.method_for_session()  # pool_hba.conf, or None: follow the primary
        primary = yield proxy.cluster.primary_for()
        if method is None:
            link = yield self._follow_primary(primary)
            return link
        if method == "cert":
            auth.check_cert()
            backend = proxy.secret_for(s.user)
        elif method == "trust":
            backend = proxy.secret_for(s.user)
        else:
            try:
                secret = yield auth.lookup_secret()
            except SecretLookupFailed:
                secret = None  # the exchange is doomed: refused with 28P01 when it ends
            first, done = auth.begin(method, secret)
            self.relay.write(first)
            backend = yield done
        self.links.secret = backend
        link = yield self._open_primary(primary, backend)
        return link

    @defer.inlineCallbacks
    def _follow_primary(self, primary):
        """Pgpool-II without pool_hba: challenge the client the way the primary asks.

        The server's method for (user, database) is learned from a fresh login and
        remembered; ``trust`` is never remembered, so each client it admits has had a
        login of its own.  A client with no secret known is challenged all the same
        (members of pool_passwd and others look alike) and refused, unless
        allow_clear_text_frontend_auth lets the server judge its clear-text password.
        """
        auth, s = self.relay.auth, self.session
        try:
            secret = yield auth.lookup_secret()
            lookup_failed = False
        except SecretLookupFailed:
            secret, lookup_failed = None, True
        if secret is not None and secret.plaintext is None and secret.scram_verifier:
            # Pass-through: only the client's own SCRAM proof can open the backends.
            first, done = auth.begin("scram-sha-256", secret)
            self.relay.write(first)
            self.links.secret = yield done
            link = yield self._open_primary(primary, self.links.secret)
            return link
        backend = backend_secret(secret)
        methods = self.proxy.pooling.server_methods
        method = methods.get(s.user, s.database)
        if method is None:
            try:
                link = yield self._fresh_login(primary, backend)
            except SecretMissing as exc:
                method = exc.method
                log.info("session {pid}: {why}", pid=s.pid, why=exc.fields.get("M", ""))
            else:
                if link is None:
                    return None
                method = link.login.auth_method
                if method == "trust":
                    self.links.secret = backend
                    return self.links.adopt(link, primary)
                # Logged in with pgtwist's secret, but the client has proved nothing
                # yet: the link waits in the pool, not in this session.
                self.proxy.pooling.release(link, clean=True, reset=False)
            methods.put(s.user, s.database, method)
        if secret is None:
            if self.config.params.get("allow_clear_text_frontend_auth"):
                link = yield self._clear_text_login(primary)
                return link
            if lookup_failed:
                log.info("session {pid}: no secret for {user}: auth_query failed",
                         pid=s.pid, user=s.user)
        first, done = auth.begin(method, secret)
        self.relay.write(first)
        yield done  # with no secret the exchange is doomed: AuthRefused 28P01
        self.links.secret = backend
        link = yield self._open_primary(primary, backend)
        return link

    @defer.inlineCallbacks
    def _fresh_login(self, node, secret):
        """A new login as the client's user, made before the client authenticated:
        it holds one of that user's pre-authentication slots while it runs."""
        yield self.relay.auth.gate()
        try:
            link = yield self.proxy.pooling.checkout(self.session, node, secret, fresh=True)
        except LoginFailed as exc:
            self.links.login_failed(node, exc)
            raise
        finally:
            self.relay.auth.ungate()
        if self.session.closed:
            self.proxy.pooling.release(link, clean=True, reset=False)
            return None
        return link

    @defer.inlineCallbacks
    def _clear_text_login(self, primary):
        """allow_clear_text_frontend_auth: the client's clear-text password goes on, and
        only a fresh, never-cached login may judge it."""
        first, done = self.relay.auth.begin("password", None, collect_only=True)
        self.relay.write(first)
        backend = yield done
        self.links.poolable = False
        yield self.relay.auth.gate()
        try:
            link = yield self._open_primary(primary, backend)
        finally:
            self.relay.auth.ungate()
        self.links.secret = backend
        return link

    def _open_primary(self, node, secret):
        if self.session.closed:
            return defer.succeed(None)
        return self.links.open(node, secret)

    def _startup_done(self, link: BackendLink | None) -> None:
        if link is None or self.session.closed:
            return
        if self.relay.auth_timer.active():
            self.relay.auth_timer.cancel()
        self.links.primary = link
        self.ordering.primary = link
        s = self.session
        s.primary_id = link.node_id
        s.parameters.update(link.server.parameters)
        s.txn_status = link.server.txn_status
        key_pid = self.mode.key_pid(link)
        if key_pid is not None and key_pid != s.pid:
            old = s.pid
            if self.proxy.rekey_session(s, key_pid):
                log.debug("session {old} is now {pid}, its primary backend's pid",
                          old=old, pid=key_pid)
        s.lb_node, reason = self.router.choose_lb_node(s)
        log.debug("session {pid}: load-balance node {node} ({reason})", pid=s.pid,
                  node=s.lb_node, reason=reason)
        out = [m.AUTH_OK]
        out.extend(link.login.parameter_frames)
        out.append(m.backend_key_data(s.pid, s.secret))
        out.append(m.ready_for_query(link.server.txn_status))
        self.relay.machine.authenticated()
        self.relay.write(b"".join(out))
        self.relay.slog.authorized()
        self.mode.release_idle(link)  # transaction mode: not needed until a query
        if self.relay.machine.leftover:
            self.relay.client_data(b"")  # what the client pipelined after its StartupMessage

    def _startup_failed(self, failure: Failure) -> None:
        if self.session.closed:
            return
        if failure.check(PoolExhausted):
            exc = failure.value
            log.warn("session {pid}: {msg}", pid=self.session.pid, msg=exc.message)
            self.relay.fatal(exc.sqlstate, exc.message)
            return
        if failure.check(AuthRefused):
            self._count_auth_failure("pool_hba")
            exc = failure.value
            log.info("session {pid}: authentication of {user} refused: {msg}",
                     pid=self.session.pid, user=self.session.user, msg=exc.log_message)
            self.relay.fatal(exc.sqlstate, exc.message)
            return
        if failure.check(LoginFailed):
            exc = failure.value
            if str(exc.sqlstate or "").startswith("28"):
                self._count_auth_failure("backend")  # the server refused the client's login
            log.info("session {pid}: login as {user} failed: {msg}", pid=self.session.pid,
                     user=self.session.user, msg=exc.fields.get("M", ""))
            self.relay.send_and_close(exc.raw or self._fatal_frame(exc.fields))
            return
        log.failure("session startup failed", failure)
        self.relay.fatal(INTERNAL_ERROR, "internal error in pgtwist during session startup")

    def _count_auth_failure(self, unstarted: str) -> None:
        """Authentication failures by method: the exchange's, else ``unstarted``
        (pool_hba.conf refused before any exchange, or the server judged the login)."""
        stats = getattr(self.proxy, "stats", None)
        if stats is not None:
            stats.auth_failed(getattr(self.relay.auth, "method", None) or unstarted)

    @staticmethod
    def _fatal_frame(fields: dict[str, str]) -> bytes:
        return m.error_response(
            fields.get("C", CONNECTION_FAILURE), fields.get("M", "connection failed"), "FATAL",
            detail=fields.get("D"), hint=fields.get("H"),
        )

    def auth_timeout(self) -> None:
        if self.relay.machine.state is not FrontendState.READY and not self.session.closed:
            self.relay.fatal(PROTOCOL_VIOLATION, "canceling authentication due to timeout")
