"""pgpool2_exporter's rules (reference §8) applied to literal SHOW rows, as Pgpool-II prints
them: names, labels, status words, NaN for NULL, the frontend/backend counts and ratios."""

from __future__ import annotations

import math

from pgtwist.metrics.pgpool import exporter_families, number

NODES = (
    ["node_id", "hostname", "port", "status", "pg_status", "lb_weight", "role", "pg_role",
     "select_cnt", "load_balance_node", "replication_delay", "replication_state",
     "replication_sync_state", "last_status_change"],
    [["0", "db0", "5432", "up", "up", "0.500000", "primary", "primary", "12", "false", "0",
      "", "", "2026-12-06 10:00:00"],
     ["1", "db1", "5433", "down", "down", "0.500000", "standby", "standby", "30", "true",
      "0.250000", "streaming", "async", "2026-12-06 10:00:01"]],
)
BACKEND_STATS = (
    ["node_id", "hostname", "port", "status", "role", "select_cnt", "insert_cnt", "update_cnt",
     "delete_cnt", "ddl_cnt", "other_cnt", "panic_cnt", "fatal_cnt", "error_cnt"],
    [["0", "db0", "5432", "waiting", "primary", "12", "3", "2", "1", "0", "7", "0", "0", "1"]],
)
PROCESSES = (
    ["pool_pid", "start_time", "client_connection_count", "database", "username",
     "backend_connection_time", "pool_counter", "status"],
    [["101", "t", "0", "app", "alice", "t", "1", "Idle"],
     ["102", "t", "0", "app", "alice", "t", "1", "Idle"],
     ["103", "t", "0", "", "", "", "0", "Wait for connection"],
     ["104", "t", "0", "reports", "bob", "t", "1", "Idle"]],
)
POOLS = (
    ["pool_pid", "start_time", "client_connection_count", "pool_id", "backend_id", "database",
     "username", "backend_connection_time", "client_connection_time",
     "client_disconnection_time", "client_idle_duration", "majorversion", "minorversion",
     "pool_counter", "pool_backendpid", "pool_connected", "status", "load_balance_node",
     "client_host", "client_port", "statement"],
    [["101", "t", "0", "0", "0", "app", "alice"] + [""] * 14,
     ["101", "t", "0", "0", "1", "app", "alice"] + [""] * 14,
     ["102", "t", "0", "0", "0", "", ""] + [""] * 14,
     ["102", "t", "0", "0", "1", "", ""] + [""] * 14],
)


def _samples(tables) -> dict:
    out: dict = {}
    for family in exporter_families(tables):
        for s in family.samples:
            out.setdefault(s.name, []).append((s.labels, s.value))
    return out


def test_status_words_and_numbers_as_the_exporter_reads_them():
    assert [number(t, "status") for t in ("up", "waiting", "true", "down", "unused")] == \
        [1, 1, 1, 0, 0]
    assert number("0.250000") == 0.25 and number("12") == 12
    assert math.isnan(number(None)) and math.isnan(number("nan?"))


def test_pool_nodes_labels_and_values():
    got = _samples({"pool_nodes": NODES})
    db1 = {"hostname": "db1", "port": "5433", "role": "standby"}
    assert (db1, 0.0) in got["pgpool2_pool_nodes_status"]
    assert ({"hostname": "db0", "port": "5432", "role": "primary"}, 1.0) in \
        got["pgpool2_pool_nodes_status"]
    assert (db1, 30.0) in got["pgpool2_pool_nodes_select_cnt_total"]
    assert (db1, 0.25) in got["pgpool2_pool_nodes_replication_delay"]
    # node_id, lb_weight, last_status_change... are not exported
    assert set(got) == {"pgpool2_pool_nodes_status", "pgpool2_pool_nodes_select_cnt_total",
                        "pgpool2_pool_nodes_replication_delay"}


def test_backend_stats_are_counters_with_a_status_gauge():
    got = _samples({"pool_backend_stats": BACKEND_STATS})
    labels = {"hostname": "db0", "port": "5432", "role": "primary"}
    assert got["pgpool2_pool_backend_stats_status"] == [(labels, 1.0)]  # waiting = up
    assert got["pgpool2_pool_backend_stats_insert_cnt_total"] == [(labels, 3.0)]
    assert got["pgpool2_pool_backend_stats_error_cnt_total"] == [(labels, 1.0)]


def test_frontends_count_rows_with_database_and_username():
    got = _samples({"pool_processes": PROCESSES})
    assert got["pgpool2_frontend_total"] == [({}, 4.0)]
    assert sorted(got["pgpool2_frontend_used"], key=str) == [
        ({"username": "alice", "database": "app"}, 2.0),
        ({"username": "bob", "database": "reports"}, 1.0)]
    assert got["pgpool2_frontend_used_ratio"] == [({}, 0.75)]


def test_backends_count_slots_and_used_slots_per_process():
    got = _samples({"pool_pools": POOLS})
    assert got["pgpool2_backend_total"] == [({}, 4.0)]
    assert got["pgpool2_backend_used"] == [({}, 2.0)]
    assert got["pgpool2_backend_used_ratio"] == [({}, 0.5)]
    assert got["pgpool2_backend_by_process_total"] == [({"pool_pid": "101"}, 2.0),
                                                       ({"pool_pid": "102"}, 2.0)]
    assert got["pgpool2_backend_by_process_used"] == [
        ({"pool_pid": "101", "pool_id": "0", "backend_id": "0", "username": "alice",
          "database": "app"}, 1.0),
        ({"pool_pid": "101", "pool_id": "0", "backend_id": "1", "username": "alice",
          "database": "app"}, 1.0)]
    assert got["pgpool2_backend_by_process_used_ratio"] == [({"pool_pid": "101"}, 1.0),
                                                            ({"pool_pid": "102"}, 0.0)]


def test_null_values_are_nan_and_empty_tables_give_zero_ratios():
    cache = (["num_cache_hits", "num_selects", "cache_hit_ratio"], [[None, "0", "0.00"]])
    got = _samples({"pool_cache": cache, "pool_processes": (PROCESSES[0], [])})
    assert math.isnan(got["pgpool2_pool_cache_num_cache_hits"][0][1])
    assert got["pgpool2_frontend_used_ratio"] == [({}, 0.0)]
