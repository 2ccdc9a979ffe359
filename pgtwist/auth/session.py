"""Client authentication for one session, and the secret its backend logins use.

With ``enable_pool_hba`` on, the first matching pool_hba.conf line picks the
method (trust, reject, password, md5, scram-sha-256, cert) and pgtwist
authenticates the client itself before it opens any backend link.  With it
off, pgtwist does what Pgpool-II does: it logs in to the primary first and asks
the client for the same kind of credentials the primary asked pgtwist for.

Secrets come from pool_passwd (plain, TEXT, md5 or AES entries) or, when
``auth_user`` is set and the user has no entry, from ``auth_query`` run on the
primary: the user's SCRAM verifier (or md5 hash) as stored in pg_authid.  A
SCRAM exchange against a verifier yields the client's ClientKey, which then
logs in to every backend holding the same verifier: no password is stored
anywhere in pgtwist's files.
"""

from __future__ import annotations

from twisted.internet import defer

from ..conn.auth import Secret
from ..conn.backend import LoginFailed
from ..conn.client_auth import AuthSecret, ClientAuthenticator, ClientAuthFailed
from ..logs import logger
from ..tls import peer_common_name
from ..wire import codes
from ..wire import messages as m
from ..wire.decode import check_cstring, decode_fields
from ..wire.errors import INVALID_AUTHORIZATION, INVALID_PASSWORD, ProtocolViolation
from .hba import match as hba_match

log = logger(__name__)

_AUTH_QUERY_PARAMS = {
    "application_name": "pgtwist",
    "client_encoding": "UTF8",
    "options": "-c search_path=pg_catalog -c standard_conforming_strings=on",
}


class SecretLookupFailed(Exception):
    """auth_query could not run (auth_user refused, server full, timeout...)."""


class AuthRefused(Exception):
    """Authentication failed; ``sqlstate`` and ``message`` go to the client as FATAL."""

    def __init__(self, sqlstate: str, message: str, log_message: str | None = None):
        super().__init__(message)
        self.sqlstate = sqlstate
        self.message = message
        self.log_message = log_message or message


def auth_secret_from_entry(entry) -> AuthSecret | None:
    """A pool_passwd entry as the client-side authenticator wants it."""
    if entry is None:
        return None
    if entry.kind == "md5":
        return AuthSecret(md5=entry.secret)
    if entry.kind == "scram":
        return AuthSecret(scram_verifier=entry.secret)
    text = entry.plaintext()
    return AuthSecret(plaintext=text) if text is not None else None


def backend_secret(secret: AuthSecret | None, authenticator=None) -> Secret | None:
    """What backend logins use after the client proved itself."""
    if authenticator is not None and getattr(authenticator, "password", None):
        return Secret(plaintext=authenticator.password)
    if secret is None:
        return None
    if secret.plaintext is not None:
        return Secret(plaintext=secret.plaintext)
    client_key = getattr(authenticator, "client_key", None)
    if client_key is not None and secret.scram_verifier:
        return Secret(client_key=client_key, scram_verifier=secret.scram_verifier)
    if secret.md5:
        return Secret(md5=secret.md5)
    return None


class SessionAuth:
    """Runs one client's authentication; the relay feeds it PasswordMessage bodies."""

    def __init__(self, relay):
        self.relay = relay
        self.proxy = relay.proxy
        self.session = relay.session
        self.authenticator: ClientAuthenticator | None = None
        self._result: defer.Deferred | None = None
        self._collect: defer.Deferred | None = None
        self.secret: AuthSecret | None = None
        self.method: str | None = None   # the method of the exchange (metrics)
        self._gated: defer.Deferred | None = None

    # -- the secret ----------------------------------------------------------------------
    @defer.inlineCallbacks
    def lookup_secret(self):
        """The user's AuthSecret: pool_passwd first, then auth_query on the primary.

        None means the user has no usable secret (no entry, no row, expired, NOLOGIN,
        PASSWORD NULL).  An auth_query that could not run raises SecretLookupFailed:
        the caller must refuse, never treat it as "no password needed".
        """
        user = self.session.user
        found = auth_secret_from_entry(self.proxy.passwd_entry(user))
        if found is not None:
            return found
        options = self.proxy.config.auth
        auth_user = options.auth_user
        if not auth_user:
            return None
        primary = self.proxy.cluster.primary
        if primary is None:
            raise SecretLookupFailed("no primary is known to run auth_query on")
        rows = yield self._auth_query(primary, auth_user, options.auth_query)
        if not rows or len(rows[0]) < 2 or not rows[0][1]:
            return None  # unknown user, expired (VALID UNTIL), or no password
        stored = rows[0][1]
        if stored.startswith("SCRAM-SHA-256$"):
            return AuthSecret(scram_verifier=stored)
        if stored.startswith("md5") and len(stored) == 35:
            return AuthSecret(md5=stored)
        return None

    @defer.inlineCallbacks
    def _auth_query(self, primary, auth_user: str, sql: str):
        """Rows of auth_query, the client's user name bound as $1 (never spliced into SQL).

        It runs on a pooled link of auth_user's (pgtwist's own, never a client's), so it
        counts against backend_max_connections and the connect pacing; and it holds one
        of the claimed user's pre-authentication slots while it runs.
        """
        pooling, user = self.proxy.pooling, self.session.user
        yield self.gate()
        try:
            link = yield pooling.checkout_internal(
                auth_user, self.session.database, primary, self.proxy.secret_for(auth_user),
                _AUTH_QUERY_PARAMS, "auth_query")
            rows = yield _BoundQuery(link, pooling).run(sql, user)
        except Exception as exc:  # noqa: BLE001 - any failure refuses the client
            log.warn("auth_query as {auth_user} failed: {why}", auth_user=auth_user,
                     why=getattr(exc, "message", None) or exc)
            raise SecretLookupFailed(str(exc)) from None
        finally:
            self.ungate()
        return rows

    def gate(self) -> defer.Deferred:
        """Wait for one of the claimed user's pre-authentication server slots."""
        d = self.proxy.pooling.pre_auth.acquire(self.session.user)
        self._gated = d
        return d

    def ungate(self) -> None:
        d, self._gated = self._gated, None
        if d is None:
            return
        if d.called:
            self.proxy.pooling.pre_auth.release(self.session.user)
        else:
            d.cancel()

    def release(self) -> None:
        """The session ends: give back a pre-authentication slot it still holds."""
        self.ungate()

    # -- the exchange ------------------------------------------------------------------------
    def method_for_session(self) -> str | None:
        """The pool_hba.conf method, or None when pool_hba is off (follow the primary)."""
        if not self.proxy.config.enable_pool_hba:
            return None
        s = self.session
        rule = hba_match(
            self.proxy.hba_rules, conn_type="host" if s.client_ip else "local", ssl=s.ssl,
            client_ip=s.client_ip, database=s.database, user=s.user,
        )
        ssl = "on" if s.ssl else "off"
        if rule is None:
            raise AuthRefused(
                INVALID_AUTHORIZATION,
                f'no pool_hba.conf entry for host "{s.client_ip or "[local]"}", user "{s.user}", '
                f'database "{s.database}", SSL {ssl}',
            )
        if rule.method == "reject":
            raise AuthRefused(
                INVALID_AUTHORIZATION,
                f'pool_hba.conf rejects connection for host "{s.client_ip or "[local]"}", '
                f'user "{s.user}", database "{s.database}", SSL {ssl}',
            )
        return rule.method

    def check_cert(self) -> None:
        s = self.session
        self.method = "cert"
        name = peer_common_name(self.relay.transport) if s.ssl else None
        if name != s.user:
            raise AuthRefused(
                INVALID_AUTHORIZATION, f'certificate authentication failed for user "{s.user}"',
                log_message=f'certificate CN {name!r} does not match user "{s.user}"',
            )

    def begin(self, method: str, secret: AuthSecret | None,
              collect_only: bool = False) -> tuple[bytes, defer.Deferred]:
        """Start ``method``; returns the first message for the client and a Deferred that
        fires with the backend Secret once the client is authenticated.

        ``collect_only``: just ask for a clear-text password and hand it on to the
        backends, which judge it (allow_clear_text_frontend_auth).
        """
        self.secret = secret
        self.method = method
        if collect_only:
            self._collect = defer.Deferred()
            self._result = self._collect
            self._read_pipelined()
            return m.authentication(codes.AUTH_CLEARTEXT), self._collect
        channel = None
        server_tls = self.proxy.server_tls
        if self.session.ssl and server_tls is not None:
            channel = server_tls.channel_binding
        self.authenticator = ClientAuthenticator(
            method, self.session.user, secret_lookup=lambda _user: secret,
            channel_binding=channel,
        )
        self._result = defer.Deferred()
        first = self.authenticator.start()
        if self.authenticator.done:
            self._finish()
        else:
            self._read_pipelined()
        return first, self._result

    def _read_pipelined(self) -> None:
        """Input the client sent before being asked is read once the caller has written
        the request, as PostgreSQL would read it then."""
        if self.relay.machine.leftover:
            self.proxy.reactor.callLater(0, self.relay.client_data, b"")

    def receive(self, body: bytes) -> None:
        """A PasswordMessage-family body from the client; the reply is written here.

        It must reach the client before anything the finished exchange sets off
        (SASLFinal comes before AuthenticationOk), so it is written first.
        """
        if self._collect is not None and not self._collect.called:
            try:
                password = check_cstring(body, "PasswordMessage").decode("utf-8")
            except UnicodeDecodeError:
                raise ProtocolViolation("invalid password encoding") from None
            self._collect.callback(Secret(plaintext=password))
            return
        authenticator = self.authenticator
        if authenticator is None or authenticator.done:
            raise ProtocolViolation("unexpected password message")
        try:
            reply = authenticator.receive(body)
        except ClientAuthFailed as exc:
            log.info("authentication of {user} failed: {why}", user=self.session.user,
                     why=getattr(exc, "log_message", None) or exc.message)
            self._result.errback(AuthRefused(exc.sqlstate or INVALID_PASSWORD, exc.message))
            return
        if reply:
            self.relay.write(reply)
        if authenticator.done:
            self._finish()

    def _finish(self) -> None:
        if not self._result.called:
            self._result.callback(backend_secret(self.secret, self.authenticator))

    @property
    def expecting(self) -> str | None:
        """The message the client was asked for and not yet sent ("SASL" or "password"
        response), or None while pgtwist asks nothing (it then reads nothing, as
        PostgreSQL reads pipelined bytes only when it gets to them)."""
        if self._collect is not None:
            return None if self._collect.called else "password"
        authenticator = self.authenticator
        if authenticator is None or authenticator.done or self._result.called:
            return None
        return "SASL" if authenticator.effective_method == "scram-sha-256" else "password"


class _BoundQuery:
    """Owner of a pooled link while one extended-protocol query with one text parameter
    runs on it; the link goes back to the pool if it ends idle and unharmed."""

    def __init__(self, link, pooling):
        self.link = link
        self.pooling = pooling
        self.data: list[bytes] = []
        self.error: dict[str, str] | None = None
        self.done: defer.Deferred = defer.Deferred()

    def run(self, sql: str, value: str) -> defer.Deferred:
        value_bytes = value.encode("utf-8")
        self.link.attach(self)
        self.link.write(b"".join((
            m.frame(codes.PARSE, b"\0" + m.cstr(sql) + b"\0\0"),
            m.frame(codes.BIND, b"\0\0" + b"\0\0" + b"\0\1"
                    + len(value_bytes).to_bytes(4, "big") + value_bytes + b"\0\0"),
            m.frame(codes.EXECUTE, b"\0" + b"\0\0\0\0"),
            m.SYNC,
        )))
        return self.done

    def backend_items(self, link, items) -> None:
        for item in items:
            if type(item) is not tuple:
                self.data.append(item)
                continue
            code, body = item
            if code == codes.ERROR_RESPONSE:
                self.error = decode_fields(body)
            elif code == codes.READY_FOR_QUERY:
                link.server.txn_status = body[0]
                self._finish(link)
                return

    def _finish(self, link) -> None:
        ok = self.error is None and self.link.server.txn_status == codes.TXN_IDLE
        self.pooling.release(link, clean=ok, reset=False)
        if self.error is not None:
            self.done.errback(LoginFailed(self.error))
            return
        try:
            self.done.callback(m.query_rows(b"".join(self.data)))
        except m.QueryError as exc:
            self.done.errback(LoginFailed(exc.fields))

    def link_lost(self, link, reason=None) -> None:
        self.pooling.release(link, clean=False)
        if not self.done.called:
            self.done.errback(ConnectionError("the auth_query connection was lost"))
