"""Split a multi-statement Query string into its statements' texts (no sqlglot).

PostgreSQL's lexical rules that matter for finding the semicolons that end
statements: '...' strings ('' inside), E'...' strings (backslash escapes too),
"..." identifiers, $tag$...$tag$ bodies, -- line comments and nested /* */
comments.  Anything unterminated runs to the end of the text.
"""

from __future__ import annotations

import re

_DOLLAR_TAG = re.compile(r"\$([A-Za-z_\x80-\uffff][\w\x80-\uffff]*)?\$")


def split_statements(sql: str) -> list[str]:
    """The statements of ``sql``, stripped, without their semicolons; empty ones dropped."""
    out: list[str] = []
    start = i = 0
    n = len(sql)
    while i < n:
        c = sql[i]
        if c == ";":
            out.append(sql[start:i])
            i += 1
            start = i
        elif c == "'":
            escapes = i > 0 and sql[i - 1] in "eE" and (i < 2 or not (sql[i - 2].isalnum()
                                                                   or sql[i - 2] == "_"))
            i = _end_of_string(sql, i + 1, escapes)
        elif c == '"':
            end = sql.find('"', i + 1)
            while end != -1 and sql.startswith('""', end):
                end = sql.find('"', end + 2)
            i = n if end == -1 else end + 1
        elif c == "-" and sql.startswith("--", i):
            end = sql.find("\n", i)
            i = n if end == -1 else end + 1
        elif c == "/" and sql.startswith("/*", i):
            i = _end_of_comment(sql, i + 2)
        elif c == "$" and (i == 0 or not (sql[i - 1].isalnum() or sql[i - 1] == "_")):
            found = _DOLLAR_TAG.match(sql, i)
            if found:
                end = sql.find(found.group(0), found.end())
                i = n if end == -1 else end + len(found.group(0))
            else:
                i += 1
        else:
            i += 1
    out.append(sql[start:])
    return [part.strip() for part in out if part.strip()]


def _end_of_string(sql: str, i: int, escapes: bool) -> int:
    n = len(sql)
    while i < n:
        c = sql[i]
        if escapes and c == "\\":
            i += 2
        elif c == "'":
            if sql.startswith("''", i):
                i += 2
            else:
                return i + 1
        else:
            i += 1
    return n


def _end_of_comment(sql: str, i: int) -> int:
    depth, n = 1, len(sql)
    while i < n and depth:
        if sql.startswith("/*", i):
            depth += 1
            i += 2
        elif sql.startswith("*/", i):
            depth -= 1
            i += 2
        else:
            i += 1
    return i
