"""Routing and the extended query protocol: named statements that move to the primary after a
write (re-parsed there), pipelines, SQL PREPARE/EXECUTE, session state replayed on a link
opened later, and portals suspended on the replica.

The primary has weight 0 and the replica weight 1: balanced reads land on the replica.
"""

from __future__ import annotations

import asyncio
import textwrap
import uuid

import asyncpg
import psycopg
import pytest
from psycopg import errors as pgerr

from pgtwist.dev import devcluster as dc
from tests.integration.conftest import assert_log_clean, start_pgtwist

pytestmark = pytest.mark.integration

CONNECT_TIMEOUT = 5
TIMEOUT = 20
READ = "SELECT inet_server_port(), count(*) FROM rx_items WHERE tag = %s"
AREAD = "SELECT inet_server_port(), count(*) FROM rx_items WHERE tag = $1"


def arun(coro):
    async def bounded():
        return await asyncio.wait_for(coro, TIMEOUT)

    return asyncio.run(bounded())


@pytest.fixture(scope="module")
def schema(cluster):
    cluster.psql(textwrap.dedent("""\
        CREATE TABLE IF NOT EXISTS rx_items (id serial, tag text);
        """))
    cluster.wait_replayed()
    return cluster


@pytest.fixture(scope="module")
def pg(schema, tmp_path_factory):
    """One daemon for the module (routing state lives in sessions), log-checked at its end;
    the primary has weight 0, the replica weight 1."""
    backends = dc.pgtwist_config(schema, 1, replica_weight=1)["backends"]
    backends[0]["weight"] = 0
    # Pgpool-II's routing rules: read_consistency: lsn (the default) would keep reads right
    # after writes on the primary (tests/integration/test_read_consistency.py).
    daemon = start_pgtwist(schema, tmp_path_factory.mktemp("pgtwist"),
                           extra={"backends": backends, "read_consistency": "none"},
                           passwd=dc.TEST_USERS)
    yield daemon
    daemon.stop()
    assert_log_clean(daemon)


def connect(pg, **kw) -> psycopg.Connection:
    kw.setdefault("autocommit", True)
    kw.setdefault("prepare_threshold", None)
    return psycopg.connect(pg.dsn(), connect_timeout=CONNECT_TIMEOUT, **kw)


async def aconnect(pg, **kw) -> asyncpg.Connection:
    return await asyncpg.connect(host=pg.host, port=pg.port, user="postgres",
                                 database="postgres", timeout=5, **kw)


def tag() -> str:
    return uuid.uuid4().hex[:12]


def primary_has_read_prepared(conn) -> int:
    """How many statements reading rx_items the session's primary link has prepared.

    pg_prepared_statements is a catalog view, so pgtwist sends this to the primary; the
    pattern is split so that this query's own text does not match it.
    """
    return conn.execute("SELECT inet_server_port(), count(*) FROM pg_prepared_statements "
                        "WHERE strpos(statement, 'FROM rx_' || 'items WHERE') > 0").fetchone()


# -- named statements re-parsed on the primary -----------------------------------------------------


@pytest.mark.parametrize("threshold", [0, 1])
def test_psycopg_prepared_read_moves_to_the_primary_after_a_write(schema, pg, threshold):
    cluster, t = schema, tag()
    P, R = cluster.primary_port, cluster.replica_ports[0]
    with connect(pg, prepare_threshold=threshold) as conn:
        for _ in range(3):  # threshold 1: the 2nd execution prepares it, the 3rd reuses it
            assert conn.execute(READ, [t]).fetchone() == (R, 0)
        assert primary_has_read_prepared(conn) == (P, 0)      # parsed on the replica only
        conn.execute("BEGIN")
        assert conn.execute(READ, [t]).fetchone() == (R, 0)   # no write yet
        conn.execute("INSERT INTO rx_items (tag) VALUES (%s)", [t])
        # the same named statement, now parsed on the primary; it sees the uncommitted row
        assert conn.execute(READ, [t]).fetchone() == (P, 1)
        assert primary_has_read_prepared(conn) == (P, 1)      # re-parsed there, once
        assert conn.execute(READ, [t]).fetchone() == (P, 1)
        conn.execute("INSERT INTO rx_items (tag) VALUES (%s)", [t])
        assert conn.execute(READ, [t]).fetchone() == (P, 2)
        conn.execute("COMMIT")
        cluster.wait_replayed()
        assert conn.execute(READ, [t]).fetchone() == (R, 2)
        assert primary_has_read_prepared(conn) == (P, 1)


def test_psycopg_prepared_read_moves_back_and_forth(schema, pg):
    cluster, t = schema, tag()
    P, R = cluster.primary_port, cluster.replica_ports[0]
    with connect(pg, prepare_threshold=0) as conn:
        for _ in range(3):
            conn.execute("BEGIN")
            assert conn.execute(READ, [t]).fetchone()[0] == R
            conn.execute("INSERT INTO rx_items (tag) VALUES (%s)", [t])
            assert conn.execute(READ, [t]).fetchone()[0] == P
            conn.execute("ROLLBACK")
            assert conn.execute(READ, [t]).fetchone() == (R, 0)


def test_asyncpg_named_statements_before_and_after_a_write(schema, pg):
    cluster, t = schema, tag()
    P, R = cluster.primary_port, cluster.replica_ports[0]

    async def main():
        conn = await aconnect(pg)
        try:
            stmt = await conn.prepare(AREAD)
            insert = await conn.prepare("INSERT INTO rx_items (tag) VALUES ($1) RETURNING id")
            assert tuple(await stmt.fetchrow(t)) == (R, 0)
            async with conn.transaction():
                assert tuple(await stmt.fetchrow(t)) == (R, 0)
                await insert.fetchval(t)
                assert tuple(await stmt.fetchrow(t)) == (P, 1)
                assert tuple(await conn.fetchrow(AREAD, t)) == (P, 1)  # the cached statement
                other = await conn.prepare(AREAD + " AND id > 0")  # parsed after the write
                assert tuple(await other.fetchrow(t)) == (P, 1)
            assert (await stmt.fetchrow(t))[0] == R
            async with conn.transaction():
                await conn.execute("INSERT INTO rx_items (tag) VALUES ($1)", t)
                assert tuple(await other.fetchrow(t)) == (P, 2)
                with pytest.raises(asyncpg.DivisionByZeroError):
                    await conn.fetchval("SELECT 1 / 0")
                with pytest.raises(asyncpg.InFailedSQLTransactionError):
                    await stmt.fetchrow(t)
                raise _Rollback
        except _Rollback:
            pass
        finally:
            await conn.close(timeout=5)

    arun(main())
    assert cluster.psql(f"SELECT count(*) FROM rx_items WHERE tag = '{t}'") == "1"


def test_asyncpg_statement_used_in_an_aborted_transaction_stays_usable(schema, pg):
    """A statement parsed on the replica, first needed on the primary while the transaction
    there is aborted: PostgreSQL's answer is 25P02, and the statement must work later."""
    cluster, t = schema, tag()
    P, R = cluster.primary_port, cluster.replica_ports[0]

    async def main():
        conn = await aconnect(pg)
        try:
            stmt = await conn.prepare(AREAD)
            assert tuple(await stmt.fetchrow(t)) == (R, 0)
            await conn.execute("BEGIN")
            with pytest.raises(asyncpg.DivisionByZeroError):
                await conn.execute("UPDATE rx_items SET id = 1 / 0")    # on the primary
            with pytest.raises(asyncpg.InFailedSQLTransactionError):
                await stmt.fetchrow(t)
            await conn.execute("ROLLBACK")
            assert tuple(await stmt.fetchrow(t)) == (R, 0)
            async with conn.transaction():
                await conn.execute("INSERT INTO rx_items (tag) VALUES ($1)", t)
                assert tuple(await stmt.fetchrow(t)) == (P, 1)
        finally:
            await conn.close(timeout=5)

    arun(main())


class _Rollback(Exception):
    pass


# -- pipelines ---------------------------------------------------------------------------------------


def test_pipeline_mixing_reads_and_writes(schema, pg):
    cluster, t = schema, tag()
    P, R = cluster.primary_port, cluster.replica_ports[0]
    with connect(pg) as conn:
        with conn.pipeline():
            reads = [conn.execute("SELECT inet_server_port(), %s::int", [i]) for i in range(5)]
            ins = [conn.execute("INSERT INTO rx_items (tag) VALUES (%s) RETURNING "
                                "inet_server_port(), %s::int", [t, i]) for i in range(5)]
            more = [conn.execute("SELECT %s::text || 'x', inet_server_port()", [str(i)])
                    for i in range(5)]
        assert [c.fetchone() for c in reads] == [(R, i) for i in range(5)]
        assert [c.fetchone() for c in ins] == [(P, i) for i in range(5)]
        assert [c.fetchone()[0] for c in more] == [f"{i}x" for i in range(5)]

        # inside a transaction: reads before the write on the replica, after it on the primary
        with conn.pipeline() as p:
            conn.execute("BEGIN")
            before = conn.execute(READ, [t])
            written = conn.execute("INSERT INTO rx_items (tag) VALUES (%s) RETURNING "
                                   "inet_server_port()", [t])
            after = [conn.execute(READ, [t]) for _ in range(3)]
            p.sync()
            last = conn.execute("SELECT inet_server_port(), %s::int", [7])
            conn.execute("COMMIT")
        assert before.fetchone()[0] == R
        assert written.fetchone() == (P,)
        assert [c.fetchone() for c in after] == [(P, 6)] * 3
        assert last.fetchone() == (P, 7)
        cluster.wait_replayed()
        assert conn.execute(READ, [t]).fetchone() == (R, 6)


def test_pipeline_with_prepared_statements_across_a_write(schema, pg):
    cluster, t = schema, tag()
    P, R = cluster.primary_port, cluster.replica_ports[0]
    with connect(pg, prepare_threshold=0) as conn:
        assert conn.execute(READ, [t]).fetchone() == (R, 0)    # prepared on the replica
        with conn.pipeline():
            conn.execute("BEGIN")
            first = conn.execute(READ, [t])
            conn.execute("INSERT INTO rx_items (tag) VALUES (%s)", [t])
            second = conn.execute(READ, [t])                    # re-parsed on the primary
            third = conn.execute(READ, [t])
            conn.execute("ROLLBACK")
        assert first.fetchone() == (R, 0)
        assert second.fetchone() == (P, 1)
        assert third.fetchone() == (P, 1)
        assert conn.execute(READ, [t]).fetchone() == (R, 0)


# -- SQL PREPARE / EXECUTE / DEALLOCATE -----------------------------------------------------------


def test_sql_execute_of_a_prepared_select_is_balanced(schema, pg):
    """PREPARE q AS SELECT ... is routed like the SELECT, and EXECUTE q like q (Pgpool-II §1.3)."""
    cluster = schema
    R = cluster.replica_ports[0]
    with connect(pg, prepare_threshold=None) as conn:
        conn.execute("PREPARE q AS SELECT inet_server_port(), 'q'")
        assert conn.execute("EXECUTE q").fetchone() == (R, "q")
        assert conn.execute("EXECUTE q").fetchone() == (R, "q")
        conn.execute("BEGIN")
        assert conn.execute("EXECUTE q").fetchone() == (R, "q")  # no write yet
        conn.execute("COMMIT")


def test_sql_execute_after_a_write_runs_on_the_primary_and_deallocate(schema, pg):
    cluster, t = schema, tag()
    P, R = cluster.primary_port, cluster.replica_ports[0]
    # no automatic prepare: psycopg answers a ROLLBACK with DEALLOCATE ALL once it has
    # prepared anything, which would drop q and w as well
    with connect(pg, prepare_threshold=None) as conn:
        conn.execute(f"PREPARE q AS SELECT inet_server_port(), count(*) FROM rx_items "
                     f"WHERE tag = '{t}'")
        assert conn.execute("EXECUTE q").fetchone()[1] == 0
        conn.execute("PREPARE w (text) AS INSERT INTO rx_items (tag) VALUES ($1)")
        conn.execute("BEGIN")
        conn.execute(f"EXECUTE w ('{t}')")
        # the write makes q run on the primary (prepared there first); it sees the new row
        assert conn.execute("EXECUTE q").fetchone() == (P, 1)
        assert conn.execute("EXECUTE q").fetchone() == (P, 1)
        conn.execute("COMMIT")
        cluster.wait_replayed()
        assert conn.execute("EXECUTE q").fetchone()[1] == 1
        conn.execute("DEALLOCATE q")
        with pytest.raises(pgerr.InvalidSqlStatementName):
            conn.execute("EXECUTE q")
        conn.execute("PREPARE q AS SELECT 42")   # the name is free again on every node...
        assert conn.execute("EXECUTE q").fetchone() == (42,)
        conn.execute("BEGIN")
        conn.execute(f"EXECUTE w ('{t}')")
        assert conn.execute("EXECUTE q").fetchone() == (42,)  # ...the primary included
        conn.execute("ROLLBACK")
        conn.execute("DEALLOCATE ALL")
        with pytest.raises(pgerr.InvalidSqlStatementName):
            conn.execute("EXECUTE w ('x')")
        with pytest.raises(pgerr.InvalidSqlStatementName):
            conn.execute("EXECUTE q")
        assert conn.execute("SELECT inet_server_port()").fetchone() == (R,)


def test_sql_execute_through_the_extended_protocol(schema, pg):
    """A Parse of ``EXECUTE q`` runs where q was prepared (Pgpool-II keeps its node map)."""
    cluster = schema
    R = cluster.replica_ports[0]
    with connect(pg, prepare_threshold=5) as conn:
        conn.execute("PREPARE q2 AS SELECT inet_server_port(), 'q2'")   # on the replica
        assert conn.execute("EXECUTE q2", binary=True, prepare=False).fetchone() == (R, "q2")
        assert conn.execute("EXECUTE q2", prepare=True).fetchone() == (R, "q2")
        assert conn.execute("EXECUTE q2", prepare=True).fetchone() == (R, "q2")


# -- session state on a link opened later --------------------------------------------------------


@pytest.mark.parametrize("extended", [False, True], ids=["simple", "extended"])
def test_set_before_the_first_read_is_visible_on_the_replica(schema, pg, extended):
    cluster = schema
    R = cluster.replica_ports[0]
    kw = {"binary": True, "prepare": False} if extended else {}
    with connect(pg) as conn:
        # no read yet: the replica link does not exist when these run
        conn.execute("SET myapp.flag = 'on'")
        conn.execute("SET application_name = 'rx_app'")
        conn.execute("SET search_path = pg_temp, public")
        conn.execute("SET extra_float_digits = 1")
        conn.execute("SET myapp.flag2 = 'a'")
        conn.execute("RESET myapp.flag2")
        row = conn.execute(
            "SELECT current_setting('myapp.flag'), current_setting('application_name'), "
            "current_setting('search_path'), current_setting('extra_float_digits'), "
            "current_setting('myapp.flag2', true), inet_server_port()", **kw).fetchone()
        assert row == ("on", "rx_app", "pg_temp, public", "1", "", R)
        # a SET once the replica link is open reaches it too
        conn.execute("SET myapp.flag = 'off'")
        assert conn.execute("SELECT current_setting('myapp.flag'), inet_server_port()",
                            **kw).fetchone() == ("off", R)
        # SET LOCAL lasts for its transaction only; a SET in a transaction counts as a
        # write for Pgpool-II (not is_select_query), so the read after it is the primary's
        conn.execute("BEGIN")
        conn.execute("SET LOCAL myapp.flag = 'local'")
        assert conn.execute("SELECT current_setting('myapp.flag'), inet_server_port()",
                            **kw).fetchone() == ("local", cluster.primary_port)
        conn.execute("COMMIT")
        assert conn.execute("SELECT current_setting('myapp.flag'), inet_server_port()",
                            **kw).fetchone() == ("off", R)


def test_set_before_the_first_read_asyncpg(schema, pg):
    cluster = schema

    async def main():
        conn = await aconnect(pg, server_settings={"application_name": "rx_startup"})
        try:
            await conn.execute("SET myapp.flag = 'on'")
            row = await conn.fetchrow(
                "SELECT current_setting('myapp.flag'), current_setting('application_name'), "
                "inet_server_port()")
            assert tuple(row) == ("on", "rx_startup", cluster.replica_ports[0])
        finally:
            await conn.close(timeout=5)

    arun(main())


# -- portals suspended on the replica ------------------------------------------------------------


def test_asyncpg_cursor_in_a_transaction_on_the_replica(schema, pg):
    cluster, t = schema, tag()
    P, R = cluster.primary_port, cluster.replica_ports[0]
    sql = "SELECT inet_server_port(), g FROM generate_series(1, $1) AS g"

    async def main():
        conn = await aconnect(pg)
        try:
            async with conn.transaction():
                rows = [tuple(r) async for r in conn.cursor(sql, 100, prefetch=7)]
                assert rows == [(R, g) for g in range(1, 101)]
                cur = await conn.cursor(sql, 50)
                assert [tuple(r) for r in await cur.fetch(5)] == [(R, g) for g in range(1, 6)]
                assert tuple(await cur.fetchrow()) == (R, 6)
                assert [tuple(r) for r in await cur.fetch(3)] == [(R, 7), (R, 8), (R, 9)]
                await conn.execute("INSERT INTO rx_items (tag) VALUES ($1)", t)
                # after the write a new cursor reads the primary
                rows = [tuple(r) async for r in conn.cursor(sql, 20, prefetch=6)]
                assert rows == [(P, g) for g in range(1, 21)]
            async with conn.transaction():
                rows = [tuple(r) async for r in conn.cursor(sql, 12, prefetch=5)]
                assert rows == [(R, g) for g in range(1, 13)]
        finally:
            await conn.close(timeout=5)

    arun(main())


def test_asyncpg_cursor_forward_on_the_replica(schema, pg):
    """Cursor.forward() sends ``MOVE FORWARD n "<portal>"`` as a simple Query: it must reach
    the node holding the portal, which pgtwist opened on the replica."""
    cluster = schema
    R = cluster.replica_ports[0]
    sql = "SELECT inet_server_port(), g FROM generate_series(1, $1) AS g"

    async def main():
        conn = await aconnect(pg)
        try:
            async with conn.transaction():
                cur = await conn.cursor(sql, 50)
                assert [tuple(r) for r in await cur.fetch(5)] == [(R, g) for g in range(1, 6)]
                assert await cur.forward(10) == 10
                assert tuple(await cur.fetchrow()) == (R, 16)
        finally:
            await conn.close(timeout=5)

    arun(main())
