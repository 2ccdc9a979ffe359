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
from .catalog import _EMPTY, CatalogCache, quote_literal
from .logs import logger
from .registry import build_chain, catalog_options, write_rules
from .routing import stickiness
from .routing.values import (
    CatalogFacts,
    RouteDecision,
    RouteRequest,
    SessionView,
    Target,
    primary,
)
from .sql import state as sql_state
from .sql.classify import Classifier
from .sql.info import BOTH

log = logger(__name__)

_STATUS = {ord("I"): "I", ord("T"): "T", ord("E"): "E"}
# Session-state commands a link opened later must replay.
_REPLAYED = frozenset({"SET", "RESET", "DISCARD"})
_MAX_REPLAY = 256


# Settings the server reports with ParameterStatus that a client may change.
_REPORTED_SETTABLE = frozenset({"application_name", "client_encoding", "DateStyle",
                                "IntervalStyle", "TimeZone", "standard_conforming_strings",
                                "search_path"})


def _savepoint(s, command: str, sql: str, name: str | None = None) -> None:
    """SAVEPOINT / ROLLBACK TO / RELEASE: the SETs made after a savepoint rolled back to
    never happened (PostgreSQL undoes them too).  ``name``: the savepoint, if known
    (QueryInfo.savepoint_name); else it is read from ``sql``."""
    if name is None:
        name = sql_state.savepoint_name(sql)
        if name is None:
            return
    if command == "SAVEPOINT":
        s.savepoints.append((name, list(s.replay)))
        return
    for i in range(len(s.savepoints) - 1, -1, -1):
        if s.savepoints[i][0] == name:
            if command == "ROLLBACK TO":
                s.replay[:] = s.savepoints[i][1]
                del s.savepoints[i + 1:]  # the savepoint itself stays
            else:
                del s.savepoints[i:]
            return


def _remember_state(s, sql: str, info=None) -> None:
    """Record a session-state statement for links the session uses later (in order; a
    repeated one moves to the end, so setting a value back is kept).  ``info``: its
    QueryInfo, if classified; else the facts are read from ``sql``."""
    if info is not None:
        local, reset = info.set_local, info.reset_all
    else:
        local, reset = sql_state.set_local(sql), sql_state.reset_all(sql)
    if local:
        return
    if reset:
        s.replay.clear()
        return
    if sql in s.replay:
        s.replay.remove(sql)
    s.replay.append(sql)
    del s.replay[:-_MAX_REPLAY]

def _last_states(parts: list[str]) -> list[str]:
    """The parts whose _remember_state calls decide the record (a long multi-statement
    text): from the last RESET ALL on, each distinct text's last occurrence, at most
    _MAX_REPLAY of them; the same record, without one list scan per part."""
    keep: list[str] = []
    seen: set[str] = set()
    for part in reversed(parts):
        if part in seen or sql_state.set_local(part):
            continue
        seen.add(part)
        keep.append(part)
        if sql_state.reset_all(part) or len(keep) > _MAX_REPLAY:
            break
    keep.reverse()
    return keep


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
        return RouteRequest(info, view, self.proxy.cluster.view(), facts, sql,
                            self.proxy.reactor.seconds(), self.rng.random())

    def decide(self, info, s, facts, sql: str) -> RouteDecision:
        if self._cacheable:
            # Keyed by identity (classifier results and sticky states are shared, immutable
            # objects); the entry keeps them alive and is checked, so an id is never reused.
            sticky = s.sticky
            key = (id(info), None if facts is _NO_FACTS or facts is _EMPTY else facts,
                   id(sticky), s.route_status, s.lb_node, self.proxy.cluster.version,
                   s.application_name)
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
                      policy=decision.policy, reason=decision.reason, sql=sql[:200])
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
        """Record what sending ``info`` to ``node_id`` means for the session's later routing."""
        command = info.command
        if info.is_read and node_id is not None:
            self.proxy.cluster.nodes[node_id].select_cnt += 1
        if not (info.is_read and info.route != BOTH and not info.functions
                and not info.serializable and not info.temp_tables_created
                and not info.tables_dropped and not info.has_leading_comment
                and command == "SELECT"):
            # A plain read changes no write-tracking state; everything else is run
            # through the §1.4 rules.
            self._sticky_after(s, info, sql)
        # Predicted transaction state, for statements routed before their answers arrive.
        if command == "BEGIN":
            s.route_status = "T"
            # A standby joins the transaction with its BEGIN, never with the rest of a
            # multi-statement Query (that transaction stays on the primary: txn_on_primary).
            s.txn_begin_for_standby = None if info.multi_statement else (info.standby_text or sql)
            s.replay_before_txn = list(s.replay)
        elif info.is_transaction_end:
            if s.replay_before_txn is not None and (command == "ROLLBACK"
                                                    or s.route_status == "E"):
                s.replay[:] = s.replay_before_txn  # its SETs were rolled back too
            s.replay_before_txn = None
            s.savepoints.clear()
            s.route_status = "I"
            s.txn_begin_for_standby = None
        elif command in ("SAVEPOINT", "ROLLBACK TO", "RELEASE") and s.route_status != "I":
            if info.savepoint_name is not None:
                _savepoint(s, command, sql, info.savepoint_name)
        if command == "BEGIN" and info.multi_statement and info.is_write:
            # "BEGIN; INSERT ...": the writes happen inside the transaction it opens.
            self._sticky_after(s, replace(info, command="UNKNOWN"), sql)
        implicit = s.route_status == "I" and command != "BEGIN"
        if command in _REPLAYED and info.route == BOTH:
            if implicit and s.implicit_undo is None:
                s.implicit_undo = list(s.replay)
            _remember_state(s, sql, info)
        elif info.multi_statement and sql_state.may_change_settings(sql):
            if implicit and s.implicit_undo is None:
                s.implicit_undo = list(s.replay)
            parts = sql_state.setting_statements(sql)
            if len(parts) > _MAX_REPLAY:
                parts = _last_states(parts)
            for part in parts:
                _remember_state(s, part)
        if info.prepare_name is not None and info.prepared is not None:
            from .session import SqlPrepared

            s.sql_prepared[info.prepare_name] = SqlPrepared(sql, info.prepared, {node_id},
                                                            info.prepare_name)
        elif info.deallocate_name is not None:
            if info.deallocate_name == "*":
                s.sql_prepared.clear()
            else:
                s.sql_prepared.pop(info.deallocate_name, None)
        if info.discard_all and s.route_status == "I":
            s.sql_prepared.clear()  # (DISCARD ALL fails inside a transaction block)
        if info.temp_tables_created or info.tables_dropped:
            self.catalog.forget_tables(s.database, info.temp_tables_created + info.tables_dropped)

    def _sticky_after(self, s, info, sql: str) -> None:
        facts = self.catalog.facts(s.database, info.prepared or info) or _NO_FACTS
        request = RouteRequest(info, stickiness.session_view(
            s.sticky or stickiness.INITIAL, user=s.user, database=s.database,
            application_name=s.application_name, lb_node=s.lb_node,
            txn_status=s.route_status,
        ), None, facts, sql)
        s.sticky = self.rules.after(s.sticky or stickiness.INITIAL, request, None)

    def remember_parameter(self, s, name: str, value: str) -> None:
        """A reported setting changed in the client's view: keep it for later links."""
        if name in _REPORTED_SETTABLE:
            _remember_state(s, f"SET {name} TO {quote_literal(value)}")

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
