"""SQL identifiers as PostgreSQL resolves them: the one place that folds case and quotes.

An unquoted identifier is folded to lower case; a quoted one keeps its case and
loses its quotes, a doubled ``""`` inside standing for one ``"``.  The texts pgtwist
writes itself quote names and values here too.
"""

from __future__ import annotations


def fold(written: str) -> str:
    """An identifier as written (``Foo``, ``"Foo"``) -> as resolved (``foo``, ``Foo``)."""
    if len(written) >= 2 and written[0] == written[-1] == '"':
        return written[1:-1].replace('""', '"')
    return written.lower()


def fold_name(name: str, quoted: bool) -> str:
    """An identifier a parser already took out of its quotes (``quoted`` says if it had any)."""
    return name if quoted else name.lower()


def strip_quotes(part: str) -> str:
    """A name part with its quotes removed and its case kept (for names already folded,
    such as QueryInfo's table and function names)."""
    if len(part) >= 2 and part[0] == part[-1] == '"':
        return part[1:-1].replace('""', '"')
    return part


def split_qualified(name: str) -> tuple[str | None, str]:
    """``'schema.t'`` -> ``('schema', 't')``; ``'t'`` -> ``(None, 't')``."""
    schema, _, base = name.rpartition(".")
    return (schema or None), base


def quote_ident(name: str) -> str:
    """``name`` as a quoted identifier (its case kept)."""
    return '"' + name.replace('"', '""') + '"'


def quote_literal(text: str) -> str:
    """An escape-string literal: the same under any standard_conforming_strings."""
    return "E'" + text.replace("\\", "\\\\").replace("'", "''") + "'"
