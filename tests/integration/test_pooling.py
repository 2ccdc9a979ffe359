"""Session pooling: one shared pool of backend links, reset between clients, with limits."""

from __future__ import annotations

import asyncio
import socket
import struct
import threading
import time

import asyncpg
import psycopg
import pytest

from .conftest import TRUST_HBA

pytestmark = pytest.mark.integration

DB = "pooldb"


@pytest.fixture(scope="module")
def pooldb(pool_database, cluster):
    _psql_db(cluster, "create table if not exists pool_items (id serial, v text)")
    cluster.wait_replayed()
    return DB


@pytest.fixture
def pgtwist_factory(pgtwist_factory):
    """Daemons whose pool_hba.conf trusts the tests: pgtwist's own trust, so a login may take
    a cached link.  (With pool_hba off, a server's trust is only honoured through a fresh
    login per client: see test_server_trust_is_judged_per_client_with_pool_hba_off.)"""

    def factory(extra=None, hba=TRUST_HBA, **kw):
        return pgtwist_factory(extra=extra, hba=hba, **kw)

    return factory


def _psql_db(cluster, sql):
    import subprocess

    return subprocess.run(["psql", "-X", "-A", "-t", "-h", cluster.host, "-p",
                           str(cluster.primary_port), "-U", "postgres", "-d", DB, "-c", sql],
                          check=True, capture_output=True, text=True).stdout.strip()


def _backends(cluster, port=None) -> int:
    sql = (f"select count(*) from pg_stat_activity where datname = '{DB}' "
           "and backend_type = 'client backend' and pid <> pg_backend_pid()")
    return int(cluster.psql(sql, port=port)) if port else int(cluster.psql(sql))


def _pid(pg, **kw) -> int:
    with psycopg.connect(pg.dsn(dbname=DB, **kw), autocommit=True) as conn:
        return conn.execute("select pg_backend_pid()").fetchone()[0]


def _wait_pooled(pg, idle: int = 1) -> None:
    """Until pgtwist's pool holds ``idle`` idle links (a released link is reset first)."""
    deadline = time.monotonic() + 5
    while True:
        with psycopg.connect(pg.dsn(), autocommit=True) as conn:  # db postgres: not pooled
            stats = dict(conn.execute("SHOW pgtwist_pool").fetchall())
        if int(stats["links_idle"]) >= idle:
            return
        assert time.monotonic() < deadline, stats
        time.sleep(0.02)


def test_links_are_reused_by_sequential_sessions(pooldb, pgtwist_factory):
    pg = pgtwist_factory()
    first = _pid(pg)
    for _ in range(5):
        _wait_pooled(pg)
        assert _pid(pg) == first


def _wait_reset(cluster, pid: int) -> None:
    """The link goes back to the pool once its reset has run (a client arriving earlier
    simply gets another link)."""
    deadline = time.monotonic() + 5
    sql = f"select query from pg_stat_activity where pid = {pid} and state = 'idle'"
    while cluster.psql(sql) != "DISCARD ALL":
        assert time.monotonic() < deadline, "the link was not reset"
        time.sleep(0.02)


def test_server_trust_is_judged_per_client_with_pool_hba_off(pooldb, pgtwist_factory):
    """Review S3: a link cached while the server trusted pgtwist never admits the next
    client; each client's login is a fresh one the server judges, and then pooled."""
    pg = pgtwist_factory(hba=None)
    first = _pid(pg)
    _wait_pooled(pg)
    assert _pid(pg) != first


def test_reset_hides_one_sessions_state_from_the_next(pooldb, pgtwist_factory, cluster):
    pg = pgtwist_factory()
    with psycopg.connect(pg.dsn(dbname=DB), autocommit=True) as conn:
        pid = conn.execute("select pg_backend_pid()").fetchone()[0]
        conn.execute("set work_mem = '77MB'")
        conn.execute("create temp table pool_secret (v text)")
        conn.execute("prepare pool_stmt as select 1")
        conn.execute("listen pool_channel")
        conn.execute("select pg_advisory_lock(4242)")
    _wait_reset(cluster, pid)
    with psycopg.connect(pg.dsn(dbname=DB), autocommit=True) as conn:
        assert conn.execute("select pg_backend_pid()").fetchone()[0] == pid
        assert conn.execute("show work_mem").fetchone()[0] != "77MB"
        assert conn.execute("select count(*) from pg_class where relname = 'pool_secret'"
                            ).fetchone()[0] == 0
        assert conn.execute("select count(*) from pg_prepared_statements").fetchone()[0] == 0
        assert conn.execute("select count(*) from pg_listening_channels()").fetchone()[0] == 0
        assert conn.execute("select count(*) from pg_locks where locktype = 'advisory'"
                            ).fetchone()[0] == 0


def test_open_transaction_is_aborted_before_reuse(pooldb, pgtwist_factory, cluster):
    pg = pgtwist_factory()
    conn = psycopg.connect(pg.dsn(dbname=DB))
    conn.execute("insert into pool_items (v) values ('uncommitted')")
    conn.close()  # leaves with a transaction open
    with psycopg.connect(pg.dsn(dbname=DB), autocommit=True) as conn:
        assert conn.execute("select count(*) from pool_items where v = 'uncommitted'"
                            ).fetchone()[0] == 0
        assert conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE


def test_different_startup_settings_never_share_a_link(pooldb, pgtwist_factory):
    pg = pgtwist_factory()
    a = _pid(pg, application_name="app_a", options="-c statement_timeout=1234")
    with psycopg.connect(pg.dsn(dbname=DB, application_name="app_b"), autocommit=True) as conn:
        assert conn.execute("select pg_backend_pid()").fetchone()[0] != a
        assert conn.execute("show statement_timeout").fetchone()[0] == "0"
        assert conn.info.parameter_status("application_name") == "app_b"
    assert _pid(pg, application_name="app_a", options="-c statement_timeout=1234") == a


def test_connection_cache_off_closes_links(pooldb, pgtwist_factory):
    pg = pgtwist_factory(extra={"connection_cache": False})
    assert _pid(pg) != _pid(pg)


def test_postgres_database_is_never_cached(cluster, pgtwist_factory):
    pg = pgtwist_factory()
    with psycopg.connect(pg.dsn(), autocommit=True) as conn:
        a = conn.execute("select pg_backend_pid()").fetchone()[0]
    with psycopg.connect(pg.dsn(), autocommit=True) as conn:
        assert conn.execute("select pg_backend_pid()").fetchone()[0] != a


def test_client_vanishing_mid_query_does_not_return_the_link(pooldb, pgtwist_factory, cluster):
    pg = pgtwist_factory()
    conn = psycopg.connect(pg.dsn(dbname=DB), autocommit=True)
    pid = conn.execute("select pg_backend_pid()").fetchone()[0]
    conn.pgconn.send_query(b"select pg_sleep(30)")
    time.sleep(0.3)
    conn.pgconn.finish()  # the socket closes with the query running
    deadline = time.monotonic() + 5
    while cluster.psql(f"select count(*) from pg_stat_activity where pid = {pid}") != "0":
        assert time.monotonic() < deadline, "the busy link was not closed"
        time.sleep(0.1)
    assert _pid(pg) != pid


def test_max_pool_caps_idle_links_per_key(pooldb, pgtwist_factory, cluster):
    pg = pgtwist_factory(extra={"max_pool": 2})
    conns = [psycopg.connect(pg.dsn(dbname=DB), autocommit=True) for _ in range(5)]
    for c in conns:
        c.execute("select 1")
    for c in conns:
        c.close()
    deadline = time.monotonic() + 5
    while _backends(cluster) > 2:
        assert time.monotonic() < deadline, f"{_backends(cluster)} links kept, max_pool is 2"
        time.sleep(0.05)


def test_connection_life_time_expires_idle_links(pooldb, pgtwist_factory, cluster):
    pg = pgtwist_factory(extra={"connection_life_time": 1})
    pid = _pid(pg)
    time.sleep(2.5)
    assert cluster.psql(f"select count(*) from pg_stat_activity where pid = {pid}") == "0"


def _startup_error(port: int, database: str = DB) -> dict[str, str]:
    """Open a raw session; return the ErrorResponse fields if the server refused it."""
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    body = struct.pack("!I", 196608) + b"user\0postgres\0database\0" + database.encode() + b"\0\0"
    s.sendall(struct.pack("!I", len(body) + 4) + body)
    data = b""
    while True:
        chunk = s.recv(65536)
        if not chunk:
            break
        data += chunk
        if data[:1] == b"E" or b"Z\x00\x00\x00\x05" in data:
            break
    s.close()
    if data[:1] != b"E":
        return {}
    fields = {}
    for part in data[5:].split(b"\0"):
        if part:
            fields[chr(part[0])] = part[1:].decode()
    return fields


def test_reserved_connections_refuse_extra_clients_with_53300(pooldb, pgtwist_factory):
    pg = pgtwist_factory(extra={"num_init_children": 3, "reserved_connections": 1})
    held = [psycopg.connect(pg.dsn(dbname=DB), autocommit=True) for _ in range(2)]
    try:
        fields = _startup_error(pg.port)
        assert fields["C"] == "53300" and fields["S"] == "FATAL"
        assert fields["M"] == "sorry, too many clients already"
    finally:
        for c in held:
            c.close()
    time.sleep(0.2)
    with psycopg.connect(pg.dsn(dbname=DB), autocommit=True) as conn:
        assert conn.execute("select 1").fetchone() == (1,)


def test_num_init_children_makes_extra_clients_wait(pooldb, pgtwist_factory):
    pg = pgtwist_factory(extra={"num_init_children": 2})
    held = [psycopg.connect(pg.dsn(dbname=DB), autocommit=True) for _ in range(2)]
    # A third client waits in the listen queue: its startup is not answered.
    waiting = socket.create_connection(("127.0.0.1", pg.port), timeout=1)
    body = struct.pack("!I", 196608) + b"user\0postgres\0database\0" + DB.encode() + b"\0\0"
    waiting.sendall(struct.pack("!I", len(body) + 4) + body)
    with pytest.raises(socket.timeout):
        waiting.recv(1)
    waiting.close()  # it gives up
    held[0].close()
    with psycopg.connect(pg.dsn(dbname=DB), autocommit=True, connect_timeout=5) as conn:
        assert conn.execute("select 1").fetchone() == (1,)
    held[1].close()


def test_checkout_timeout_names_the_saturated_pool(pooldb, pgtwist_factory):
    pg = pgtwist_factory(extra={"backend_max_connections": 2, "checkout_timeout": 1})
    held = [psycopg.connect(pg.dsn(dbname=DB), autocommit=True) for _ in range(2)]
    try:
        fields = _startup_error(pg.port)
        assert fields["C"] == "53300"
        assert "node 0" in fields["M"] and "backend_max_connections=2" in fields["M"]
        assert DB in fields["M"]
    finally:
        for c in held:
            c.close()


def test_client_idle_limit_disconnects_idle_clients(pooldb, pgtwist_factory):
    pg = pgtwist_factory(extra={"client_idle_limit": 1})
    conn = psycopg.connect(pg.dsn(dbname=DB), autocommit=True)
    conn.execute("select pg_sleep(1.5)")  # a long query is not idleness
    time.sleep(2)
    with pytest.raises(psycopg.OperationalError, match="client_idle_limit"):
        conn.execute("select 1")


@pytest.mark.parametrize("driver", ["asyncpg", "psycopg"])
def test_500_clients_share_a_capped_pool(pooldb, pgtwist_factory, cluster, driver):
    """500 concurrent clients, max_pool 10, at most 20 links per backend: all succeed."""
    pg = pgtwist_factory(replica_weight=1,
                         extra={"max_pool": 10, "backend_max_connections": 20,
                                "checkout_timeout": 60})
    peak = {"primary": 0, "replica": 0}
    stop = threading.Event()

    async def client_asyncpg(i: int):
        conn = await asyncpg.connect(host=pg.host, port=pg.port, user="postgres",
                                     database=DB, timeout=60)
        try:
            if i % 3 == 0:
                async with conn.transaction():
                    await conn.execute("insert into pool_items (v) values ($1)", f"c{i}")
            await conn.fetchval("select count(*) from pool_items")
        finally:
            await conn.close()

    async def client_psycopg(i: int):
        conn = await psycopg.AsyncConnection.connect(pg.dsn(dbname=DB), connect_timeout=60,
                                                     autocommit=True)
        try:
            if i % 3 == 0:
                async with conn.transaction():
                    await conn.execute("insert into pool_items (v) values (%s)", (f"p{i}",))
            cur = await conn.execute("select count(*) from pool_items where v <> %s", ("",))
            assert (await cur.fetchone())[0] >= 0
        finally:
            await conn.close()

    client = client_asyncpg if driver == "asyncpg" else client_psycopg

    async def main():
        results = await asyncio.gather(*(client(i) for i in range(500)), return_exceptions=True)
        return [r for r in results if isinstance(r, BaseException)]

    def watch():  # sample both servers' connection counts while the clients run
        while not stop.is_set():
            peak["primary"] = max(peak["primary"], _backends(cluster))
            peak["replica"] = max(peak["replica"],
                                  _backends(cluster, port=cluster.replica_ports[0]))
            time.sleep(0.05)

    t = threading.Thread(target=watch)
    t.start()
    try:
        errors = asyncio.run(main())
    finally:
        stop.set()
        t.join()
    assert errors == []
    assert peak["primary"] <= 20 and peak["replica"] <= 20, peak

