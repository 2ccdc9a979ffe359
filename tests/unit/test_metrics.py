"""pgtwist's own metrics: the counters (pgtwist.metrics.stats), the families built from a
literal Snapshot (pgtwist.metrics.collector), and the counters a real session fills
(a real Proxy and Relay over scripted servers, pgtwist.testing)."""

from __future__ import annotations

import math

from prometheus_client import generate_latest
from prometheus_client.core import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from pgtwist.metrics import stats as st
from pgtwist.metrics.collector import own_families
from pgtwist.metrics.snapshot import NodeSample, Snapshot, readiness, take
from pgtwist.routing.values import both, node, primary
from pgtwist.testing import ScriptedCluster
from pgtwist.wire import codes
from pgtwist.wire import messages as m

IDLE, BLOCK = codes.TXN_IDLE, codes.TXN_BLOCK


def _page(families) -> dict:
    """{sample name: [(labels, value)...]} of the exposition of ``families``."""

    class Fixed:
        def collect(self):
            return list(families)

    registry = CollectorRegistry(auto_describe=False)
    registry.register(Fixed())
    text = generate_latest(registry).decode()
    out: dict = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out.setdefault(s.name, []).append((s.labels, s.value))
    return out


# -- the counters ---------------------------------------------------------------------------
def test_histogram_buckets_are_upper_bounds_inclusive_and_cumulative():
    h = st.Histogram((0.001, 0.01, 0.1))
    for v in (0.0005, 0.001, 0.002, 0.05, 0.5, 7.0):
        h.observe(v)
    assert h.counts == [2, 1, 1, 2]
    assert h.cumulative() == [("0.001", 2), ("0.01", 3), ("0.1", 4), ("+Inf", 6)]
    assert h.count == 6
    assert math.isclose(h.total, 0.0005 + 0.001 + 0.002 + 0.05 + 0.5 + 7.0)


def test_routes_fold_numbers_and_share_one_cell():
    s = st.Stats()
    s.route(primary("primary: lag 1200 bytes, over the delay threshold").by("weighted_balancer"), 0)
    s.route(primary("primary: lag 98 bytes, over the delay threshold").by("weighted_balancer"), 0)
    s.route(primary("primary: lag 98 bytes, over the delay threshold").by("weighted_balancer"), 0)
    s.route(node(1, "standby: read, session LB node 1").by("weighted_balancer"), 1)
    s.route(both("both: BEGIN goes to the primary and the load-balance node").by("statement"), 0)
    assert s.route_cells == {
        ("primary", "weighted_balancer", "primary: lag N bytes, over the delay threshold", 0): [3],
        ("node", "weighted_balancer", "standby: read, session LB node N", 1): [1],
        ("both", "statement", "both: BEGIN goes to the primary and the load-balance node", 0):
            [1],
    }


def test_route_label_sets_are_capped(monkeypatch):
    monkeypatch.setattr(st, "ROUTE_LABELS_MAX", 3)
    s = st.Stats()
    for table in ("a", "b", "c", "d", "e"):
        s.route(primary(f"primary: {table} is a temporary table").by("temp_tables"), 0)
    assert len(s.route_cells) == 4
    assert s.route_cells[("primary", "temp_tables", st.OTHER, 0)] == [2]


def test_checkout_timing_only_when_timed():
    from twisted.internet import defer

    untimed = st.Stats()
    d = defer.Deferred()
    assert untimed.timed_checkout(d) is d and untimed.checkout is None
    now = [10.0]
    timed = st.Stats(timed=True, clock=lambda: now[0])
    timed.timed_checkout(defer.succeed("link"))
    waiting = defer.Deferred()
    timed.timed_checkout(waiting)
    now[0] = 10.02
    waiting.callback("link")
    assert timed.checkout.count == 2
    assert math.isclose(timed.checkout.total, 0.02)


# -- families from a literal snapshot -----------------------------------------------------------
def _snapshot() -> Snapshot:
    q = st.Histogram((0.001, 0.01))
    for v in (0.0004, 0.003, 0.02):
        q.observe(v)
    return Snapshot(
        version="0.1.0", pool_mode="transaction",
        nodes=[NodeSample(0, "db0", 5432, "primary", "up", "up", 0.0, None, 0x3000060),
               NodeSample(1, "db1", 5433, "standby", "down", "down", 4096.0, None, 0x3000000),
               NodeSample(2, "db2", 5434, "standby", "up", "up", None, 1.5, None)],
        query=q, transaction=None, checkout=None,
        routes={("node", "weighted_balancer", "standby: read, session LB node N", 1): 7,
                ("primary", "stickiness", "primary: write earlier in the session", 0): 3,
                ("reject", "guard", "no DDL here", None): 1},
        auth_failures={"md5": 2, "pool_hba": 1},
        pool_nodes={0: {"idle": 2, "busy": 3, "connecting": 1, "waiting": 4},
                    1: {"idle": 1, "busy": 0, "connecting": 0, "waiting": 0}},
        pool_limits={0: 8, 1: None},
        pool_counters={"created": 6, "reused": 40},
        pooling_counters={"statements_parsed": 5, "statements_reused": 95,
                          "statements_evicted": 1, "pinned": 2, "pinned_listen": 1,
                          "pinned_temp_table": 1, "standby_read_only_retries": 0},
        clients=25, clients_max=100, clients_waiting=0, connections=26, sessions=25,
        consistency={"replica_fresh": 9, "waited_replica": 2, "primary": 1, "captures": 12,
                     "settled_by_poll": 3},
        ready=True, draining=False,
    )


def test_own_families_from_literal_values():
    page = _page(own_families(_snapshot()))
    assert page["pgtwist_info"] == [({"version": "0.1.0", "pool_mode": "transaction"}, 1.0)]
    assert page["pgtwist_query_duration_seconds_bucket"] == [
        ({"le": "0.001"}, 1.0), ({"le": "0.01"}, 2.0), ({"le": "+Inf"}, 3.0)]
    assert page["pgtwist_query_duration_seconds_count"] == [({}, 3.0)]
    assert "pgtwist_transaction_duration_seconds_count" not in page  # timing off
    assert ({"target": "node", "policy": "weighted_balancer",
             "reason": "standby: read, session LB node N", "node": "1"}, 7.0) \
        in page["pgtwist_routing_decisions_total"]
    assert ({"target": "reject", "policy": "guard", "reason": "no DDL here", "node": ""},
            1.0) in page["pgtwist_routing_decisions_total"]
    assert page["pgtwist_stickiness_decisions_total"] == [
        ({"reason": "primary: write earlier in the session"}, 3.0)]
    assert dict((lab["outcome"], v) for lab, v in page["pgtwist_read_consistency_reads_total"]) \
        == {"replica_fresh": 9, "waited_replica": 2, "primary": 1}
    lag = {lab["node"]: v for lab, v in page["pgtwist_node_replication_lag_bytes"]}
    assert lag == {"0": 0.0, "1": 4096.0}
    assert page["pgtwist_node_replication_lag_seconds"] == [
        ({"node": "2", "hostname": "db2", "port": "5434", "role": "standby"}, 1.5)]
    assert {lab["node"]: v for lab, v in page["pgtwist_node_up"]} == {"0": 1, "1": 0, "2": 1}
    assert ({"node": "0", "state": "busy"}, 3.0) in page["pgtwist_pool_links"]
    assert page["pgtwist_pool_waiters"] == [({"node": "0"}, 4.0), ({"node": "1"}, 0.0)]
    assert page["pgtwist_pool_saturation"] == [({"node": "0"}, 0.5)]  # (3 + 1) / 8
    assert {lab["result"]: v for lab, v in page["pgtwist_prepared_statement_cache_total"]} == \
        {"hit": 95, "miss": 5, "evicted": 1}
    assert {lab["reason"]: v for lab, v in page["pgtwist_pins_total"]} == \
        {"listen": 1, "temp_table": 1}
    assert {lab["method"]: v for lab, v in page["pgtwist_auth_failures_total"]} == \
        {"md5": 2, "pool_hba": 1}
    assert page["pgtwist_clients_saturation"] == [({}, 0.25)]
    assert page["pgtwist_ready"] == [({}, 1.0)]


# -- what a real session counts -----------------------------------------------------------------
def _session(**config):
    cluster = ScriptedCluster(nodes=2, read_consistency="none", metrics_port=9187, **config)
    relay, client = cluster.client()
    relay.client_data(m.startup_message({"user": "app", "database": "app"}))
    assert client.value().endswith(m.ready_for_query(IDLE))
    client.clear()
    return cluster, relay, client


def test_a_session_counts_routes_and_times_statements_and_transactions():
    cluster, relay, _client = _session(load_balance_mode=False)
    stats = cluster.proxy.stats
    primary_server = cluster.server(0)
    for sql, tag, status in (("SELECT 1", "SELECT 1", IDLE), ("BEGIN", "BEGIN", BLOCK),
                             ("INSERT INTO t VALUES (1)", "INSERT 0 1", BLOCK),
                             ("COMMIT", "COMMIT", IDLE)):
        relay.client_data(m.query(sql))
        assert primary_server.received() == m.query(sql)
        primary_server.reply(m.command_complete(tag), m.ready_for_query(status))
    assert stats.query.count == 4           # four client sync points answered
    assert stats.transaction.count == 1     # BEGIN .. COMMIT
    snap = take(cluster.proxy)
    assert snap.routes == {
        ("primary", "statement", "primary: load_balance_mode is off", 0): 4}
    assert snap.checkout.count == 1 and snap.sessions == 1


def test_latency_timing_is_off_without_a_metrics_port():
    cluster = ScriptedCluster(nodes=1)
    stats = cluster.proxy.stats
    assert (stats.query, stats.transaction, stats.checkout) == (None, None, None)
    relay, client = cluster.client()
    relay.client_data(m.startup_message({"user": "app", "database": "app"}))
    relay.client_data(m.query("SELECT 1"))
    cluster.server(0).reply(m.command_complete("SELECT 1"), m.ready_for_query(IDLE))
    assert relay.ordering.latency is None
    assert sum(c[0] for c in stats.route_cells.values()) == 1  # counted all the same


def test_a_refused_client_counts_an_auth_failure_by_method(tmp_path):
    hba = tmp_path / "pool_hba.conf"
    hba.write_text("host all app 127.0.0.1/32 md5\nhost all all 127.0.0.1/32 reject\n")
    cluster = ScriptedCluster(nodes=1, enable_pool_hba=True, pool_hba_file=str(hba))
    for user, password in (("app", "wrong"), ("other", None)):
        relay, client = cluster.client()
        relay.client_data(m.startup_message({"user": user, "database": "app"}))
        if password is not None:
            relay.client_data(m.frame(codes.PASSWORD, password.encode() + b"\0"))
        assert b"FATAL" in client.value()
    assert cluster.proxy.stats.auth_failures == {"md5": 1, "pool_hba": 1}


def test_readiness_reads_the_cluster_model():
    cluster = ScriptedCluster(nodes=2)
    proxy = cluster.proxy
    assert readiness(proxy) == (True, "ready: the primary is node 0 (127.0.0.1:5432)")
    proxy.cluster.nodes[0].pg_status = "down"
    assert readiness(proxy) == (False, "the primary node 0 (127.0.0.1:5432) is down")
    proxy.cluster.nodes[0].pg_status = "up"
    proxy.cluster.nodes[0].role = "unknown"
    assert readiness(proxy)[0] is False and "no primary known" in readiness(proxy)[1]
    proxy.cluster.nodes[0].role = "primary"
    proxy.draining = True
    assert readiness(proxy) == (
        False, "draining: pgtwist is shutting down and accepts no new clients")


def test_a_balanced_read_is_counted_on_its_standby():
    cluster, relay, client = _session(weights=[0, 1])
    relay.client_data(m.query("SELECT 1"))
    standby = cluster.server(1)
    assert standby.received() == m.query("SELECT 1")
    standby.reply(m.command_complete("SELECT 1"), m.ready_for_query(IDLE))
    nodes = {(target, n): c for (target, _p, _r, n), c in take(cluster.proxy).routes.items()}
    assert nodes == {("node", 1): 1}


# -- configuration -------------------------------------------------------------------------------
def test_metrics_config_errors_name_the_key():
    import pytest

    from pgtwist.config import ConfigError, parse_config

    def errors(**extra) -> str:
        with pytest.raises(ConfigError) as failed:
            parse_config({"backends": [{"hostname": "db"}], **extra}, env={},
                         check_files=False)
        return str(failed.value)

    assert "metrics_port: must differ from pcp_port (9898)" in errors(metrics_port=9898)
    assert "metrics_port: must differ from port (9999)" in errors(metrics_port=9999)
    assert "metrics_port: expected" in errors(metrics_port="x")
    text = errors(metrics_port=9719, metrics_listen_addresses="127.0.0.1, db.example, ::1")
    assert "metrics_listen_addresses: 'db.example' is not '*', 'localhost' or an IP " \
           "address" in text
    assert "metrics_listen_addresses: expected '*', 'localhost' or IP addresses" in errors(
        metrics_port=9719, metrics_listen_addresses=" ")
    ok = parse_config({"backends": [{"hostname": "db"}], "metrics_port": 9719,
                       "metrics_listen_addresses": "*"}, env={}, check_files=False)
    assert ok.params["metrics_listen_addresses"] == "*"
    # Off: the addresses are not looked at.
    parse_config({"backends": [{"hostname": "db"}], "metrics_listen_addresses": "nonsense"},
                 env={}, check_files=False)
