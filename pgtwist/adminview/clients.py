"""Process-shaped views mapped onto pgtwist: SHOW pool_processes and pool_pools.

Pgpool-II has num_init_children child processes, each caching max_pool connections per
backend.  pgtwist is one process; its unit is the client session (docs/admin.md):

- a "process" is a client slot: one row per session, then free slots up to
  num_init_children.  ``pool_pid`` is the session's pid (the BackendKeyData pid its
  client got: in session pooling the primary backend's own pid), the daemon's pid for
  a free slot; ``start_time`` the session's start, the daemon's for a free slot;
- a "pool" row is one (slot, backend): the link the session holds to that node, or an
  empty row.  Idle links cached in the shared pool, owned by no session, get rows of
  their own under the daemon's pid, with ``pool_connected`` 0.

The rows are built from plain facts (:class:`Client`, :class:`Link`) that
pgtwist.adminview.live reads from the live objects.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from functools import lru_cache

PROCESSES_COLUMNS = [
    "pool_pid", "start_time", "client_connection_count", "database", "username",
    "backend_connection_time", "pool_counter", "status",
]
POOLS_COLUMNS = [
    "pool_pid", "start_time", "client_connection_count", "pool_id", "backend_id", "database",
    "username", "backend_connection_time", "client_connection_time",
    "client_disconnection_time", "client_idle_duration", "majorversion", "minorversion",
    "pool_counter", "pool_backendpid", "pool_connected", "status", "load_balance_node",
    "client_host", "client_port", "statement",
]
WAITING = "Wait for connection"
IDLE = "Idle"
IDLE_IN_TRANSACTION = "Idle in transaction"
EXECUTING = "Execute command"


@dataclass(frozen=True)
class Link:
    """One logged-in backend connection."""

    node_id: int
    backend_pid: int
    created: float | None        # wall-clock seconds; None when the pool does not track it
    uses: int                    # client checkouts it served
    database: str = ""
    user: str = ""
    idle_since: float | None = None


@dataclass(frozen=True)
class Client:
    """One client session."""

    pid: int
    started: float
    user: str                    # '' while it authenticates
    database: str
    host: str
    port: str
    status: str                  # IDLE, IDLE_IN_TRANSACTION or EXECUTING (WAITING: logging in)
    lb_node: int | None
    links: tuple[Link, ...]      # the links it holds, by node


def timestamp(seconds: float | None) -> str:
    """Pgpool-II's ``%Y-%m-%d %H:%M:%S`` in local time; '' for never."""
    if not seconds:
        return ""
    return _timestamp(int(seconds))


@lru_cache(maxsize=4096)
def _timestamp(seconds: int) -> str:
    # A scrape or SHOW over many sessions formats the same few seconds again and again
    # (localtime is the slow part: ~20 us): cached by whole second.
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(seconds))


def _primary_link(client: Client) -> Link | None:
    return client.links[0] if client.links else None


def pool_processes(clients, slots: int, daemon_pid: int, daemon_started: float):
    """One row per session (oldest first), then the free slots of num_init_children."""
    rows = []
    for c in clients:
        link = _primary_link(c)
        rows.append([
            str(c.pid), timestamp(c.started), "0", c.database, c.user,
            timestamp(link.created) if link else "", str(link.uses) if link else "",
            c.status,
        ])
    free = [str(daemon_pid), timestamp(daemon_started), "0", "", "", "", "", WAITING]
    rows.extend(list(free) for _ in range(max(0, slots - len(clients))))
    return PROCESSES_COLUMNS, rows


def _empty_pool_row(pid: str, started: str, node_id: int, status: str) -> list[str]:
    return [pid, started, "0", "0", str(node_id), "", "", "", "", "", "0", "0", "0", "0", "0",
            "0", status, "0", "", "", ""]


def pool_pools(clients, idle_links, slots: int, node_count: int, daemon_pid: int,
               daemon_started: float):
    """Rows of (slot, backend): the sessions' links, the pool's idle links, then the free
    slots' empty rows.  ``idle_links``: :class:`Link` s owned by the pool."""
    rows = []
    for c in clients:
        held = {link.node_id: link for link in c.links}
        started = timestamp(c.started)
        for node_id in range(node_count):
            link = held.get(node_id)
            if link is None:
                # As Pgpool-II's unused pool slots: no database or user (a row with a user
                # is a connection to pgpool2_exporter's backend_used).
                rows.append(_empty_pool_row(str(c.pid), started, node_id, c.status))
                rows[-1][17:20] = ["1" if node_id == c.lb_node else "0", c.host, c.port]
                continue
            rows.append([
                str(c.pid), started, "0", "0", str(node_id), c.database, c.user,
                timestamp(link.created), started, "", "0", "3", "0", str(link.uses),
                str(link.backend_pid), "1", c.status, "1" if node_id == c.lb_node else "0",
                c.host, c.port, "",
            ])
    pid, started = str(daemon_pid), timestamp(daemon_started)
    per_node: dict[int, int] = {}
    for link in idle_links:
        pool_id = per_node.get(link.node_id, 0)
        per_node[link.node_id] = pool_id + 1
        rows.append([
            pid, started, "0", str(pool_id), str(link.node_id), link.database, link.user,
            timestamp(link.created), "", timestamp(link.idle_since), "0", "3", "0",
            str(link.uses), str(link.backend_pid), "0", WAITING, "0", "", "", "",
        ])
    for _ in range(max(0, slots - len(clients))):
        rows.extend(_empty_pool_row(pid, started, node_id, WAITING)
                    for node_id in range(node_count))
    return POOLS_COLUMNS, rows
