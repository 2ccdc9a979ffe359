"""Configuration views: PGPOOL SHOW name | group | ALL, SHOW pool_status, pool_version and
pool_cache.

Values print as Pgpool-II prints them: booleans ``on``/``off``, lists joined with ``,``
(``;`` for reset_query_list and the pattern list), passwords and keys always ``*****``
whatever their value.  A session's PGPOOL SET values (pgtwist.session.poolsettings)
replace the configured ones in what that session is shown.
"""

from __future__ import annotations

import json

from .. import __version__
from ..config_values import redact
from ..params import ALIASES, BACKEND_FIELDS, PARAMS, PER_NODE, SUFFIX_ONLY, is_secret
from .descriptions import describe

HIDDEN = "*****"
ITEM_COLUMNS = ["item", "value", "description"]
# The Pgpool-II release whose admin surface pgtwist answers (pgpool2_exporter reads the
# version to choose its queries: pool_backend_stats and pool_health_check_stats need 4.2).
COMPATIBLE_VERSION = "4.7.0"
POOL_CACHE_COLUMNS = [
    "num_cache_hits", "num_selects", "cache_hit_ratio", "num_hash_entries", "used_hash_entries",
    "num_cache_entries", "used_cache_entries_size", "free_cache_entries_size",
    "fragment_cache_entries_size",
]
GROUPS = ("backend", "health_check")   # watchdog / heartbeat: see docs/admin.md


class UnknownParameter(LookupError):
    """PGPOOL SHOW of a name no parameter has."""

    def __init__(self, name: str):
        super().__init__(name)
        self.message = f'config variable "{name}" not found'


def canonical(name: str) -> str:
    """The parameter a (case-folded or quoted) PGPOOL name means: aliases mapped."""
    return ALIASES.get(name, name)


def show_value(name: str, value: object, kind: str | None = None) -> str:
    """``value`` of parameter ``name`` as text, secrets hidden."""
    param = PARAMS.get(name) or SUFFIX_ONLY.get(name.rstrip("0123456789")) \
        or PARAMS.get(name.rstrip("0123456789"))
    kind = kind or (param.kind if param else "str")
    if is_secret(name, kind):
        return HIDDEN
    if value is None:
        return ""
    if kind == "bool" or isinstance(value, bool):
        return "on" if value else "off"
    if kind == "semilist":
        return ";".join(value)
    if kind == "list" or isinstance(value, tuple | list):
        return ",".join(str(v) for v in value)
    if kind == "mode":
        return f"{value:04o}"
    if kind == "map":
        return json.dumps(redact(name, value), sort_keys=True, separators=(",", ":"),
                          default=str)
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _item(name: str, value: object) -> list[str]:
    return [name, show_value(name, value), describe(name)]


def backend_items(params, node_count: int) -> list[list[str]]:
    return [_item(f"backend_{field}{n}", params.get(f"backend_{field}{n}", ""))
            for n in range(node_count) for field in BACKEND_FIELDS]


def health_check_items(params, node_count: int, names=None) -> list[list[str]]:
    """The health check group: each setting, then each node's (falling back to it)."""
    names = names or [n for n in PARAMS if n in PER_NODE]
    rows = [_item(name, params[name]) for name in names]
    for n in range(node_count):
        rows.extend(_item(f"{name}{n}", params.get(f"{name}{n}", params[name]))
                    for name in names)
    return rows


def all_items(params, node_count: int, overrides=None) -> list[list[str]]:
    """PGPOOL SHOW ALL (and SHOW pool_status): backends first, then every parameter, then
    the per-node health check settings and watchdog node entries that are set."""
    overrides = overrides or {}
    rows = backend_items(params, node_count)
    rows.extend(_item(name, overrides.get(name, params[name])) for name in PARAMS)
    rows.extend(health_check_items(params, node_count)[len(PER_NODE):])
    suffixed = sorted(k for k in params if k.rstrip("0123456789") in SUFFIX_ONLY
                      and k != k.rstrip("0123456789"))
    rows.extend(_item(k, params[k]) for k in suffixed)
    return rows


def pgpool_show(name: str, params, node_count: int, overrides=None):
    """(columns, rows) of PGPOOL SHOW ``name`` (already case-folded or unquoted)."""
    overrides = overrides or {}
    lowered = name.lower()
    if lowered == "all":
        return ITEM_COLUMNS, all_items(params, node_count, overrides)
    if lowered == "backend":
        return ITEM_COLUMNS, backend_items(params, node_count)
    if lowered == "health_check":
        return ITEM_COLUMNS, health_check_items(params, node_count)
    key = canonical(name)
    if key in PER_NODE:
        return ITEM_COLUMNS, health_check_items(params, node_count, [key])
    if key in PARAMS:
        return [name], [[show_value(key, overrides.get(key, params[key]))]]
    if key in params and key.rstrip("0123456789") != key:
        return [name], [[show_value(key, params[key])]]   # backend_port1, wd_port0 ...
    raise UnknownParameter(name)


def pool_status(params, node_count: int, overrides=None):
    """SHOW pool_status: PGPOOL SHOW ALL's rows (Pgpool-II calls it the older form)."""
    return ITEM_COLUMNS, all_items(params, node_count, overrides)


def pool_version():
    """Pgpool-II's ``"%s (%s)"`` form: the compatible release, then pgtwist's own."""
    return ["pool_version"], [[f"{COMPATIBLE_VERSION} (pgtwist {__version__})"]]


def pool_cache():
    """pgtwist has no query cache: every counter is 0, the ratio 0.00 (Pgpool-II's %.2f)."""
    return POOL_CACHE_COLUMNS, [["0", "0", "0.00", "0", "0", "0", "0", "0", "0"]]
