"""Every zope.interface Interface of pgtwist; nothing else."""

from __future__ import annotations

from zope.interface import Attribute, Interface


class IRoutingPolicyFactory(Interface):
    """Found with ``twisted.plugin.getPlugins(IRoutingPolicyFactory, plugins)``."""

    name = Attribute("Tag used in the YAML routing.policies list, e.g. 'weighted_balancer'.")

    def parse_config(raw, path):
        """Validate this policy's options (a mapping, possibly empty).

        Return an immutable options value for ``build``; raise
        ``pgtwist.config.ConfigError`` naming ``path`` (e.g.
        ``routing.policies[2].node``) and the offending entry.
        """

    def build(config):
        """Return an IRoutingPolicy built from what parse_config returned."""


class IRoutingPolicy(Interface):
    """One link of the routing chain."""

    name = Attribute("The tag of the factory that built it.")

    cacheable = Attribute(
        "True if route() answers the same for requests that agree on the query's "
        "classification (its QueryInfo, shared by texts of one literal-normalised shape), "
        "the session view, the cluster view and the catalog facts: it reads neither "
        "request.sql beyond that shape, nor request.now, nor request.draw.  The router caches "
        "decisions only for a chain whose every policy is cacheable; False (or a policy "
        "without the attribute) is always safe.")

    def route(request):
        """RouteRequest -> RouteDecision; UNDECIDED means no opinion.

        Pure and fast: no I/O, no clocks, no randomness except ``request.draw``.
        """


class IBalancer(Interface):
    """Chooses a session's load-balance node: the node its reads go to (Pgpool-II draws it
    once per session, at connect).  The first policy of the routing chain that provides
    IBalancer chooses; without one, a weighted draw over the usable nodes does."""

    def choose(cluster, session, draw, draw2):
        """``(node id or None, reason)``; the reason starts ``'node N: '``.

        ``cluster`` is a ClusterView, ``session`` a SessionView (user, database,
        application_name), ``draw`` and ``draw2`` uniform draws in [0, 1) (``draw2``
        None: one draw serves both).  Pure, like IRoutingPolicy.route.
        """


class ILinkOwner(Interface):
    """Whoever a logged-in backend link hands its stream to (``BackendLink.owner``):
    a session, a reset in progress, a parked link, a one-off query."""

    def backend_items(link, items):
        """A scanned chunk of ``link``'s stream: raw bytes runs and watched
        ``(code, body)`` frames, in order (see ``pgtwist.wire.framing.BackendScanner``)."""

    def link_lost(link, reason):
        """``link``'s connection closed (``reason``: a Failure, or None)."""
