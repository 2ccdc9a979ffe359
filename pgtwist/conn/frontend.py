"""Sans-IO state machine for the client side of a pgtwist connection.

It turns client bytes into events and rejects what the protocol forbids in
the current state with a :class:`ProtocolViolation` (SQLSTATE 08P01).
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass, field

from ..wire import codes
from ..wire import messages as m
from ..wire.decode import decode_startup, validate_frontend
from ..wire.errors import (
    FEATURE_NOT_SUPPORTED,
    INVALID_AUTHORIZATION,
    INVALID_PASSWORD,
    ProtocolViolation,
)
from ..wire.framing import FrameSplitter, StartupSplitter

_III = struct.Struct("!III")
_BI = struct.Struct("!BI")


class FrontendState(enum.Enum):
    STARTUP = "startup"          # waiting for SSLRequest / GSSENCRequest / StartupMessage / CancelRequest
    AUTHENTICATING = "authenticating"  # startup accepted; only PasswordMessage-family frames allowed
    READY = "ready"              # normal operation
    CLOSED = "closed"


@dataclass(frozen=True)
class SSLRequested:
    pass


@dataclass(frozen=True)
class GSSENCRequested:
    pass


@dataclass(frozen=True)
class CancelRequested:
    pid: int
    secret: int


@dataclass(frozen=True)
class StartupReceived:
    params: dict[str, str]
    minor_version: int
    # `_pq_.` protocol options we do not support, to list in NegotiateProtocolVersion.
    unsupported_options: tuple[str, ...] = field(default=())

    @property
    def user(self) -> str:
        return self.params["user"]

    @property
    def database(self) -> str:
        return self.params.get("database") or self.params["user"]


@dataclass(frozen=True)
class Frames:
    """Complete, validated client frames: body offsets into ``buf``."""

    buf: bytes
    frames: list[tuple[int, int, int]]


# Messages a client may send once the session is ready.  Copy messages outside
# COPY are legal (the server ignores them), so they are accepted here too.
READY_CODES = frozenset(
    (
        codes.QUERY, codes.PARSE, codes.BIND, codes.DESCRIBE, codes.EXECUTE,
        codes.SYNC, codes.FLUSH, codes.CLOSE, codes.FUNCTION_CALL, codes.TERMINATE,
        codes.COPY_DATA, codes.COPY_DONE, codes.COPY_FAIL,
    )
)


# PostgreSQL's limits: PQ_SMALL_MESSAGE_LIMIT for every message but the ones that
# carry data (those get max_message_length), PG_MAX_AUTH_TOKEN_LENGTH while
# authenticating.  Each is checked on the 5-byte header, before any body is held.
SMALL_MESSAGE_LIMIT = 10000
MAX_AUTH_MESSAGE = 65535
_LARGE_CODES = (codes.QUERY, codes.PARSE, codes.BIND, codes.FUNCTION_CALL, codes.COPY_DATA)
_SSL_AGAIN = "unsupported frontend protocol 1234.5679: server supports 3.0 to 3.0"
_GSS_AGAIN = "unsupported frontend protocol 1234.5680: server supports 3.0 to 3.0"


def ready_limits(max_message_length: int) -> dict[int, int]:
    return {code: (max_message_length if code in _LARGE_CODES else SMALL_MESSAGE_LIMIT)
            for code in READY_CODES}


class FrontendMachine:
    """Client connection: startup negotiation, then framed, validated messages.

    Like PostgreSQL, it reads the client's bytes only as far as the server's own
    answer allows: after an SSLRequest, GSSENCRequest or StartupMessage it stops
    and keeps the rest in ``leftover`` (the caller answers, then calls ``receive``
    again).  While authenticating it reads one password message at a time, and
    only when ``expecting`` names the one the client was asked for; anything the
    client pipelines meanwhile waits in ``leftover`` until then, or until the
    session is ready (a Query sent with the StartupMessage under ``trust``).
    """

    def __init__(self, max_message_length: int, validate: bool = True):
        self.state = FrontendState.STARTUP
        self._startup = StartupSplitter()
        self._frames = FrameSplitter(max_message_length, ready_limits(max_message_length))
        self._validate = validate
        self.ssl_requested = False
        self.ssl_done = False       # PostgreSQL allows one SSLRequest...
        self.gss_done = False       # ...and one GSSENCRequest (none after TLS is on)
        self.leftover = b""
        self.expecting: str | None = None  # "SASL" / "password" while a password message is due
        self.user = ""

    def receive(self, data: bytes) -> list:
        """Feed client bytes; return events.  Raises ProtocolViolation, or, when whole
        frames came before the offending bytes, returns it as the last event (after
        the ``Frames`` event of those frames); the machine is then closed."""
        if self.leftover:
            data = self.leftover + data
            self.leftover = b""
        events: list = []
        while data:
            state = self.state
            if state is FrontendState.READY:
                splitter = self._frames
                buf, frames = splitter.feed(data)
                if frames:
                    bad = self._check(buf, frames)
                    if bad is not None:
                        # The frames before a malformed one still count, as with
                        # PostgreSQL, however the bytes were cut: the error follows them.
                        del frames[bad[0]:]
                        if frames:
                            events.append(Frames(buf, frames))
                        events.append(bad[1])
                        self.state = FrontendState.CLOSED
                        break
                    events.append(Frames(buf, frames))
                if splitter.error is not None:
                    events.append(splitter.error)
                    self.state = FrontendState.CLOSED
                break
            if state is FrontendState.STARTUP:
                body, data = self._startup.feed(data)
                if body is None:
                    break
                event = self._startup_packet(body)
                events.append(event)
                if isinstance(event, CancelRequested):
                    self.state = FrontendState.CLOSED
                    break
                if isinstance(event, StartupReceived):
                    self.state = FrontendState.AUTHENTICATING
                    self.user = event.user
                # Whatever follows waits for the answer: after 'S' it would be plaintext
                # injected ahead of the TLS handshake (CVE-2021-23214), after a
                # StartupMessage it is read once authentication asks for it.
                self.leftover = data
                break
            if state is FrontendState.AUTHENTICATING:
                if self.expecting is None:
                    self.leftover = data  # PostgreSQL reads nothing from the client now
                    break
                event, self.leftover = self._auth_message(data)
                if event is not None:
                    events.append(event)
                break
            break  # CLOSED
        return events

    @property
    def stalled(self) -> bool:
        """True when more unread input than one password message waits: stop reading."""
        return len(self.leftover) > MAX_AUTH_MESSAGE + 5

    def authenticated(self) -> None:
        self.state = FrontendState.READY
        self.expecting = None

    def close(self) -> None:
        self.state = FrontendState.CLOSED

    def _auth_message(self, data: bytes) -> tuple[Frames | None, bytes]:
        """One password message (or Terminate), judged on its header as PostgreSQL does."""
        if len(data) < 5:
            return None, data
        code, length = _BI.unpack_from(data, 0)
        if code != codes.PASSWORD and (code != codes.TERMINATE or length != 4):
            raise ProtocolViolation(
                f"expected {self.expecting} response, got message type {code}")
        if length < 4 or length > MAX_AUTH_MESSAGE:
            raise ProtocolViolation(
                f'password authentication failed for user "{self.user}"', INVALID_PASSWORD)
        end = 1 + length
        if len(data) < end:
            return None, data
        return Frames(data[:end], [(code, 5, end)]), data[end:]

    def _check(self, buf: bytes, frames: list[tuple[int, int, int]]):
        """None, or (index, ProtocolViolation) of the first malformed frame."""
        try:
            self._check_frames(buf, frames)
        except ProtocolViolation:
            # Rare: find which frame it was (the common path pays nothing for this).
            for i, one in enumerate(frames):
                try:
                    self._check_frames(buf, [one])
                except ProtocolViolation as exc:
                    if i == 0:
                        raise
                    return i, exc
            raise  # pragma: no cover - one of them failed above
        return None

    def _check_frames(self, buf: bytes, frames: list[tuple[int, int, int]]) -> None:
        validate = self._validate
        for code, start, end in frames:
            # The per-transaction messages of a prepared workload are checked
            # inline: this loop runs for every client message.
            if code == codes.SYNC or code == codes.FLUSH:
                if end != start:
                    raise ProtocolViolation(f"invalid {codes.FRONTEND_NAMES[code]} message format")
            elif code == codes.EXECUTE:
                if end - start < 5 or buf.find(b"\0", start, end) != end - 5:
                    raise ProtocolViolation("invalid Execute message format")
            elif code not in READY_CODES:
                raise ProtocolViolation(f"invalid frontend message type {code}")
            elif validate:
                validate_frontend(code, buf[start:end])

    def _startup_packet(self, body: bytes):
        if len(body) == 4:
            (request,) = m._I.unpack(body)
            if request == codes.SSL_REQUEST:
                if self.ssl_done:
                    raise ProtocolViolation(_SSL_AGAIN, FEATURE_NOT_SUPPORTED)
                self.ssl_requested = self.ssl_done = True
                return SSLRequested()
            if request == codes.GSSENC_REQUEST:
                if self.gss_done:
                    raise ProtocolViolation(_GSS_AGAIN, FEATURE_NOT_SUPPORTED)
                self.gss_done = True
                return GSSENCRequested()
            raise ProtocolViolation("invalid startup packet layout")
        if len(body) == 12:
            request, pid, secret = _III.unpack(body)
            if request == codes.CANCEL_REQUEST:
                return CancelRequested(pid, secret)
        (version,) = m._I.unpack_from(body, 0)
        major, minor = version >> 16, version & 0xFFFF
        if major != 3 and major != 1234:
            # Checked before the layout, as PostgreSQL does: a v2 packet is not v3-shaped.
            raise ProtocolViolation(
                f"unsupported frontend protocol {major}.{minor}: server supports 3.0 to 3.0",
                FEATURE_NOT_SUPPORTED,
            )
        version, params = decode_startup(body)
        if major == 1234:  # a cancel/SSL/GSS code with the wrong length
            raise ProtocolViolation("invalid startup packet layout")
        if major != 3:
            raise ProtocolViolation(
                f"unsupported frontend protocol {major}.{minor}: server supports 3.0 to 3.0",
                FEATURE_NOT_SUPPORTED,
            )
        if not params.get("user"):
            raise ProtocolViolation(
                "no PostgreSQL user name specified in startup packet", INVALID_AUTHORIZATION
            )
        unsupported = tuple(k for k in params if k.startswith("_pq_."))
        for key in unsupported:
            del params[key]
        return StartupReceived(params, minor, unsupported)
