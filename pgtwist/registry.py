"""Finding routing-policy plugins and building the routing chain from a Config.

Without ``routing.policies`` the chain is Pgpool-II's, fed by the flat
Pgpool-II parameters::

    statement, pattern_list, function_list, temp_tables, stickiness, read_consistency,
    weighted_balancer

To insert a policy of your own, list the whole order; each item is a factory
name, or a mapping with ``name`` plus options that override the flat
parameters for that policy only (the section's shape is checked by
pgtwist.config_routing, with the rest of the configuration)::

    routing:
      plugin_paths: [/etc/pgtwist/policies]     # extra directories searched for plugins
      policies:
        - statement
        - reporting_to_node1                    # plugins/reporting.py or a plugin_paths file
        - {name: pattern_list, primary_routing_query_pattern_list: ['SELECT .* FOR SHARE']}
        - function_list
        - temp_tables
        - stickiness
        - read_consistency
        - weighted_balancer

A plugin is a module-level object providing IPlugin and IRoutingPolicyFactory
in a Python file under a ``plugins/`` directory on sys.path or in one of
``routing.plugin_paths`` (relative paths resolve against the config file's
directory).  Option errors name their path: ``routing.policies[2].<option>``.

What the proxy needs besides the chain is read from the same configuration, never
from the built policies: :func:`write_rules` (write tracking) and
:func:`catalog_options` (which catalog facts to look up).
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
from pgtwist.config_routing import PolicyEntry
from pgtwist.interfaces import IRoutingPolicyFactory
from pgtwist.routing.builtin import (
    DEFAULT_ORDER,
    FUNCTION_KEYS,
    POLICIES,
    TEMP_KEYS,
    TempTableOptions,
)
from pgtwist.routing.chain import Chain
from pgtwist.routing.stickiness import WriteRules

log = Logger()


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


def _flat_options(keys: Iterable[str], config: Config) -> dict:
    """The flat parameters among ``keys`` (a factory's ``config_keys``), plus ``node_count``."""
    options = {}
    for key in keys:
        if key == "node_count":
            options[key] = len(config.backends)
        elif key in config.params:
            options[key] = config.params[key]
    return options


def _parse(factory: object, block: Mapping, path: str, config: Config,
           errors: list[str]) -> object:
    flat = _flat_options(getattr(factory, "config_keys", ()), config)
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


def build_chain(config: Config, factories: Mapping[str, object] | None = None) -> Chain:
    """The routing chain for ``config``; every problem is reported in one ConfigError."""
    routing = config.routing
    if factories is None:
        factories = load_factories(routing.plugin_paths)
    entries = routing.policies
    if entries is None:
        missing = [n for n in DEFAULT_ORDER if n not in factories]
        if missing:
            raise ConfigError(f"routing: built-in policies not found: {', '.join(missing)} "
                              f"(is the plugins package installed?)")
        entries = tuple(PolicyEntry(name, {}, f"routing.policies[{i}]")
                        for i, name in enumerate(DEFAULT_ORDER))
    known = ", ".join(sorted(factories))
    errors: list[str] = []
    built = []
    for entry in entries:
        factory = factories.get(entry.name)
        if factory is None:
            errors.append(f"{entry.path}: unknown policy {entry.name!r} (known: {known})")
            continue
        options = _parse(factory, entry.options, entry.path, config, errors)
        if options is None:
            continue
        try:
            built.append(factory.build(options))
        except Exception as exc:  # noqa: BLE001
            errors.append(f"{entry.path}: policy {entry.name!r} could not be built: "
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


def _builtin_options(config: Config, name: str, keys: tuple[str, ...]):
    """A built-in policy's options among ``keys`` as the configuration sets them: the flat
    parameters, overlaid by the block of the first ``routing.policies`` entry named ``name``
    (whose errors, if any, name that entry)."""
    raw = _flat_options(keys, config)
    entry = config.routing.entry(name)
    path = ""
    if entry is not None and entry.options:
        raw.update((k, v) for k, v in entry.options.items() if k in keys)
        path = entry.path
    return POLICIES[name][1](raw, path)


def write_rules(config: Config, chain: Chain | None = None) -> WriteRules:
    """The WriteRules for ``config``: the options its stickiness, function_list and
    statement policies are configured with (the flat parameters where it lists none).

    ``chain`` is not read (the rules come from the configuration the chain was built
    from); it is accepted for callers that pass the chain along.
    """
    statement = _builtin_options(config, "statement",
                                 ("allow_sql_comments", "ignore_leading_white_space"))
    return WriteRules(
        _builtin_options(config, "stickiness", ("disable_load_balance_on_write",)).mode,
        _builtin_options(config, "function_list", FUNCTION_KEYS),
        statement.allow_sql_comments, statement.ignore_leading_white_space)


def catalog_options(config: Config) -> TempTableOptions:
    """check_temp_table / check_unlogged_table as the temp_tables policy is configured."""
    return _builtin_options(config, "temp_tables", TEMP_KEYS)
