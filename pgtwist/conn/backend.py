"""Sans-IO login of pgtwist to a PostgreSQL server.

Fed the watched frames of a ``BackendScanner`` during startup, it answers
authentication requests and collects ParameterStatus and BackendKeyData until
the first ReadyForQuery.  It never sees a socket.
"""

from __future__ import annotations

import enum

from scramp import ScramException

from ..wire import codes
from ..wire import messages as m
from ..wire.decode import (
    decode_auth,
    decode_backend_key_data,
    decode_fields,
    decode_parameter_status,
    decode_sasl_mechanisms,
)
from ..wire.errors import INVALID_PASSWORD, PROTOCOL_VIOLATION, ProtocolViolation
from .auth import SCRAM_MECHANISM, ScramExchange, Secret, md5_response
from .scram import KeyScramClient, ScramError, VerifierMismatch


class LoginState(enum.Enum):
    AUTHENTICATING = "authenticating"
    AUTHENTICATED = "authenticated"   # AuthenticationOk seen, waiting for ReadyForQuery
    READY = "ready"
    FAILED = "failed"


class LoginFailed(Exception):
    """The server refused the login; ``fields`` are its ErrorResponse fields.

    ``raw`` holds the server's own ErrorResponse frame when there was one, so it
    can be passed to the client unchanged.
    """

    def __init__(self, fields: dict[str, str], raw: bytes | None = None):
        super().__init__(fields.get("M", "login failed"))
        self.fields = fields
        self.raw = raw

    @property
    def sqlstate(self) -> str:
        return self.fields.get("C", PROTOCOL_VIOLATION)


class SecretMissing(LoginFailed):
    """The server asked for a password-based ``method`` that pgtwist holds no secret for.

    Its message is for the log only: sent to a client it would tell pool_passwd members
    from other users.
    """

    def __init__(self, method: str, message: str):
        super().__init__({"S": "FATAL", "C": INVALID_PASSWORD, "M": message})
        self.method = method


def _failure(sqlstate: str, message: str) -> LoginFailed:
    return LoginFailed({"S": "FATAL", "C": sqlstate, "M": message})


class BackendLogin:
    """State machine for one server login.

    ``startup()`` gives the StartupMessage; ``receive(code, body)`` consumes one
    watched frame and returns bytes to send back (or ``b""``).  Failure raises
    :class:`LoginFailed`; success leaves ``state`` READY with ``parameters``,
    ``backend_pid``, ``backend_secret`` and ``txn_status`` filled.
    """

    def __init__(self, user: str, params: dict[str, str], secret: Secret | None):
        self.user = user
        self.params = params
        self.secret = secret
        self.state = LoginState.AUTHENTICATING
        self.parameters: dict[str, str] = {}
        self.parameter_frames: list[bytes] = []
        self.backend_pid = 0
        self.backend_secret = 0
        self.txn_status = codes.TXN_IDLE
        self.auth_method = "trust"
        self.scram_pass_through = False  # SCRAM done with a ClientKey, not a password
        self._scram: ScramExchange | KeyScramClient | None = None

    def startup(self) -> bytes:
        return m.startup_message({"user": self.user, **self.params})

    def receive(self, code: int, body: bytes) -> bytes:
        try:
            return self._receive(code, body)
        except ProtocolViolation as exc:
            # A malformed server frame is a failed login, never an escaping error.
            self.state = LoginState.FAILED
            raise _failure(PROTOCOL_VIOLATION, f"server sent a malformed message: {exc.message}") from None
        except LoginFailed:
            self.state = LoginState.FAILED
            raise

    def _receive(self, code: int, body: bytes) -> bytes:
        if code == codes.ERROR_RESPONSE:
            self.state = LoginState.FAILED
            raise LoginFailed(decode_fields(body), m.frame(code, body))
        if self.state is LoginState.AUTHENTICATING:
            if code == codes.AUTHENTICATION:
                return self._auth(body)
            if code == codes.NEGOTIATE_PROTOCOL_VERSION:
                return b""  # we asked for 3.0 without options; nothing to adjust
            raise self._unexpected(code)
        if self.state is LoginState.AUTHENTICATED:
            if code == codes.PARAMETER_STATUS:
                name, value = decode_parameter_status(body)
                self.parameters[name] = value
                self.parameter_frames.append(m.frame(code, body))
                return b""
            if code == codes.BACKEND_KEY_DATA:
                self.backend_pid, self.backend_secret = decode_backend_key_data(body)
                return b""
            if code == codes.READY_FOR_QUERY:
                self.txn_status = body[0] if body else codes.TXN_IDLE
                self.state = LoginState.READY
                return b""
        raise self._unexpected(code)

    def _unexpected(self, code: int) -> LoginFailed:
        self.state = LoginState.FAILED
        name = codes.BACKEND_NAMES.get(code, repr(chr(code)))
        return _failure(PROTOCOL_VIOLATION, f"server sent unexpected {name} during login")

    def _need_password(self, method: str) -> str:
        if self.secret is None or self.secret.plaintext is None:
            self.state = LoginState.FAILED
            if self.secret is not None and self.secret.can_scram_pass_through:
                why = "only a SCRAM key (SCRAM pass-through) is known, which cannot drive it"
            elif self.secret is not None and self.secret.md5:
                why = "pool_passwd holds only an md5 hash, which cannot drive it"
            else:
                why = "pool_passwd has no password for that user"
            raise SecretMissing(
                self.auth_method,
                f'the server asks for {method} authentication for user "{self.user}", but {why}',
            )
        return self.secret.plaintext

    def _auth(self, body: bytes) -> bytes:
        subtype, payload = decode_auth(body)
        if subtype == codes.AUTH_OK:
            if self._scram is not None:
                self.state = LoginState.FAILED
                raise _failure(PROTOCOL_VIOLATION, "server skipped the final SCRAM message")
            self.state = LoginState.AUTHENTICATED
            return b""
        if subtype == codes.AUTH_CLEARTEXT:
            self.auth_method = "password"
            return m.password_message(self._need_password("password").encode("utf-8") + b"\0")
        if subtype == codes.AUTH_MD5:
            self.auth_method = "md5"
            if len(payload) != 4:
                raise _failure(PROTOCOL_VIOLATION, "invalid md5 salt from server")
            answer = md5_response(self.secret or Secret(), self.user, payload)
            if answer is None:
                self._need_password("md5")
            return m.password_message(answer)
        if subtype == codes.AUTH_SASL:
            self.auth_method = "scram-sha-256"
            mechanisms = decode_sasl_mechanisms(payload)
            if SCRAM_MECHANISM not in mechanisms:
                self.state = LoginState.FAILED
                raise _failure(
                    PROTOCOL_VIOLATION,
                    f"server offers no supported SASL mechanism ({', '.join(mechanisms)})",
                )
            secret = self.secret
            if secret is not None and secret.plaintext is None and secret.can_scram_pass_through:
                try:
                    self._scram = KeyScramClient(self.user, secret.client_key, secret.scram_verifier)
                except ScramError as exc:
                    self.state = LoginState.FAILED
                    raise _failure(
                        INVALID_PASSWORD,
                        f'SCRAM pass-through for user "{self.user}" is impossible: {exc}',
                    ) from None
                self.scram_pass_through = True
            else:
                self._scram = ScramExchange(self.user, self._need_password("SCRAM-SHA-256"))
            return m.sasl_initial_response(SCRAM_MECHANISM, self._scram.first())
        if subtype == codes.AUTH_SASL_CONTINUE and self._scram is not None:
            try:
                return m.password_message(self._scram.final(payload))
            except VerifierMismatch as exc:
                self.state = LoginState.FAILED
                raise _failure(
                    INVALID_PASSWORD, f'SCRAM pass-through for user "{self.user}" failed: {exc}'
                ) from None
            except (ScramException, ScramError) as exc:
                self.state = LoginState.FAILED
                raise _failure(PROTOCOL_VIOLATION, f"SCRAM exchange failed: {exc}") from None
        if subtype == codes.AUTH_SASL_FINAL and self._scram is not None:
            try:
                self._scram.verify(payload)
            except (ScramException, ScramError):
                self.state = LoginState.FAILED
                raise _failure(
                    INVALID_PASSWORD, "server's SCRAM signature did not verify"
                ) from None
            self._scram = None
            return b""
        self.state = LoginState.FAILED
        raise _failure(
            PROTOCOL_VIOLATION, f"server requested an unsupported authentication method ({subtype})"
        )


__all__ = ["BackendLogin", "LoginFailed", "LoginState", "ProtocolViolation", "SecretMissing"]
