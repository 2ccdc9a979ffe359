"""Routing for sessions: classification, catalog facts, the chain and its bookkeeping.

One Router serves every session.  The relay asks it where a statement goes
(``decide``) and tells it what was sent (``after_statement``); everything the
routing chain reads about a session is derived here, so the relay stays about
bytes and links.
"""

from __future__ import annotations

import random
from dataclasses import replace

from . import logs
from .catalog import _EMPTY, CatalogCache
from .cluster import DDL, STAT_OF
from .logfmt import mask_secrets
from .logs import logger
from .lsn import LsnTracker
from .options import ConsistencyOptions
from .registry import build_chain, catalog_options, write_rules
from .routing import rules, stickiness
from .routing.values import (
    CatalogFacts,
    RouteDecision,
    RouteRequest,
    SessionView,
    Target,
    primary,
)
from .sql.classify import Classifier
from .sql.info import BOTH, EITHER

log = logger(__name__)

_STATUS = {ord("I"): "I", ord("T"): "T", ord("E"): "E"}
_DECISION_CACHE_MAX = 4096
_NO_FACTS = CatalogFacts()


class Router:
    PRIMARY = primary("primary: follows its statement").by("relay")

    def __init__(self, proxy, config, rng: random.Random | None = None):
        self.proxy = proxy
        self.config = config
        self.rng = rng or random.Random()
        self.chain = build_chain(config)
        self.rules = write_rules(config)
        # The classifier reads the text as the statement policy does.
        self.classifier = Classifier(
            allow_sql_comments=self.rules.allow_sql_comments,
            ignore_leading_white_space=self.rules.ignore_leading_white_space,
            max_length=config.classifier.max_length,
        )
        temp = catalog_options(config)
        functions = self.rules.functions
        # Volatility is asked of the catalog only when no function list decides instead.
        need_volatility = not (functions.write or functions.read_only)
        self.catalog = CatalogCache(temp.check_temp_table, temp.check_unlogged_table,
                                    need_volatility)
        # Decisions depend only on (statement, session state, cluster) unless a policy
        # looks at the raw text or draws per statement (IRoutingPolicy.cacheable).
        self._cacheable = self.chain.cacheable
        self._decisions: dict = {}
        # read_consistency: what was learnt survives a reload (the new Router takes it on).
        options = ConsistencyOptions.from_params(config.params)
        previous = getattr(getattr(proxy, "router", None), "consistency", None)
        if previous is not None:
            previous.configure(options, config)
            self.consistency = previous
        else:
            self.consistency = LsnTracker(getattr(proxy, "reactor", None),
                                          getattr(proxy, "cluster", None), options, config)
        # Without load balancing over two nodes or more no read reaches a replica.
        self.lsn_on = (options.on and config.load_balance_mode and len(config.backends) > 1
                       and self.chain.policy("read_consistency") is not None)

    @property
    def cacheable(self) -> bool:
        """Decisions depend only on statement, session state and cluster version."""
        return self._cacheable

    # -- classification and facts ---------------------------------------------------------
    def classify(self, sql: str):
        return self.classifier.classify(sql)

    def classify_parse(self, sql: str):
        return self.classifier.classify_parse(sql)

    def facts(self, database: str, info, s=None):
        body = info.prepared if info.prepared is not None else info
        sticky = getattr(s, "sticky", None)
        temp = sticky.visible_temp_tables if sticky is not None else frozenset()
        return self.catalog.facts(database, body, temp)

    def lookup(self, database: str, info, run):
        """Deferred CatalogFacts for ``info``, looked up now (temp tables are never cached);
        ``run(sql)`` runs the lookup query (on the session's link) and gives its rows."""
        body = info.prepared if info.prepared is not None else info
        d = self.catalog.lookup(database, body, run)
        d.addCallback(lambda _: self.catalog.facts_after_lookup(database, body))
        return d

    # -- decisions ----------------------------------------------------------------------------
    def request(self, info, s, facts, sql: str) -> RouteRequest:
        view = stickiness.session_view(
            s.sticky or stickiness.INITIAL, user=s.user, database=s.database,
            application_name=s.application_name, lb_node=s.lb_node,
            txn_status=s.route_status,
        )
        cluster = self.proxy.cluster.view()
        if self.lsn_on and info.route == EITHER:
            required, pending = self.consistency.need(s)
            if required > 0 or pending:
                view = replace(view, required_lsn=required, lsn_pending=pending)
                cluster = replace(cluster, replay_lsns=self.consistency.replay_lsns())
        return RouteRequest(info, view, cluster, facts, sql,
                            self.proxy.reactor.seconds(), self.rng.random())

    def decide(self, info, s, facts, sql: str) -> RouteDecision:
        if self._cacheable:
            # Keyed by identity (classifier results and sticky states are shared, immutable
            # objects); the entry keeps them alive and is checked, so an id is never reused.
            sticky = s.sticky
            key = (id(info), None if facts is _NO_FACTS or facts is _EMPTY else facts,
                   id(sticky), s.route_status, s.lb_node, self.proxy.cluster.version,
                   s.application_name,
                   self.consistency.fresh_key(s)
                   if self.lsn_on and info.route == EITHER else None)
            entry = self._decisions.get(key)
            if entry is not None and entry[0] is info and entry[1] is sticky:
                decision = entry[2]
            else:
                decision = self.chain.route(self.request(info, s, facts, sql))
                if len(self._decisions) >= _DECISION_CACHE_MAX:
                    self._decisions.clear()
                if not any(n.status == "down" for n in self.proxy.cluster.nodes):
                    self._decisions[key] = (info, sticky, decision)
        else:
            decision = self.chain.route(self.request(info, s, facts, sql))
        if log_debug():
            log.debug("session {pid}: {target} {node} by {policy}: {reason} <- {sql}",
                      pid=s.pid, target=decision.target.value, node=decision.node,
                      policy=decision.policy, reason=decision.reason,
                      sql=mask_secrets(sql[:200]))
        return decision

    def explain(self, info, s, facts, sql: str):
        return self.chain.explain(self.request(info, s, facts, sql))

    def node_of(self, decision: RouteDecision, s) -> str:
        target = decision.target
        if target is Target.NODE:
            return str(decision.node)
        if target is Target.EITHER:
            return str(s.lb_node)
        if target is Target.BOTH:
            return f"{s.primary_id},{s.lb_node}" if s.lb_node != s.primary_id else str(s.primary_id)
        if target is Target.REJECT:
            return ""
        return str(s.primary_id)

    def choose_lb_node(self, s) -> tuple[int | None, str]:
        if not self.config.load_balance_mode:
            return s.primary_id, "load_balance_mode is off"
        who = SessionView(user=s.user, database=s.database,
                          application_name=s.application_name, lb_node=None)
        return self.chain.balancer.choose(self.proxy.cluster.view(), who, self.rng.random(),
                                          self.rng.random())

    # -- bookkeeping ---------------------------------------------------------------------------
    def after_statement(self, s, info, decision, node_id: int, sql: str) -> None:
        """Record what sending ``info`` to ``node_id`` means for the session's later routing
        (the session's own bookkeeping is Session.statement_sent)."""
        if node_id is not None:
            if info.is_read:
                self.proxy.cluster.nodes[node_id].select_cnt += 1
            else:  # SHOW pool_backend_stats (NodeState.count, inlined)
                self.proxy.cluster.nodes[node_id].stats[STAT_OF.get(info.command, DDL)] += 1
        if s.consistency is not None:
            s.consistency.counted = None   # the next read is counted afresh
        if self.lsn_on and node_id == s.primary_id and (info.is_write or (
                info.functions and self._writes_functions(s, info))):
            self.consistency.record(s).dirty = True   # captured at its transaction's end
        if (info.is_read and info.route != BOTH and not info.functions
                and not info.serializable and not info.temp_tables_created
                and not info.tables_dropped and not info.has_leading_comment
                and info.command == "SELECT"):
            if not info.multi_statement:
                return  # a plain read: no write tracking, nothing for the session to keep
        else:
            # Everything but a plain read is run through the §1.4 rules.
            self._sticky_after(s, info, sql)
        s.statement_sent(info, node_id, sql)
        if info.command == "BEGIN" and info.multi_statement and info.is_write:
            # "BEGIN; INSERT ...": the writes happen inside the transaction it opens.
            self._sticky_after(s, replace(info, command="UNKNOWN"), sql)
        if info.temp_tables_created or info.tables_dropped:
            self.catalog.forget_tables(s.database, info.temp_tables_created + info.tables_dropped)

    def _writes_functions(self, s, info) -> bool:
        """A read calling a function that may write (write list, or volatile)."""
        facts = self.catalog.facts(s.database, info) or _NO_FACTS
        return bool(rules.writing_functions(info, facts, self.rules.functions))

    def _sticky_after(self, s, info, sql: str) -> None:
        facts = self.catalog.facts(s.database, info.prepared or info) or _NO_FACTS
        request = RouteRequest(info, stickiness.session_view(
            s.sticky or stickiness.INITIAL, user=s.user, database=s.database,
            application_name=s.application_name, lb_node=s.lb_node,
            txn_status=s.route_status,
        ), None, facts, sql)
        s.sticky = self.rules.after(s.sticky or stickiness.INITIAL, request, None)

    def after_ready(self, s, status: int, settled: bool) -> None:
        """A ReadyForQuery from the primary; ``settled``: nothing else is in flight there."""
        if settled:
            route_status = _STATUS.get(status, "I")
            if s.route_status == "I" and route_status != "I":
                # A transaction pgtwist did not see begin ("SELECT 1; BEGIN"): no standby
                # got its BEGIN, so it runs on the primary alone.
                s.sticky = replace(s.sticky or stickiness.INITIAL, txn_on_primary=True)
            s.route_status = route_status


def log_debug() -> bool:
    return logs.DEBUG
