"""Pgpool-II's pgpool.conf syntax: ``name = value`` lines, ``#`` comments, single quotes."""

from __future__ import annotations

import re

from pgtwist.errors import ConfigError


def unquote(value: str) -> str:
    """pgpool.conf style 'value': drop one outer pair of single quotes, nothing else."""
    return value[1:-1] if len(value) >= 2 and value[0] == value[-1] == "'" else value


_CONF_LINE = re.compile(
    r"\s*([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(?:'((?:[^'\\\n]|\\.)*)'|([^\s#']*))\s*(?:#.*)?\Z"
)


def parse_pgpool_conf(text: str, path: str = "pgpool.conf") -> dict[str, str]:
    """Read pgpool.conf syntax (``name = value``, ``#`` comments); a later line wins.

    Quoted values keep their contents verbatim (backslashes included), as pgpool does, so
    escaped ``\\;`` in primary_routing_query_pattern_list survives to the splitter.
    """
    raw: dict[str, str] = {}
    errors = []
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        m = _CONF_LINE.match(line)
        if not m:
            errors.append(f"{path}:{lineno}: syntax error (expected name = value)")
            continue
        raw.pop(m[1], None)
        raw[m[1]] = m[2] if m[2] is not None else m[3]
    if errors:
        raise ConfigError(errors)
    return raw
