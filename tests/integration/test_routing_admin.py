"""Commands pgtwist answers itself: SHOW pool_nodes / pool_version (Pgpool-II §4.1) and
PGTWIST EXPLAIN ROUTE (intercepted in the simple query protocol only; the other admin
commands in both protocols: tests/integration/test_admin_*.py).
"""

from __future__ import annotations

import asyncio
import re

import asyncpg
import psycopg
import pytest
from psycopg import errors as pgerr

from pgtwist.dev import devcluster as dc

pytestmark = pytest.mark.integration

CONNECT_TIMEOUT = 5
TIMEOUT = 20
POOL_NODES_COLUMNS = [
    "node_id", "hostname", "port", "status", "pg_status", "lb_weight", "role", "pg_role",
    "select_cnt", "load_balance_node", "replication_delay", "replication_state",
    "replication_sync_state", "last_status_change",
]


def start(factory, cluster, primary_weight: float = 0, replica_weight: float = 1):
    backends = dc.pgtwist_config(cluster, 1, replica_weight=replica_weight)["backends"]
    backends[0]["weight"] = primary_weight
    return factory(extra={"backends": backends})


def connect(pg, **kw) -> psycopg.Connection:
    kw.setdefault("autocommit", True)
    kw.setdefault("prepare_threshold", None)  # parameterless execute(): always a simple Query
    return psycopg.connect(pg.dsn(), connect_timeout=CONNECT_TIMEOUT, **kw)


def arun(coro):
    async def bounded():
        return await asyncio.wait_for(coro, TIMEOUT)

    return asyncio.run(bounded())


def pool_nodes(conn) -> dict[str, dict[str, str]]:
    cur = conn.execute("SHOW pool_nodes")
    names = [c.name for c in cur.description]
    return {row[0]: dict(zip(names, row, strict=True)) for row in cur.fetchall()}


def port_of(conn) -> int:
    return conn.execute("SELECT inet_server_port()").fetchone()[0]


# -- SHOW pool_nodes -------------------------------------------------------------------------------


def test_show_pool_nodes_columns_and_rows(cluster, pgtwist_factory):
    pg = start(pgtwist_factory, cluster)
    with connect(pg) as conn:
        assert port_of(conn) == cluster.replica_ports[0]  # the replica link is open now
        cur = conn.execute("SHOW pool_nodes")
        assert [c.name for c in cur.description] == POOL_NODES_COLUMNS
        # every column is text with type OID 0, as Pgpool-II sends them
        assert [c.type_code for c in cur.description] == [0] * len(POOL_NODES_COLUMNS)
        assert cur.statusmessage == "SELECT 2"
        rows = cur.fetchall()
    assert all(isinstance(v, str) for row in rows for v in row)
    nodes = {r[0]: dict(zip(POOL_NODES_COLUMNS, r, strict=True)) for r in rows}
    assert sorted(nodes) == ["0", "1"]
    primary, standby = nodes["0"], nodes["1"]
    assert (primary["hostname"], primary["port"]) == (dc.HOST, str(cluster.primary_port))
    assert (standby["hostname"], standby["port"]) == (dc.HOST, str(cluster.replica_ports[0]))
    assert (primary["role"], standby["role"]) == ("primary", "standby")
    assert (primary["pg_role"], standby["pg_role"]) == ("primary", "standby")
    assert (primary["status"], standby["status"]) == ("up", "up")
    assert (primary["pg_status"], standby["pg_status"]) == ("up", "up")
    assert (primary["lb_weight"], standby["lb_weight"]) == ("0.000000", "1.000000")
    assert (primary["load_balance_node"], standby["load_balance_node"]) == ("false", "true")
    for node in nodes.values():
        assert node["select_cnt"].isdigit()
        assert node["replication_delay"].isdigit()
        assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", node["last_status_change"])


def test_load_balance_node_is_the_asking_sessions(cluster, pgtwist_factory):
    pg = start(pgtwist_factory, cluster, primary_weight=1, replica_weight=1)
    by_port = {cluster.primary_port: "0", cluster.replica_ports[0]: "1"}
    for _ in range(12):
        with connect(pg) as conn:
            mine = by_port[port_of(conn)]
            flags = {n: row["load_balance_node"] for n, row in pool_nodes(conn).items()}
            assert flags == {n: "true" if n == mine else "false" for n in ("0", "1")}


def test_kubernetes_walkthrough_select_cnt_grows_on_the_serving_node(cluster, pgtwist_factory):
    """SHOW pool_nodes, a few SELECT 1 in one session, SHOW pool_nodes again (Pgpool-II's
    Kubernetes guide): select_cnt grows on the node that served them."""
    pg = start(pgtwist_factory, cluster)
    with connect(pg) as conn:
        before = {n: int(r["select_cnt"]) for n, r in pool_nodes(conn).items()}
        for _ in range(5):
            assert conn.execute("SELECT 1").fetchone() == (1,)
        assert port_of(conn) == cluster.replica_ports[0]
        after = {n: int(r["select_cnt"]) for n, r in pool_nodes(conn).items()}
    assert after == {"0": before["0"], "1": before["1"] + 6}
    # the counters are the daemon's, not the session's: another session sees them too
    with connect(pg) as other:
        assert {n: int(r["select_cnt"]) for n, r in pool_nodes(other).items()} == after
        # a read the rules keep on the primary counts there
        other.execute("SELECT relname FROM pg_catalog.pg_class LIMIT 1")
        final = {n: int(r["select_cnt"]) for n, r in pool_nodes(other).items()}
    assert final == {"0": after["0"] + 1, "1": after["1"]}


# -- SHOW pool_version -----------------------------------------------------------------------------


def test_show_pool_version(cluster, pgtwist_factory):
    pg = start(pgtwist_factory, cluster)
    with connect(pg) as conn:
        cur = conn.execute("SHOW pool_version")
        assert [(c.name, c.type_code) for c in cur.description] == [("pool_version", 0)]
        rows = cur.fetchall()
        assert len(rows) == 1 and rows[0][0].strip()
        assert conn.execute("show POOL_VERSION;").fetchall() == rows
        assert port_of(conn) == cluster.replica_ports[0]  # the session goes on as before


# -- PGTWIST EXPLAIN ROUTE ----------------------------------------------------------------------------


def test_explain_route_nextval_reports_without_running(cluster, pgtwist_factory):
    cluster.psql("CREATE SEQUENCE IF NOT EXISTS ra_seq")
    seq_before = cluster.psql("SELECT last_value, is_called FROM ra_seq")
    pg = start(pgtwist_factory, cluster)
    with connect(pg) as conn:
        cur = conn.execute("PGTWIST EXPLAIN ROUTE select nextval('ra_seq')")
        assert [c.type_code for c in cur.description] == [0] * len(cur.description)
        names = [c.name for c in cur.description]
        rows = cur.fetchall()
    assert len(rows) == 1
    row = dict(zip(names, rows[0], strict=True))
    assert row["node"] == "0"
    assert row["target"] == "primary"
    assert row["policy"] == "function_list"
    assert "nextval" in row["reason"] and "volatile" in row["reason"], row
    assert "function_list" in row["chain"]
    assert cluster.psql("SELECT last_value, is_called FROM ra_seq") == seq_before


def test_explain_route_select_1_reports_the_lb_node(cluster, pgtwist_factory):
    pg = start(pgtwist_factory, cluster)
    with connect(pg) as conn:
        cur = conn.execute("PGTWIST EXPLAIN ROUTE select 1")
        names = [c.name for c in cur.description]
        row = dict(zip(names, cur.fetchone(), strict=True))
        assert row["node"] == "1"
        assert row["target"] == "node"
        assert row["policy"] == "weighted_balancer"
        assert "1" in row["reason"]
        # and the statement really goes there
        assert port_of(conn) == cluster.replica_ports[0]
        # an explained write names the primary
        row = conn.execute("PGTWIST EXPLAIN ROUTE INSERT INTO t VALUES (1)").fetchone()
        assert row[:3] == ("0", "primary", "statement")


def test_unknown_pgtwist_command_is_an_error(cluster, pgtwist_factory):
    pg = start(pgtwist_factory, cluster)
    with connect(pg) as conn:
        with pytest.raises(pgerr.SyntaxError):
            conn.execute("PGTWIST FROBNICATE")
        assert conn.execute("SELECT 1").fetchone() == (1,)


# -- EXPLAIN ROUTE is not intercepted in the extended protocol (SHOW pool_* is: test_admin_*) --


@pytest.mark.parametrize("sql,error", [
    ("PGTWIST EXPLAIN ROUTE select 1", pgerr.SyntaxError),
])
def test_admin_commands_over_the_extended_protocol_reach_postgresql(
        cluster, pgtwist_factory, sql, error):
    pg = start(pgtwist_factory, cluster)
    with connect(pg) as conn:
        with pytest.raises(error):
            conn.execute(sql, binary=True, prepare=False)
        assert conn.execute("SELECT %s::int", [5]).fetchone() == (5,)
    with connect(pg, prepare_threshold=5) as conn:
        with pytest.raises(error):
            conn.execute(sql, prepare=True)  # a named statement
        assert conn.execute("SELECT 1").fetchone() == (1,)

    asyncpg_error = {pgerr.UndefinedObject: asyncpg.UndefinedObjectError,
                     pgerr.SyntaxError: asyncpg.PostgresSyntaxError}[error]

    async def main():
        conn = await asyncpg.connect(host=pg.host, port=pg.port, user="postgres",
                                     database="postgres", timeout=5)
        try:
            with pytest.raises(asyncpg_error):
                await conn.fetch(sql)
            with pytest.raises(asyncpg_error):
                await conn.prepare(sql)
            assert await conn.fetchval("SELECT 1") == 1
        finally:
            await conn.close(timeout=5)

    arun(main())
