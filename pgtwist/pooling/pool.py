"""One pool of logged-in backend links shared by every client, keyed by (user, database, node).

Session pooling as in Pgpool-II, but one pool for the whole process instead of one per child:
a client checks a link out after login and back in when it leaves, once the relay has run
``reset_query_list`` on it.  ``max_pool`` caps the links of one key and
``backend_max_connections`` those of one node; a client over a limit waits in its node's
queue (FIFO within a user, round-robin across users) for at most ``checkout_timeout``.
New connections to a node are paced by a token bucket, so the reconnect storm after a
failover cannot open hundreds of server connections in the same instant.

Idle links are owned by the pool (``link.owner is pool``) so one the server drops while
idle is forgotten at once; a link handed out has ``owner = None`` until the relay attaches,
and BackendLink buffers what arrives meanwhile.

The per-key and per-node records, the queue and the pacing are waiting.py's; the reset
statements reset.py's.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

from twisted.internet import defer

from ..wire.errors import TOO_MANY_CONNECTIONS
from .reset import IDLE_STATUS, ResetQueries
from .waiting import (
    EPSILON,
    KeyPool,
    NodePool,
    Tracked,
    Waiter,
    dequeue,
    enqueue,
    exhausted_message,
    has_token,
    link_counts,
    next_waiter,
)

NEVER_CACHED = frozenset({"template0", "template1", "postgres", "regression"})
COUNTERS = ("created", "reused", "closed_reset_failed", "closed_uncached", "closed_idle",
            "expired", "evicted", "rebalanced", "discarded", "connect_failed", "timeouts",
            "cancelled")


class PoolKey(NamedTuple):
    user: str
    database: str
    node_id: int
    # The rest of the startup packet: a link is only reused by a client that asked for
    # the same settings, so values set at startup never leak to another client.
    params: tuple = ()


class PoolExhausted(Exception):
    """No link became available within ``checkout_timeout``; the message names the limit."""

    sqlstate = TOO_MANY_CONNECTIONS

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class Pool:
    """Backend links for all clients; see the module docstring for the rules."""

    def __init__(
        self,
        clock,
        connect: Callable[[PoolKey, dict], defer.Deferred],
        *,
        max_pool: int,
        backend_max_connections: int,
        checkout_timeout: float,
        connection_life_time: float,
        connection_cache: bool,
        reset_query_list: tuple[str, ...],
        connect_rate: float = 0,
        connect_burst: int = 10,
        never_cache_databases: frozenset[str] = NEVER_CACHED,
        max_idle: int = 0,
        max_pool_key: str = "max_pool",
    ):
        self.clock = clock
        self.max_pool_key = max_pool_key           # the setting max_pool comes from
        self.max_idle = max_idle                   # idle links kept per key; 0: no limit
        self._connect = connect
        self.max_pool = max_pool                   # 0: no per-key cap
        self.backend_max_connections = backend_max_connections  # 0: no per-node cap
        self.checkout_timeout = checkout_timeout   # 0: wait forever
        self.connection_life_time = connection_life_time
        self.connection_cache = connection_cache
        self.never_cache_databases = frozenset(never_cache_databases)
        self.connect_rate = connect_rate
        self.connect_burst = max(1, connect_burst)
        self.counters = dict.fromkeys(COUNTERS, 0)
        self._keys: dict[PoolKey, KeyPool] = {}
        self._nodes: dict[int, NodePool] = {}
        self._links: dict[Any, Tracked] = {}
        self._seq = itertools.count()
        self._expiry = None
        self._reset = ResetQueries(reset_query_list)
        self.reset_query_list = self._reset.statements

    # -- reset (reset.py) -------------------------------------------------------------------
    def reset_statements(self, txn_status) -> tuple[str, ...]:
        """``reset_query_list`` for a link in ``txn_status``: ABORT only inside a transaction."""
        return self._reset.statements_for(txn_status)

    def reset_sql(self, txn_status) -> bytes:
        """The reset as framed Query messages, one per statement (see ResetQueries)."""
        return self._reset.frames_for(txn_status)

    # -- public API ------------------------------------------------------------------------
    def checkout(self, key: PoolKey, startup_params: dict, *, client=None,
                 fresh: bool = False) -> defer.Deferred:
        """Deferred firing with a logged-in link for ``key``, or PoolExhausted / login error.

        ``fresh``: the link must come from a new login (the server judging the client's
        credentials), never from the idle links; it still counts against
        ``backend_max_connections`` and the connect pacing, and is checked in as usual.
"""
        kp = self._keys.get(key) or self._new_key(key)
        if kp.idle and not fresh:
            link = self._take_idle(kp, client)
            if link is not None:
                return defer.succeed(link)
            kp = self._keys.get(key) or self._new_key(key)  # all were dead: kp may be gone
        w = Waiter(kp, startup_params, client, next(self._seq), fresh)
        w.d = defer.Deferred(lambda _d: self._cancelled(w))
        enqueue(w)
        self._pump(kp.node)
        if w.queued and self.checkout_timeout > 0:
            w.timer = self.clock.callLater(self.checkout_timeout, self._timed_out, w)
        return w.d

    def take_idle(self, key: PoolKey, client=None):
        """An idle link for ``key`` now (as :meth:`checkout` would hand over), or None."""
        kp = self._keys.get(key)
        if kp is None or not kp.idle:
            return None
        link = self._take_idle(kp, client)
        if link is None:
            self._gc(kp)
        return link

    def park(self, link, on_taken) -> bool:
        """Check ``link`` in as idle while its session keeps a claim to take it back with
        :meth:`unpark` (transaction pooling between one session's transactions).
        ``on_taken(link)`` is called when anything else removes it from the idle links
        (another checkout, eviction, expiry, loss).  False when it must be checked in the
        usual way instead: someone waits for a link, or it would not be kept idle."""
        rec = self._links.get(link)
        if rec is None or not rec.busy or link.closed:
            return False
        kp = rec.kp
        if (kp.waiters or kp.node.waiting or link.txn_status not in IDLE_STATUS
                or (self.max_idle and len(kp.idle) >= self.max_idle)
                or not self.connection_cache or kp.key.database in self.never_cache_databases):
            return False
        rec.parked = on_taken
        self._make_idle(link, rec)
        return True

    def unpark(self, link, on_taken) -> bool:
        """Take a parked ``link`` back for the session that parked it with ``on_taken``;
        False if it is parked no more, or parked by someone else."""
        rec = self._links.get(link)
        if rec is None or rec.parked is None or rec.busy or link.closed \
                or rec.parked != on_taken:
            return False
        kp = rec.kp
        del kp.idle[link]
        del kp.node.idle[link]
        rec.parked = None
        self._make_busy(link, rec)
        return True

    @staticmethod
    def _taken(link, rec: Tracked) -> None:
        """A parked link leaves the idle links: its last session lets go of it."""
        on_taken = rec.parked
        if on_taken is not None:
            rec.parked = None
            on_taken(link)

    def would_wait(self, key: PoolKey) -> bool:
        """Whether a checkout for ``key`` now would queue: no idle link to take or to
        close for room, and the node at ``backend_max_connections``."""
        kp = self._keys.get(key)
        if kp is not None and kp.idle:
            return False
        if self.max_pool and kp is not None and kp.size >= self.max_pool:
            return True
        node = self._nodes.get(key.node_id)
        if node is None or node.idle or not self.backend_max_connections:
            return False
        return node.size >= self.backend_max_connections

    def checkin(self, link, *, reusable: bool) -> None:
        """Take back a link the relay has reset (or could not reset: ``reusable=False``)."""
        rec = self._links.get(link)
        if rec is None or not rec.busy:
            return  # already discarded, evicted or checked in: nothing of ours to do
        kp = rec.kp
        if not reusable or link.txn_status not in IDLE_STATUS:
            reason = "closed_reset_failed"
        elif link.closed:
            reason = "discarded"
        elif not self.connection_cache or kp.key.database in self.never_cache_databases:
            reason = "closed_uncached"
        else:
            self._return_link(link, rec)
            return
        kp.busy -= 1
        self._forget(link, rec, reason)
        self._pump(kp.node)

    def discard(self, link) -> None:
        """Forget a link that died or is unsafe, close it, and give its slot to a waiter."""
        rec = self._links.get(link)
        if rec is None:
            return
        node = rec.kp.node
        if rec.busy:
            rec.kp.busy -= 1
            self._forget(link, rec, "discarded")
        else:
            self._drop_idle(link, rec, "discarded")
        self._pump(node)

    def close_idle(self) -> None:
        """Close every idle link (shutdown, SIGHUP)."""
        for node in list(self._nodes.values()):
            while node.idle:
                link, rec = next(iter(node.idle.items()))
                self._drop_idle(link, rec, "closed_idle")
            self._pump(node)
        if self._expiry is not None and self._expiry.active():
            self._expiry.cancel()
        self._expiry = None

    def close_idle_database(self, database: str) -> int:
        """Close the idle links to ``database`` on every node (DROP DATABASE and the like
        refuse a database other sessions use); returns how many were closed."""
        closed = 0
        for kp in [kp for kp in self._keys.values() if kp.key.database == database]:
            while kp.idle:
                link = next(iter(kp.idle))
                self._drop_idle(link, kp.node.idle[link], "closed_idle")
                closed += 1
            self._pump(kp.node)
        return closed

    def stats(self) -> dict:
        """Counts per key, per node and in total, plus the event counters."""
        return link_counts(self._keys, self._nodes, self.counters)

    def iter_links(self) -> Iterator[tuple[PoolKey, Any, str, float, Any]]:
        """(key, link, 'busy' | 'idle', created, client) for every logged-in link (admin)."""
        for link, rec in self._links.items():
            yield rec.kp.key, link, "busy" if rec.busy else "idle", rec.created, rec.client

    def link_record(self, link) -> Tracked | None:
        """The pool's record of ``link`` (created, idle_since, uses...), None if untracked."""
        return self._links.get(link)

    # -- BackendLink owner protocol, while a link is idle ----------------------------------
    def backend_items(self, link, items) -> None:
        """Notices or ParameterStatus arriving on an idle link have no one to go to."""

    def link_lost(self, link, reason=None) -> None:
        rec = self._links.get(link)
        if rec is not None and not rec.busy:
            node = rec.kp.node
            self._drop_idle(link, rec, "discarded")
            self._pump(node)

    # -- bookkeeping -----------------------------------------------------------------------
    def _new_key(self, key: PoolKey) -> KeyPool:
        node = self._nodes.get(key.node_id)
        if node is None:
            node = self._nodes[key.node_id] = NodePool(
                key.node_id, float(self.connect_burst), self.clock.seconds())
        kp = self._keys[key] = KeyPool(key, node)
        return kp

    def _gc(self, kp: KeyPool) -> None:
        if not (kp.idle or kp.busy or kp.connecting or kp.waiters):
            if self._keys.get(kp.key) is kp:
                del self._keys[kp.key]

    def _forget(self, link, rec: Tracked, counter: str) -> None:
        """Close a link that is neither idle nor busy any more and free its slot."""
        del self._links[link]
        if not link.closed:
            link.terminate()
        rec.kp.shrink()
        self.counters[counter] += 1
        self._gc(rec.kp)

    def _drop_idle(self, link, rec: Tracked, counter: str) -> None:
        del rec.kp.idle[link]
        del rec.kp.node.idle[link]
        self._taken(link, rec)
        self._forget(link, rec, counter)

    def _take_idle(self, kp: KeyPool, client) -> Any:
        """The key's most recently used live idle link, now busy; None if all were dead."""
        node = kp.node
        while kp.idle:
            link, _ = kp.idle.popitem()
            rec = node.idle.pop(link)
            if rec.parked is not None:
                self._taken(link, rec)
            if link.closed:  # lost without telling us (link_lost normally does)
                self._forget(link, rec, "discarded")
                self._pump(node)
                continue
            rec.client = client
            self._make_busy(link, rec)
            return link
        return None

    def _make_busy(self, link, rec: Tracked) -> None:
        """An idle link, out of the idle lists, is handed out again."""
        rec.busy = True
        rec.uses += 1
        rec.kp.busy += 1
        link.owner = None
        self.counters["reused"] += 1

    def _return_link(self, link, rec: Tracked) -> None:
        """A reusable link: to the oldest waiter of its key, else idle."""
        kp = rec.kp
        node = kp.node
        w = next((w for w in kp.waiters if not w.fresh), None) if kp.waiters else None
        if w is not None:
            if self._rebalance(link, rec):
                return
            dequeue(w)
            rec.client = w.client
            rec.uses += 1
            link.owner = None
            self.counters["reused"] += 1
            w.d.callback(link)
            return
        if self.max_idle and len(kp.idle) >= self.max_idle:
            kp.busy -= 1
            self._forget(link, rec, "closed_idle")
            self._pump(node)
            return
        self._make_idle(link, rec)
        if node.waiting:
            self._pump(node)

    def _make_idle(self, link, rec: Tracked) -> None:
        kp = rec.kp
        kp.busy -= 1
        rec.busy = False
        rec.idle_since = self.clock.seconds()
        kp.idle[link] = None
        kp.node.idle[link] = rec
        link.owner = self
        if self.connection_life_time > 0 and self._expiry is None:
            self._expiry = self.clock.callLater(self.connection_life_time, self._expire)

    def _rebalance(self, link, rec: Tracked) -> bool:
        """At the node cap, a user holding more than its share gives the slot to another user.

        Without this, a user whose own waiters keep reusing its links would hold a full node
        forever and another user's client would wait until checkout_timeout.
        """
        node, user = rec.kp.node, rec.kp.key.user
        cap = self.backend_max_connections
        if not cap or node.size < cap or len(node.users) < 2:
            return False
        if node.per_user.get(user, 0) * len(node.users) <= cap:
            return False
        w = self._next_waiter(node, skip=user, reuse=False, slot=self._has_token(node))
        if w is None:
            return False
        rec.kp.busy -= 1
        self._forget(link, rec, "rebalanced")
        self._serve(w)
        self._pump(node)
        return True

    # -- waiting (the queue itself is waiting.py) -------------------------------------------
    def _timed_out(self, w: Waiter) -> None:
        w.timer = None
        if not w.queued:
            return
        message = exhausted_message(
            w, max_pool=self.max_pool, max_pool_key=self.max_pool_key,
            backend_max_connections=self.backend_max_connections,
            connect_rate=self.connect_rate, checkout_timeout=self.checkout_timeout)
        dequeue(w)
        self.counters["timeouts"] += 1
        self._gc(w.kp)
        w.d.errback(PoolExhausted(message))

    def _cancelled(self, w: Waiter) -> None:
        # A waiter whose connect is under way is left alone: _connected sees d.called.
        if w.queued:
            dequeue(w)
            self.counters["cancelled"] += 1
            self._gc(w.kp)

    def _pump(self, node: NodePool) -> None:
        """Serve every waiter of ``node`` that can be served now.

        Re-entrant calls (a Deferred fired here checks a link in) return at once: the running
        loop looks at the state afresh after each waiter it serves.
        """
        if node.pumping:
            return
        node.pumping = True
        try:
            while node.waiting:
                w = self._next_waiter(node)
                if w is None or not self._serve(w):
                    break
        finally:
            node.pumping = False
        if node.waiting and self.connect_rate > 0:
            self._schedule_wake(node)

    def _next_waiter(self, node: NodePool, skip: str | None = None, reuse: bool = True,
                     slot: bool | None = None) -> Waiter | None:
        if slot is None:
            cap = self.backend_max_connections
            slot = (not cap or node.size < cap or bool(node.idle)) and self._has_token(node)
        return next_waiter(node, self.max_pool, slot, skip, reuse)

    def _serve(self, w: Waiter) -> bool:
        kp = w.kp
        link = self._take_idle(kp, w.client) if kp.idle and not w.fresh else None
        if link is not None:
            dequeue(w)
            w.d.callback(link)
            return True
        node = kp.node
        cap = self.backend_max_connections
        full = self.max_pool and kp.size >= self.max_pool
        if full and not (w.fresh and kp.idle):
            return False
        if cap and node.size >= cap and not node.idle:
            return False
        if not self._has_token(node):
            return False
        if full:  # a new login at max_pool: the key's least recently used idle link goes
            evict = next(iter(kp.idle))
            self._drop_idle(evict, node.idle[evict], "evicted")
        if cap and node.size >= cap:  # make room: another key's least recently used idle link
            evict, rec = next(iter(node.idle.items()))
            self._drop_idle(evict, rec, "evicted")
        if self.connect_rate > 0:
            node.tokens -= 1
        dequeue(w)
        kp.connecting += 1
        kp.grow()
        d = defer.maybeDeferred(self._connect, kp.key, w.params)
        d.addCallbacks(self._connected, self._connect_failed, callbackArgs=(w,), errbackArgs=(w,))
        return True

    def _connected(self, link, w: Waiter) -> None:
        kp = w.kp
        kp.connecting -= 1
        kp.busy += 1
        self._links[link] = Tracked(kp, self.clock.seconds(), w.client)
        self.counters["created"] += 1
        if w.d.called:  # the client gave up while we were connecting: keep the link
            self.checkin(link, reusable=True)
            return
        w.d.callback(link)

    def _connect_failed(self, failure, w: Waiter) -> None:
        kp = w.kp
        node = kp.node
        kp.connecting -= 1
        kp.shrink()
        self.counters["connect_failed"] += 1
        self._gc(kp)
        if not w.d.called:
            w.d.errback(failure)
        self._pump(node)

    # -- timers ----------------------------------------------------------------------------
    def _has_token(self, node: NodePool) -> bool:
        return has_token(node, self.connect_rate, self.connect_burst, self.clock)

    def _schedule_wake(self, node: NodePool) -> None:
        if node.wake is not None or self._has_token(node):
            return  # already set, or the waiters wait for something other than pacing
        node.wake = self.clock.callLater((1 - node.tokens) / self.connect_rate, self._wake, node)

    def _wake(self, node: NodePool) -> None:
        node.wake = None
        self._pump(node)

    def _expire(self) -> None:
        """Close idle links older than connection_life_time; re-arm for the next oldest."""
        self._expiry = None
        life = self.connection_life_time
        now = self.clock.seconds()
        freed = []
        for node in self._nodes.values():
            while node.idle:
                link, rec = next(iter(node.idle.items()))
                if rec.idle_since + life > now + EPSILON:
                    break
                self._drop_idle(link, rec, "expired")
                freed.append(node)
        for node in set(freed):
            self._pump(node)
        if self._expiry is None:
            due = [next(iter(n.idle.values())).idle_since + life
                   for n in self._nodes.values() if n.idle]
            if due:
                self._expiry = self.clock.callLater(max(0.0, min(due) - now), self._expire)
