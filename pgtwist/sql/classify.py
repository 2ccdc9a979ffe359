"""Classify SQL text into a :class:`QueryInfo`: cache, size bounds, statement dispatch.

SELECT-shaped and DML statements are read from sqlglot's tree by parsed.py, the only module
importing sqlglot (this one loads it through parsed.py); utility statements from their
tokens by utility.py.

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

import re
from collections import OrderedDict
from dataclasses import dataclass, replace

from .info import PRIMARY, QueryInfo
from .normalize import (
    is_word,
    read_name,
    scan,
    shape_key,
    tokens,
)
from .parsed import SQLGLOT_KEYWORDS, classify_parsed, reads_setting_literal
from .split import statement_ends
from .utility import HANDLERS, at, is_catalog, uniq, unknown

_SPACE = " \t\n\r\v\f"
_READ_START = frozenset("sSwWtT(;")

_EMPTY = QueryInfo("EMPTY", PRIMARY)
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


@dataclass
class ClassifierStats:
    hits: int = 0
    misses: int = 0
    parse_errors: int = 0    # classifications (not cache hits) sqlglot failed on
    bounded: int = 0         # texts too long or with too many statements to parse


def _only_parameters(sql: str, key: str) -> bool:
    """No inline literal, only $n parameters: the exact text is likely to recur
    (a wrong guess only costs a cache slot)."""
    return key.count("\x00") <= sql.count("$")


def _merge(parts: list[QueryInfo]) -> QueryInfo:
    """One QueryInfo for a multi-statement Query string (always PRIMARY)."""
    first = parts[0]

    def union(attr):
        return uniq(x for p in parts for x in getattr(p, attr))

    def anyof(attr):
        return any(getattr(p, attr) for p in parts)

    return QueryInfo(
        first.command, PRIMARY,
        is_read=all(p.is_read for p in parts), is_write=anyof("is_write"),
        tables_read=union("tables_read"), tables_written=union("tables_written"),
        functions=union("functions"), touches_catalog=anyof("touches_catalog"),
        reads_txn_setting=anyof("reads_txn_setting"),
        exclusive_database=next((p.exclusive_database for p in parts
                                 if p.exclusive_database), None),
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
            return unknown(), False

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
        if short and kw in HANDLERS and head.count("(") <= _HEAD_PARENS:
            # A utility statement (BEGIN, SET, COMMIT...): its usual classification.
            info = HANDLERS[kw](self, head, toks) if head else _EMPTY
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
                i = 2 if is_word(at(toks, 1), before) else len(toks)
            if is_word(at(toks, i), "only"):
                i += 1
            name, j = read_name(toks, i)
            if name is not None and j < len(toks):   # not cut off by the word limit
                written = (name,)
        return QueryInfo(command, PRIMARY, is_write=True, parse_error=True, bounded=True,
                         multi_statement=multi, tables_written=written,
                         touches_catalog=any(map(is_catalog, written)))

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
        if kw in SQLGLOT_KEYWORDS or kw == "(":
            info = classify_parsed(text, kw, first_char_ok)
            return info, reads_setting_literal(info)
        handler = HANDLERS.get(kw)
        if handler is None:
            return unknown(), False
        return handler(self, text, toks), kw == "set"

    def inner(self, text: str) -> QueryInfo:
        """The statement inside PREPARE/EXPLAIN/COPY/DECLARE (no first-char rule)."""
        return self._statement(text.strip())[0] if text.strip() else unknown()


_UNKNOWN_BOUNDED = QueryInfo("UNKNOWN", PRIMARY, is_write=True, parse_error=True, bounded=True,
                             multi_statement=True)


