"""psycopg 3 through pgtwist: simple, extended and pipeline protocol, COPY, notifications,
cancel, transaction errors, large values and session-level facts.

In this version every statement goes to the primary, so each test also checks (where it
reads anything) that the answer came from the primary's port and not from a standby.
"""

from __future__ import annotations

import hashlib
import random
import threading
import time
import uuid

import psycopg
import pytest
from psycopg import errors as pgerr
from psycopg import pq
from psycopg.rows import tuple_row

pytestmark = pytest.mark.integration

CONNECT_TIMEOUT = 5


def _connect(pg, **kw) -> psycopg.Connection:
    kw.setdefault("autocommit", True)
    return psycopg.connect(pg.dsn(), connect_timeout=CONNECT_TIMEOUT, **kw)


def _unique(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:10]}"


def _where(conn) -> tuple:
    return conn.execute("SELECT inet_server_port(), pg_is_in_recovery()").fetchone()


# -- simple and extended protocol -----------------------------------------------------------


def test_simple_protocol_queries(cluster, shared_pgtwist):
    with _connect(shared_pgtwist) as conn:
        cur = psycopg.ClientCursor(conn)  # client-side binding: always the simple protocol
        cur.execute("SELECT inet_server_port(), pg_is_in_recovery(); SELECT %s::text, 2", ["a"])
        assert cur.fetchone() == (cluster.primary_port, False)
        assert cur.nextset()
        assert cur.fetchone() == ("a", 2)
        assert not cur.nextset()
        # psycopg also uses the simple protocol for a parameterless execute()
        cur2 = conn.execute("SELECT 'x' || 'y', NULL::int")
        assert cur2.fetchone() == ("xy", None)
        cur2.execute("")  # EmptyQueryResponse
        assert cur2.pgresult.status == pq.ExecStatus.EMPTY_QUERY


def test_extended_protocol_queries(cluster, shared_pgtwist):
    with _connect(shared_pgtwist) as conn:
        assert conn.execute("SELECT %s::int + %s::int", [40, 2]).fetchone() == (42,)
        row = conn.execute(
            "SELECT %s::text, inet_server_port(), pg_is_in_recovery()", ["é€"], prepare=False
        ).fetchone()
        assert row == ("é€", cluster.primary_port, False)
        row = conn.execute("SELECT %s::int * 2", [21], prepare=True).fetchone()
        assert row == (42,)
        cur = conn.cursor(binary=True)
        assert cur.execute("SELECT %b::bigint, %b::text", [2**40, None]).fetchone() == (
            2**40,
            None,
        )
        rows = conn.execute(
            "SELECT g FROM generate_series(1, %s) g WHERE g %% %s = 0", [20, 5], prepare=False
        ).fetchall()
        assert rows == [(5,), (10,), (15,), (20,)]
        with pytest.raises(pgerr.UndefinedTable):
            conn.execute("SELECT * FROM pgtwist_no_such_table WHERE 1 = %s", [1])
        assert conn.execute("SELECT %s::int", [7]).fetchone() == (7,)


# -- pipeline mode --------------------------------------------------------------------------


def test_pipeline_with_several_syncs_and_an_error(cluster, pgtwist):
    table = _unique("pipe")
    with _connect(pgtwist) as conn:
        conn.execute(f"CREATE TABLE {table} (v int)")
        try:
            with conn.pipeline() as p:
                # segment 1: one implicit transaction, committed at its Sync
                conn.execute(f"INSERT INTO {table} VALUES (%s)", [1])
                c1 = conn.execute("SELECT inet_server_port(), %s::int", [1])
                p.sync()
                # segment 2: the error aborts the whole segment: the INSERT sent before it
                # is rolled back and the one after it is skipped by the server
                conn.execute(f"INSERT INTO {table} VALUES (%s)", [2])
                c2 = conn.execute("SELECT 1 / %s", [0])
                c3 = conn.execute(f"INSERT INTO {table} VALUES (%s)", [3])
                with pytest.raises(pgerr.DivisionByZero):
                    p.sync()  # psycopg raises the segment's error here
                # segment 3: runs normally after the failed one
                c4 = conn.execute(f"INSERT INTO {table} VALUES (%s) RETURNING v", [4])
                p.sync()
                assert c1.fetchone() == (cluster.primary_port, 1)
                assert c4.fetchone() == (4,)
                for cur in (c2, c3):  # no result: the error / skipped statement
                    with pytest.raises(psycopg.ProgrammingError, match="no result available"):
                        cur.fetchone()
            # the segment after the failed Sync was still executed by the server
            rows = conn.execute(f"SELECT v FROM {table} ORDER BY v").fetchall()
            assert rows == [(1,), (4,)]
            assert conn.info.transaction_status == pq.TransactionStatus.IDLE

            # pipelines keep working on the same connection afterwards
            with conn.pipeline() as p:
                a = conn.execute("SELECT %s::int", [10])
                p.sync()
                b = conn.execute("SELECT %s::int", [20])
            assert (a.fetchone(), b.fetchone()) == ((10,), (20,))
            assert _where(conn) == (cluster.primary_port, False)
        finally:
            conn.execute(f"DROP TABLE IF EXISTS {table}")


def test_pipeline_explicit_transaction_across_syncs(cluster, pgtwist):
    table = _unique("pipetx")
    with _connect(pgtwist) as conn:
        conn.execute(f"CREATE TABLE {table} (v int)")
        try:
            with conn.pipeline() as p:
                conn.execute("BEGIN")
                p.sync()
                conn.execute(f"INSERT INTO {table} VALUES (%s)", [1])
                p.sync()
                conn.execute(f"INSERT INTO {table} VALUES (%s)", [2])
                conn.execute("COMMIT")
                p.sync()
            assert conn.info.transaction_status == pq.TransactionStatus.IDLE
            assert conn.execute(f"SELECT count(*) FROM {table}").fetchone() == (2,)
        finally:
            conn.execute(f"DROP TABLE IF EXISTS {table}")


# -- automatic server-side prepare ------------------------------------------------------------


def test_automatic_prepare_after_threshold(cluster, shared_pgtwist):
    query = "SELECT %s::int + 1 AS pgtwist_autoprep"
    with _connect(shared_pgtwist) as conn:
        assert conn.prepare_threshold == 5

        def prepared() -> list[str]:
            rows = conn.execute(
                "SELECT statement FROM pg_prepared_statements WHERE statement LIKE %s",
                ["%pgtwist_autoprep%"],
                prepare=False,
            ).fetchall()
            return [r[0] for r in rows]

        for i in range(5):
            assert conn.execute(query, [i]).fetchone() == (i + 1,)
        assert prepared() == []  # five runs: still unnamed statements
        assert conn.execute(query, [5]).fetchone() == (6,)  # 6th run: Parse with a name
        assert prepared() == ["SELECT $1::int + 1 AS pgtwist_autoprep"]
        for i in range(6, 20):  # now Bind/Execute on the named statement only
            assert conn.execute(query, [i]).fetchone() == (i + 1,)
        assert prepared() == ["SELECT $1::int + 1 AS pgtwist_autoprep"]
        assert _where(conn) == (cluster.primary_port, False)


# -- COPY ------------------------------------------------------------------------------------

N_COPY = 100_000


def test_copy_from_stdin_and_to_stdout_100k_rows(cluster, pgtwist):
    with _connect(pgtwist) as conn:
        conn.execute("CREATE TEMP TABLE copy_rows (id int, label text, note text)")
        with conn.cursor() as cur:
            with cur.copy("COPY copy_rows (id, label, note) FROM STDIN") as copy:
                for i in range(N_COPY):
                    copy.write_row((i, f"row {i}", None if i % 7 == 0 else "tab\there"))
            assert cur.rowcount == N_COPY
        got = conn.execute(
            "SELECT count(*), sum(id), count(note), "
            "md5(string_agg(id || ':' || label, ',' ORDER BY id)) FROM copy_rows"
        ).fetchone()
        expected_md5 = hashlib.md5(
            ",".join(f"{i}:row {i}" for i in range(N_COPY)).encode()
        ).hexdigest()
        nulls = len(range(0, N_COPY, 7))
        assert got == (N_COPY, N_COPY * (N_COPY - 1) // 2, N_COPY - nulls, expected_md5)

        with conn.cursor() as cur:
            with cur.copy(
                "COPY (SELECT id, label, note FROM copy_rows ORDER BY id) TO STDOUT"
            ) as copy:
                data = b"".join(bytes(chunk) for chunk in copy)
            assert cur.rowcount == N_COPY
        null, tab = "\\N", "tab\\there"
        expected = "".join(
            f"{i}\trow {i}\t{null if i % 7 == 0 else tab}\n" for i in range(N_COPY)
        ).encode()
        assert len(data) == len(expected)
        assert data == expected
        assert _where(conn) == (cluster.primary_port, False)


# -- LISTEN / NOTIFY --------------------------------------------------------------------------


def test_listen_notify_between_two_clients(cluster, shared_pgtwist):
    channel = _unique("chan")
    with _connect(shared_pgtwist) as listener, _connect(shared_pgtwist) as notifier:
        listener.execute(f"LISTEN {channel}")
        notifier_pid = notifier.execute("SELECT pg_backend_pid()").fetchone()[0]

        def notify():
            time.sleep(0.2)  # the listener is idle in notifies() by then
            notifier.execute("SELECT pg_notify(%s, %s)", [channel, "hello through pgtwist"])

        t = threading.Thread(target=notify, daemon=True)
        t0 = time.monotonic()
        t.start()
        got = list(listener.notifies(timeout=2, stop_after=1))
        elapsed = time.monotonic() - t0
        t.join(5)
        assert [(n.channel, n.payload) for n in got] == [(channel, "hello through pgtwist")]
        assert elapsed < 2
        # the NotificationResponse is forwarded unchanged: it names the *server* pid of the
        # notifying session, not the pgtwist key the notifier got in BackendKeyData
        assert got[0].pid == notifier_pid
        assert listener.execute("SELECT 1").fetchone() == (1,)


# -- cancel ----------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["cancel", "cancel_safe"])
def test_cancel_pg_sleep_from_another_thread(cluster, shared_pgtwist, method):
    with _connect(shared_pgtwist) as conn:
        fired = {}

        def cancel():
            time.sleep(0.3)
            fired["at"] = time.monotonic()
            getattr(conn, method)()

        t = threading.Thread(target=cancel, daemon=True)
        t.start()
        t0 = time.monotonic()
        with pytest.raises(pgerr.QueryCanceled) as exc:
            conn.execute("SELECT pg_sleep(10)")
        done = time.monotonic()
        t.join(5)
        assert exc.value.sqlstate == "57014"
        assert done - fired["at"] < 1.0, f"cancel took {done - fired['at']:.2f}s"
        assert done - t0 < 2.0
        assert conn.execute("SELECT 'still usable'").fetchone() == ("still usable",)


# -- errors in transactions ------------------------------------------------------------------


def test_error_in_explicit_transaction_then_25P02_then_rollback(cluster, shared_pgtwist):
    with _connect(shared_pgtwist) as conn:
        conn.execute("BEGIN")
        conn.execute("CREATE TEMP TABLE txerr (v int)")
        conn.execute("INSERT INTO txerr VALUES (1)")
        with pytest.raises(pgerr.DivisionByZero):
            conn.execute("SELECT 1 / 0")
        assert conn.info.transaction_status == pq.TransactionStatus.INERROR
        with pytest.raises(pgerr.InFailedSqlTransaction) as exc:
            conn.execute("SELECT 1")
        assert exc.value.sqlstate == "25P02"
        with pytest.raises(pgerr.InFailedSqlTransaction):
            conn.execute("SELECT %s::int", [1])  # extended protocol too
        conn.execute("ROLLBACK")
        assert conn.info.transaction_status == pq.TransactionStatus.IDLE
        # the temp table was created inside the rolled-back transaction
        with pytest.raises(pgerr.UndefinedTable):
            conn.execute("SELECT * FROM txerr")
        assert conn.execute("SELECT %s::text", ["reused"]).fetchone() == ("reused",)
        assert _where(conn) == (cluster.primary_port, False)


def test_non_autocommit_connection_error_and_rollback(cluster, shared_pgtwist):
    with _connect(shared_pgtwist, autocommit=False) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
        assert conn.info.transaction_status == pq.TransactionStatus.INTRANS
        with pytest.raises(pgerr.UndefinedColumn):
            conn.execute("SELECT no_such_column")
        with pytest.raises(pgerr.InFailedSqlTransaction):
            conn.execute("SELECT 2")
        conn.rollback()
        assert conn.execute("SELECT 3").fetchone() == (3,)
        conn.commit()
        assert conn.info.transaction_status == pq.TransactionStatus.IDLE


# -- large results and values -----------------------------------------------------------------


def test_100k_row_result(cluster, shared_pgtwist):
    with _connect(shared_pgtwist) as conn:
        cur = conn.cursor(row_factory=tuple_row)
        cur.execute("SELECT g, md5(g::text) FROM generate_series(1, %s) g ORDER BY g", [100_000])
        rows = cur.fetchall()
        assert len(rows) == 100_000
        assert rows[0] == (1, hashlib.md5(b"1").hexdigest())
        assert rows[-1] == (100_000, hashlib.md5(b"100000").hexdigest())
        assert sum(r[0] for r in rows) == 100_000 * 100_001 // 2
        assert all(rows[i][0] == i + 1 for i in range(0, 100_000, 997))
        # and through the simple protocol
        rows = conn.execute("SELECT g FROM generate_series(1, 100000) g").fetchall()
        assert len(rows) == 100_000 and rows[-1] == (100_000,)


BYTEA_SIZE = 10 * 1024 * 1024


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "text"])
def test_10mb_bytea_round_trip(cluster, shared_pgtwist, binary):
    data = random.Random(1234).randbytes(BYTEA_SIZE)
    placeholder = "%b" if binary else "%t"
    with _connect(shared_pgtwist) as conn:
        cur = conn.cursor(binary=binary)
        # the server got every byte...
        cur.execute(f"SELECT length(b), md5(b) FROM (SELECT {placeholder}::bytea AS b) v", [data])
        assert cur.fetchone() == (BYTEA_SIZE, hashlib.md5(data).hexdigest())
        # ...and sends them all back
        cur.execute(f"SELECT {placeholder}::bytea", [data])
        assert cur.pgresult.fformat(0) == (1 if binary else 0)
        got = cur.fetchone()[0]
        assert len(got) == BYTEA_SIZE
        assert bytes(got) == data
        assert conn.execute("SELECT 1").fetchone() == (1,)


# -- parameter status ---------------------------------------------------------------------------


def test_parameter_status_reported_and_updated(cluster, shared_pgtwist):
    with _connect(shared_pgtwist) as conn:
        info = conn.info
        direct = psycopg.connect(cluster.dsn(), connect_timeout=CONNECT_TIMEOUT)
        with direct:
            expected_version = direct.info.parameter_status("server_version")
        assert info.parameter_status("server_version") == expected_version
        assert expected_version.startswith("15")
        assert info.server_version == int(conn.execute("SHOW server_version_num").fetchone()[0])
        assert info.parameter_status("client_encoding") == "UTF8"
        assert info.parameter_status("integer_datetimes") == "on"
        assert info.parameter_status("standard_conforming_strings") == "on"

        app = _unique("app")
        conn.execute(f"SET application_name = '{app}'")
        assert info.parameter_status("application_name") == app
        conn.execute("SET TimeZone = 'Asia/Tokyo'")
        assert info.parameter_status("TimeZone") == "Asia/Tokyo"
        conn.execute("SELECT set_config('TimeZone', %s, false)", ["America/Sao_Paulo"])
        assert info.parameter_status("TimeZone") == "America/Sao_Paulo"
        assert conn.execute("SHOW TimeZone").fetchone() == ("America/Sao_Paulo",)
        # the change really reached the server session
        row = conn.execute(
            "SELECT application_name FROM pg_stat_activity WHERE pid = pg_backend_pid()"
        ).fetchone()
        assert row == (app,)


# -- backend pid and termination -----------------------------------------------------------------


def test_backend_pid_is_the_primary_backend_and_terminate_own_backend(cluster, pgtwist):
    """What a client sees as its backend pid.

    Session pooling: ``conn.info.backend_pid`` (pgtwist's BackendKeyData) is the real
    server process on the primary, as ``pg_backend_pid()`` there says (the secret is
    pgtwist's own).  Ending that server process from the session ends the client's
    session with an error, and pgtwist serves new clients afterwards.
    """
    app = _unique("term")
    with psycopg.connect(
        pgtwist.dsn(application_name=app), connect_timeout=CONNECT_TIMEOUT, autocommit=True
    ) as conn:
        key_pid = conn.info.backend_pid
        server_pid = conn.execute("SELECT pg_backend_pid()").fetchone()[0]
        assert key_pid == server_pid
        direct = cluster.psql(f"SELECT pid FROM pg_stat_activity WHERE application_name = '{app}'")
        assert direct == str(key_pid)

        # the server's own FATAL 57P01 reaches the client, then the connection closes
        with pytest.raises(pgerr.AdminShutdown) as exc:
            conn.execute("SELECT pg_terminate_backend(pg_backend_pid())")
            conn.execute("SELECT 1")  # in case the FATAL arrived after the result
        assert exc.value.sqlstate == "57P01"
        assert "terminating connection due to administrator command" in str(exc.value)
        assert conn.closed or conn.broken

    deadline = time.monotonic() + 3
    while cluster.psql(f"SELECT count(*) FROM pg_stat_activity WHERE pid = {server_pid}") != "0":
        assert time.monotonic() < deadline, "terminated backend still present"
        time.sleep(0.05)

    with _connect(pgtwist) as again:
        assert _where(again) == (cluster.primary_port, False)
        assert again.info.backend_pid != key_pid
