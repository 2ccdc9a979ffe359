"""Fakes and builders for tests: routing policies, factories, cluster/session/request values,
and scripted servers for the session layer.

Importing this module loads no Twisted, so routing tests stay sans-IO; the session-layer
helpers at the end import it when they are used.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from types import MappingProxyType

from zope.interface import implementer

from .interfaces import IRoutingPolicy, IRoutingPolicyFactory
from .routing.values import (
    UNDECIDED,
    CatalogFacts,
    ClusterView,
    NodeView,
    RouteDecision,
    RouteRequest,
    SessionView,
)
from .sql.info import BOTH, EITHER, PRIMARY, QueryInfo


@implementer(IRoutingPolicy)
class FakePolicy:
    """Returns one fixed decision and remembers every request it saw."""

    def __init__(self, decision: RouteDecision = UNDECIDED, name: str = "fake",
                 cacheable: bool = False) -> None:
        self.decision = decision
        self.name = name
        self.cacheable = cacheable
        self.requests: list[RouteRequest] = []

    def route(self, request: RouteRequest) -> RouteDecision:
        self.requests.append(request)
        return self.decision


@implementer(IRoutingPolicy)
class RaisingPolicy:
    """A broken policy: raises ``exc`` on every request."""

    cacheable = False

    def __init__(self, exc: BaseException | None = None, name: str = "raising") -> None:
        self.exc = exc if exc is not None else RuntimeError("policy is broken")
        self.name = name
        self.calls = 0

    def route(self, request: RouteRequest) -> RouteDecision:
        self.calls += 1
        raise self.exc


@implementer(IRoutingPolicyFactory)
class FakeFactory:
    """A factory whose options are the raw mapping, frozen, and whose policy is given."""

    def __init__(self, name: str = "fake", policy: object | None = None) -> None:
        self.name = name
        self.policy = policy if policy is not None else FakePolicy(name=name)
        self.parsed: list[tuple[Mapping, str]] = []

    def parse_config(self, raw: Mapping, path: str) -> Mapping:
        self.parsed.append((raw, path))
        return MappingProxyType(dict(raw))

    def build(self, config: Mapping) -> object:
        return self.policy


def fake_cluster(n: int = 2, primary: int | None = 0, weights: Iterable[float] | None = None,
                 down: Iterable[int] = (), delays: Mapping[int, float] | None = None
                 ) -> ClusterView:
    """``n`` nodes, node ``primary`` the primary, the rest standbys; weight 1 unless given."""
    weights = tuple(weights) if weights is not None else (1.0,) * n
    if len(weights) != n:
        raise ValueError(f"{n} nodes but {len(weights)} weights")
    down = frozenset(down)
    delays = delays or {}
    nodes = tuple(
        NodeView(node_id=i, status="down" if i in down else "up",
                 role="primary" if i == primary else "standby", weight=float(weights[i]),
                 replication_delay=delays.get(i))
        for i in range(n))
    return ClusterView(nodes, primary)


def fake_session(user: str = "app", database: str = "appdb", application_name: str = "",
                 lb_node: int | None = 1, **kw: object) -> SessionView:
    return SessionView(user=user, database=database, application_name=application_name,
                       lb_node=lb_node, **kw)


_BOTH_COMMANDS = frozenset({"BEGIN", "COMMIT", "ROLLBACK", "SAVEPOINT", "RELEASE", "ROLLBACK TO",
                            "SET", "RESET", "DISCARD"})
_NEITHER = _BOTH_COMMANDS | {"DEALLOCATE", "PREPARE", "EXECUTE", "LISTEN", "UNLISTEN",
                             "NOTIFY", "DECLARE", "FETCH", "CLOSE", "EXPLAIN", "EMPTY", "PGPOOL",
                             "PGTWIST"}
_READS = frozenset({"SELECT", "SHOW", "TABLE", "VALUES"})


def make_query(command: str = "SELECT", **kw: object) -> QueryInfo:
    """A QueryInfo with the route/is_read/is_write a classifier would give ``command``.

    Reads (SELECT, SHOW, TABLE, VALUES) are EITHER; transaction control, SET,
    RESET, DISCARD are BOTH; everything else is PRIMARY and, unless listed in
    ``_NEITHER``, a write.  Any field can be overridden by keyword.
    """
    command = command.upper()
    if command in _READS:
        defaults: dict[str, object] = {"route": EITHER, "is_read": True}
    elif command in _BOTH_COMMANDS:
        defaults = {"route": BOTH}
    else:
        defaults = {"route": PRIMARY, "is_write": command not in _NEITHER}
    defaults.update(kw)
    return QueryInfo(command=command, **defaults)


def make_request(query: QueryInfo | str | None = None, *, session: SessionView | None = None,
                 cluster: ClusterView | None = None, catalog: CatalogFacts | None = None,
                 sql: str = "", draw: float = 0.0, now: float = 0.0,
                 **query_kw: object) -> RouteRequest:
    """A RouteRequest; ``query`` may be a command word (then ``query_kw`` go to make_query)."""
    if query is None or isinstance(query, str):
        query = make_query(query or "SELECT", **query_kw)
    elif query_kw:
        raise TypeError("query keywords given with a ready QueryInfo")
    return RouteRequest(query=query, session=session or fake_session(),
                        cluster=cluster or fake_cluster(), catalog=catalog or CatalogFacts(),
                        sql=sql, now=now, draw=draw)


_REPORTING_PLUGIN = '''
from twisted.plugin import IPlugin
from zope.interface import implementer

from pgtwist.interfaces import IRoutingPolicy, IRoutingPolicyFactory
from pgtwist.routing.values import UNDECIDED, node


@implementer(IRoutingPolicy)
class ReportingReads:
    name = "{name}"
    cacheable = True  # reads only the query's classification and the session view

    def __init__(self, node_id):
        self.node_id = node_id

    def route(self, request):
        if request.query.is_read and request.session.application_name == "reporting":
            return node(self.node_id, f"node {{self.node_id}}: reporting reads")
        return UNDECIDED


@implementer(IPlugin, IRoutingPolicyFactory)
class ReportingFactory:
    name = "{name}"

    def parse_config(self, raw, path):
        from pgtwist.errors import ConfigError
        if not isinstance(raw.get("node", 1), int):
            raise ConfigError(f"{{path}}.node: expected a node id")
        return raw.get("node", 1)

    def build(self, config):
        return ReportingReads(config)


reporting = ReportingFactory()
'''


def reporting_plugin_source(name: str) -> str:
    """Source of a routing-policy plugin module (as a user would write one): reads whose
    application_name is "reporting" go to the configured node (``node``, default 1)."""
    return _REPORTING_PLUGIN.format(name=name)


# -- the session layer: a scripted server behind a real BackendLink, a client transport ------
# (Twisted is imported only when these are used: the routing fakes above stay Twisted-free.)


def _string_transport():
    from twisted.internet.address import IPv4Address
    from twisted.internet.testing import StringTransport

    return StringTransport(peerAddress=IPv4Address("TCP", "127.0.0.1", 40000))


class ScriptedServer:
    """A PostgreSQL server played by the test, byte for byte, behind a real BackendLink.

    ``received()`` is what pgtwist sent it since the last call; ``reply(*frames)`` feeds
    its answer to the link (use pgtwist.wire.messages to build frames).
    """

    def __init__(self, node_id: int, user: str = "app", database: str = "app",
                 backend_pid: int = 1000) -> None:
        from .conn.backend import BackendLogin
        from .protocols.backend import BackendLink

        self.transport = _string_transport()
        self.link = BackendLink(node_id, BackendLogin(user, {"database": database}, None),
                                f"127.0.0.1:{5432 + node_id}")
        self.link.makeConnection(self.transport)
        self.backend_pid = backend_pid
        self.startup = self.received()  # the StartupMessage

    def login(self, status: int = 0x49, **parameters: str) -> None:
        """Accept the login (trust): AuthenticationOk, ParameterStatus, key, ReadyForQuery."""
        from .wire import messages as m

        frames = [m.AUTH_OK]
        frames += [m.parameter_status(k, v) for k, v in
                   {"server_version": "17.0", **parameters}.items()]
        frames += [m.backend_key_data(self.backend_pid, 4242), m.ready_for_query(status)]
        self.reply(*frames)

    def received(self) -> bytes:
        data = self.transport.value()
        self.transport.clear()
        return data

    def reply(self, *frames: bytes) -> None:
        self.link.dataReceived(b"".join(frames))


class ScriptedCluster:
    """A real ``Proxy`` over scripted servers: node 0 the primary, the rest standbys.

    ``config`` is a YAML-like mapping for pgtwist.config.parse_config (backends are
    added, with ``weights``).  Every link the pool opens is a new ScriptedServer, logged in at once and
    kept in ``servers[node_id]`` (newest last).
    """

    def __init__(self, nodes: int = 2, weights=None, **config) -> None:
        from twisted.internet import defer
        from twisted.internet.testing import MemoryReactorClock

        from .config import parse_config
        from .service import Proxy

        weights = weights or [1] * nodes
        raw = {"backends": [{"hostname": "127.0.0.1", "port": 5432 + i, "weight": weights[i]}
                            for i in range(nodes)],
               "pool_passwd": "", "sr_check_period": 0, **config}
        self.reactor = MemoryReactorClock()
        self.proxy = Proxy(self.reactor, parse_config(raw, env={}, check_files=False))
        for node in self.proxy.cluster.nodes:
            node.role = "primary" if node.node_id == 0 else "standby"
        self.servers: dict[int, list[ScriptedServer]] = {}

        def connect(key, params):
            server = ScriptedServer(key.node_id, key.user, params.get("database", key.user),
                                    backend_pid=1000 + sum(map(len, self.servers.values())))
            self.servers.setdefault(key.node_id, []).append(server)
            server.login()
            return defer.succeed(server.link)

        self.proxy.pooling.pool._connect = connect

    def server(self, node_id: int) -> ScriptedServer:
        return self.servers[node_id][-1]

    def client(self):
        """A new client connection's relay and its transport (what the client reads)."""
        from .session.relay import Relay

        transport = _string_transport()
        relay = Relay(self.proxy, transport)
        return relay, transport
