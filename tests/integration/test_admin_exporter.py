"""pgpool2_exporter against a real twistd: every query it sends (reference §8), on one
simple-protocol connection as lib/pq sends them, parsed with the exporter's own rules.

The rules, from pgpool2_exporter.go: ``SHOW POOL_VERSION;`` is the ping and its
``pool_version`` column must match ``^(\\d+)(\\.\\d+)(\\.\\d+)?`` (pool_backend_stats and
pool_health_check_stats are only asked from 4.2.0 on); metric columns parse as floats
(``status``: up / waiting / true are 1, anything else 0); hostname, port and role are
labels; pool_processes counts rows and the rows with both database and username;
pool_pools counts rows with a pool_pid, rows with a username, both by pool_pid.
"""

from __future__ import annotations

import re
import struct
from collections import Counter

import pytest

from .adminutil import connect
from .conftest import backends
from .rawpg import RawClient, data_row, errors_of

pytestmark = pytest.mark.integration

VERSION = re.compile(r"^(\d+)(\.\d+)(\.\d+)?")
# namespace -> {column: "label" | "gauge" | "counter"}; unlisted columns are discarded
METRIC_MAPS = {
    "pool_nodes": {"hostname": "label", "port": "label", "role": "label", "status": "gauge",
                   "select_cnt": "counter", "replication_delay": "gauge"},
    "pool_backend_stats": {
        "hostname": "label", "port": "label", "role": "label", "status": "gauge",
        **{c: "counter" for c in ("select_cnt", "insert_cnt", "update_cnt", "delete_cnt",
                                  "ddl_cnt", "other_cnt", "panic_cnt", "fatal_cnt",
                                  "error_cnt")}},
    "pool_health_check_stats": {
        "hostname": "label", "port": "label", "role": "label", "status": "gauge",
        **{c: "gauge" for c in ("total_count", "success_count", "fail_count", "skip_count",
                                "retry_count", "average_retry_count", "max_retry_count",
                                "max_duration", "min_duration", "average_duration")}},
    "pool_cache": {c: "gauge" for c in (
        "num_cache_hits", "num_selects", "cache_hit_ratio", "num_hash_entries",
        "used_hash_entries", "num_cache_entries", "used_cache_entries_size",
        "free_cache_entries_size", "fragment_cache_entries_size")},
}


def columns_of(body: bytes) -> list[str]:
    (n,) = struct.unpack_from("!h", body)
    pos, names = 2, []
    for _ in range(n):
        end = body.index(b"\0", pos)
        names.append(body[pos:end].decode())
        (type_oid,) = struct.unpack_from("!I", body, end + 7)
        assert type_oid == 0  # as Pgpool-II: lib/pq reads every column as text
        pos = end + 1 + 18
    return names


def ask(client: RawClient, sql: str) -> list[dict[str, str]]:
    msgs = client.simple(sql)
    assert not errors_of(msgs), (sql, errors_of(msgs))
    (head,) = [body for code, body in msgs if code == "T"]
    names = columns_of(head)
    assert [code for code, _ in msgs][-2:] == ["C", "Z"]
    return [dict(zip(names, data_row(b), strict=True)) for code, b in msgs if code == "D"]


def to_float(value: str | None) -> float:
    if value is None:
        return float("nan")
    return float(value)   # Go's strconv.ParseFloat: "nan" is accepted, "" is an error


def metrics_of(namespace: str, rows: list[dict[str, str]]) -> dict[tuple, float]:
    mapping = METRIC_MAPS[namespace]
    out = {}
    for row in rows:
        labels = tuple(row[c] for c in ("hostname", "port", "role") if mapping.get(c) == "label")
        for column, usage in mapping.items():
            if usage == "label":
                continue
            value = row[column]
            if column == "status":
                number = 1.0 if value in ("up", "waiting", "true") else 0.0
            else:
                number = to_float(value)
            out[(f"pgpool2_{namespace}_{column}", labels)] = number
    return out


def scrape(client: RawClient, upper: bool) -> dict:
    def sql(name):
        return f"SHOW {name.upper() if upper else name};"

    (version_row,) = ask(client, "SHOW POOL_VERSION;")
    found = VERSION.match(version_row["pool_version"])
    assert found, version_row
    version = tuple(int(g.lstrip(".") or 0) for g in found.groups(default="0"))
    assert version >= (4, 2, 0)
    out = {}
    for namespace in ("pool_nodes", "pool_backend_stats", "pool_health_check_stats",
                      "pool_cache"):
        out.update(metrics_of(namespace, ask(client, sql(namespace))))
    processes = ask(client, sql("pool_processes"))
    out["pgpool2_frontend_total"] = len(processes)
    used = Counter((r["username"], r["database"]) for r in processes
                   if r["database"] and r["username"])
    out["pgpool2_frontend_used"] = dict(used)
    pools = ask(client, sql("pool_pools"))
    with_pid = [r for r in pools if r["pool_pid"]]
    out["pgpool2_backend_total"] = len(with_pid)
    out["pgpool2_backend_used"] = sum(1 for r in with_pid if r["username"])
    out["pgpool2_backend_by_process_total"] = Counter(r["pool_pid"] for r in with_pid)
    out["pgpool2_backend_by_process_used"] = Counter(
        (r["pool_pid"], r["pool_id"], r["backend_id"], r["username"], r["database"])
        for r in with_pid if r["username"])
    return out


def test_exporter_queries_parse_with_the_exporters_rules(cluster, pgtwist_factory):
    pg = pgtwist_factory(extra={"num_init_children": 6, "health_check_period": 1,
                                "health_check_user": "postgres",
                                "backends": backends(cluster, 0, 1),
                                "read_consistency": "none"})
    with RawClient(pg.port) as exporter, connect(pg) as app:
        exporter.startup()
        app.execute("SELECT 1")   # the app's session now holds links to both nodes
        for upper in (False, True):
            m = scrape(exporter, upper)
            nodes = {key[1] for key in m if isinstance(key, tuple)
                     and key[0].startswith("pgpool2_pool_nodes")}
            assert nodes == {(cluster.host, str(cluster.primary_port), "primary"),
                             (cluster.host, str(cluster.replica_ports[0]), "standby")}
            for labels in nodes:
                assert m[("pgpool2_pool_nodes_status", labels)] == 1.0
                assert m[("pgpool2_pool_backend_stats_status", labels)] == 1.0
                assert m[("pgpool2_pool_health_check_stats_status", labels)] == 1.0
            assert m[("pgpool2_pool_cache_cache_hit_ratio", ())] == 0.0
            assert m["pgpool2_frontend_total"] == 6
            # the exporter's own session and the app's
            assert m["pgpool2_frontend_used"] == {("postgres", "postgres"): 2}
            assert m["pgpool2_backend_total"] == 6 * 2
            # the exporter holds the primary link only, the app both
            assert m["pgpool2_backend_used"] == 1 + 2
            assert set(m["pgpool2_backend_by_process_total"].values()) == {2, 8}
        # the counters move as the cluster is used
        replica = (cluster.host, str(cluster.replica_ports[0]), "standby")
        before = m[("pgpool2_pool_nodes_select_cnt", replica)]
        for _ in range(5):
            app.execute("SELECT 1")
        after = scrape(exporter, False)
        assert after[("pgpool2_pool_nodes_select_cnt", replica)] == before + 5
        assert after[("pgpool2_pool_backend_stats_select_cnt", replica)] == before + 5
        primary = (cluster.host, str(cluster.primary_port), "primary")
        assert after[("pgpool2_pool_health_check_stats_total_count", primary)] >= 1
