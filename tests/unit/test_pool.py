"""The shared backend pool: reuse, limits, fair queueing, timeouts, pacing, expiry (no sockets)."""

from __future__ import annotations

import pytest
from twisted.internet import defer
from twisted.internet.testing import MemoryReactorClock

from pgtwist.pooling.pool import Pool, PoolExhausted, PoolKey
from pgtwist.wire import codes
from pgtwist.wire import messages as m

APP = PoolKey("app", "shop", 1)


class FakeLink:
    def __init__(self, key: PoolKey, serial: int):
        self.key = key
        self.serial = serial
        self.node_id = key.node_id
        self.txn_status = codes.TXN_IDLE
        self.closed = False
        self.owner = None
        self.terminated = False

    def terminate(self) -> None:
        self.terminated = True
        self.closed = True

    def __repr__(self) -> str:
        return f"<FakeLink {self.key.user}/{self.key.database}#{self.serial}>"


class Connector:
    """connect(key, params): Deferreds the test fires by hand (or at once with ``auto``)."""

    def __init__(self, auto: bool = False):
        self.auto = auto
        self.calls: list[tuple[PoolKey, dict, defer.Deferred]] = []
        self.made: list[FakeLink] = []

    def __call__(self, key: PoolKey, params: dict) -> defer.Deferred:
        d: defer.Deferred = defer.Deferred()
        self.calls.append((key, params, d))
        if self.auto:
            self.succeed(len(self.calls) - 1)
        return d

    def succeed(self, index: int) -> FakeLink:
        key, _, d = self.calls[index]
        link = FakeLink(key, index)
        self.made.append(link)
        d.callback(link)
        return link

    def keys(self) -> list[PoolKey]:
        return [key for key, _, _ in self.calls]


def make_pool(connector=None, **kw):
    clock = MemoryReactorClock()
    options = dict(max_pool=4, backend_max_connections=0, checkout_timeout=30,
                   connection_life_time=0, connection_cache=True,
                   reset_query_list=("ABORT", "DISCARD ALL"))
    options.update(kw)
    connector = connector if connector is not None else Connector(auto=True)
    return Pool(clock, connector, **options), clock, connector


def take(d: defer.Deferred) -> list:
    """The result box of ``d``: [] while pending, [link] or [Failure] once fired."""
    box: list = []
    d.addBoth(box.append)
    return box


def link_of(box: list) -> FakeLink:
    assert len(box) == 1 and isinstance(box[0], FakeLink), box
    return box[0]


# -- reuse --------------------------------------------------------------------------------------
def test_checkin_then_checkout_reuses_the_same_link():
    pool, _, conn = make_pool()
    first = link_of(take(pool.checkout(APP, {"user": "app"})))
    pool.checkin(first, reusable=True)
    assert first.owner is pool  # idle links are owned by the pool
    again = link_of(take(pool.checkout(APP, {"user": "app"})))
    assert again is first and len(conn.calls) == 1
    assert again.owner is None  # the relay attaches itself
    assert pool.stats()["counters"]["reused"] == 1


def test_reuse_is_lifo():
    pool, _, _ = make_pool()
    a = link_of(take(pool.checkout(APP, {})))
    b = link_of(take(pool.checkout(APP, {})))
    pool.checkin(a, reusable=True)
    pool.checkin(b, reusable=True)
    assert link_of(take(pool.checkout(APP, {}))) is b
    assert link_of(take(pool.checkout(APP, {}))) is a


def test_new_connection_gets_the_checkout_startup_params():
    pool, _, conn = make_pool()
    take(pool.checkout(APP, {"user": "app", "application_name": "x"}))
    assert conn.calls[0][:2] == (APP, {"user": "app", "application_name": "x"})


# -- limits -------------------------------------------------------------------------------------
def test_max_pool_caps_a_key_and_the_next_client_waits_for_a_checkin():
    pool, _, conn = make_pool(max_pool=2)
    a = link_of(take(pool.checkout(APP, {})))
    link_of(take(pool.checkout(APP, {})))
    third = take(pool.checkout(APP, {}))
    assert third == [] and len(conn.calls) == 2
    assert pool.stats()["keys"][APP] == {"idle": 0, "busy": 2, "connecting": 0, "waiting": 1}
    pool.checkin(a, reusable=True)
    assert link_of(third) is a and len(conn.calls) == 2


def test_max_pool_is_per_key():
    pool, _, conn = make_pool(max_pool=1)
    take(pool.checkout(APP, {}))
    other = take(pool.checkout(PoolKey("app", "shop", 2), {}))  # same user and db, other node
    link_of(other)
    assert len(conn.calls) == 2


def test_node_cap_evicts_the_least_recently_used_idle_link_of_another_key():
    pool, _, conn = make_pool(backend_max_connections=2)
    a1 = link_of(take(pool.checkout(APP, {})))
    a2 = link_of(take(pool.checkout(APP, {})))
    pool.checkin(a1, reusable=True)
    pool.checkin(a2, reusable=True)
    b = PoolKey("bob", "shop", 1)
    got = link_of(take(pool.checkout(b, {})))
    assert got.key == b
    assert a1.terminated and not a2.terminated  # a1 was idle longest
    stats = pool.stats()
    assert stats["nodes"][1] == {"idle": 1, "busy": 1, "connecting": 0, "waiting": 0}
    assert stats["counters"]["evicted"] == 1


def test_node_cap_without_idle_links_makes_clients_wait():
    pool, _, conn = make_pool(backend_max_connections=2)
    a1 = link_of(take(pool.checkout(APP, {})))
    take(pool.checkout(APP, {}))
    b = PoolKey("bob", "shop", 1)
    box = take(pool.checkout(b, {}))
    assert box == [] and len(conn.calls) == 2
    pool.checkin(a1, reusable=True)  # idle now, and bob waits for a slot: evicted for him
    assert a1.terminated and link_of(box).key == b


def test_other_nodes_are_not_limited_by_a_full_node():
    pool, _, conn = make_pool(backend_max_connections=1)
    take(pool.checkout(APP, {}))
    link_of(take(pool.checkout(PoolKey("app", "shop", 0), {})))


# -- queueing -----------------------------------------------------------------------------------
def test_waiters_of_one_user_are_served_in_fifo_order():
    pool, _, _ = make_pool(max_pool=1)
    held = link_of(take(pool.checkout(APP, {})))
    boxes = [take(pool.checkout(APP, {}, client=n)) for n in range(3)]
    for n in range(3):
        pool.checkin(held, reusable=True)
        assert link_of(boxes[n]) is held
        assert all(box == [] for box in boxes[n + 1:])


def test_freed_slots_go_round_robin_across_users():
    conn = Connector()
    pool, _, _ = make_pool(conn, max_pool=0, backend_max_connections=2)
    holder = PoolKey("carol", "shop", 1)
    boxes = [take(pool.checkout(holder, {})) for _ in range(2)]
    conn.succeed(0)
    conn.succeed(1)
    held = [link_of(box) for box in boxes]
    a, b = PoolKey("alice", "shop", 1), PoolKey("bob", "shop", 1)
    alice = [take(pool.checkout(a, {})) for _ in range(5)]
    bob = take(pool.checkout(b, {}))
    assert len(conn.calls) == 2
    pool.discard(held[0])
    assert conn.keys()[2] == a  # the oldest user first
    pool.discard(held[1])
    assert conn.keys()[3] == b  # then bob: the 2nd freed slot, not the 6th
    conn.succeed(2)
    conn.succeed(3)
    assert link_of(alice[0]).key == a and link_of(bob).key == b
    assert all(box == [] for box in alice[1:])


def test_a_user_over_its_share_of_a_full_node_gives_a_checked_in_link_to_another_user():
    pool, _, conn = make_pool(max_pool=0, backend_max_connections=2)
    a, b = PoolKey("alice", "shop", 1), PoolKey("bob", "shop", 1)
    a1 = link_of(take(pool.checkout(a, {})))
    a2 = link_of(take(pool.checkout(a, {})))
    alice = [take(pool.checkout(a, {})) for _ in range(3)]
    bob = take(pool.checkout(b, {}))
    pool.checkin(a1, reusable=True)  # alice holds 2 of 2 with bob waiting: bob's turn
    assert a1.terminated and link_of(bob).key == b
    assert pool.stats()["counters"]["rebalanced"] == 1
    pool.checkin(a2, reusable=True)  # alice is at her share (1 of 2): reuse for her waiter
    assert link_of(alice[0]) is a2 and not a2.terminated
    assert len(conn.calls) == 3


# -- timeouts and cancellation ------------------------------------------------------------------
def test_checkout_timeout_fails_with_pool_exhausted_naming_the_full_pool():
    pool, clock, _ = make_pool(max_pool=0, backend_max_connections=2, checkout_timeout=30)
    take(pool.checkout(APP, {}))
    take(pool.checkout(APP, {}))
    boxes = [take(pool.checkout(APP, {})) for _ in range(3)]
    clock.advance(29.9)
    assert all(box == [] for box in boxes)
    clock.advance(0.1)
    failure = boxes[0][0]
    assert failure.check(PoolExhausted)
    assert failure.value.sqlstate == "53300"
    assert str(failure.value) == (
        'timeout after 30 s waiting for a connection to node 1 (user "app", database "shop"): '
        "2 of backend_max_connections=2 in use, 3 clients waiting"
    )
    assert all(box[0].check(PoolExhausted) for box in boxes)
    assert pool.stats()["nodes"][1]["waiting"] == 0
    assert pool.stats()["counters"]["timeouts"] == 3
    assert clock.getDelayedCalls() == []


def test_timeout_message_names_max_pool_when_the_key_is_full():
    pool, clock, _ = make_pool(max_pool=1, checkout_timeout=5)
    take(pool.checkout(APP, {}))
    box = take(pool.checkout(APP, {}))
    clock.advance(5)
    assert box[0].value.message.endswith(": 1 of max_pool=1 in use, 1 clients waiting")


def test_checkout_timeout_zero_waits_forever():
    pool, clock, _ = make_pool(max_pool=1, checkout_timeout=0)
    held = link_of(take(pool.checkout(APP, {})))
    box = take(pool.checkout(APP, {}))
    assert clock.getDelayedCalls() == []
    clock.advance(86400)
    assert box == []
    pool.checkin(held, reusable=True)
    assert link_of(box) is held


def test_a_cancelled_waiter_leaves_the_queue():
    pool, clock, _ = make_pool(max_pool=1)
    held = link_of(take(pool.checkout(APP, {})))
    d = pool.checkout(APP, {})
    box = take(d)
    later = take(pool.checkout(APP, {}))
    d.cancel()
    assert box[0].check(defer.CancelledError)
    assert pool.stats()["keys"][APP]["waiting"] == 1
    pool.checkin(held, reusable=True)
    assert link_of(later) is held
    assert clock.getDelayedCalls() == []  # both timers gone


def test_cancel_while_connecting_keeps_the_new_link_idle():
    conn = Connector()
    pool, _, _ = make_pool(conn)
    d = pool.checkout(APP, {})
    box = take(d)
    d.cancel()
    assert box[0].check(defer.CancelledError)
    link = conn.succeed(0)
    assert pool.stats()["keys"][APP] == {"idle": 1, "busy": 0, "connecting": 0, "waiting": 0}
    assert link_of(take(pool.checkout(APP, {}))) is link


# -- check-in rules -----------------------------------------------------------------------------
def test_connection_cache_off_closes_on_checkin():
    pool, _, conn = make_pool(connection_cache=False)
    link = link_of(take(pool.checkout(APP, {})))
    pool.checkin(link, reusable=True)
    assert link.terminated
    assert link_of(take(pool.checkout(APP, {}))) is not link
    assert pool.stats()["counters"]["closed_uncached"] == 1


@pytest.mark.parametrize("database", ["template0", "template1", "postgres", "regression"])
def test_some_databases_are_never_cached(database):
    pool, _, _ = make_pool()
    link = link_of(take(pool.checkout(PoolKey("app", database, 0), {})))
    pool.checkin(link, reusable=True)
    assert link.terminated and pool.stats()["totals"]["idle"] == 0


def test_a_link_that_could_not_be_reset_is_closed_and_its_slot_serves_a_waiter():
    pool, _, conn = make_pool(max_pool=1)
    link = link_of(take(pool.checkout(APP, {})))
    box = take(pool.checkout(APP, {}))
    pool.checkin(link, reusable=False)
    assert link.terminated
    assert link_of(box) is not link and len(conn.calls) == 2
    assert pool.stats()["counters"]["closed_reset_failed"] == 1


def test_a_link_still_in_a_transaction_is_not_cached():
    pool, _, _ = make_pool()
    link = link_of(take(pool.checkout(APP, {})))
    link.txn_status = codes.TXN_BLOCK
    pool.checkin(link, reusable=True)
    assert link.terminated


def test_checkin_twice_or_of_an_unknown_link_is_ignored():
    pool, _, _ = make_pool()
    link = link_of(take(pool.checkout(APP, {})))
    pool.checkin(link, reusable=True)
    pool.checkin(link, reusable=True)
    pool.checkin(FakeLink(APP, 99), reusable=True)
    assert pool.stats()["totals"] == {"idle": 1, "busy": 0, "connecting": 0, "waiting": 0}


# -- expiry -------------------------------------------------------------------------------------
def test_connection_life_time_closes_links_idle_that_long():
    pool, clock, _ = make_pool(connection_life_time=60)
    a = link_of(take(pool.checkout(APP, {})))
    b = link_of(take(pool.checkout(APP, {})))
    pool.checkin(a, reusable=True)
    clock.advance(30)
    pool.checkin(b, reusable=True)
    clock.advance(29.5)
    assert not a.terminated
    clock.advance(0.5)
    assert a.terminated and not b.terminated
    clock.advance(30)
    assert b.terminated
    assert pool.stats()["counters"]["expired"] == 2
    assert pool.stats()["keys"] == {}
    assert clock.getDelayedCalls() == []  # no sweep left running on an empty pool


def test_a_reused_link_is_not_expired_while_busy():
    pool, clock, _ = make_pool(connection_life_time=10)
    link = link_of(take(pool.checkout(APP, {})))
    pool.checkin(link, reusable=True)
    clock.advance(5)
    link_of(take(pool.checkout(APP, {})))
    clock.advance(20)
    assert not link.terminated
    pool.checkin(link, reusable=True)
    clock.advance(10)
    assert link.terminated


# -- pacing -------------------------------------------------------------------------------------
def test_new_connections_are_paced_by_a_token_bucket():
    pool, clock, conn = make_pool(max_pool=0, connect_rate=10, connect_burst=2)
    boxes = [take(pool.checkout(APP, {})) for _ in range(5)]
    assert len(conn.calls) == 2
    assert pool.stats()["keys"][APP]["waiting"] == 3
    for opened in (3, 4, 5):
        clock.advance(0.1)
        assert len(conn.calls) == opened
    assert all(len(box) == 1 for box in boxes)
    clock.advance(1)
    assert len(conn.calls) == 5
    assert clock.getDelayedCalls() == []


def test_reuse_is_not_paced():
    pool, _, conn = make_pool(connect_rate=1, connect_burst=1)
    link = link_of(take(pool.checkout(APP, {})))
    pool.checkin(link, reusable=True)
    assert link_of(take(pool.checkout(APP, {}))) is link


def test_waiting_for_pace_still_times_out():
    pool, clock, _ = make_pool(max_pool=0, connect_rate=0.01, connect_burst=1,
                               checkout_timeout=2)
    take(pool.checkout(APP, {}))
    box = take(pool.checkout(APP, {}))
    clock.advance(2)
    assert "connect_rate=0.01/s" in box[0].value.message


# -- failures -----------------------------------------------------------------------------------
def test_a_failed_connect_fails_only_its_own_caller_and_frees_the_slot():
    conn = Connector()
    pool, _, _ = make_pool(conn, max_pool=1)
    first = take(pool.checkout(APP, {}))
    second = take(pool.checkout(APP, {}))
    conn.calls[0][2].errback(RuntimeError("server down"))
    assert first[0].check(RuntimeError)
    assert second == [] and len(conn.calls) == 2  # its own attempt
    link = conn.succeed(1)
    assert link_of(second) is link
    stats = pool.stats()
    assert stats["keys"][APP]["busy"] == 1 and stats["counters"]["connect_failed"] == 1


def test_a_connect_function_that_raises_is_a_failed_connect():
    def connect(key, params):
        raise ValueError("bad")

    pool, _, _ = make_pool(connect)
    assert take(pool.checkout(APP, {}))[0].check(ValueError)
    assert pool.stats()["keys"] == {}


def test_discard_frees_a_slot_and_serves_a_waiter():
    pool, _, conn = make_pool(max_pool=1)
    link = link_of(take(pool.checkout(APP, {})))
    box = take(pool.checkout(APP, {}))
    pool.discard(link)
    assert link.terminated
    assert link_of(box) is not link and len(conn.calls) == 2
    assert pool.stats()["counters"]["discarded"] == 1


def test_an_idle_link_the_server_drops_is_forgotten():
    pool, _, _ = make_pool()
    link = link_of(take(pool.checkout(APP, {})))
    pool.checkin(link, reusable=True)
    link.closed = True
    link.owner.link_lost(link, None)
    assert pool.stats()["keys"] == {}
    assert link_of(take(pool.checkout(APP, {}))) is not link


def test_a_dead_idle_link_is_skipped_at_checkout():
    pool, _, _ = make_pool()
    link = link_of(take(pool.checkout(APP, {})))
    pool.checkin(link, reusable=True)
    link.closed = True
    fresh = link_of(take(pool.checkout(APP, {})))
    assert fresh is not link
    assert pool.stats()["keys"][APP] == {"idle": 0, "busy": 1, "connecting": 0, "waiting": 0}


def test_a_callback_that_checks_the_link_straight_back_in_is_safe():
    pool, _, conn = make_pool(max_pool=1)
    held = link_of(take(pool.checkout(APP, {})))
    d1 = pool.checkout(APP, {})
    d1.addCallback(lambda link: pool.checkin(link, reusable=True))
    box = take(pool.checkout(APP, {}))
    pool.checkin(held, reusable=True)
    assert link_of(box) is held and len(conn.calls) == 1


def test_close_idle_closes_only_idle_links():
    pool, _, _ = make_pool(connection_life_time=60)
    a = link_of(take(pool.checkout(APP, {})))
    b = link_of(take(pool.checkout(APP, {})))
    pool.checkin(a, reusable=True)
    pool.close_idle()
    assert a.terminated and not b.terminated
    assert pool.stats()["totals"] == {"idle": 0, "busy": 1, "connecting": 0, "waiting": 0}


def test_close_idle_database_closes_that_databases_idle_links_on_every_node():
    pool, _, _ = make_pool()
    shop1, shop2 = PoolKey("app", "shop", 1), PoolKey("other", "shop", 2)
    blog = PoolKey("app", "blog", 1)
    a = link_of(take(pool.checkout(shop1, {})))
    b = link_of(take(pool.checkout(shop2, {})))
    busy = link_of(take(pool.checkout(shop1, {})))
    other = link_of(take(pool.checkout(blog, {})))
    for link in (a, b, other):
        pool.checkin(link, reusable=True)
    assert pool.close_idle_database("shop") == 2
    assert a.terminated and b.terminated
    assert not busy.terminated and not other.terminated   # in use / another database
    assert pool.stats()["totals"] == {"idle": 1, "busy": 1, "connecting": 0, "waiting": 0}
    assert pool.close_idle_database("shop") == 0
    assert pool.close_idle_database("nowhere") == 0


# -- reset and stats ----------------------------------------------------------------------------
def test_reset_skips_abort_outside_a_transaction_and_sends_one_query_per_statement():
    pool, _, _ = make_pool()
    assert pool.reset_statements(codes.TXN_IDLE) == ("DISCARD ALL",)
    assert pool.reset_sql(codes.TXN_IDLE) == m.query("DISCARD ALL")
    for status in (codes.TXN_BLOCK, codes.TXN_FAILED, "T"):
        assert pool.reset_statements(status) == ("ABORT", "DISCARD ALL")
        assert pool.reset_sql(status) == m.query("ABORT") + m.query("DISCARD ALL")
    assert pool.reset_sql("I") == m.query("DISCARD ALL")


def test_empty_reset_query_list():
    pool, _, _ = make_pool(reset_query_list=())
    assert pool.reset_sql(codes.TXN_BLOCK) == b""


def test_stats_counts_every_state():
    conn = Connector()
    pool, _, _ = make_pool(conn, max_pool=2)
    bob = PoolKey("bob", "crm", 0)
    take(pool.checkout(APP, {}))
    take(pool.checkout(APP, {}))
    take(pool.checkout(APP, {}))
    take(pool.checkout(bob, {}))
    conn.succeed(0)
    idle = conn.succeed(2)
    pool.checkin(idle, reusable=True)
    stats = pool.stats()
    assert stats["keys"] == {
        APP: {"idle": 0, "busy": 1, "connecting": 1, "waiting": 1},
        bob: {"idle": 1, "busy": 0, "connecting": 0, "waiting": 0},
    }
    assert stats["nodes"] == {1: {"idle": 0, "busy": 1, "connecting": 1, "waiting": 1},
                              0: {"idle": 1, "busy": 0, "connecting": 0, "waiting": 0}}
    assert stats["totals"] == {"idle": 1, "busy": 1, "connecting": 1, "waiting": 1}
    assert stats["counters"]["created"] == 2 and stats["counters"]["reused"] == 0
    assert sorted(state for _, _, state, _, _ in pool.iter_links()) == ["busy", "idle"]


# -- max_idle and startup settings in the key ---------------------------------------------------
def test_max_idle_keeps_at_most_that_many_idle_links_per_key():
    pool, _, conn = make_pool(max_pool=0, max_idle=2)
    links = [link_of(take(pool.checkout(APP, {}))) for _ in range(4)]
    for link in links:
        pool.checkin(link, reusable=True)
    assert [link.closed for link in links] == [False, False, True, True]
    assert pool.stats()["totals"]["idle"] == 2


def test_links_are_only_shared_by_identical_startup_settings():
    pool, _, conn = make_pool()
    a = PoolKey("app", "shop", 0, (("application_name", "a"),))
    b = PoolKey("app", "shop", 0, (("application_name", "b"),))
    first = link_of(take(pool.checkout(a, {})))
    pool.checkin(first, reusable=True)
    other = link_of(take(pool.checkout(b, {})))
    assert other is not first and len(conn.calls) == 2
    assert link_of(take(pool.checkout(a, {}))) is first


# -- would_wait (transaction pooling answers a "prepare" itself rather than queue) --------------
def test_would_wait_only_when_the_node_is_full_and_nothing_is_idle():
    pool, _, _ = make_pool(max_pool=0, backend_max_connections=2)
    assert not pool.would_wait(APP)  # room for a new link
    a = link_of(take(pool.checkout(APP, {})))
    assert not pool.would_wait(APP)
    link_of(take(pool.checkout(APP, {})))
    assert pool.would_wait(APP)      # both busy, node at its cap
    other = PoolKey("bob", "shop", 1)
    assert pool.would_wait(other)
    pool.checkin(a, reusable=True)
    assert not pool.would_wait(APP)  # an idle link to take
    assert not pool.would_wait(other)  # an idle link to close for room


def test_would_wait_for_a_full_key():
    pool, _, _ = make_pool(max_pool=1)
    link_of(take(pool.checkout(APP, {})))
    assert pool.would_wait(APP)
    assert not pool.would_wait(PoolKey("bob", "shop", 1))


def test_no_cap_never_waits():
    pool, _, _ = make_pool(max_pool=0, backend_max_connections=0)
    for _ in range(5):
        link_of(take(pool.checkout(APP, {})))
    assert not pool.would_wait(APP)
