"""pgpool2_exporter's metrics, computed the way the exporter computes them from SHOW rows.

The exporter (reference §8) runs ``SHOW pool_nodes`` and the like over SQL and turns the
text rows into metrics.  pgtwist applies the same rules to the same rows, built by the
row model the SHOW commands answer from (pgtwist.adminview), so a dashboard made for the
exporter reads the same numbers whichever way it is fed.  Pure: tables in, families out.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

Table = tuple[Sequence[str], Sequence[Sequence[str | None]]]

# Per SHOW view: (labels, {column: "gauge" | "counter"}); other columns are discarded.
_NODE_LABELS = ("hostname", "port", "role")
NAMESPACES: dict[str, tuple[tuple[str, ...], dict[str, str]]] = {
    "pool_nodes": (_NODE_LABELS, {"status": "gauge", "select_cnt": "counter",
                                  "replication_delay": "gauge"}),
    "pool_backend_stats": (_NODE_LABELS, {
        "status": "gauge", **{c: "counter" for c in (
            "select_cnt", "insert_cnt", "update_cnt", "delete_cnt", "ddl_cnt", "other_cnt",
            "panic_cnt", "fatal_cnt", "error_cnt")}}),
    "pool_health_check_stats": (_NODE_LABELS, {c: "gauge" for c in (
        "status", "total_count", "success_count", "fail_count", "skip_count", "retry_count",
        "average_retry_count", "max_retry_count", "max_duration", "min_duration",
        "average_duration")}),
    "pool_cache": ((), {c: "gauge" for c in (
        "num_cache_hits", "num_selects", "cache_hit_ratio", "num_hash_entries",
        "used_hash_entries", "num_cache_entries", "used_cache_entries_size",
        "free_cache_entries_size", "fragment_cache_entries_size")}),
}
# What pgtwist asks the row model for, in the exporter's order.
VIEWS = ("pool_nodes", "pool_backend_stats", "pool_health_check_stats", "pool_cache",
         "pool_processes", "pool_pools")


def number(text: str | None, column: str = "") -> float:
    """A column's text as the exporter reads it: a status word is 1 for up/waiting/true
    and 0 otherwise; NULL and unparsable text are NaN."""
    if text is None:
        return math.nan
    if column == "status":
        return 1.0 if text in ("up", "waiting", "true") else 0.0
    try:
        return float(text)
    except ValueError:
        return math.nan


def exporter_families(tables: Mapping[str, Table]) -> Iterator:
    """The exporter's families from ``tables`` ({SHOW name: (columns, rows)})."""
    for name, (labels, kinds) in NAMESPACES.items():
        if name in tables:
            yield from _columns(name, labels, kinds, tables[name])
    if "pool_processes" in tables:
        yield from _frontends(tables["pool_processes"])
    if "pool_pools" in tables:
        yield from _backends(tables["pool_pools"])


def _columns(namespace, labels, kinds, table: Table) -> Iterator:
    columns, rows = table
    index = {c: i for i, c in enumerate(columns)}
    families = {}
    for column, kind in kinds.items():
        if column not in index:
            continue
        cls = CounterMetricFamily if kind == "counter" else GaugeMetricFamily
        families[column] = cls(f"pgpool2_{namespace}_{column}",
                               f"{column} of SHOW {namespace}", labels=list(labels))
    for row in rows:
        label_values = [row[index[c]] or "" if c in index else "" for c in labels]
        for column, family in families.items():
            family.add_metric(label_values, number(row[index[column]], column))
    yield from families.values()


def _frontends(table: Table) -> Iterator:
    """pool_processes: one row per process (pgtwist: per client slot); used = database and
    username both set."""
    columns, rows = table
    db, user = columns.index("database"), columns.index("username")
    used: dict[tuple[str, str], int] = {}
    for row in rows:
        if row[db] and row[user]:
            used[(row[user], row[db])] = used.get((row[user], row[db]), 0) + 1
    total = len(rows)
    n_used = sum(used.values())
    yield GaugeMetricFamily("pgpool2_frontend_total", "Number of total child processes",
                            value=total)
    family = GaugeMetricFamily("pgpool2_frontend_used", "Number of used child processes",
                               labels=["username", "database"])
    for (username, database), n in sorted(used.items()):
        family.add_metric([username, database], n)
    yield family
    yield GaugeMetricFamily("pgpool2_frontend_used_ratio", "Ratio of child processes to "
                            "total processes", value=_ratio(n_used, total))


def _backends(table: Table) -> Iterator:
    """pool_pools: one row per connection slot; a slot is used when it has a username."""
    columns, rows = table
    at = {c: columns.index(c) for c in ("pool_pid", "pool_id", "backend_id", "username",
                                         "database")}
    total = used = 0
    by_pid_total: dict[str, int] = {}
    by_pid_used: dict[tuple[str, ...], int] = {}
    for row in rows:
        pid = row[at["pool_pid"]]
        if not pid:
            continue
        total += 1
        by_pid_total[pid] = by_pid_total.get(pid, 0) + 1
        if row[at["username"]]:
            used += 1
            key = tuple(row[at[c]] or "" for c in ("pool_pid", "pool_id", "backend_id",
                                                   "username", "database"))
            by_pid_used[key] = by_pid_used.get(key, 0) + 1
    yield GaugeMetricFamily("pgpool2_backend_total", "Number of total possible backend "
                            "connections", value=total)
    yield GaugeMetricFamily("pgpool2_backend_used", "Number of used backend connections",
                            value=used)
    yield GaugeMetricFamily("pgpool2_backend_used_ratio", "Ratio of used backend "
                            "connections to total possible", value=_ratio(used, total))
    per_total = GaugeMetricFamily("pgpool2_backend_by_process_total", "Number of backend "
                                  "connection slots per process", labels=["pool_pid"])
    per_used = GaugeMetricFamily("pgpool2_backend_by_process_used", "Number of used backend "
                                 "connections per process", labels=[
                                     "pool_pid", "pool_id", "backend_id", "username",
                                     "database"])
    per_ratio = GaugeMetricFamily("pgpool2_backend_by_process_used_ratio", "Ratio of used "
                                  "backend connections per process", labels=["pool_pid"])
    used_by_pid: dict[str, int] = {}
    for key, n in sorted(by_pid_used.items()):
        per_used.add_metric(list(key), n)
        used_by_pid[key[0]] = used_by_pid.get(key[0], 0) + n
    for pid, n in sorted(by_pid_total.items()):
        per_total.add_metric([pid], n)
        per_ratio.add_metric([pid], _ratio(used_by_pid.get(pid, 0), n))
    yield from (per_total, per_used, per_ratio)


def _ratio(part: int, whole: int) -> float:
    return part / whole if whole else 0.0
