"""SHOW pool_* through a real twistd: every command's columns against the reference, its
values against the cluster's real state, in the simple and the extended protocol."""

from __future__ import annotations

import re

import asyncpg
import psycopg
import pytest

from pgtwist.dev import devcluster as dc

from .adminutil import REFERENCE_COLUMNS, TIMESTAMP, arun, connect, show, table, wait_for
from .conftest import backends

pytestmark = pytest.mark.integration

ALL_SHOWS = sorted(REFERENCE_COLUMNS)


def test_every_show_has_the_reference_columns_in_both_protocols(cluster, pgtwist_factory):
    pg = pgtwist_factory(extra={"num_init_children": 5})
    # prepare_threshold=0: every statement a named Parse; binary=True: the unnamed one
    with connect(pg) as conn, connect(pg, prepare_threshold=0) as named:
        for name in ALL_SHOWS:
            for sql in (f"SHOW {name}", f"show {name.upper()};"):
                names, rows = show(conn, sql)
                assert names == REFERENCE_COLUMNS[name], sql
                assert rows, sql
                assert all(v is None or isinstance(v, str) for r in rows for v in r)
            for client, kw in ((conn, {"binary": True}), (named, {}), (named, {"binary": True})):
                cur = client.execute(f"SHOW {name}", **kw)
                assert [c.name for c in cur.description] == REFERENCE_COLUMNS[name], (name, kw)
                # typed text (25) in the extended protocol, where drivers look the type up
                assert [c.type_code for c in cur.description] == [25] * len(cur.description)
                assert len(cur.fetchall()) == len(rows), (name, kw)
        # what does not change between two asks reads the same both ways
        for name in ("pool_version", "pool_cache", "pool_status"):
            for client, kw in ((conn, {"binary": True}), (named, {})):
                cur = client.execute(f"SHOW {name}", **kw)
                assert show(conn, f"SHOW {name}")[1] == cur.fetchall()
        assert conn.execute("SELECT 1").fetchone() == (1,)   # the sessions go on
        assert named.execute("SELECT %s::int", [2]).fetchone() == (2,)


def test_asyncpg_prepares_and_fetches_admin_commands(cluster, pgtwist_factory):
    pg = pgtwist_factory()

    async def main():
        conn = await asyncpg.connect(host=pg.host, port=pg.port, user="postgres",
                                     database="postgres", timeout=5)
        try:
            rows = await conn.fetch("SHOW pool_nodes")
            assert list(rows[0].keys()) == REFERENCE_COLUMNS["pool_nodes"]
            assert [r["node_id"] for r in rows] == ["0", "1"]
            stmt = await conn.prepare("SHOW pool_version")
            assert [a.name for a in stmt.get_attributes()] == ["pool_version"]
            assert (await stmt.fetchval()).startswith("4.")
            assert await conn.fetchval("PGPOOL SHOW port") == str(pg.port)
            await conn.execute("PGPOOL SET client_idle_limit = 30")
            assert await conn.fetchval("PGPOOL SHOW client_idle_limit") == "30"
            assert await conn.fetchval("SELECT 41 + $1::int", 1) == 42
        finally:
            await conn.close(timeout=5)

    arun(main())


def test_pool_nodes_shows_a_dead_node_down(cluster, pgtwist_factory):
    dead = {"hostname": dc.HOST, "port": dc.free_port(), "weight": 1}
    pg = pgtwist_factory(extra={
        "backends": backends(cluster, extra_nodes=[dead]), "health_check_period": 1,
        "health_check_timeout": 2, "health_check_user": "postgres", "sr_check_period": 1})
    with connect(pg) as conn:
        nodes = wait_for(lambda: (t := table(conn, "SHOW pool_nodes"))["2"]["status"] == "down"
                         and t)
        assert nodes["2"]["pg_status"] == "down"
        assert (nodes["0"]["status"], nodes["1"]["status"]) == ("up", "up")
        assert re.fullmatch(TIMESTAMP, nodes["2"]["last_status_change"])
        stats = table(conn, "SHOW pool_health_check_stats")
        assert stats["2"]["status"] == "down" and int(stats["2"]["fail_count"]) >= 1
        assert re.fullmatch(TIMESTAMP, stats["2"]["last_failed_health_check"])
        assert stats["2"]["last_successful_health_check"] == ""
        assert stats["2"]["port"] == str(dead["port"])


def test_pool_health_check_stats_move_with_the_checks(cluster, pgtwist_factory):
    pg = pgtwist_factory(extra={"health_check_period": 1, "health_check_user": "postgres"})
    with connect(pg) as conn:
        first = table(conn, "SHOW pool_health_check_stats")
        for row in first.values():
            assert row["fail_count"] == "0" and row["skip_count"] == "0"
        later = wait_for(lambda: (t := table(conn, "SHOW pool_health_check_stats"))
                         and all(int(t[n]["success_count"]) >= int(first[n]["success_count"]) + 2
                                 for n in t) and t)
    for row in later.values():
        assert int(row["total_count"]) == int(row["success_count"])
        assert row["retry_count"] == "0" and row["average_retry_count"] == "0.000000"
        assert int(row["min_duration"]) <= float(row["average_duration"]) <= int(
            row["max_duration"])
        assert re.fullmatch(TIMESTAMP, row["last_health_check"])
        assert row["last_successful_health_check"] == row["last_health_check"]
        assert row["last_failed_health_check"] == "" and row["last_skip_health_check"] == ""


def test_without_health_checks_the_stats_stay_zero(cluster, pgtwist_factory):
    pg = pgtwist_factory()
    with connect(pg) as conn:
        for row in table(conn, "SHOW pool_health_check_stats").values():
            assert row["total_count"] == "0" and row["last_health_check"] == ""
            assert row["average_duration"] == "0.000000"


def test_pool_backend_stats_count_statements_and_errors(cluster, pgtwist_factory):
    pg = pgtwist_factory()   # replica weight 0: everything runs on node 0
    with connect(pg) as conn:
        def stats():
            return {k: int(v) for k, v in table(conn, "SHOW pool_backend_stats")["0"].items()
                    if k.endswith("_cnt")}

        conn.execute("DROP TABLE IF EXISTS admin_bs")
        before = stats()
        conn.execute("CREATE TABLE admin_bs (i int)")
        for i in range(5):
            conn.execute(f"INSERT INTO admin_bs VALUES ({i})")
        conn.execute("UPDATE admin_bs SET i = i + 1")
        conn.execute("UPDATE admin_bs SET i = i + 1 WHERE i > 2")
        conn.execute("DELETE FROM admin_bs WHERE i = 1")
        conn.execute("SET application_name = 'admin_bs'")
        for _ in range(3):
            with pytest.raises(Exception, match="division by zero"):
                conn.execute("SELECT 1 / 0")
        # the extended protocol counts each execution
        for i in range(4):
            conn.execute("INSERT INTO admin_bs VALUES (%s)", [i])
        after = stats()
    moved = {k: after[k] - before[k] for k in after}
    assert moved["insert_cnt"] == 9
    assert moved["update_cnt"] == 2
    assert moved["delete_cnt"] == 1
    assert moved["ddl_cnt"] == 1
    assert moved["other_cnt"] == 1             # the SET
    assert moved["error_cnt"] == 3
    assert moved["fatal_cnt"] == moved["panic_cnt"] == 0
    assert moved["select_cnt"] == 3            # the failed reads (SHOW pool_* is pgtwist's)
    cluster.psql("DROP TABLE IF EXISTS admin_bs")


def test_pool_backend_stats_count_a_fatal_error(cluster, pgtwist_factory):
    pg = pgtwist_factory()
    with connect(pg) as victim, connect(pg) as watcher:
        before = int(table(watcher, "SHOW pool_backend_stats")["0"]["fatal_cnt"])
        pid = victim.execute("SELECT pg_backend_pid()").fetchone()[0]
        cluster.psql(f"SELECT pg_terminate_backend({pid})")
        with pytest.raises(Exception):  # noqa: B017 - the driver's wording varies
            victim.execute("SELECT 1")
        wait_for(lambda: int(table(watcher, "SHOW pool_backend_stats")["0"]["fatal_cnt"])
                 == before + 1)


def test_pool_processes_map_sessions_onto_slots(cluster, pgtwist_factory):
    pg = pgtwist_factory(extra={"num_init_children": 5})
    with connect(pg) as me, connect(pg, autocommit=False) as busy, connect(pg) as idle:
        busy.execute("SELECT 1")                       # in a transaction now
        idle.execute("SELECT 1")
        names, rows = show(me, "SHOW pool_processes")
        assert len(rows) == 5
        by_pid = {r[0]: dict(zip(names, r, strict=True)) for r in rows}
        mine = by_pid[str(me.info.backend_pid)]
        assert (mine["database"], mine["username"], mine["status"]) == (
            "postgres", "postgres", "Execute command")
        assert by_pid[str(busy.info.backend_pid)]["status"] == "Idle in transaction"
        assert by_pid[str(idle.info.backend_pid)]["status"] == "Idle"
        for row in (mine, by_pid[str(idle.info.backend_pid)]):
            assert re.fullmatch(TIMESTAMP, row["start_time"])
            assert re.fullmatch(TIMESTAMP, row["backend_connection_time"])
            assert int(row["pool_counter"]) >= 1
        waiting = [dict(zip(names, r, strict=True)) for r in rows
                   if r[7] == "Wait for connection"]
        assert len(waiting) == 2
        assert {w["pool_pid"] for w in waiting} == {str(pg.proc.pid)}
        assert all(w["database"] == w["username"] == "" for w in waiting)
        busy.rollback()


def test_pool_pools_rows_are_the_sessions_links(cluster, pgtwist_factory):
    pg = pgtwist_factory(extra={"num_init_children": 3, "backends": backends(cluster, 0, 1),
                                "read_consistency": "none"})
    with connect(pg) as conn:
        # Both nodes: the primary from the start, the load-balance node (1) for reads.
        replica_pid = conn.execute("SELECT pg_backend_pid()").fetchone()[0]
        key_pid = conn.info.backend_pid
        names, rows = show(conn, "SHOW pool_pools")
    table_rows = [dict(zip(names, r, strict=True)) for r in rows]
    mine = [r for r in table_rows if r["pool_pid"] == str(key_pid)]
    assert [r["backend_id"] for r in mine] == ["0", "1"]
    for r in mine:
        assert (r["database"], r["username"], r["pool_connected"]) == (
            "postgres", "postgres", "1")
        assert (r["majorversion"], r["minorversion"]) == ("3", "0")
        assert r["client_host"] == dc.HOST and r["client_port"].isdigit()
        assert re.fullmatch(TIMESTAMP, r["backend_connection_time"])
        assert r["status"] == "Execute command"
    # session mode: the client's key pid is its primary backend's
    assert [r["pool_backendpid"] for r in mine] == [str(key_pid), str(replica_pid)]
    assert [r["load_balance_node"] for r in mine] == ["0", "1"]
    # two free slots of two rows each, under the daemon's pid
    free = [r for r in table_rows if r["pool_pid"] == str(pg.proc.pid)
            and r["pool_connected"] == "0" and r["username"] == ""]
    assert len(free) == 4 and all(r["status"] == "Wait for connection" for r in free)
    assert len(table_rows) == 3 * 2


def test_pool_pools_shows_idle_pool_links_apart(cluster, pgtwist_factory, pool_database):
    pg = pgtwist_factory(extra={"num_init_children": 2})
    with psycopg.connect(pg.dsn(dbname=pool_database), autocommit=True) as gone:
        gone_pid = gone.info.backend_pid
    with connect(pg) as conn:
        def idle_rows():
            names, rows = show(conn, "SHOW pool_pools")
            return [dict(zip(names, r, strict=True)) for r in rows
                    if r[5] == pool_database and r[15] == "0"]
        idle = wait_for(idle_rows)
    assert [r["pool_backendpid"] for r in idle] == [str(gone_pid)]
    assert re.fullmatch(TIMESTAMP, idle[0]["client_disconnection_time"])
    assert idle[0]["pool_pid"] == str(pg.proc.pid)


def test_pool_status_shows_every_parameter_and_no_secret(cluster, pgtwist_factory):
    secret = "hc-Secret-4711"
    pg = pgtwist_factory(extra={"health_check_password": secret, "sr_check_password": secret,
                                "health_check_user": "postgres"})
    with connect(pg) as conn:
        names, rows = show(conn, "SHOW pool_status")
        all_names, all_rows = show(conn, "PGPOOL SHOW ALL")
    assert (names, rows) == (all_names, all_rows)
    items = {r[0]: r for r in rows}
    assert items["port"][1] == str(pg.port)
    assert items["backend_port0"][1] == str(cluster.primary_port)
    assert items["health_check_password"][1] == "*****"
    assert items["sr_check_password"][1] == "*****"
    assert items["load_balance_mode"][1] == "on"
    assert items["reset_query_list"][1] == "ABORT;DISCARD ALL"
    assert all(r[2] for r in rows), [r[0] for r in rows if not r[2]]
    assert not any(secret in (v or "") for r in rows for v in r)
    assert secret not in pg.log_text()


def test_pool_version_and_pool_cache(cluster, pgtwist_factory):
    pg = pgtwist_factory()
    with connect(pg) as conn:
        (version,), = show(conn, "SHOW pool_version")[1]
        cache = show(conn, "SHOW pool_cache")[1]
    assert re.match(r"^(\d+)(\.\d+)(\.\d+)? \(pgtwist ", version)
    assert cache == [("0", "0", "0.00", "0", "0", "0", "0", "0", "0")]


@pytest.mark.parametrize("pool_mode", ["session", "transaction"])
def test_admin_answers_keep_their_place_in_a_pipeline(cluster, pgtwist_factory, pool_mode):
    pg = pgtwist_factory(extra={"pool_mode": pool_mode})
    with connect(pg) as conn:
        with conn.pipeline():
            curs = [conn.execute(sql, **kw) for sql, kw in (
                ("SELECT %s::int", {"params": [1]}),
                ("SHOW pool_version", {"binary": True}),
                ("SELECT %s::int", {"params": [2]}),
                ("PGPOOL SHOW port", {"binary": True}),
                ("SELECT %s::int", {"params": [3]}),
            )]
        got = [c.fetchall() for c in curs]
        assert got[0] == [(1,)] and got[2] == [(2,)] and got[4] == [(3,)]
        assert got[1][0][0].startswith("4.") and got[3] == [(str(pg.port),)]
        # an error in an admin command fails its pipeline part like a server error would
        with pytest.raises(psycopg.errors.UndefinedObject):
            with conn.pipeline():
                conn.execute("SELECT %s::int", [4])
                conn.execute("PGPOOL SHOW nosuch", binary=True)
                conn.execute("SELECT %s::int", [5])
        assert conn.execute("SELECT %s::int", [6]).fetchone() == (6,)
