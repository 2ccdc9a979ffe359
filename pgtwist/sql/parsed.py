"""SELECT-shaped and DML statements, classified from sqlglot's parse tree: the tables they
read and write, the functions they call, whether they touch the catalog (classify.py's
docstring has the rules). The only module importing sqlglot.
"""

from __future__ import annotations

import logging
import re

import sqlglot
from sqlglot import exp

from .idents import fold, fold_name
from .info import EITHER, PRIMARY, QueryInfo
from .normalize import shorten_lists
from .utility import TXN_SETTINGS, is_catalog, uniq, unknown

# sqlglot logs a warning whenever it falls back to an opaque Command; we treat
# that as "cannot parse" ourselves, so keep its log quiet.
if logging.getLogger("sqlglot").level == logging.NOTSET:
    logging.getLogger("sqlglot").setLevel(logging.ERROR)

_DIALECT = sqlglot.Dialect.get_or_raise("postgres")

_DML = (exp.Insert, exp.Update, exp.Delete, exp.Merge)
_QUERY = (exp.Select, exp.SetOperation, exp.Subquery, exp.Values)
_DML_COMMAND = {exp.Insert: "INSERT", exp.Update: "UPDATE", exp.Delete: "DELETE",
                exp.Merge: "MERGE"}
SQLGLOT_KEYWORDS = frozenset(("select", "with", "values", "table", "insert", "update",
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


def _sqlglot(text: str) -> list[exp.Expression] | None:
    try:
        return [t for t in _DIALECT.parse(text) if t is not None]
    except Exception:   # sqlglot raises ParseError, TokenError and others
        return None


def classify_parsed(text: str, kw: str, first_char_ok: bool) -> QueryInfo:
    text = shorten_lists(text)
    trees = _sqlglot(text)
    if trees is None and "[" in text:
        # sqlglot rejects arrays of types it does not know ("$1::oid[]");
        # the array suffix never changes what a statement reads or calls.
        text = _ARRAY_SUFFIX.sub(r"\1", text)
        trees = _sqlglot(text)
    if trees is None:
        return unknown()
    if len(trees) != 1 or not isinstance(trees[0], _QUERY + _DML):
        return unknown()
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
    calls = [(f, _function_name(f, text)) for f in root.find_all(exp.Func, bfs=False)]
    functions = uniq(name for _, name in calls if name)
    txn_setting = any(_reads_txn_setting(f) for f, name in calls if name in _CURRENT_SETTING)
    read_t, written_t = uniq(read), uniq(written)
    catalog = any(is_catalog(n) for n in read_t + written_t)

    if isinstance(root, _DML):
        return QueryInfo(_DML_COMMAND[type(root)], PRIMARY, is_write=True,
                         tables_read=read_t, tables_written=written_t,
                         functions=functions, touches_catalog=catalog,
                         reads_txn_setting=txn_setting)
    select_ok = not (into is not None or root.find(exp.Lock) is not None or writing_cte)
    is_read = select_ok and first_char_ok
    command = "VALUES" if kw == "values" else "TABLE" if kw == "table" else "SELECT"
    return QueryInfo(command, EITHER if is_read else PRIMARY,
                     is_read=is_read, is_write=not is_read,
                     tables_read=read_t, tables_written=written_t, functions=functions,
                     touches_catalog=catalog, temp_tables_created=temp,
                     reads_txn_setting=txn_setting)


_CURRENT_SETTING = frozenset(("current_setting", "pg_catalog.current_setting"))


def reads_setting_literal(info: QueryInfo) -> bool:
    """Whether ``info`` depends on a literal's value: current_setting('name') does, so
    its text is cached as itself, not by shape (Classifier)."""
    return any(f in _CURRENT_SETTING for f in info.functions)


def _reads_txn_setting(call: exp.Func) -> bool:
    """current_setting() of a transaction-scoped setting, or of a name not written as a
    literal (it may be one)."""
    args = call.expressions
    first = args[0] if args else None
    if not isinstance(first, exp.Literal) or not first.is_string:
        return True
    return first.name.lower() in TXN_SETTINGS
