"""Finding routing-policy plugins and building the routing chain from a Config.

Without ``routing.policies`` the chain is Pgpool-II's, fed by the flat
Pgpool-II parameters::

    statement, pattern_list, function_list, temp_tables, stickiness, weighted_balancer

To insert a policy of your own, list the whole order; each item is a factory
name, or a mapping with ``name`` plus options that override the flat
parameters for that policy only::

    routing:
      plugin_paths: [/etc/pgtwist/policies]     # extra directories searched for plugins
      policies:
        - statement
        - reporting_to_node1                    # plugins/reporting.py or a plugin_paths file
        - {name: pattern_list, primary_routing_query_pattern_list: ['SELECT .* FOR SHARE']}
        - function_list
        - temp_tables
        - stickiness
        - weighted_balancer

A plugin is a module-level object providing IPlugin and IRoutingPolicyFactory
in a Python file under a ``plugins/`` directory on sys.path or in one of
``routing.plugin_paths`` (relative paths resolve against the config file's
directory).  Option errors name their path: ``routing.policies[2].<option>``.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping

from twisted.logger import Logger
from twisted.plugin import getPlugins
from twisted.python.failure import Failure
from zope.interface.exceptions import Invalid
from zope.interface.verify import verifyObject

import plugins
from pgtwist.config import Config, ConfigError
from pgtwist.interfaces import IRoutingPolicyFactory
from pgtwist.routing.builtin import DEFAULT_ORDER
from pgtwist.routing.chain import Chain
from pgtwist.routing.stickiness import WriteRules

log = Logger()

ROUTING_KEYS = ("policies", "plugin_paths")


def load_factories(extra_paths: Iterable[str] = ()) -> dict[str, object]:
    """Every IRoutingPolicyFactory plugin, by name; broken ones are logged and skipped.

    ``extra_paths`` are directories searched as if they were part of the
    ``plugins`` package (for the duration of this call).
    """
    added = [p for p in (os.path.abspath(p) for p in extra_paths) if p not in plugins.__path__]
    plugins.__path__.extend(added)
    try:
        found = list(getPlugins(IRoutingPolicyFactory, plugins))
    finally:
        for p in added:
            plugins.__path__.remove(p)
    factories: dict[str, object] = {}
    for factory in found:
        try:
            verifyObject(IRoutingPolicyFactory, factory)
        except Invalid as exc:
            log.warn("Ignoring routing policy plugin {factory!r}: {problem}",
                     factory=factory, problem=str(exc).strip())
            continue
        name = factory.name
        if not isinstance(name, str) or not name:
            log.warn("Ignoring routing policy plugin {factory!r}: name must be a non-empty "
                     "string", factory=factory)
        elif name in factories:
            log.warn("Ignoring routing policy plugin {factory!r}: the name {name!r} is taken "
                     "by {other!r}", factory=factory, name=name, other=factories[name])
        else:
            factories[name] = factory
    return factories


def _flat_options(factory: object, config: Config) -> dict:
    """The flat parameters a factory reads (``config_keys``), plus ``node_count``."""
    options = {}
    for key in getattr(factory, "config_keys", ()):
        if key == "node_count":
            options[key] = len(config.backends)
        elif key in config.params:
            options[key] = config.params[key]
    return options


def _parse(factory: object, block: Mapping, path: str, config: Config,
           errors: list[str]) -> object:
    flat = _flat_options(factory, config)
    try:
        if flat:  # flat parameters are checked first, so errors name them by themselves
            options = factory.parse_config(flat, "")
        if block or not flat:
            options = factory.parse_config({**flat, **block}, path)
    except ConfigError as exc:
        errors.extend(exc.errors)
        return None
    except Exception as exc:  # noqa: BLE001 - a third-party parser that crashes
        errors.append(f"{path or factory.name}: policy {factory.name!r} failed to read its "
                      f"options: {type(exc).__name__}: {exc}")
        return None
    return options


def _plugin_paths(routing: Mapping, config: Config, errors: list[str]) -> list[str]:
    value = routing.get("plugin_paths") or []
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, (list, tuple)):
        errors.append("routing.plugin_paths: expected a list of directories")
        return []
    paths = []
    for i, item in enumerate(value):
        if not isinstance(item, str) or not item.strip():
            errors.append(f"routing.plugin_paths[{i}]: expected a directory name, got {item!r}")
            continue
        path = os.path.join(config.base_dir, os.path.expanduser(item.strip()))
        if not os.path.isdir(path):
            errors.append(f"routing.plugin_paths[{i}]: {path} is not a directory")
            continue
        paths.append(path)
    return paths


def build_chain(config: Config, factories: Mapping[str, object] | None = None) -> Chain:
    """The routing chain for ``config``; every problem is reported in one ConfigError."""
    errors: list[str] = []
    routing = config.params.get("routing") or {}
    if not isinstance(routing, Mapping):
        raise ConfigError("routing: expected a mapping")
    for key in routing:
        if key not in ROUTING_KEYS:
            errors.append(f"routing.{key}: unknown setting (expected {', '.join(ROUTING_KEYS)})")
    paths = _plugin_paths(routing, config, errors)
    if factories is None:
        factories = load_factories(paths)
    known = ", ".join(sorted(factories))

    items = routing.get("policies")
    if items is None:
        items = list(DEFAULT_ORDER)
        missing = [n for n in items if n not in factories]
        if missing:
            raise ConfigError(f"routing: built-in policies not found: {', '.join(missing)} "
                              f"(is the plugins package installed?)")
    elif not isinstance(items, (list, tuple)) or not items:
        errors.append("routing.policies: expected a non-empty list of policy names or "
                      "{name: ..., options} mappings")
        items = []

    built = []
    for i, item in enumerate(items):
        path = f"routing.policies[{i}]"
        if isinstance(item, str):
            name, block = item, {}
        elif isinstance(item, Mapping) and isinstance(item.get("name"), str):
            name = item["name"]
            block = {k: v for k, v in item.items() if k != "name"}
        else:
            errors.append(f"{path}: expected a policy name or a mapping with 'name', "
                          f"got {item!r}")
            continue
        factory = factories.get(name)
        if factory is None:
            errors.append(f"{path}: unknown policy {name!r} (known: {known})")
            continue
        options = _parse(factory, block, path, config, errors)
        if options is None:
            continue
        try:
            built.append(factory.build(options))
        except Exception as exc:  # noqa: BLE001
            errors.append(f"{path}: policy {name!r} could not be built: "
                          f"{type(exc).__name__}: {exc}")
    if errors:
        raise ConfigError(errors)
    return Chain(built, on_error=policy_error_logger())


def policy_error_logger(every: int = 1000):
    """An on_error callback logging a failing policy's 1st, then every ``every``-th, failure."""
    counts: dict[str, int] = {}

    def on_error(name: str, exc: BaseException) -> None:
        n = counts[name] = counts.get(name, 0) + 1
        if n == 1 or n % every == 0:
            log.failure("Routing policy {policy} failed ({count} times so far); skipped",
                        failure=Failure(exc, type(exc), exc.__traceback__),
                        policy=name, count=n)

    return on_error


def write_rules(config: Config, chain: Chain | None = None) -> WriteRules:
    """The WriteRules matching ``chain`` (its stickiness/function_list/statement options).

    Falls back to the flat parameters for a policy the chain does not have.
    """
    rules = WriteRules.from_params(config.params)
    if chain is None:
        return rules
    sticky = chain.policy("stickiness")
    functions = chain.policy("function_list")
    statement = chain.policy("statement")
    return WriteRules(
        getattr(sticky, "mode", rules.mode),
        getattr(functions, "options", rules.functions),
        getattr(getattr(statement, "options", None), "allow_sql_comments", rules.allow_sql_comments),
        getattr(getattr(statement, "options", None), "ignore_leading_white_space",
                rules.ignore_leading_white_space),
    )
