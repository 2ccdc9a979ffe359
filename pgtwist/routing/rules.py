"""Small Pgpool-II rules shared by several policies and by the stickiness tracker.

Everything here is pure: QueryInfo + text + options in, an answer out.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..sql.info import QueryInfo
from .values import CatalogFacts

# Pgpool-II regexes are POSIX EREs compiled without REG_NEWLINE, so '.' matches a newline.
_FLAGS = re.DOTALL


@dataclass(frozen=True)
class Pattern:
    """One anchored regex from a list parameter, with its 1-based position for messages."""

    text: str
    index: int
    regex: re.Pattern

    def matches(self, value: str) -> bool:
        return self.regex.fullmatch(value) is not None


def compile_patterns(items: tuple[str, ...], where: str, errors: list[str], *,
                     ignore_case: bool = False) -> tuple[Pattern, ...]:
    """Compile list entries as anchored regexes; a bad one is an error naming key and entry."""
    flags = _FLAGS | (re.IGNORECASE if ignore_case else 0)
    out = []
    for i, text in enumerate(items, 1):
        try:
            out.append(Pattern(text, i, re.compile(text, flags)))
        except re.error as exc:
            errors.append(f"{where}: entry {i} {text!r}: bad regular expression: {exc}")
    return tuple(out)


def first_match(patterns: tuple[Pattern, ...], value: str) -> Pattern | None:
    for p in patterns:
        if p.matches(value):
            return p
    return None


def bare(name: str) -> str:
    """'public.t' -> 't': the unqualified name, for comparisons that must not miss a match."""
    return name.rsplit(".", 1)[-1]


def name_in(name: str, names: frozenset[str]) -> bool:
    """Whether ``name`` (qualified or not) is in ``names`` (qualified or not)."""
    if name in names:
        return True
    short = bare(name)
    return short in names or any(bare(n) == short for n in names)


# --- is_select_query ------------------------------------------------------------------------

# Commands Pgpool-II parses as a SelectStmt: its leading-character rule applies to them only.
_SELECT_STMTS = frozenset({"SELECT", "TABLE", "VALUES"})
_SELECT_START = frozenset("sS(wWtT;")


def not_select_reason(query: QueryInfo, sql: str, allow_sql_comments: bool,
                      ignore_leading_white_space: bool) -> str | None:
    """Why Pgpool-II's is_select_query() is false for a read, or None if it is true.

    With allow_sql_comments off, a SELECT must start with s/S/(/w/W/t/T after
    (optionally skipped) white space (§1.3), so a leading comment or a bare
    VALUES is not a read.  Without the text, the classifier's
    has_leading_comment stands in.
    """
    if not query.is_read:
        return f"{query.command} is not a read"
    if allow_sql_comments or query.command not in _SELECT_STMTS:
        return None
    if not sql:
        return "starts with a comment (allow_sql_comments=off)" if query.has_leading_comment else None
    text = sql.lstrip() if ignore_leading_white_space else sql
    if not text or text[0] in _SELECT_START:
        return None
    if text.startswith(("/*", "--")):
        return "starts with a comment (allow_sql_comments=off)"
    if text[0].isspace():
        return "starts with white space (ignore_leading_white_space=off)"
    return f"{query.command} does not start with SELECT, WITH or TABLE (allow_sql_comments=off)"


_PREPARE_BODY = re.compile(r"\s*PREPARE\s.*?\bAS\s+(.*)\Z", re.IGNORECASE | re.DOTALL)


def prepared_body_sql(sql: str) -> str:
    """'PREPARE p (int) AS SELECT $1' -> 'SELECT $1' ('' if it cannot be found)."""
    m = _PREPARE_BODY.match(sql)
    return m[1] if m else ""


# --- writing functions ----------------------------------------------------------------------


@dataclass(frozen=True)
class FunctionOptions:
    """write_function_list / read_only_function_list (anchored regexes, at most one set)."""

    write: tuple[Pattern, ...] = ()
    read_only: tuple[Pattern, ...] = ()


def _function_match(patterns: tuple[Pattern, ...], name: str) -> Pattern | None:
    # A schema-qualified call matches an entry written either way.
    return first_match(patterns, name) or (first_match(patterns, bare(name)) if "." in name else None)


def writing_functions(query: QueryInfo, catalog: CatalogFacts,
                      options: FunctionOptions) -> tuple[str, ...]:
    """The functions of ``query`` that count as writes (§1.1, §1.2 item 6).

    write_function_list set: the functions matching it.  read_only_function_list
    set: the functions NOT matching it.  Both empty: the volatile ones
    (``catalog.volatile_functions``).  A SELECT calling any of them goes to
    the primary and counts as a write for disable_load_balance_on_write.
    """
    if not query.functions:
        return ()
    if options.write:
        found = [f for f in query.functions if _function_match(options.write, f)]
    elif options.read_only:
        found = [f for f in query.functions if not _function_match(options.read_only, f)]
    else:
        volatile = catalog.volatile_functions
        found = [f for f in query.functions if volatile and name_in(f, volatile)]
    return tuple(dict.fromkeys(found))


# Built-in functions a hot standby refuses whatever their catalog volatility says:
# pg_current_xact_id() and txid_current() are STABLE but assign a transaction id
# (25006 on a standby); the WAL-position and WAL-writing ones fail with 55000.
STANDBY_REFUSED_FUNCTIONS = frozenset({
    "pg_current_xact_id", "txid_current", "pg_current_wal_lsn", "pg_current_wal_insert_lsn",
    "pg_current_wal_flush_lsn", "pg_switch_wal", "pg_create_restore_point",
    "pg_log_standby_snapshot",
})


def standby_refused(query: QueryInfo) -> str | None:
    """The first function of ``query`` a standby cannot run (see STANDBY_REFUSED_FUNCTIONS)."""
    for f in query.functions:
        if bare(f).lower() in STANDBY_REFUSED_FUNCTIONS:
            return f
    return None


# --- dml_adaptive_object_relationship_list --------------------------------------------------


def parse_relationships(items: tuple[str, ...], where: str,
                        errors: list[str]) -> tuple[tuple[str, str], ...]:
    """'table1:table2,func1():table3' -> (('table1', 'table2'), ('func1()', 'table3'))."""
    out = []
    for i, text in enumerate(items, 1):
        left, sep, right = text.partition(":")
        left, right = left.strip(), right.strip()
        if not sep or not left or not right or ":" in right:
            errors.append(f"{where}: entry {i} {text!r}: expected object:dependent_object")
            continue
        out.append((_object_key(left), _object_key(right)))
    return tuple(out)


def _object_key(name: str) -> str:
    """Relationship objects are compared unqualified and lower-cased; 'f()' marks a function."""
    name = name.strip().lower()
    if name.endswith("()"):
        return bare(name[:-2].strip()) + "()"
    return bare(name)


def function_object(name: str) -> str:
    """How a written-to function is recorded in written_objects: 'nextval()'."""
    return bare(name).lower() + "()"


def expand_objects(written: frozenset[str],
                   relationships: tuple[tuple[str, str], ...]) -> frozenset[str]:
    """Written objects plus their direct dependents, all as comparison keys."""
    keys = {_object_key(w) for w in written}
    keys.update(dep for obj, dep in relationships if obj in keys)
    return frozenset(keys)
