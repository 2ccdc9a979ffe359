"""Commands pgtwist answers itself: SHOW pool_* (Pgpool-II) and PGTWIST ... .

Like Pgpool-II, they are intercepted in the simple query protocol only.  All
columns are text with type OID 0, so pgpool2_exporter and other tools read
them unchanged.
"""

from __future__ import annotations

import re

from . import __version__
from .wire import messages as m

POOL_NODES_COLUMNS = [
    "node_id", "hostname", "port", "status", "pg_status", "lb_weight", "role", "pg_role",
    "select_cnt", "load_balance_node", "replication_delay", "replication_state",
    "replication_sync_state", "last_status_change",
]

_SHOW = re.compile(r"^\s*show\s+(pool_nodes|pool_version|pgtwist_pool|pgtwist_consistency)\s*;?\s*$", re.IGNORECASE)
_EXPLAIN = re.compile(r"^\s*pgtwist\s+explain\s+route\s+(.+?)\s*;?\s*$", re.IGNORECASE | re.DOTALL)
_PGTWIST = re.compile(r"^\s*pgtwist\b", re.IGNORECASE)


def match(sql: str):
    """('show', name) / ('explain', inner_sql) / ('pgtwist', text) or None."""
    head = sql.lstrip()[:8].lower()
    if not (head.startswith("show") or head.startswith("pgtwist")):
        return None
    found = _SHOW.match(sql)
    if found:
        return ("show", found.group(1).lower())
    found = _EXPLAIN.match(sql)
    if found:
        return ("explain", found.group(1))
    if _PGTWIST.match(sql):
        return ("pgtwist", sql.strip())
    return None


def result(columns: list[str], rows: list[list[str | None]], tag: str) -> bytes:
    out = [m.row_description(columns)]
    out.extend(m.data_row(r) for r in rows)
    out.append(m.command_complete(tag))
    return b"".join(out)


def pool_nodes(cluster, lb_node: int | None) -> bytes:
    nodes = cluster.nodes
    total = sum(n.backend.weight for n in nodes) or 1.0
    rows = []
    for n in nodes:
        rows.append([
            str(n.node_id), n.backend.hostname, str(n.backend.port),
            n.status, n.pg_status, f"{n.backend.weight / total:f}",
            n.role if n.role != "unknown" else "unknown",
            n.pg_role, str(n.select_cnt),
            "true" if n.node_id == lb_node else "false",
            n.replication_delay_text, n.replication_state, n.replication_sync_state,
            n.last_status_change,
        ])
    return result(POOL_NODES_COLUMNS, rows, f"SELECT {len(rows)}")


def pgtwist_pool(pooling) -> bytes:
    """SHOW pgtwist_pool: the shared pool's event counters and current link counts."""
    stats = pooling.pool.stats()
    totals = stats["totals"]
    rows = [[name, str(value)] for name, value in stats["counters"].items()]
    rows.extend([name, str(value)] for name, value in pooling.counters.items())
    rows.append(["links", str(totals["idle"] + totals["busy"] + totals["connecting"])])
    rows.append(["links_idle", str(totals["idle"])])
    rows.append(["links_busy", str(totals["busy"])])
    rows.append(["waiting", str(totals["waiting"])])
    rows.append(["pool_mode", pooling.mode])
    return result(["name", "value"], rows, f"SELECT {len(rows)}")


def pgtwist_consistency(tracker, cluster, active: bool) -> bytes:
    """SHOW pgtwist_consistency: read_consistency's settings, what it knows (LSNs) and
    the counted outcomes of reads that had to see earlier writes."""
    o = tracker.options
    rows = [["read_consistency", o.mode if active or not o.on else "lsn (inactive: no "
             "load balancing over replicas)"],
            ["scope", o.scope], ["wait_ms", str(int(o.wait * 1000))],
            ["poll_interval_ms", str(int(o.poll_interval * 1000))],
            ["commit_lsn", _lsn(tracker.lsn)], ["writes_pending", str(tracker.pending)]]
    rows.extend([name, str(value)] for name, value in tracker.counts.items())
    rows.extend([f"node{n.node_id}_replay_lsn", _lsn(n.replay_lsn)] for n in cluster.nodes)
    return result(["name", "value"], rows, f"SELECT {len(rows)}")


def _lsn(lsn: int | None) -> str:
    return "" if lsn is None else f"{lsn >> 32:X}/{lsn & 0xFFFFFFFF:X}"


def pool_version() -> bytes:
    return result(["pool_version"], [[f"{__version__} (pgtwist)"]], "SELECT 1")


def explain_route(explanation, node_label: str) -> bytes:
    """One row: the node chosen, the deciding policy and its reason, then the chain."""
    decision = explanation.decision
    chain = "; ".join(f"{name}: {d.target.value}" + (f" ({d.reason})" if d.reason else "")
                      for name, d in explanation.steps)
    return result(
        ["node", "target", "policy", "reason", "chain"],
        [[node_label, decision.target.value, decision.policy, decision.reason, chain]],
        "PGTWIST EXPLAIN ROUTE",
    )


def error(sqlstate: str, message: str) -> bytes:
    return m.error_response(sqlstate, message)
