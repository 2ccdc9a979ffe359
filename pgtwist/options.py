"""Typed, frozen option groups: what each consumer reads from the configuration.

:func:`pgtwist.config.parse_config` builds one of each from the validated parameters
(whose defaults live only in :mod:`pgtwist.params`) and hangs them on the Config, so a
consumer takes its group and reads attributes: no parameter names as strings, no defaults
restated at the point of use, no unit conversions scattered about.  Units here are the
ones the code uses: seconds as floats, bytes as ints.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class PoolOptions:
    """Backend links: the pool and its checkouts (pgtwist.pooling), transaction pooling."""

    mode: str                              # pool_mode: "session" or "transaction"
    max_idle: int                          # max_pool: cached links per (user, database)
    connection_cache: bool
    reset_query_list: tuple[str, ...]
    connect_timeout: float                 # seconds; 0: no timeout
    backend_max_connections: int           # per backend; 0: no cap
    checkout_timeout: float                # seconds
    connection_life_time: float            # seconds; 0: forever
    connect_rate: float                    # new server connections per second; 0: no pacing
    connect_burst: int
    max_prepared_statements: int
    pre_auth_connections_per_user: int
    transaction_pool_size: int             # links per (user, database, node), transaction mode

    @classmethod
    def from_params(cls, p: Mapping[str, object]) -> PoolOptions:
        return cls(
            mode=str(p["pool_mode"]),
            max_idle=int(p["max_pool"]),
            connection_cache=bool(p["connection_cache"]),
            reset_query_list=tuple(p["reset_query_list"]),
            connect_timeout=int(p["connect_timeout"]) / 1000.0,
            backend_max_connections=int(p["backend_max_connections"]),
            checkout_timeout=float(p["checkout_timeout"]),
            connection_life_time=float(p["connection_life_time"]),
            connect_rate=float(p["backend_connect_rate"]),
            connect_burst=int(p["backend_connect_burst"]),
            max_prepared_statements=int(p["max_prepared_statements"]),
            pre_auth_connections_per_user=int(p["pre_auth_connections_per_user"]),
            transaction_pool_size=int(p["transaction_pool_size"]),
        )

    @property
    def transaction(self) -> bool:
        return self.mode == "transaction"


@dataclass(frozen=True)
class SessionOptions:
    """One client session: its timers, its message size limit, TLS demands."""

    authentication_timeout: float          # seconds; 0: no timeout
    client_idle_limit: float               # seconds; 0: no limit
    max_message_length: int                # bytes
    ssl_require: bool
    listen_backlog_multiplier: int

    @classmethod
    def from_params(cls, p: Mapping[str, object]) -> SessionOptions:
        return cls(
            authentication_timeout=float(p["authentication_timeout"]),
            client_idle_limit=float(p["client_idle_limit"]),
            max_message_length=int(p["max_message_length"]),
            ssl_require=bool(p["ssl_require"]),
            listen_backlog_multiplier=int(p["listen_backlog_multiplier"]),
        )


@dataclass(frozen=True)
class AuthOptions:
    """Client authentication: pool_hba, pool_passwd, auth_query."""

    enable_pool_hba: bool
    pool_hba_file: str
    pool_passwd: str
    pool_key_file: str
    auth_user: str
    auth_query: str
    allow_clear_text_frontend_auth: bool

    @classmethod
    def from_params(cls, p: Mapping[str, object]) -> AuthOptions:
        return cls(
            enable_pool_hba=bool(p["enable_pool_hba"]),
            pool_hba_file=str(p["pool_hba_file"]),
            pool_passwd=str(p["pool_passwd"]),
            pool_key_file=str(p["pool_key_file"]),
            auth_user=str(p["auth_user"]),
            auth_query=str(p["auth_query"]),
            allow_clear_text_frontend_auth=bool(p["allow_clear_text_frontend_auth"]),
        )


@dataclass(frozen=True)
class TLSOptions:
    """TLS towards clients (pgtwist as server) and towards backends (as client)."""

    enabled: bool                          # ssl
    cert: str = ""
    key: str = ""
    ca_cert: str = ""
    ca_cert_dir: str = ""
    crl_file: str = ""
    ciphers: str = ""
    prefer_server_ciphers: bool = False

    @classmethod
    def from_params(cls, p: Mapping[str, object]) -> TLSOptions:
        return cls(
            enabled=bool(p["ssl"]),
            cert=str(p["ssl_cert"]),
            key=str(p["ssl_key"]),
            ca_cert=str(p["ssl_ca_cert"]),
            ca_cert_dir=str(p["ssl_ca_cert_dir"]),
            crl_file=str(p["ssl_crl_file"]),
            ciphers=str(p["ssl_ciphers"]),
            prefer_server_ciphers=bool(p["ssl_prefer_server_ciphers"]),
        )


@dataclass(frozen=True)
class ClassifierOptions:
    """Bounds on SQL classification.  How the text is read (comments, leading white
    space) and the catalog checks are routing options: registry.write_rules and
    registry.catalog_options overlay the policies' blocks on the flat parameters."""

    max_length: int                        # classify_max_length, bytes

    @classmethod
    def from_params(cls, p: Mapping[str, object]) -> ClassifierOptions:
        return cls(max_length=int(p["classify_max_length"]))


@dataclass(frozen=True)
class ConsistencyOptions:
    """read_consistency (pgtwist.lsn, pgtwist.routing.consistency)."""

    mode: str = "lsn"                   # lsn | none
    scope: str = "global"               # global | session | user
    wait: float = 0.0                   # seconds a stale read may wait for a replica
    poll_interval: float = 0.05         # seconds between replay-LSN polls while active

    @classmethod
    def from_params(cls, p: Mapping[str, object]) -> ConsistencyOptions:
        return cls(
            mode=str(p["read_consistency"]),
            scope=str(p["read_consistency_scope"]),
            wait=int(p["read_consistency_wait"]) / 1000.0,
            poll_interval=int(p["read_consistency_poll_interval"]) / 1000.0,
        )

    @property
    def on(self) -> bool:
        return self.mode == "lsn"
