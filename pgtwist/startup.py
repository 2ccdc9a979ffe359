"""Session startup: authenticate the client, log in to the primary, say ReadyForQuery."""

from __future__ import annotations

from twisted.internet import defer
from twisted.python.failure import Failure

from .auth import AuthRefused, SessionAuth, backend_secret
from .conn.backend import LoginFailed
from .conn.frontend import (
    FrontendState,
    StartupReceived,
)
from .logs import logger
from .pool import PoolExhausted
from .protocols.backend import BackendLink
from .wire import codes
from .wire import messages as m
from .wire.errors import (
    CONNECTION_FAILURE,
    FEATURE_NOT_SUPPORTED,
    INTERNAL_ERROR,
    INVALID_AUTHORIZATION,
    INVALID_PASSWORD,
    PROTOCOL_VIOLATION,
    ProtocolViolation,
)

log = logger(__name__)



class SessionStartup:
    """Mixin for Relay: from StartupMessage to the first ReadyForQuery."""

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
            # allow_clear_text_frontend_auth: the client's clear-text password goes on,
            # and only a fresh login (never a cached link) may judge it.
            first, done = auth.begin("password", None, collect_only=True)
            self.write(first)
            backend = yield done
            self.poolable = False
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
        if self.txn_pooling:
            self._tx_release_idle(link)  # logged in: the link is not needed until a query
        if self.machine.leftover:
            self.client_data(b"")  # what the client pipelined after its StartupMessage

    def _startup_failed(self, failure: Failure) -> None:
        if self.closed:
            return
        if failure.check(PoolExhausted):
            exc = failure.value
            log.warn("session {pid}: {msg}", pid=self.session.pid, msg=exc.message)
            self.fatal(exc.sqlstate, exc.message)
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
