"""Lexical helpers for SQL classification (no sqlglot here).

Three jobs, all on PostgreSQL's lexical rules (standard_conforming_strings on):

* :func:`shape_key` - the cache key: literals and ``$n`` parameters become one
  placeholder, whitespace runs fold to one space.  It runs on every statement,
  so it is one ``re.sub`` with a cheap callback per run of ordinary text.
* :func:`scan` - split a Query string into statements at top-level ``;``,
  drop comments (PostgreSQL nests ``/* */``), collect ``/* */`` hints.
* :func:`tokens` - words, names, literals and punctuation of one statement,
  enough to classify utility statements by their keywords.
"""

from __future__ import annotations

import re
from typing import NamedTuple

from .idents import fold

# -- cache key -----------------------------------------------------------------
#
# _FAST groups: 1 ordinary text (kept), 2 literal or parameter (-> "\x00"),
# 3 its dollar tag, 4 quoted identifier holding whitespace (kept, whitespace
# escaped so folding cannot merge two names), 5 any other character (kept).
# _PRECISE adds E'' strings to group 2 and has 4 block comment, 5 line comment
# (kept, "\x03" marks its end so folding cannot glue the next line into it;
# PostgreSQL ends it at \n or \r), 6 quoted identifier with whitespace,
# 7 other.  A nested block comment, which a regex cannot follow, makes the
# text its own key.  Everything kept is kept verbatim, so two texts share a
# key only if they differ in literal values or in whitespace runs outside
# names.  NUL cannot occur in a protocol query string.
_LITERAL = r"""'[^']*+(?:''[^']*+)*+'|\$\d++|\$(\w*)\$.*?\$\3\$
   |\d++(?:\.\d*+)?(?:[eE][+-]?\d++)?"""

# Used when the text has no comment and no backslash: "-" and "/" are plain.
_FAST = re.compile(
    r"""((?:[^'"$\d\\]++|"[^"\s]*+"|(?<=[\w$])[\d$]++)++)|(""" + _LITERAL
    + r""")|("[^"]*+")|([\s\S])""",
    re.S | re.X,
)
# Comments and E'' strings (backslash escapes) need the careful version.
_PRECISE = re.compile(
    r"""((?:[^'"$\d\\eE/\-]++|[eE](?!')|(?<=[\w$])[eE]|"[^"\s]*+"
          |(?<=[\w$])[\d$]++|/(?!\*)|-(?!-))++)
    |((?<![\w$])[eE]'[^'\\]*+(?:(?:\\[\s\S]|'')[^'\\]*+)*+'|""" + _LITERAL
    + r""")|(/\*[\s\S]*?\*/)|(--[^\n\r]*+)|("[^"]*+")|([\s\S])""",
    re.S | re.X,
)
_NAME_WS = str.maketrans({" ": "\x01s", "\t": "\x01t", "\n": "\x01n", "\r": "\x01r",
                          "\f": "\x01f", "\v": "\x01v"})
_FOLD = re.compile(r"[ \t\n\r\f\v]+")


def _fast_repl(m: re.Match) -> str:
    i = m.lastindex
    if i == 2:
        return "\x00"
    if i == 4:
        return m.group().translate(_NAME_WS)
    return m.group()


def _precise_repl(m: re.Match) -> str:
    i = m.lastindex
    if i == 1:
        return m.group()
    if i == 2:
        return "\x00"
    if i == 4 and "/*" in m.group()[2:]:
        return "\x07"        # nested comment: the regex cannot follow it
    if i == 5:
        return m.group() + "\x03"
    if i == 6:
        return m.group().translate(_NAME_WS)
    return m.group()


# Comma lists of literals (IN lists, VALUES rows) fold to one marker whatever
# their length: the number of values never changes a classification.
_LIST = re.compile(r"\x00(?: ?, ?-?\x00)+")
_ROWS = re.compile(r"\(\x00\x05?\)(?: ?, ?\(\x00\x05?\))+")


def shape_key(sql: str) -> str:
    """Literal-normalised, whitespace-folded text: equal keys, equal shape."""
    if "--" in sql or "/*" in sql or "\\" in sql:
        key = _PRECISE.sub(_precise_repl, sql)
        if "\x07" in key:
            return sql      # nested comments: no normalising, the text is the key
    else:
        key = _FAST.sub(_fast_repl, sql)
    if key.isascii():
        key = " ".join(key.split())
    else:
        key = _FOLD.sub(" ", key).strip(" ")
    if "\x00," in key or "\x00 ," in key:
        key = _LIST.sub("\x00\x05", key)
        if "\x05)," in key or "\x05) ," in key or "\x00)," in key or "\x00) ," in key:
            key = _ROWS.sub("(\x00\x05)\x06", key)
    return key


# Long literal lists shortened before sqlglot sees a statement (it costs about
# 3 us per list item); strings, names and words are matched whole so a list is
# never found inside one.  Not used when the text has backslashes (E'' strings).
_PLIT = r"(?:'[^']*(?:''[^']*)*'|-?\d+(?:\.\d*)?(?:[eE][+-]?\d+)?)"
_PROW = r"\(\s*" + _PLIT + r"(?:\s*,\s*" + _PLIT + r")*\s*\)"
_REDUCE = re.compile(
    r"(?P<row>" + _PROW + r")(?:\s*,\s*" + _PROW + r"){8,}"
    r"|(?P<item>" + _PLIT + r")(?:\s*,\s*" + _PLIT + r"){8,}"
    r'|"[^"]*(?:""[^"]*)*"|[^\W\d][\w$]*|\$(?P<tag>\w*)\$[\s\S]*?\$(?P=tag)\$'
)


def _reduce_repl(m: re.Match) -> str:
    return m.group("row") or m.group("item") or m.group()


def shorten_lists(text: str) -> str:
    """``text`` with literal lists of 9+ items cut to their first item."""
    if len(text) < 2048 or "\\" in text:
        return text
    return _REDUCE.sub(_reduce_repl, text)


# -- statements ----------------------------------------------------------------

class Statement(NamedTuple):
    text: str    # comment-free text, stripped; $n parameters replaced by 0
    start: int   # offset of the statement's first character in the original


class Scan(NamedTuple):
    statements: list[Statement]
    hints: frozenset[str]
    leading_comment: bool


_SCAN = re.compile(
    r"""(?P<ws>\s+)
    |(?P<lc>--[^\n\r]*)
    |(?P<bc>/\*)
    |(?P<es>(?<![\w$])[eE]'(?:[^'\\]|\\[\s\S]|'')*(?:'|\Z))
    |(?P<s>'[^']*(?:''[^']*)*(?:'|\Z))
    |(?P<dq>\$(?P<tag>(?:[^\W\d]\w*)?)\$[\s\S]*?(?:\$(?P=tag)\$|\Z))
    |(?P<qi>"[^"]*(?:""[^"]*)*(?:"|\Z))
    |(?P<param>\$\d+)
    |(?P<word>[^\W\d][\w$]*)
    |(?P<semi>;)
    |(?P<lp>\()
    |(?P<rp>\))
    |(?P<other>[^\s\w'"$;()/-]+|\d[\w.]*|[\s\S])""",
    re.X,
)
_COMMENT_EDGE = re.compile(r"/\*|\*/")


def _block_comment_end(sql: str, pos: int) -> int:
    """End of the (nested) block comment whose opening ``/*`` ends at ``pos``."""
    depth = 1
    while depth:
        m = _COMMENT_EDGE.search(sql, pos)
        if m is None:
            return len(sql)
        depth += 1 if m.group() == "/*" else -1
        pos = m.end()
    return pos


def scan(sql: str) -> Scan:
    statements: list[Statement] = []
    hints: set[str] = set()
    pieces: list[str] = []
    leading_comment = False
    seen_token = False
    depth = 0
    start = 0
    pos = 0
    n = len(sql)
    match = _SCAN.match
    while pos < n:
        m = match(sql, pos)
        kind = m.lastgroup
        end = m.end()
        if kind == "ws":
            pieces.append(" ")
        elif kind == "lc" or kind == "bc":
            if not seen_token:
                leading_comment = True
            if kind == "bc":
                end = _block_comment_end(sql, end)
                body = sql[pos + 2:end - 2] if sql.endswith("*/", 0, end) else sql[pos + 2:end]
                hint = " ".join(body.split()).upper()
                if hint:
                    hints.add(hint)
            pieces.append(" ")
        else:
            seen_token = True
            if kind == "semi" and depth <= 0:
                text = "".join(pieces).strip()
                if text:
                    statements.append(Statement(text, start))
                pieces = []
                depth = 0
                start = end
            else:
                if kind == "lp":
                    depth += 1
                elif kind == "rp":
                    depth -= 1
                pieces.append("0" if kind == "param" else m.group())
        pos = end
    text = "".join(pieces).strip()
    if text:
        statements.append(Statement(text, start))
    return Scan(statements, frozenset(hints), leading_comment)


# -- tokens --------------------------------------------------------------------

class Token(NamedTuple):
    kind: str    # word | name (quoted) | str | num | param | op
    value: str   # words lower-cased; quoted names and strings unquoted
    start: int
    end: int


_TOKEN = re.compile(
    r"""\s*(?:(?P<name>"(?:[^"]|"")*")
    |(?P<estr>(?<![\w$])[eE]'(?:[^'\\]|\\[\s\S]|'')*')
    |(?P<str>'(?:[^']|'')*')
    |(?P<dstr>\$(?P<tag>(?:[^\W\d]\w*)?)\$[\s\S]*?\$(?P=tag)\$)
    |(?P<param>\$\d+)
    |(?P<word>[^\W\d][\w$]*)
    |(?P<num>\d+(?:\.\d*)?(?:[eE][+-]?\d+)?|\.\d+)
    |(?P<op>[\s\S]))""",
    re.X,
)


def tokens(text: str) -> list[Token]:
    out: list[Token] = []
    pos = 0
    n = len(text)
    while pos < n:
        m = _TOKEN.match(text, pos)
        kind = m.lastgroup
        if kind is None:        # trailing whitespace
            break
        value = m.group(kind)
        if kind == "word" or kind == "name":
            value = fold(value)
        elif kind == "str":
            value = value[1:-1].replace("''", "'")
        elif kind == "estr":
            kind, value = "str", value[2:-1]
        elif kind == "dstr":
            tag = len(m.group("tag")) + 2
            kind, value = "str", value[tag:-tag]
        out.append(Token(kind, value, m.start(kind), m.end()))
        pos = m.end()
    return out


def is_word(tok: Token | None, *words: str) -> bool:
    return tok is not None and tok.kind == "word" and tok.value in words


def read_name(toks: list[Token], i: int) -> tuple[str | None, int]:
    """A possibly qualified name at ``toks[i]``: ('schema.t', next index)."""
    parts: list[str] = []
    while i < len(toks) and toks[i].kind in ("word", "name"):
        parts.append(toks[i].value)
        i += 1
        if i < len(toks) and toks[i].kind == "op" and toks[i].value == "." :
            i += 1
            continue
        break
    return (".".join(parts) if parts else None), i


def read_names(toks: list[Token], i: int, skip: tuple[str, ...] = ()) -> tuple[list[str], int]:
    """A comma list of names, each optionally preceded by ``skip`` words (ONLY)
    and followed by ``*``."""
    names: list[str] = []
    while i < len(toks):
        while is_word(toks[i] if i < len(toks) else None, *skip):
            i += 1
        name, i = read_name(toks, i)
        if name is None:
            break
        names.append(name)
        if i < len(toks) and toks[i].value == "*" and toks[i].kind == "op":
            i += 1
        if i < len(toks) and toks[i].kind == "op" and toks[i].value == ",":
            i += 1
            continue
        break
    return names, i


def matching_paren(toks: list[Token], i: int) -> int:
    """Index just past the ``)`` matching the ``(`` at ``toks[i]``."""
    depth = 0
    while i < len(toks):
        t = toks[i]
        if t.kind == "op":
            if t.value == "(":
                depth += 1
            elif t.value == ")":
                depth -= 1
                if depth == 0:
                    return i + 1
        i += 1
    return i


def transaction_modes(toks: list[Token], i: int) -> tuple[bool, bool]:
    """(serializable, read_write) from BEGIN / SET TRANSACTION modes.

    Like Pgpool-II, the first READ WRITE / READ ONLY wins and any
    ISOLATION LEVEL SERIALIZABLE counts.
    """
    serializable = False
    read_write: bool | None = None
    n = len(toks)
    while i < n:
        t = toks[i]
        nxt = toks[i + 1].value if i + 1 < n and toks[i + 1].kind == "word" else ""
        if t.kind == "word" and t.value == "isolation" and nxt == "level":
            level = toks[i + 2].value if i + 2 < n else ""
            serializable = serializable or level == "serializable"
            i += 4 if level in ("repeatable", "read") else 3
        elif t.kind == "word" and t.value == "read" and nxt in ("write", "only"):
            if read_write is None:
                read_write = nxt == "write"
            i += 2
        else:
            i += 1
    return serializable, bool(read_write)


def pg_false(value: str) -> bool:
    """PostgreSQL's parse_bool() says false (off, f/false, n/no, 0 and prefixes)."""
    v = value.strip().lower()
    if not v:
        return False
    return (v == "0" or "false".startswith(v) or "no".startswith(v)
            or (len(v) >= 2 and "off".startswith(v)))
