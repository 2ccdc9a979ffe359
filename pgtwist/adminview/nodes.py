"""Per-node views: SHOW pool_nodes, pool_backend_stats and pool_health_check_stats.

Each takes the cluster's live ``NodeState`` objects (pgtwist.cluster) and only reads
them: what the checks and the sessions recorded, no server is asked.
"""

from __future__ import annotations

POOL_NODES_COLUMNS = [
    "node_id", "hostname", "port", "status", "pg_status", "lb_weight", "role", "pg_role",
    "select_cnt", "load_balance_node", "replication_delay", "replication_state",
    "replication_sync_state", "last_status_change",
]
BACKEND_STATS_COLUMNS = [
    "node_id", "hostname", "port", "status", "role", "select_cnt", "insert_cnt", "update_cnt",
    "delete_cnt", "ddl_cnt", "other_cnt", "panic_cnt", "fatal_cnt", "error_cnt",
]
HEALTH_CHECK_STATS_COLUMNS = [
    "node_id", "hostname", "port", "status", "role", "last_status_change", "total_count",
    "success_count", "fail_count", "skip_count", "retry_count", "average_retry_count",
    "max_retry_count", "max_duration", "min_duration", "average_duration", "last_health_check",
    "last_successful_health_check", "last_skip_health_check", "last_failed_health_check",
]


def _head(n) -> list[str]:
    return [str(n.node_id), n.backend.hostname, str(n.backend.port)]


def pool_nodes(nodes, lb_node: int | None):
    """``lb_node``: the asking session's load-balance node (None outside a session)."""
    total = sum(n.backend.weight for n in nodes) or 1.0
    rows = []
    for n in nodes:
        rows.append([
            *_head(n), n.status, n.pg_status, f"{n.backend.weight / total:f}", n.role,
            n.pg_role, str(n.select_cnt), "true" if n.node_id == lb_node else "false",
            n.replication_delay_text, n.replication_state, n.replication_sync_state,
            n.last_status_change,
        ])
    return POOL_NODES_COLUMNS, rows


def pool_backend_stats(nodes):
    """Statements sent to each node by kind (pgtwist.cluster.STAT_NAMES) and the errors
    its sessions received from it, by severity."""
    rows = [[*_head(n), n.status, n.role, str(n.select_cnt), *map(str, n.stats)]
            for n in nodes]
    return BACKEND_STATS_COLUMNS, rows


def pool_health_check_stats(nodes):
    """pgtwist.checks.HealthStats of each node: all zero and empty without health checks."""
    rows = []
    for n in nodes:
        h = n.health_stats
        rows.append([
            *_head(n), n.status, n.role, n.last_status_change, str(h.total), str(h.success),
            str(h.fail), str(h.skip), str(h.retry), f"{h.average_retry:f}", str(h.max_retry),
            str(h.max_ms), str(h.min_ms), f"{h.average_ms:f}", h.last, h.last_success,
            h.last_skip, h.last_fail,
        ])
    return HEALTH_CHECK_STATS_COLUMNS, rows
