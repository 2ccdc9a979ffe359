"""Classify SQL text into a :class:`QueryInfo` (the only module importing sqlglot).

Routing follows Pgpool-II's ``send_to_where()`` and ``is_select_query()``
(reference §1.3), with these readings written down once:

* First-character rule.  With ``allow_sql_comments`` off, a SELECT-shaped
  statement (SELECT, WITH of SELECTs, TABLE, VALUES, parenthesised SELECT)
  is a read only if the Query text, after whitespace when
  ``ignore_leading_white_space`` is on, starts with s/S/w/W/t/T/( (or is
  empty or ';').  Otherwise - a leading comment, a bare VALUES - Pgpool's
  is_select_query() is false, so the statement goes to the primary AND counts
  as a write for disable_load_balance_on_write: here route=PRIMARY,
  is_read=False, is_write=True.  With ``allow_sql_comments`` on, comments and
  whitespace are ignored and VALUES is a read.  The rule applies to the
  top-level statement only (not to the body of PREPARE/EXPLAIN/COPY/DECLARE).
* is_write is ``not is_read`` except for transaction control (BEGIN, COMMIT,
  ROLLBACK, SAVEPOINT, RELEASE, 2PC), SET/RESET, SHOW, DISCARD, DEALLOCATE,
  weak LOCK (ACCESS SHARE, ROW SHARE), PGPOOL/PGTWIST commands and the empty
  query, which are neither.  So DECLARE/FETCH/MOVE/CLOSE, LISTEN/UNLISTEN/
  NOTIFY, EXECUTE, DDL, CALL/DO and COPY FROM/TO file are writes, as in
  Pgpool-II.  (Pgpool-II's code also counts SET, SAVEPOINT, DISCARD and
  DEALLOCATE as writes; pgtwist's QueryInfo contract does not.)
* SQL PREPARE takes its body's route, is_read and is_write; EXECUTE is
  PRIMARY and a write until the relay maps it to its PREPARE's nodes.
* EXPLAIN is PRIMARY (the streaming-mode code, §12).  It is a read unless
  ANALYZE runs a statement that writes; without ANALYZE every table it names
  is only read.
* route is send_to_where() plus is_select_query(): a read of a system
  catalog stays EITHER with touches_catalog set, as do reads calling
  volatile functions; the routing chain applies those §1.2 preconditions.
* Statements sqlglot cannot parse: route PRIMARY, parse_error, is_write.
* Multi-statement Query strings: PRIMARY; command and the PREPARE/EXECUTE/
  DEALLOCATE names are the first statement's; is_read if all parts are reads,
  is_write if any part writes; tables, functions and flags are unioned.
* Texts longer than ``max_length``, or with more than ``max_statements``
  semicolons or ``max_parens`` opening parentheses, are not parsed (sqlglot
  would hold the event loop for up to seconds): PRIMARY, a write, ``bounded``
  set, not cached.  Only the first statement, if short, is classified (for
  transaction control), else its first words (for the DML target table).
"""

from __future__ import annotations

import logging
import re
from collections import OrderedDict
from dataclasses import dataclass, replace

import sqlglot
from sqlglot import exp

from . import state
from .idents import fold, fold_name
from .info import BOTH, EITHER, PRIMARY, QueryInfo
from .normalize import (
    Token,
    is_word,
    matching_paren,
    pg_false,
    read_name,
    read_names,
    scan,
    shape_key,
    shorten_lists,
    tokens,
    transaction_modes,
)
from .split import statement_ends

# sqlglot logs a warning whenever it falls back to an opaque Command; we treat
# that as "cannot parse" ourselves, so keep its log quiet.
if logging.getLogger("sqlglot").level == logging.NOTSET:
    logging.getLogger("sqlglot").setLevel(logging.ERROR)

_DIALECT = sqlglot.Dialect.get_or_raise("postgres")
_SPACE = " \t\n\r\v\f"
_READ_START = frozenset("sSwWtT(;")

_EMPTY = QueryInfo("EMPTY", PRIMARY)
_DML = (exp.Insert, exp.Update, exp.Delete, exp.Merge)
_QUERY = (exp.Select, exp.SetOperation, exp.Subquery, exp.Values)
_DML_COMMAND = {exp.Insert: "INSERT", exp.Update: "UPDATE", exp.Delete: "DELETE",
                exp.Merge: "MERGE"}
_SQLGLOT_KEYWORDS = frozenset(("select", "with", "values", "table", "insert", "update",
                               "delete", "merge"))
# Typed sqlglot nodes that are not PostgreSQL function calls, or are SQL value
# keywords (CURRENT_DATE...) when written without parentheses.
_NOT_CALLS = tuple(getattr(exp, n) for n in (
    "Cast", "TryCast", "Exists", "Case", "If", "Array", "Struct", "Binary", "Collate",
) if hasattr(exp, n))
_VALUE_KEYWORDS = tuple(getattr(exp, n) for n in (
    "CurrentDate", "CurrentTime", "CurrentTimestamp", "CurrentUser", "CurrentSchema",
    "CurrentRole", "CurrentCatalog", "SessionUser", "Localtime", "Localtimestamp",
) if hasattr(exp, n))
_ARRAY_SUFFIX = re.compile(r'(?i)\b((?!array\b)[\w$]+|"[^"]*")(?:\s*\[\s*\])+')
# Longer texts, or texts with more semicolons or parentheses, get the bounded
# classification: sqlglot costs up to ~10 us a byte, ~100 us a statement, and
# more for deep nesting, all on the event loop.
MAX_LENGTH = 8192
MAX_STATEMENTS = 32
MAX_PARENS = 256
# A bounded text's first statement is classified in full only up to this length;
# a longer one only by its first words (the DML target table).
_HEAD_MAX = 1024
_HEAD_WORDS = 400
_HEAD_PARENS = 16
_LEAD = re.compile(r"[\s;]*")
_DML_TARGET = {"insert": ("INSERT", "into"), "update": ("UPDATE", None),
               "delete": ("DELETE", "from")}
_CATALOG_SCHEMAS = frozenset(("pg_catalog", "information_schema"))
_WEAK_LOCKS = frozenset(("access share", "row share"))


@dataclass
class ClassifierStats:
    hits: int = 0
    misses: int = 0
    parse_errors: int = 0    # classifications (not cache hits) sqlglot failed on
    bounded: int = 0         # texts too long or with too many statements to parse


def _uniq(items) -> tuple[str, ...]:
    return tuple(dict.fromkeys(items))


def _ident(node) -> str:
    if isinstance(node, exp.Identifier):
        return fold_name(node.name, node.quoted)
    return fold_name(node.name if isinstance(node, exp.Expression) else str(node), False)


def _table_name(t: exp.Table) -> str:
    parts = [t.args.get("catalog"), t.args.get("db"), t.this]
    return ".".join(_ident(p) for p in parts if p)


def _position(node: exp.Expression) -> int:
    meta = node.this._meta if isinstance(node.this, exp.Expression) else None
    return meta.get("start", 0) if meta else 0


def _dotted(node) -> str | None:
    if isinstance(node, exp.Dot):
        left, right = _dotted(node.this), _dotted(node.expression)
        return f"{left}.{right}" if left and right else None
    if isinstance(node, exp.Column):
        return ".".join(_ident(p) for p in node.parts)
    if isinstance(node, (exp.Identifier, exp.Var)):
        return _ident(node)
    return None


def _function_name(f: exp.Func, src: str) -> str | None:
    """The function's PostgreSQL name as written ('now', 'myschema.f'), or None."""
    if isinstance(f, _NOT_CALLS):       # CAST, ARRAY(...), ROW(...), operators
        return None
    meta = f._meta
    if meta and "start" in meta and "end" in meta:
        raw = src[meta["start"]:meta["end"] + 1]
        name = fold(raw)
        if name == "row":               # ROW(...) constructs a row, calls nothing
            return None
    elif isinstance(f, _VALUE_KEYWORDS):  # CURRENT_DATE and friends: not calls
        return None
    elif isinstance(f, exp.Anonymous):
        name = _ident(f.this)
    else:       # special syntax such as SUBSTRING(x FROM 1), string_agg(...)
        head = f.sql(dialect="postgres").split("(", 1)
        if len(head) < 2 or not head[0].replace("_", "").isalnum():
            return None
        name = head[0].lower()
    parent = f.parent
    if isinstance(parent, exp.Dot) and parent.expression is f:
        qual = _dotted(parent.this)
        return f"{qual}.{name}" if qual else name
    if isinstance(parent, exp.Table) and parent.this is f:
        quals = [_ident(p) for p in (parent.args.get("catalog"), parent.args.get("db")) if p]
        return ".".join([*quals, name])
    return name


def _only_parameters(sql: str, key: str) -> bool:
    """No inline literal, only $n parameters: the exact text is likely to recur
    (a wrong guess only costs a cache slot)."""
    return key.count("\x00") <= sql.count("$")


def _sqlglot(text: str) -> list[exp.Expression] | None:
    try:
        return [t for t in _DIALECT.parse(text) if t is not None]
    except Exception:   # sqlglot raises ParseError, TokenError and others
        return None


def _is_catalog(name: str) -> bool:
    parts = name.split(".")
    return parts[-1].startswith("pg_") or (len(parts) > 1 and parts[-2] in _CATALOG_SCHEMAS)


def _unknown() -> QueryInfo:
    return QueryInfo("UNKNOWN", PRIMARY, is_write=True, parse_error=True)


def _merge(parts: list[QueryInfo]) -> QueryInfo:
    """One QueryInfo for a multi-statement Query string (always PRIMARY)."""
    first = parts[0]

    def union(attr):
        return _uniq(x for p in parts for x in getattr(p, attr))

    def anyof(attr):
        return any(getattr(p, attr) for p in parts)

    return QueryInfo(
        first.command, PRIMARY,
        is_read=all(p.is_read for p in parts), is_write=anyof("is_write"),
        tables_read=union("tables_read"), tables_written=union("tables_written"),
        functions=union("functions"), touches_catalog=anyof("touches_catalog"),
        multi_statement=True, parse_error=anyof("parse_error"),
        serializable=anyof("serializable"), read_write=anyof("read_write"),
        temp_tables_created=union("temp_tables_created"),
        tables_dropped=union("tables_dropped"),
        prepare_name=first.prepare_name, prepared=first.prepared,
        execute_name=first.execute_name, deallocate_name=first.deallocate_name,
        lock_strong=anyof("lock_strong"), copy_to_stdout=anyof("copy_to_stdout"),
        copy_from_stdin=anyof("copy_from_stdin"),
        set_local=first.set_local, reset_all=first.reset_all, discard_all=first.discard_all,
        savepoint_name=first.savepoint_name, cursor_name=first.cursor_name,
    )


class Classifier:
    """Statement text -> QueryInfo, cached by exact text and by literal shape.

    The cache is one bounded LRU holding two kinds of keys: the exact text
    (checked first: a dict lookup, for statements re-sent verbatim such as
    parameterised ones) and the shape key from :func:`shape_key` (literals
    and ``$n`` replaced).  Classifications that depend on a literal value
    (SET) or that failed to parse are cached under their exact text only.
    """

    def __init__(self, cache_size: int = 4096, allow_sql_comments: bool = False,
                 ignore_leading_white_space: bool = True, max_length: int = MAX_LENGTH,
                 max_statements: int = MAX_STATEMENTS, max_parens: int = MAX_PARENS):
        self.cache_size = max(1, cache_size)
        self.max_length = max_length
        self.max_statements = max_statements
        self.max_parens = max_parens
        self.allow_sql_comments = allow_sql_comments
        self.ignore_leading_white_space = ignore_leading_white_space
        self.stats = ClassifierStats()
        self._cache: OrderedDict[str, QueryInfo] = OrderedDict()

    def __len__(self) -> int:
        return len(self._cache)

    def classify(self, sql: str) -> QueryInfo:
        """A simple-protocol Query string (zero, one or several statements)."""
        return self._lookup(sql)

    def classify_parse(self, sql: str) -> QueryInfo:
        """An extended-protocol Parse string ($n placeholders).  Classified by
        the same rules as a Query string and sharing its cache."""
        return self._lookup(sql)

    # -- cache -------------------------------------------------------------

    def _lookup(self, sql: str) -> QueryInfo:
        if (len(sql) > self.max_length or sql.count(";") > self.max_statements
                or sql.count("(") > self.max_parens):
            self.stats.bounded += 1
            try:
                return self._bounded(sql)
            except Exception:   # never let a statement take the relay down
                return _UNKNOWN_BOUNDED
        cache = self._cache
        info = cache.get(sql)
        if info is not None:
            cache.move_to_end(sql)
            self.stats.hits += 1
            return info
        key = shape_key(sql)
        if not self.ignore_leading_white_space and sql[:1] in _SPACE:
            key = "\x04" + key       # leading whitespace decides is_read then
        info = cache.get(key)
        if info is not None:
            cache.move_to_end(key)
            self.stats.hits += 1
            if key != sql and _only_parameters(sql, key):
                self._store(sql, info)
            return info
        self.stats.misses += 1
        info, literal_sensitive = self._compute(sql)
        if info.parse_error:
            self.stats.parse_errors += 1
        if literal_sensitive or info.parse_error:
            self._store(sql, info)
        else:
            self._store(key, info)
            if key != sql and _only_parameters(sql, key):
                self._store(sql, info)
        return info

    def _store(self, key: str, info: QueryInfo) -> None:
        cache = self._cache
        cache[key] = info
        cache.move_to_end(key)
        while len(cache) > self.cache_size:
            cache.popitem(last=False)

    # -- classification ----------------------------------------------------

    def _compute(self, sql: str) -> tuple[QueryInfo, bool]:
        try:
            return self._classify_text(sql)
        except Exception:       # never let a statement take the relay down
            return _unknown(), False

    def _classify_text(self, sql: str) -> tuple[QueryInfo, bool]:
        sc = scan(sql)
        if not sc.statements:
            info, sensitive = _EMPTY, False
        elif len(sc.statements) == 1:
            info, sensitive = self._statement(sc.statements[0].text,
                                              self._reads_by_first_char(sql, 0, False))
        else:
            results = [self._statement(s.text, self._reads_by_first_char(
                sql, s.start if i else 0, i > 0)) for i, s in enumerate(sc.statements)]
            info = _merge([r[0] for r in results])
            sensitive = any(r[1] for r in results)
        if sc.leading_comment or sc.hints:
            info = replace(info, has_leading_comment=sc.leading_comment, hints=sc.hints)
        return info, sensitive

    def _bounded(self, sql: str) -> QueryInfo:
        """A text too big to parse on the event loop: PRIMARY and a write, like a parse
        error.  The work is a few C-level passes plus a bounded amount of Python."""
        start = _LEAD.match(sql).end()
        window = sql[start:start + _HEAD_MAX + 1]
        _, end = next(statement_ends(window))
        head = window[:end]
        if end < len(window) or start + end >= len(sql):    # the whole first statement
            multi = bool(sql[start + end + 1:].strip(" \t\n\r\f\v;"))
        else:
            multi = sql.find(";", start + end) != -1
        short = len(head) <= _HEAD_MAX
        if short:   # comments out, $n as 0: the head as the classifier sees statements
            found = scan(head).statements
            head = found[0].text if found else ""
        toks = tokens(head[:_HEAD_WORDS])
        kw = toks[0].value if toks and toks[0].kind == "word" else ""
        if short and kw in _HANDLERS and head.count("(") <= _HEAD_PARENS:
            # A utility statement (BEGIN, SET, COMMIT...): its usual classification.
            info = _HANDLERS[kw](self, head, toks) if head else _EMPTY
            return QueryInfo(info.command, PRIMARY, is_write=True, parse_error=True,
                             bounded=True, multi_statement=multi,
                             tables_read=info.tables_read, tables_written=info.tables_written,
                             functions=info.functions, touches_catalog=info.touches_catalog,
                             serializable=info.serializable, read_write=info.read_write,
                             temp_tables_created=info.temp_tables_created,
                             tables_dropped=info.tables_dropped, lock_strong=info.lock_strong,
                             copy_to_stdout=info.copy_to_stdout,
                             copy_from_stdin=info.copy_from_stdin, set_local=info.set_local,
                             reset_all=info.reset_all, discard_all=info.discard_all,
                             savepoint_name=info.savepoint_name,
                             cursor_name=info.cursor_name)
        command, written = "UNKNOWN", ()
        if kw in _DML_TARGET:
            command, before = _DML_TARGET[kw]
            i = 1
            if before is not None:
                i = 2 if is_word(_at(toks, 1), before) else len(toks)
            if is_word(_at(toks, i), "only"):
                i += 1
            name, j = read_name(toks, i)
            if name is not None and j < len(toks):   # not cut off by the word limit
                written = (name,)
        return QueryInfo(command, PRIMARY, is_write=True, parse_error=True, bounded=True,
                         multi_statement=multi, tables_written=written,
                         touches_catalog=any(map(_is_catalog, written)))

    def _reads_by_first_char(self, sql: str, start: int, later: bool) -> bool:
        """Pgpool-II's first-character test for SELECT-shaped statements."""
        if self.allow_sql_comments:
            return True
        i, n = start, len(sql)
        if self.ignore_leading_white_space or later:
            while i < n and sql[i] in _SPACE:
                i += 1
        return i >= n or sql[i] in _READ_START

    def _statement(self, text: str, first_char_ok: bool = True) -> tuple[QueryInfo, bool]:
        """One comment-free statement -> (info, depends on literal values)."""
        toks = tokens(text)
        if not toks:
            return _EMPTY, False
        kw = toks[0].value if toks[0].kind in ("word", "op") else ""
        if kw in _SQLGLOT_KEYWORDS or kw == "(":
            return self._parsed(text, kw, first_char_ok), False
        handler = _HANDLERS.get(kw)
        if handler is None:
            return _unknown(), False
        return handler(self, text, toks), kw == "set"

    def _inner(self, text: str) -> QueryInfo:
        """The statement inside PREPARE/EXPLAIN/COPY/DECLARE (no first-char rule)."""
        return self._statement(text.strip())[0] if text.strip() else _unknown()

    def _parsed(self, text: str, kw: str, first_char_ok: bool) -> QueryInfo:
        text = shorten_lists(text)
        trees = _sqlglot(text)
        if trees is None and "[" in text:
            # sqlglot rejects arrays of types it does not know ("$1::oid[]");
            # the array suffix never changes what a statement reads or calls.
            text = _ARRAY_SUFFIX.sub(r"\1", text)
            trees = _sqlglot(text)
        if trees is None:
            return _unknown()
        if len(trees) != 1 or not isinstance(trees[0], _QUERY + _DML):
            return _unknown()
        root = trees[0]

        ctes: set[str] = set()
        writing_cte = False
        for cte in root.find_all(exp.CTE):
            alias = cte.args.get("alias")
            if alias is not None and alias.this is not None:
                ctes.add(_ident(alias.this))
            writing_cte = writing_cte or isinstance(cte.this, _DML)
        targets: list[exp.Table] = []
        for node in root.find_all(*_DML):
            target = node.this
            if isinstance(target, exp.Schema):
                target = target.this
            if isinstance(target, exp.Table):
                targets.append(target)
        into = root.find(exp.Into)
        temp: tuple[str, ...] = ()
        if into is not None and isinstance(into.this, exp.Table):
            targets.append(into.this)
            if into.args.get("temporary"):
                temp = (_table_name(into.this),)
        target_ids = {id(t) for t in targets}

        read: list[str] = []
        written: list[str] = []
        for t in sorted(root.find_all(exp.Table), key=_position):   # in text order
            if not isinstance(t.this, exp.Identifier):
                continue                    # a function in FROM
            name = _table_name(t)
            if id(t) in target_ids:
                written.append(name)
            elif t.args.get("db") or name not in ctes:
                read.append(name)
        functions = _uniq(filter(None, (_function_name(f, text)
                                        for f in root.find_all(exp.Func, bfs=False))))
        read_t, written_t = _uniq(read), _uniq(written)
        catalog = any(_is_catalog(n) for n in read_t + written_t)

        if isinstance(root, _DML):
            return QueryInfo(_DML_COMMAND[type(root)], PRIMARY, is_write=True,
                             tables_read=read_t, tables_written=written_t,
                             functions=functions, touches_catalog=catalog)
        select_ok = not (into is not None or root.find(exp.Lock) is not None or writing_cte)
        is_read = select_ok and first_char_ok
        command = "VALUES" if kw == "values" else "TABLE" if kw == "table" else "SELECT"
        return QueryInfo(command, EITHER if is_read else PRIMARY,
                         is_read=is_read, is_write=not is_read,
                         tables_read=read_t, tables_written=written_t, functions=functions,
                         touches_catalog=catalog, temp_tables_created=temp)

    # -- utility statements, by keyword -------------------------------------

    def _begin(self, text: str, toks: list[Token]) -> QueryInfo:
        i = 2 if is_word(_at(toks, 1), "work", "transaction") else 1
        serializable, read_write = transaction_modes(toks, i)
        return QueryInfo("BEGIN", BOTH, serializable=serializable, read_write=read_write,
                         standby_text="BEGIN" if serializable or read_write else None)

    def _commit(self, text: str, toks: list[Token]) -> QueryInfo:
        if toks[0].value == "commit" and is_word(_at(toks, 1), "prepared"):
            return QueryInfo("COMMIT PREPARED", PRIMARY)
        return QueryInfo("COMMIT", BOTH)

    def _rollback(self, text: str, toks: list[Token]) -> QueryInfo:
        if toks[0].value == "rollback":
            if is_word(_at(toks, 1), "prepared"):
                return QueryInfo("ROLLBACK PREPARED", PRIMARY)
            i = 2 if is_word(_at(toks, 1), "work", "transaction") else 1
            if is_word(_at(toks, i), "to"):
                return QueryInfo("ROLLBACK TO", BOTH, savepoint_name=state.savepoint_name(text))
        return QueryInfo("ROLLBACK", BOTH)

    def _prepare(self, text: str, toks: list[Token]) -> QueryInfo:
        if is_word(_at(toks, 1), "transaction") and getattr(_at(toks, 2), "kind", "") == "str":
            return QueryInfo("PREPARE TRANSACTION", PRIMARY)
        name_tok = _at(toks, 1)
        i = 2
        if _op(toks, i, "("):
            i = matching_paren(toks, i)
        if name_tok is None or name_tok.kind not in ("word", "name") or not is_word(
                _at(toks, i), "as"):
            return _unknown()
        body = self._inner(text[toks[i].end:])
        return QueryInfo("PREPARE", body.route, is_read=body.is_read, is_write=body.is_write,
                         tables_read=body.tables_read, tables_written=body.tables_written,
                         functions=body.functions, touches_catalog=body.touches_catalog,
                         parse_error=body.parse_error, prepare_name=name_tok.value,
                         prepared=body)

    def _execute(self, text: str, toks: list[Token]) -> QueryInfo:
        name = _at(toks, 1)
        if name is None or name.kind not in ("word", "name"):
            return _unknown()
        return QueryInfo("EXECUTE", PRIMARY, is_write=True, execute_name=name.value)

    def _deallocate(self, text: str, toks: list[Token]) -> QueryInfo:
        i = 2 if is_word(_at(toks, 1), "prepare") else 1
        name = _at(toks, i)
        if is_word(name, "all"):
            return QueryInfo("DEALLOCATE", BOTH, deallocate_name="*")
        if name is None or name.kind not in ("word", "name"):
            return _unknown()
        return QueryInfo("DEALLOCATE", PRIMARY, deallocate_name=name.value)

    def _set(self, text: str, toks: list[Token]) -> QueryInfo:
        i = 1
        if is_word(_at(toks, i), "session") and is_word(_at(toks, i + 1), "characteristics"):
            i += 4                                  # SESSION CHARACTERISTICS AS TRANSACTION
            modes = True
        else:
            if is_word(_at(toks, i), "session", "local"):
                i += 1
            modes = is_word(_at(toks, i), "transaction")
            i += 1
        if is_word(_at(toks, 1), "constraints"):
            return QueryInfo("SET", PRIMARY)        # ConstraintsSetStmt: "other" in Pgpool
        serializable = read_write = False
        if modes:
            serializable, read_write = transaction_modes(toks, i)
        else:
            name, j = read_name(toks, i - 1)
            if _op(toks, j, "=") or is_word(_at(toks, j), "to"):
                values = [t.value for t in toks[j + 1:] if t.kind in ("word", "str", "num")]
                if name == "transaction_read_only":
                    read_write = any(pg_false(v) for v in values)
                elif name in ("transaction_isolation", "default_transaction_isolation"):
                    serializable = any(v.lower() == "serializable" for v in values)
        route = PRIMARY if serializable or read_write else BOTH
        return QueryInfo("SET", route, serializable=serializable, read_write=read_write,
                         set_local=state.set_local(text))

    def _show(self, text: str, toks: list[Token]) -> QueryInfo:
        arg = _at(toks, 1)
        if arg is not None and arg.kind == "word" and arg.value.startswith("pool_"):
            return QueryInfo("PGPOOL", EITHER, is_read=True)
        return QueryInfo("SHOW", EITHER, is_read=True)

    def _explain(self, text: str, toks: list[Token]) -> QueryInfo:
        i, analyze = 1, False
        if _op(toks, i, "("):
            end = matching_paren(toks, i)
            option_start = True
            for t in toks[i + 1:end]:
                if option_start and is_word(t, "analyze", "analyse"):
                    analyze = True
                option_start = t.kind == "op" and t.value in (",", "(")
            i = end
        else:
            if is_word(_at(toks, i), "analyze", "analyse"):
                analyze, i = True, i + 1
            if is_word(_at(toks, i), "verbose"):
                i += 1
        if i >= len(toks):
            return _unknown()
        body = self._inner(text[toks[i].start:])
        writes = analyze and body.is_write
        read_t = body.tables_read if analyze else _uniq(body.tables_read + body.tables_written)
        return QueryInfo("EXPLAIN", PRIMARY, is_read=not writes, is_write=writes,
                         tables_read=read_t, tables_written=body.tables_written if analyze else (),
                         functions=body.functions, touches_catalog=body.touches_catalog,
                         parse_error=body.parse_error)

    def _copy(self, text: str, toks: list[Token]) -> QueryInfo:
        i, table, body = 1, None, None
        if _op(toks, i, "("):
            end = matching_paren(toks, i)
            body = self._inner(text[toks[i].end:toks[end - 1].start])
            i = end
        else:
            if is_word(_at(toks, i), "binary"):
                i += 1
            table, i = read_name(toks, i)
            if _op(toks, i, "("):
                i = matching_paren(toks, i)
        direction, target = _at(toks, i), _at(toks, i + 1)
        if (table is None and body is None) or not is_word(direction, "from", "to"):
            return _unknown()
        tables = (table,) if table else ()
        if direction.value == "from":
            stdin = is_word(target, "stdin")
            return QueryInfo("COPY", PRIMARY, is_write=True, tables_written=tables,
                             touches_catalog=any(map(_is_catalog, tables)),
                             copy_from_stdin=stdin)
        stdout = is_word(target, "stdout")
        if body is not None:
            read = stdout and body.command in ("SELECT", "VALUES", "TABLE") and body.route == EITHER
            return QueryInfo("COPY", EITHER if read else PRIMARY, is_read=read, is_write=not read,
                             tables_read=body.tables_read, tables_written=body.tables_written,
                             functions=body.functions, touches_catalog=body.touches_catalog,
                             parse_error=body.parse_error, copy_to_stdout=stdout)
        return QueryInfo("COPY", EITHER if stdout else PRIMARY, is_read=stdout,
                         is_write=not stdout, tables_read=tables,
                         touches_catalog=any(map(_is_catalog, tables)), copy_to_stdout=stdout)

    def _lock(self, text: str, toks: list[Token]) -> QueryInfo:
        i = 2 if is_word(_at(toks, 1), "table") else 1
        names, i = read_names(toks, i, skip=("only",))
        mode = "access exclusive"
        if is_word(_at(toks, i), "in"):
            words = []
            for t in toks[i + 1:]:
                if is_word(t, "mode"):
                    break
                words.append(t.value)
            mode = " ".join(words)
        if not names:
            return _unknown()
        catalog = any(map(_is_catalog, names))
        if mode in _WEAK_LOCKS:
            return QueryInfo("LOCK", BOTH, tables_read=tuple(names), touches_catalog=catalog)
        return QueryInfo("LOCK", PRIMARY, is_write=True, tables_written=tuple(names),
                         touches_catalog=catalog, lock_strong=True)

    def _cursor(self, text: str, toks: list[Token]) -> QueryInfo:
        command = toks[0].value.upper()
        if command != "DECLARE":
            close_all = command == "CLOSE" and is_word(_at(toks, 1), "all") and len(toks) == 2
            return QueryInfo(command, PRIMARY, is_write=True,
                             cursor_name=None if close_all else state.last_name(text))
        first = _at(toks, 1)
        name = first.value if first is not None and first.kind in ("word", "name") else None
        for j, t in enumerate(toks):
            if is_word(t, "for") and any(is_word(x, "cursor") for x in toks[:j]):
                body = self._inner(text[t.end:])
                return QueryInfo("DECLARE", PRIMARY, is_write=True,
                                 tables_read=body.tables_read + body.tables_written,
                                 functions=body.functions,
                                 touches_catalog=body.touches_catalog, cursor_name=name)
        return QueryInfo("DECLARE", PRIMARY, is_write=True, cursor_name=name)

    def _utility(self, text: str, toks: list[Token]) -> QueryInfo:
        """DDL and maintenance: PRIMARY writes, with the names routing tracks."""
        kw = toks[0].value
        command = _UTILITY_COMMANDS.get(kw, kw.upper())
        temp: tuple[str, ...] = ()
        written: list[str] = []
        dropped: list[str] = []
        functions: tuple[str, ...] = ()
        if kw == "create":
            i, is_temp = 1, False
            if is_word(_at(toks, i), "or") and is_word(_at(toks, i + 1), "replace"):
                i += 2
            while is_word(_at(toks, i), "global", "local", "temp", "temporary", "unlogged"):
                is_temp = is_temp or toks[i].value in ("temp", "temporary")
                i += 1
            if is_word(_at(toks, i), "table"):
                i += 1
                if is_word(_at(toks, i), "if"):
                    i += 3                      # IF NOT EXISTS
                name, i = read_name(toks, i)
                if name:
                    written.append(name)
                    temp = (name,) if is_temp else ()
        elif kw == "drop" and is_word(_at(toks, 1), "table"):
            i = 4 if is_word(_at(toks, 2), "if") else 2
            dropped, i = read_names(toks, i)
        elif kw == "alter" and is_word(_at(toks, 1), "table"):
            i = 4 if is_word(_at(toks, 2), "if") else 2
            written, i = read_names(toks, i, skip=("only",))
        elif kw == "truncate":
            i = 2 if is_word(_at(toks, 1), "table") else 1
            written, i = read_names(toks, i, skip=("only",))
        elif kw == "call":
            name, _ = read_name(toks, 1)
            functions = (name,) if name else ()
        names = written + dropped
        return QueryInfo(command, PRIMARY, is_write=True, tables_written=_uniq(written),
                         functions=functions, touches_catalog=any(map(_is_catalog, names)),
                         temp_tables_created=temp, tables_dropped=_uniq(dropped))

    def _simple(self, text: str, toks: list[Token]) -> QueryInfo:
        kw = toks[0].value
        if kw in ("savepoint", "release"):
            return QueryInfo(kw.upper(), BOTH, savepoint_name=state.savepoint_name(text))
        if kw in ("reset", "discard"):
            return QueryInfo(kw.upper(), BOTH, reset_all=state.reset_all(text),
                             discard_all=state.discard_all(text))
        if kw in ("pgpool", "pgtwist"):
            return QueryInfo(kw.upper(), PRIMARY)
        return QueryInfo(kw.upper(), PRIMARY, is_write=True)     # LISTEN, NOTIFY...


_UNKNOWN_BOUNDED = QueryInfo("UNKNOWN", PRIMARY, is_write=True, parse_error=True, bounded=True,
                             multi_statement=True)


def _at(toks: list[Token], i: int) -> Token | None:
    return toks[i] if i < len(toks) else None


def _op(toks: list[Token], i: int, value: str) -> bool:
    return i < len(toks) and toks[i].kind == "op" and toks[i].value == value


_UTILITY_COMMANDS = {"analyse": "ANALYZE", "security": "SECURITY LABEL"}
_HANDLERS = {
    "begin": Classifier._begin, "start": Classifier._begin,
    "commit": Classifier._commit, "end": Classifier._commit,
    "rollback": Classifier._rollback, "abort": Classifier._rollback,
    "prepare": Classifier._prepare, "execute": Classifier._execute,
    "deallocate": Classifier._deallocate, "set": Classifier._set,
    "show": Classifier._show, "explain": Classifier._explain, "copy": Classifier._copy,
    "lock": Classifier._lock,
    **dict.fromkeys(("declare", "fetch", "move", "close"), Classifier._cursor),
    **dict.fromkeys(("savepoint", "release", "reset", "discard", "listen", "unlisten",
                     "notify", "pgpool", "pgtwist"), Classifier._simple),
    **dict.fromkeys(("create", "drop", "alter", "truncate", "grant", "revoke", "comment",
                     "vacuum", "analyze", "analyse", "checkpoint", "cluster", "reindex",
                     "refresh", "security", "reassign", "import", "load", "call", "do"),
                    Classifier._utility),
}
