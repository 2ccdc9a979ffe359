"""asyncpg through pgtwist: named prepared statements, executemany, cursors (Execute with a row
limit -> PortalSuspended), transactions, the statement cache and cancellation.

asyncpg speaks only the extended protocol and names its statements, so it exercises the
paths psycopg leaves alone.  Each test runs its own event loop with ``asyncio.run`` and
bounds every await with a timeout so that nothing hangs.
"""

from __future__ import annotations

import asyncio
import time
import uuid

import asyncpg
import pytest

pytestmark = pytest.mark.integration

TIMEOUT = 20  # whole-test bound for each asyncio.run


def _run(coro):
    async def bounded():
        return await asyncio.wait_for(coro, TIMEOUT)

    return asyncio.run(bounded())


async def _connect(pg, **kw) -> asyncpg.Connection:
    return await asyncpg.connect(
        host=pg.host, port=pg.port, user="postgres", database="postgres", timeout=5, **kw
    )


def _unique(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:10]}"


async def _prepared_statements(conn, like: str) -> list[tuple[str, str]]:
    rows = await conn.fetch(
        "SELECT name, statement FROM pg_prepared_statements WHERE statement LIKE $1 ORDER BY name",
        like,
    )
    return [(r["name"], r["statement"]) for r in rows]


def test_named_prepared_statements(cluster, shared_pgtwist):
    async def main():
        conn = await _connect(shared_pgtwist)
        try:
            stmt = await conn.prepare(
                "SELECT $1::int + 1 AS n, inet_server_port() AS port, "
                "pg_is_in_recovery() AS standby /* asyncpg_named */"
            )
            name = stmt.get_name()
            assert name  # a named server-side statement, not the unnamed one
            assert [a.name for a in stmt.get_attributes()] == ["n", "port", "standby"]
            assert [t.name for t in stmt.get_parameters()] == ["int4"]
            for i in range(50):
                row = await stmt.fetchrow(i)
                assert tuple(row) == (i + 1, cluster.primary_port, False)
            assert await stmt.fetchval(41) == 42
            stmts = await _prepared_statements(conn, "%asyncpg_named%")
            assert [n for n, _ in stmts] == [name]

            # a second statement on the same connection, interleaved with the first
            other = await conn.prepare("SELECT $1::text || $2::text /* asyncpg_named2 */")
            assert other.get_name() != name
            assert await other.fetchval("a", "b") == "ab"
            assert await stmt.fetchval(1) == 2
            # a statement that fails at execution leaves the others usable
            bad = await conn.prepare("SELECT 1 / $1::int /* asyncpg_named3 */")
            with pytest.raises(asyncpg.DivisionByZeroError):
                await bad.fetchval(0)
            assert await bad.fetchval(1) == 1
            assert await other.fetchval("c", "d") == "cd"
        finally:
            await conn.close(timeout=5)

    _run(main())


def test_executemany(cluster, pgtwist):
    table = _unique("amany")

    async def main():
        conn = await _connect(pgtwist)
        try:
            await conn.execute(f"CREATE TABLE {table} (id int PRIMARY KEY, label text)")
            rows = [(i, f"label {i}") for i in range(2000)]
            await conn.executemany(f"INSERT INTO {table} VALUES ($1, $2)", rows)
            got = await conn.fetchrow(f"SELECT count(*), sum(id), max(label) FROM {table}")
            assert tuple(got) == (2000, 1999 * 2000 // 2, "label 999")
            # an error in the middle of executemany: nothing of that batch is kept
            with pytest.raises(asyncpg.UniqueViolationError):
                await conn.executemany(
                    f"INSERT INTO {table} VALUES ($1, $2)",
                    [(5000, "new"), (5001, "new"), (10, "dup"), (5002, "new")],
                )
            assert await conn.fetchval(f"SELECT count(*) FROM {table}") == 2000
            assert await conn.fetchval("SELECT inet_server_port()") == cluster.primary_port
        finally:
            await conn.execute(f"DROP TABLE IF EXISTS {table}")
            await conn.close(timeout=5)

    _run(main())


def test_cursor_fetches_in_chunks_inside_transaction(cluster, shared_pgtwist):
    """conn.cursor().fetch(n) sends Execute with a row limit: the server answers with n
    DataRows and PortalSuspended, and the next fetch continues the same portal."""

    async def main():
        conn = await _connect(shared_pgtwist)
        try:
            query = "SELECT g, inet_server_port() FROM generate_series(1, 1000) g ORDER BY g"
            async with conn.transaction():
                cur = await conn.cursor(query)
                seen = []
                for size in (1, 99, 300, 250, 350):
                    chunk = await cur.fetch(size)
                    assert len(chunk) == size
                    seen.extend(chunk)
                assert await cur.fetch(10) == []
                assert [r[0] for r in seen] == list(range(1, 1001))
                assert {r[1] for r in seen} == {cluster.primary_port}

                # iteration with a small prefetch (several suspended Executes)
                values = [r[0] async for r in conn.cursor(query, prefetch=37)]
                assert values == list(range(1, 1001))

                # forward() then fetchrow() on a parameterised cursor
                cur = await conn.cursor("SELECT g FROM generate_series(1, $1::int) g", 100)
                assert await cur.forward(90) == 90
                assert (await cur.fetchrow())[0] == 91
            assert not conn.is_in_transaction()
            assert await conn.fetchval("SELECT 1") == 1
        finally:
            await conn.close(timeout=5)

    _run(main())


def test_transactions_commit_and_rollback(cluster, pgtwist):
    table = _unique("atx")

    async def main():
        conn = await _connect(pgtwist)
        other = await _connect(pgtwist)
        try:
            await conn.execute(f"CREATE TABLE {table} (v text)")
            async with conn.transaction():
                await conn.execute(f"INSERT INTO {table} VALUES ('committed')")
                assert conn.is_in_transaction()
                # not visible to another session before COMMIT
                assert await other.fetchval(f"SELECT count(*) FROM {table}") == 0
            assert await other.fetchval(f"SELECT string_agg(v, ',') FROM {table}") == "committed"

            with pytest.raises(RuntimeError, match="roll me back"):
                async with conn.transaction():
                    await conn.execute(f"INSERT INTO {table} VALUES ('rolled back')")
                    raise RuntimeError("roll me back")
            assert not conn.is_in_transaction()

            # a server error inside the transaction rolls it back too
            with pytest.raises(asyncpg.DivisionByZeroError):
                async with conn.transaction():
                    await conn.execute(f"INSERT INTO {table} VALUES ('also rolled back')")
                    await conn.fetchval("SELECT 1 / $1::int", 0)

            # savepoints: an inner rollback keeps the outer work
            async with conn.transaction():
                await conn.execute(f"INSERT INTO {table} VALUES ('outer')")
                with pytest.raises(asyncpg.UndefinedTableError):
                    async with conn.transaction():
                        await conn.execute(f"INSERT INTO {table} VALUES ('inner')")
                        await conn.execute("SELECT * FROM asyncpg_no_such_table")
            got = await other.fetch(f"SELECT v FROM {table} ORDER BY v")
            assert [r["v"] for r in got] == ["committed", "outer"]
            assert await conn.fetchval("SELECT inet_server_port()") == cluster.primary_port
        finally:
            await conn.execute(f"DROP TABLE IF EXISTS {table}")
            await other.close(timeout=5)
            await conn.close(timeout=5)

    _run(main())


def test_statement_cache_reuse_over_many_calls(cluster, shared_pgtwist):
    async def main():
        conn = await _connect(shared_pgtwist)
        try:
            query = "SELECT $1::int * 2 /* asyncpg_cache */"
            for i in range(300):
                assert await conn.fetchval(query, i) == 2 * i
            # asyncpg parsed it once, as a named statement, and reused it 300 times
            stmts = await _prepared_statements(conn, "%asyncpg_cache%")
            assert len(stmts) == 1, stmts
            assert stmts[0][1] == query
            # reuse with other entry points of the same text
            assert await conn.fetchrow(query, 7) == (14,)
            assert await conn.fetch(query, 8) == [(16,)]
            assert len(await _prepared_statements(conn, "%asyncpg_cache%")) == 1
        finally:
            await conn.close(timeout=5)

    _run(main())


def test_statement_cache_disabled_uses_unnamed_statements(cluster, shared_pgtwist):
    async def main():
        conn = await _connect(shared_pgtwist, statement_cache_size=0)
        try:
            for i in range(50):
                assert await conn.fetchval("SELECT $1::int + 1 /* asyncpg_nocache */", i) == i + 1
            assert await _prepared_statements(conn, "%asyncpg_nocache%") == []
        finally:
            await conn.close(timeout=5)

    _run(main())


def test_wait_for_timeout_cancels_and_connection_stays_usable(cluster, shared_pgtwist):
    """asyncpg sends a CancelRequest (with pgtwist's key) when the wait_for times out; the
    server query must really stop, or the next query would wait for pg_sleep(10)."""

    async def main():
        conn = await _connect(shared_pgtwist)
        try:
            t0 = time.monotonic()
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(conn.fetch("SELECT pg_sleep(10)"), 0.5)
            assert await asyncio.wait_for(conn.fetchval("SELECT 'usable'"), 5) == "usable"
            elapsed = time.monotonic() - t0
            assert elapsed < 3, f"query after the timeout took until {elapsed:.1f}s"
            assert not conn.is_closed()
            assert await conn.fetchval("SELECT inet_server_port()") == cluster.primary_port
            # and again, inside a transaction: the transaction is aborted, then rolled back
            tr = conn.transaction()
            await tr.start()
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(conn.fetch("SELECT pg_sleep(10)"), 0.5)
            with pytest.raises(asyncpg.InFailedSQLTransactionError):
                await asyncio.wait_for(conn.fetchval("SELECT 1"), 5)
            await tr.rollback()
            assert await conn.fetchval("SELECT 2") == 2
            assert time.monotonic() - t0 < 6
        finally:
            await conn.close(timeout=5)

    _run(main())
