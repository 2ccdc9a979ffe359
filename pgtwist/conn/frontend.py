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
from ..wire.errors import FEATURE_NOT_SUPPORTED, INVALID_AUTHORIZATION, ProtocolViolation
from ..wire.framing import FrameSplitter, StartupSplitter

_III = struct.Struct("!III")


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


class FrontendMachine:
    """Client connection: startup negotiation, then framed, validated messages."""

    def __init__(self, max_message_length: int, validate: bool = True):
        self.state = FrontendState.STARTUP
        self._startup = StartupSplitter()
        self._frames = FrameSplitter(max_message_length)
        self._validate = validate
        self.ssl_requested = False
        self.leftover = b""

    def receive(self, data: bytes) -> list:
        """Feed client bytes; return events.  Raises ProtocolViolation."""
        events: list = []
        while data:
            if self.state is FrontendState.STARTUP:
                body, data = self._startup.feed(data)
                if body is None:
                    break
                event = self._startup_packet(body)
                events.append(event)
                if isinstance(event, SSLRequested):
                    # Whatever follows must wait for the answer: after 'S' it would be
                    # plaintext injected ahead of the TLS handshake (CVE-2021-23214).
                    self.leftover = data
                    break
                if isinstance(event, CancelRequested):
                    self.state = FrontendState.CLOSED
                    break
                if isinstance(event, StartupReceived):
                    self.state = FrontendState.AUTHENTICATING
                continue
            if self.state is FrontendState.CLOSED:
                break
            buf, frames = self._frames.feed(data)
            data = b""
            if frames:
                self._check(buf, frames)
                events.append(Frames(buf, frames))
        return events

    def authenticated(self) -> None:
        self.state = FrontendState.READY

    def close(self) -> None:
        self.state = FrontendState.CLOSED

    def _check(self, buf: bytes, frames: list[tuple[int, int, int]]) -> None:
        if self.state is FrontendState.AUTHENTICATING:
            for code, _start, _end in frames:
                if code != codes.PASSWORD and code != codes.TERMINATE:
                    raise ProtocolViolation(
                        f"expected password response, got message type {code}"
                    )
            return
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
                m.validate_frontend(code, buf[start:end])

    def _startup_packet(self, body: bytes):
        if len(body) == 4:
            (request,) = m._I.unpack(body)
            if request == codes.SSL_REQUEST:
                self.ssl_requested = True
                return SSLRequested()
            if request == codes.GSSENC_REQUEST:
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
        version, params = m.decode_startup(body)
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
