"""The ``routing`` section of the configuration: the policies in order, and plugin folders.

config.py calls :func:`parse_routing` while it checks everything else, so a malformed
section is reported with every other problem, each naming its key::

    routing:
      plugin_paths: [/etc/pgtwist/policies]     # extra directories searched for plugins
      policies:                                 # absent: Pgpool-II's chain (registry.py)
        - statement
        - {name: pattern_list, primary_routing_query_pattern_list: ['SELECT .* FOR SHARE']}
        - ...

A policy's own options are its factory's business (``parse_config``): pgtwist.registry
finds the factories among the plugins and hands each its block, overlaid on the flat
Pgpool-II parameters it reads.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

ROUTING_KEYS = ("policies", "plugin_paths")
_NO_OPTIONS: Mapping[str, object] = MappingProxyType({})


@dataclass(frozen=True)
class PolicyEntry:
    """One item of ``routing.policies``: a factory name and its options block."""

    name: str
    options: Mapping[str, object]   # the block without 'name' (read-only); empty for a name
    path: str                       # 'routing.policies[i]', the prefix of its errors


@dataclass(frozen=True)
class RoutingConfig:
    plugin_paths: tuple[str, ...] = ()               # absolute directories
    policies: tuple[PolicyEntry, ...] | None = None  # None: not configured (the default chain)

    def entry(self, name: str) -> PolicyEntry | None:
        """The first listed policy named ``name``, if any."""
        for entry in self.policies or ():
            if entry.name == name:
                return entry
        return None


def parse_routing(routing: Mapping, base_dir: str, errors: list[str], *,
                  check_files: bool = True) -> RoutingConfig:
    """The section's shape; each problem is appended to ``errors`` as ``routing.<key>...``.

    ``check_files``: plugin directories must exist.
    """
    for key in routing:
        if key not in ROUTING_KEYS:
            errors.append(f"routing.{key}: unknown setting (expected {', '.join(ROUTING_KEYS)})")
    paths = _plugin_paths(routing.get("plugin_paths") or [], base_dir, errors, check_files)
    items = routing.get("policies")
    if items is None:
        return RoutingConfig(paths, None)
    if not isinstance(items, (list, tuple)) or not items:
        errors.append("routing.policies: expected a non-empty list of policy names or "
                      "{name: ..., options} mappings")
        return RoutingConfig(paths, ())
    entries = []
    for i, item in enumerate(items):
        path = f"routing.policies[{i}]"
        if isinstance(item, str):
            entries.append(PolicyEntry(item, _NO_OPTIONS, path))
        elif isinstance(item, Mapping) and isinstance(item.get("name"), str):
            block = {k: v for k, v in item.items() if k != "name"}
            entries.append(PolicyEntry(item["name"], MappingProxyType(block), path))
        else:
            errors.append(f"{path}: expected a policy name or a mapping with 'name', "
                          f"got {item!r}")
    return RoutingConfig(paths, tuple(entries))


def _plugin_paths(value: object, base_dir: str, errors: list[str],
                  check_files: bool) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, (list, tuple)):
        errors.append("routing.plugin_paths: expected a list of directories")
        return ()
    paths = []
    for i, item in enumerate(value):
        if not isinstance(item, str) or not item.strip():
            errors.append(f"routing.plugin_paths[{i}]: expected a directory name, got {item!r}")
            continue
        path = os.path.join(base_dir, os.path.expanduser(item.strip()))
        if check_files and not os.path.isdir(path):
            errors.append(f"routing.plugin_paths[{i}]: {path} is not a directory")
            continue
        paths.append(path)
    return tuple(paths)
