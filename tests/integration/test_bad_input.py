"""Malformed and out-of-state client input, sent over raw sockets.

Whatever a client sends, pgtwist answers a protocol violation with an ErrorResponse carrying
SQLSTATE 08P01 and closes that connection; it never crashes, never logs a traceback and
never disturbs other sessions.  Each test keeps a psycopg session (opened before the bad
input) and checks that it still works, on the same server backend, afterwards.

The small raw-protocol helpers here (:class:`RawClient` and the message builders) are also
used by ``test_protocol_edges.py``.
"""

from __future__ import annotations

import socket
import struct
import time
import uuid

import psycopg
import pytest

from .conftest import assert_log_clean

pytestmark = pytest.mark.integration

PROTOCOL_3_0 = 3 << 16
SSL_REQUEST_CODE = 80877103
GSSENC_REQUEST_CODE = 80877104
CANCEL_REQUEST_CODE = 80877102
SOCKET_TIMEOUT = 5.0

# -- raw protocol helpers -------------------------------------------------------------------


def cstr(value: str | bytes) -> bytes:
    return (value.encode() if isinstance(value, str) else value) + b"\0"


def msg(code: bytes, body: bytes = b"") -> bytes:
    """A typed frontend message: type byte, int32 length (self-inclusive), body."""
    return code + struct.pack("!I", len(body) + 4) + body


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


def query(sql: str) -> bytes:
    return msg(b"Q", cstr(sql))


def parse(sql: str, name: str = "", oids: tuple[int, ...] = ()) -> bytes:
    body = cstr(name) + cstr(sql) + struct.pack("!h", len(oids))
    body += b"".join(struct.pack("!I", o) for o in oids)
    return msg(b"P", body)


def bind(params: list[bytes | None] = (), portal: str = "", statement: str = "") -> bytes:
    body = cstr(portal) + cstr(statement) + struct.pack("!h", 0)  # all parameters in text
    body += struct.pack("!h", len(params))
    for p in params:
        body += struct.pack("!i", -1) if p is None else struct.pack("!i", len(p)) + p
    body += struct.pack("!h", 0)  # all results in text
    return msg(b"B", body)


def describe(kind: bytes = b"P", name: str = "") -> bytes:
    return msg(b"D", kind + cstr(name))


def execute(portal: str = "", max_rows: int = 0) -> bytes:
    return msg(b"E", cstr(portal) + struct.pack("!i", max_rows))


SYNC = msg(b"S")
FLUSH = msg(b"H")
TERMINATE = msg(b"X")
COPY_DONE = msg(b"c")


def copy_data(data: bytes) -> bytes:
    return msg(b"d", data)


def copy_fail(reason: str) -> bytes:
    return msg(b"f", cstr(reason))


def error_fields(body: bytes) -> dict[str, str]:
    """ErrorResponse / NoticeResponse fields by their one-letter code."""
    out = {}
    for part in body.rstrip(b"\0").split(b"\0"):
        if part:
            out[chr(part[0])] = part[1:].decode("utf-8", "replace")
    return out


def data_row(body: bytes) -> list[str | None]:
    (n,) = struct.unpack_from("!h", body)
    pos, values = 2, []
    for _ in range(n):
        (size,) = struct.unpack_from("!i", body, pos)
        pos += 4
        if size < 0:
            values.append(None)
        else:
            values.append(body[pos : pos + size].decode())
            pos += size
    return values


class RawClient:
    """A PostgreSQL v3 client on a plain socket, for sending exactly the bytes a test wants."""

    def __init__(self, port: int, host: str = "127.0.0.1", timeout: float = SOCKET_TIMEOUT):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.settimeout(timeout)
        self.buf = b""
        self.key: tuple[int, int] | None = None
        self.parameters: dict[str, str] = {}

    def close(self) -> None:
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def send(self, *chunks: bytes) -> None:
        self.sock.sendall(b"".join(chunks))

    def _fill(self, n: int) -> None:
        while len(self.buf) < n:
            data = self.sock.recv(65536)
            if not data:
                raise EOFError(f"connection closed with {len(self.buf)} of {n} bytes read")
            self.buf += data

    def read_byte(self) -> bytes:
        self._fill(1)
        b, self.buf = self.buf[:1], self.buf[1:]
        return b

    def read_msg(self) -> tuple[str, bytes]:
        """One backend message as (type letter, body)."""
        self._fill(5)
        code, length = struct.unpack_from("!cI", self.buf)
        self._fill(1 + length)
        body = self.buf[5 : 1 + length]
        self.buf = self.buf[1 + length :]
        return code.decode(), body

    def read_until(self, code: str = "Z", count: int = 1) -> list[tuple[str, bytes]]:
        """Messages up to and including the ``count``-th message of type ``code``."""
        out = []
        while count:
            m = self.read_msg()
            out.append(m)
            if m[0] == code:
                count -= 1
        return out

    def startup(self, params: dict[str, str] | None = None) -> list[tuple[str, bytes]]:
        params = {"user": "postgres", "database": "postgres", **(params or {})}
        self.send(startup_packet(params))
        return self.read_login()

    def read_login(self) -> list[tuple[str, bytes]]:
        msgs = self.read_until("Z")
        for code, body in msgs:
            if code == "E":
                raise AssertionError(f"login failed: {error_fields(body)}")
            if code == "K":
                self.key = struct.unpack("!II", body)
            if code == "S":
                name, value, _ = body.split(b"\0")
                self.parameters[name.decode()] = value.decode()
        return msgs

    def simple(self, sql: str) -> list[tuple[str, bytes]]:
        self.send(query(sql))
        return self.read_until("Z")

    def rows(self, sql: str) -> list[list[str | None]]:
        msgs = self.simple(sql)
        errors = [error_fields(b) for c, b in msgs if c == "E"]
        assert not errors, errors
        return [data_row(b) for c, b in msgs if c == "D"]

    def closed_by_peer(self, timeout: float = SOCKET_TIMEOUT) -> bool:
        """True if the peer closes (EOF or reset) within ``timeout`` and sends nothing more."""
        self.sock.settimeout(timeout)
        try:
            data = self.buf or self.sock.recv(65536)
        except ConnectionResetError:
            return True
        except TimeoutError:
            return False
        finally:
            self.sock.settimeout(SOCKET_TIMEOUT)
        if data:
            raise AssertionError(f"expected the connection to close, got more bytes: {data!r}")
        return True


def codes_of(msgs: list[tuple[str, bytes]]) -> str:
    return "".join(c for c, _ in msgs)


def wait_no_backend(cluster, application_name: str, timeout: float = 3.0) -> None:
    """Wait until the primary has no session with ``application_name`` (checked directly)."""
    sql = f"SELECT count(*) FROM pg_stat_activity WHERE application_name = '{application_name}'"
    deadline = time.monotonic() + timeout
    while (n := cluster.psql(sql)) != "0":
        if time.monotonic() > deadline:
            detail = cluster.psql(
                "SELECT state || ': ' || query FROM pg_stat_activity "
                f"WHERE application_name = '{application_name}'"
            )
            raise AssertionError(
                f"{n} backend session(s) of {application_name!r} still on the primary after "
                f"{timeout}s: {detail}"
            )
        time.sleep(0.05)


def unique_app(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:10]}"


# -- fixtures ----------------------------------------------------------------------------------


@pytest.fixture
def bystander(cluster, pgtwist):
    """A psycopg session opened before the bad input; checked to still work afterwards."""
    conn = psycopg.connect(pgtwist.dsn(), connect_timeout=5, autocommit=True)
    before = conn.execute("SELECT pg_backend_pid(), inet_server_port()").fetchone()
    yield conn
    try:
        after = conn.execute("SELECT pg_backend_pid(), inet_server_port()").fetchone()
        assert after == before, "the other session was disturbed"
        assert after[1] == cluster.primary_port
        assert conn.execute("SELECT %s::text", ["still fine"]).fetchone() == ("still fine",)
    finally:
        conn.close()
    assert_log_clean(pgtwist)


def _expect_fatal_08P01_then_close(client: RawClient) -> dict[str, str]:
    code, body = client.read_msg()
    assert code == "E", (code, body)
    fields = error_fields(body)
    assert fields.get("C") == "08P01", fields
    assert fields.get("S") == "FATAL", fields
    assert client.closed_by_peer(), "pgtwist did not close the connection after the error"
    return fields


# -- (a) garbage instead of a startup packet ------------------------------------------------------

GARBAGE_STARTUPS = {
    "http_request": b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n",
    "tls_client_hello": bytes.fromhex("16030100a5010000a10303") + bytes(32),
    "unknown_request_code": struct.pack("!II", 8, 0x12345678),
    "too_short_length": struct.pack("!I", 4) + b"\0\0\0\0",
    "params_without_terminator": struct.pack("!II", 4 + 4 + 13, PROTOCOL_3_0) + b"user\0postgres",
    "cancel_code_wrong_length": struct.pack("!III", 12, CANCEL_REQUEST_CODE, 1),
}


@pytest.mark.parametrize("garbage", GARBAGE_STARTUPS.values(), ids=GARBAGE_STARTUPS.keys())
def test_garbage_instead_of_startup(cluster, pgtwist, bystander, garbage):
    with RawClient(pgtwist.port) as client:
        client.send(garbage)
        fields = _expect_fatal_08P01_then_close(client)
    assert "startup packet" in fields["M"] or "invalid" in fields["M"], fields


# -- (b) truncated or malformed messages after a valid startup -------------------------------------


def _bad_query_no_nul() -> bytes:
    return msg(b"Q", b"SELECT 1")


def _bad_bind_param_count() -> bytes:
    # promises 3 parameters, carries one
    body = cstr("") + cstr("") + struct.pack("!h", 0) + struct.pack("!h", 3)
    body += struct.pack("!i", 1) + b"1" + struct.pack("!h", 0)
    return msg(b"B", body)


def _bad_bind_param_length() -> bytes:
    # one parameter whose length runs past the end of the message
    body = cstr("") + cstr("") + struct.pack("!hh", 0, 1) + struct.pack("!i", 1000) + b"12"
    return msg(b"B", body)


def _bad_parse_truncated() -> bytes:
    return msg(b"P", cstr("") + cstr("SELECT $1") + struct.pack("!h", 2) + struct.pack("!I", 23))


def _bad_execute_truncated() -> bytes:
    return msg(b"E", cstr("") + b"\0\0")


def _bad_describe_kind() -> bytes:
    return msg(b"D", b"X" + cstr(""))


def _bad_sync_with_body() -> bytes:
    return msg(b"S", b"junk")


MALFORMED = {
    "query_without_nul": _bad_query_no_nul,
    "query_with_embedded_nul": lambda: msg(b"Q", b"SELECT 1\0SELECT 2\0"),
    "bind_promises_more_params": _bad_bind_param_count,
    "bind_param_length_past_end": _bad_bind_param_length,
    "parse_missing_oids": _bad_parse_truncated,
    "execute_truncated": _bad_execute_truncated,
    "describe_bad_kind": _bad_describe_kind,
    "sync_with_body": _bad_sync_with_body,
    "length_below_four": lambda: b"Q" + struct.pack("!I", 2),
}


@pytest.mark.parametrize("make", MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed_message_after_startup(cluster, pgtwist, bystander, make):
    app = unique_app("badmsg")
    with RawClient(pgtwist.port) as client:
        client.startup({"application_name": app})
        assert client.rows("SELECT 1") == [["1"]]
        client.send(make())
        _expect_fatal_08P01_then_close(client)
    wait_no_backend(cluster, app)


def test_malformed_message_after_valid_ones_in_same_write(cluster, pgtwist, bystander):
    """A bad frame at the end of a batch: the batch is rejected, the session closed."""
    app = unique_app("badbatch")
    with RawClient(pgtwist.port) as client:
        client.startup({"application_name": app})
        client.send(parse("SELECT 1"), bind(), execute(), SYNC, _bad_query_no_nul())
        msgs = []
        while True:
            code, body = client.read_msg()
            msgs.append((code, body))
            if code == "E" and error_fields(body).get("C") == "08P01":
                break
        assert client.closed_by_peer()
    assert not [error_fields(b) for c, b in msgs[:-1] if c == "E"]
    wait_no_backend(cluster, app)


# -- (c) absurd lengths ---------------------------------------------------------------------------


def test_absurd_length_in_typed_message(cluster, pgtwist, bystander):
    app = unique_app("hugelen")
    with RawClient(pgtwist.port) as client:
        client.startup({"application_name": app})
        t0 = time.monotonic()
        client.send(b"Q" + struct.pack("!I", 0x7FFFFFFF))  # header only: no 2 GB body follows
        fields = _expect_fatal_08P01_then_close(client)
        assert time.monotonic() - t0 < 2  # rejected on the header, without waiting for a body
    assert "length" in fields["M"], fields
    wait_no_backend(cluster, app)


@pytest.mark.parametrize("length", [0x7FFFFFFF, 0xFFFFFFFF, 10001])
def test_absurd_length_in_startup_packet(cluster, pgtwist, bystander, length):
    with RawClient(pgtwist.port) as client:
        client.send(struct.pack("!II", length, PROTOCOL_3_0))
        fields = _expect_fatal_08P01_then_close(client)
    assert "length" in fields["M"], fields


# -- (d) messages out of state ----------------------------------------------------------------------

OUT_OF_STATE = {
    "password_after_ready": msg(b"p", cstr("secret")),
    "unknown_type_z": msg(b"z", b"whatever"),
    "unknown_type_nul": msg(b"\0", b""),
    "backend_only_type_T": msg(b"T", struct.pack("!h", 0)),
}


@pytest.mark.parametrize("bad", OUT_OF_STATE.values(), ids=OUT_OF_STATE.keys())
def test_message_out_of_state(cluster, pgtwist, bystander, bad):
    app = unique_app("oos")
    with RawClient(pgtwist.port) as client:
        client.startup({"application_name": app})
        assert client.rows("SELECT 2") == [["2"]]
        client.send(bad)
        _expect_fatal_08P01_then_close(client)
    wait_no_backend(cluster, app)


def test_query_before_startup_completes(cluster, pgtwist, bystander):
    """A typed message sent where the startup packet belongs is garbage too."""
    with RawClient(pgtwist.port) as client:
        client.send(query("SELECT 1"))
        _expect_fatal_08P01_then_close(client)


def test_bad_input_on_many_connections_at_once(cluster, pgtwist, bystander):
    """Twenty clients misbehaving together leave pgtwist serving the bystander."""
    clients = [RawClient(pgtwist.port) for _ in range(20)]
    try:
        for i, c in enumerate(clients):
            if i % 2:
                c.startup()
                c.send(msg(b"z", b""))
            else:
                c.send(b"\x16\x03\x01\x02\x00garbage")
        for c in clients:
            _expect_fatal_08P01_then_close(c)
    finally:
        for c in clients:
            c.close()
    assert "Traceback" not in pgtwist.log_text()
