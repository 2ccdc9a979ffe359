"""Building the v3 messages pgtwist sends, and reading the rows of its own queries.

Everything here works on bytes and returns plain values. Checking and decoding the
messages peers send is decode.py's; :func:`query_rows` reads the reply to a query pgtwist
itself built with :func:`query` (auth_query, catalog look-ups).
"""

from __future__ import annotations

import struct

from . import codes
from .decode import Reader, decode_fields

_I = struct.Struct("!I")
_i = struct.Struct("!i")
_H = struct.Struct("!H")
_h = struct.Struct("!h")
_II = struct.Struct("!II")
_HEADER = struct.Struct("!BI")


def frame(code: int, body: bytes = b"") -> bytes:
    """A typed message: code byte, int32 length (self-inclusive), body."""
    return _HEADER.pack(code, len(body) + 4) + body


def cstr(value: str | bytes) -> bytes:
    if isinstance(value, str):
        value = value.encode("utf-8")
    return value + b"\0"


# -- messages pgtwist sends to clients -----------------------------------------

def error_response(
    sqlstate: str,
    message: str,
    severity: str = "ERROR",
    detail: str | None = None,
    hint: str | None = None,
    code: int = codes.ERROR_RESPONSE,
) -> bytes:
    """ErrorResponse (or NoticeResponse with ``code='N'``) with the usual fields."""
    body = b"S" + cstr(severity) + b"V" + cstr(severity) + b"C" + cstr(sqlstate)
    body += b"M" + cstr(message)
    if detail:
        body += b"D" + cstr(detail)
    if hint:
        body += b"H" + cstr(hint)
    return frame(code, body + b"\0")


def notice_response(message: str, sqlstate: str = "00000", severity: str = "NOTICE") -> bytes:
    return error_response(sqlstate, message, severity, code=codes.NOTICE_RESPONSE)


def authentication(subtype: int, payload: bytes = b"") -> bytes:
    return frame(codes.AUTHENTICATION, _I.pack(subtype) + payload)


AUTH_OK = authentication(codes.AUTH_OK)


def parameter_status(name: str | bytes, value: str | bytes) -> bytes:
    return frame(codes.PARAMETER_STATUS, cstr(name) + cstr(value))


def backend_key_data(pid: int, secret: int) -> bytes:
    return frame(codes.BACKEND_KEY_DATA, _II.pack(pid, secret))


def ready_for_query(status: int = codes.TXN_IDLE) -> bytes:
    return frame(codes.READY_FOR_QUERY, bytes((status,)))


def negotiate_protocol_version(newest: int, unsupported: list[bytes]) -> bytes:
    """``newest`` is the whole version number, e.g. 196608 for 3.0, as PostgreSQL sends."""
    body = _I.pack(newest) + _I.pack(len(unsupported)) + b"".join(cstr(o) for o in unsupported)
    return frame(codes.NEGOTIATE_PROTOCOL_VERSION, body)


def row_description(names: list[str], formats=(0,), type_oid: int = 0) -> bytes:
    """Columns of type ``type_oid`` (0, as Pgpool-II sends its SHOW columns; pgtwist says
    text, 25, in the extended protocol, where drivers such as asyncpg look a described type
    up), in ``formats`` as a Bind gave them (one for all, or one per column)."""
    body = _h.pack(len(names))
    for i, name in enumerate(names):
        fmt = formats[0] if len(formats) == 1 else (formats[i] if i < len(formats) else 0)
        body += cstr(name) + struct.pack("!IhIhih", 0, 0, type_oid, -1, -1, fmt)
    return frame(codes.ROW_DESCRIPTION, body)


def data_row(values: list[str | None]) -> bytes:
    body = _h.pack(len(values))
    for value in values:
        if value is None:
            body += _i.pack(-1)
        else:
            raw = value.encode("utf-8")
            body += _i.pack(len(raw)) + raw
    return frame(codes.DATA_ROW, body)


def command_complete(tag: str) -> bytes:
    return frame(codes.COMMAND_COMPLETE, cstr(tag))


def empty_query_response() -> bytes:
    return frame(codes.EMPTY_QUERY_RESPONSE)


# -- messages pgtwist sends to servers -----------------------------------------

def startup_message(params: dict[str, str], version: int = codes.PROTOCOL_3_0) -> bytes:
    body = _I.pack(version)
    for key, value in params.items():
        body += cstr(key) + cstr(value)
    body += b"\0"
    return _I.pack(len(body) + 4) + body


def cancel_request(pid: int, secret: int) -> bytes:
    return struct.pack("!IIII", 16, codes.CANCEL_REQUEST, pid, secret)


def ssl_request() -> bytes:
    return _II.pack(8, codes.SSL_REQUEST)


def password_message(payload: bytes) -> bytes:
    return frame(codes.PASSWORD, payload)


def sasl_initial_response(mechanism: str, data: bytes) -> bytes:
    return frame(codes.PASSWORD, cstr(mechanism) + _i.pack(len(data)) + data)


def query(sql: str | bytes) -> bytes:
    return frame(codes.QUERY, cstr(sql))


TERMINATE = frame(codes.TERMINATE)
SYNC = frame(codes.SYNC)
FLUSH = frame(codes.FLUSH)


# -- the reply to pgtwist's own query -----------------------------------------------

class QueryError(Exception):
    """An ErrorResponse in a response :func:`query_rows` read."""

    def __init__(self, fields: dict[str, str]):
        super().__init__(fields.get("M", "query failed"))
        self.fields = fields


def query_rows(data: bytes) -> list[list[str | None]]:
    """The DataRows of a whole backend response as text values; raises QueryError on an
    ErrorResponse.  Other messages are skipped."""
    rows: list[list[str | None]] = []
    pos, n = 0, len(data)
    while pos + 5 <= n:
        code = data[pos]
        (length,) = _I.unpack_from(data, pos + 1)
        body = data[pos + 5:pos + 1 + length]
        if code == codes.DATA_ROW:
            r = Reader(body, "DataRow")
            row = []
            for _ in range(r.int16()):
                size = r.int32()
                row.append(None if size < 0 else r.take(size).decode("utf-8", "replace"))
            rows.append(row)
        elif code == codes.ERROR_RESPONSE:
            raise QueryError(decode_fields(body))
        pos += 1 + length
    return rows
