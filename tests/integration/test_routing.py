"""Read/write routing through a real pgtwist daemon: which node answers each statement.

Most tests give the primary weight 0 and the replica weight 1, so every session's
load-balance node is the replica and a read that stays on the primary was sent
there on purpose.  ``inet_server_port()`` (a STABLE function, so it does not make a
read a write) tells which node answered.  Each behaviour is checked over the simple
protocol (psycopg, no parameters / ClientCursor), the extended protocol (psycopg with
parameters or binary results) and asyncpg (named prepared statements).
"""

from __future__ import annotations

import asyncio
import subprocess
import textwrap

import asyncpg
import psycopg
import pytest
import yaml

from pgtwist.dev import devcluster as dc
from pgtwist.testing import reporting_plugin_source
from tests.integration.conftest import backends, log_problems, start_pgtwist

pytestmark = pytest.mark.integration

CONNECT_TIMEOUT = 5
TIMEOUT = 20  # bound for each asyncio.run
PORT_SQL = "SELECT inet_server_port()"


# -- helpers ------------------------------------------------------------------------------------


def start(factory, cluster, primary_weight: float = 0, replica_weight: float = 1, **extra):
    """A daemon with these weights and settings (``factory``: the module's ``daemons``)."""
    return factory(primary_weight, replica_weight, **extra)


def connect(pg, **kw) -> psycopg.Connection:
    """psycopg in autocommit mode; no automatic prepare, so a parameterless execute() is a
    simple Query however often it runs."""
    kw.setdefault("autocommit", True)
    kw.setdefault("prepare_threshold", None)
    user = kw.pop("user", "postgres")
    app = kw.pop("application_name", None)
    # the test roles' passwords are in pool_passwd; pgtwist may ask the client for them
    return psycopg.connect(pg.dsn(user=user, application_name=app,
                                  password=dc.TEST_USERS.get(user)),
                           connect_timeout=CONNECT_TIMEOUT, **kw)


def simple_port(conn, sql: str = PORT_SQL) -> int:
    """First column of ``sql`` run over the simple query protocol."""
    return conn.execute(sql).fetchone()[0]


def extended_port(conn, sql: str = PORT_SQL) -> int:
    """First column of ``sql`` run over the extended protocol (unnamed statement)."""
    return conn.execute(sql, binary=True, prepare=False).fetchone()[0]


def arun(coro):
    async def bounded():
        return await asyncio.wait_for(coro, TIMEOUT)

    return asyncio.run(bounded())


async def aconnect(pg, **kw) -> asyncpg.Connection:
    kw.setdefault("user", "postgres")
    return await asyncpg.connect(host=pg.host, port=pg.port, database="postgres", timeout=5,
                                 **kw)


@pytest.fixture(scope="module")
def schema(cluster):
    """Objects the tests read and write, created on the primary and replayed."""
    cluster.psql(textwrap.dedent("""\
        CREATE TABLE IF NOT EXISTS rt_items (id int, v text);
        TRUNCATE rt_items;
        INSERT INTO rt_items VALUES (1, 'one'), (2, 'two');
        CREATE SEQUENCE IF NOT EXISTS rt_seq;
        CREATE OR REPLACE FUNCTION rt_stable_port() RETURNS int STABLE
            LANGUAGE sql AS 'SELECT inet_server_port()';
        CREATE OR REPLACE FUNCTION rt_volatile_port() RETURNS int VOLATILE
            LANGUAGE sql AS 'SELECT inet_server_port()';
        CREATE OR REPLACE FUNCTION rt_ro_volatile_port() RETURNS int VOLATILE
            LANGUAGE sql AS 'SELECT inet_server_port()';
        GRANT ALL ON rt_items TO PUBLIC;
        """))
    cluster.wait_replayed()
    return cluster


# -- reads to the replica -------------------------------------------------------------------------


def test_reads_reach_the_replica_when_the_primary_has_weight_0(schema, daemons):
    cluster = schema
    pg = start(daemons, cluster)
    with connect(pg) as conn:
        assert simple_port(conn) == cluster.replica_ports[0]
        assert extended_port(conn) == cluster.replica_ports[0]
        row = conn.execute("SELECT inet_server_port(), %s::int + 1", [41]).fetchone()
        assert row == (cluster.replica_ports[0], 42)
        cur = psycopg.ClientCursor(conn)
        cur.execute("SELECT inet_server_port(), count(*) FROM rt_items WHERE id >= %s", [0])
        assert cur.fetchone() == (cluster.replica_ports[0], 2)
        for sql in ("WITH x AS (SELECT inet_server_port() AS p) SELECT p FROM x",
                    "(SELECT inet_server_port())",
                    "  select inet_server_port()"):
            assert simple_port(conn, sql) == cluster.replica_ports[0], sql

    async def main():
        conn = await aconnect(pg)
        try:
            assert await conn.fetchval(PORT_SQL) == cluster.replica_ports[0]
            stmt = await conn.prepare("SELECT inet_server_port(), $1::text")
            assert tuple(await stmt.fetchrow("a")) == (cluster.replica_ports[0], "a")
            assert await conn.fetchval("SELECT count(*) FROM rt_items") == 2
        finally:
            await conn.close(timeout=5)

    arun(main())


# -- statements that must go to the primary -------------------------------------------------------


def _writes_go_to_the_primary(conn, port, cluster, table: str) -> None:
    p = cluster.primary_port
    conn.execute(f"CREATE TABLE {table} (id int, port int)")
    assert port(conn, f"INSERT INTO {table} VALUES (1, 0) RETURNING inet_server_port()") == p
    assert port(conn, f"UPDATE {table} SET port = inet_server_port() "
                      f"RETURNING inet_server_port()") == p
    assert port(conn, f"DELETE FROM {table} RETURNING inet_server_port()") == p
    conn.execute(f"ALTER TABLE {table} ADD COLUMN note text")
    conn.execute(f"CREATE INDEX ON {table} (id)")
    conn.execute(f"DROP TABLE {table}")


def test_writes_and_ddl_go_to_the_primary(schema, daemons):
    cluster = schema
    pg = start(daemons, cluster)
    with connect(pg) as conn:
        # a write sent to the replica would fail: "cannot execute ... in a read-only transaction"
        _writes_go_to_the_primary(conn, simple_port, cluster, "rt_w_simple")
        _writes_go_to_the_primary(conn, extended_port, cluster, "rt_w_ext")

    async def main():
        conn = await aconnect(pg)
        try:
            await conn.execute("CREATE TABLE rt_w_async (id int)")
            assert await conn.fetchval("INSERT INTO rt_w_async VALUES ($1) "
                                       "RETURNING inet_server_port()", 1) == cluster.primary_port
            assert await conn.fetchval("DELETE FROM rt_w_async WHERE id = $1 "
                                       "RETURNING inet_server_port()", 1) == cluster.primary_port
            await conn.execute("DROP TABLE rt_w_async")
        finally:
            await conn.close(timeout=5)

    arun(main())


PRIMARY_READS = [
    ("volatile function nextval", "SELECT inet_server_port() FROM nextval('rt_seq')"),
    ("volatile nextval in the target list", "SELECT nextval('rt_seq') * 0 + inet_server_port()"),
    ("FOR UPDATE", "SELECT inet_server_port() FROM rt_items WHERE id = 1 FOR UPDATE"),
    ("FOR SHARE", "SELECT inet_server_port() FROM rt_items WHERE id = 1 FOR SHARE"),
    ("system catalog, qualified",
     "SELECT inet_server_port() FROM pg_catalog.pg_class WHERE relname = 'pg_class'"),
    ("system catalog, unqualified",
     "SELECT inet_server_port() FROM pg_class WHERE relname = 'pg_class'"),
    ("NO LOAD BALANCE comment", "/*NO LOAD BALANCE*/ SELECT inet_server_port()"),
    ("any leading comment", "/* app: orders */ SELECT inet_server_port()"),
    ("user-defined VOLATILE function", "SELECT rt_volatile_port()"),
]


@pytest.mark.parametrize("what,sql", PRIMARY_READS, ids=[w for w, _ in PRIMARY_READS])
def test_reads_that_must_go_to_the_primary(schema, daemons, what, sql):
    cluster = schema
    pg = start(daemons, cluster)
    with connect(pg) as conn:
        assert simple_port(conn) == cluster.replica_ports[0]  # balanced reads do go there
        assert simple_port(conn, sql) == cluster.primary_port, f"simple protocol: {what}"
        assert extended_port(conn, sql) == cluster.primary_port, f"extended protocol: {what}"

    async def main():
        conn = await aconnect(pg)
        try:
            assert await conn.fetchval(sql) == cluster.primary_port, f"asyncpg: {what}"
        finally:
            await conn.close(timeout=5)

    arun(main())


def test_stable_user_function_is_balanced(schema, daemons):
    cluster = schema
    pg = start(daemons, cluster)
    with connect(pg) as conn:
        assert simple_port(conn, "SELECT rt_stable_port()") == cluster.replica_ports[0]
        assert extended_port(conn, "SELECT rt_stable_port()") == cluster.replica_ports[0]


def test_nextval_really_ran_on_the_primary(schema, daemons):
    cluster = schema
    pg = start(daemons, cluster)
    with connect(pg) as conn:
        a = conn.execute("SELECT nextval('rt_seq')").fetchone()[0]
        b = conn.execute("SELECT nextval('rt_seq')", binary=True).fetchone()[0]
    assert b == a + 1
    assert int(cluster.psql("SELECT last_value FROM rt_seq")) == b


def test_temp_table_reads_go_to_the_primary(schema, daemons):
    cluster = schema
    pg = start(daemons, cluster)
    with connect(pg) as conn:
        assert simple_port(conn) == cluster.replica_ports[0]
        conn.execute("CREATE TEMP TABLE rt_tmp AS SELECT 7 AS x")
        # on the replica the table does not exist: the read would fail, not just go astray
        assert conn.execute("SELECT inet_server_port(), x FROM rt_tmp").fetchone() == (
            cluster.primary_port, 7)
        assert conn.execute("SELECT inet_server_port(), x FROM rt_tmp WHERE x = %s",
                            [7]).fetchone() == (cluster.primary_port, 7)
        assert simple_port(conn) == cluster.replica_ports[0]  # other reads still balanced

    async def main():
        conn = await aconnect(pg)
        try:
            await conn.execute("CREATE TEMP TABLE rt_tmp2 (x int)")
            await conn.execute("INSERT INTO rt_tmp2 VALUES (1)")
            row = await conn.fetchrow("SELECT inet_server_port(), x FROM rt_tmp2")
            assert tuple(row) == (cluster.primary_port, 1)
        finally:
            await conn.close(timeout=5)

    arun(main())


def test_multi_statement_query_goes_to_the_primary(schema, daemons):
    cluster = schema
    pg = start(daemons, cluster)
    with connect(pg) as conn:
        cur = conn.execute("SELECT inet_server_port(); SELECT inet_server_port(), 2")
        assert cur.fetchone() == (cluster.primary_port,)
        assert cur.nextset()
        assert cur.fetchone() == (cluster.primary_port, 2)
        assert simple_port(conn) == cluster.replica_ports[0]


def test_primary_routing_query_pattern_list(schema, daemons):
    cluster = schema
    pg = start(daemons, cluster, primary_routing_query_pattern_list=(
        r"SELECT inet_server_port\(\) AS pinned;.*FROM rt_items.*"))
    with connect(pg) as conn:
        for port in (simple_port, extended_port):
            # anchored and case-insensitive, matched against the whole text
            assert port(conn, "SELECT inet_server_port() AS pinned") == cluster.primary_port
            assert port(conn, "select INET_SERVER_PORT() as PINNED") == cluster.primary_port
            assert port(conn, "SELECT inet_server_port() AS pinned2") == cluster.replica_ports[0]
            assert port(conn, "SELECT inet_server_port() FROM rt_items LIMIT 1") == \
                cluster.primary_port
            assert port(conn, "SELECT inet_server_port() AS not_pinned") == \
                cluster.replica_ports[0]


# -- function lists --------------------------------------------------------------------------------


def test_write_function_list(schema, daemons):
    cluster = schema
    pg = start(daemons, cluster, write_function_list="rt_stable_.*")
    with connect(pg) as conn:
        for port in (simple_port, extended_port):
            # in the list: primary, although the catalog says STABLE
            assert port(conn, "SELECT rt_stable_port()") == cluster.primary_port
            # with a list, volatility is not consulted: a VOLATILE function not listed balances
            assert port(conn, "SELECT rt_volatile_port()") == cluster.replica_ports[0]
            assert port(conn, "SELECT inet_server_port()") == cluster.replica_ports[0]


def test_read_only_function_list(schema, daemons):
    cluster = schema
    pg = start(daemons, cluster, read_only_function_list="rt_ro_.*,rt_stable_port")
    with connect(pg) as conn:
        for port in (simple_port, extended_port):
            # listed as read-only: balanced, although the catalog says VOLATILE
            assert port(conn, "SELECT rt_ro_volatile_port()") == cluster.replica_ports[0]
            assert port(conn, "SELECT rt_stable_port()") == cluster.replica_ports[0]
            # any function outside the list is a writer
            assert port(conn, "SELECT inet_server_port()") == cluster.primary_port
            assert port(conn, "SELECT rt_volatile_port()") == cluster.primary_port
            assert port(conn, "SELECT 1 + 1") == 2  # no function at all: fine anywhere


# -- weights and modes -------------------------------------------------------------------------------


def test_weights_1_to_3_over_400_sessions(schema, daemons):
    cluster = schema
    pg = start(daemons, cluster, primary_weight=1, replica_weight=3)
    total = 400

    async def one() -> int:
        conn = await aconnect(pg, statement_cache_size=0)
        try:
            return await conn.fetchval(PORT_SQL)
        finally:
            await conn.close(timeout=5)

    async def main():
        sem = asyncio.Semaphore(16)

        async def bounded():
            async with sem:
                return await one()

        return await asyncio.gather(*(bounded() for _ in range(total)))

    ports = arun(main())
    assert set(ports) <= set(cluster.ports)
    share = ports.count(cluster.replica_ports[0]) / total
    # expected 0.75; the standard deviation over 400 draws is about 0.022
    assert 0.65 <= share <= 0.85, f"replica share {share:.3f}"

    with connect(pg) as conn:
        rows = conn.execute("SHOW pool_nodes").fetchall()
    assert [(r[0], r[5]) for r in rows] == [("0", "0.250000"), ("1", "0.750000")]


def test_load_balance_mode_off_sends_reads_to_the_primary(schema, daemons):
    cluster = schema
    pg = start(daemons, cluster, load_balance_mode=False)
    with connect(pg) as conn:
        for _ in range(5):
            assert simple_port(conn) == cluster.primary_port
            assert extended_port(conn) == cluster.primary_port
        conn.execute("BEGIN")
        assert simple_port(conn) == cluster.primary_port
        conn.execute("COMMIT")
    assert arun(_fetch_port(pg)) == cluster.primary_port


async def _fetch_port(pg, sql: str = PORT_SQL, **kw) -> int:
    conn = await aconnect(pg, **kw)
    try:
        return await conn.fetchval(sql)
    finally:
        await conn.close(timeout=5)


def test_statement_level_load_balance_spreads_one_session(schema, daemons):
    cluster = schema
    pg = start(daemons, cluster, primary_weight=1, replica_weight=1,
               statement_level_load_balance=True)
    with connect(pg) as conn:
        seen_simple = {simple_port(conn) for _ in range(60)}
        seen_ext = {extended_port(conn) for _ in range(60)}
    # each of 60 reads draws a node: missing one of two equally weighted nodes has odds 2^-59
    assert seen_simple == set(cluster.ports)
    assert seen_ext == set(cluster.ports)


# -- redirect preference lists ------------------------------------------------------------------------


def _session_ports(pg, *, user="postgres", application_name=None, n=3) -> set[int]:
    """Ports answering n reads in each of two new sessions (simple and extended protocol)."""
    ports = set()
    for _ in range(2):
        with connect(pg, user=user, application_name=application_name) as conn:
            ports.update(simple_port(conn) for _ in range(n))
            ports.update(extended_port(conn) for _ in range(n))
    return ports


def test_app_name_redirect_preference_list(schema, daemons):
    cluster = schema
    # weights send everyone else to the primary; the list sends 'reporting' to node 1
    pg = start(daemons, cluster, primary_weight=1, replica_weight=0,
               app_name_redirect_preference_list="reporting:1")
    r, p = cluster.replica_ports[0], cluster.primary_port
    assert _session_ports(pg, application_name="reporting") == {r}
    assert _session_ports(pg, application_name="web") == {p}
    assert _session_ports(pg) == {p}
    # the name comes from the startup packet only: a later SET changes nothing (§1.1)
    with connect(pg, application_name="web") as conn:
        conn.execute("SET application_name = 'reporting'")
        assert simple_port(conn) == p
    assert arun(_fetch_port(pg, server_settings={"application_name": "reporting"})) == r


def test_app_name_redirect_follows_weights_for_other_apps(schema, daemons):
    cluster = schema
    pg = start(daemons, cluster, primary_weight=0, replica_weight=1,
               app_name_redirect_preference_list="reporting:0")
    assert _session_ports(pg, application_name="reporting") == {cluster.primary_port}
    assert _session_ports(pg, application_name="web") == {cluster.replica_ports[0]}


def test_database_redirect_preference_list(schema, daemons):
    cluster = schema
    pg = start(daemons, cluster, primary_weight=1, replica_weight=0,
               database_redirect_preference_list="template1:0,post.*:1")
    assert _session_ports(pg) == {cluster.replica_ports[0]}
    assert _session_ports(pg, user="pw_user") == {cluster.replica_ports[0]}


def test_user_redirect_preference_list(schema, daemons):
    cluster = schema
    pg = start(daemons, cluster, primary_weight=1, replica_weight=0,
               user_redirect_preference_list="pw_.*:1")
    assert _session_ports(pg, user="pw_user") == {cluster.replica_ports[0]}
    assert _session_ports(pg, user="md5_user") == {cluster.primary_port}
    assert _session_ports(pg) == {cluster.primary_port}


def test_redirect_list_precedence_app_name_then_database_then_user(schema, daemons):
    cluster = schema
    r, p = cluster.replica_ports[0], cluster.primary_port
    pg = start(daemons, cluster, primary_weight=0, replica_weight=1,
               app_name_redirect_preference_list="reporting:1",
               database_redirect_preference_list="postgres:0",
               user_redirect_preference_list="pw_user:1,postgres:1")
    assert _session_ports(pg, application_name="reporting") == {r}            # app > database
    assert _session_ports(pg, application_name="reporting", user="pw_user") == {r}
    assert _session_ports(pg, application_name="web") == {p}                  # database
    assert _session_ports(pg, application_name="web", user="pw_user") == {p}  # database > user
    assert _session_ports(pg, user="pw_user") == {p}


# -- an unreachable load-balance node -----------------------------------------------------------------


def test_unreachable_lb_node_falls_back_to_the_primary(schema, pgtwist_factory):
    cluster = schema
    closed = dc.free_port()  # nothing listens there
    nodes = backends(cluster, primary_weight=0, replica_weight=0, extra_nodes=[
        {"hostname": dc.HOST, "port": closed, "weight": 100, "flag": "DISALLOW_TO_FAILOVER"}])
    pg = pgtwist_factory(extra={"backends": nodes})
    with connect(pg) as conn:
        assert simple_port(conn) == cluster.primary_port
        assert extended_port(conn) == cluster.primary_port
        assert conn.execute("SELECT count(*) FROM rt_items").fetchone() == (2,)
        rows = {r[0]: r for r in conn.execute("SHOW pool_nodes").fetchall()}
    assert rows["2"][2] == str(closed)
    assert rows["2"][3] == "down", rows["2"]
    assert rows["0"][3] == "up", rows["0"]
    # later sessions are not troubled either
    with connect(pg) as conn:
        assert simple_port(conn) == cluster.primary_port
    assert arun(_fetch_port(pg)) == cluster.primary_port


# -- routing policy plugins ---------------------------------------------------------------------------

REPORTING_PLUGIN = reporting_plugin_source("rt_reporting")

BOOM_PLUGIN = '''
from twisted.plugin import IPlugin
from zope.interface import implementer

from pgtwist.interfaces import IRoutingPolicy, IRoutingPolicyFactory


@implementer(IRoutingPolicy)
class Boom:
    name = "rt_boom"

    def route(self, request):
        raise RuntimeError("rt_boom always fails")


@implementer(IPlugin, IRoutingPolicyFactory)
class BoomFactory:
    name = "rt_boom"

    def parse_config(self, raw, path):
        return raw

    def build(self, config):
        return Boom()


boom = BoomFactory()
'''

DEFAULT_CHAIN = ["statement", "pattern_list", "function_list", "temp_tables", "stickiness",
                 "weighted_balancer"]


def test_custom_policy_plugin_from_plugin_paths(schema, daemons, tmp_path):
    cluster = schema
    plugin_dir = tmp_path / "policies"
    plugin_dir.mkdir()
    (plugin_dir / "rt_reporting_policy.py").write_text(REPORTING_PLUGIN)
    chain = [*DEFAULT_CHAIN[:-1], {"name": "rt_reporting", "node": 1}, DEFAULT_CHAIN[-1]]
    pg = start(daemons, cluster, primary_weight=1, replica_weight=0,
               routing={"plugin_paths": [str(plugin_dir)], "policies": chain})
    r, p = cluster.replica_ports[0], cluster.primary_port
    assert _session_ports(pg, application_name="reporting") == {r}
    assert _session_ports(pg, application_name="web") == {p}
    with connect(pg, application_name="reporting") as conn:
        # the policy sits after the built-in rules: writes and volatile reads stay put
        assert simple_port(conn, "SELECT inet_server_port() FROM nextval('rt_seq')") == p
        explained = conn.execute("PGTWIST EXPLAIN ROUTE SELECT 1").fetchone()
    assert explained[:4] == ("1", "node", "rt_reporting", "node 1: reporting reads")
    assert arun(_fetch_port(pg, server_settings={"application_name": "reporting"})) == r


def test_policy_that_raises_never_drops_the_client(schema, tmp_path):
    cluster = schema
    plugin_dir = tmp_path / "policies"
    plugin_dir.mkdir()
    (plugin_dir / "rt_boom_policy.py").write_text(BOOM_PLUGIN)
    pg = start_pgtwist(cluster, tmp_path / "daemon", passwd=dc.TEST_USERS, extra={
        "backends": backends(cluster),
        "routing": {"plugin_paths": [str(plugin_dir)], "policies": ["rt_boom", *DEFAULT_CHAIN]},
    })
    r, p = cluster.replica_ports[0], cluster.primary_port
    try:
        with connect(pg) as conn:
            for port in (simple_port, extended_port):
                assert port(conn) == r
                assert port(conn, "SELECT inet_server_port() FROM nextval('rt_seq')") == p
            conn.execute("BEGIN")
            conn.execute("UPDATE rt_items SET v = v WHERE id = 1")
            assert simple_port(conn) == p
            conn.execute("COMMIT")
            assert simple_port(conn) == r
        assert arun(_fetch_port(pg)) == r
    finally:
        pg.stop()
    # The failure is logged (with its traceback, for the plugin's author) and nothing else is.
    text = pg.log_text()
    assert "Routing policy rt_boom failed" in text
    assert "rt_boom always fails" in text
    for excerpt in log_problems(text):
        assert "Routing policy rt_boom failed" in excerpt, excerpt


# -- configuration errors ------------------------------------------------------------------------------


def _check(cluster, tmp_path, **extra) -> subprocess.CompletedProcess:
    config = dc.pgtwist_config(cluster, dc.free_port(), extra)
    path = tmp_path / "pgtwist.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return subprocess.run([*dc.twistd_argv(path), "--check"], cwd=tmp_path,
                          env=dc.pgtwist_env(), capture_output=True, text=True, timeout=60,
                          stdin=subprocess.DEVNULL, check=False)


def test_check_accepts_valid_routing_settings(cluster, tmp_path):
    proc = _check(cluster, tmp_path, primary_routing_query_pattern_list=r"SELECT 1;.*\;.*",
                  app_name_redirect_preference_list="reporting:1,psql:primary(0.5)",
                  user_redirect_preference_list="pw_user:standby")
    assert proc.returncode == 0, proc.stderr
    assert "is valid" in proc.stdout


@pytest.mark.parametrize("key,value,message", [
    ("primary_routing_query_pattern_list", "SELECT 1;(unclosed",
     "primary_routing_query_pattern_list: entry 2 '(unclosed': bad regular expression"),
    ("app_name_redirect_preference_list", "reporting:5",
     "app_name_redirect_preference_list: entry 1 'reporting:5': unknown node id 5"),
    ("database_redirect_preference_list", "postgres:1,sales:9",
     "database_redirect_preference_list: entry 2 'sales:9': unknown node id 9"),
    ("user_redirect_preference_list", "bob:two",
     "user_redirect_preference_list: entry 1 'bob:two'"),
    ("write_function_list", "ok_fn,bad(", "write_function_list"),
])
def test_check_rejects_bad_routing_settings(cluster, tmp_path, key, value, message):
    proc = _check(cluster, tmp_path, **{key: value})
    assert proc.returncode != 0
    assert message in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr
