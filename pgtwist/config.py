"""Configuration: a YAML file (or a Pgpool-II pgpool.conf), then ``PGPOOL_PARAMS_*`` environment
variables, then command-line overrides, merged into one frozen :class:`Config`.

Everything is validated up front and every problem is reported at once, each prefixed with the
path of the offending setting, so a broken deployment fails with one readable message instead of
a traceback at the first connection. Secret values never appear in messages or reprs.
Relative file names resolve against the config file's directory, as in Pgpool-II (those given
on the command line against the working directory).

pgtwist differs from Pgpool-II on purpose in a few defaults: ``num_init_children`` caps
concurrent clients (1000, not 32 processes: one event loop serves them all), ``pid_file_name``
is empty (twistd writes the pidfile) and unknown parameters are errors rather than INFO logs.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

import yaml

from pgtwist.config_files import check_config_files
from pgtwist.config_pgpool import parse_pgpool_conf, unquote
from pgtwist.config_routing import RoutingConfig, parse_routing
from pgtwist.config_values import address_errors, convert, describe, redact
from pgtwist.errors import ConfigError
from pgtwist.options import (
    AuthOptions,
    ClassifierOptions,
    PoolOptions,
    SessionOptions,
    TLSOptions,
)
from pgtwist.params import (
    ALIASES,
    BACKEND_FIELDS,
    BACKEND_FLAGS,
    MAX_BACKENDS,
    PARAMS,
    PER_NODE,
    RENAMED,
    RENAMED_FLAGS,
    SUFFIX_ONLY,
    Param,
    unimplemented,
    unimplemented_message,
)

__all__ = ["Backend", "Config", "ConfigError", "load_config", "parse_config", "parse_pgpool_conf"]

ENV_PREFIX = "PGPOOL_PARAMS_"


@dataclass(frozen=True)
class Backend:
    node_id: int
    hostname: str
    port: int
    weight: float
    flags: frozenset[str]
    data_directory: str = ""
    application_name: str = ""

    @property
    def always_primary(self) -> bool:
        return "ALWAYS_PRIMARY" in self.flags

    @property
    def failover_allowed(self) -> bool:
        return "DISALLOW_TO_FAILOVER" not in self.flags


@dataclass(frozen=True)
class Config:
    path: str | None
    base_dir: str
    listen_addresses: str
    port: int
    backends: tuple[Backend, ...]
    load_balance_mode: bool
    connection_cache: bool
    reset_query_list: tuple[str, ...]
    authentication_timeout: int
    connect_timeout: int
    num_init_children: int
    max_pool: int
    reserved_connections: int
    pool_passwd: str
    pool_hba_file: str
    pool_key_file: str
    enable_pool_hba: bool
    sr_check_period: int
    sr_check_user: str
    sr_check_password: str = field(repr=False)
    sr_check_database: str
    health_check_period: int
    max_message_length: int
    log_min_messages: str
    pid_file_name: str
    params: Mapping[str, object] = field(repr=False)
    # One typed group per consumer (pgtwist.options), built from ``params``.
    pool: PoolOptions = field(repr=False)
    session: SessionOptions = field(repr=False)
    auth: AuthOptions = field(repr=False)
    tls: TLSOptions = field(repr=False)
    classifier: ClassifierOptions = field(repr=False)
    routing: RoutingConfig = field(repr=False)   # the checked ``routing`` section (params has it raw)

    def secrets_redacted(self) -> dict:
        """All parameters, with password-like values replaced (safe to log or show)."""
        return {name: redact(name, value) for name, value in self.params.items()}


# --- names -----------------------------------------------------------------------------------

_FLAT_BACKEND = re.compile(rf"backend_({'|'.join(BACKEND_FIELDS)})(\d+)\Z")
_SUFFIXED = re.compile(r"([a-z_]+?)(\d+)\Z")
_NAMES = sorted([*PARAMS, "backends"])
_STEMS = sorted([*(f"backend_{f}" for f in BACKEND_FIELDS), *PER_NODE, *SUFFIX_ONLY])
_BACKEND_PARAMS = {
    "hostname": Param("backend_hostname", "str", ""),
    "port": Param("backend_port", "int", 5432, lo=1, hi=65535),
    "weight": Param("backend_weight", "float", 1.0, lo=0),
    "data_directory": Param("backend_data_directory", "str", ""),
    "application_name": Param("backend_application_name", "str", ""),
}


def _suffixed_param(name: str) -> Param | None:
    m = _SUFFIXED.match(name)
    if m and m[1] in PER_NODE:
        return dataclasses.replace(PARAMS[m[1]], name=name)
    if m and m[1] in SUFFIX_ONLY:
        return dataclasses.replace(SUFFIX_ONLY[m[1]], name=name)
    return None


def _hint(key: str, names: list[str] | tuple[str, ...], stems: list[str] | tuple = ()) -> str:
    m = _SUFFIXED.match(key)
    close = difflib.get_close_matches(m[1], stems, n=1, cutoff=0.75) if m and stems else []
    if close:
        return f"; did you mean {close[0]}{m[2]}?"
    close = difflib.get_close_matches(key, names, n=1, cutoff=0.75)
    return f"; did you mean {close[0]}?" if close else ""


def _unknown(key: str) -> str:
    m = _SUFFIXED.match(key)
    if key in RENAMED:
        return f"replaced by {RENAMED[key]} in Pgpool-II 4.2"
    if m and m[1] in RENAMED:
        return f"replaced by {RENAMED[m[1]]}{m[2]} in Pgpool-II 4.2"
    return "unknown parameter" + _hint(key, _NAMES, _STEMS)


# --- merging ---------------------------------------------------------------------------------

_Sourced = dict  # name -> (raw value, label used in error messages)


def _place(key: object, value: object, label: str, values: _Sourced,
           nodes: dict[int, _Sourced], errors: list[str]) -> None:
    if not isinstance(key, str):
        errors.append(f"{key!r}: unknown parameter")
        return
    if key == "backends":
        _place_structured(value, label, nodes, errors)
        return
    key = ALIASES.get(key, key)
    m = _FLAT_BACKEND.match(key)
    if m:
        node = int(m[2])
        if node >= MAX_BACKENDS:
            errors.append(f"{label}: node id must be below {MAX_BACKENDS}")
        else:
            nodes.setdefault(node, {})[m[1]] = (value, label)
    elif key in PARAMS or _suffixed_param(key):
        values[key] = (value, label)
    else:
        errors.append(f"{label}: {_unknown(key)}")


def _place_structured(value: object, label: str, nodes: dict[int, _Sourced],
                      errors: list[str]) -> None:
    suffix = label[len("backends"):]  # e.g. " (from command line)"
    if value is None:
        return
    if not isinstance(value, (list, tuple)):
        errors.append(f"{label}: expected a list of backends, got {describe(value)}")
        return
    for i, item in enumerate(value):
        where = f"backends[{i}]"
        if i >= MAX_BACKENDS:
            errors.append(f"{where}{suffix}: at most {MAX_BACKENDS} backends are supported")
            break
        if not isinstance(item, Mapping):
            errors.append(f"{where}{suffix}: expected a mapping (hostname, port, weight, flag, "
                          f"data_directory, application_name), got {describe(item)}")
            continue
        node = nodes.setdefault(i, {})
        for key, v in item.items():
            if key in BACKEND_FIELDS:
                node[key] = (v, f"{where}.{key}{suffix}")
            else:
                errors.append(f"{where}.{key}{suffix}: unknown backend setting"
                              + _hint(str(key), BACKEND_FIELDS))


def _parse_flags(value: object, label: str, errors: list[str]) -> frozenset[str]:
    if isinstance(value, (list, tuple)):
        parts = [str(v) for v in value]
    elif isinstance(value, str):
        parts = value.split("|")
    else:
        errors.append(f"{label}: expected flags such as 'ALWAYS_PRIMARY|DISALLOW_TO_FAILOVER', "
                      f"got {describe(value)}")
        return frozenset({"ALLOW_TO_FAILOVER"})
    flags = set()
    for part in (p.strip() for p in parts):
        if part.upper() in RENAMED_FLAGS:
            errors.append(f"{label}: flag {part!r} was renamed to {RENAMED_FLAGS[part.upper()]}")
        elif part.upper() in BACKEND_FLAGS:
            flags.add(part.upper())
        elif part:
            errors.append(f"{label}: unknown flag {part!r} (expected {', '.join(BACKEND_FLAGS)})")
    if {"ALLOW_TO_FAILOVER", "DISALLOW_TO_FAILOVER"} <= flags:
        errors.append(f"{label}: ALLOW_TO_FAILOVER and DISALLOW_TO_FAILOVER exclude each other")
    if "DISALLOW_TO_FAILOVER" not in flags:
        flags.add("ALLOW_TO_FAILOVER")  # pgpool's default; explicit so readers need not know it
    return frozenset(flags)


def _build_backends(nodes: dict[int, _Sourced], params: dict, base_dir: str,
                    errors: list[str]) -> tuple[Backend, ...]:
    if not nodes:
        errors.append("backends: at least one backend is required")
        return ()
    backends = []
    for n in range(max(nodes) + 1):
        if n not in nodes:
            found = ", ".join(map(str, sorted(nodes)))
            errors.append(f"backends[{n}]: missing (node ids must be contiguous from 0; "
                          f"configured: {found})")
            continue
        given = nodes[n]
        got = {}
        for name, p in _BACKEND_PARAMS.items():
            before = len(errors)
            value, label = given.get(name, (p.default, ""))
            got[name] = convert(p, value, label, base_dir, errors)
            if name == "hostname" and len(errors) == before and not got[name].strip():
                errors.append(f"backends[{n}].hostname: required")
        flag_value, flag_label = given.get("flag", ("ALLOW_TO_FAILOVER", ""))
        flags = _parse_flags(flag_value, flag_label, errors)
        backend = Backend(n, got["hostname"], got["port"], got["weight"], flags,
                          got["data_directory"], got["application_name"])
        backends.append(backend)
        for name in BACKEND_FIELDS:
            value = "|".join(f for f in BACKEND_FLAGS if f in flags) if name == "flag" else got[name]
            params[f"backend_{name}{n}"] = value
    return tuple(backends)


def _cross_check(params: dict, errors: list[str]) -> None:
    if params["reserved_connections"] and params["reserved_connections"] >= params["num_init_children"]:
        errors.append(f"reserved_connections: must be less than num_init_children "
                      f"({params['num_init_children']})")
    if params["write_function_list"] and params["read_only_function_list"]:
        errors.append("write_function_list: cannot be combined with read_only_function_list "
                      "(set only one of them)")
    if params["metrics_port"]:
        for other in ("port", "pcp_port"):
            if params["metrics_port"] == params[other]:
                errors.append(f"metrics_port: must differ from {other} ({params[other]})")
        errors.extend(f"metrics_listen_addresses: {why}"
                      for why in address_errors(params["metrics_listen_addresses"]))


def parse_config(raw: Mapping, *, path: str | None = None, env: Mapping[str, str] | None = None,
                 overrides: Mapping[str, object] | None = None, check_files: bool = True) -> Config:
    """Validate an already-loaded mapping (plus environment and overrides) into a Config.

    ``check_files=False`` skips the checks of the files the settings name (existence,
    readability, permissions), for tools that only want the paths, such as ``pgtwist passwd``.
    """
    abspath = os.path.abspath(path) if path else None
    base_dir = os.path.dirname(abspath) if abspath else os.getcwd()
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{abspath or '<config>'}: expected a mapping of parameter names, "
                          f"got {describe(raw)}")
    # Structured `backends:` first, so flat backend_<field>N keys override it whatever the order.
    items = sorted(raw.items(), key=lambda kv: kv[0] != "backends")
    sources = [(key, value, str(key)) for key, value in items]
    env = os.environ if env is None else env
    for name in sorted(env):
        if name.startswith(ENV_PREFIX) and len(name) > len(ENV_PREFIX):
            key = name[len(ENV_PREFIX):].lower()
            sources.append((key, unquote(env[name]), f"{key} (from {name})"))
    for key, value in (overrides or {}).items():
        if value is None:  # an option that was not given on the command line
            continue
        if key in PARAMS and PARAMS[key].kind == "path" and isinstance(value, str) and value:
            value = os.path.abspath(value)  # a file named on the command line is cwd-relative
        sources.append((key, value, f"{key} (from command line)"))

    errors: list[str] = []
    values: _Sourced = {}
    nodes: dict[int, _Sourced] = {}
    for key, value, label in sources:
        _place(key, value, label, values, nodes, errors)

    params: dict[str, object] = {}
    labels: dict[str, str] = {}
    for name, p in PARAMS.items():
        value, label = values.pop(name, (p.default, name))
        labels[name] = label
        params[name] = convert(p, value, label, base_dir, errors)
    for name in sorted(values, key=lambda k: (_SUFFIXED.match(k)[1], int(_SUFFIXED.match(k)[2]))):
        value, label = values[name]
        params[name] = convert(_suffixed_param(name), value, label, base_dir, errors)
    backends = _build_backends(nodes, params, base_dir, errors)
    _cross_check(params, errors)
    for name in PARAMS:
        if unimplemented(name, params[name]) == "error":
            errors.append(f"{labels[name]}: {unimplemented_message(name)}; remove it or set "
                          f"it to {PARAMS[name].default!r}")
    if check_files:
        check_config_files(params, labels, errors)
    routing = parse_routing(params.get("routing") or {}, base_dir, errors,
                            check_files=check_files)
    if errors:
        raise ConfigError(errors)
    fields = {f.name: params[f.name] for f in dataclasses.fields(Config) if f.name in params}
    fields["routing"] = routing
    return Config(path=abspath, base_dir=base_dir, backends=backends,
                  params=MappingProxyType(params), pool=PoolOptions.from_params(params),
                  session=SessionOptions.from_params(params),
                  auth=AuthOptions.from_params(params), tls=TLSOptions.from_params(params),
                  classifier=ClassifierOptions.from_params(params), **fields)


def load_config(path: str | None, env: Mapping[str, str] | None = None,
                overrides: Mapping[str, object] | None = None, *,
                check_files: bool = True) -> Config:
    """Load a YAML file (``*.conf`` files are read as pgpool.conf); None = environment only."""
    if path is None:
        return parse_config({}, path=None, env=env, overrides=overrides, check_files=check_files)
    abspath = os.path.abspath(path)
    try:
        with open(abspath, encoding="utf-8") as f:
            text = f.read()
    except (OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc)
        raise ConfigError(f"{abspath}: cannot read config file: {reason}") from None
    if abspath.endswith(".conf"):
        raw: object = parse_pgpool_conf(text, abspath)
    else:
        try:
            raw = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            # Only the line and the parser's complaint: the offending text may hold a secret.
            mark = getattr(exc, "problem_mark", None)
            where = f"{abspath}:{mark.line + 1}" if mark is not None else abspath
            problem = getattr(exc, "problem", None) or "cannot be parsed"
            raise ConfigError(f"{where}: invalid YAML: {problem}") from None
    return parse_config({} if raw is None else raw, path=abspath, env=env, overrides=overrides,
                        check_files=check_files)
