"""The last link of the chain, ``weighted_balancer``: a read goes to the session's
load-balance node unless that node is down or lags beyond the delay threshold (§1.1,
§1.2 item 8).  It is also the chain's IBalancer (pgtwist.routing.balancer draws).
"""

from __future__ import annotations

from dataclasses import dataclass

from zope.interface import implementer

from ..interfaces import IBalancer, IRoutingPolicy
from ..sql.info import EITHER
from . import balancer
from .options import OptionReader
from .values import UNDECIDED, RouteDecision, RouteRequest, node, primary


@dataclass(frozen=True)
class BalancerOptions:
    statement_level_load_balance: bool = False
    app_list: tuple[balancer.Entry, ...] = ()
    db_list: tuple[balancer.Entry, ...] = ()
    user_list: tuple[balancer.Entry, ...] = ()
    delay_threshold: float = 0.0           # WAL bytes; 0 = off
    delay_threshold_by_time: float = 0.0   # ms; > 0 overrides delay_threshold
    prefer_lower_delay_standby: bool = False


BALANCER_KEYS = ("statement_level_load_balance", "app_name_redirect_preference_list",
                 "database_redirect_preference_list", "user_redirect_preference_list",
                 "delay_threshold", "delay_threshold_by_time", "prefer_lower_delay_standby",
                 "node_count")


def parse_weighted_balancer(raw: object, path: str = "") -> BalancerOptions:
    r = OptionReader(raw, path, BALANCER_KEYS)
    count = r.raw.get("node_count")
    node_count = None
    if isinstance(count, int) and not isinstance(count, bool) and count >= 0:
        node_count = count
    elif count is not None:
        r.error("node_count", f"expected a number of backends, got {count!r}")
    lists = [balancer.preference_entries(r.items(key), key, node_count, r.where(key), r.errors)
             for key in BALANCER_KEYS[1:4]]
    options = BalancerOptions(
        r.bool("statement_level_load_balance", False), *lists,
        r.number("delay_threshold", 0.0), r.number("delay_threshold_by_time", 0.0),
        r.bool("prefer_lower_delay_standby", False))
    r.done()
    return options


_NO_LB = primary("primary: no load-balance node").by("weighted_balancer")
_LB_IS_PRIMARY = primary("primary: read, session LB node is the primary").by("weighted_balancer")


@implementer(IRoutingPolicy, IBalancer)
class WeightedBalancerPolicy:
    """The last link: a read goes to the session's load-balance node (§1.1, §1.2 item 8).

    It is also the chain's IBalancer: the redirect preference lists choose each session's
    load-balance node (and, with statement_level_load_balance, each read's)."""

    name = "weighted_balancer"

    def __init__(self, options: BalancerOptions = BalancerOptions()) -> None:
        self.options = options
        self.balancer = balancer.WeightedBalancer(options.app_list, options.db_list,
                                                  options.user_list)
        # A statement-level draw differs per statement.
        self.cacheable = not options.statement_level_load_balance
        if options.delay_threshold_by_time > 0:
            # NodeView.replication_delay is in seconds in time mode; the threshold in ms.
            self._limit, self._unit = options.delay_threshold_by_time / 1000.0, "s"
        elif options.delay_threshold > 0:
            self._limit, self._unit = options.delay_threshold, " bytes"
        else:
            self._limit, self._unit = None, ""
        self._to_node: dict[int, RouteDecision] = {}  # session LB node -> its decision

    def choose(self, cluster, session, draw: float, draw2: float | None = None
               ) -> tuple[int | None, str]:
        return self.balancer.choose(cluster, session, draw, draw2)

    def route(self, request: RouteRequest) -> RouteDecision:
        if request.query.route != EITHER:
            return UNDECIDED
        s, cluster, o = request.session, request.cluster, self.options
        why = None
        if o.statement_level_load_balance:
            lb, why = self.balancer.choose(cluster, s, request.draw, None)
        else:
            lb = s.lb_node
        if lb is None:
            return _NO_LB
        info = cluster.get(lb)
        if info is None or not info.usable:
            return primary(f"primary: load-balance node {lb} is down")
        if lb == cluster.primary_id:
            return _LB_IS_PRIMARY if why is None else primary(
                f"primary: read, statement-level draw chose the primary ({why})")
        if self._limit is not None and (info.replication_delay or 0) > self._limit:
            return self._delayed(info, cluster)
        if why is not None:
            return node(lb, f"standby: read, statement-level draw, {why}")
        decision = self._to_node.get(lb)
        if decision is None:
            decision = self._to_node[lb] = node(lb, f"standby: read, session LB node {lb}"
                                                ).by(self.name)
        return decision

    def _delayed(self, info, cluster) -> RouteDecision:
        lag = f"node {info.node_id} lags {info.replication_delay:g}{self._unit}"
        if self.options.prefer_lower_delay_standby:
            candidates = [n for n in cluster.standbys if n.usable and n.weight > 0]
            if candidates:
                best = min(candidates, key=lambda n: (n.replication_delay or 0, n.node_id))
                if (best.replication_delay or 0) <= self._limit:
                    return node(best.node_id, f"standby: {lag}, over the delay threshold; node "
                                              f"{best.node_id} lags least (prefer_lower_delay_standby)")
        return primary(f"primary: {lag}, over the delay threshold")
