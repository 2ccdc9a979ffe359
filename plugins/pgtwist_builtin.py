"""The built-in routing policies as twisted.plugin plugins (IRoutingPolicyFactory).

The factories are module-level instances of classes implementing IPlugin and
IRoutingPolicyFactory, which is what getPlugins(IRoutingPolicyFactory, plugins)
looks for.  The policy code itself lives in ``pgtwist.routing.builtin`` and is
imported only when a factory is used, so scanning this file stays cheap.
"""

from __future__ import annotations

from twisted.plugin import IPlugin
from zope.interface import implementer

from pgtwist.interfaces import IRoutingPolicyFactory


@implementer(IPlugin, IRoutingPolicyFactory)
class BuiltinPolicyFactory:
    """One of Pgpool-II's rules; its options are the Pgpool-II parameters of the same names."""

    def __init__(self, name: str) -> None:
        self.name = name

    @property
    def config_keys(self) -> tuple[str, ...]:
        """Flat parameters (plus ``node_count``) that pgtwist.registry feeds in as defaults."""
        from pgtwist.routing.builtin import POLICIES

        return POLICIES[self.name][0]

    def parse_config(self, raw, path):
        from pgtwist.routing.builtin import POLICIES

        return POLICIES[self.name][1](raw, path)

    def build(self, config):
        from pgtwist.routing.builtin import POLICIES

        return POLICIES[self.name][2](config)

    def __repr__(self) -> str:
        return f"<BuiltinPolicyFactory {self.name}>"


statement = BuiltinPolicyFactory("statement")
pattern_list = BuiltinPolicyFactory("pattern_list")
function_list = BuiltinPolicyFactory("function_list")
temp_tables = BuiltinPolicyFactory("temp_tables")
stickiness = BuiltinPolicyFactory("stickiness")
read_consistency = BuiltinPolicyFactory("read_consistency")
weighted_balancer = BuiltinPolicyFactory("weighted_balancer")
