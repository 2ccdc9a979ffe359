"""What pgtwist knows about its backends: up or down, primary or standby.

The primary is the backend flagged ALWAYS_PRIMARY, else the one whose
``pg_is_in_recovery()`` is false.  Roles are checked with ``sr_check_user``
every ``sr_check_period`` seconds (0: once at start and whenever a session
finds no primary).  Only sr_check_user's credentials are ever used: the client
waiting for the answer has not authenticated yet, so if sr_check_user cannot log
in, that client is refused (no primary found).
"""

from __future__ import annotations

import time

from twisted.internet import defer, task

from .conn.auth import Secret
from .conn.backend import LoginFailed
from .logs import logger
from .protocols.backend import run_query
from .routing.values import ClusterView, NodeView
from .wire.errors import CONNECTION_FAILURE

log = logger(__name__)

ROLE_QUERY = (
    "SELECT pg_catalog.pg_is_in_recovery(), CASE WHEN pg_catalog.pg_is_in_recovery() "
    "THEN pg_catalog.pg_last_wal_replay_lsn() ELSE pg_catalog.pg_current_wal_lsn() END"
)
# A node marked down is tried again by the next session after this long.
DOWN_RETRY_SECONDS = 5.0


class NoPrimary(LoginFailed):
    pass


def _parse_lsn(text: str | None) -> int | None:
    if not text or "/" not in text:
        return None
    high, low = text.split("/", 1)
    return (int(high, 16) << 32) | int(low, 16)


def _now_text() -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S")


class NodeState:
    """Live state of one configured backend."""

    __slots__ = ("node_id", "backend", "status", "role", "select_cnt", "last_status_change",
                 "pg_status", "pg_role", "replication_delay", "replication_state",
                 "replication_sync_state", "down_since", "lsn", "replay_lsn")

    def __init__(self, backend):
        self.node_id = backend.node_id
        self.backend = backend
        self.status = "waiting"          # pgtwist's view: up | down | waiting (not used yet)
        self.role = "primary" if backend.always_primary else "unknown"
        self.select_cnt = 0
        self.last_status_change = _now_text()
        self.pg_status = "unknown"       # last live check: up | down | unknown
        self.pg_role = "unknown"         # last pg_is_in_recovery() answer
        self.replication_delay: float | None = None   # bytes behind the primary
        self.replication_state = ""
        self.replication_sync_state = ""
        self.down_since = 0.0
        self.lsn: int | None = None
        self.replay_lsn: int | None = None   # last pg_last_wal_replay_lsn() seen (pgtwist.lsn)

    @property
    def replication_delay_text(self) -> str:
        return "0" if self.replication_delay is None else str(int(self.replication_delay))

    def set_status(self, status: str, now: float = 0.0) -> bool:
        if status == "down":
            self.down_since = now
        if status != self.status:
            self.status = status
            self.last_status_change = _now_text()
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
        if len(self.nodes) == 1 and self.nodes[0].role == "unknown":
            self.nodes[0].role = "primary"
        if any(n.backend.always_primary for n in self.nodes):
            # With a fixed primary, every other node is a standby (Kubernetes/Aurora setups).
            for n in self.nodes:
                if not n.backend.always_primary:
                    n.role = "standby"

    # -- lifecycle -------------------------------------------------------------
    def start(self) -> None:
        period = self.config.sr_check_period
        if self._needs_check() or period > 0:
            if period > 0:
                self._loop = task.LoopingCall(self._periodic)
                self._loop.clock = self.reactor
                self._loop.start(period, now=True).addErrback(
                    lambda f: log.failure("role check loop stopped", f)
                )
            else:
                self._periodic()

    def stop(self) -> None:
        if self._loop is not None and self._loop.running:
            self._loop.stop()

    def _needs_check(self) -> bool:
        return not any(n.backend.always_primary for n in self.nodes) and len(self.nodes) > 1

    def _periodic(self):
        return self.check_roles(self.config.sr_check_user, self._sr_secret()).addErrback(
            lambda f: None
        )

    def _sr_secret(self) -> Secret | None:
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
        """Worth trying: up, or down long enough ago to try again."""
        node = self.nodes[node_id]
        if node.status != "down":
            return True
        return self.reactor.seconds() - node.down_since >= DOWN_RETRY_SECONDS

    def view(self):
        """A ClusterView for the routing chain, rebuilt only when something changed."""
        cached = self._view
        if cached is not None and cached[0] == self.version:
            return cached[1]
        now = self.reactor.seconds()
        nodes = tuple(
            NodeView(
                n.node_id,
                "down" if n.status == "down" and now - n.down_since < DOWN_RETRY_SECONDS else
                ("up" if n.status == "down" else n.status),
                n.role, n.backend.weight, n.replication_delay,
            )
            for n in self.nodes
        )
        view = ClusterView(nodes, self.primary_id)
        # A down node's view must be rebuilt once its retry time passes.
        if not any(n.status == "down" for n in self.nodes):
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
        d = self.check_roles(self.config.sr_check_user, self._sr_secret())

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
        checks = []
        for node in self.nodes:
            if node.backend.always_primary and not self.config.sr_check_period:
                continue
            d = run_query(
                self.reactor, node.backend.hostname, node.backend.port, user,
                self.config.sr_check_database, secret, ROLE_QUERY, timeout,
                tls=self.tls_for(node.backend),
            )
            d.addCallbacks(self._role_ok, self._role_failed, callbackArgs=(node,), errbackArgs=(node, user))
            checks.append(d)
        self._check = defer.DeferredList(checks, consumeErrors=True)

        def done(result):
            self._check = None
            self._delays()
            return result

        self._check.addBoth(done)
        return self._check

    def _delays(self) -> None:
        """Replication delay in WAL bytes, from the LSNs the last check read."""
        primary = self.primary
        if primary is None or primary.lsn is None:
            return
        for node in self.nodes:
            if node is not primary and node.lsn is not None:
                node.replication_delay = max(0, primary.lsn - node.lsn)

    def _role_ok(self, rows, node: NodeState) -> None:
        in_recovery = bool(rows) and rows[0][0] == "t"
        node.lsn = _parse_lsn(rows[0][1]) if rows and len(rows[0]) > 1 else None
        role = "standby" if in_recovery else "primary"
        if node.backend.always_primary or (self._fixed_primary and not in_recovery):
            # ALWAYS_PRIMARY decides roles; the check only reports pg_role/pg_status.
            node.pg_role = role
            node.pg_status = "up"
            node.set_status("up")
            return
        if role != node.role:
            log.info("node {node_id} ({host}:{port}) is {role}", node_id=node.node_id,
                     host=node.backend.hostname, port=node.backend.port, role=role)
        node.role = role
        node.pg_role = role
        node.pg_status = "up"
        node.set_status("up")
        self.changed()
        if role == "primary":
            for other in self.nodes:
                if other is not node and other.role == "primary" and not other.backend.always_primary:
                    other.role = "unknown"

    def _role_failed(self, failure, node: NodeState, user: str) -> None:
        exc = failure.value
        if isinstance(exc, LoginFailed) and exc.sqlstate == CONNECTION_FAILURE:
            node.pg_status = "down"
            node.set_status("down", self.reactor.seconds())
            self.changed()
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

    def mark_down(self, node_id: int) -> None:
        if self.nodes[node_id].set_status("down", self.reactor.seconds()):
            log.warn("node {node} marked down", node=node_id)
        self.changed()

    def mark_up(self, node_id: int) -> None:
        if self.nodes[node_id].set_status("up"):
            self.changed()
