"""The routing chain: ask each policy in turn; the first decision wins.

A policy that raises (or returns something that is not a RouteDecision) is
skipped: the error is kept in ``Chain.errors`` (bounded), counted in
``Chain.error_count`` and handed to ``on_error`` if given, and routing goes on
with the next policy.  A broken third-party policy must never drop a client.
"""

from __future__ import annotations

import collections
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace

from ..interfaces import IBalancer
from .balancer import WEIGHTS_ONLY
from .rules import prepared_body_sql
from .values import RouteDecision, RouteRequest, Target, primary

FALLBACK = primary("primary: no policy decided").by("chain")
MAX_KEPT_ERRORS = 100


@dataclass(frozen=True)
class Explanation:
    """What ``PGTWIST EXPLAIN ROUTE`` shows: the decision and each policy asked on the way."""

    decision: RouteDecision
    steps: tuple[tuple[str, RouteDecision], ...]

    def lines(self) -> list[str]:
        out = [f"{name}: {d.target.value}{'' if d.node is None else f' {d.node}'}"
               f"{f' - {d.reason}' if d.reason else ''}" for name, d in self.steps]
        d = self.decision
        out.append(f"=> {d.target.value}{'' if d.node is None else f' {d.node}'}: {d.reason} "
                   f"(by {d.policy})")
        return out


class Chain:
    """An ordered tuple of IRoutingPolicy providers.

    ``cacheable``: every policy declares ``cacheable`` true (IRoutingPolicy), so a decision
    may be reused for a request that agrees on query, session, cluster and catalog facts.
    ``balancer``: the first policy providing IBalancer, else a plain weighted draw.
    """

    def __init__(self, policies: Iterable[object],
                 on_error: Callable[[str, BaseException], None] | None = None) -> None:
        self.policies = tuple(policies)
        self.names = tuple(_name(p) for p in self.policies)
        self.cacheable = all(getattr(p, "cacheable", False) is True for p in self.policies)
        self.balancer = next((p for p in self.policies if IBalancer.providedBy(p)),
                             WEIGHTS_ONLY)
        self.on_error = on_error
        self.errors: collections.deque[tuple[str, BaseException]] = collections.deque(
            maxlen=MAX_KEPT_ERRORS)
        self.error_count = 0

    def route(self, request: RouteRequest) -> RouteDecision:
        """The first non-UNDECIDED decision, credited to its policy; else the primary."""
        request = _unwrap_prepare(request)
        for policy, name in zip(self.policies, self.names, strict=True):
            try:
                decision = policy.route(request)
                if decision.target is Target.UNDECIDED:
                    continue
                return decision if decision.policy == name else decision.by(name)
            except Exception as exc:  # noqa: BLE001 - a policy must never break routing
                self._failed(name, exc)
        return FALLBACK

    def explain(self, request: RouteRequest) -> Explanation:
        """Like route(), also listing every (policy, decision) evaluated until the decision."""
        request = _unwrap_prepare(request)
        steps = []
        for policy, name in zip(self.policies, self.names, strict=True):
            try:
                decision = policy.route(request)
                target = decision.target
            except Exception as exc:  # noqa: BLE001
                self._failed(name, exc)
                steps.append((name, RouteDecision(Target.UNDECIDED, None,
                                                  f"error: {type(exc).__name__}: {exc}", name)))
                continue
            steps.append((name, decision.by(name)))
            if target is not Target.UNDECIDED:
                return Explanation(decision.by(name), tuple(steps))
        return Explanation(FALLBACK, tuple(steps))

    def policy(self, name: str) -> object | None:
        """The first policy named ``name`` (for EXPLAIN output and tests)."""
        for policy, n in zip(self.policies, self.names, strict=True):
            if n == name:
                return policy
        return None

    def _failed(self, name: str, exc: Exception) -> None:
        self.error_count += 1
        self.errors.append((name, exc))
        if self.on_error is not None:
            try:
                self.on_error(name, exc)
            except Exception:  # noqa: BLE001 - a failing logger must not break routing either
                pass


def _name(policy: object) -> str:
    return str(getattr(policy, "name", type(policy).__name__))


def _unwrap_prepare(request: RouteRequest) -> RouteRequest:
    """SQL ``PREPARE name AS <q>`` is routed like ``<q>`` (§1.3)."""
    q = request.query
    if q.command == "PREPARE" and q.prepared is not None:
        return replace(request, query=q.prepared, sql=prepared_body_sql(request.sql))
    return request
