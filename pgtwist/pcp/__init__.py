"""A PCP-compatible management port: the real pcp_* tools of Pgpool-II talk to pgtwist
(docs/pcp.md). ``codec`` (packets), ``conf`` (pcp.conf) and ``machine`` (one connection's
login and dispatch) are sans-IO; ``commands``, ``protocol`` and ``service`` are the daemon's.
"""
