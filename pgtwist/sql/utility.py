"""Utility statements (BEGIN, SET, COPY, DDL...), classified from their tokens by their first
keyword, without sqlglot; and the small helpers parsed.py shares.

Each handler takes the Classifier (``c.inner`` classifies the statement inside
PREPARE/EXPLAIN/COPY/DECLARE), the statement's text and its tokens. The rules they follow
are classify.py's docstring.
"""

from __future__ import annotations

from . import state
from .info import BOTH, EITHER, PRIMARY, QueryInfo
from .normalize import (
    Token,
    is_word,
    matching_paren,
    pg_false,
    read_name,
    read_names,
    transaction_modes,
)

_CATALOG_SCHEMAS = frozenset(("pg_catalog", "information_schema"))
_WEAK_LOCKS = frozenset(("access share", "row share"))
# Settings only the node running the transaction knows (a standby: always read only).
TXN_SETTINGS = frozenset(("transaction_isolation", "transaction_read_only",
                          "transaction_deferrable"))
# SHOW arguments that report them too: SHOW ALL, SHOW TRANSACTION ISOLATION LEVEL.
_SHOW_TXN = TXN_SETTINGS | {"all", "transaction"}


def uniq(items) -> tuple[str, ...]:
    return tuple(dict.fromkeys(items))


def is_catalog(name: str) -> bool:
    parts = name.split(".")
    return parts[-1].startswith("pg_") or (len(parts) > 1 and parts[-2] in _CATALOG_SCHEMAS)


def unknown() -> QueryInfo:
    return QueryInfo("UNKNOWN", PRIMARY, is_write=True, parse_error=True)


def at(toks: list[Token], i: int) -> Token | None:
    return toks[i] if i < len(toks) else None


def op(toks: list[Token], i: int, value: str) -> bool:
    return i < len(toks) and toks[i].kind == "op" and toks[i].value == value


def _begin(c, text: str, toks: list[Token]) -> QueryInfo:
    i = 2 if is_word(at(toks, 1), "work", "transaction") else 1
    serializable, read_write = transaction_modes(toks, i)
    return QueryInfo("BEGIN", BOTH, serializable=serializable, read_write=read_write,
                     standby_text="BEGIN" if serializable or read_write else None)


def _commit(c, text: str, toks: list[Token]) -> QueryInfo:
    if toks[0].value == "commit" and is_word(at(toks, 1), "prepared"):
        return QueryInfo("COMMIT PREPARED", PRIMARY)
    return QueryInfo("COMMIT", BOTH)


def _rollback(c, text: str, toks: list[Token]) -> QueryInfo:
    if toks[0].value == "rollback":
        if is_word(at(toks, 1), "prepared"):
            return QueryInfo("ROLLBACK PREPARED", PRIMARY)
        i = 2 if is_word(at(toks, 1), "work", "transaction") else 1
        if is_word(at(toks, i), "to"):
            return QueryInfo("ROLLBACK TO", BOTH, savepoint_name=state.savepoint_name(text))
    return QueryInfo("ROLLBACK", BOTH)


def _prepare(c, text: str, toks: list[Token]) -> QueryInfo:
    if is_word(at(toks, 1), "transaction") and getattr(at(toks, 2), "kind", "") == "str":
        return QueryInfo("PREPARE TRANSACTION", PRIMARY)
    name_tok = at(toks, 1)
    i = 2
    if op(toks, i, "("):
        i = matching_paren(toks, i)
    if name_tok is None or name_tok.kind not in ("word", "name") or not is_word(
            at(toks, i), "as"):
        return unknown()
    body = c.inner(text[toks[i].end:])
    return QueryInfo("PREPARE", body.route, is_read=body.is_read, is_write=body.is_write,
                     tables_read=body.tables_read, tables_written=body.tables_written,
                     functions=body.functions, touches_catalog=body.touches_catalog,
                     parse_error=body.parse_error, prepare_name=name_tok.value,
                     prepared=body)


def _execute(c, text: str, toks: list[Token]) -> QueryInfo:
    name = at(toks, 1)
    if name is None or name.kind not in ("word", "name"):
        return unknown()
    return QueryInfo("EXECUTE", PRIMARY, is_write=True, execute_name=name.value)


def _deallocate(c, text: str, toks: list[Token]) -> QueryInfo:
    i = 2 if is_word(at(toks, 1), "prepare") else 1
    name = at(toks, i)
    if is_word(name, "all"):
        return QueryInfo("DEALLOCATE", BOTH, deallocate_name="*")
    if name is None or name.kind not in ("word", "name"):
        return unknown()
    return QueryInfo("DEALLOCATE", PRIMARY, deallocate_name=name.value)


def _set(c, text: str, toks: list[Token]) -> QueryInfo:
    i = 1
    if is_word(at(toks, i), "session") and is_word(at(toks, i + 1), "characteristics"):
        i += 4                                  # SESSION CHARACTERISTICS AS TRANSACTION
        modes = True
    else:
        if is_word(at(toks, i), "session", "local"):
            i += 1
        modes = is_word(at(toks, i), "transaction")
        i += 1
    if is_word(at(toks, 1), "constraints"):
        return QueryInfo("SET", PRIMARY)        # ConstraintsSetStmt: "other" in Pgpool
    serializable = read_write = False
    if modes:
        serializable, read_write = transaction_modes(toks, i)
    else:
        name, j = read_name(toks, i - 1)
        if op(toks, j, "=") or is_word(at(toks, j), "to"):
            values = [t.value for t in toks[j + 1:] if t.kind in ("word", "str", "num")]
            if name == "transaction_read_only":
                read_write = any(pg_false(v) for v in values)
            elif name in ("transaction_isolation", "default_transaction_isolation"):
                serializable = any(v.lower() == "serializable" for v in values)
    route = PRIMARY if serializable or read_write else BOTH
    return QueryInfo("SET", route, serializable=serializable, read_write=read_write,
                     set_local=state.set_local(text))


def _show(c, text: str, toks: list[Token]) -> QueryInfo:
    arg = at(toks, 1)
    if arg is not None and arg.kind == "word" and arg.value.startswith("pool_"):
        return QueryInfo("PGPOOL", EITHER, is_read=True)
    txn = arg is not None and arg.kind in ("word", "name") and arg.value in _SHOW_TXN
    return QueryInfo("SHOW", EITHER, is_read=True, reads_txn_setting=txn)


def _explain(c, text: str, toks: list[Token]) -> QueryInfo:
    i, analyze = 1, False
    if op(toks, i, "("):
        end = matching_paren(toks, i)
        option_start = True
        for t in toks[i + 1:end]:
            if option_start and is_word(t, "analyze", "analyse"):
                analyze = True
            option_start = t.kind == "op" and t.value in (",", "(")
        i = end
    else:
        if is_word(at(toks, i), "analyze", "analyse"):
            analyze, i = True, i + 1
        if is_word(at(toks, i), "verbose"):
            i += 1
    if i >= len(toks):
        return unknown()
    body = c.inner(text[toks[i].start:])
    writes = analyze and body.is_write
    read_t = body.tables_read if analyze else uniq(body.tables_read + body.tables_written)
    return QueryInfo("EXPLAIN", PRIMARY, is_read=not writes, is_write=writes,
                     tables_read=read_t, tables_written=body.tables_written if analyze else (),
                     functions=body.functions, touches_catalog=body.touches_catalog,
                     parse_error=body.parse_error)


def _copy(c, text: str, toks: list[Token]) -> QueryInfo:
    i, table, body = 1, None, None
    if op(toks, i, "("):
        end = matching_paren(toks, i)
        body = c.inner(text[toks[i].end:toks[end - 1].start])
        i = end
    else:
        if is_word(at(toks, i), "binary"):
            i += 1
        table, i = read_name(toks, i)
        if op(toks, i, "("):
            i = matching_paren(toks, i)
    direction, target = at(toks, i), at(toks, i + 1)
    if (table is None and body is None) or not is_word(direction, "from", "to"):
        return unknown()
    tables = (table,) if table else ()
    if direction.value == "from":
        stdin = is_word(target, "stdin")
        return QueryInfo("COPY", PRIMARY, is_write=True, tables_written=tables,
                         touches_catalog=any(map(is_catalog, tables)),
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
                     touches_catalog=any(map(is_catalog, tables)), copy_to_stdout=stdout)


def _lock(c, text: str, toks: list[Token]) -> QueryInfo:
    i = 2 if is_word(at(toks, 1), "table") else 1
    names, i = read_names(toks, i, skip=("only",))
    mode = "access exclusive"
    if is_word(at(toks, i), "in"):
        words = []
        for t in toks[i + 1:]:
            if is_word(t, "mode"):
                break
            words.append(t.value)
        mode = " ".join(words)
    if not names:
        return unknown()
    catalog = any(map(is_catalog, names))
    if mode in _WEAK_LOCKS:
        return QueryInfo("LOCK", BOTH, tables_read=tuple(names), touches_catalog=catalog)
    return QueryInfo("LOCK", PRIMARY, is_write=True, tables_written=tuple(names),
                     touches_catalog=catalog, lock_strong=True)


def _cursor(c, text: str, toks: list[Token]) -> QueryInfo:
    command = toks[0].value.upper()
    if command != "DECLARE":
        close_all = command == "CLOSE" and is_word(at(toks, 1), "all") and len(toks) == 2
        return QueryInfo(command, PRIMARY, is_write=True,
                         cursor_name=None if close_all else state.last_name(text))
    first = at(toks, 1)
    name = first.value if first is not None and first.kind in ("word", "name") else None
    for j, t in enumerate(toks):
        if is_word(t, "for") and any(is_word(x, "cursor") for x in toks[:j]):
            body = c.inner(text[t.end:])
            return QueryInfo("DECLARE", PRIMARY, is_write=True,
                             tables_read=body.tables_read + body.tables_written,
                             functions=body.functions,
                             touches_catalog=body.touches_catalog, cursor_name=name)
    return QueryInfo("DECLARE", PRIMARY, is_write=True, cursor_name=name)


def _utility(c, text: str, toks: list[Token]) -> QueryInfo:
    """DDL and maintenance: PRIMARY writes, with the names routing tracks."""
    kw = toks[0].value
    command = _UTILITY_COMMANDS.get(kw, kw.upper())
    temp: tuple[str, ...] = ()
    written: list[str] = []
    dropped: list[str] = []
    functions: tuple[str, ...] = ()
    if kw == "create":
        i, is_temp = 1, False
        if is_word(at(toks, i), "or") and is_word(at(toks, i + 1), "replace"):
            i += 2
        while is_word(at(toks, i), "global", "local", "temp", "temporary", "unlogged"):
            is_temp = is_temp or toks[i].value in ("temp", "temporary")
            i += 1
        if is_word(at(toks, i), "table"):
            i += 1
            if is_word(at(toks, i), "if"):
                i += 3                      # IF NOT EXISTS
            name, i = read_name(toks, i)
            if name:
                written.append(name)
                temp = (name,) if is_temp else ()
    elif kw == "drop" and is_word(at(toks, 1), "table"):
        i = 4 if is_word(at(toks, 2), "if") else 2
        dropped, i = read_names(toks, i)
    elif kw == "alter" and is_word(at(toks, 1), "table"):
        i = 4 if is_word(at(toks, 2), "if") else 2
        written, i = read_names(toks, i, skip=("only",))
    elif kw == "truncate":
        i = 2 if is_word(at(toks, 1), "table") else 1
        written, i = read_names(toks, i, skip=("only",))
    elif kw == "call":
        name, _ = read_name(toks, 1)
        functions = (name,) if name else ()
    names = written + dropped
    return QueryInfo(command, PRIMARY, is_write=True, tables_written=uniq(written),
                     functions=functions, touches_catalog=any(map(is_catalog, names)),
                     temp_tables_created=temp, tables_dropped=uniq(dropped),
                     exclusive_database=_exclusive_database(kw, toks))


def _exclusive_database(kw: str, toks: list[Token]) -> str | None:
    """The database a statement needs no other session connected to (see QueryInfo)."""
    if not is_word(at(toks, 1), "database"):
        return None
    if kw == "drop":
        i = 4 if is_word(at(toks, 2), "if") else 2      # IF EXISTS
    elif kw == "alter":
        i = 2
        if not (is_word(at(toks, 3), "rename")
                or (is_word(at(toks, 3), "set") and is_word(at(toks, 4), "tablespace"))):
            return None
    elif kw == "create":
        i = next((j + 1 for j in range(3, len(toks)) if is_word(toks[j], "template")), 0)
        if op(toks, i, "="):
            i += 1
        if not i:
            return None
    else:
        return None
    tok = at(toks, i)
    return tok.value if tok is not None and tok.kind in ("word", "name") else None


def _simple(c, text: str, toks: list[Token]) -> QueryInfo:
    kw = toks[0].value
    if kw in ("savepoint", "release"):
        return QueryInfo(kw.upper(), BOTH, savepoint_name=state.savepoint_name(text))
    if kw in ("reset", "discard"):
        return QueryInfo(kw.upper(), BOTH, reset_all=state.reset_all(text),
                         discard_all=state.discard_all(text))
    if kw in ("pgpool", "pgtwist"):
        return QueryInfo(kw.upper(), PRIMARY)
    return QueryInfo(kw.upper(), PRIMARY, is_write=True)     # LISTEN, NOTIFY...


_UTILITY_COMMANDS = {"analyse": "ANALYZE", "security": "SECURITY LABEL"}
HANDLERS = {
    "begin": _begin, "start": _begin,
    "commit": _commit, "end": _commit,
    "rollback": _rollback, "abort": _rollback,
    "prepare": _prepare, "execute": _execute,
    "deallocate": _deallocate, "set": _set,
    "show": _show, "explain": _explain, "copy": _copy,
    "lock": _lock,
    **dict.fromkeys(("declare", "fetch", "move", "close"), _cursor),
    **dict.fromkeys(("savepoint", "release", "reset", "discard", "listen", "unlisten",
                     "notify", "pgpool", "pgtwist"), _simple),
    **dict.fromkeys(("create", "drop", "alter", "truncate", "grant", "revoke", "comment",
                     "vacuum", "analyze", "analyse", "checkpoint", "cluster", "reindex",
                     "refresh", "security", "reassign", "import", "load", "call", "do"),
                    _utility),
}
