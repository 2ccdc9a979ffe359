"""The built-in routing policies: Pgpool-II's rules, one link of the chain each.

Each policy has an options value parsed by ``parse_<name>(raw, path)`` from
either the flat Pgpool-II parameters or a ``routing.policies[i]`` block (same
keys), and a class built from it.  Policies other than ``statement`` only
judge reads (QueryInfo.route EITHER): they never turn a BOTH statement into a
PRIMARY one.  The factories that plug them into twisted.plugin live in
``plugins/pgtwist_builtin.py``.
"""

from __future__ import annotations

from dataclasses import dataclass

from zope.interface import implementer

from ..interfaces import IRoutingPolicy
from ..sql.info import BOTH, EITHER
from . import rules
from .consistency import KEYS as CONSISTENCY_KEYS
from .consistency import ReadConsistencyPolicy, parse_read_consistency
from .lbpolicy import (  # noqa: F401 (part of the built-in set)
    BALANCER_KEYS,
    BalancerOptions,
    WeightedBalancerPolicy,
    parse_weighted_balancer,
)
from .options import MODES, OptionReader
from .values import UNDECIDED, RouteDecision, RouteRequest, both, primary

NO_LOAD_BALANCE = "NO LOAD BALANCE"


# --- statement ------------------------------------------------------------------------------


@dataclass(frozen=True)
class StatementOptions:
    load_balance_mode: bool = True
    allow_sql_comments: bool = False
    ignore_leading_white_space: bool = True


STATEMENT_KEYS = ("load_balance_mode", "allow_sql_comments", "ignore_leading_white_space")


def parse_statement(raw: object, path: str = "") -> StatementOptions:
    r = OptionReader(raw, path, STATEMENT_KEYS)
    options = StatementOptions(r.bool("load_balance_mode", True),
                               r.bool("allow_sql_comments", False),
                               r.bool("ignore_leading_white_space", True))
    r.done()
    return options


# Constant decisions are credited up front so the chain need not copy them per statement.
_LB_OFF = primary("primary: load_balance_mode is off").by("statement")
_MULTI = primary("primary: multi-statement query").by("statement")
_UNPARSED = primary("primary: could not parse").by("statement")
_CATALOG = primary("primary: references system catalog").by("statement")
_HINT = primary("primary: /*NO LOAD BALANCE*/ comment").by("statement")
_ABORTED = primary("primary: read in an aborted transaction").by("statement")
_SERIALIZABLE = primary("primary: read in a SERIALIZABLE transaction").by("statement")
_TXN_ON_PRIMARY = primary("primary: the transaction began in a multi-statement query, "
                          "no standby is in it").by("statement")
_TXN_SETTING = primary("primary: reads a transaction setting, which only the node running "
                       "the transaction knows").by("statement")
_SAVEPOINTS = frozenset({"SAVEPOINT", "RELEASE", "ROLLBACK TO"})


def _static_decision(command: str, to_both: bool, is_write: bool) -> RouteDecision:
    if to_both:
        return both(f"both: {command} goes to the primary and the load-balance node"
                    ).by("statement")
    what = "is a write" if is_write else "is not load balanced"
    return primary(f"primary: {command} {what}").by("statement")


@implementer(IRoutingPolicy)
class StatementPolicy:
    """The statement's own destination and the §1.2/§1.3 preconditions for balancing it."""

    name = "statement"
    # The text is read only for its first characters, which the classifier's shape key keeps.
    cacheable = True

    def __init__(self, options: StatementOptions = StatementOptions()) -> None:
        self.options = options
        self._static: dict[tuple[str, bool, bool], RouteDecision] = {}  # per command word

    def route(self, request: RouteRequest) -> RouteDecision:
        q = request.query
        o = self.options
        if not o.load_balance_mode:
            return _LB_OFF  # §1.1: even BOTH statements go to the primary only
        if q.multi_statement:
            return _MULTI
        if q.parse_error:
            return _UNPARSED
        if q.route != EITHER:
            if q.command in _SAVEPOINTS and request.session.txn_on_primary:
                return _TXN_ON_PRIMARY  # §1.3: PRIMARY in a multi-statement-begun transaction
            key = (q.command, q.route == BOTH, q.is_write)
            decision = self._static.get(key)
            if decision is None:
                decision = self._static[key] = _static_decision(*key)
            return decision
        if NO_LOAD_BALANCE in q.hints:
            return _HINT
        if q.reads_txn_setting:
            return _TXN_SETTING  # a standby says read only / its own default isolation
        why = rules.not_select_reason(q, request.sql, o.allow_sql_comments,
                                      o.ignore_leading_white_space)
        if why is not None:
            return primary(f"primary: {why}")
        if q.touches_catalog:
            return _CATALOG
        s = request.session
        if s.in_transaction:
            if s.txn_failed:
                return _ABORTED
            if s.serializable:
                return _SERIALIZABLE
            if s.txn_on_primary:
                return _TXN_ON_PRIMARY
        return UNDECIDED


# --- pattern_list ---------------------------------------------------------------------------


@dataclass(frozen=True)
class PatternOptions:
    patterns: tuple[rules.Pattern, ...] = ()


PATTERN_KEYS = ("primary_routing_query_pattern_list",)


def parse_pattern_list(raw: object, path: str = "") -> PatternOptions:
    r = OptionReader(raw, path, PATTERN_KEYS)
    key = PATTERN_KEYS[0]
    patterns = rules.compile_patterns(r.items(key, ";"), r.where(key), r.errors, ignore_case=True)
    r.done()
    return PatternOptions(patterns)


@implementer(IRoutingPolicy)
class PatternListPolicy:
    """primary_routing_query_pattern_list: anchored, case-insensitive, on the whole text (§1.1)."""

    name = "pattern_list"

    def __init__(self, options: PatternOptions = PatternOptions()) -> None:
        self.patterns = options.patterns
        self.cacheable = not self.patterns  # patterns match the text, literals included

    def route(self, request: RouteRequest) -> RouteDecision:
        if not self.patterns or request.query.route != EITHER:
            return UNDECIDED
        hit = rules.first_match(self.patterns, request.sql)
        if hit is None:
            return UNDECIDED
        return primary(f"primary: matches primary_routing_query_pattern_list entry {hit.index}")


# --- function_list --------------------------------------------------------------------------

FUNCTION_KEYS = ("write_function_list", "read_only_function_list")


def parse_function_list(raw: object, path: str = "") -> rules.FunctionOptions:
    r = OptionReader(raw, path, FUNCTION_KEYS)
    write = rules.compile_patterns(r.items("write_function_list"),
                                   r.where("write_function_list"), r.errors)
    read_only = rules.compile_patterns(r.items("read_only_function_list"),
                                       r.where("read_only_function_list"), r.errors)
    if write and read_only:
        r.error("write_function_list", "cannot be combined with read_only_function_list "
                                       "(set only one of them)")
    r.done()
    return rules.FunctionOptions(write, read_only)


@implementer(IRoutingPolicy)
class FunctionListPolicy:
    """Reads calling a writing function go to the primary (§1.1, §1.2 item 6)."""

    name = "function_list"
    cacheable = True

    def __init__(self, options: rules.FunctionOptions | None = None) -> None:
        self.options = options = options or rules.FunctionOptions()
        self._lists = bool(options.write or options.read_only)
        if options.write:
            self._why = "primary: function {} matches write_function_list"
        elif options.read_only:
            self._why = "primary: function {} is not in read_only_function_list"
        else:
            self._why = "primary: function {} is volatile"

    def route(self, request: RouteRequest) -> RouteDecision:
        q = request.query
        if not q.functions or q.route != EITHER:
            return UNDECIDED
        refused = rules.standby_refused(q)
        if refused is not None:
            return primary(f"primary: function {refused} cannot run on a standby")
        if not self._lists and not request.catalog.volatile_functions:
            return UNDECIDED
        found = rules.writing_functions(q, request.catalog, self.options)
        return primary(self._why.format(found[0])) if found else UNDECIDED


# --- temp_tables ----------------------------------------------------------------------------


@dataclass(frozen=True)
class TempTableOptions:
    check_temp_table: str = "catalog"     # catalog | trace | none
    check_unlogged_table: bool = True


TEMP_KEYS = ("check_temp_table", "check_unlogged_table")


def parse_temp_tables(raw: object, path: str = "") -> TempTableOptions:
    r = OptionReader(raw, path, TEMP_KEYS)
    options = TempTableOptions(
        r.choice("check_temp_table", "catalog", ("catalog", "trace", "none"),
                 {"on": "catalog", "off": "none"}),
        r.bool("check_unlogged_table", True))
    r.done()
    return options


@implementer(IRoutingPolicy)
class TempTablePolicy:
    """Reads of temporary or unlogged tables go to the primary (§1.2 item 4)."""

    name = "temp_tables"
    cacheable = True

    def __init__(self, options: TempTableOptions = TempTableOptions()) -> None:
        self.mode = options.check_temp_table
        self.unlogged = options.check_unlogged_table

    def route(self, request: RouteRequest) -> RouteDecision:
        q = request.query
        if q.route != EITHER or not (q.tables_read or q.tables_written):
            return UNDECIDED
        if self.mode == "trace":
            temps = request.session.temp_tables
        elif self.mode == "catalog":
            temps = request.catalog.temp_tables
        else:
            temps = frozenset()
        unlogged = request.catalog.unlogged_tables if self.unlogged else frozenset()
        if not temps and not unlogged:
            return UNDECIDED
        for table in q.tables:
            if temps and rules.name_in(table, temps):
                return primary(f"primary: {table} is a temporary table")
            if unlogged and rules.name_in(table, unlogged):
                return primary(f"primary: {table} is an unlogged table")
        return UNDECIDED


# --- stickiness -----------------------------------------------------------------------------


@dataclass(frozen=True)
class StickinessOptions:
    mode: str = "transaction"
    relationships: tuple[tuple[str, str], ...] = ()


STICKINESS_KEYS = ("disable_load_balance_on_write", "dml_adaptive_object_relationship_list")


def parse_stickiness(raw: object, path: str = "") -> StickinessOptions:
    r = OptionReader(raw, path, STICKINESS_KEYS)
    mode = r.choice("disable_load_balance_on_write", "transaction", MODES)
    key = "dml_adaptive_object_relationship_list"
    relationships = rules.parse_relationships(r.items(key), r.where(key), r.errors)
    r.done()
    return StickinessOptions(mode, relationships)


@implementer(IRoutingPolicy)
class StickinessPolicy:
    """disable_load_balance_on_write: reads after writes (§1.4); state from stickiness.py."""

    name = "stickiness"
    cacheable = True

    def __init__(self, options: StickinessOptions = StickinessOptions()) -> None:
        self.mode = options.mode
        self.relationships = options.relationships
        where = {"transaction": "in this transaction",
                 "trans_transaction": "in this or an earlier transaction",
                 "always": "in this session"}.get(self.mode, "")
        self._sticky = primary(f"primary: write earlier {where} "
                               f"(disable_load_balance_on_write={self.mode})").by(self.name)

    def route(self, request: RouteRequest) -> RouteDecision:
        mode = self.mode
        if mode == "off" or request.query.route != EITHER:
            return UNDECIDED
        s = request.session
        if mode == "always":
            return self._sticky if s.writing_transaction else UNDECIDED
        if not s.in_transaction:
            return UNDECIDED  # §1.4: outside explicit transactions reads stay balanced
        if mode != "dml_adaptive":
            return self._sticky if s.writing_transaction else UNDECIDED
        if not s.written_objects:
            return UNDECIDED
        written = rules.expand_objects(s.written_objects, self.relationships)
        for table in request.query.tables:
            if rules.bare(table).lower() in written:
                return primary(f"primary: {table} was written in this transaction "
                               f"(disable_load_balance_on_write=dml_adaptive)")
        return UNDECIDED


POLICIES = {
    "statement": (STATEMENT_KEYS, parse_statement, StatementPolicy),
    "pattern_list": (PATTERN_KEYS, parse_pattern_list, PatternListPolicy),
    "function_list": (FUNCTION_KEYS, parse_function_list, FunctionListPolicy),
    "temp_tables": (TEMP_KEYS, parse_temp_tables, TempTablePolicy),
    "stickiness": (STICKINESS_KEYS, parse_stickiness, StickinessPolicy),
    "read_consistency": (CONSISTENCY_KEYS, parse_read_consistency, ReadConsistencyPolicy),
    "weighted_balancer": (BALANCER_KEYS, parse_weighted_balancer, WeightedBalancerPolicy),
}
"""name -> (option keys, parse(raw, path) -> options, policy class); the default chain order."""

DEFAULT_ORDER = tuple(POLICIES)
