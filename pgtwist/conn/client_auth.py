"""Sans-IO authentication of a client, with pgtwist in the server's seat.

One :class:`ClientAuthenticator` per login: ``start()`` gives the first
Authentication request, ``receive(body)`` takes each PasswordMessage-family
body and gives the reply, until ``done``; the caller then sends
AuthenticationOk.  Failures raise :class:`ClientAuthFailed` with PostgreSQL's
own client-facing texts (the reason goes to ``log_message``), malformed
messages raise :class:`ProtocolViolation`.

It behaves like PostgreSQL's auth.c / auth-scram.c where a client can tell:
an unknown user, a user without a usable secret and a wrong password all get
the same exchange and the same 28P01 error; a SCRAM exchange for an unknown
user uses a salt derived from the user name and a server secret, so it is as
stable as a real one.  Against a stored verifier the exchange also recovers
the client's ClientKey (``client_key``), which logs in to backends holding the
same verifier (see :mod:`pgtwist.conn.scram`).

The client's SCRAM messages are read by :mod:`pgtwist.conn.scram_reader` rather than
by scramp's ScramServer: scramp refuses libpq's empty ``n=`` user name and iteration
counts under 4096 (PostgreSQL allows both), and keeps the AuthMessage and proof to
itself.  The tests run scramp's client against it.
"""

from __future__ import annotations

import base64
import enum
import functools
import hashlib
import hmac
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from hmac import compare_digest

from ..wire import codes
from ..wire import messages as m
from ..wire.decode import Reader, decode_sasl_initial_response
from ..wire.errors import (
    INVALID_AUTHORIZATION,
    INVALID_PASSWORD,
    ProtocolViolation,
)
from . import scram
from .auth import SCRAM_MECHANISM, Secret
from .scram_reader import read_client_final, read_client_first

__all__ = ["AuthSecret", "ClientAuthFailed", "ClientAuthenticator", "METHODS", "SCRAM_PLUS"]

SCRAM_PLUS = SCRAM_MECHANISM + "-PLUS"
METHODS = ("trust", "reject", "password", "md5", "scram-sha-256")
MAX_AUTH_MESSAGE = 65535  # PostgreSQL's PG_MAX_AUTH_TOKEN_LENGTH
_NONCE_BYTES = 18  # PostgreSQL's SCRAM_RAW_NONCE_LEN
_SALT_BYTES = 16  # PostgreSQL's SCRAM_DEFAULT_SALT_LEN
_ZERO_KEY = bytes(scram.KEY_LENGTH)

# Per process unless the caller passes one: workers sharing a port should share it,
# or an unknown user's fake salt would change with the worker that answers.
_PROCESS_MOCK_SECRET = secrets.token_bytes(32)


# PBKDF2 costs milliseconds; a stream of startups naming one user must not keep the event
# loop hashing, so the verifier derived from a (password, salt, iterations) is kept.
_derived_verifier = functools.lru_cache(maxsize=1024)(scram.derive_verifier)


@dataclass(frozen=True)
class AuthSecret:
    """What pgtwist knows to check a client's password (pool_passwd or auth_query).

    ``md5`` is ``'md5' + md5(password || user)``; ``scram_verifier`` is
    ``pg_authid.rolpassword``'s ``SCRAM-SHA-256$...`` text.
    """

    plaintext: str | None = None
    md5: str | None = None
    scram_verifier: str | None = None

    def __repr__(self) -> str:  # never show a secret
        def shown(value: str | None) -> str:
            return "set" if value else "None"

        return (
            f"AuthSecret(plaintext={shown(self.plaintext)}, md5={shown(self.md5)}, "
            f"scram_verifier={shown(self.scram_verifier)})"
        )


class ClientAuthFailed(Exception):
    """The client is refused: send ``message`` as a FATAL error with ``sqlstate``.

    ``log_message`` says why, for pgtwist's log only (never for the client).
    """

    def __init__(self, sqlstate: str, message: str, log_message: str | None = None):
        super().__init__(message)
        self.sqlstate = sqlstate
        self.message = message
        self.log_message = log_message or message

    def error_response(self) -> bytes:
        """The FATAL ErrorResponse frame PostgreSQL would send."""
        return m.error_response(self.sqlstate, self.message, severity="FATAL")


class _State(enum.Enum):
    NEW = "new"
    PASSWORD = "password"          # AuthenticationCleartextPassword sent
    MD5 = "md5"                    # AuthenticationMD5Password sent
    SASL_INITIAL = "sasl-initial"  # AuthenticationSASL sent
    SASL_RESPONSE = "sasl-response"  # AuthenticationSASLContinue sent
    DONE = "done"
    FAILED = "failed"


def _valid_md5(value: str | None) -> bool:
    return bool(value) and len(value) == 35 and value.startswith("md5") and all(
        c in "0123456789abcdef" for c in value[3:].lower()
    )


class ClientAuthenticator:
    """Authenticate one client with ``method`` for ``user``.

    ``secret_lookup(user)`` returns an :class:`AuthSecret` or None (unknown
    user); it is called once, by ``start()``.  ``rng(n)`` gives ``n`` random
    bytes (md5 salts, SCRAM nonces).  ``channel_binding`` is the
    tls-server-end-point data of pgtwist's certificate when the client is on
    TLS (see :func:`pgtwist.conn.scram.tls_server_end_point`); it makes pgtwist
    offer SCRAM-SHA-256-PLUS.  ``mock_secret`` seeds the fake SCRAM salts
    (share it between worker processes); ``scram_iterations`` is used for
    verifiers derived from clear-text secrets and for fake exchanges.

    An md5 method for a user whose only secret is a SCRAM verifier runs SCRAM,
    as PostgreSQL and PgBouncer do (``effective_method`` tells).
    """

    def __init__(
        self,
        method: str,
        user: str,
        *,
        secret_lookup: Callable[[str], AuthSecret | None],
        rng: Callable[[int], bytes] = secrets.token_bytes,
        channel_binding: bytes | None = None,
        mock_secret: bytes | None = None,
        scram_iterations: int = 4096,
    ):
        if method not in METHODS:
            raise ValueError(f"unsupported client authentication method {method!r}")
        if channel_binding is not None and not channel_binding:
            raise ValueError("channel_binding data must not be empty")
        self.method = method
        self.effective_method = method
        self.user = user
        self._lookup = secret_lookup
        self._rng = rng
        self._cbind = channel_binding
        self._mock_secret = _PROCESS_MOCK_SECRET if mock_secret is None else mock_secret
        self._iterations = scram_iterations
        self._state = _State.NEW
        self.secret: AuthSecret | None = None
        self.done = False
        self.password: str | None = None
        self.client_key: bytes | None = None
        # Set when the exchange can only fail (unknown user, unusable secret): the reason.
        self._doomed: str | None = None
        self._md5_salt = b""
        self._md5_inner = b""
        self._verifier: scram.Verifier | None = None
        self._pass_through = False
        self._mechanisms: tuple[str, ...] = ()
        self._gs2_header = b""
        self._client_first_bare = b""
        self._server_first = b""
        self._nonce = b""

    # -- public ------------------------------------------------------------------------

    def start(self) -> bytes:
        """The Authentication request(s) to send first; ``b""`` (and ``done``) for trust."""
        if self._state is not _State.NEW:
            raise RuntimeError("start() called twice")
        if self.method == "trust":
            self._state = _State.DONE
            self.done = True
            return b""
        if self.method == "reject":
            self._state = _State.FAILED
            raise ClientAuthFailed(
                INVALID_AUTHORIZATION, f'pool_hba.conf rejects connection for user "{self.user}"'
            )
        self.secret = self._lookup(self.user)
        if self.method == "password":
            self._state = _State.PASSWORD
            return m.authentication(codes.AUTH_CLEARTEXT)
        if self.method == "md5":
            if self._md5_possible() or not self._field("scram_verifier"):
                return self._start_md5()
            self.effective_method = "scram-sha-256"
        return self._start_scram()

    def receive(self, body: bytes) -> bytes:
        """One PasswordMessage / SASLInitialResponse / SASLResponse body; the reply.

        When ``done`` turns true the caller sends AuthenticationOk after the reply.
        """
        handler = self._HANDLERS.get(self._state)
        if handler is None:
            raise ProtocolViolation("unexpected password message")
        if len(body) > MAX_AUTH_MESSAGE:
            self._state = _State.FAILED
            raise ProtocolViolation("invalid message length")
        try:
            reply = handler(self, bytes(body))
        except (ClientAuthFailed, ProtocolViolation):
            self._state = _State.FAILED
            raise
        return reply

    def backend_secret(self) -> Secret | None:
        """After success: what backend logins can use (clear text, ClientKey or md5)."""
        if not self.done:
            return None
        secret = self.secret if self.method != "trust" else self._lookup(self.user)
        plaintext = self.password if self.password is not None else self._field("plaintext", secret)
        md5 = self._field("md5", secret)
        verifier = self._field("scram_verifier", secret) if self.client_key else None
        if plaintext is None and md5 is None and verifier is None:
            return None
        return Secret(
            plaintext=plaintext, md5=md5,
            client_key=self.client_key if verifier else None, scram_verifier=verifier,
        )

    # -- helpers -------------------------------------------------------------------------

    def _field(self, name: str, secret: object = None) -> str | None:
        return getattr(secret if secret is not None else self.secret, name, None) or None

    def _failed(self, log_message: str) -> ClientAuthFailed:
        self._state = _State.FAILED
        return ClientAuthFailed(
            INVALID_PASSWORD, f'password authentication failed for user "{self.user}"',
            log_message,
        )

    def _missing(self) -> str:
        """Why an exchange is doomed when the user has no usable secret."""
        if self.secret is None:
            return f'Role "{self.user}" does not exist.'
        return f'User "{self.user}" has no password assigned.'

    def _mock_salt(self) -> bytes:
        """PostgreSQL's scram_mock_salt idea: stable per user, unguessable without the secret."""
        return hmac.new(self._mock_secret, self.user.encode("utf-8"), hashlib.sha256).digest()[
            :_SALT_BYTES
        ]

    # -- password ------------------------------------------------------------------------

    def _receive_password(self, body: bytes) -> bytes:
        r = Reader(body, "password packet")
        try:
            password = r.cstring()
            r.end()
        except ProtocolViolation:
            raise ProtocolViolation("invalid password packet size") from None
        if not password:
            raise self._failed("empty password returned by client")
        secret = self.secret
        if secret is None:
            raise self._failed(self._missing())
        plaintext = self._field("plaintext")
        md5 = self._field("md5")
        verifier_text = self._field("scram_verifier")
        if plaintext is not None:
            ok = compare_digest(password, plaintext.encode("utf-8"))
        elif md5 is not None:
            mine = b"md5" + hashlib.md5(password + self.user.encode("utf-8")).hexdigest().encode()
            ok = compare_digest(mine, md5.encode("utf-8"))
        elif verifier_text is not None:
            try:
                verifier = scram.parse_verifier(verifier_text)
            except scram.VerifierFormatError as exc:
                raise self._failed(f'User "{self.user}" does not have a valid SCRAM secret: {exc}.') from None
            _, stored_key, _ = scram.password_keys(password, verifier.salt, verifier.iterations)
            ok = compare_digest(stored_key, verifier.stored_key)
        else:
            raise self._failed(self._missing())
        if not ok:
            raise self._failed(f'Password does not match for user "{self.user}".')
        try:
            self.password = password.decode("utf-8")
        except UnicodeDecodeError:
            self.password = None  # right password, but not text pgtwist can replay
        return self._succeed(b"")

    # -- md5 -----------------------------------------------------------------------------

    def _md5_possible(self) -> bool:
        return self._field("plaintext") is not None or _valid_md5(self._field("md5"))

    def _start_md5(self) -> bytes:
        plaintext = self._field("plaintext")
        if plaintext is not None:
            self._md5_inner = hashlib.md5((plaintext + self.user).encode("utf-8")).hexdigest().encode()
        elif _valid_md5(self._field("md5")):
            self._md5_inner = self._field("md5")[3:].lower().encode("ascii")
        elif self._field("md5"):
            self._doomed = f'User "{self.user}" has an md5 password that is not "md5" + 32 hex digits.'
        else:
            self._doomed = self._missing()
        self._md5_salt = self._rng(4)
        self._state = _State.MD5
        return m.authentication(codes.AUTH_MD5, self._md5_salt)

    def _receive_md5(self, body: bytes) -> bytes:
        r = Reader(body, "password packet")
        try:
            answer = r.cstring()
            r.end()
        except ProtocolViolation:
            raise ProtocolViolation("invalid password packet size") from None
        if not answer:
            raise self._failed("empty password returned by client")
        expected = b"md5" + hashlib.md5(self._md5_inner + self._md5_salt).hexdigest().encode()
        ok = compare_digest(answer, expected)
        if self._doomed:
            raise self._failed(self._doomed)
        if not ok:
            raise self._failed(f'Password does not match for user "{self.user}".')
        return self._succeed(b"")

    # -- SCRAM-SHA-256 (RFC 5802, RFC 7677; channel binding RFC 5929) ----------------------

    def _start_scram(self) -> bytes:
        self.effective_method = "scram-sha-256"
        verifier_text = self._field("scram_verifier")
        plaintext = self._field("plaintext")
        if verifier_text is not None:
            try:
                self._verifier = scram.parse_verifier(verifier_text)
                self._pass_through = True
            except scram.VerifierFormatError as exc:
                self._doomed = f'User "{self.user}" does not have a valid SCRAM secret: {exc}.'
        elif plaintext is not None:
            # A stable salt (like a stored verifier's) so known and unknown users look alike.
            self._verifier = _derived_verifier(plaintext, self._mock_salt(), self._iterations)
        elif self._field("md5"):
            self._doomed = (
                f'User "{self.user}" does not have a valid SCRAM secret: only an md5 hash of '
                "the password is known, which cannot drive SCRAM-SHA-256 authentication."
            )
        else:
            self._doomed = self._missing()
        if self._verifier is None:
            self._verifier = scram.Verifier(self._iterations, self._mock_salt(), _ZERO_KEY, _ZERO_KEY)
        self._mechanisms = (SCRAM_PLUS, SCRAM_MECHANISM) if self._cbind else (SCRAM_MECHANISM,)
        self._state = _State.SASL_INITIAL
        payload = b"".join(m.cstr(name) for name in self._mechanisms) + b"\0"
        return m.authentication(codes.AUTH_SASL, payload)

    def _receive_sasl_initial(self, body: bytes) -> bytes:
        mechanism, data = decode_sasl_initial_response(body)
        if mechanism not in self._mechanisms:
            raise ProtocolViolation("client selected an invalid SASL authentication mechanism")
        plus = mechanism == SCRAM_PLUS
        self._gs2_header, bare, client_nonce = read_client_first(
            data, plus=plus, binding_offered=self._cbind is not None)
        # The user name in the message is ignored (libpq sends none): the startup's counts.
        self._client_first_bare = bare
        server_nonce = base64.b64encode(self._rng(_NONCE_BYTES))
        self._nonce = client_nonce + server_nonce
        verifier = self._verifier
        self._server_first = (
            b"r=" + self._nonce + b",s=" + base64.b64encode(verifier.salt)
            + b",i=" + str(verifier.iterations).encode("ascii")
        )
        self._state = _State.SASL_RESPONSE
        return m.authentication(codes.AUTH_SASL_CONTINUE, self._server_first)

    def _receive_sasl_response(self, body: bytes) -> bytes:
        data = body
        proof, without_proof = read_client_final(
            data, gs2_header=self._gs2_header, channel_binding=self._cbind, nonce=self._nonce)
        auth_message = self._client_first_bare + b"," + self._server_first + b"," + without_proof
        verifier = self._verifier
        client_key = scram.recover_client_key(verifier, auth_message, proof)
        if self._doomed:
            raise self._failed(self._doomed)
        if client_key is None:
            raise self._failed(f'Password does not match for user "{self.user}".')
        if self._pass_through:
            self.client_key = client_key
        signature = scram.server_signature(verifier.server_key, auth_message)
        return self._succeed(
            m.authentication(codes.AUTH_SASL_FINAL, b"v=" + base64.b64encode(signature))
        )

    def _succeed(self, reply: bytes) -> bytes:
        self._state = _State.DONE
        self.done = True
        return reply

    _HANDLERS = {
        _State.PASSWORD: _receive_password,
        _State.MD5: _receive_md5,
        _State.SASL_INITIAL: _receive_sasl_initial,
        _State.SASL_RESPONSE: _receive_sasl_response,
    }
