"""Protocol corners a proxy gets wrong (see /work/shared/reference/protocol-pitfalls.md).

Most tests send exact byte sequences over a raw socket and run twice: straight against the
primary (``direct``: shows what PostgreSQL itself answers, so a failure there means the test
is wrong) and through pgtwist, which must answer the same.
"""

from __future__ import annotations

import socket
import struct
import time
import uuid

import psycopg
import pytest

from .conftest import assert_log_clean, start_pgtwist
from .rawpg import (
    COPY_DONE,
    FLUSH,
    PROTOCOL_3_0,
    SYNC,
    RawClient,
    bind,
    cancel_request,
    codes_of,
    copy_data,
    copy_fail,
    data_row,
    describe,
    error_fields,
    execute,
    gssenc_request,
    parse,
    query,
    ssl_request,
    startup_packet,
    unique_app,
    wait_no_backend,
)

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def edge_pgtwist(cluster, tmp_path_factory):
    pg = start_pgtwist(cluster, tmp_path_factory.mktemp("edges_pgtwist"))
    try:
        yield pg
    finally:
        pg.stop()
    assert_log_clean(pg)


@pytest.fixture(params=["direct", "pgtwist"])
def port(request, cluster, edge_pgtwist) -> int:
    return cluster.primary_port if request.param == "direct" else edge_pgtwist.port


@pytest.fixture
def table(cluster):
    name = f"edge_{uuid.uuid4().hex[:10]}"
    cluster.psql(f"CREATE TABLE {name} (v int)")
    yield name
    cluster.psql(f"DROP TABLE IF EXISTS {name}")


def _connect(port: int, app: str | None = None) -> RawClient:
    client = RawClient(port)
    client.startup({"application_name": app or unique_app("edge")})
    return client


def _statuses(msgs) -> str:
    return "".join(body.decode() for code, body in msgs if code == "Z")


def _sqlstates(msgs) -> list[str]:
    return [error_fields(body)["C"] for code, body in msgs if code == "E"]


def _values(client: RawClient, sql: str) -> list:
    return [r[0] for r in client.rows(sql)]


def _pbe(sql: str, max_rows: int = 0) -> bytes:
    return parse(sql) + bind() + execute(max_rows=max_rows)


def _nothing_more(client: RawClient, wait: float = 0.3) -> None:
    """Assert that no further message arrives within ``wait`` seconds."""
    client.sock.settimeout(wait)
    try:
        data = client.buf or client.sock.recv(65536)
    except TimeoutError:
        data = None
    finally:
        client.sock.settimeout(5)
    assert data is None, f"unexpected extra bytes: {data!r}"


# -- pipelined extended-protocol batches -----------------------------------------------------------


def test_pipelined_batches_with_several_syncs_and_implicit_transactions(port, table):
    with _connect(port) as c:
        c.send(
            # segment 1: committed on its own
            _pbe(f"INSERT INTO {table} VALUES (1)"),
            SYNC,
            # segment 2: one implicit transaction; the error (raised at Bind: 1 / 0 is folded
            # by the planner) rolls back the INSERT before it and the server skips
            # everything after it up to the Sync
            _pbe(f"INSERT INTO {table} VALUES (2)"),
            _pbe("SELECT 1 / 0"),
            _pbe(f"INSERT INTO {table} VALUES (99)"),
            SYNC,
            # segment 3: runs normally
            _pbe(f"INSERT INTO {table} VALUES (3)"),
            SYNC,
        )
        msgs = c.read_until("Z", 3)
        assert codes_of(msgs) == "12CZ" + "12C1EZ" + "12CZ"
        assert _statuses(msgs) == "III"
        assert _sqlstates(msgs) == ["22012"]
        _nothing_more(c)
        assert _values(c, f"SELECT v FROM {table} ORDER BY v") == ["1", "3"]


def test_pipelined_explicit_transaction_across_syncs(port, table):
    with _connect(port) as c:
        c.send(
            _pbe("BEGIN"),
            SYNC,
            _pbe(f"INSERT INTO {table} VALUES (1)"),
            SYNC,
            _pbe("SELECT 1 / 0"),
            SYNC,
            _pbe("SELECT 1"),  # 25P02: the transaction is aborted across Syncs
            SYNC,
            _pbe("ROLLBACK"),
            SYNC,
            _pbe(f"INSERT INTO {table} VALUES (2)"),
            SYNC,
        )
        msgs = c.read_until("Z", 6)
        assert _statuses(msgs) == "TTEEII"
        assert _sqlstates(msgs) == ["22012", "25P02"]
        # 1 / 0 fails at Bind; in the aborted transaction even Parse fails (25P02)
        assert codes_of(msgs) == "12CZ" + "12CZ" + "1EZ" + "EZ" + "12CZ" + "12CZ"
        _nothing_more(c)
        assert _values(c, f"SELECT v FROM {table}") == ["2"]


def test_simple_query_right_after_extended_batch(port):
    """The Query is sent before the batch's Sync responses are read."""
    with _connect(port) as c:
        c.send(
            parse("SELECT $1::int + 1"),
            bind([b"41"]),
            describe(b"P"),
            execute(),
            SYNC,
            query("SELECT 'simple'; SELECT 'two'"),
        )
        msgs = c.read_until("Z", 2)
        assert codes_of(msgs) == "12TDCZ" + "TDCTDCZ"
        rows = [data_row(b) for code, b in msgs if code == "D"]
        assert rows == [["42"], ["simple"], ["two"]]
        _nothing_more(c)


def test_simple_query_in_the_middle_of_extended_protocol(port):
    """A Query between Execute and Sync (odyssey "simple query in middle of xproto")."""
    with _connect(port) as c:
        c.send(_pbe("SELECT 'extended'"), query("SELECT 'simple'"), SYNC)
        msgs = c.read_until("Z", 2)
        assert codes_of(msgs) == "12DC" + "TDCZ" + "Z"
        rows = [data_row(b) for code, b in msgs if code == "D"]
        assert rows == [["extended"], ["simple"]]
        assert _statuses(msgs) == "II"
        _nothing_more(c)
        assert _values(c, "SELECT 3") == ["3"]


def test_many_pipelined_batches_in_one_write(port):
    n = 500
    with _connect(port) as c:
        c.send(
            *(
                parse("SELECT $1::int") + bind([str(i).encode()]) + execute() + SYNC
                for i in range(n)
            )
        )
        msgs = c.read_until("Z", n)
        assert [data_row(b)[0] for code, b in msgs if code == "D"] == [str(i) for i in range(n)]
        _nothing_more(c)


# -- COPY in the extended protocol and CopyFail ------------------------------------------------------


def test_copy_from_stdin_via_extended_protocol(port, table):
    with _connect(port) as c:
        c.send(_pbe(f"COPY {table} FROM STDIN"))
        msgs = c.read_until("G")
        assert codes_of(msgs) == "12G"
        c.send(copy_data(b"1\n2\n"), copy_data(b"3\n"), COPY_DONE, SYNC)
        msgs = c.read_until("Z")
        assert codes_of(msgs) == "CZ"
        assert msgs[0][1] == b"COPY 3\0"
        _nothing_more(c)
        assert _values(c, f"SELECT v FROM {table} ORDER BY v") == ["1", "2", "3"]


def test_copy_from_stdin_extended_with_sync_sent_early(port, table):
    """libpq's way: Parse/Bind/Execute/Sync at once, then CopyData/CopyDone/Sync. The Sync sent
    during copy-in is ignored by the server: one ReadyForQuery in all."""
    with _connect(port) as c:
        c.send(_pbe(f"COPY {table} FROM STDIN"), SYNC)
        assert codes_of(c.read_until("G")) == "12G"
        c.send(copy_data(b"7\n"), COPY_DONE, SYNC)
        msgs = c.read_until("Z")
        assert codes_of(msgs) == "CZ"
        _nothing_more(c)
        assert _values(c, f"SELECT v FROM {table}") == ["7"]


def test_copy_fail_simple_protocol(port, table):
    with _connect(port) as c:
        c.send(query(f"COPY {table} FROM STDIN"))
        assert codes_of(c.read_until("G")) == "G"
        c.send(copy_data(b"1\n"), copy_fail("client gave up"))
        msgs = c.read_until("Z")
        assert codes_of(msgs) == "EZ"
        fields = error_fields(msgs[0][1])
        assert fields["C"] == "57014" and "client gave up" in fields["M"], fields
        assert _statuses(msgs) == "I"
        assert _values(c, f"SELECT count(*) FROM {table}") == ["0"]
        assert _values(c, "SELECT 'usable'") == ["usable"]


def test_copy_fail_extended_protocol(port, table):
    with _connect(port) as c:
        c.send(_pbe(f"COPY {table} FROM STDIN"))
        assert codes_of(c.read_until("G")) == "12G"
        c.send(copy_data(b"1\n"), copy_fail("client gave up"))
        code, body = c.read_msg()
        assert code == "E" and error_fields(body)["C"] == "57014"
        c.send(SYNC)  # the server discards everything up to the Sync
        msgs = c.read_until("Z")
        assert codes_of(msgs) == "Z" and _statuses(msgs) == "I"
        assert _values(c, f"SELECT count(*) FROM {table}") == ["0"]


def test_copy_to_stdout_via_extended_protocol(port):
    with _connect(port) as c:
        c.send(_pbe("COPY (SELECT g FROM generate_series(1, 3) g) TO STDOUT"), SYNC)
        msgs = c.read_until("Z")
        assert codes_of(msgs) == "12HdddcCZ"
        assert [b for code, b in msgs if code == "d"] == [b"1\n", b"2\n", b"3\n"]


# -- Execute with a row limit + Flush, no Sync (pgpool2 #59) -----------------------------------------


def test_execute_row_limit_then_flush_without_sync(port):
    with _connect(port) as c:
        c.send(
            parse("SELECT g FROM generate_series(1, 10) g"),
            bind(),
            describe(b"P"),
            execute(max_rows=3),
            FLUSH,
        )
        # no Sync sent: the proxy must forward what the server flushed
        msgs = c.read_until("s")
        assert codes_of(msgs) == "12TDDDs"
        assert [data_row(b)[0] for code, b in msgs if code == "D"] == ["1", "2", "3"]
        c.send(execute(max_rows=4), FLUSH)
        msgs = c.read_until("s")
        assert [data_row(b)[0] for code, b in msgs if code == "D"] == ["4", "5", "6", "7"]
        c.send(execute(), SYNC)
        msgs = c.read_until("Z")
        assert codes_of(msgs) == "DDDCZ"
        assert [data_row(b)[0] for code, b in msgs if code == "D"] == ["8", "9", "10"]
        assert msgs[-2][1] == b"SELECT 3\0"
        _nothing_more(c)


def test_parse_describe_flush_without_sync(port):
    with _connect(port) as c:
        c.send(parse("SELECT $1::int AS a, 'x'::text AS b", name="s1"), describe(b"S", "s1"), FLUSH)
        msgs = c.read_until("T")
        assert codes_of(msgs) == "1tT"
        c.send(bind([b"5"], statement="s1"), execute(), SYNC)
        msgs = c.read_until("Z")
        assert codes_of(msgs) == "2DCZ"
        assert data_row(msgs[1][1]) == ["5", "x"]


# -- encryption requests and protocol negotiation ---------------------------------------------------


def test_ssl_request_refused_then_startup_on_same_socket(port):
    with RawClient(port) as c:
        c.send(ssl_request())
        assert c.read_byte() == b"N"
        c.startup({"application_name": unique_app("ssl")})
        assert _values(c, "SELECT 'after N'") == ["after N"]


@pytest.mark.parametrize("then_ssl", [False, True], ids=["gssenc", "gssenc_then_ssl"])
def test_gssenc_request_refused_then_startup_on_same_socket(edge_pgtwist, then_ssl):
    """pgtwist only (a PostgreSQL built with GSSAPI answers 'G' here; pgtwist offers no GSS
    encryption).  libpq's gssencmode=prefer may follow a refusal with an SSLRequest."""
    with RawClient(edge_pgtwist.port) as c:
        c.send(gssenc_request())
        assert c.read_byte() == b"N"
        if then_ssl:
            c.send(ssl_request())
            assert c.read_byte() == b"N"
        c.startup({"application_name": unique_app("gss")})
        assert _values(c, "SELECT 'after N'") == ["after N"]


def test_psycopg_sslmode_prefer_and_require(cluster, edge_pgtwist):
    with psycopg.connect(edge_pgtwist.dsn(sslmode="prefer"), connect_timeout=5) as conn:
        assert conn.execute("SELECT inet_server_port()").fetchone() == (cluster.primary_port,)
        assert conn.pgconn.ssl_in_use is False
    with pytest.raises(psycopg.OperationalError, match="(?i)ssl"):
        psycopg.connect(edge_pgtwist.dsn(sslmode="require"), connect_timeout=5)


def _negotiate(body: bytes) -> tuple[tuple[int, int], list[str]]:
    """NegotiateProtocolVersion: ((major, minor) of the newest version, unsupported options).

    The protocol docs call the first field the "newest minor protocol version", but
    PostgreSQL sends a whole version number there (PG_PROTOCOL_LATEST = 3 << 16 | 0 in
    PostgreSQL 15; the negotiated version in 18), and libpq 18 reads it that way: a bare
    ``0`` is taken as a request to downgrade to protocol 0.0 and the connection fails.
    """
    newest, count = struct.unpack_from("!II", body)
    options = [o.decode() for o in body[8:].split(b"\0")[:count]]
    return (newest >> 16, newest & 0xFFFF), options


@pytest.mark.parametrize(
    ("version", "extra", "expected_options"),
    [
        (PROTOCOL_3_0 | 1, {}, []),
        (PROTOCOL_3_0 | 2, {}, []),
        (PROTOCOL_3_0, {"_pq_.foo": "bar"}, ["_pq_.foo"]),
        (PROTOCOL_3_0 | 7, {"_pq_.foo": "1", "_pq_.bar": "2"}, ["_pq_.foo", "_pq_.bar"]),
    ],
    ids=["3.1", "3.2", "3.0_pq_option", "3.7_two_options"],
)
def test_negotiate_protocol_version(port, version, extra, expected_options):
    params = {"user": "postgres", "database": "postgres", **extra}
    with RawClient(port) as c:
        c.send(startup_packet(params, version))
        msgs = c.read_login()
        assert msgs[0][0] == "v", codes_of(msgs)
        # newest version 3.0 (minor 0), as PostgreSQL 15 itself answers
        assert _negotiate(msgs[0][1]) == ((3, 0), expected_options)
        codes = codes_of(msgs)
        assert codes.startswith("vR") and codes.endswith("KZ"), codes
        assert msgs[1][1] == b"\0\0\0\0"  # AuthenticationOk
        assert _values(c, "SELECT 'negotiated'") == ["negotiated"]


def test_libpq_asking_for_newest_protocol_is_downgraded(port):
    """libpq 18 with max_protocol_version=latest starts with 3.2 and must settle on 3.0."""
    if psycopg.pq.version() < 180000:
        pytest.fail(f"needs libpq >= 18 for max_protocol_version, have {psycopg.pq.version()}")
    dsn = f"host=127.0.0.1 port={port} user=postgres dbname=postgres max_protocol_version=latest"
    with psycopg.connect(dsn, connect_timeout=5) as conn:
        assert conn.execute("SELECT 'downgraded'").fetchone() == ("downgraded",)
        assert conn.info.parameter_status("server_version").startswith("15")


# -- CancelRequest -----------------------------------------------------------------------------------


def _cancel_closes_at_once(port: int, pid: int, secret: int) -> float:
    t0 = time.monotonic()
    with RawClient(port) as canceller:
        canceller.send(cancel_request(pid, secret))
        assert canceller.closed_by_peer(timeout=2), "cancel connection left open"
    return time.monotonic() - t0


@pytest.mark.parametrize("wrong", ["secret", "pid"])
def test_cancel_request_with_wrong_key_is_ignored(port, wrong):
    with _connect(port) as c:
        pid, secret = c.key
        bad = (pid, secret ^ 0x5A5A) if wrong == "secret" else (pid ^ 0x7F00, secret)
        t0 = time.monotonic()
        c.send(query("SELECT pg_sleep(1), 'done'"))
        time.sleep(0.1)
        took = _cancel_closes_at_once(port, *bad)
        assert took < 0.5, f"cancel connection closed after {took:.2f}s"
        msgs = c.read_until("Z")
        elapsed = time.monotonic() - t0
        assert codes_of(msgs) == "TDCZ", [error_fields(b) for code, b in msgs if code == "E"]
        assert data_row(msgs[1][1]) == ["", "done"]
        assert elapsed >= 0.9  # it really ran to the end


def test_cancel_request_with_right_key_cancels_and_closes_at_once(port):
    with _connect(port) as c:
        t0 = time.monotonic()
        c.send(query("SELECT pg_sleep(10)"))
        time.sleep(0.2)
        took = _cancel_closes_at_once(port, *c.key)
        assert took < 0.5, f"cancel connection closed after {took:.2f}s"
        msgs = c.read_until("Z")
        assert _sqlstates(msgs) == ["57014"]
        assert time.monotonic() - t0 < 2
        assert _values(c, "SELECT 'after cancel'") == ["after cancel"]


# -- clients that vanish ---------------------------------------------------------------------------------


def _wait_active(cluster, app: str, timeout: float = 3.0) -> None:
    sql = (
        "SELECT count(*) FROM pg_stat_activity "
        f"WHERE application_name = '{app}' AND state = 'active'"
    )
    deadline = time.monotonic() + timeout
    while cluster.psql(sql) != "1":
        assert time.monotonic() < deadline, f"{app} never became active on the primary"
        time.sleep(0.05)


def _kill_leftovers(cluster, app: str) -> None:
    """After a failed check, do not leave a sleeping backend behind for the next tests."""
    cluster.psql(
        f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = '{app}'"
    )


def _abort(client: RawClient) -> None:
    """Close with a RST, as a killed process or a dropped network would."""
    client.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    client.close()


@pytest.mark.parametrize("how", ["close", "reset"])
def test_client_disconnect_mid_query_leaves_no_backend(cluster, edge_pgtwist, how):
    app = unique_app("vanish_q")
    c = _connect(edge_pgtwist.port, app)
    try:
        c.send(query("SELECT pg_sleep(30)"))
        _wait_active(cluster, app)
        _abort(c) if how == "reset" else c.close()
        wait_no_backend(cluster, app, timeout=3)
    finally:
        c.close()
        _kill_leftovers(cluster, app)


@pytest.mark.parametrize("how", ["close", "reset"])
def test_client_disconnect_mid_copy_from_stdin_leaves_no_backend(cluster, edge_pgtwist, table, how):
    app = unique_app("vanish_copy")
    c = _connect(edge_pgtwist.port, app)
    try:
        c.send(query(f"COPY {table} FROM STDIN"))
        assert codes_of(c.read_until("G")) == "G"
        c.send(copy_data(b"1\n2\n"), copy_data(b"3\n"))
        _abort(c) if how == "reset" else c.close()
        wait_no_backend(cluster, app, timeout=3)
        assert cluster.psql(f"SELECT count(*) FROM {table}") == "0"  # nothing half-copied
    finally:
        c.close()
        _kill_leftovers(cluster, app)


def test_client_disconnect_mid_transaction_rolls_back(cluster, edge_pgtwist, table):
    app = unique_app("vanish_tx")
    c = _connect(edge_pgtwist.port, app)
    msgs = c.simple(f"BEGIN; INSERT INTO {table} VALUES (1)")
    assert _statuses(msgs) == "T"
    c.close()
    wait_no_backend(cluster, app, timeout=3)
    assert cluster.psql(f"SELECT count(*) FROM {table}") == "0"


def test_client_disconnect_mid_extended_batch_without_sync(cluster, edge_pgtwist):
    app = unique_app("vanish_x")
    c = _connect(edge_pgtwist.port, app)
    try:
        c.send(_pbe("SELECT pg_sleep(30)"), FLUSH)
        _wait_active(cluster, app)
        c.close()
        wait_no_backend(cluster, app, timeout=3)
    finally:
        _kill_leftovers(cluster, app)
