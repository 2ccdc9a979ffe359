"""Session pooling: sessions take backend links from one shared Pool and give them back.

A link comes back to the pool only in a known-good state: idle, reset with
``reset_query_list`` (ABORT only inside a transaction), with no error during
the reset.  Anything else (a client that vanished mid-query or mid-COPY, a
failed reset, a session whose backend password was the client's own clear
text) is closed instead.  Links are keyed by user, database, node and the rest
of the client's startup packet, so settings made at startup never reach
another client.
"""

from __future__ import annotations

from collections import OrderedDict, deque

from twisted.internet import defer
from zope.interface import implementer

from ..interfaces import ILinkOwner
from ..logs import logger
from ..protocols.backend import connect_backend
from ..timeouts import RESET_TIMEOUT_WHEN_DISABLED
from ..wire import codes
from .pool import Pool, PoolKey
from .statements import PIN_REASONS, StatementRegistry

log = logger(__name__)

# Startup-parameter slot that carries the session's backend secret to Pool.connect;
# it is removed before anything is sent and never part of a pool key.
_SECRET = "\0pgtwist-secret"
# Pool-key parameter of pgtwist's own links (auth_query): no client startup packet can
# name it (keys are C strings), so no client ever shares those links.
_INTERNAL = "\0pgtwist-internal"


class ServerMethods:
    """The password method the primary last asked for, per (user, database).

    It only chooses which challenge a client gets; ``trust`` is never kept, so a
    server's trust is honoured only through a login made for that client.  Bounded.
    """

    def __init__(self, size: int = 10000):
        self.size = size
        self._methods: OrderedDict = OrderedDict()

    def get(self, user: str, database: str) -> str | None:
        return self._methods.get((user, database))

    def put(self, user: str, database: str, method: str) -> None:
        key = (user, database)
        if method == "trust":
            self._methods.pop(key, None)
            return
        self._methods[key] = method
        self._methods.move_to_end(key)
        while len(self._methods) > self.size:
            self._methods.popitem(last=False)

    def clear(self) -> None:
        self._methods.clear()


class PreAuthGate:
    """Bounds the server connections made for clients that have not authenticated yet.

    Learning the server's method, honouring its ``trust``, or running ``auth_query``
    needs a server connection before the client proved anything.  Those connections
    are limited per claimed user name (``pre_auth_connections_per_user``), so clients
    that never authenticate cannot fill the primary; callers beyond the limit wait in a
    FIFO (bounded by ``authentication_timeout``, which closes their session).
    """

    def __init__(self, per_user: int):
        self.per_user = per_user
        self.active: dict[str, int] = {}
        self.waiters: dict[str, deque] = {}

    def acquire(self, user: str) -> defer.Deferred:
        """Fires (with None) once ``user`` has a slot; cancelling it leaves the queue."""
        if self.per_user <= 0 or self.active.get(user, 0) < self.per_user:
            self.active[user] = self.active.get(user, 0) + 1
            return defer.succeed(None)
        queue = self.waiters.setdefault(user, deque())
        d = defer.Deferred(lambda d: self._leave(user, d))
        queue.append(d)
        return d

    def release(self, user: str) -> None:
        queue = self.waiters.get(user)
        if queue:
            d = queue.popleft()
            if not queue:
                del self.waiters[user]
            d.callback(None)  # the slot passes on: ``active`` stays
            return
        left = self.active.get(user, 0) - 1
        if left > 0:
            self.active[user] = left
        else:
            self.active.pop(user, None)

    def _leave(self, user: str, d: defer.Deferred) -> None:
        queue = self.waiters.get(user)
        if queue is not None and d in queue:
            queue.remove(d)
            if not queue:
                del self.waiters[user]


class Pooling:
    def __init__(self, proxy, config):
        self.proxy = proxy
        o = config.pool
        if o.transaction:
            # A transaction pooler: the pool size bounds each key's links and clients
            # queue for them; a link released while clients wait goes to the next one,
            # and every link is kept (none is closed only to be opened again).
            # Links to every database are kept, postgres and template1 too (Pgpool-II
            # never caches those, but it logs in once per client, not per transaction).
            limits = {"max_pool": o.transaction_pool_size, "max_idle": 0,
                      "max_pool_key": "transaction_pool_size",
                      "never_cache_databases": frozenset()}
        else:
            # Pgpool-II: max_pool cached links per (user, database); concurrency is
            # capped per backend (backend_max_connections).
            limits = {"max_pool": 0, "max_idle": o.max_idle}
        self.pool = Pool(
            proxy.reactor, self._connect,
            **limits,
            backend_max_connections=o.backend_max_connections,
            checkout_timeout=o.checkout_timeout,
            connection_life_time=o.connection_life_time,
            connection_cache=o.connection_cache,
            reset_query_list=o.reset_query_list,
            connect_rate=o.connect_rate,
            connect_burst=o.connect_burst,
        )
        self.timeout = o.connect_timeout  # 0: no connect timeout
        # A reset is bounded by connect_timeout too, or a fixed limit when that is 0.
        self.reset_timeout = self.timeout or RESET_TIMEOUT_WHEN_DISABLED
        self.mode = o.mode
        # Transaction pooling: server names of prepared statements, shared by all sessions.
        self.registry = StatementRegistry()
        self.max_prepared_statements = o.max_prepared_statements
        # statements_reused: a Parse or Bind found its statement on the link already
        # (the transaction-mode cache's hits; statements_parsed are its misses).
        self.counters = {"statements_parsed": 0, "statements_reused": 0,
                         "statements_evicted": 0,
                         "statements_retired": 0, "pinned": 0,
                         "standby_read_only_retries": 0}  # pgtwist.session.retry
        self.counters.update({f"pinned_{reason}": 0 for reason in PIN_REASONS})
        self.server_methods = ServerMethods()
        self.stats = getattr(proxy, "stats", None)  # pgtwist.metrics.stats: checkout times
        self.pre_auth = PreAuthGate(o.pre_auth_connections_per_user)

    def pin(self, reason: str) -> None:
        self.counters["pinned"] += 1
        self.counters[f"pinned_{reason}"] += 1

    def _connect(self, key: PoolKey, params: dict):
        params = dict(params)
        secret = params.pop(_SECRET, None)
        params.pop(_INTERNAL, None)
        node = self.proxy.cluster.nodes[key.node_id]
        return connect_backend(
            self.proxy.reactor, key.node_id, node.backend.hostname, node.backend.port,
            key.user, params, secret, self.timeout, self.proxy.backend_tls(node.backend),
        )

    def checkout(self, session, node, secret, pooled: bool = True, fresh: bool = False):
        """Deferred link to ``node`` for ``session``: reused if one is cached, else new.

        ``fresh``: a new login that the server judges (it may say ``trust``); counted and
        paced like any other, and pooled afterwards.  ``pooled=False``: a new login that
        is never cached (the client's own clear-text password).
        """
        params = dict(session.startup_params)
        key = self.key_for(session, node.node_id)
        d = self.pool.checkout(key, {**params, _SECRET: secret}, client=session,
                               fresh=fresh or not pooled)
        if self.stats is not None:
            self.stats.timed_checkout(d)
        return d if pooled else d.addCallback(_mark_unpooled)

    @staticmethod
    def key_for(session, node_id: int) -> PoolKey:
        return PoolKey(session.user, session.database, node_id,
                       tuple(sorted(session.startup_params.items())))

    def take_idle(self, key: PoolKey, session):
        """A cached link for ``session`` under ``key`` (see :meth:`key_for`) at once, or
        None: what :meth:`checkout` would hand over without waiting, minus the Deferred."""
        link = self.pool.take_idle(key, session)
        if link is not None and self.stats is not None:
            self.stats.immediate_checkout()
        return link

    def unpark(self, link, on_taken) -> bool:
        """Take back a link parked between a session's transactions (Pool.unpark)."""
        if not self.pool.unpark(link, on_taken):
            return False
        if self.stats is not None:
            self.stats.immediate_checkout()
        return True

    def checkout_internal(self, user: str, database: str, node, secret, params: dict,
                          purpose: str):
        """A link for pgtwist's own queries (``purpose``), pooled apart from clients'."""
        params = {**params, "database": database, _INTERNAL: purpose}
        key = PoolKey(user, database, node.node_id, tuple(sorted(params.items())))
        return self.pool.checkout(key, {**params, _SECRET: secret}, client=purpose)

    def would_wait(self, session, node_id: int, pooled: bool = True) -> bool:
        """Whether ``session`` asking for a link to ``node_id`` now would have to queue."""
        if not pooled:
            return False
        return self.pool.would_wait(self.key_for(session, node_id))

    def release(self, link, clean: bool, reset: bool = True) -> None:
        """Give a session's link back: reset and cached when ``clean``, else closed.

        ``reset=False`` (transaction pooling, the link idle between transactions) skips
        ``reset_query_list``: the link keeps its prepared statements and applied state,
        which the next session reconciles with its own.  A link with a cancel request
        still on its way waits for it before anyone else may use it.
        """
        if link.unpooled:
            link.owner = None
            self.pool.discard(link)  # frees its slot under backend_max_connections
            return
        transport = link.transport
        if transport is not None and not link.closed:
            if getattr(transport, "producer", None) is not None:
                transport.unregisterProducer()
            transport.resumeProducing()
        link.owner = None
        link.server.applied_by = None
        if not clean or link.closed:
            self.pool.discard(link)
            return
        if link.cancelling:
            link.owner = _Parked(self.pool)
            link.after_cancel = lambda: self.release(link, clean, reset)
            return
        if reset:
            _Reset(self, link)
        else:
            self.pool.checkin(link, reusable=True)

    def shutdown(self) -> None:
        self.pool.close_idle()


def _mark_unpooled(link):
    link.unpooled = True
    return link


@implementer(ILinkOwner)
class _Parked:
    """Owner of a released link while a cancel request for it is still being delivered:
    whatever the server answers meanwhile (the cancelled query's error) is dropped."""

    def __init__(self, pool: Pool):
        self.pool = pool

    def backend_items(self, link, items) -> None:
        for item in items:
            if type(item) is not bytes and item[0] == codes.READY_FOR_QUERY:
                link.server.txn_status = item[1][0]

    def link_lost(self, link, reason=None) -> None:
        link.after_cancel = None
        self.pool.discard(link)


@implementer(ILinkOwner)
class _Reset:
    """Owner of a link while reset_query_list runs on it; then back to the pool."""

    def __init__(self, pooling: Pooling, link):
        self.pool = pooling.pool
        self.link = link
        self.failed = False
        self.waiting = len(self.pool.reset_statements(link.server.txn_status))
        link.owner = self
        link.server.reset()           # DISCARD ALL: nothing of any session is left
        self.timer = pooling.proxy.reactor.callLater(pooling.reset_timeout, self._timeout)
        if self.waiting:
            link.write(self.pool.reset_sql(link.server.txn_status))
        else:
            self._done()

    def backend_items(self, link, items) -> None:
        for item in items:
            if type(item) is bytes:
                continue
            code, body = item
            if code == codes.ERROR_RESPONSE:
                self.failed = True
            elif code == codes.READY_FOR_QUERY:
                link.server.txn_status = body[0]
                self.waiting -= 1
                if self.waiting <= 0:
                    self._done()
                    return

    def _done(self) -> None:
        if self.timer.active():
            self.timer.cancel()
        self.link.owner = None
        ok = not self.failed and self.link.server.txn_status == codes.TXN_IDLE and not self.link.closed
        if not ok:
            log.info("link to node {node} not reused: its reset failed", node=self.link.node_id)
        self.pool.checkin(self.link, reusable=ok)

    def _timeout(self) -> None:
        log.warn("reset of a link to node {node} timed out; closing it", node=self.link.node_id)
        self.link.owner = None
        self.pool.discard(self.link)

    def link_lost(self, link, reason=None) -> None:
        if self.timer.active():
            self.timer.cancel()
        self.pool.discard(link)
