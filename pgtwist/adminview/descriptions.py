"""One-line descriptions of every parameter, for PGPOOL SHOW ALL / groups and SHOW pool_status.

pgtwist's own words; parameters pgtwist accepts but ignores say so (pgtwist.params
UNIMPLEMENTED is the authority on that, this text only helps the reader).
"""

from __future__ import annotations

_TEXT = """
listen_addresses: host names or IP addresses to accept client connections on
port: port number for client connections
unix_socket_directories: Unix socket directories (ignored: pgtwist listens on TCP only)
socket_dir: Unix socket directory, pre-4.4 name (ignored)
pcp_socket_dir: directory of the PCP Unix socket; empty: none
wd_ipc_socket_dir: watchdog IPC socket directory (ignored)
unix_socket_group: group owning the Unix sockets (ignored)
unix_socket_permissions: permissions of the Unix sockets (ignored)
pcp_listen_addresses: host names or IP addresses the PCP port listens on
pcp_port: port number of the PCP management port; 0: none
pcp_conf_file: pcp.conf, the PCP users and their md5 passwords
listen_backlog_multiplier: listen queue length as a multiple of num_init_children
serialize_accept: serialize accept() among child processes (ignored: one process)
num_init_children: maximum number of concurrent client sessions
max_pool: cached backend connections per user and database (session mode)
reserved_connections: client slots kept free; beyond them clients are refused
process_management_mode: child process management mode (ignored: one process)
process_management_strategy: how spare children are managed (ignored)
min_spare_children: minimum spare child processes (ignored)
max_spare_children: maximum spare child processes (ignored)
child_life_time: seconds an idle child process lives (ignored)
child_max_connections: client connections a child serves before exiting (ignored)
connection_life_time: seconds a cached backend connection is kept; 0 means forever
client_idle_limit: seconds a client may stay idle before it is disconnected; 0 means never
client_idle_limit_in_recovery: client idle limit while a node is in online recovery (ignored)
authentication_timeout: seconds a client has to complete authentication
connect_timeout: milliseconds before giving up connecting to a backend
connection_cache: cache backend connections for reuse
reset_query_list: statements run on a backend connection when its client leaves
backend_clustering_mode: clustering mode (streaming_replication)
pool_passwd: file of user names and passwords for client authentication
pool_hba_file: client authentication rules file (pool_hba.conf)
pool_key_file: key file decrypting AES passwords in pool_passwd
enable_pool_hba: authenticate clients with pool_hba.conf
allow_clear_text_frontend_auth: let the backend judge a clear-text client password
ssl: accept SSL connections from clients
ssl_prefer_server_ciphers: prefer the server's cipher order
ssl_key: SSL private key file
ssl_cert: SSL certificate file
ssl_ca_cert: SSL certificate authority file
ssl_ca_cert_dir: directory of SSL certificate authority files
ssl_crl_file: SSL certificate revocation list file
ssl_dh_params_file: Diffie-Hellman parameters file
ssl_ciphers: allowed SSL ciphers
ssl_ecdh_curve: curve for ECDH key exchange
ssl_passphrase_command: command to obtain the SSL key passphrase
load_balance_mode: distribute reads over the nodes by weight
ignore_leading_white_space: ignore leading white space of a query when load balancing
check_unlogged_table: look up whether a table is unlogged before load balancing
allow_sql_comments: ignore SQL comments when deciding whether a query may be load balanced
statement_level_load_balance: choose the load balance node for each statement
read_only_function_list: functions that do not write: reads calling them may be load balanced
write_function_list: functions that write: statements calling them go to the primary
database_redirect_preference_list: load balance node preferences by database name
app_name_redirect_preference_list: load balance node preferences by application name
user_redirect_preference_list: load balance node preferences by user name
dml_adaptive_object_relationship_list: objects a write makes dependent (dml_adaptive)
primary_routing_query_pattern_list: query patterns always sent to the primary
disable_load_balance_on_write: when a write stops load balancing in the session
check_temp_table: how temporary tables are detected
relcache_query_target: node asked for catalog facts (ignored: the primary)
relcache_expire: seconds catalog facts are cached (ignored)
relcache_size: number of cached catalog entries (ignored)
enable_shared_relcache: share the catalog cache between processes (ignored)
sr_check_period: seconds between streaming replication checks
sr_check_user: user for the streaming replication check
sr_check_password: password of sr_check_user
sr_check_database: database for the streaming replication check
delay_threshold: replication delay in bytes above which a standby gets no reads
delay_threshold_by_time: replication delay in milliseconds above which a standby gets no reads
prefer_lower_delay_standby: prefer the standby with the lowest delay when one lags
log_standby_delay: when standby delays are logged
replication_delay_source_cmd: command reporting replication delays (ignored)
replication_delay_source_timeout: timeout of replication_delay_source_cmd (ignored)
health_check_period: seconds between health checks; 0 disables them
health_check_max_retries: retries of a failed health check before the node is marked down
health_check_timeout: seconds a health check may take
health_check_retry_delay: seconds between health check retries
health_check_user: user for the health check
health_check_password: password of health_check_user
health_check_database: database for the health check
health_check_test: simulate health check failures (ignored)
failover_command: command run when a node is detached (ignored)
failback_command: command run when a node is attached (ignored)
follow_primary_command: command run after a primary failover (ignored)
failover_on_backend_error: mark a node down when a session loses its connection to it
failover_on_backend_shutdown: mark a node down when it shuts down (ignored)
detach_false_primary: detach a primary no standby follows (ignored)
auto_failback: mark a detached node up again when it answers
search_primary_node_timeout: seconds to search for a primary after failover (ignored)
auto_failback_interval: minimum seconds between automatic failbacks of a node
recovery_user: user for online recovery (ignored)
recovery_password: password of recovery_user (ignored)
recovery_1st_stage_command: first stage online recovery command (ignored)
recovery_2nd_stage_command: second stage online recovery command (ignored)
recovery_timeout: seconds online recovery may take (ignored)
replicate_select: replicate SELECTs in native replication mode (ignored)
replication_stop_on_mismatch: degenerate on data mismatch in native replication (ignored)
failover_if_affected_tuples_mismatch: degenerate on row count mismatch (ignored)
insert_lock: lock tables for INSERT in native replication mode (ignored)
lobj_lock_table: table locked for large object replication (ignored)
use_watchdog: enable the watchdog (ignored: failover belongs to the platform)
allow_multiple_failover_requests_from_node: watchdog failover votes (ignored)
enable_consensus_with_half_votes: watchdog consensus with half the votes (ignored)
wd_remove_shutdown_nodes: remove shut down watchdog nodes (ignored)
failover_when_quorum_exists: fail over only with a watchdog quorum (ignored)
failover_require_consensus: fail over only with watchdog consensus (ignored)
clear_memqcache_on_escalation: clear the query cache on escalation (ignored)
trusted_servers: servers checked to confirm upstream connectivity (ignored)
delegate_ip: virtual IP address of the watchdog leader (ignored)
wd_escalation_command: command run on escalation (ignored)
wd_de_escalation_command: command run on de-escalation (ignored)
wd_authkey: watchdog authentication key (ignored)
trusted_server_command: command checking trusted servers (ignored)
ping_path: path of the ping command (ignored)
if_cmd_path: path of the interface commands (ignored)
if_up_cmd: command bringing the virtual IP up (ignored)
if_down_cmd: command bringing the virtual IP down (ignored)
arping_path: path of the arping command (ignored)
arping_cmd: arping command (ignored)
wd_lifecheck_method: watchdog life check method (ignored)
wd_monitoring_interfaces_list: interfaces the watchdog monitors (ignored)
wd_priority: watchdog leader election priority (ignored)
wd_interval: seconds between watchdog life checks (ignored)
wd_lost_node_removal_timeout: seconds before a lost watchdog node is removed (ignored)
wd_no_show_node_removal_timeout: seconds before an absent watchdog node is removed (ignored)
wd_life_point: watchdog life check retries (ignored)
wd_heartbeat_keepalive: seconds between watchdog heartbeats (ignored)
wd_heartbeat_deadtime: seconds without heartbeat before a node is lost (ignored)
wd_lifecheck_query: watchdog life check query (ignored)
wd_lifecheck_dbname: watchdog life check database (ignored)
wd_lifecheck_user: watchdog life check user (ignored)
wd_lifecheck_password: watchdog life check password (ignored)
log_destination: where logs go
log_line_prefix: printf-style prefix of each log line
log_format: log line format: text (log_line_prefix) or json (one object per line)
log_error_verbosity: detail of logged messages
log_min_messages: lowest message level logged
client_min_messages: lowest message level sent to clients
log_connections: log each client connection
log_disconnections: log each client disconnection
log_hostname: log client host names instead of addresses
log_statement: log every statement
log_per_node_statement: log every statement with the node it went to
notice_per_node_statement: send a notice naming the node of every statement
log_client_messages: log every message from clients
log_pcp_processes: log PCP process forks (ignored)
log_backend_messages: log messages from backends
syslog_facility: syslog facility
syslog_ident: syslog program name
logging_collector: collect log output into files (ignored)
log_truncate_on_rotation: truncate log files on rotation (ignored)
log_directory: directory of log files (ignored)
log_filename: name pattern of log files (ignored)
log_file_mode: permissions of log files (ignored)
log_rotation_age: minutes before a log file is rotated (ignored)
log_rotation_size: kilobytes before a log file is rotated (ignored)
pid_file_name: pid file (ignored: twistd writes it)
logdir: directory of the node status file (ignored)
work_dir: working directory, 4.7 name of logdir (ignored)
memory_cache_enabled: in-memory query cache (not implemented)
memqcache_method: query cache storage (not implemented)
memqcache_memcached_host: memcached host of the query cache (not implemented)
memqcache_memcached_port: memcached port of the query cache (not implemented)
memqcache_total_size: shared memory size of the query cache (not implemented)
memqcache_max_num_cache: maximum query cache entries (not implemented)
memqcache_expire: seconds a cached result lives (not implemented)
memqcache_auto_cache_invalidation: invalidate cached results on writes (not implemented)
memqcache_maxcache: largest cacheable result in bytes (not implemented)
memqcache_cache_block_size: query cache block size in bytes (not implemented)
memqcache_oiddir: directory of the query cache's table oids (not implemented)
cache_safe_memqcache_table_list: tables whose reads may be cached (not implemented)
cache_unsafe_memqcache_table_list: tables whose reads are never cached (not implemented)
max_message_length: largest protocol message accepted, in bytes
pool_mode: session or transaction pooling
read_consistency: reads see the session's earlier writes (lsn) or not (none)
read_consistency_scope: whose writes a read must see: global, session or user
read_consistency_wait: milliseconds a read waits for a standby to catch up
read_consistency_poll_interval: milliseconds between standby replay position polls
checkout_timeout: seconds a client waits for a backend connection
backend_max_connections: backend connections per node; 0 means no limit
max_prepared_statements: prepared statements kept per backend connection (transaction mode)
transaction_pool_size: backend connections per user, database and node (transaction mode)
classify_max_length: longest statement text parsed for routing, in bytes
backend_connect_rate: new backend connections per second per node; 0 means unpaced
backend_connect_burst: new backend connections allowed at once per node
auth_user: user running auth_query
pre_auth_connections_per_user: backend logins per user before its client authenticates
auth_query: query looking up a user's password verifier
ssl_require: refuse clients that do not use SSL
metrics_port: port of the Prometheus metrics endpoint; 0 disables it
metrics_listen_addresses: addresses the metrics endpoint listens on
routing: routing policy chain
pgtwist: pgtwist-specific settings
hostname: watchdog node host name (ignored)
pgpool_port: watchdog node pgpool port (ignored)
wd_port: watchdog node port (ignored)
heartbeat_hostname: heartbeat destination host (ignored)
heartbeat_port: heartbeat destination port (ignored)
heartbeat_device: heartbeat network device (ignored)
backend_hostname: host name or IP address of the backend
backend_port: port number of the backend
backend_weight: load balance weight of the backend
backend_data_directory: data directory of the backend
backend_flag: backend flags (ALLOW_TO_FAILOVER, DISALLOW_TO_FAILOVER, ALWAYS_PRIMARY)
backend_application_name: application_name the backend's walreceiver uses
"""

DESCRIPTIONS: dict[str, str] = dict(
    line.split(": ", 1) for line in _TEXT.strip().splitlines()
)


def describe(name: str) -> str:
    """The description of ``name``, a per-node form (``health_check_period1``) included."""
    found = DESCRIPTIONS.get(name)
    if found is None:
        base = name.rstrip("0123456789")
        found = DESCRIPTIONS.get(base, "")
    return found
