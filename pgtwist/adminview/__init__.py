"""The rows of pgtwist's admin views, shared by admin SQL, the PCP port and the metrics.

Pure builders from pgtwist's live objects to ``(columns, rows)`` (every value text or
None, as Pgpool-II sends them): ``nodes`` (pool_nodes, pool_backend_stats,
pool_health_check_stats), ``clients`` (pool_processes, pool_pools, mapped onto client
sessions: docs/admin.md), ``settings`` (PGPOOL SHOW, pool_status, pool_version,
pool_cache).  ``live.view(name, proxy, session)`` picks and feeds one.
"""

from .live import SHOW_NAMES, pgpool_show, view
from .settings import UnknownParameter

__all__ = ["SHOW_NAMES", "UnknownParameter", "pgpool_show", "view"]
