"""Health checks against the real cluster: the replica is stopped under a pgbench -S load,
marked down by the health check, started again and marked up (auto_failback).

Each test leaves the replica running and streaming (other tests share the cluster).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
import uuid

import psycopg
import pytest

from pgtwist.dev import devcluster as dc
from tests.integration.conftest import backends

pytestmark = pytest.mark.integration

PERIOD, TIMEOUT = 1, 1
REPLICA = "replica1"


def _needs_node_control(cluster):
    if not hasattr(cluster, "stop_node"):
        pytest.skip("this cluster backend cannot stop single nodes")


def health_config(cluster, **extra) -> dict:
    nodes = backends(cluster, primary_weight=1, replica_weight=1)
    nodes[1]["flag"] = "ALLOW_TO_FAILOVER"
    nodes[1]["application_name"] = "pgtwist_replica1"   # the replica's cluster_name
    return {"backends": nodes, "health_check_period": PERIOD, "health_check_timeout": TIMEOUT,
            "health_check_max_retries": 0, "health_check_user": "postgres",
            "auto_failback": True, "auto_failback_interval": 1, "sr_check_period": 1,
            **extra}


def nodes(pg) -> dict[str, dict[str, str]]:
    with psycopg.connect(pg.dsn(), autocommit=True, connect_timeout=5) as conn:
        cur = conn.execute("SHOW pool_nodes")
        names = [c.name for c in cur.description]
        return {r[0]: dict(zip(names, r, strict=True)) for r in cur.fetchall()}


def wait_status(pg, node: str, status: str, timeout: float) -> float:
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if nodes(pg)[node]["status"] == status:
            return time.monotonic() - start
        time.sleep(0.1)
    pytest.fail(f"node {node} not {status} after {timeout} s: {nodes(pg)[node]}")


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} not found on PATH")
    return path


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("PGPASSWORD", None)
    return env


def pgbench(pg, db, *args, seconds: int) -> list[str]:
    return [_tool("pgbench"), "-S", "-n", "-T", str(seconds), *args, "-h", pg.host,
            "-p", str(pg.port), "-U", "postgres", db]


def bench_errors(out: str) -> list[str]:
    return [line for line in out.splitlines() if "error" in line.lower() or "abort" in line]


@pytest.fixture
def bench_db(cluster):
    name = f"pgtwist_health_{uuid.uuid4().hex[:8]}"
    cluster.psql(f"CREATE DATABASE {name}")
    proc = subprocess.run([_tool("pgbench"), "-i", "-s", "1", "-q", "-h", cluster.host, "-p",
                           str(cluster.primary_port), "-U", "postgres", name],
                          capture_output=True, text=True, env=_env(), timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    cluster.wait_replayed(30)
    try:
        yield name
    finally:
        cluster.psql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture
def replica_restored(cluster):
    _needs_node_control(cluster)
    yield
    if not _accepts(cluster.replica_ports[0]):
        cluster.start_node(REPLICA)
    cluster.wait_replayed(60)


def _accepts(port: int) -> bool:
    return dc.wait_listening(port, timeout=0)


def test_replica_killed_under_pgbench_load(cluster, pgtwist_factory, bench_db, replica_restored):
    pg = pgtwist_factory(health_config(cluster, failover_on_backend_error=False))
    replica_port = cluster.replica_ports[0]
    # A session that reads on the replica and is idle when the replica dies.
    idle = psycopg.connect(pg.dsn(dbname=bench_db), autocommit=True, connect_timeout=5)
    for _ in range(20):
        if idle.execute("SELECT inet_server_port()").fetchone()[0] == replica_port:
            break
        idle.close()
        idle = psycopg.connect(pg.dsn(dbname=bench_db), autocommit=True, connect_timeout=5)
    else:
        pytest.fail("no session drew the replica in 20 tries at weights 1:1")
    assert wait_status(pg, "1", "up", 10) >= 0
    # Rate-limited load: most clients are between statements when the replica dies.
    load = subprocess.Popen(pgbench(pg, bench_db, "-c", "8", "-j", "2", "-R", "400", "-P", "1",
                                    seconds=16),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=_env())
    try:
        time.sleep(3)
        before = int(nodes(pg)["1"]["select_cnt"])
        assert before > 0
        cluster.stop_node(REPLICA)
        took = wait_status(pg, "1", "down", PERIOD + TIMEOUT + 5)
        print(f"replica marked down {took:.2f} s after it stopped")
        assert took <= PERIOD + TIMEOUT + 0.5
        assert nodes(pg)["1"]["pg_status"] == "down"
        # The idle session goes on, its reads now on the primary.
        assert idle.execute("SELECT inet_server_port()").fetchone()[0] == cluster.primary_port
        # New sessions while it is down: not a single error.
        down_run = subprocess.run(pgbench(pg, bench_db, "-c", "4", "-j", "2", seconds=2),
                                  capture_output=True, text=True, env=_env(), timeout=60)
        assert down_run.returncode == 0 and not bench_errors(down_run.stderr), down_run.stderr
        time.sleep(1)
        cluster.start_node(REPLICA)
        took = wait_status(pg, "1", "up", 30)
        print(f"replica marked up {took:.2f} s after it started")
        out, _ = load.communicate(timeout=60)
    finally:
        if load.poll() is None:
            load.kill()
            load.communicate()
        idle.close()
    errors = bench_errors(out)
    print(f"pgbench under the kill: {len(errors)} error line(s)", *errors, sep="\n  ")
    # Only statements in flight on the replica when it died may fail: each such client
    # reports the replica's connection loss, and pgbench ends that client there.
    aborted = [e for e in errors if "aborted" in e]
    for line in errors:
        assert "aborted" in line or "server closed the connection" in line \
            or "Run was aborted" in line or "terminating connection" in line, out
    assert len(aborted) < 8, out   # most clients were idle between statements: they go on
    processed = re.search(r"number of transactions actually processed: (\d+)", out)
    assert processed and int(processed[1]) > 3000, out
    # Reads return to the replica.
    after = int(nodes(pg)["1"]["select_cnt"])
    up_run = subprocess.run(pgbench(pg, bench_db, "-c", "4", "-j", "2", seconds=2),
                            capture_output=True, text=True, env=_env(), timeout=60)
    assert up_run.returncode == 0 and not bench_errors(up_run.stderr), up_run.stderr
    # (4 sessions at weights 1:1 all draw the primary 1 time in 16: draw more if needed.)
    for _ in range(30):
        if int(nodes(pg)["1"]["select_cnt"]) > after:
            break
        with psycopg.connect(pg.dsn(dbname=bench_db), autocommit=True, connect_timeout=5) as c:
            c.execute("SELECT abalance FROM pgbench_accounts WHERE aid = 1").fetchone()
    assert int(nodes(pg)["1"]["select_cnt"]) > after, (nodes(pg), pg.log_text()[-6000:])
    assert "marked down: health check failed" in pg.log_text()
    assert "marked up (auto_failback)" in pg.log_text()


def test_failover_on_backend_error_marks_down_at_once(cluster, pgtwist_factory,
                                                       replica_restored):
    """A session losing its replica link detaches the node before any health check runs."""
    pg = pgtwist_factory(health_config(cluster, health_check_period=30, sr_check_period=0))
    replica_port = cluster.replica_ports[0]
    for _ in range(20):
        conn = psycopg.connect(pg.dsn(), autocommit=True, connect_timeout=5)
        if conn.execute("SELECT inet_server_port()").fetchone()[0] == replica_port:
            break
        conn.close()
    else:
        pytest.fail("no session drew the replica in 20 tries at weights 1:1")
    try:
        cluster.stop_node(REPLICA)
        time.sleep(0.5)
        assert conn.execute("SELECT inet_server_port()").fetchone()[0] == cluster.primary_port
        assert nodes(pg)["1"]["status"] == "down"
        assert "failover_on_backend_error" in pg.log_text()
    finally:
        conn.close()
        cluster.start_node(REPLICA)


def test_disallow_to_failover_keeps_the_node_up(cluster, pgtwist_factory, replica_restored):
    config = health_config(cluster)
    config["backends"][1]["flag"] = "DISALLOW_TO_FAILOVER"
    pg = pgtwist_factory(config)
    cluster.stop_node(REPLICA)
    try:
        deadline = time.monotonic() + 5
        while nodes(pg)["1"]["pg_status"] != "down":
            assert time.monotonic() < deadline, nodes(pg)
            time.sleep(0.1)
        assert nodes(pg)["1"]["status"] != "down"
        # Reads of new sessions still work: a session that cannot reach its load-balance
        # node reads on the primary.
        for _ in range(6):
            with psycopg.connect(pg.dsn(), autocommit=True, connect_timeout=5) as conn:
                assert conn.execute("SELECT inet_server_port()").fetchone()[0] \
                    == cluster.primary_port
    finally:
        cluster.start_node(REPLICA)
    assert "DISALLOW_TO_FAILOVER: not marked down" in pg.log_text()
