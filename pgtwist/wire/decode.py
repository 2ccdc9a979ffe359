"""Checking and decoding the v3 messages pgtwist inspects.

Frames that pgtwist only forwards are never decoded; the relay looks inside a frame only
when it needs a field (a Query's text, a ReadyForQuery status byte, an error's fields).
Decoders validate structure and raise :class:`ProtocolViolation` (08P01), so a malformed
client message never reaches a backend. Building messages is messages.py's.
"""

from __future__ import annotations

import struct

from . import codes
from .errors import ProtocolViolation

_i = struct.Struct("!i")
_h = struct.Struct("!h")
_II = struct.Struct("!II")


class Reader:
    """Cursor over one message body; every read is bounds-checked."""

    __slots__ = ("data", "pos", "what")

    def __init__(self, data: bytes | memoryview, what: str):
        self.data = data if type(data) is bytes else bytes(data)
        self.pos = 0
        self.what = what

    def _fail(self) -> ProtocolViolation:
        return ProtocolViolation(f"invalid {self.what} message format")

    def cstring(self) -> bytes:
        end = self.data.find(b"\0", self.pos)
        if end < 0:
            raise self._fail()
        value = self.data[self.pos:end]
        self.pos = end + 1
        return value

    def int16(self) -> int:
        if self.pos + 2 > len(self.data):
            raise self._fail()
        (value,) = _h.unpack_from(self.data, self.pos)
        self.pos += 2
        return value

    def int32(self) -> int:
        if self.pos + 4 > len(self.data):
            raise self._fail()
        (value,) = _i.unpack_from(self.data, self.pos)
        self.pos += 4
        return value

    def uint32(self) -> int:
        return self.int32() & 0xFFFFFFFF

    def byte(self) -> int:
        if self.pos >= len(self.data):
            raise self._fail()
        value = self.data[self.pos]
        self.pos += 1
        return value

    def take(self, n: int) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise self._fail()
        value = self.data[self.pos:self.pos + n]
        self.pos += n
        return value

    def rest(self) -> bytes:
        value = self.data[self.pos:]
        self.pos = len(self.data)
        return value

    def end(self) -> None:
        if self.pos != len(self.data):
            raise self._fail()


def decode_startup(body: bytes) -> tuple[int, dict[str, str]]:
    """(protocol version, parameters) from a StartupMessage body (after the length)."""
    r = Reader(body, "startup packet")
    version = r.uint32()
    params: dict[str, str] = {}
    while True:
        key = r.cstring()
        if not key:
            break
        value = r.cstring()
        try:
            params[key.decode("utf-8")] = value.decode("utf-8")
        except UnicodeDecodeError:
            raise ProtocolViolation("invalid startup packet layout: parameters must be UTF-8") from None
    r.end()
    return version, params


def decode_fields(body: bytes) -> dict[str, str]:
    """ErrorResponse / NoticeResponse fields keyed by their one-letter code."""
    fields: dict[str, str] = {}
    pos = 0
    n = len(body)
    while pos < n and body[pos] != 0:
        end = body.find(b"\0", pos + 1)
        if end < 0:
            break
        fields[chr(body[pos])] = body[pos + 1:end].decode("utf-8", "replace")
        pos = end + 1
    return fields


def decode_parameter_status(body: bytes) -> tuple[str, str]:
    r = Reader(body, "ParameterStatus")
    name = r.cstring().decode("utf-8", "replace")
    value = r.cstring().decode("utf-8", "replace")
    return name, value


def decode_query(body: bytes) -> bytes:
    """Query text without its terminator."""
    if not body or body[-1] != 0 or body.find(b"\0") != len(body) - 1:
        raise ProtocolViolation("invalid Query message format")
    return bytes(body[:-1])


def decode_parse(body: bytes) -> tuple[bytes, bytes, tuple[int, ...]]:
    """(statement name, query text, parameter type OIDs)."""
    r = Reader(body, "Parse")
    name = r.cstring()
    sql = r.cstring()
    count = r.int16()
    if count < 0:
        raise r._fail()
    oids = tuple(r.uint32() for _ in range(count))
    r.end()
    return name, sql, oids


def _skip_values(r: Reader) -> None:
    """Format codes then length-prefixed values (Bind parameters, FunctionCall arguments)."""
    nformats = r.int16()
    if nformats < 0:
        raise r._fail()
    r.take(2 * nformats)
    nvalues = r.int16()
    if nvalues < 0:
        raise r._fail()
    for _ in range(nvalues):
        size = r.int32()
        if size > 0:
            r.take(size)
        elif size < -1:
            raise r._fail()


def decode_bind(body: bytes) -> tuple[bytes, bytes]:
    """(portal name, statement name), after checking the whole layout."""
    r = Reader(body, "Bind")
    portal = r.cstring()
    statement = r.cstring()
    _skip_values(r)
    nresults = r.int16()
    if nresults < 0:
        raise r._fail()
    r.take(2 * nresults)
    r.end()
    return portal, statement


def decode_target(body: bytes, what: str) -> tuple[int, bytes]:
    """Describe / Close: (kind 'S' or 'P', name)."""
    r = Reader(body, what)
    kind = r.byte()
    if kind not in (ord("S"), ord("P")):
        raise ProtocolViolation(f"invalid {what} message subtype {kind}")
    name = r.cstring()
    r.end()
    return kind, name


def decode_execute(body: bytes) -> tuple[bytes, int]:
    r = Reader(body, "Execute")
    portal = r.cstring()
    max_rows = r.int32()
    r.end()
    return portal, max_rows


def check_function_call(body: bytes) -> int:
    """Validate a FunctionCall; returns the function OID."""
    r = Reader(body, "FunctionCall")
    oid = r.uint32()
    _skip_values(r)
    r.int16()
    r.end()
    return oid


def check_empty(body: bytes, what: str) -> None:
    if body:
        raise ProtocolViolation(f"invalid {what} message format")


def check_cstring(body: bytes, what: str) -> bytes:
    r = Reader(body, what)
    value = r.cstring()
    r.end()
    return value


def decode_auth(body: bytes) -> tuple[int, bytes]:
    r = Reader(body, "Authentication")
    return r.uint32(), r.rest()


def decode_backend_key_data(body: bytes) -> tuple[int, int]:
    if len(body) != 8:
        # Protocol 3.2 allows longer keys; pgtwist speaks 3.0 to its backends.
        raise ProtocolViolation("invalid BackendKeyData message format")
    return _II.unpack(body)


def decode_sasl_mechanisms(payload: bytes) -> list[str]:
    return [m.decode("ascii", "replace") for m in payload.split(b"\0") if m]


def decode_sasl_initial_response(body: bytes) -> tuple[str, bytes]:
    r = Reader(body, "SASLInitialResponse")
    mechanism = r.cstring().decode("ascii", "replace")
    size = r.int32()
    if size < -1:
        raise r._fail()
    data = b"" if size == -1 else r.take(size)
    r.end()
    return mechanism, data


def validate_frontend(code: int, body: bytes) -> None:
    """Structural check of a client message in the ready state."""
    check = _FRONTEND_CHECKS.get(code)
    if check is None:
        raise ProtocolViolation(f"invalid frontend message type {code}")
    check(body)


_FRONTEND_CHECKS = {
    codes.QUERY: decode_query,
    codes.PARSE: decode_parse,
    codes.BIND: decode_bind,
    codes.DESCRIBE: lambda b: decode_target(b, "Describe"),
    codes.CLOSE: lambda b: decode_target(b, "Close"),
    codes.EXECUTE: decode_execute,
    codes.SYNC: lambda b: check_empty(b, "Sync"),
    codes.FLUSH: lambda b: check_empty(b, "Flush"),
    codes.TERMINATE: lambda b: check_empty(b, "Terminate"),
    codes.FUNCTION_CALL: check_function_call,
    codes.COPY_DATA: lambda b: None,
    codes.COPY_DONE: lambda b: check_empty(b, "CopyDone"),
    codes.COPY_FAIL: lambda b: check_cstring(b, "CopyFail"),
}
