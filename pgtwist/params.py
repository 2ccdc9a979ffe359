"""The table of configuration parameters pgtwist accepts: Pgpool-II 4.x names plus our own.

Defaults follow Pgpool-II 4.7 (see the behaviour reference) unless marked ``# pgtwist``.
Keeping every Pgpool-II name, even ones pgtwist ignores, lets an existing pgpool.conf load
unchanged; `PGPOOL SHOW` and later features read them from ``Config.params``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# Kinds: bool, int, float, str, enum, path (resolved against the config dir), list (comma
# separated -> tuple), semilist (';' separated -> tuple; '\;' does not split), mode (octal file
# mode), map (opaque YAML sub-tree).


@dataclass(frozen=True)
class Param:
    name: str
    kind: str
    default: object
    lo: int | float | None = None
    hi: int | float | None = None
    unit: str = ""  # base unit of an int: B, kB, ms, s or min; a value may name another unit
    choices: tuple[str, ...] = ()


PARAMS: dict[str, Param] = {}

# Parameters that may also be given per node with a numeric suffix (health_check_period1 ...),
# and the watchdog/heartbeat arrays that only exist with a suffix (hostname0, wd_port0 ...).
PER_NODE: frozenset[str] = frozenset(
    "health_check_period health_check_timeout health_check_max_retries health_check_retry_delay "
    "connect_timeout health_check_user health_check_password health_check_database".split()
)
SUFFIX_ONLY: dict[str, Param] = {}

BACKEND_FIELDS = ("hostname", "port", "weight", "flag", "data_directory", "application_name")
BACKEND_FLAGS = ("ALWAYS_PRIMARY", "DISALLOW_TO_FAILOVER", "ALLOW_TO_FAILOVER")
MAX_BACKENDS = 128  # pgpool's MAX_NUM_BACKENDS

# Old names: an error that names the replacement (values are the new name).
RENAMED = {
    "black_function_list": "write_function_list",
    "white_function_list": "read_only_function_list",
    "black_query_pattern_list": "primary_routing_query_pattern_list",
    "black_memqcache_table_list": "cache_unsafe_memqcache_table_list",
    "white_memqcache_table_list": "cache_safe_memqcache_table_list",
    "follow_master_command": "follow_primary_command",
    "master_slave_mode": "backend_clustering_mode",
    "master_slave_sub_mode": "backend_clustering_mode",
    "replication_mode": "backend_clustering_mode",
    "other_pgpool_hostname": "hostname",
    "other_pgpool_port": "pgpool_port",
    "other_wd_port": "wd_port",
    "heartbeat_destination": "heartbeat_hostname",
    "heartbeat_destination_port": "heartbeat_port",
}
RENAMED_FLAGS = {"ALWAYS_MASTER": "ALWAYS_PRIMARY"}

# Old spellings Pgpool-II 4.x itself still accepts: silently mapped to the new name.
ALIASES = {"fail_over_on_backend_error": "failover_on_backend_error", "delegate_IP": "delegate_ip"}

MESSAGE_LEVELS = ("debug5", "debug4", "debug3", "debug2", "debug1", "info", "notice",
                  "warning", "error", "log", "fatal", "panic")
CLIENT_LEVELS = ("debug5", "debug4", "debug3", "debug2", "debug1", "log", "notice",
                 "warning", "error")


def _add(kind: str, names: str, default: object, **kw: object) -> None:
    for name in names.split():
        PARAMS[name] = Param(name, kind, default, **kw)  # type: ignore[arg-type]


def _enum(name: str, default: str, *choices: str) -> None:
    PARAMS[name] = Param(name, "enum", default, choices=choices)


# --- connections -------------------------------------------------------------------------
_add("str", "listen_addresses", "localhost")
_add("int", "port", 9999, lo=1, hi=65535)
_add("list", "unix_socket_directories", ("/tmp",))
_add("str", "socket_dir wd_ipc_socket_dir", "/tmp")  # socket_dir: pre-4.4 name
# pgtwist: no PCP Unix socket unless set (Pgpool-II: /tmp; docs/pcp.md says why)
_add("str", "pcp_socket_dir", "")
_add("str", "unix_socket_group", "")
_add("mode", "unix_socket_permissions", 0o777)
_add("str", "pcp_listen_addresses", "localhost")
_add("int", "pcp_port", 9898, lo=0, hi=65535)  # 0 or '': no PCP port
_add("path", "pcp_conf_file", "pcp.conf")  # pgtwist: pgpool's -F option
_add("int", "listen_backlog_multiplier", 2, lo=1)
_add("bool", "serialize_accept", False)
_add("int", "num_init_children", 1000, lo=1)  # pgtwist: a cap on clients, not processes (pgpool 32)
_add("int", "max_pool", 4, lo=0)
_add("int", "reserved_connections", 0, lo=0)
_enum("process_management_mode", "static", "static", "dynamic")
_enum("process_management_strategy", "gentle", "lazy", "gentle", "aggressive")
_add("int", "min_spare_children", 5, lo=1)
_add("int", "max_spare_children", 10, lo=1)
_add("int", "child_life_time", 300, lo=0, unit="s")
_add("int", "child_max_connections", 0, lo=0)
_add("int", "connection_life_time client_idle_limit", 0, lo=0, unit="s")
_add("int", "client_idle_limit_in_recovery", 0, lo=-1, unit="s")
_add("int", "authentication_timeout", 60, lo=0, unit="s")
_add("int", "connect_timeout", 10000, lo=0, unit="ms")
_add("bool", "connection_cache", True)
_add("semilist", "reset_query_list", ("ABORT", "DISCARD ALL"))
_enum("backend_clustering_mode", "streaming_replication", "streaming_replication", "raw")

# --- authentication and TLS ------------------------------------------------------------------
_add("path", "pool_passwd", "pool_passwd")
_add("path", "pool_hba_file", "pool_hba.conf")  # pgtwist: pgpool's -a option
_add("path", "pool_key_file", ".pgpoolkey")  # pgtwist: pgpool's -k option
_add("bool", "enable_pool_hba allow_clear_text_frontend_auth ssl ssl_prefer_server_ciphers", False)
_add("path", "ssl_key ssl_cert ssl_ca_cert ssl_ca_cert_dir ssl_crl_file ssl_dh_params_file", "")
_add("str", "ssl_ciphers", "HIGH:MEDIUM:+3DES:!aNULL")
_add("str", "ssl_ecdh_curve", "prime256v1")
_add("str", "ssl_passphrase_command", "")

# --- load balancing and routing --------------------------------------------------------------
_add("bool", "load_balance_mode ignore_leading_white_space check_unlogged_table", True)
_add("bool", "allow_sql_comments statement_level_load_balance", False)
_add("list", "read_only_function_list write_function_list database_redirect_preference_list "
     "app_name_redirect_preference_list user_redirect_preference_list "
     "dml_adaptive_object_relationship_list", ())
_add("semilist", "primary_routing_query_pattern_list", ())
_enum("disable_load_balance_on_write", "transaction",
      "off", "transaction", "trans_transaction", "always", "dml_adaptive")
_enum("check_temp_table", "catalog", "catalog", "trace", "none", "on", "off")
_enum("relcache_query_target", "primary", "primary", "load_balance_node")
_add("int", "relcache_expire", 0, lo=0, unit="s")
_add("int", "relcache_size", 256, lo=0)
_add("bool", "enable_shared_relcache", True)

# --- streaming replication check -------------------------------------------------------------
_add("int", "sr_check_period", 10, lo=0, unit="s")
_add("str", "sr_check_user", "nobody")
_add("str", "sr_check_password", "")
_add("str", "sr_check_database", "postgres")
_add("int", "delay_threshold", 0, lo=0, unit="B")
_add("int", "delay_threshold_by_time", 0, lo=0, unit="ms")
_add("bool", "prefer_lower_delay_standby", False)
_enum("log_standby_delay", "if_over_threshold", "none", "always", "if_over_threshold")
_add("str", "replication_delay_source_cmd", "")  # 4.8devel
_add("int", "replication_delay_source_timeout", 10, lo=0, unit="s")  # 4.8devel

# --- health check, failover, recovery ---------------------------------------------------------
_add("int", "health_check_period", 0, lo=0, unit="s")
_add("int", "health_check_max_retries", 0, lo=0)
_add("int", "health_check_timeout", 20, lo=0, unit="s")
_add("int", "health_check_retry_delay", 1, lo=0, unit="s")
_add("str", "health_check_user", "nobody")
_add("str", "health_check_password", "")
_add("str", "health_check_database", "postgres")
_add("bool", "health_check_test", False)
_add("str", "failover_command failback_command follow_primary_command", "")
_add("bool", "failover_on_backend_error", True)
_add("bool", "failover_on_backend_shutdown detach_false_primary auto_failback", False)
_add("int", "search_primary_node_timeout", 300, lo=0, unit="s")
_add("int", "auto_failback_interval", 60, lo=0, unit="s")
_add("str", "recovery_user", "")
_add("str", "recovery_password recovery_1st_stage_command recovery_2nd_stage_command", "")
_add("int", "recovery_timeout", 90, lo=0, unit="s")

# --- native replication only (accepted, unused) ----------------------------------------------
_add("bool", "replicate_select replication_stop_on_mismatch", False)
_add("bool", "failover_if_affected_tuples_mismatch", False)
_add("bool", "insert_lock", True)
_add("str", "lobj_lock_table", "")

# --- watchdog (accepted, unused: failover belongs to the platform) --------------------------
_add("bool", "use_watchdog allow_multiple_failover_requests_from_node", False)
_add("bool", "enable_consensus_with_half_votes wd_remove_shutdown_nodes", False)
_add("bool", "failover_when_quorum_exists failover_require_consensus", True)
_add("bool", "clear_memqcache_on_escalation", True)
_add("str", "trusted_servers delegate_ip wd_escalation_command wd_de_escalation_command", "")
_add("str", "wd_authkey", "")
_add("str", "trusted_server_command", "ping -q -c3 %h")
_add("str", "ping_path", "/bin")
_add("str", "if_cmd_path", "/sbin")
_add("str", "if_up_cmd", "/usr/bin/sudo /sbin/ip addr add $_IP_$/24 dev eth0 label eth0:0")
_add("str", "if_down_cmd", "/usr/bin/sudo /sbin/ip addr del $_IP_$/24 dev eth0")
_add("str", "arping_path", "/usr/sbin")
_add("str", "arping_cmd", "/usr/bin/sudo /usr/sbin/arping -U $_IP_$ -w 1 -I eth0")
_enum("wd_lifecheck_method", "heartbeat", "heartbeat", "query", "external")
_add("list", "wd_monitoring_interfaces_list", ())
_add("int", "wd_priority", 1, lo=0)
_add("int", "wd_interval", 10, lo=0, unit="s")
_add("int", "wd_lost_node_removal_timeout wd_no_show_node_removal_timeout", 0, lo=0, unit="s")
_add("int", "wd_life_point", 3, lo=0)
_add("int", "wd_heartbeat_keepalive", 2, lo=1, unit="s")
_add("int", "wd_heartbeat_deadtime", 30, lo=1, unit="s")
_add("str", "wd_lifecheck_query", "SELECT 1")
_add("str", "wd_lifecheck_dbname", "template1")
_add("str", "wd_lifecheck_user", "nobody")
_add("str", "wd_lifecheck_password", "")

# --- logging and files -----------------------------------------------------------------------
_add("str", "log_destination", "stderr")
_add("str", "log_line_prefix", "%m: %a pid %p: ")
_enum("log_error_verbosity", "default", "terse", "default", "verbose")
_enum("log_format", "text", "text", "json")  # pgtwist: json = one object per line, for shippers
_enum("log_min_messages", "warning", *MESSAGE_LEVELS)
_enum("client_min_messages", "notice", *CLIENT_LEVELS)
_add("bool", "log_connections log_disconnections log_hostname log_statement", False)
_add("bool", "log_per_node_statement notice_per_node_statement log_client_messages", False)
_add("bool", "log_pcp_processes", True)
_enum("log_backend_messages", "none", "none", "terse", "verbose")
_enum("syslog_facility", "LOCAL0", *(f"LOCAL{i}" for i in range(8)))
_add("str", "syslog_ident", "pgpool")
_add("bool", "logging_collector log_truncate_on_rotation", False)
_add("path", "log_directory", "/tmp/pgpool_logs")
_add("str", "log_filename", "pgpool-%Y-%m-%d_%H%M%S.log")
_add("mode", "log_file_mode", 0o600)
_add("int", "log_rotation_age", 1440, lo=0, unit="min")
_add("int", "log_rotation_size", 10240, lo=0, unit="kB")
_add("path", "pid_file_name", "")  # pgtwist: twistd writes the pidfile (pgpool: /var/run/pgpool/pgpool.pid)
_add("path", "logdir work_dir", "/tmp")  # work_dir: the 4.7 name of logdir

# --- in-memory query cache (accepted, not implemented) ---------------------------------------
_add("bool", "memory_cache_enabled", False)
_enum("memqcache_method", "shmem", "shmem", "memcached")
_add("str", "memqcache_memcached_host", "localhost")
_add("int", "memqcache_memcached_port", 11211, lo=0, hi=65535)
_add("int", "memqcache_total_size", 64 * 1024 * 1024, lo=0, unit="B")
_add("int", "memqcache_max_num_cache", 1000000, lo=0)
_add("int", "memqcache_expire", 0, lo=0, unit="s")
_add("bool", "memqcache_auto_cache_invalidation", True)
_add("int", "memqcache_maxcache", 400 * 1024, lo=0, unit="B")
_add("int", "memqcache_cache_block_size", 1024 * 1024, lo=512, unit="B")
_add("path", "memqcache_oiddir", "/var/log/pgpool/oiddir")
_add("list", "cache_safe_memqcache_table_list cache_unsafe_memqcache_table_list", ())

# --- pgtwist only ----------------------------------------------------------------------------
_add("int", "max_message_length", 256 * 1024 * 1024, lo=1024, unit="B")
_enum("pool_mode", "session", "session", "transaction")
# Reads that never go back in time (README "Read consistency"): lsn, or none as Pgpool-II.
_enum("read_consistency", "lsn", "lsn", "none")
_enum("read_consistency_scope", "global", "global", "session", "user")
_add("int", "read_consistency_wait", 20, lo=0, unit="ms")
_add("int", "read_consistency_poll_interval", 50, lo=1, unit="ms")
_add("int", "checkout_timeout", 30, lo=0, unit="s")
_add("int", "backend_max_connections", 0, lo=0)
_add("int", "max_prepared_statements", 200, lo=1)
# Transaction mode: server connections per (user, database, node); more clients queue for
# them, and idle ones are kept (max_pool is session mode's). PgBouncer's default_pool_size.
_add("int", "transaction_pool_size", 20, lo=1)
# Longer Query/Parse texts are not parsed on the event loop: routed to the primary as writes.
_add("int", "classify_max_length", 8192, lo=0, unit="B")
# New backend connections per second per node (0: unpaced), with this burst.
_add("float", "backend_connect_rate", 200.0, lo=0)
_add("int", "backend_connect_burst", 50, lo=1)
_add("str", "auth_user", "")
# Server connections made for one claimed user name before its client has authenticated
# (learning the server's method, honouring its trust, running auth_query); more wait.
_add("int", "pre_auth_connections_per_user", 4, lo=1)
# Schema-qualified throughout: it runs with search_path fixed to pg_catalog anyway, but a
# verifier lookup is a security boundary (see protocol-pitfalls: CVE-2025-12819).
_add("str", "auth_query",
     "SELECT a.rolname, CASE WHEN a.rolvaliduntil < pg_catalog.now() THEN NULL "
     "ELSE a.rolpassword END FROM pg_catalog.pg_authid a "
     "WHERE a.rolname = $1 AND a.rolcanlogin")
_add("bool", "ssl_require", False)  # refuse clients that do not negotiate TLS
# Prometheus /metrics, /healthz and /readyz over HTTP (pgtwist.metrics; 0: off), on these
# addresses ('*' all; comma-separated).  localhost by default, like listen_addresses: the
# page names users and databases; a Kubernetes pod sets '*' for the kubelet's probes.
_add("int", "metrics_port", 0, lo=0, hi=65535)
_add("str", "metrics_listen_addresses", "localhost")
_add("map", "routing pgtwist", {})

# Watchdog / heartbeat node arrays: only valid with a node suffix (hostname0, wd_port0 ...).
for _name, _kind, _default in (("hostname", "str", "localhost"), ("pgpool_port", "int", 9999),
                               ("wd_port", "int", 9000), ("heartbeat_hostname", "str", ""),
                               ("heartbeat_port", "int", 9694), ("heartbeat_device", "str", "")):
    SUFFIX_ONLY[_name] = Param(_name, _kind, _default, *((1, 65535) if _kind == "int" else ()))


# --- accepted but not implemented ------------------------------------------------------------
# Every name above is either read somewhere in pgtwist/ or listed here, so that an
# existing pgpool.conf loads while no setting is silently ignored
# (tests/unit/test_params_implemented.py keeps the two in step).  A value other than the
# default (or than an INERT value, which says what pgtwist does anyway) is:
#   "error"    refused at config load: a user would rely on it and pgtwist cannot honour it;
#   "warning"  logged at startup, naming the key: harmless for pgtwist (process model,
#              watchdog, failover, PCP, query cache, logging knobs, ...).
# Per-node forms are unimplemented warnings (hostname0, connect_timeout1, ...), except the
# health check's (health_check_period1 ...: pgtwist.checks.health_options reads them).
UNIMPLEMENTED: dict[str, str] = {}
UNIMPLEMENTED_NOTES = {
    "ssl_passphrase_command": "use an ssl_key without a passphrase",
    "pid_file_name": "twistd writes the pidfile, see its --pidfile option",
    "backend_clustering_mode": "raw routes as streaming_replication; for no load balancing "
                               "set load_balance_mode: off",
    "ssl_dh_params_file": "DHE cipher suites are not offered; ECDHE and TLS 1.3 are",
    "unix_socket_directories": "pgtwist listens on TCP only",
}
INERT: dict[str, object] = {}


def _unimplemented(severity: str, names: str) -> None:
    for name in names.split():
        UNIMPLEMENTED[name] = severity


_unimplemented("error", "ssl_passphrase_command")
_unimplemented("warning", """
    unix_socket_directories socket_dir wd_ipc_socket_dir unix_socket_group
    unix_socket_permissions serialize_accept
    process_management_mode process_management_strategy min_spare_children max_spare_children
    child_life_time child_max_connections client_idle_limit_in_recovery backend_clustering_mode
    ssl_dh_params_file ssl_ecdh_curve
    relcache_query_target relcache_expire relcache_size enable_shared_relcache
    replication_delay_source_cmd replication_delay_source_timeout health_check_test
    failover_command failback_command follow_primary_command
    failover_on_backend_shutdown detach_false_primary search_primary_node_timeout
    recovery_user recovery_password recovery_1st_stage_command
    recovery_2nd_stage_command
    replicate_select replication_stop_on_mismatch failover_if_affected_tuples_mismatch
    insert_lock lobj_lock_table
    log_destination client_min_messages
    notice_per_node_statement log_pcp_processes log_backend_messages
    syslog_facility syslog_ident logging_collector log_truncate_on_rotation log_directory
    log_filename log_file_mode log_rotation_age log_rotation_size pid_file_name logdir work_dir
    pgtwist
""")
_unimplemented("warning", " ".join(
    name for name, p in PARAMS.items()
    if name.startswith(("wd_", "memqcache_")) or name in (
        "use_watchdog allow_multiple_failover_requests_from_node enable_consensus_with_half_votes "
        "failover_when_quorum_exists failover_require_consensus clear_memqcache_on_escalation "
        "trusted_servers delegate_ip trusted_server_command ping_path if_cmd_path if_up_cmd "
        "if_down_cmd arping_path arping_cmd memory_cache_enabled cache_safe_memqcache_table_list "
        "cache_unsafe_memqcache_table_list").split()
))
_SUFFIX = re.compile(r"([a-z_]+?)(\d+)\Z")


def unimplemented(name: str, value: object) -> str | None:
    """"error" / "warning" if ``value`` of ``name`` asks for something pgtwist does not do."""
    m = _SUFFIX.match(name)
    if name not in PARAMS and m and (m[1] in PER_NODE or m[1] in SUFFIX_ONLY):
        if m[1].startswith("health_check_"):
            return None
        stem = PARAMS.get(m[1]) or SUFFIX_ONLY[m[1]]
        return "warning" if value != stem.default else None
    severity = UNIMPLEMENTED.get(name)
    if severity is None or value == PARAMS[name].default:
        return None
    if name in INERT and value == INERT[name]:
        return None
    return severity


def unimplemented_message(name: str) -> str:
    m = _SUFFIX.match(name)
    note = UNIMPLEMENTED_NOTES.get(name) or (UNIMPLEMENTED_NOTES.get(m[1], "") if m else "")
    return ("accepted for Pgpool-II compatibility but not implemented by pgtwist"
            + (f" ({note})" if note else ""))


def unimplemented_warnings(params) -> list[str]:
    """``"name: ..."`` for every set parameter pgtwist ignores (see UNIMPLEMENTED)."""
    return [f"{name}: {unimplemented_message(name)}; the setting has no effect"
            for name, value in params.items() if unimplemented(name, value) == "warning"]


def is_secret(name: str, kind: str = "str") -> bool:
    """Whether a value must never be printed: passwords and keys, but not paths to key files."""
    lowered = name.lower()
    if "password" in lowered or "secret" in lowered or "token" in lowered:
        return True
    return "key" in lowered and kind not in ("path", "bool")
