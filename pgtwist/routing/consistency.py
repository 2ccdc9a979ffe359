"""``read_consistency``: a read goes to a replica only if that replica has replayed the
writes it must see (issue 11 item 3).

The session layer learns commit LSNs (a hidden ``pg_current_wal_lsn()`` pipelined after a
writing transaction's end) and the cluster layer the replicas' replay LSNs; the router
hands both in: ``SessionView.required_lsn`` / ``lsn_pending`` and
``ClusterView.replay_lsns``.  This policy only compares them.  It sits before
``weighted_balancer``: when the session's load-balance node is fresh enough it has no
opinion (the balancer routes as usual); else it names another fresh standby, or the
primary (credited to this policy, so the session may wait for a fresher replica first).
"""

from __future__ import annotations

from dataclasses import dataclass

from zope.interface import implementer

from ..interfaces import IRoutingPolicy
from ..sql.info import EITHER
from .options import OptionReader
from .values import UNDECIDED, RouteDecision, RouteRequest, node, primary

NAME = "read_consistency"
MODES = ("lsn", "none")
KEYS = ("read_consistency", "statement_level_load_balance")


@dataclass(frozen=True)
class ConsistencyPolicyOptions:
    mode: str = "lsn"                          # lsn | none (Pgpool-II: no guarantee)
    statement_level_load_balance: bool = False  # any standby may be drawn per statement


def parse_read_consistency(raw: object, path: str = "") -> ConsistencyPolicyOptions:
    r = OptionReader(raw, path, KEYS)
    options = ConsistencyPolicyOptions(r.choice("read_consistency", "lsn", MODES),
                                       r.bool("statement_level_load_balance", False))
    r.done()
    return options


def parse_lsn(text: str | bytes | None) -> int | None:
    """``'16/B374D848'`` -> its 64-bit position; None for NULL or anything else."""
    if isinstance(text, bytes):
        text = text.decode("ascii", "replace")
    if not text or text.count("/") != 1:
        return None
    high, low = text.split("/")
    try:
        value = (int(high, 16) << 32) | int(low, 16)
    except ValueError:
        return None
    return value if 0 <= value < 1 << 64 and len(high) <= 8 and len(low) <= 8 else None


def format_lsn(lsn: int | None) -> str:
    return "" if lsn is None else f"{lsn >> 32:X}/{lsn & 0xFFFFFFFF:X}"


def is_fresh(replay_lsns: tuple[int | None, ...], node_id: int, required: int) -> bool:
    """Has ``node_id`` replayed ``required``?  Unknown counts as not."""
    if node_id >= len(replay_lsns):
        return False
    lsn = replay_lsns[node_id]
    return lsn is not None and lsn >= required


_PENDING = primary("primary: a write's commit LSN is still being learnt (read_consistency)"
                   ).by(NAME)
_STALE = primary("primary: no standby has replayed the writes this read must see "
                 "(read_consistency)").by(NAME)


@implementer(IRoutingPolicy)
class ReadConsistencyPolicy:
    """Keep reads off replicas that have not replayed what the reader must see."""

    name = NAME
    # The router keys cached decisions on which nodes are fresh for the session's
    # requirement (Router.decide), so a decision depends only on what the key holds.
    cacheable = True

    def __init__(self, options: ConsistencyPolicyOptions = ConsistencyPolicyOptions()) -> None:
        self.options = options
        self.on = options.mode == "lsn"
        self._to_node: dict[int, RouteDecision] = {}

    def route(self, request: RouteRequest) -> RouteDecision:
        if not self.on or request.query.route != EITHER:
            return UNDECIDED
        s = request.session
        required = s.required_lsn
        if required <= 0 and not s.lsn_pending:
            return UNDECIDED
        cluster = request.cluster
        lb = s.lb_node
        if lb is None or lb == cluster.primary_id:
            return UNDECIDED  # the balancer sends it to the primary anyway
        if s.lsn_pending:
            return _PENDING
        lsns = cluster.replay_lsns
        candidates = [n for n in cluster.standbys if n.usable and n.weight > 0]
        fresh = [n.node_id for n in candidates if is_fresh(lsns, n.node_id, required)]
        if self.options.statement_level_load_balance:
            # The balancer may draw any standby: only when all are fresh may it choose.
            if fresh and len(fresh) == len(candidates):
                return UNDECIDED
        elif lb in fresh:
            return UNDECIDED
        if not fresh:
            return _STALE
        other = fresh[0]
        decision = self._to_node.get(other)
        if decision is None:
            decision = self._to_node[other] = node(
                other, f"standby: node {other} has replayed the writes this read must see, "
                       f"the load-balance node has not (read_consistency)").by(NAME)
        return decision
