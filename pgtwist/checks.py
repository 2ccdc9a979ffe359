"""Health and replication checks: the Twisted loops that feed :class:`pgtwist.cluster.Cluster`.

Health check (Pgpool-II §5): every ``health_check_period`` seconds each node with a
period gets a fresh login as ``health_check_user`` and one trivial query, bounded by
``health_check_timeout``; after ``health_check_max_retries`` more attempts
``health_check_retry_delay`` apart it is reported failed (the cluster decides what that
means: ALLOW/DISALLOW_TO_FAILOVER, auto_failback).  Each parameter may be given per node
(``health_check_period1``), falling back to the un-suffixed value.

Replication check (Pgpool-II §1.6): after each periodic role check, the primary is asked
``pg_stat_replication`` (state, sync state, replay lag, matched to nodes by
``backend_application_name``), or, where ``aurora_replica_status()`` exists, Aurora's
per-reader lag.  Byte delays come from the LSNs the role check read.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass

from twisted.internet import defer, task

from .conn.auth import Secret
from .logs import logger
from .protocols.backend import run_query

log = logger(__name__)

HEALTH_QUERY = "SELECT pg_catalog.pg_is_in_recovery()"
AURORA_PROBE = ("SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_proc "
                "WHERE proname = 'aurora_replica_status')")
AURORA_QUERY = "SELECT server_id, session_id, replica_lag_in_msec FROM aurora_replica_status()"
AURORA_WRITER = "MASTER_SESSION_ID"
SR_QUERY = ("SELECT application_name, state, sync_state, "
            "(EXTRACT(EPOCH FROM replay_lag) * 1000000)::bigint "
            "FROM pg_catalog.pg_stat_replication")


@dataclass(frozen=True)
class HealthOptions:
    """One node's health check settings (seconds as floats)."""

    period: float
    timeout: float              # 0: bounded by connect_timeout only
    max_retries: int
    retry_delay: float
    user: str
    password: str
    database: str


def health_options(params: Mapping[str, object], node_id: int) -> HealthOptions:
    """The node's settings: ``health_check_<x><node_id>`` when given, else ``health_check_<x>``."""
    def get(name: str):
        return params.get(f"{name}{node_id}", params[name])

    return HealthOptions(
        period=float(get("health_check_period")),
        timeout=float(get("health_check_timeout")),
        max_retries=int(get("health_check_max_retries")),
        retry_delay=float(get("health_check_retry_delay")),
        user=str(get("health_check_user")),
        password=str(get("health_check_password")),
        database=str(get("health_check_database")) or "postgres",
    )


@dataclass(frozen=True)
class ReplicationOptions:
    """The replication check's thresholds; ``by_time`` decides the unit of every delay."""

    delay_threshold: int            # WAL bytes; 0: off
    delay_threshold_by_time: float  # seconds; > 0 overrides delay_threshold
    log_standby_delay: str          # none | always | if_over_threshold

    @classmethod
    def from_params(cls, p: Mapping[str, object]) -> ReplicationOptions:
        return cls(int(p["delay_threshold"]), int(p["delay_threshold_by_time"]) / 1000.0,
                   str(p["log_standby_delay"]))

    @property
    def by_time(self) -> bool:
        return self.delay_threshold_by_time > 0

    def over(self, delay: float | None) -> bool:
        if delay is None:
            return False
        if self.by_time:
            return delay > self.delay_threshold_by_time
        return bool(self.delay_threshold) and delay > self.delay_threshold


class HealthStats:
    """SHOW pool_health_check_stats for one node: counts since start, durations (ms) and
    wall-clock times ('' until it happens).  ``total`` counts checks, each a round of
    attempts; ``retry`` the attempts after a round's first.  Pgpool-II skips the check of
    a node it holds down; pgtwist checks it all the same (pg_status stays live, and
    auto_failback needs the answer), so ``skip`` stays 0 and ``last_skip`` empty."""

    __slots__ = ("total", "success", "fail", "skip", "retry", "max_retry", "max_ms", "min_ms",
                 "sum_ms", "last", "last_success", "last_skip", "last_fail")

    def __init__(self) -> None:
        self.total = self.success = self.fail = self.skip = self.retry = self.max_retry = 0
        self.max_ms = self.min_ms = 0
        self.sum_ms = 0.0
        self.last = self.last_success = self.last_skip = self.last_fail = ""

    def checked(self, ok: bool, retries: int, seconds: float) -> None:
        now = wall_clock_text()
        self.total += 1
        self.last = now
        if ok:
            self.success += 1
            self.last_success = now
        else:
            self.fail += 1
            self.last_fail = now
        self.retry += retries
        self.max_retry = max(self.max_retry, retries)
        ms = max(0, int(round(seconds * 1000)))
        made = self.success + self.fail
        self.max_ms = max(self.max_ms, ms)
        self.min_ms = ms if made == 1 else min(self.min_ms, ms)
        self.sum_ms += ms

    @property
    def average_retry(self) -> float:
        made = self.success + self.fail
        return self.retry / made if made else 0.0

    @property
    def average_ms(self) -> float:
        made = self.success + self.fail
        return self.sum_ms / made if made else 0.0


def wall_clock_text() -> str:
    """Pgpool-II's timestamps in SHOW output: local time, ``%Y-%m-%d %H:%M:%S``."""
    return time.strftime("%Y-%m-%d %H:%M:%S")


def probe(reactor, backend, user: str, database: str, secret: Secret | None, sql: str,
          timeout: float, tls=None) -> defer.Deferred:
    """Log in to ``backend`` and run ``sql``, each step bounded by ``timeout``."""
    return run_query(reactor, backend.hostname, backend.port, user, database, secret, sql,
                     timeout, tls=tls, application_name="pgtwist_health_check")


def _why(failure) -> str:
    exc = failure.value
    fields = getattr(exc, "fields", None)
    if isinstance(fields, dict) and fields.get("M"):
        return fields["M"]
    return failure.getErrorMessage() or type(exc).__name__


class HealthCheck:
    """One node's loop.  ``cluster.health_ok(node_id, in_recovery)`` after a good check,
    ``cluster.health_failed(node_id, why)`` after the retries are spent."""

    def __init__(self, reactor, cluster, node_id: int, options: HealthOptions, secret,
                 tls=None, connect_timeout: float = 10.0, query=probe):
        self.reactor = reactor
        self.cluster = cluster
        self.node_id = node_id
        self.options = options
        self.secret = secret
        self.tls = tls
        self.timeout = options.timeout or connect_timeout
        self.query = query
        self._loop: task.LoopingCall | None = None
        self.running = False

    def start(self) -> None:
        self.running = True
        self._loop = task.LoopingCall(self.check)
        self._loop.clock = self.reactor
        self._loop.start(self.options.period, now=True).addErrback(
            lambda f: log.failure("health check loop of node {node} stopped", f,
                                  node=self.node_id))

    def stop(self) -> None:
        self.running = False
        if self._loop is not None and self._loop.running:
            self._loop.stop()

    @defer.inlineCallbacks
    def check(self):
        o = self.options
        node = self.cluster.nodes[self.node_id]
        backend = node.backend
        stats = node.health_stats
        started = self.reactor.seconds()
        why = "?"
        for attempt in range(o.max_retries + 1):
            if attempt:
                yield task.deferLater(self.reactor, o.retry_delay, lambda: None)
                if not self.running:
                    return
            try:
                rows = yield self.query(self.reactor, backend, o.user, o.database, self.secret,
                                        HEALTH_QUERY, self.timeout, self.tls)
            except Exception:  # noqa: BLE001 - every failure counts as one failed attempt
                why = _why(defer.Failure())
                if attempt < o.max_retries:
                    log.warn("health check of node {node} failed ({why}); retry {n} of {max}",
                             node=self.node_id, why=why, n=attempt + 1, max=o.max_retries)
                continue
            stats.checked(True, attempt, self.reactor.seconds() - started)
            in_recovery = bool(rows) and bool(rows[0]) and rows[0][0] == "t"
            self.cluster.health_ok(self.node_id, in_recovery)
            return
        stats.checked(False, o.max_retries, self.reactor.seconds() - started)
        self.cluster.health_failed(self.node_id, why)


def health_checks(reactor, cluster, params, secret_for, tls_for) -> list[HealthCheck]:
    """A HealthCheck for every node whose health_check_period is above 0."""
    checks = []
    connect_timeout = int(params["connect_timeout"]) / 1000.0
    for node in cluster.nodes:
        o = health_options(params, node.node_id)
        if o.period <= 0:
            continue
        secret = Secret(plaintext=o.password) if o.password else secret_for(o.user)
        checks.append(HealthCheck(reactor, cluster, node.node_id, o, secret,
                                  tls_for(node.backend), connect_timeout))
    return checks


class ReplicationCheck:
    """The primary's view of its standbys, applied to the cluster's nodes."""

    def __init__(self, reactor, cluster, options: ReplicationOptions, query=run_query):
        self.reactor = reactor
        self.cluster = cluster
        self.options = options
        self.query = query
        self._aurora: dict[int, bool] = {}   # primary node id -> has aurora_replica_status()

    def _run(self, node, sql: str) -> defer.Deferred:
        c = self.cluster
        config = c.config
        return self.query(self.reactor, node.backend.hostname, node.backend.port,
                          config.sr_check_user, config.sr_check_database, c.sr_secret(), sql,
                          config.connect_timeout / 1000.0, tls=c.tls_for(node.backend))

    @defer.inlineCallbacks
    def check(self):
        primary = self.cluster.primary
        if primary is None or not self.cluster.usable(primary.node_id):
            return
        aurora = self._aurora.get(primary.node_id)
        if aurora is None:
            rows = yield self._run(primary, AURORA_PROBE)
            aurora = self._aurora[primary.node_id] = bool(rows) and rows[0][0] == "t"
        if aurora:
            rows = yield self._run(primary, AURORA_QUERY)
            changed = apply_aurora(self.cluster.nodes, primary, rows)
        else:
            rows = yield self._run(primary, SR_QUERY)
            changed = apply_stat_replication(self.cluster.nodes, primary, rows, self.options)
        if changed:
            self.cluster.changed()
        self.log_delays(primary)

    def log_delays(self, primary) -> None:
        o = self.options
        if o.log_standby_delay == "none":
            return
        for node in self.cluster.nodes:
            if node is primary or node.replication_delay is None:
                continue
            if o.log_standby_delay == "always" or o.over(node.replication_delay):
                log.info("replication of node {node} is behind {delay} from the primary",
                         node=node.node_id, delay=delay_text(node))


def delay_text(node) -> str:
    """SHOW pool_nodes' replication_delay: integer bytes, or seconds with six decimals."""
    if node.replication_delay is None:
        return "0"
    if node.delay_unit == "seconds":
        return f"{node.replication_delay:.6f}"
    return str(int(node.replication_delay))


def byte_delays(nodes, primary, by_time: bool = False) -> bool:
    """Standbys' delay in WAL bytes from the LSNs the role check read; True if any changed.
    In time mode (delay_threshold_by_time) delays come from the replication check only."""
    changed = False
    if by_time or primary is None or primary.replay_lsn is None:
        return False
    for node in nodes:
        if node is primary or node.replay_lsn is None or node.delay_unit == "seconds":
            continue
        delay = max(0, primary.replay_lsn - node.replay_lsn)
        if delay != node.replication_delay:
            node.replication_delay = delay
            changed = True
    return changed


def apply_stat_replication(nodes, primary, rows, options: ReplicationOptions) -> bool:
    """pg_stat_replication rows (application_name, state, sync_state, replay lag in µs)
    onto the nodes named by backend_application_name; True if a delay changed."""
    by_name = {row[0]: row for row in rows if row and row[0]}
    changed = False
    for node in nodes:
        if node is primary:
            node.replication_state = node.replication_sync_state = ""
            continue
        name = node.backend.application_name
        row = by_name.get(name) if name else None
        node.replication_state = (row[1] or "") if row else ""
        node.replication_sync_state = (row[2] or "") if row else ""
        if options.by_time and name:
            node.delay_unit = "seconds"
            delay = None if row is None else int(row[3] or 0) / 1e6
            if delay != node.replication_delay:
                node.replication_delay = delay
                changed = True
    return changed


def apply_aurora(nodes, primary, rows) -> bool:
    """aurora_replica_status() rows (server_id, session_id, replica_lag_in_msec): each
    reader's lag in seconds, matched by backend_application_name or the first label of
    the backend's host name (an instance endpoint starts with the instance id)."""
    lag = {row[0]: row[2] for row in rows if row and row[1] != AURORA_WRITER}
    changed = False
    for node in nodes:
        if node is primary:
            continue
        for key in (node.backend.application_name, node.backend.hostname.split(".", 1)[0]):
            if key and key in lag:
                node.delay_unit = "seconds"
                delay = float(lag[key] or 0) / 1000.0
                if delay != node.replication_delay:
                    node.replication_delay = delay
                    changed = True
                break
    return changed
