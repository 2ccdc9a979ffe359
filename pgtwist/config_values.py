"""Configuration values: each parameter kind's converter (on/off, integers with units,
lists, paths, file modes...), the error text for a bad value, and redaction of secrets.

A converter takes the parameter, the raw value (from YAML, pgpool.conf, the environment or
the command line) and the config file's directory; it returns the typed value or raises
:class:`Bad` with the "expected ..." half of the error message. :func:`convert` turns that
into one error line, never showing a secret's value.
"""

from __future__ import annotations

import copy
import math
import os
import re
from collections.abc import Mapping
from types import MappingProxyType

from pgtwist.params import PARAMS, Param, is_secret

REDACTED = "********"
HIDDEN = "<hidden>"


class Bad(Exception):
    """Raised by a converter with the 'expected ...' half of an error message."""


_TRUE = frozenset({"on", "true", "yes", "1"})
_FALSE = frozenset({"off", "false", "no", "0"})
_MEMORY_UNITS = {"B": 1, "kB": 1 << 10, "MB": 1 << 20, "GB": 1 << 30, "TB": 1 << 40}
_TIME_UNITS = {"ms": 1, "s": 1000, "min": 60_000, "h": 3_600_000, "d": 86_400_000}
_INT_RE = re.compile(r"\s*([+-]?\d+)\s*([A-Za-z]*)\s*\Z")
_SEMI_SPLIT = re.compile(r"(?<!\\);")


def _to_bool(p: Param, v: object, base_dir: str) -> bool:
    if isinstance(v, bool):
        return v
    if isinstance(v, int) and v in (0, 1):
        return bool(v)
    if isinstance(v, str):
        word = v.strip().lower()
        if word in _TRUE or word in _FALSE:
            return word in _TRUE
    raise Bad("expected on/off")


# Ports a Pgpool-II config may switch off with an empty value as well as 0.
EMPTY_MEANS_OFF = frozenset({"pcp_port"})


def _to_int(p: Param, v: object, base_dir: str) -> int:
    bounds = (f"{p.lo}-{p.hi}" if p.hi is not None else f">= {p.lo}") if p.lo is not None else ""
    expected = f"expected an integer {bounds}".rstrip() + (f" (default unit {p.unit})" if p.unit else "")
    if isinstance(v, bool):
        raise Bad(expected)
    if isinstance(v, float) and v.is_integer():
        v = int(v)
    if v == "" and p.name in EMPTY_MEANS_OFF:
        return 0
    if isinstance(v, int):
        n = v
    elif isinstance(v, str) and (m := _INT_RE.match(v)):
        n, unit = int(m[1]), m[2]
        if unit:
            table = _MEMORY_UNITS if p.unit in _MEMORY_UNITS else _TIME_UNITS
            if p.unit not in table or unit not in table or (n * table[unit]) % table[p.unit]:
                raise Bad(expected)
            n = n * table[unit] // table[p.unit]
    else:
        raise Bad(expected)
    if (p.lo is not None and n < p.lo) or (p.hi is not None and n > p.hi):
        raise Bad(expected)
    return n


def _to_float(p: Param, v: object, base_dir: str) -> float:
    expected = "expected a number" + (f" >= {p.lo}" if p.lo is not None else "")
    if isinstance(v, bool) or not isinstance(v, (int, float, str)):
        raise Bad(expected)
    try:
        f = float(v)
    except ValueError:
        raise Bad(expected) from None
    if not math.isfinite(f) or (p.lo is not None and f < p.lo):
        raise Bad(expected)
    return f


def _to_str(p: Param, v: object, base_dir: str) -> str:
    if v is None:
        return ""
    if isinstance(v, bool):  # YAML reads a bare on/off/yes/no as a bool
        return "on" if v else "off"
    if isinstance(v, (str, int, float)):
        return str(v)
    raise Bad("expected a string")


def _to_enum(p: Param, v: object, base_dir: str) -> str:
    if isinstance(v, bool):
        v = "on" if v else "off"
    if isinstance(v, str):
        for choice in p.choices:
            if choice.lower() == v.strip().lower():
                return choice
    if p.name == "backend_clustering_mode":
        raise Bad("pgtwist supports streaming replication only (streaming_replication or raw)")
    raise Bad("expected one of " + ", ".join(p.choices))


def _to_path(p: Param, v: object, base_dir: str) -> str:
    text = _to_str(p, v, base_dir)
    return os.path.normpath(os.path.join(base_dir, os.path.expanduser(text))) if text else ""


def _to_list(p: Param, v: object, base_dir: str) -> tuple[str, ...]:
    sep = "','" if p.kind == "list" else "';'"
    if v is None:
        return ()
    if isinstance(v, str):
        items = v.split(",") if p.kind == "list" else _SEMI_SPLIT.split(v)
    elif isinstance(v, (list, tuple)) and all(
        isinstance(i, (str, int, float)) and not isinstance(i, bool) for i in v
    ):
        items = [str(i) for i in v]
    else:
        raise Bad(f"expected a {sep}-separated string or a list of strings")
    return tuple(item.strip() for item in items if item.strip())


def _to_mode(p: Param, v: object, base_dir: str) -> int:
    if isinstance(v, int) and not isinstance(v, bool):
        n = v
    elif isinstance(v, str) and re.fullmatch(r"\s*[0-7]{1,5}\s*", v):
        n = int(v, 8)
    else:
        raise Bad("expected an octal file mode such as 0600")
    if not 0 <= n <= 0o7777:
        raise Bad("expected an octal file mode such as 0600")
    return n


def _to_map(p: Param, v: object, base_dir: str) -> Mapping:
    if v is None:
        return MappingProxyType({})
    if isinstance(v, Mapping):
        return MappingProxyType(copy.deepcopy(dict(v)))
    raise Bad("expected a mapping")


_CONVERTERS = {
    "bool": _to_bool, "int": _to_int, "float": _to_float, "str": _to_str, "enum": _to_enum,
    "path": _to_path, "list": _to_list, "semilist": _to_list, "mode": _to_mode, "map": _to_map,
}


def describe(value: object) -> str:
    if value is None:
        return "nothing"
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, (list, tuple)):
        return "a list"
    return repr(value)


def convert(p: Param, value: object, label: str, base_dir: str, errors: list[str]) -> object:
    try:
        return _CONVERTERS[p.kind](p, value, base_dir)
    except Bad as exc:
        got = HIDDEN if is_secret(p.name, p.kind) else describe(value)
        errors.append(f"{label}: {exc}, got {got}")
        return p.default


def redact(name: str, value: object) -> object:
    if isinstance(value, Mapping):
        return {k: redact(str(k), v) for k, v in value.items()}
    if isinstance(value, list):
        return [redact(name, v) for v in value]
    known = PARAMS.get(name)
    if value not in ("", None, ()) and is_secret(name, known.kind if known else "str"):
        return REDACTED
    return value


def address_errors(listen_addresses: str) -> list[str]:
    """What is wrong with a listen_addresses-style value: '*', 'localhost' or IP
    addresses, comma-separated (a host name would be resolved at bind time, or not)."""
    import ipaddress

    items = [item.strip() for item in listen_addresses.split(",")]
    if not any(items):
        return ["expected '*', 'localhost' or IP addresses, got an empty value"]
    errors = []
    for item in items:
        if item in ("*", "localhost"):
            continue
        try:
            ipaddress.ip_address(item)
        except ValueError:
            errors.append(f"{item!r} is not '*', 'localhost' or an IP address")
    return errors


def listen_interfaces(listen_addresses: str) -> list[str]:
    """Pgpool-II's listen_addresses (and pcp_/metrics_listen_addresses): '*' = all,
    else comma-separated hosts ('localhost' = 127.0.0.1)."""
    result = []
    for item in listen_addresses.split(","):
        item = item.strip()
        if not item:
            continue
        if item == "*":
            return ["0.0.0.0", "::"]
        result.append("127.0.0.1" if item == "localhost" else item)
    return result
