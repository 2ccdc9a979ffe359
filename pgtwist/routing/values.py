"""Values that flow through the routing chain."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from ..sql.info import QueryInfo


class Target(enum.Enum):
    PRIMARY = "primary"      # the primary only
    EITHER = "either"        # the session's load-balance node (a read)
    BOTH = "both"            # the primary and the session's load-balance node
    NODE = "node"            # one given node (RouteDecision.node)
    REJECT = "reject"        # refuse the statement with an error (RouteDecision.reason)
    UNDECIDED = "undecided"  # this policy has no opinion


@dataclass(frozen=True)
class RouteDecision:
    target: Target
    node: int | None = None
    reason: str = ""
    policy: str = ""

    def by(self, policy: str) -> RouteDecision:
        """The same decision, credited to ``policy``."""
        return RouteDecision(self.target, self.node, self.reason, policy)


UNDECIDED = RouteDecision(Target.UNDECIDED)


def primary(reason: str) -> RouteDecision:
    return RouteDecision(Target.PRIMARY, None, reason)


def both(reason: str) -> RouteDecision:
    return RouteDecision(Target.BOTH, None, reason)


def node(node_id: int, reason: str) -> RouteDecision:
    return RouteDecision(Target.NODE, node_id, reason)


def reject(reason: str) -> RouteDecision:
    return RouteDecision(Target.REJECT, None, reason)


@dataclass(frozen=True)
class NodeView:
    node_id: int
    status: str                 # 'up' | 'down' | 'waiting'
    role: str                   # 'primary' | 'standby' | 'unknown'
    weight: float               # backend_weight as configured (not normalised)
    replication_delay: float | None = None   # bytes or seconds, as measured; None = unknown

    @property
    def usable(self) -> bool:
        return self.status != "down"


@dataclass(frozen=True)
class ClusterView:
    nodes: tuple[NodeView, ...]
    primary_id: int | None
    # Each node's last known pg_last_wal_replay_lsn() (None: unknown), by node id; filled
    # only when a read has a consistency requirement (read_consistency: lsn).
    replay_lsns: tuple[int | None, ...] = ()

    def get(self, node_id: int) -> NodeView | None:
        if 0 <= node_id < len(self.nodes):
            return self.nodes[node_id]
        return None

    @property
    def standbys(self) -> tuple[NodeView, ...]:
        return tuple(n for n in self.nodes if n.node_id != self.primary_id)


@dataclass(frozen=True)
class SessionView:
    user: str
    database: str
    application_name: str          # from the startup packet only (as Pgpool-II)
    lb_node: int | None            # the session's load-balance node
    in_transaction: bool = False   # explicit transaction block open ('T' or 'E')
    txn_failed: bool = False       # 'E': aborted transaction
    serializable: bool = False     # the current transaction is SERIALIZABLE
    writing_transaction: bool = False   # disable_load_balance_on_write flag is set
    written_objects: frozenset[str] = frozenset()   # dml_adaptive: written in this transaction
    temp_tables: frozenset[str] = frozenset()       # created in this session (trace)
    txn_on_primary: bool = False   # the open transaction runs on the primary alone
    # read_consistency: the WAL position a replica must have replayed to serve this read
    # (0: none), and whether a write's commit LSN is still being learnt (then no replica
    # can be proven fresh).
    required_lsn: int = 0
    lsn_pending: bool = False


@dataclass(frozen=True)
class CatalogFacts:
    """Facts looked up in the primary's catalog for this statement's objects."""

    volatile_functions: frozenset[str] = frozenset()   # provolatile = 'v'
    temp_tables: frozenset[str] = frozenset()
    unlogged_tables: frozenset[str] = frozenset()


@dataclass(frozen=True)
class RouteRequest:
    query: QueryInfo
    session: SessionView
    cluster: ClusterView
    catalog: CatalogFacts = field(default_factory=CatalogFacts)
    sql: str = ""
    now: float = 0.0
    draw: float = 0.0       # uniform [0, 1), one per request, for ratio decisions
