"""Malformed and out-of-state client input, sent over raw sockets.

Whatever a client sends, pgtwist answers a protocol violation with an ErrorResponse carrying
SQLSTATE 08P01 and closes that connection; it never crashes, never logs a traceback and
never disturbs other sessions.  Each test keeps a psycopg session (opened before the bad
input) and checks that it still works, on the same server backend, afterwards.

The raw-protocol helpers live in ``rawpg.py``.
"""

from __future__ import annotations

import struct
import time

import psycopg
import pytest

from .conftest import assert_log_clean
from .rawpg import (
    CANCEL_REQUEST_CODE,
    PROTOCOL_3_0,
    SYNC,
    RawClient,
    bind,
    cstr,
    error_fields,
    execute,
    msg,
    parse,
    query,
    unique_app,
    wait_no_backend,
)

pytestmark = pytest.mark.integration

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
