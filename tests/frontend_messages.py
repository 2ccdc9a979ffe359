"""Frontend message builders shared by the integration tests' raw client
(tests/integration/rawpg.py) and the fuzzers (tests/fuzz): the bytes a PostgreSQL client
sends, one function a message."""

from __future__ import annotations

import struct

PROTOCOL_3_0 = 3 << 16
SSL_REQUEST_CODE = 80877103
GSSENC_REQUEST_CODE = 80877104
CANCEL_REQUEST_CODE = 80877102


def msg(code: bytes | int, body: bytes = b"") -> bytes:
    """A typed frontend message: type byte, int32 length (self-inclusive), body."""
    if isinstance(code, int):
        code = bytes((code,))
    return code + struct.pack("!I", len(body) + 4) + body


def cstr(value: str | bytes) -> bytes:
    return (value.encode() if isinstance(value, str) else value) + b"\0"


def startup_packet(params: dict[str, str], version: int = PROTOCOL_3_0) -> bytes:
    body = struct.pack("!I", version) + b"".join(cstr(k) + cstr(v) for k, v in params.items())
    body += b"\0"
    return struct.pack("!I", len(body) + 4) + body


def ssl_request() -> bytes:
    return struct.pack("!II", 8, SSL_REQUEST_CODE)


def gssenc_request() -> bytes:
    return struct.pack("!II", 8, GSSENC_REQUEST_CODE)


def cancel_request(pid: int, secret: int) -> bytes:
    return struct.pack("!IIII", 16, CANCEL_REQUEST_CODE, pid, secret)


def query(sql: str | bytes) -> bytes:
    return msg(b"Q", cstr(sql))


def parse(sql: str | bytes, name: str | bytes = b"", oids: tuple[int, ...] = ()) -> bytes:
    body = cstr(name) + cstr(sql) + struct.pack("!h", len(oids))
    return msg(b"P", body + b"".join(struct.pack("!I", o) for o in oids))


def bind(params=(), portal: str | bytes = b"", statement: str | bytes = b"",
         formats: tuple[int, ...] = (), results: tuple[int, ...] = ()) -> bytes:
    """Bind; parameters and results in text unless ``formats`` / ``results`` say."""
    body = cstr(portal) + cstr(statement) + struct.pack("!h", len(formats))
    body += b"".join(struct.pack("!h", f) for f in formats)
    body += struct.pack("!h", len(params))
    for p in params:
        body += struct.pack("!i", -1) if p is None else struct.pack("!i", len(p)) + p
    body += struct.pack("!h", len(results)) + b"".join(struct.pack("!h", f) for f in results)
    return msg(b"B", body)


def describe(kind: bytes = b"P", name: str | bytes = b"") -> bytes:
    return msg(b"D", kind + cstr(name))


def close(kind: bytes = b"S", name: str | bytes = b"") -> bytes:
    return msg(b"C", kind + cstr(name))


def execute(portal: str | bytes = b"", max_rows: int = 0) -> bytes:
    return msg(b"E", cstr(portal) + struct.pack("!i", max_rows))


def function_call(oid: int, args=()) -> bytes:
    body = struct.pack("!Ih", oid, 0) + struct.pack("!h", len(args))
    for a in args:
        body += struct.pack("!i", -1) if a is None else struct.pack("!i", len(a)) + a
    return msg(b"F", body + struct.pack("!h", 0))


SYNC = msg(b"S")
FLUSH = msg(b"H")
TERMINATE = msg(b"X")
COPY_DONE = msg(b"c")


def copy_data(data: bytes) -> bytes:
    return msg(b"d", data)


def copy_fail(reason: str) -> bytes:
    return msg(b"f", cstr(reason))


def password(secret: bytes) -> bytes:
    return msg(b"p", secret + b"\0")
