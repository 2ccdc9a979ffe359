"""The metrics port of a real twistd: /metrics scraped during a pgbench run, /healthz, /readyz
(503 while the primary is unreachable), unknown paths, and a port it cannot bind."""

from __future__ import annotations

import re
import shutil
import subprocess
import time
import uuid

import pytest

from pgtwist.dev import devcluster as dc

from .conftest import backends, start_pgtwist
from .metricsutil import Forwarder, request, scrape, value

pytestmark = pytest.mark.integration

# Every family pgpool2_exporter exports (reference §8); a dashboard built on it finds them.
PGPOOL2_FAMILIES = (
    ["pgpool2_up", "pgpool2_last_scrape_duration_seconds", "pgpool2_scrapes",
     "pgpool2_last_scrape_error",
     "pgpool2_pool_nodes_status", "pgpool2_pool_nodes_select_cnt",
     "pgpool2_pool_nodes_replication_delay"]
    + [f"pgpool2_pool_backend_stats_{c}" for c in (
        "status", "select_cnt", "insert_cnt", "update_cnt", "delete_cnt", "ddl_cnt",
        "other_cnt", "panic_cnt", "fatal_cnt", "error_cnt")]
    + [f"pgpool2_pool_health_check_stats_{c}" for c in (
        "status", "total_count", "success_count", "fail_count", "skip_count", "retry_count",
        "average_retry_count", "max_retry_count", "max_duration", "min_duration",
        "average_duration")]
    + [f"pgpool2_pool_cache_{c}" for c in (
        "num_cache_hits", "num_selects", "cache_hit_ratio", "num_hash_entries",
        "used_hash_entries", "num_cache_entries", "used_cache_entries_size",
        "free_cache_entries_size", "fragment_cache_entries_size")]
    + ["pgpool2_frontend_total", "pgpool2_frontend_used", "pgpool2_frontend_used_ratio",
       "pgpool2_backend_total", "pgpool2_backend_used", "pgpool2_backend_used_ratio",
       "pgpool2_backend_by_process_total", "pgpool2_backend_by_process_used",
       "pgpool2_backend_by_process_used_ratio"]
)
OWN_FAMILIES = (
    "pgtwist_query_duration_seconds", "pgtwist_transaction_duration_seconds",
    "pgtwist_pool_checkout_duration_seconds", "pgtwist_routing_decisions",
    "pgtwist_stickiness_decisions", "pgtwist_read_consistency_reads",
    "pgtwist_node_replication_lag_bytes", "pgtwist_pool_links", "pgtwist_pool_waiters",
    "pgtwist_prepared_statement_cache", "pgtwist_pins", "pgtwist_auth_failures",
)


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} not found on PATH (install the PostgreSQL client package)")
    return path


def _metrics_daemon(pgtwist_factory, replica_weight=1, **extra):
    port = dc.free_port()
    pg = pgtwist_factory({"metrics_port": port, "metrics_listen_addresses": dc.HOST, **extra},
                         replica_weight=replica_weight)
    assert dc.wait_listening(port, timeout=10), "the metrics port did not open"
    return pg, port


@pytest.fixture(scope="module")
def bench_db(cluster):
    name = f"metrics_bench_{uuid.uuid4().hex[:8]}"
    cluster.psql(f"CREATE DATABASE {name}")
    proc = subprocess.run([_tool("pgbench"), "-i", "-s", "1", "-q", "-h", cluster.host, "-p",
                           str(cluster.primary_port), "-U", "postgres", name],
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    try:
        yield name
    finally:
        cluster.psql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def test_scrape_during_pgbench(cluster, pgtwist_factory, bench_db):
    # Reads balanced to the replica alone (primary weight 0), so node 1 surely gets some.
    pg, port = _metrics_daemon(pgtwist_factory, read_consistency="none",
                               backends=backends(cluster, primary_weight=0))
    run = subprocess.Popen(
        [_tool("pgbench"), "-n", "-c", "4", "-j", "2", "-T", "6",
         "-b", "select-only@5", "-b", "simple-update@1",
         "-h", pg.host, "-p", str(pg.port), "-U", "postgres", bench_db],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        time.sleep(2.0)
        first = scrape(port)
        time.sleep(2.5)
        second = scrape(port)
        out, _ = run.communicate(timeout=60)
    finally:
        if run.poll() is None:
            run.kill()
    assert run.returncode == 0, out
    processed = re.search(r"number of transactions actually processed: (\d+)", out)
    assert processed and int(processed[1]) > 0, out
    for family in [*PGPOOL2_FAMILIES, *OWN_FAMILIES]:
        assert family in second, f"{family} missing from /metrics"
    # The run moves the latency histograms and the routing counters between two scrapes.
    for family in ("pgtwist_query_duration_seconds", "pgtwist_transaction_duration_seconds"):
        assert value(second, family) > value(first, family) > 0, family
    assert value(second, "pgtwist_routing_decisions", node=1, target="node") > \
        value(first, "pgtwist_routing_decisions", node=1, target="node") > 0
    assert value(second, "pgtwist_routing_decisions", node=0) > \
        value(first, "pgtwist_routing_decisions", node=0) > 0
    # Reads balanced to the replica are its select_cnt in pgpool2_exporter's terms too.
    assert value(second, "pgpool2_pool_nodes_select_cnt", port=pg_port(second, 1)) > 0
    assert value(second, "pgpool2_scrapes") == value(first, "pgpool2_scrapes") + 1
    assert value(second, "pgpool2_up") == 1
    assert value(second, "pgtwist_ready") == 1


def pg_port(page: dict, node: int) -> str:
    """The port label of ``node`` (pgpool2_exporter labels nodes by hostname and port)."""
    for _name, labels, _v in page["pgtwist_node_up"]:
        if labels["node"] == str(node):
            return labels["port"]
    raise AssertionError(f"node {node} not in pgtwist_node_up")


def test_probes_and_unknown_paths(pgtwist_factory):
    pg, port = _metrics_daemon(pgtwist_factory)
    status, body, _ = request(port, "/healthz")
    assert (status, body) == (200, "ok\n")
    status, body, _ = _until(lambda: request(port, "/readyz"), 200)
    assert status == 200 and body.startswith("ready: the primary is node 0"), body
    for path in ("/", "/nope", "/metrics/extra", "/healthz/x", "/metrics.json"):
        status, body, _ = request(port, path)
        assert status == 404, (path, status, body)
    status, _, _ = request(port, "/metrics", method="POST")
    assert status == 405
    # The daemon still serves clients after all that.
    assert dc.wait_listening(pg.port, timeout=1)


def _until(call, status, timeout=15.0):
    deadline = time.monotonic() + timeout
    while True:
        got = call()
        if got[0] == status or time.monotonic() > deadline:
            return got
        time.sleep(0.2)


def test_readyz_follows_the_primary(cluster, pgtwist_factory):
    """503 while the cluster model holds the primary unreachable (its health check fails),
    200 again once it answers; /healthz stays 200 throughout."""
    forward = Forwarder(cluster.primary_port)
    nodes = [{"hostname": dc.HOST, "port": forward.port, "weight": 1,
              "flag": "ALWAYS_PRIMARY|DISALLOW_TO_FAILOVER"}]
    extra = {"backends": nodes, "health_check_period": 1, "health_check_timeout": 2,
             "health_check_max_retries": 0, "health_check_user": "postgres"}
    try:
        pg, port = _metrics_daemon(pgtwist_factory, **extra)
        assert _until(lambda: request(port, "/readyz"), 200)[0] == 200
        forward.close()
        status, body, _ = _until(lambda: request(port, "/readyz"), 503)
        assert status == 503 and "is down" in body, body
        assert request(port, "/healthz")[0] == 200
        page = scrape(port)
        assert value(page, "pgtwist_ready") == 0
        forward = Forwarder(cluster.primary_port, port=forward.port)  # the primary is back
        status, body, _ = _until(lambda: request(port, "/readyz"), 200)
        assert status == 200, body
    finally:
        forward.close()


def test_metrics_port_in_use_names_the_key(cluster, tmp_path):
    port = dc.free_port()
    import socket

    with socket.socket() as taken:
        taken.bind((dc.HOST, port))
        taken.listen(1)
        with pytest.raises(RuntimeError) as failed:
            start_pgtwist(cluster, tmp_path / "pg", extra={
                "metrics_port": port, "metrics_listen_addresses": dc.HOST})
    assert f"metrics_port: cannot listen on {dc.HOST}:{port}" in str(failed.value)


def test_config_errors_name_the_key(cluster, tmp_path):
    with pytest.raises(RuntimeError) as failed:
        start_pgtwist(cluster, tmp_path / "pg", extra={
            "pcp_port": 9898, "metrics_port": 9898,
            "metrics_listen_addresses": "not-an-address"})
    text = str(failed.value)
    assert "metrics_port: must differ from pcp_port (9898)" in text
    assert "metrics_listen_addresses: 'not-an-address' is not '*', 'localhost' or an IP " \
           "address" in text
