"""The pool's records and its waiting room: which client gets the next link of a node.

A key (user, database, node, startup settings) has idle links, busy and connecting counts and
its waiters, oldest first. A node sums its keys (by user too, for fair shares), holds its idle
links least recently used first, and serves its users round-robin: each user's oldest waiter
that an idle link or a free slot can serve (FIFO within a user). New connections to a node are
paced by a token bucket kept on the node.

Nothing here does I/O; the Pool (pool.py) owns these records and passes its limits and its
clock in.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from twisted.internet import defer

# Keys are pool.PoolKey tuples (user, database, node_id, params); this module does not
# import pool.py, which builds on it.

EPSILON = 1e-9  # clock arithmetic: 0.1 s of tokens at 10/s must count as one whole token


class KeyPool:
    __slots__ = ("key", "node", "idle", "busy", "connecting", "waiters")

    def __init__(self, key: tuple, node: NodePool):
        self.key = key
        self.node = node
        self.idle: OrderedDict = OrderedDict()     # link -> None; most recently used last (LIFO)
        self.busy = 0
        self.connecting = 0
        self.waiters: OrderedDict = OrderedDict()  # Waiter -> None; oldest first

    @property
    def size(self) -> int:
        return len(self.idle) + self.busy + self.connecting

    def grow(self) -> None:
        """One more link of this key counts against its node, and its user's share."""
        node, user = self.node, self.key.user
        node.size += 1
        node.per_user[user] = node.per_user.get(user, 0) + 1

    def shrink(self) -> None:
        node, user = self.node, self.key.user
        node.size -= 1
        left = node.per_user[user] - 1
        if left:
            node.per_user[user] = left
        else:
            del node.per_user[user]


class NodePool:
    __slots__ = ("node_id", "size", "per_user", "idle", "users", "waiting", "tokens",
                 "refilled", "wake", "pumping")

    def __init__(self, node_id: int, tokens: float, now: float):
        self.node_id = node_id
        self.size = 0                              # idle + busy + connecting, all keys
        self.per_user: dict[str, int] = {}         # the same, by user (fair shares)
        self.idle: OrderedDict = OrderedDict()     # link -> Tracked; least recently used first
        # user -> {KeyPool: None} of that user's keys with waiters; round-robin order.
        self.users: OrderedDict = OrderedDict()
        self.waiting = 0
        self.tokens = tokens
        self.refilled = now
        self.wake = None
        self.pumping = False


class Tracked:
    __slots__ = ("kp", "busy", "created", "idle_since", "client", "uses")

    def __init__(self, kp: KeyPool, created: float, client: Any):
        self.kp = kp
        self.busy = True
        self.created = created
        self.idle_since = created
        self.client = client
        self.uses = 1   # checkouts served (SHOW pool_pools' pool_counter)


class Waiter:
    __slots__ = ("kp", "params", "client", "seq", "d", "timer", "queued", "fresh")

    def __init__(self, kp: KeyPool, params: dict, client: Any, seq: int, fresh: bool = False):
        self.fresh = fresh  # needs a new login: an idle link must not stand in for it
        self.kp = kp
        self.params = params
        self.client = client
        self.seq = seq
        self.d: defer.Deferred | None = None
        self.timer = None
        self.queued = False


# -- the queue -------------------------------------------------------------------------------
def enqueue(w: Waiter) -> None:
    kp = w.kp
    node = kp.node
    kp.waiters[w] = None
    node.waiting += 1
    keys = node.users.get(kp.key.user)
    if keys is None:
        keys = node.users[kp.key.user] = {}
    keys[kp] = None
    w.queued = True


def dequeue(w: Waiter) -> None:
    kp = w.kp
    node = kp.node
    del kp.waiters[w]
    node.waiting -= 1
    if not kp.waiters:
        keys = node.users[kp.key.user]
        del keys[kp]
        if not keys:
            del node.users[kp.key.user]
    w.queued = False
    if w.timer is not None:
        if w.timer.active():
            w.timer.cancel()
        w.timer = None
    if not node.waiting and node.wake is not None:
        if node.wake.active():
            node.wake.cancel()
        node.wake = None


def next_waiter(node: NodePool, max_pool: int, slot: bool, skip: str | None = None,
                reuse: bool = True) -> Waiter | None:
    """Round-robin over users; a user's oldest waiter that an idle link or a slot serves."""
    for user, keys in node.users.items():
        if user == skip:
            continue
        best = None
        for kp in keys:
            room = not max_pool or kp.size < max_pool
            if (reuse and kp.idle) or (slot and room):
                head = next(iter(kp.waiters))
                if head.fresh and not (slot and (room or kp.idle)):
                    # An idle link may not stand in for a new login; at max_pool one is
                    # closed to make room for it (Pool._serve), which needs a slot.
                    continue
                if best is None or head.seq < best.seq:
                    best = head
        if best is not None:
            node.users.move_to_end(user)
            return best
    return None


# -- connect pacing --------------------------------------------------------------------------
def has_token(node: NodePool, rate: float, burst: int, clock) -> bool:
    """Refill ``node``'s token bucket up to now; whether a new connection may start."""
    if rate <= 0:
        return True
    now = clock.seconds()
    node.tokens = min(float(burst), node.tokens + (now - node.refilled) * rate)
    node.refilled = now
    return node.tokens >= 1 - EPSILON


def exhausted_message(w: Waiter, *, max_pool: int, backend_max_connections: int,
                      connect_rate: float, checkout_timeout: float,
                      max_pool_key: str = "max_pool") -> str:
    """Why ``w`` timed out: the limit it waited on, with the counts behind it."""
    kp = w.kp
    node, key = kp.node, kp.key
    cap = backend_max_connections
    if max_pool and kp.size >= max_pool:
        tail = (f"{kp.size} of {max_pool_key}={max_pool} in use, {len(kp.waiters)} clients "
                "waiting")
    elif cap and node.size >= cap:
        tail = (f"{node.size} of backend_max_connections={cap} in use, "
                f"{node.waiting} clients waiting")
    else:
        tail = (f"{node.size} in use, new connections paced at connect_rate="
                f"{connect_rate:g}/s, {node.waiting} clients waiting")
    return (f"timeout after {checkout_timeout:g} s waiting for a connection to node "
            f'{key.node_id} (user "{key.user}", database "{key.database}"): {tail}')


def link_counts(key_pools: dict[tuple, KeyPool], node_pools: dict[int, NodePool],
                counters: dict[str, int]) -> dict:
    """Counts per key, per node and in total, plus the event counters (Pool.stats)."""
    fields = ("idle", "busy", "connecting", "waiting")
    keys: dict[tuple, dict[str, int]] = {}
    nodes = {node_id: dict.fromkeys(fields, 0) for node_id in node_pools}
    totals = dict.fromkeys(fields, 0)
    for key, kp in key_pools.items():
        row = {"idle": len(kp.idle), "busy": kp.busy, "connecting": kp.connecting,
               "waiting": len(kp.waiters)}
        keys[key] = row
        for name in fields:
            nodes[key.node_id][name] += row[name]
            totals[name] += row[name]
    return {"keys": keys, "nodes": nodes, "totals": totals, "counters": dict(counters)}
