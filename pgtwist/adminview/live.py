"""Facts read from the running daemon's objects for the views, and the one entry point
``view(name, proxy, session)`` that SHOW, PCP and the metrics share.

Everything here only reads attributes at call time (a SHOW, a PCP request, a scrape);
nothing runs per statement.
"""

from __future__ import annotations

import os
import time

from ..wire import codes
from . import clients, nodes, settings

# The daemon's start (this module is imported while the service is built).
STARTED = time.time()

_IN_TRANSACTION = (codes.TXN_BLOCK, codes.TXN_FAILED)


def _host_port(address: str) -> tuple[str, str]:
    host, _, port = address.rpartition(":")
    return (host, port) if host else (address, "")


def client_facts(relay, asking_pid: int | None = None) -> clients.Client:
    s = relay.session
    pool = relay.links.pooling.pool
    held = []
    primary = relay.links.primary
    for node_id, link in sorted(relay.links.items(), key=lambda kv: kv[1] is not primary):
        if link.closed:
            continue
        rec = pool.link_record(link)
        held.append(clients.Link(node_id, link.backend_pid,
                                 rec.created if rec is not None else None,
                                 rec.uses if rec is not None else 1))
    if s.primary_id is None:
        status, user, database = clients.WAITING, "", ""   # still logging in
    else:
        user, database = s.user, s.database
        if s.pid == asking_pid or relay.ordering.fifo:
            status = clients.EXECUTING
        elif s.txn_status in _IN_TRANSACTION:
            status = clients.IDLE_IN_TRANSACTION
        else:
            status = clients.IDLE
    host, port = _host_port(s.client_address)
    return clients.Client(s.pid, s.started, user, database, host, port, status, s.lb_node,
                          tuple(held))


def all_clients(proxy, asking_pid: int | None = None) -> list[clients.Client]:
    """Every open client session, oldest first."""
    found = [client_facts(r, asking_pid) for r in list(proxy.sessions.values())
             if not r.closed]
    found.sort(key=lambda c: (c.started, c.pid))
    return found


def idle_links(pool) -> list[clients.Link]:
    """The links the shared pool holds for no session, by node then age."""
    found = []
    for key, link, state, created, _client in pool.iter_links():
        if state != "idle":
            continue
        rec = pool.link_record(link)
        found.append(clients.Link(key.node_id, link.backend_pid, created,
                                  rec.uses if rec is not None else 1, key.database, key.user,
                                  rec.idle_since if rec is not None else None))
    found.sort(key=lambda link: (link.node_id, link.created or 0))
    return found


def _settings_of(session) -> dict:
    ps = getattr(session, "pool_settings", None) if session is not None else None
    return ps.overrides if ps is not None else {}


def view(name: str, proxy, session=None):
    """(columns, rows) of ``SHOW name`` (a SHOW_NAMES entry) as ``session`` sees it
    (its load-balance node, its PGPOOL SET values; None: as no session, e.g. PCP)."""
    config = proxy.config
    cluster_nodes = proxy.cluster.nodes
    if name == "pool_nodes":
        return nodes.pool_nodes(cluster_nodes, session.lb_node if session else None)
    if name == "pool_backend_stats":
        return nodes.pool_backend_stats(cluster_nodes)
    if name == "pool_health_check_stats":
        return nodes.pool_health_check_stats(cluster_nodes)
    if name == "pool_processes":
        return clients.pool_processes(all_clients(proxy, session and session.pid),
                                      config.num_init_children, os.getpid(), STARTED)
    if name == "pool_pools":
        return clients.pool_pools(all_clients(proxy, session and session.pid),
                                  idle_links(proxy.pooling.pool), config.num_init_children,
                                  len(cluster_nodes), os.getpid(), STARTED)
    if name == "pool_status":
        return settings.pool_status(config.params, len(cluster_nodes), _settings_of(session))
    if name == "pool_version":
        return settings.pool_version()
    if name == "pool_cache":
        return settings.pool_cache()
    raise KeyError(name)


def pgpool_show(name: str, proxy, session=None):
    """(columns, rows) of PGPOOL SHOW ``name``; raises settings.UnknownParameter."""
    return settings.pgpool_show(name, proxy.config.params, len(proxy.cluster.nodes),
                                _settings_of(session))


SHOW_NAMES = ("pool_nodes", "pool_processes", "pool_pools", "pool_backend_stats",
              "pool_health_check_stats", "pool_status", "pool_version", "pool_cache")
