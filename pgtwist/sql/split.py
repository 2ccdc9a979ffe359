"""Split a multi-statement Query string into its statements' texts (no sqlglot).

PostgreSQL's lexical rules that matter for finding the semicolons that end
statements: '...' strings ('' inside), E'...' strings (backslash escapes too),
"..." identifiers, $tag$...$tag$ bodies, -- line comments and nested /* */
comments.  Anything unterminated runs to the end of the text.

One regex match covers a whole statement up to its semicolon, so the work done
in Python is per statement (and per nested comment), not per character: this
runs on the event loop for Query strings of any length.
"""

from __future__ import annotations

import re

# Everything up to a top-level ';' (or the end), except that it stops at a block
# comment that nests, which a regex cannot follow.
_BODY = re.compile(
    r"""(?:[^;'"$\-/]++
    |(?<=(?<![\w$])[eE])'(?:[^'\\]++|\\[\s\S])*+(?:'|\Z)
    |'[^']*+(?:'|\Z)
    |"[^"]*+(?:"|\Z)
    |--[^\n\r]*+
    |/\*(?:[^*/]++|\*++(?!/)|/(?!\*))*+(?:\*/|\Z)
    |(?<![\w$])\$(?P<tag>(?:[^\W\d]\w*)?)\$[^$]*+(?:\$(?!(?P=tag)\$)[^$]*+)*+(?:\$(?P=tag)\$|\Z)
    |[$\-]|/(?!\*)
    )*+""",
    re.X,
)
_ALL = re.compile("(" + _BODY.pattern + ");?", re.X)
_COMMENT_EDGE = re.compile(r"/\*|\*/")
# A nested comment with more edges than this is taken to run to the end of the text
# (the statements after it are not seen): bounded work for a pathological text.
_MAX_COMMENT_EDGES = 10_000


def statement_ends(sql: str, start: int = 0):
    """Yield (start, end) of each statement of ``sql[start:]``, ``end`` at its ';' or
    the end of the text."""
    pos = start
    n = len(sql)
    match = _BODY.match
    while True:
        pos = match(sql, pos).end()
        if pos >= n:
            yield start, n
            return
        if sql[pos] == ";":
            yield start, pos
            pos = start = pos + 1
        else:           # "/*" opening a nested comment
            pos = _end_of_comment(sql, pos + 2)


def split_statements(sql: str) -> list[str]:
    """The statements of ``sql``, stripped, without their semicolons; empty ones dropped."""
    if "/*" in sql:
        parts = [sql[a:b].strip() for a, b in statement_ends(sql)]
    else:                 # no nested comment possible: one C-level pass
        parts = [found[0].strip() for found in _ALL.findall(sql)]
    return [part for part in parts if part]


def _end_of_comment(sql: str, pos: int) -> int:
    depth = 1
    for i, m in enumerate(_COMMENT_EDGE.finditer(sql, pos)):
        depth += 1 if m.group() == "/*" else -1
        if not depth:
            return m.end()
        if i >= _MAX_COMMENT_EDGES:
            break
    return len(sql)
