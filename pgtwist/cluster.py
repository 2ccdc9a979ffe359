"""What pgtwist knows about its backends: up or down, primary or standby, how far behind.

The primary is the backend flagged ALWAYS_PRIMARY, else the one whose
``pg_is_in_recovery()`` is false.  Roles are checked with ``sr_check_user``
every ``sr_check_period`` seconds (0: once at start and whenever a session
finds no primary), followed by the replication check (pgtwist.checks).  Only
sr_check_user's credentials are ever used: the client waiting for the answer has
not authenticated yet, so if sr_check_user cannot log in, that client is refused
(no primary found).

Down: a node the health check (pgtwist.checks) gave up on, or, with
failover_on_backend_error, that a session lost its connection to, is *detached*: it gets
no reads until a health check finds it answering again under ``auto_failback``.  Nodes
flagged DISALLOW_TO_FAILOVER are never detached.  A node without a health check that a
session could not reach is set aside for DOWN_RETRY_SECONDS, then tried again.
"""

from __future__ import annotations

from twisted.internet import defer, task

from . import checks
from .conn.auth import Secret
from .conn.backend import LoginFailed
from .logs import logger
from .protocols.backend import run_query
from .routing.consistency import parse_lsn
from .routing.values import ClusterView, NodeView
from .wire.decode import decode_fields
from .wire.errors import CONNECTION_FAILURE

log = logger(__name__)

ROLE_QUERY = (
    "SELECT pg_catalog.pg_is_in_recovery(), CASE WHEN pg_catalog.pg_is_in_recovery() "
    "THEN pg_catalog.pg_last_wal_replay_lsn() ELSE pg_catalog.pg_current_wal_lsn() END"
)
# A node marked down is tried again by the next session after this long.
DOWN_RETRY_SECONDS = 5.0

# SHOW pool_backend_stats counters (NodeState.stats), select_cnt apart.  As Pgpool-II's
# pool_stats: every command not named below counts as DDL (COPY, DECLARE, MERGE...
# included); reads (QueryInfo.is_read) count in select_cnt.
STAT_NAMES = ("insert_cnt", "update_cnt", "delete_cnt", "ddl_cnt", "other_cnt",
              "panic_cnt", "fatal_cnt", "error_cnt")
INSERT, UPDATE, DELETE, DDL, OTHER, PANIC, FATAL, ERROR = range(len(STAT_NAMES))
_OTHER_COMMANDS = (
    "SELECT", "VALUES", "TABLE", "CHECKPOINT", "DEALLOCATE", "DISCARD", "EXECUTE", "EXPLAIN",
    "LISTEN", "UNLISTEN", "LOAD", "LOCK", "NOTIFY", "PREPARE", "SET", "RESET", "SHOW",
    "BEGIN", "COMMIT", "ROLLBACK", "SAVEPOINT", "RELEASE", "ROLLBACK TO",
    "PREPARE TRANSACTION", "COMMIT PREPARED", "ROLLBACK PREPARED", "EMPTY")
STAT_OF = {"INSERT": INSERT, "UPDATE": UPDATE, "DELETE": DELETE,
            **{c: OTHER for c in _OTHER_COMMANDS}}
_SEVERITY = {"ERROR": ERROR, "FATAL": FATAL, "PANIC": PANIC}


class NoPrimary(LoginFailed):
    pass


class NodeState:
    """Live state of one configured backend."""

    __slots__ = ("node_id", "backend", "status", "role", "select_cnt", "last_status_change",
                 "pg_status", "pg_role", "replication_delay", "replication_state",
                 "replication_sync_state", "down_since", "detached", "replay_lsn",
                 "replay_lsn_at", "delay_unit", "failback_at", "stats", "health_stats")

    def __init__(self, backend):
        self.node_id = backend.node_id
        self.backend = backend
        self.status = "waiting"          # pgtwist's view: up | down | waiting (not used yet)
        self.role = "primary" if backend.always_primary else "unknown"
        self.select_cnt = 0
        self.last_status_change = checks.wall_clock_text()
        self.pg_status = "unknown"       # last live check: up | down | unknown
        self.pg_role = "unknown"         # last pg_is_in_recovery() answer
        self.replication_delay: float | None = None   # in delay_unit behind the primary
        self.delay_unit = "bytes"        # or "seconds" (delay_threshold_by_time, Aurora)
        self.replication_state = ""
        self.replication_sync_state = ""
        self.down_since = 0.0
        self.detached = False            # down until a health check brings it back
        self.failback_at: float | None = None
        # The sr check's last reading (reactor time in replay_lsn_at): a standby's
        # pg_last_wal_replay_lsn(), the primary's pg_current_wal_lsn(); bytes.
        self.replay_lsn: int | None = None
        self.replay_lsn_at = 0.0
        # SHOW pool_backend_stats: counts by STAT_NAMES index, since start.
        self.stats = [0] * len(STAT_NAMES)
        self.health_stats = checks.HealthStats()

    @property
    def replication_delay_text(self) -> str:
        return checks.delay_text(self)

    def count(self, command: str) -> None:
        """One statement other than a read was sent here (a read counts in select_cnt)."""
        self.stats[STAT_OF.get(command, DDL)] += 1

    def backend_error(self, body: bytes) -> None:
        """An ErrorResponse from this node: counted by severity (ERROR, FATAL, PANIC)."""
        fields = decode_fields(body)
        index = _SEVERITY.get(fields.get("V") or fields.get("S"))
        if index is not None:
            self.stats[index] += 1

    def set_status(self, status: str, now: float = 0.0) -> bool:
        if status == "down":
            self.down_since = now
        else:
            self.detached = False
        if status != self.status:
            self.status = status
            self.last_status_change = checks.wall_clock_text()
            return True
        return False


class Cluster:
    def __init__(self, reactor, config, secret_for, tls_for=lambda backend: None):
        self.reactor = reactor
        self.config = config
        self.secret_for = secret_for  # user -> Secret | None
        self.tls_for = tls_for        # backend -> TLS context factory | None
        self.nodes = [NodeState(b) for b in config.backends]
        self._check: defer.Deferred | None = None
        self._loop: task.LoopingCall | None = None
        self.version = 0       # bumped on every status/role change (cached views key on it)
        self._fixed_primary = any(b.always_primary for b in config.backends)
        self._view = None
        self.running = False
        self._checks_from(config)
        if len(self.nodes) == 1 and self.nodes[0].role == "unknown":
            self.nodes[0].role = "primary"
        if any(n.backend.always_primary for n in self.nodes):
            # With a fixed primary, every other node is a standby (Kubernetes/Aurora setups).
            for n in self.nodes:
                if not n.backend.always_primary:
                    n.role = "standby"

    def _checks_from(self, config) -> None:
        """The health and replication checks and the failover switches ``config`` asks for."""
        params = config.params
        self.replication = checks.ReplicationCheck(
            self.reactor, self, checks.ReplicationOptions.from_params(params))
        self.health = checks.health_checks(self.reactor, self, params, self.secret_for,
                                           self.tls_for)
        self._health_on = {h.node_id for h in self.health}
        self.failover_on_backend_error = bool(params["failover_on_backend_error"])
        self.auto_failback = bool(params["auto_failback"])
        self.auto_failback_interval = float(params["auto_failback_interval"])

    def reconfigure(self, config) -> None:
        """SIGHUP: health-check, replication-check and failover settings are RELOAD-context
        (as in Pgpool-II): the loops start again with the new values; what the cluster
        knows of its nodes (status, role, delays, counters) stays."""
        running = self.running
        self.stop()
        self.config = config
        self._checks_from(config)
        if running:
            self.start()

    # -- lifecycle -------------------------------------------------------------
    def start(self) -> None:
        self.running = True
        period = self.config.sr_check_period
        if self._needs_check() or period > 0:
            if period > 0:
                self._loop = task.LoopingCall(self._periodic, True)
                self._loop.clock = self.reactor
                self._loop.start(period, now=True).addErrback(
                    lambda f: log.failure("role check loop stopped", f)
                )
            else:
                self._periodic()
        for check in self.health:
            check.start()

    def stop(self) -> None:
        self.running = False
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        for check in self.health:
            check.stop()

    def _needs_check(self) -> bool:
        return not any(n.backend.always_primary for n in self.nodes) and len(self.nodes) > 1

    def _periodic(self, replication: bool = False):
        d = self.check_roles(self.config.sr_check_user, self.sr_secret())
        if replication:
            d.addCallback(lambda _: self.replication.check())
            d.addErrback(lambda f: log.warn("replication check failed: {why}",
                                            why=checks._why(f)))
        return d.addErrback(lambda f: None)

    def sr_secret(self) -> Secret | None:
        if self.config.sr_check_password:
            return Secret(plaintext=self.config.sr_check_password)
        return self.secret_for(self.config.sr_check_user)

    # -- queries -----------------------------------------------------------------
    @property
    def primary(self) -> NodeState | None:
        for node in self.nodes:
            if node.role == "primary":
                return node
        return None

    @property
    def primary_id(self) -> int | None:
        node = self.primary
        return None if node is None else node.node_id

    def usable(self, node_id: int) -> bool:
        """Worth trying: up, or set aside (not detached) long enough ago to try again."""
        node = self.nodes[node_id]
        if node.status != "down":
            return True
        if node.detached:
            return False
        return self.reactor.seconds() - node.down_since >= DOWN_RETRY_SECONDS

    def view(self):
        """A ClusterView for the routing chain, rebuilt only when something changed."""
        cached = self._view
        if cached is not None and cached[0] == self.version:
            return cached[1]
        nodes = tuple(
            NodeView(
                n.node_id,
                ("down" if not self.usable(n.node_id) else "up") if n.status == "down"
                else n.status,
                n.role, n.backend.weight, n.replication_delay,
            )
            for n in self.nodes
        )
        view = ClusterView(nodes, self.primary_id)
        # A node set aside for a while: the view must be rebuilt once its retry time passes.
        if not any(n.status == "down" and not n.detached for n in self.nodes):
            self._view = (self.version, view)
        return view

    def changed(self) -> None:
        self.version += 1

    def primary_for(self) -> defer.Deferred:
        """Deferred NodeState of the primary, checking roles if not yet known.

        The check logs in as sr_check_user only: the client asking has not
        authenticated yet, so its claimed name and pool_passwd secret are never used.
        """
        node = self.primary
        if node is not None:
            return defer.succeed(node)
        d = self.check_roles(self.config.sr_check_user, self.sr_secret())

        def answer(_):
            found = self.primary
            if found is None:
                raise NoPrimary(
                    {
                        "S": "FATAL",
                        "C": CONNECTION_FAILURE,
                        "M": "no primary node found: no backend is flagged ALWAYS_PRIMARY "
                        "and none answered pg_is_in_recovery() = false",
                    }
                )
            return found

        d.addBoth(answer)
        return d

    def check_roles(self, user: str, secret: Secret | None) -> defer.Deferred:
        """Ask every backend without a fixed role whether it is in recovery."""
        if self._check is not None:
            # One check at a time; later callers share its outcome.
            shared = defer.Deferred()
            self._check.addBoth(lambda r: (shared.callback(None), r)[1])
            return shared
        timeout = self.config.connect_timeout / 1000.0
        queries = []
        for node in self.nodes:
            if node.backend.always_primary and not self.config.sr_check_period:
                continue
            d = run_query(
                self.reactor, node.backend.hostname, node.backend.port, user,
                self.config.sr_check_database, secret, ROLE_QUERY, timeout,
                tls=self.tls_for(node.backend),
            )
            d.addCallbacks(self._role_ok, self._role_failed, callbackArgs=(node,), errbackArgs=(node, user))
            queries.append(d)
        self._check = defer.DeferredList(queries, consumeErrors=True)

        def done(result):
            self._check = None
            if checks.byte_delays(self.nodes, self.primary, self.replication.options.by_time):
                self.changed()
            return result

        self._check.addBoth(done)
        return self._check

    def _role_ok(self, rows, node: NodeState) -> None:
        in_recovery = bool(rows) and rows[0][0] == "t"
        lsn = parse_lsn(rows[0][1]) if rows and len(rows[0]) > 1 else None
        if lsn is not None:
            # The latest reading, even if lower than the last (the read-consistency poller,
            # pgtwist.lsn, may have read a newer one meanwhile): lower only makes the node
            # look less fresh, while keeping a maximum would keep a demoted primary's or a
            # rebuilt standby's old position and call it fresh.
            node.replay_lsn, node.replay_lsn_at = lsn, self.reactor.seconds()
        role = "standby" if in_recovery else "primary"
        node.pg_role = role
        node.pg_status = "up"
        if not node.detached and node.set_status("up"):
            self.changed()
        if node.backend.always_primary or (self._fixed_primary and not in_recovery):
            # ALWAYS_PRIMARY decides roles; the check only reports pg_role/pg_status.
            return
        if role != node.role:
            log.info("node {node_id} ({host}:{port}) is {role}", node_id=node.node_id,
                     host=node.backend.hostname, port=node.backend.port, role=role)
        node.role = role
        self.changed()
        if role == "primary":
            for other in self.nodes:
                if other is not node and other.role == "primary" and not other.backend.always_primary:
                    other.role = "unknown"

    def _role_failed(self, failure, node: NodeState, user: str) -> None:
        exc = failure.value
        if isinstance(exc, LoginFailed) and exc.sqlstate == CONNECTION_FAILURE:
            node.pg_status = "down"
            if node.node_id not in self._health_on:
                self._set_aside(node)
        log.warn(
            "role check of node {node_id} as user {user} failed: {why}",
            node_id=node.node_id, user=user, why=getattr(exc, "args", ("?",))[0],
        )

    def suspect_primary(self, node_id: int) -> None:
        """A write failed with 25006 on the primary: check roles again now."""
        log.warn("node {node} refused a write as read-only (25006); re-checking roles",
                 node=node_id)
        if not self.nodes[node_id].backend.always_primary:
            self.nodes[node_id].role = "unknown"
            self.changed()
        self._periodic()

    # -- up and down -------------------------------------------------------------
    def _set_aside(self, node: NodeState) -> None:
        """Down for DOWN_RETRY_SECONDS (nodes without a health check)."""
        if node.detached:
            return
        if node.set_status("down", self.reactor.seconds()):
            log.warn("node {node} marked down", node=node.node_id)
        self.changed()

    def detach(self, node_id: int, why: str) -> bool:
        """Down until a health check brings it back; never a DISALLOW_TO_FAILOVER node."""
        node = self.nodes[node_id]
        if not node.backend.failover_allowed:
            return False
        if not node.detached:
            node.set_status("down", self.reactor.seconds())
            node.detached = True
            log.warn("node {node} ({host}:{port}) marked down: {why}", node=node_id,
                     host=node.backend.hostname, port=node.backend.port, why=why)
            self.changed()
        return True

    def attach(self, node_id: int, why: str) -> None:
        """An operator's attach (pcp_attach_node): ends a detachment or set-aside now."""
        node = self.nodes[node_id]
        node.detached = False
        node.set_status("up")
        log.warn("node {node} marked up: {why}", node=node_id, why=why)
        self.changed()

    def promote(self, node_id: int, why: str) -> None:
        """An operator's promote (pcp_promote_node): pgtwist's view only, no server is
        asked; a role check that finds otherwise corrects it (docs/pcp.md)."""
        for node in self.nodes:
            if node.role == "primary":
                node.role = "standby"
        self.nodes[node_id].role = "primary"
        log.warn("node {node} is now the primary: {why}", node=node_id, why=why)
        self.changed()

    def mark_down(self, node_id: int) -> None:
        """A session lost or could not open a connection to ``node_id``."""
        if node_id not in self._health_on:
            self._set_aside(self.nodes[node_id])
        elif self.failover_on_backend_error:
            self.detach(node_id, "backend connection error (failover_on_backend_error)")

    def mark_up(self, node_id: int) -> None:
        """A session reached ``node_id``: ends a set-aside, never a detachment."""
        node = self.nodes[node_id]
        if not node.detached and node.set_status("up"):
            self.changed()

    def health_ok(self, node_id: int, in_recovery: bool) -> None:
        node = self.nodes[node_id]
        node.pg_status = "up"
        role = "standby" if in_recovery else "primary"
        node.pg_role = role
        if not self._fixed_primary and (node.role not in (role, "unknown")
                                         or (role == "primary" and self.primary is None)):
            # The platform promoted a replica (or demoted the primary): find the primary.
            log.warn("node {node} answers pg_is_in_recovery() = {r} but is the {role}; "
                     "re-checking roles", node=node_id, r=in_recovery, role=node.role)
            self._periodic()
        if node.status != "down":
            if node.set_status("up"):
                self.changed()
        elif node.detached:
            self._failback(node)
        else:
            self.mark_up(node_id)

    def _failback(self, node: NodeState) -> None:
        if not self.auto_failback:
            return
        now = self.reactor.seconds()
        if node.failback_at is not None and now - node.failback_at < self.auto_failback_interval:
            return
        if (node.role != "primary" and node.backend.application_name
                and self.config.sr_check_period and node.replication_state != "streaming"):
            return  # as Pgpool-II: a standby comes back once it streams again
        node.failback_at = now
        node.set_status("up")
        log.info("node {node} ({host}:{port}) answers again: marked up (auto_failback)",
                 node=node.node_id, host=node.backend.hostname, port=node.backend.port)
        self.changed()

    def health_failed(self, node_id: int, why: str) -> None:
        node = self.nodes[node_id]
        node.pg_status = "down"
        if not self.detach(node_id, f"health check failed: {why}"):
            log.warn("health check of node {node} failed ({why}); DISALLOW_TO_FAILOVER: "
                     "not marked down", node=node_id, why=why)
        if node.role == "primary" and not node.backend.always_primary:
            self._periodic()  # the platform may have promoted a replica
