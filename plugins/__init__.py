"""Routing-policy plugins: twisted.plugin.getPlugins(IRoutingPolicyFactory, plugins).

The path is extended like twisted.plugins so that policy files dropped into any
``plugins/`` directory on sys.path are found too.
"""

from twisted.plugin import pluginPackagePaths

__path__.extend(pluginPackagePaths(__name__))
__all__: list[str] = []
