"""Splitting byte streams into v3 frames without copying what is only forwarded.

``FrameSplitter`` serves the client direction: it returns whole frames (the
relay needs to see every client message) and enforces a maximum length as soon
as a header arrives.  ``BackendScanner`` serves the server direction: it streams
the bodies of frames the relay does not care about (DataRow, CopyData...) even
before they are complete, and only holds back the few it must read
(ReadyForQuery, ErrorResponse, ParameterStatus, Copy*Response).
"""

from __future__ import annotations

import functools
import struct

from . import codes
from .errors import ProtocolViolation

_unpack_I = struct.Struct("!I").unpack_from
_unpack_BI = struct.Struct("!BI").unpack_from

# PostgreSQL's own limit for startup packets (MAX_STARTUP_PACKET_LENGTH).
MAX_STARTUP_LENGTH = 10000


class StartupSplitter:
    """Untyped startup-phase packets: int32 length (self-inclusive) + body."""

    __slots__ = ("_buf",)

    def __init__(self) -> None:
        self._buf = b""

    def feed(self, data: bytes) -> tuple[bytes | None, bytes]:
        """Return (packet body or None, leftover bytes after it)."""
        buf = self._buf + data
        if len(buf) < 4:
            self._buf = buf
            return None, b""
        (length,) = _unpack_I(buf, 0)
        if length < 8 or length > MAX_STARTUP_LENGTH:
            raise ProtocolViolation("invalid length of startup packet")
        if len(buf) < length:
            self._buf = buf
            return None, b""
        self._buf = b""
        return buf[4:length], buf[length:]


@functools.lru_cache(maxsize=16)
def _limit_table(max_length: int, limits: tuple[tuple[int, int], ...] | None) -> tuple[int, ...]:
    """One comparison per frame on the hot path: the limit of every type byte (-1: refused)."""
    by_code = dict(limits) if limits is not None else None
    return tuple(
        max_length if by_code is None else min(by_code.get(code, -1), max_length)
        for code in range(256)
    )


class FrameSplitter:
    """Typed frames from a client.

    ``feed`` returns ``(buf, frames)``: ``buf`` is the contiguous run of
    complete frames and ``frames`` a list of ``(code, start, end)`` offsets of
    each frame *body* in ``buf`` (the frame header sits at ``start - 5``).

    ``limits`` (code -> largest length field) refuses, as soon as a header
    arrives, a type it does not list or a length above that type's limit:
    nothing of a refused frame's body is ever buffered.  The whole frames before
    a refused header are still returned, whatever the chunking (PostgreSQL runs
    them before it reads the bad one); the refusal is then kept in ``error`` and
    raised by the next ``feed``.
    """

    __slots__ = ("_buf", "_chunks", "_size", "_need", "max_length", "limits", "_limit", "error")

    def __init__(self, max_length: int, limits: dict[int, int] | None = None) -> None:
        self._buf = b""
        self._chunks: list[bytes] = []   # pieces of one big frame still arriving
        self._size = 0
        self._need = 0                   # bytes that frame needs in all
        self.max_length = max_length
        self.limits = limits
        self._limit = _limit_table(max_length, None if limits is None else tuple(limits.items()))
        self.error: ProtocolViolation | None = None

    def feed(self, data: bytes) -> tuple[bytes, list[tuple[int, int, int]]]:
        if self.error is not None:
            raise self.error
        if self._need:
            # Collect a large frame's pieces and join once: no quadratic re-copying.
            self._chunks.append(data)
            self._size += len(data)
            if self._size < self._need:
                return b"", []
            buf = b"".join(self._chunks)
            self._chunks = []
            self._size = self._need = 0
        else:
            buf = self._buf + data if self._buf else data
        n = len(buf)
        pos = 0
        frames: list[tuple[int, int, int]] = []
        limit = self._limit
        while n - pos >= 5:
            code, length = _unpack_BI(buf, pos)
            if length < 4 or length > limit[code]:
                if not frames:
                    self._refuse(code, length)
                try:
                    self._refuse(code, length)
                except ProtocolViolation as exc:
                    self.error = exc
                self._buf = b""
                return buf[:pos], frames
            end = pos + 1 + length
            if end > n:
                break
            frames.append((code, pos + 5, end))
            pos = end
        if pos == n:
            self._buf = b""
            return buf, frames
        rest = buf[pos:]
        if len(rest) >= 5 and n - pos >= 65536:
            self._need = 1 + _unpack_BI(rest, 0)[1]
            self._chunks = [rest]
            self._size = len(rest)
            self._buf = b""
        else:
            self._buf = rest
        return buf[:pos], frames

    def _refuse(self, code: int, length: int) -> None:
        limits = self.limits
        if limits is not None and code not in limits:
            # PostgreSQL's answer: message boundaries are lost, nothing to recover.
            raise ProtocolViolation(f"invalid frontend message type {code}")
        if length < 4:
            raise ProtocolViolation(f"invalid message length {length}")
        if length > self.max_length:
            raise ProtocolViolation(
                f"message of {length} bytes exceeds max_message_length ({self.max_length})"
            )
        raise ProtocolViolation("invalid message length")

    @property
    def pending(self) -> int:
        return len(self._buf) + self._size


# Backend frames the relay must read whole; everything else streams through.
WATCHED = frozenset(
    (
        codes.READY_FOR_QUERY,
        codes.ERROR_RESPONSE,
        codes.PARAMETER_STATUS,
        codes.COPY_IN_RESPONSE,
        codes.COPY_OUT_RESPONSE,
        codes.COPY_BOTH_RESPONSE,
        codes.BACKEND_KEY_DATA,
        codes.AUTHENTICATION,
        codes.NEGOTIATE_PROTOCOL_VERSION,
        codes.NOTIFICATION_RESPONSE,  # rare; must survive a shadow segment's silence
        codes.PARSE_COMPLETE,  # tells which node really holds a statement
    )
)

# Watched frames are small; anything bigger is a broken server stream...
_MAX_WATCHED = 1 << 20
# ...except ErrorResponse: a server error can quote a whole row ("Failing row
# contains ...") or a RAISE of any size.  A big one streams like a DataRow; the
# relay reads only its first fields (S, C), so its event carries the body's head.
_ERROR_HEAD = 16384


def error_head(head: bytes) -> bytes:
    """A well-formed ErrorResponse body from the first bytes of a longer one: the
    complete fields, then the cut field's start, then the terminator."""
    end = head.rfind(b"\0")
    fields = head[:end + 1] if end >= 0 else b""
    cut = head[end + 1:]
    if cut:
        fields += cut + b"...\0"
    return fields + b"\0"


class BackendScanner:
    """Scan a server's byte stream for the frames the relay acts on.

    ``feed`` returns a list mixing ``bytes`` (to forward in order) and
    ``(code, body)`` tuples (events, placed right after the bytes of their own
    frame).  The common case of a whole response ending in ReadyForQuery
    yields exactly ``[run_of_bytes, (ord('Z'), b'I')]``.
    """

    __slots__ = ("_partial", "_skip", "_event")

    def __init__(self) -> None:
        self._partial = b""
        self._skip = 0
        self._event = None  # a streamed ErrorResponse's event, due when its bytes are out

    def feed(self, data: bytes) -> list:
        out: list = []
        n = len(data)
        start = 0
        if self._skip:
            if n < self._skip:
                self._skip -= n
                return [data]
            pos = self._skip
            self._skip = 0
            if self._partial:  # pragma: no cover - cannot hold both
                raise AssertionError("scanner state")
            if self._event is not None:
                out.append(data[:pos])
                out.append(self._event)
                self._event = None
                start = pos
        else:
            pos = 0
        if self._partial:
            # Bytes held back earlier were never forwarded: prepend them.
            data = self._partial + data[pos:]
            self._partial = b""
            n = len(data)
            pos = 0
        watched = WATCHED
        while True:
            if n - pos < 5:
                if pos < n:
                    self._partial = data[pos:]
                break
            code, length = _unpack_BI(data, pos)
            if length < 4:
                raise ProtocolViolation(f"server sent invalid message length {length}")
            end = pos + 1 + length
            if code in watched:
                if length > _MAX_WATCHED:
                    if code != codes.ERROR_RESPONSE:
                        raise ProtocolViolation("server sent an oversized control message")
                    if n - pos - 5 < _ERROR_HEAD:
                        self._partial = data[pos:]  # wait for the head (bounded)
                        break
                    event = (code, error_head(data[pos + 5:pos + 5 + _ERROR_HEAD]))
                    if end > n:
                        self._skip = end - n
                        self._event = event
                        pos = n
                        break
                    out.append(data[start:end])
                    out.append(event)
                    start = pos = end
                    continue
                if end > n:
                    self._partial = data[pos:]
                    break
                out.append(data[start:end])
                out.append((code, data[pos + 5:end]))
                start = pos = end
                continue
            if end > n:
                self._skip = end - n
                pos = n
                break
            pos = end
        if start < pos:
            out.append(data[start:pos] if (start or pos != n) else data)
        return out

    @property
    def idle(self) -> bool:
        """True between frames (nothing half-forwarded or held back)."""
        return not self._skip and not self._partial
