"""A copy of what /metrics shows, taken from the live objects in one reactor turn.

Plain values only (dicts, lists, numbers), so the Prometheus families are built from it
by pure functions (pgtwist.metrics.collector) that unit tests feed literal values.
Taking it reads in-memory state: no server round trip, nothing waits.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .. import __version__
from .stats import Histogram


@dataclass
class NodeSample:
    node_id: int
    hostname: str
    port: int
    role: str                       # primary | standby | unknown
    status: str                     # up | down | waiting
    pg_status: str                  # up | down | unknown (the last live check)
    lag_bytes: float | None = None  # WAL bytes behind the primary (from the checks' LSNs)
    lag_seconds: float | None = None
    replay_lsn: int | None = None


@dataclass
class Snapshot:
    version: str = __version__
    pool_mode: str = "session"
    nodes: list[NodeSample] = field(default_factory=list)
    # pgtwist.metrics.stats.Stats
    query: Histogram | None = None
    transaction: Histogram | None = None
    checkout: Histogram | None = None
    routes: dict[tuple[str, str, str, int | None], int] = field(default_factory=dict)
    auth_failures: dict[str, int] = field(default_factory=dict)
    # pgtwist.pooling: link counts per node (idle, busy, connecting, waiting), the limit of
    # busy + connecting links per node (None: none), event counters (pool and pooling).
    pool_nodes: dict[int, dict[str, int]] = field(default_factory=dict)
    pool_limits: dict[int, int | None] = field(default_factory=dict)
    pool_counters: dict[str, int] = field(default_factory=dict)
    pooling_counters: dict[str, int] = field(default_factory=dict)
    # client slots (num_init_children)
    clients: int = 0
    clients_max: int = 0
    clients_waiting: int = 0
    connections: int = 0
    sessions: int = 0
    consistency: dict[str, int] = field(default_factory=dict)
    ready: bool = False
    draining: bool = False


def take(proxy) -> Snapshot:
    """The snapshot of a live ``pgtwist.service.Proxy``."""
    cluster = proxy.cluster
    primary = cluster.primary
    nodes = [_node(n, primary) for n in cluster.nodes]
    stats = proxy.stats
    pooling = proxy.pooling
    pool = pooling.pool
    counts = pool.stats()
    routes = {key: cell[0] for key, cell in stats.route_cells.items()}
    return Snapshot(
        pool_mode=pooling.mode,
        nodes=nodes,
        query=stats.query,
        transaction=stats.transaction,
        checkout=stats.checkout,
        routes=routes,
        auth_failures=dict(stats.auth_failures),
        pool_nodes=counts["nodes"],
        pool_limits=_limits(pool, counts),
        pool_counters=counts["counters"],
        pooling_counters=dict(pooling.counters),
        clients=proxy.clients,
        clients_max=proxy.config.num_init_children,
        clients_waiting=len(getattr(proxy, "_waiting", ())),
        connections=proxy.connections,
        sessions=len(proxy.sessions),
        consistency=dict(proxy.router.consistency.counts),
        ready=readiness(proxy)[0],
        draining=proxy.draining,
    )


def _node(n, primary) -> NodeSample:
    lag_bytes = lag_seconds = None
    if n.replication_delay is not None:
        if n.delay_unit == "seconds":
            lag_seconds = float(n.replication_delay)
        else:
            lag_bytes = float(n.replication_delay)
    if (lag_bytes is None and primary is not None and primary is not n
            and primary.replay_lsn is not None and n.replay_lsn is not None):
        lag_bytes = float(max(0, primary.replay_lsn - n.replay_lsn))
    if n is primary:
        lag_bytes = lag_bytes if lag_bytes is not None else 0.0
    return NodeSample(n.node_id, n.backend.hostname, n.backend.port, n.role, n.status,
                      n.pg_status, lag_bytes, lag_seconds, n.replay_lsn)


def _limits(pool, counts) -> dict[int, int | None]:
    """Busy + connecting links each node may have: backend_max_connections, else (a
    transaction pool) the pool size times the keys open to that node, else no limit."""
    limits: dict[int, int | None] = {}
    per_key: dict[int, int] = {}
    for key in counts["keys"]:
        per_key[key.node_id] = per_key.get(key.node_id, 0) + 1
    for node_id in counts["nodes"]:
        if pool.backend_max_connections:
            limits[node_id] = pool.backend_max_connections
        elif pool.max_pool:
            limits[node_id] = pool.max_pool * per_key.get(node_id, 0) or None
        else:
            limits[node_id] = None
    return limits


def readiness(proxy) -> tuple[bool, str]:
    """(ready, why): config loaded (a Proxy exists), not draining, and the cluster model
    knows a primary that is not down.  Read from the model: no server round trip."""
    if proxy.draining:
        return False, "draining: pgtwist is shutting down and accepts no new clients"
    primary = proxy.cluster.primary
    if primary is None:
        return False, "no primary known: no backend flagged ALWAYS_PRIMARY and none found"
    where = f"node {primary.node_id} ({primary.backend.hostname}:{primary.backend.port})"
    if primary.status == "down" or primary.pg_status == "down":
        return False, f"the primary {where} is down"
    return True, f"ready: the primary is {where}"
