"""The PCP wire format (Pgpool-II's management protocol), sans-IO.

Every packet, both ways: one type letter, an int32 length in network order that counts
itself but not the letter, then the payload (mostly NUL-terminated strings). There is no
startup packet. The server refuses client packets whose length is <= 0 or >= 260, as
Pgpool-II 4.3's pcp_worker does, before reading their payload.
"""

from __future__ import annotations

import hashlib
import struct

MAX_PACKET_LENGTH = 260  # Pgpool-II's MAX_PCP_PACKET_LENGTH (exclusive bound)
RAND_MAX = 2147483647    # node_info sends weights scaled by the C library's RAND_MAX


class PacketError(Exception):
    """The client broke the framing: answered with a FATAL and the connection closed."""

    def __init__(self, message: str, detail: str):
        super().__init__(message, detail)
        self.message = message
        self.detail = detail


class PacketReader:
    """Splits a byte stream into ``(letter, payload)`` packets.

    A bad length is found at the point Pgpool-II finds it: after the five header bytes,
    without waiting for a payload that will never be read. The packets before it are
    returned; ``error`` then holds a PacketError and nothing more is read.
    """

    def __init__(self) -> None:
        self._buf = bytearray()
        self.error: PacketError | None = None

    def feed(self, data: bytes) -> list[tuple[str, bytes]]:
        if self.error is not None:
            return []
        self._buf += data
        packets = []
        while len(self._buf) >= 5:
            (length,) = struct.unpack_from("!i", self._buf, 1)
            if length <= 3 or length >= MAX_PACKET_LENGTH:
                # Pgpool-II 4.3 fails lengths 1..3 with an allocation error; pgtwist
                # reports them as what they are, a bad length.
                self.error = PacketError("invalid PCP packet",
                                         f"incorrect packet length ({length})")
                self._buf.clear()
                break
            if len(self._buf) < 1 + length:
                break
            letter = chr(self._buf[0])
            payload = bytes(self._buf[5:1 + length])
            del self._buf[:1 + length]
            packets.append((letter, payload))
        return packets


def packet(letter: str, payload: bytes = b"") -> bytes:
    return letter.encode("latin-1") + struct.pack("!i", len(payload) + 4) + payload


def strings(*fields: object) -> bytes:
    """NUL-terminated text fields, the payload of almost every reply."""
    return b"".join(str(f).encode("utf-8") + b"\0" for f in fields)


def reply(letter: str, *fields: object) -> bytes:
    return packet(letter, strings(*fields))


def error(severity: str, message: str, detail: str = "") -> bytes:
    """An 'E' packet: a PostgreSQL ErrorResponse body (SQLSTATE XX000 as Pgpool-II sends)."""
    body = b"S" + severity.encode() + b"\0C" + b"XX000\0M" + message.encode("utf-8") + b"\0"
    if detail:
        body += b"D" + detail.encode("utf-8") + b"\0"
    return packet("E", body + b"\0")


def split_strings(payload: bytes) -> list[str]:
    """The NUL-terminated fields of a payload (a last field without its NUL counts too)."""
    parts = payload.split(b"\0")
    if parts and parts[-1] == b"":
        parts.pop()
    return [p.decode("utf-8", "replace") for p in parts]


def md5hex(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()  # noqa: S324 - the PCP protocol's own hash


def expected_hash(stored_md5: str, user: str, salt: bytes) -> str:
    """What a client must send for ``user`` whose pcp.conf line holds md5hex(password).

    The client sends md5hex(md5hex(md5hex(password) + user) + salt).
    """
    inner = md5hex(stored_md5.encode() + user.encode("utf-8"))
    return md5hex(inner.encode() + salt)


def client_hash(password: str, user: str, salt: bytes) -> str:
    """The client's side of the exchange (used by tests and tools)."""
    return expected_hash(md5hex(password.encode("utf-8")), user, salt)


def array_size_binary(letter: str, count: int) -> bytes:
    """pool_status' count: a binary int32 after "ArraySize\\0", unlike every other count."""
    return packet(letter, b"ArraySize\0" + struct.pack("!i", count))
