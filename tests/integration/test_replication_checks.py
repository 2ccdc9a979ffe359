"""Replication checks against the real cluster: SHOW pool_nodes' replication columns, a
byte delay over delay_threshold moving reads to the primary, and Aurora's per-reader lag
from a simulated ``aurora_replica_status()``.

Each test leaves the replica replaying and the primary without the simulated function.
"""

from __future__ import annotations

import time

import psycopg
import pytest

from tests.integration.conftest import backends

pytestmark = pytest.mark.integration

APP_NAME = "pgtwist_replica1"   # the replica's cluster_name, its walreceiver's name


def config(cluster, **extra) -> dict:
    nodes = backends(cluster, primary_weight=0, replica_weight=1)
    nodes[1]["application_name"] = APP_NAME
    return {"backends": nodes, "sr_check_period": 1, **extra}


def pool_nodes(pg) -> dict[str, dict[str, str]]:
    with psycopg.connect(pg.dsn(), autocommit=True, connect_timeout=5) as conn:
        cur = conn.execute("SHOW pool_nodes")
        names = [c.name for c in cur.description]
        return {r[0]: dict(zip(names, r, strict=True)) for r in cur.fetchall()}


def wait_for(pg, test, timeout: float = 10):
    deadline = time.monotonic() + timeout
    while True:
        rows = pool_nodes(pg)
        if test(rows["1"]):
            return rows["1"]
        if time.monotonic() > deadline:
            pytest.fail(f"pool_nodes never satisfied the test: {rows}")
        time.sleep(0.2)


def read_port(pg) -> int:
    with psycopg.connect(pg.dsn(), autocommit=True, connect_timeout=5) as conn:
        return conn.execute("SELECT inet_server_port()").fetchone()[0]


def test_pool_nodes_shows_the_replication_state(cluster, pgtwist_factory):
    assert cluster.psql("SELECT application_name FROM pg_stat_replication") == APP_NAME
    pg = pgtwist_factory(config(cluster))
    row = wait_for(pg, lambda r: r["replication_state"] == "streaming")
    assert row["replication_sync_state"] == "async"
    assert row["replication_delay"].isdigit()   # bytes
    primary = pool_nodes(pg)["0"]
    assert (primary["replication_state"], primary["replication_delay"]) == ("", "0")


def test_a_byte_delay_over_the_threshold_moves_reads_to_the_primary(cluster, pgtwist_factory):
    pg = pgtwist_factory(config(cluster, delay_threshold=10000))
    replica = cluster.replica_ports[0]
    wait_for(pg, lambda r: r["replication_state"] == "streaming")
    assert read_port(pg) == replica
    cluster.psql("SELECT pg_wal_replay_pause()", port=replica)
    try:
        cluster.psql("CREATE TABLE pgtwist_sr_delay AS SELECT g FROM generate_series(1, 20000) g")
        row = wait_for(pg, lambda r: int(r["replication_delay"]) > 10000)
        print(f"replica {row['replication_delay']} bytes behind")
        assert read_port(pg) == cluster.primary_port
    finally:
        cluster.psql("SELECT pg_wal_replay_resume()", port=replica)
        cluster.psql("DROP TABLE IF EXISTS pgtwist_sr_delay")
    cluster.wait_replayed(30)
    wait_for(pg, lambda r: int(r["replication_delay"]) <= 10000)
    assert read_port(pg) == replica


AURORA_FUNCTION = f"""
CREATE TABLE public.pgtwist_aurora_lag (lag real);
INSERT INTO public.pgtwist_aurora_lag VALUES (5000);
CREATE FUNCTION public.aurora_replica_status(
    OUT server_id text, OUT session_id text, OUT replica_lag_in_msec real)
RETURNS SETOF record LANGUAGE sql AS $$
    SELECT 'writer-instance', 'MASTER_SESSION_ID', NULL::real
    UNION ALL SELECT '{APP_NAME}', 'aurora-session-1', lag FROM public.pgtwist_aurora_lag
$$;
"""


def test_aurora_replica_status_gives_each_readers_lag(cluster, pgtwist_factory):
    cluster.psql(AURORA_FUNCTION)
    try:
        cluster.wait_replayed(30)
        pg = pgtwist_factory(config(cluster, delay_threshold_by_time=1000,
                                    log_standby_delay="always"))
        row = wait_for(pg, lambda r: r["replication_delay"] == "5.000000")
        assert read_port(pg) == cluster.primary_port   # 5 s > 1000 ms
        cluster.psql("UPDATE public.pgtwist_aurora_lag SET lag = 20")
        row = wait_for(pg, lambda r: r["replication_delay"] == "0.020000")
        assert read_port(pg) == cluster.replica_ports[0]
        assert "replication of node 1 is behind 0.020000" in pg.log_text()
        print(f"aurora lag shown as {row['replication_delay']} s")
    finally:
        cluster.psql("DROP FUNCTION IF EXISTS public.aurora_replica_status()")
        cluster.psql("DROP TABLE IF EXISTS public.pgtwist_aurora_lag")
