"""What each PCP request does to pgtwist, and the reply packets, in Pgpool-II 4.3.5's layout
(the pcp_* tools of a release read only their own release's layout: docs/pcp.md).

Views come from pgtwist.adminview, the rows SHOW pool_* shows; the node commands act on
pgtwist's cluster model (pgtwist.cluster), never on a server. A handler returns the reply
bytes, or a Deferred of them for a request that waits (graceful detach); a bad request
raises :class:`CommandError`, which the connection answers with an ERROR and survives.
"""

from __future__ import annotations

import time

from twisted.internet import defer, task

from .. import adminview
from ..logs import logger
from . import codec

log = logger(__name__)

_STATUS_DIGIT = {"waiting": "1", "up": "2", "down": "3"}   # 0 would be "unused"
_ROLE_DIGIT = {"primary": "2", "standby": "3"}             # 0 main, 1 replica: other modes
PROC_INFO_FIELDS = 17   # pool_pools' columns up to status: 4.3.5's ProcessInfo layout
POLL = 0.1              # seconds between checks while a graceful detach waits


class CommandError(Exception):
    def __init__(self, message: str, detail: str = ""):
        super().__init__(message, detail)
        self.message = message
        self.detail = detail


def _number(payload: bytes, message: str, detail: str) -> int:
    """The request's integer argument ("1\\0", promote's "1 \\0s"); strict, unlike
    Pgpool-II's atoi, so garbage never acts on node 0."""
    fields = codec.split_strings(payload)
    text = fields[0].strip() if fields else ""
    try:
        return int(text)
    except ValueError:
        raise CommandError(message, detail.format(text)) from None


def _epoch(text: str) -> str:
    try:
        return str(int(time.mktime(time.strptime(text, "%Y-%m-%d %H:%M:%S"))))
    except (ValueError, OverflowError):
        return "0"


class Commands:
    """``stopper(mode)`` shuts the daemon down ('s' smart, 'f' fast, 'i' immediate)."""

    def __init__(self, proxy, reactor, stopper):
        self.proxy = proxy
        self.reactor = reactor
        self.stopper = stopper
        self.handlers = {
            "L": self.node_count, "I": self.node_info, "C": self.attach_node,
            "D": self.detach_node, "d": self.detach_node_gracefully,
            "J": self.promote_node, "j": self.promote_node, "N": self.proc_count,
            "P": self.proc_info, "B": self.pool_status, "H": self.health_check_stats,
            "Z": self.reload_config, "T": self.stop_pgpool, "t": self.stop_pgpool,
        }

    def run(self, letter: str, payload: bytes):
        return self.handlers[letter](payload)

    @property
    def nodes(self):
        return self.proxy.cluster.nodes

    def _node(self, payload: bytes, message: str, detail: str = "invalid node ID : {}"):
        node_id = _number(payload, message, detail)
        if not 0 <= node_id < len(self.nodes):
            raise CommandError(message, detail.format(node_id))
        return node_id

    # -- nodes ---------------------------------------------------------------------
    def node_count(self, payload: bytes) -> bytes:
        return codec.reply("l", "CommandComplete", len(self.nodes))

    def node_info(self, payload: bytes) -> bytes:
        node_id = _number(payload, "informing node info failed", "invalid node ID : {}")
        if node_id == -1:
            chosen = list(self.nodes)
        elif 0 <= node_id < len(self.nodes):
            chosen = [self.nodes[node_id]]
        else:
            raise CommandError("informing node info failed", f"invalid node ID : {node_id}")
        total = sum(n.backend.weight for n in self.nodes) or 1.0
        out = [codec.reply("i", "ArraySize", len(chosen))]
        for n in chosen:
            delay = n.replication_delay or 0
            out.append(codec.reply(
                "i", "NodeInfo", n.backend.hostname, n.backend.port,
                _STATUS_DIGIT.get(n.status, "1"), "0", n.pg_status,
                f"{n.backend.weight / total * codec.RAND_MAX:f}",
                _ROLE_DIGIT.get(n.role, "3"), n.pg_role, int(delay),
                n.replication_state, n.replication_sync_state, _epoch(n.last_status_change),
            ))
        out.append(codec.reply("i", "CommandComplete"))
        return b"".join(out)

    def attach_node(self, payload: bytes) -> bytes:
        node_id = self._node(payload, "attach node failed")
        self.proxy.cluster.attach(node_id, "pcp_attach_node")
        return codec.reply("c", "CommandComplete")

    def detach_node(self, payload: bytes) -> bytes:
        node_id = self._node(payload, "detach node failed")
        return self._detach(node_id)

    def _detach(self, node_id: int) -> bytes:
        if not self.proxy.cluster.detach(node_id, "pcp_detach_node"):
            raise CommandError("detach node failed",
                               f"node {node_id} is flagged DISALLOW_TO_FAILOVER")
        return codec.reply("d", "CommandComplete")

    def detach_node_gracefully(self, payload: bytes):
        """As pcp_detach_node -g in Pgpool-II: wait until no client is connected, then
        detach; give up after recovery_timeout seconds."""
        node_id = self._node(payload, "detach node failed")
        limit = float(self.proxy.config.params["recovery_timeout"])
        deadline = self.reactor.seconds() + limit
        done = defer.Deferred()

        def poll():
            if not self._open_sessions():
                loop.stop()
                done.callback(None)
            elif self.reactor.seconds() >= deadline:
                loop.stop()
                done.errback(CommandError(
                    "detach node failed",
                    f"clients still connected after recovery_timeout ({limit:g} s)"))

        loop = task.LoopingCall(poll)
        loop.clock = self.reactor
        loop.start(POLL, now=True)
        return done.addCallback(lambda _: self._detach(node_id))

    def _open_sessions(self) -> int:
        return sum(1 for relay in self.proxy.sessions.values() if not relay.closed)

    def promote_node(self, payload: bytes) -> bytes:
        """Changes pgtwist's idea of the primary only; no server is touched (docs/pcp.md)."""
        node_id = self._node(payload, "invalid promote request")
        node = self.nodes[node_id]
        if node.role == "primary":
            raise CommandError("invalid promote request", "specified node is already primary "
                               f"node, can't promote node id {node_id}")
        if node.status == "down":
            raise CommandError("invalid promote request",
                               f"specified node is down, can't promote node id {node_id}")
        fixed = [n.node_id for n in self.nodes if n.backend.always_primary]
        if fixed:
            # The flag decides the primary; a role check would undo the promote and leave
            # no primary at all.
            raise CommandError("invalid promote request",
                               f"node {fixed[0]} is flagged ALWAYS_PRIMARY: the primary is "
                               "set in the configuration")
        self.proxy.cluster.promote(node_id, "pcp_promote_node")
        return codec.reply("d", "CommandComplete")

    def health_check_stats(self, payload: bytes) -> bytes:
        node_id = self._node(payload, "informing health check stats info failed",
                             "invalid node ID {}")
        _columns, rows = adminview.view("pool_health_check_stats", self.proxy)
        return codec.reply("h", "CommandComplete", *rows[node_id])

    # -- processes and settings ----------------------------------------------------------
    def _pools(self):
        return adminview.view("pool_pools", self.proxy)[1]

    def proc_count(self, payload: bytes) -> bytes:
        """The pids proc_info knows: each client session's, then the daemon's (free slots
        and idle pooled links)."""
        _columns, rows = adminview.view("pool_processes", self.proxy)
        pids = list(dict.fromkeys(row[0] for row in rows))
        return codec.reply("n", "CommandComplete", len(pids), *pids)

    def proc_info(self, payload: bytes) -> bytes:
        pid = _number(payload, "informing process info failed", "invalid process ID : {}")
        rows = self._pools()
        if pid != 0:
            rows = [row for row in rows if row[0] == str(pid)]
            if not rows:
                raise CommandError("informing process info failed",
                                   f"invalid process ID : {pid}")
        out = [codec.reply("p", "ArraySize", len(rows))]
        out.extend(codec.reply("p", "ProcessInfo", *row[:PROC_INFO_FIELDS]) for row in rows)
        out.append(codec.reply("p", "CommandComplete"))
        return b"".join(out)

    def pool_status(self, payload: bytes) -> bytes:
        _columns, rows = adminview.view("pool_status", self.proxy)
        out = [codec.array_size_binary("b", len(rows))]
        out.extend(codec.reply("b", "ProcessConfig", *row) for row in rows)
        out.append(codec.reply("b", "CommandComplete"))
        return b"".join(out)

    # -- the daemon ------------------------------------------------------------------------
    def reload_config(self, payload: bytes) -> bytes:
        """The SIGHUP path: a broken file is logged and the running configuration kept."""
        self.proxy.reload()
        return codec.reply("z", "CommandComplete")

    def stop_pgpool(self, payload: bytes) -> bytes:
        mode = payload[:1].decode("latin-1") or "s"
        if mode not in ("s", "f", "i"):
            raise CommandError("invalid shutdown mode", f'shutdown mode "{mode}" is not s, f or i')
        log.warn("pcp_stop_pgpool: {how} shutdown requested",
                 how={"s": "smart", "f": "fast", "i": "immediate"}[mode])
        # After the reply is on its way: the protocol flushes it before the stop runs.
        self.reactor.callLater(0, self.stopper, mode)
        return codec.reply("t", "CommandComplete")
