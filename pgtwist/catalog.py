"""Catalog facts routing needs, looked up on the primary and cached per database.

Pgpool-II asks the primary whether a function is volatile and whether a table
is temporary or unlogged.  pgtwist asks once per (database, name), on the
asking session's own link to the primary (so lookups open no connections and
count against the pool's limits), and serves later statements from the cache.
SIGHUP clears it.

Temporary tables are session-specific: a name the catalog shows as temporary
(in any session) is routed to the primary; tables created by the session
itself are also traced by the relay.  Temp results are not cached, since they
come and go.
"""

from __future__ import annotations

from twisted.internet import defer

from .logs import logger
from .routing.values import CatalogFacts
from .sql.idents import quote_literal, split_qualified, strip_quotes

log = logger(__name__)

_EMPTY = CatalogFacts()


def _name_conditions(names, column: str) -> str:
    """``(column = 'x' AND n.nspname = 's') OR ...`` for possibly qualified names."""
    conds = []
    for name in names:
        schema, base = split_qualified(name)
        eq = "OPERATOR(pg_catalog.=)"
        cond = f"{column} {eq} {quote_literal(strip_quotes(base))}"
        if schema:
            cond += f" AND n.nspname {eq} {quote_literal(strip_quotes(schema))}"
        conds.append(f"({cond})")
    return " OR ".join(conds)


class CatalogCache:
    def __init__(self, check_temp_table: str, check_unlogged_table: bool,
                 need_volatility: bool):
        self.check_temp = check_temp_table == "catalog"
        self.check_unlogged = check_unlogged_table
        self.need_volatility = need_volatility
        self._volatile: dict[tuple[str, str], bool] = {}
        self._persistence: dict[tuple[str, str], str] = {}
        self.lookups = 0

    def clear(self) -> None:
        self._volatile.clear()
        self._persistence.clear()

    def forget_tables(self, database: str, names) -> None:
        for name in names:
            self._persistence.pop((database, name), None)

    def facts(self, database: str, info, session_temp=frozenset()) -> CatalogFacts | None:
        """Cached facts for ``info``, or None when a lookup is needed first.

        ``session_temp``: temp tables the session is known to have created; they need
        no lookup.
        """
        if not info.is_read:
            return _EMPTY
        funcs = info.functions if self.need_volatility else ()
        tables = info.tables_read if (self.check_temp or self.check_unlogged) else ()
        if not funcs and not tables:
            return _EMPTY
        volatile = []
        for f in funcs:
            v = self._volatile.get((database, f))
            if v is None:
                return None
            if v:
                volatile.append(f)
        temp, unlogged = [], []
        for t in tables:
            if t in session_temp:
                temp.append(t)
                continue
            p = self._persistence.get((database, t))
            if p is None:
                return None
            if p == "t":
                temp.append(t)
            elif p == "u":
                unlogged.append(t)
        if not volatile and not temp and not unlogged:
            return _EMPTY
        return CatalogFacts(frozenset(volatile), frozenset(temp), frozenset(unlogged))

    @defer.inlineCallbacks
    def lookup(self, database: str, info, run):
        """Fill the cache for ``info``'s functions and tables; errors leave names unknown-but-safe.

        ``run(sql)`` runs the query on the session's own link to the primary and gives its
        rows.  It may run inside the client's transaction under the client's settings, so
        the text depends on neither: every name is schema-qualified and every literal is an
        escape string (the same under any standard_conforming_strings).
        """
        self.lookups += 1
        funcs = [f for f in (info.functions if self.need_volatility else ())
                 if (database, f) not in self._volatile]
        tables = [t for t in (info.tables_read if (self.check_temp or self.check_unlogged) else ())
                  if (database, t) not in self._persistence]
        sql = []
        if funcs:
            sql.append(
                "SELECT 'f', p.proname, n.nspname, p.provolatile::pg_catalog.text "
                "FROM pg_catalog.pg_proc p "
                "JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) p.pronamespace "
                "WHERE " + _name_conditions(funcs, "p.proname")
            )
        if tables:
            sql.append(
                "SELECT 't', c.relname, n.nspname, c.relpersistence::pg_catalog.text "
                "FROM pg_catalog.pg_class c "
                "JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) c.relnamespace "
                "WHERE " + _name_conditions(tables, "c.relname")
            )
        rows = []
        if sql:
            try:
                rows = yield run(" UNION ALL ".join(sql))
            except Exception as exc:  # noqa: BLE001 - any failure means "unknown"
                # Not cached: this statement is routed as if its functions wrote and its
                # tables were temporary (the primary); the next one asks again.
                log.info("catalog lookup failed in database {db} ({why}); routing to the "
                         "primary", db=database, why=exc)
                return
        found_f: dict[str, bool] = {}
        found_t: dict[str, str] = {}
        for kind, name, schema, flag in rows:
            if kind == "f":
                for key in (name, f"{schema}.{name}"):
                    found_f[key] = found_f.get(key, False) or flag == "v"
            else:
                for key in (name, f"{schema}.{name}"):
                    # A temp table shadows a permanent one of the same name.
                    if found_t.get(key) != "t":
                        found_t[key] = flag
        for f in funcs:
            schema, base = split_qualified(f)
            key = f"{strip_quotes(schema)}.{strip_quotes(base)}" if schema else strip_quotes(base)
            # Unknown functions (not in pg_proc) cannot be volatile user functions: builtins
            # sqlglot names differently fall here too; treat them as not writing.
            self._volatile[(database, f)] = found_f.get(key, False)
        for t in tables:
            schema, base = split_qualified(t)
            key = f"{strip_quotes(schema)}.{strip_quotes(base)}" if schema else strip_quotes(base)
            p = found_t.get(key, "p")
            if p != "t":
                self._persistence[(database, t)] = p
            else:
                self._persistence.pop((database, t), None)

    def facts_after_lookup(self, database: str, info) -> CatalogFacts:
        """Facts right after ``lookup``: temp names are not cached, so re-derive them."""
        facts = self.facts(database, info)
        return facts if facts is not None else CatalogFacts(
            frozenset(f for f in info.functions if self._volatile.get((database, f), True)),
            frozenset(t for t in info.tables_read if (database, t) not in self._persistence),
            frozenset(t for t in info.tables_read if self._persistence.get((database, t)) == "u"),
        )
