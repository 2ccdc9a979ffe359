"""Transaction-mode defects of issue 11, each met with a real driver through a real twistd in
``pool_mode: transaction``, load balancing on (replica weight 1).
"""

from __future__ import annotations

import asyncio
import threading
import time

import asyncpg
import psycopg
import pytest

from .conftest import TRUST_HBA, assert_log_clean, backends
from .txnedge_util import (
    DB,
    pooldb,  # noqa: F401  (a fixture)
)

pytestmark = pytest.mark.integration


def _txn(factory, cluster, **extra):
    """Transaction mode with the default pool settings, reads balanced 1:1."""
    return factory({"pool_mode": "transaction", "backends": backends(cluster, 1, 1), **extra},
                   hba=TRUST_HBA)


def _run(coro, timeout: float = 20):
    async def bounded():
        return await asyncio.wait_for(coro, timeout)
    return asyncio.run(bounded())


# -- 1. pipelined executemany of failing statements ----------------------------------------------


@pytest.mark.parametrize("autocommit", [False, True])
def test_pipelined_executemany_errors_leave_the_session_usable(pooldb, pgtwist_factory,
                                                                cluster, autocommit):
    """psycopg's executemany runs in pipeline mode: a COPY given parameters fails at Bind,
    a syntax error at Parse; the next batch must still get its answers (it hung: the
    Sync never reached the server)."""
    pg = _txn(pgtwist_factory, cluster, backend_max_connections=2)

    async def one(query):
        conn = await psycopg.AsyncConnection.connect(pg.dsn(dbname=DB), autocommit=autocommit)
        try:
            cur = conn.cursor()
            with pytest.raises(psycopg.DatabaseError):
                await cur.executemany(query, [(10, "hello"), (20, "world")])
            if not autocommit:
                await conn.rollback()
            await cur.executemany("select %s::int, %s::text", [(1, "a"), (2, "b")])
            await cur.execute("select 41 + %s", [1])
            assert await cur.fetchone() == (42,)
        finally:
            await conn.close()

    queries = ("copy (select %s, %s) to stdout", "wat (%s, %s)",
               "insert into no_such_table values (%s, %s)")

    async def client():
        for _ in range(3):
            for query in queries:
                await one(query)

    async def main():
        await asyncio.gather(*(client() for _ in range(6)))

    _run(main())
    assert_log_clean(pg)


# -- 2. asyncpg: invalidated and invalid prepared statements -------------------------------------


def test_asyncpg_cached_plan_invalidated_by_alter_table(pooldb, pgtwist_factory, cluster):
    """asyncpg retries "cached plan must not change result type" outside a transaction and
    raises InvalidCachedStatementError inside one; either way the next message it reads
    must be a whole, well-placed one."""
    pg = _txn(pgtwist_factory, cluster)
    with psycopg.connect(cluster.dsn(dbname=DB), autocommit=True) as c:
        c.execute("drop table if exists txd_alter")
        c.execute("create table txd_alter (a int, b int)")
        c.execute("insert into txd_alter values (1, 2)")
    cluster.wait_replayed()

    async def main():
        conn = await asyncpg.connect(host=pg.host, port=pg.port, user="postgres", database=DB)
        try:
            assert await conn.fetch("select * from txd_alter") == [(1, 2)]
            await conn.execute("alter table txd_alter alter column b type text")
            cluster.wait_replayed()
            assert await conn.fetch("select * from txd_alter") == [(1, "2")]
            await conn.execute("alter table txd_alter alter column b type int using b::int")
            cluster.wait_replayed()
            with pytest.raises(asyncpg.exceptions.InvalidCachedStatementError):
                async with conn.transaction():
                    await conn.fetch("select * from txd_alter")
            assert await conn.fetch("select * from txd_alter") == [(1, 2)]
            assert await conn.fetchval("select $1::int + 1", 1) == 2
        finally:
            await conn.close()

    _run(main())
    assert_log_clean(pg)


def test_asyncpg_prepare_of_an_invalid_statement(pooldb, pgtwist_factory, cluster):
    pg = _txn(pgtwist_factory, cluster)

    async def main():
        conn = await asyncpg.connect(host=pg.host, port=pg.port, user="postgres", database=DB)
        try:
            for _ in range(3):
                with pytest.raises(asyncpg.exceptions.UndefinedColumnError):
                    await conn.prepare("select no_such_column from txr_items")
                with pytest.raises(asyncpg.exceptions.PostgresSyntaxError):
                    await conn.prepare("selec 1")
                stmt = await conn.prepare("select $1::int * 2")
                assert await stmt.fetchval(21) == 42
                async with conn.transaction():
                    with pytest.raises(asyncpg.exceptions.UndefinedTableError):
                        await conn.prepare("select * from no_such_table")
                assert await conn.fetchval("select 1") == 1
        finally:
            await conn.close()

    _run(main())
    assert_log_clean(pg)


# -- 3. SQL EXECUTE of a protocol-prepared statement ---------------------------------------------


def test_sql_execute_of_a_protocol_prepared_statement(pooldb, pgtwist_factory, cluster):
    """In PostgreSQL a statement prepared with Parse is visible to SQL EXECUTE (and
    DEALLOCATE); psycopg's pgconn.prepare is libpq's PQprepare."""
    pg = _txn(pgtwist_factory, cluster)
    with psycopg.connect(pg.dsn(dbname=DB), autocommit=True) as a, \
            psycopg.connect(pg.dsn(dbname=DB), autocommit=True) as b:
        res = a.pgconn.prepare(b"foobar", b"select $1::int + 1")
        assert res.status == psycopg.pq.ExecStatus.COMMAND_OK
        res = b.pgconn.prepare(b"foobar", b"select 'other session'")
        assert res.status == psycopg.pq.ExecStatus.COMMAND_OK
        for k in range(4):
            assert a.execute(f"execute foobar({k})").fetchone() == (k + 1,)
            assert b.execute("execute foobar").fetchone() == ("other session",)
        with a.transaction():
            assert a.execute("execute foobar(10)").fetchone() == (11,)
        a.execute("deallocate foobar")
        with pytest.raises(psycopg.errors.InvalidSqlStatementName):
            a.execute("execute foobar(1)")
        assert b.execute("execute foobar").fetchone() == ("other session",)
    assert_log_clean(pg)


# -- transaction-scoped settings ------------------------------------------------------------------


def test_show_isolation_level_inside_a_serializable_transaction(pooldb, pgtwist_factory,
                                                                 cluster):
    pg = _txn(pgtwist_factory, cluster, backends=backends(cluster, 0, 1))
    with psycopg.connect(pg.dsn(dbname=DB), autocommit=True) as c:
        for _ in range(3):
            c.execute("BEGIN ISOLATION LEVEL SERIALIZABLE")
            assert c.execute("SHOW transaction_isolation").fetchone() == ("serializable",)
            assert c.execute("select current_setting('transaction_isolation')").fetchone() \
                == ("serializable",)
            c.execute("COMMIT")
            c.execute("BEGIN READ ONLY")
            assert c.execute("SHOW transaction_read_only").fetchone() == ("on",)
            c.execute("COMMIT")
    assert_log_clean(pg)


# -- 4. pool sizing ------------------------------------------------------------------------------


def _pool_counters(pg) -> dict[str, str]:
    with psycopg.connect(pg.dsn(dbname=DB), autocommit=True) as c:
        return dict(c.execute("SHOW pgtwist_pool").fetchall())


def _clients(pg, n: int, rounds: int, peak: list | None = None) -> None:
    async def client(k: int) -> None:
        conn = await asyncpg.connect(host=pg.host, port=pg.port, user="postgres", database=DB)
        try:
            for i in range(rounds):
                assert await conn.fetchval("select $1::int + $2::int", k, i) == k + i
                if i % 5 == 0:
                    async with conn.transaction():
                        await conn.execute("select pg_sleep(0.005)")
        finally:
            await conn.close()

    def watch(done: threading.Event) -> None:
        with psycopg.connect(pg.dsn(dbname=DB), autocommit=True) as c:
            while not done.is_set():
                peak.append(int(dict(c.execute("SHOW pgtwist_pool", prepare=False)
                                          .fetchall())["links"]))
                time.sleep(0.02)

    async def main():
        await asyncio.gather(*(client(k) for k in range(n)))

    done = threading.Event()
    watcher = threading.Thread(target=watch, args=(done,)) if peak is not None else None
    if watcher is not None:
        watcher.start()
    try:
        _run(main(), 120)
    finally:
        done.set()
        if watcher is not None:
            watcher.join(10)




def test_default_transaction_pool_never_churns_links(pooldb, pgtwist_factory, cluster):
    """32 clients over the defaults: no link is closed for being idle (with max_pool 4
    idle links a key, links above it were closed on release and opened again)."""
    pg = _txn(pgtwist_factory, cluster)
    _clients(pg, 32, 40)
    counters = _pool_counters(pg)
    assert counters["closed_idle"] == "0", counters
    # 33 logins (each a new login: the server trusts) plus the replica's links, bounded.
    assert int(counters["created"]) <= 33 + 20, counters
    assert counters["links_busy"] == "0" and counters["waiting"] == "0", counters
    assert_log_clean(pg)


def test_transaction_pool_size_bounds_the_links_and_queues_clients(pooldb, pgtwist_factory,
                                                                  cluster):
    pg = _txn(pgtwist_factory, cluster, transaction_pool_size=3)
    peak: list[int] = []
    _clients(pg, 12, 20, peak)
    counters = _pool_counters(pg)
    # Three for the clients' key on each node; the watcher (psycopg: other startup
    # parameters, so another key) holds one more.
    assert peak and max(peak) <= 7, peak
    assert counters["closed_idle"] == "0", counters
    with psycopg.connect(cluster.dsn(dbname=DB), autocommit=True) as c:
        n = c.execute("select count(*) from pg_stat_activity where datname = %s "
                      "and pid <> pg_backend_pid()", [DB]).fetchone()[0]
    assert n <= 3 + 1, n
    assert_log_clean(pg)


def test_links_to_the_postgres_database_are_pooled_too(pgtwist_factory, cluster):
    """Pgpool-II never caches links to postgres / template1 / regression: in transaction
    pooling that meant a new backend login for every transaction (pgbench on the postgres
    database: every link "closed_uncached").  A transaction pooler keeps them."""
    pg = _txn(pgtwist_factory, cluster)
    with psycopg.connect(pg.dsn(dbname="postgres"), autocommit=True) as c:
        for i in range(30):
            assert c.execute("select %s::int", (i,), prepare=False).fetchone() == (i,)
        counters = dict(c.execute("SHOW pgtwist_pool", prepare=False).fetchall())
    assert counters["closed_uncached"] == "0", counters
    assert int(counters["reused"]) >= 25, counters
    assert int(counters["created"]) <= 4, counters
    assert_log_clean(pg)
