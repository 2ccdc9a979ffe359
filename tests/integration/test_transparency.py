"""Issue 11 transparency: what a driver sees through pgtwist with load balancing on is
what it sees from PostgreSQL directly.

- the backend pid of a session-pooled connection is its primary backend's own
  (pg_terminate_backend, NOTIFY sender pids), and cancel keys still work and fail closed;
- transaction-scoped settings are read where the transaction runs;
- a statement a standby refuses as read-only (25006) is retried on the primary;
- DROP DATABASE and ALTER DATABASE ... RENAME are not refused because of pgtwist's own
  idle pooled links.

Every daemon sends all reads to the replica (weights 0:1), so a standby answering shows.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time

import asyncpg
import psycopg
import pytest
from psycopg import errors as pgerr

from pgtwist.wire import messages as m

from .rawpg import RawClient, codes_of, query, rows_of

pytestmark = pytest.mark.integration

SESSION = {}
TRANSACTION = {"pool_mode": "transaction"}
MODES = pytest.mark.parametrize("mode", [SESSION, TRANSACTION], ids=["session", "transaction"])


def connect(pg, **kw) -> psycopg.Connection:
    kw.setdefault("autocommit", True)
    kw.setdefault("prepare_threshold", None)
    dbname = kw.pop("dbname", "postgres")
    app = kw.pop("application_name", None)
    return psycopg.connect(pg.dsn(dbname=dbname, application_name=app), connect_timeout=5,
                           **kw)


def direct(cluster, **kw) -> psycopg.Connection:
    kw.setdefault("autocommit", True)
    return psycopg.connect(cluster.dsn(cluster.primary_port), connect_timeout=5, **kw)


def one(conn, sql: str, params=None):
    return conn.execute(sql, params).fetchone()[0]


# -- 1. backend pid -------------------------------------------------------------------------------


def test_backend_pid_is_the_primary_backend(cluster, daemons):
    pg = daemons()
    with connect(pg, application_name="tp_pid") as conn, direct(cluster) as ref:
        pid = conn.info.backend_pid
        row = ref.execute("SELECT datname, application_name FROM pg_stat_activity "
                          "WHERE pid = %s", (pid,)).fetchone()
        assert row == ("postgres", "tp_pid")
        # the same pid as the primary backend reports itself (the primary answers this:
        # a volatile function)
        assert one(conn, "SELECT pg_backend_pid() FROM (SELECT random()) r") == pid


def test_asyncpg_server_pid_is_the_primary_backend(cluster, daemons):
    pg = daemons()

    async def check():
        conn = await asyncpg.connect(host=pg.host, port=pg.port, user="postgres",
                                     database="postgres", timeout=5,
                                     server_settings={"application_name": "tp_apid"})
        try:
            pid = conn.get_server_pid()
            with direct(cluster) as ref:
                app = ref.execute("SELECT application_name FROM pg_stat_activity "
                                  "WHERE pid = %s", (pid,)).fetchone()
            return app
        finally:
            await conn.close()

    assert asyncio.run(asyncio.wait_for(check(), 20)) == ("tp_apid",)


def test_pg_terminate_backend_ends_the_connection(cluster, daemons):
    pg = daemons()
    victim = connect(pg)
    try:
        assert one(victim, "SELECT 1") == 1
        with connect(pg) as killer:
            assert one(killer, "SELECT pg_terminate_backend(%s)",
                       (victim.info.backend_pid,)) is True
        with pytest.raises(psycopg.OperationalError):
            for _ in range(50):  # the server ends the backend asynchronously
                victim.execute("SELECT 1")
                time.sleep(0.1)
        # The FATAL error may be read before the connection's end: the driver marks it
        # broken at its next use.
        for _ in range(20):
            if victim.closed or victim.broken:
                break
            with contextlib.suppress(psycopg.Error):
                victim.execute("SELECT 1")
            time.sleep(0.1)
        assert victim.closed or victim.broken
    finally:
        victim.close()
    with connect(pg) as conn:  # pgtwist itself is fine
        assert one(conn, "SELECT 2") == 2


def test_self_notification_carries_own_pid(daemons):
    pg = daemons()
    with connect(pg) as conn:
        conn.execute("LISTEN tp_channel")
        conn.execute("NOTIFY tp_channel, 'hello'")
        notes = list(conn.notifies(timeout=5, stop_after=1))
        assert [(n.channel, n.payload) for n in notes] == [("tp_channel", "hello")]
        assert notes[0].pid == conn.info.backend_pid


def test_asyncpg_self_notification_carries_own_pid(daemons):
    pg = daemons()

    async def run():
        conn = await asyncpg.connect(host=pg.host, port=pg.port, user="postgres",
                                     database="postgres", timeout=5)
        got = asyncio.get_running_loop().create_future()
        try:
            await conn.add_listener("tp_achannel",
                                    lambda c, pid, ch, payload: got.set_result(pid))
            await conn.execute("NOTIFY tp_achannel, 'x'")
            return await asyncio.wait_for(got, 5), conn.get_server_pid()
        finally:
            await conn.close()

    sender, own = asyncio.run(asyncio.wait_for(run(), 20))
    assert sender == own


def _run_sleep(conn, seconds: float, result: list) -> None:
    try:
        conn.execute(f"SELECT pg_sleep({seconds})")
        result.append("done")
    except Exception as exc:  # noqa: BLE001 - the test inspects it
        result.append(exc)


def _raw_cancel(pg, pid: int, secret: int) -> None:
    with socket.create_connection((pg.host, pg.port), timeout=5) as sock:
        sock.sendall(m.cancel_request(pid, secret))
        sock.settimeout(5)
        assert sock.recv(1) == b""  # the server (pgtwist) closes without an answer


@MODES
def test_cancel_with_the_clients_key_and_only_with_it(daemons, mode):
    pg = daemons(**mode)
    with connect(pg) as conn:
        # a wrong secret for the right pid cancels nothing
        result: list = []
        t = threading.Thread(target=_run_sleep, args=(conn, 1.5, result))
        t.start()
        time.sleep(0.5)
        for secret in (0, 1, 0xFFFFFFFF, 123456789):
            _raw_cancel(pg, conn.info.backend_pid, secret)
        t.join(10)
        assert result == ["done"]
        # the client's own key (psycopg's cancel) cancels its running query
        result = []
        t = threading.Thread(target=_run_sleep, args=(conn, 30, result))
        t.start()
        time.sleep(0.5)
        conn.cancel()
        t.join(10)
        assert len(result) == 1 and isinstance(result[0], pgerr.QueryCanceled), result
        assert one(conn, "SELECT 3") == 3


def test_transaction_mode_keeps_pgtwists_own_pid(cluster, daemons):
    pg = daemons(**TRANSACTION)
    with connect(pg) as conn, direct(cluster) as ref:
        pid = conn.info.backend_pid
        assert one(conn, "SELECT 1") == 1
        assert ref.execute("SELECT count(*) FROM pg_stat_activity WHERE pid = %s",
                           (pid,)).fetchone()[0] == 0


# -- 2. transaction-scoped settings ---------------------------------------------------------------

_TXN_READS = [
    # (statements before, the read) — every read answered as the primary answers it
    ([], "SHOW transaction_read_only"),
    ([], "SELECT current_setting('transaction_read_only')"),
    ([], "SHOW transaction_isolation"),
    (["BEGIN ISOLATION LEVEL SERIALIZABLE"], "SHOW transaction_isolation"),
    (["BEGIN ISOLATION LEVEL REPEATABLE READ"], "SHOW transaction_isolation"),
    (["BEGIN ISOLATION LEVEL REPEATABLE READ"],
     "SELECT current_setting('transaction_isolation')"),
    (["BEGIN", "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ"],
     "SHOW TRANSACTION ISOLATION LEVEL"),
    (["BEGIN READ ONLY"], "SHOW transaction_read_only"),
    (["BEGIN"], "SHOW transaction_read_only"),
    (["BEGIN ISOLATION LEVEL SERIALIZABLE READ ONLY DEFERRABLE"],
     "SHOW transaction_deferrable"),
    (["BEGIN", "SET TRANSACTION READ ONLY", "SET TRANSACTION DEFERRABLE"],
     "SELECT current_setting('transaction_deferrable'), "
     "current_setting('transaction_read_only')"),
]


def _answers(conn, extended: bool) -> list:
    out = []
    for before, read in _TXN_READS:
        for sql in before:
            conn.execute(sql)
        if extended:
            out.append(conn.execute(read, prepare=False, binary=True).fetchone())
        else:
            out.append(conn.execute(read).fetchone())
        if before:
            conn.execute("ROLLBACK")
    return out


@MODES
@pytest.mark.parametrize("extended", [False, True], ids=["simple", "extended"])
def test_transaction_settings_are_read_where_the_transaction_runs(cluster, daemons, mode,
                                                                  extended):
    pg = daemons(**mode)
    with direct(cluster) as ref:
        expected = _answers(ref, extended)
    assert ("serializable",) in expected and ("off",) in expected  # a primary's answers
    with connect(pg) as conn:
        assert _answers(conn, extended) == expected


def test_transaction_isolation_in_a_psycopg_transaction(daemons):
    pg = daemons(**TRANSACTION)
    with connect(pg, autocommit=False) as conn:
        conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        assert one(conn, "SHOW transaction_isolation") == "repeatable read"
        conn.rollback()
        conn.read_only = True
        assert one(conn, "SELECT current_setting('transaction_read_only')") == "on"
        conn.rollback()


# -- 4. DROP DATABASE / ALTER DATABASE RENAME -----------------------------------------------------


def _pooled_links_to(cluster, database: str, timeout: float = 10) -> int:
    """Wait until pgtwist's released links to ``database`` sit idle on the primary."""
    deadline = time.monotonic() + timeout
    with direct(cluster) as ref:
        while True:
            n = ref.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = %s "
                            "AND state = 'idle'", (database,)).fetchone()[0]
            if n or time.monotonic() > deadline:
                return n
            time.sleep(0.05)


def _use(pg, database: str, clients: int = 2) -> None:
    conns = [connect(pg, dbname=database) for _ in range(clients)]
    for c in conns:
        assert one(c, "SELECT 1") == 1
    for c in conns:
        c.close()


@MODES
def test_drop_database_closes_pgtwists_idle_links(cluster, daemons, mode):
    pg = daemons(**mode)
    name = f"tp_drop_{'txn' if mode else 'sess'}"
    cluster.psql(f"DROP DATABASE IF EXISTS {name}")
    cluster.psql(f"DROP DATABASE IF EXISTS {name}_renamed")
    cluster.psql(f"CREATE DATABASE {name}")
    cluster.wait_replayed()
    _use(pg, name)
    assert _pooled_links_to(cluster, name) >= 1
    with connect(pg) as conn:
        conn.execute(f"ALTER DATABASE {name} RENAME TO {name}_renamed")
        _use(pg, f"{name}_renamed")
        assert _pooled_links_to(cluster, f"{name}_renamed") >= 1
        started = time.monotonic()
        conn.execute(f"DROP DATABASE {name}_renamed", prepare=False, binary=True)  # extended
        assert time.monotonic() - started < 4  # not PostgreSQL's 5 s wait for other users
    with direct(cluster) as ref:
        assert ref.execute("SELECT count(*) FROM pg_database WHERE datname LIKE %s",
                           (f"{name}%",)).fetchone()[0] == 0


def test_drop_database_still_refused_for_a_connected_client(cluster, daemons):
    """Only pgtwist's idle links are closed: a client's own session is another user."""
    pg = daemons()
    name = "tp_drop_busy"
    cluster.psql(f"DROP DATABASE IF EXISTS {name}")
    cluster.psql(f"CREATE DATABASE {name}")
    with connect(pg, dbname=name) as user, connect(pg) as conn:
        assert one(user, "SELECT 1") == 1
        with pytest.raises(pgerr.ObjectInUse):
            conn.execute(f"DROP DATABASE {name}")
        assert one(user, "SELECT 2") == 2
    cluster.psql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


# -- 3. a standby's read-only refusal (25006) retried on the primary ------------------------------


@pytest.fixture(scope="module")
def writer_functions(cluster):
    """A stable function (so balanced) that calls a volatile one that writes."""
    cluster.psql("""
        CREATE TABLE IF NOT EXISTS tp_log (id serial, note text);
        GRANT ALL ON tp_log, tp_log_id_seq TO PUBLIC;
        CREATE OR REPLACE FUNCTION tp_write(note text) RETURNS int VOLATILE LANGUAGE sql
            AS 'INSERT INTO tp_log (note) VALUES (note) RETURNING id';
        CREATE OR REPLACE FUNCTION tp_stable_write(note text) RETURNS int STABLE
            LANGUAGE plpgsql AS 'BEGIN RETURN tp_write(note); END';
        CREATE OR REPLACE FUNCTION tp_stable_port() RETURNS int STABLE LANGUAGE sql
            AS 'SELECT inet_server_port()';
    """)
    cluster.wait_replayed()
    return cluster


def retries(conn) -> int:
    rows = dict(conn.execute("SHOW pgtwist_pool").fetchall())
    return int(rows["standby_read_only_retries"])


def test_standby_refusal_is_retried_on_the_primary(writer_functions, daemons):
    cluster = writer_functions
    pg = daemons()
    with connect(pg) as conn, direct(cluster) as ref:
        # reads do reach the replica here
        assert one(conn, "SELECT tp_stable_port()") != cluster.primary_port
        before = retries(conn)
        note = f"tp-{time.monotonic_ns()}"
        new_id = one(conn, f"SELECT tp_stable_write('{note}')")
        # the write happened once, on the primary
        assert ref.execute("SELECT array_agg(id) FROM tp_log WHERE note = %s",
                           (note,)).fetchone()[0] == [new_id]
        assert retries(conn) == before + 1
        # the session goes on as usual, reads still balanced
        assert one(conn, "SELECT tp_stable_port()") != cluster.primary_port


def test_retried_statement_keeps_its_place_among_pipelined_queries(writer_functions, daemons):
    """Several simple Queries in one write: the retried one answers in its place."""
    cluster = writer_functions
    pg = daemons()
    sqls = ["SELECT 'a'", "SELECT tp_stable_write('pipelined')::text",
            "SELECT tp_stable_port()::text", "SELECT tp_stable_write('pipelined')::text",
            "SELECT 'e'"]
    with RawClient(pg.port, pg.host) as raw:
        raw.startup()
        raw.send(b"".join(query(sql) for sql in sqls))
        answers = [raw.read_until("Z") for _ in sqls]
    assert [codes_of(a) for a in answers] == ["TDCZ"] * 5
    rows = [rows_of(a)[0][0] for a in answers]
    assert rows[0] == "a" and rows[4] == "e"
    assert int(rows[1]) > 0 and int(rows[3]) > int(rows[1])
    assert int(rows[2]) != cluster.primary_port


def test_other_standby_errors_and_transactions_are_not_retried(writer_functions, daemons):
    pg = daemons()
    with connect(pg) as conn:
        before = retries(conn)
        with pytest.raises(pgerr.DivisionByZero):
            conn.execute("SELECT 1 / (tp_stable_port() - tp_stable_port())")
        # inside a transaction the standby's answer stands (its transaction failed)
        conn.execute("BEGIN READ ONLY")
        with pytest.raises(pgerr.ReadOnlySqlTransaction):
            conn.execute("SELECT tp_stable_write('in a read-only transaction')")
        conn.execute("ROLLBACK")
        assert retries(conn) == before
        assert one(conn, "SELECT 5") == 5


def test_transaction_mode_reports_the_refusal(writer_functions, daemons):
    """Transaction pooling: a session holds no primary link between transactions, so
    there is none at hand to retry on: the client gets the standby's 25006 (README)."""
    pg = daemons(**TRANSACTION)
    with connect(pg) as conn:
        before = retries(conn)
        with pytest.raises(pgerr.ReadOnlySqlTransaction):
            conn.execute("SELECT tp_stable_write('transaction mode')")
        assert retries(conn) == before
        assert one(conn, "SELECT 6") == 6


@MODES
def test_functions_a_standby_refuses_run_on_the_primary(writer_functions, daemons, mode):
    """pg_current_xact_id() and txid_current() are STABLE in the catalog but assign a
    transaction id, which a standby refuses (25006): they are routed to the primary in
    both pool modes and both protocols (psycopg's extended protocol, asyncpg)."""
    cluster = writer_functions
    pg = daemons(**mode)
    with connect(pg) as conn, connect(pg, prepare_threshold=0) as prepared:
        before = retries(conn)
        for c in (conn, prepared):
            assert int(str(one(c, "SELECT pg_current_xact_id()"))) > 0
            assert one(c, "SELECT txid_current() + %s", [0]) > 0
            assert one(c, "SELECT pg_current_wal_lsn() IS NOT NULL AND %s", [True])
            # plain reads still go to the replica
            assert one(c, "SELECT tp_stable_port()") != cluster.primary_port
        assert retries(conn) == before  # routed, not retried

    async def driver():
        a = await asyncpg.connect(host=pg.host, port=pg.port, user="postgres",
                                  database="postgres")
        try:
            for _ in range(3):
                assert int(await a.fetchval("SELECT pg_current_xact_id()::text")) > 0
                assert await a.fetchval("SELECT txid_current() > $1", 0)
        finally:
            await a.close()

    asyncio.run(driver())
