"""The pool as transaction pooling builds it (issue 11): ``transaction_pool_size`` bounds each
key's links and queues the clients beyond it, a released link goes to the next waiter, idle
links are kept up to the bound, and a new login at the bound replaces an idle link."""

from __future__ import annotations

from pgtwist.config import parse_config
from pgtwist.pooling.pool import PoolExhausted

from .test_pool import APP, Connector, link_of, make_pool, take

ONE = {"backends": [{"hostname": "db"}]}


def txn_pool(size: int, connector=None, **kw):
    # What pooling.checkout.Pooling passes in transaction mode.
    return make_pool(connector, max_pool=size, max_idle=0,
                     max_pool_key="transaction_pool_size", **kw)


def test_the_bound_queues_clients_and_a_release_serves_the_oldest_waiter():
    pool, _, conn = txn_pool(2)
    a, b = (link_of(take(pool.checkout(APP, {}, client=i))) for i in "ab")
    waiting = [take(pool.checkout(APP, {}, client=i)) for i in "cde"]
    assert len(conn.calls) == 2 and waiting == [[], [], []]
    pool.checkin(a, reusable=True)
    assert link_of(waiting[0]) is a and waiting[1:] == [[], []]
    pool.checkin(b, reusable=True)
    assert link_of(waiting[1]) is b
    pool.checkin(a, reusable=True)
    assert link_of(waiting[2]) is a
    assert len(conn.calls) == 2
    assert pool.counters["closed_idle"] == 0 and pool.counters["reused"] == 3


def test_idle_links_are_kept_up_to_the_bound():
    """Session mode's max_pool (4 idle per key) closed links above it on release: 32
    clients' links churned at the connect pace.  Here none is ever closed for being idle."""
    pool, _, conn = txn_pool(20)
    links = [link_of(take(pool.checkout(APP, {}))) for _ in range(20)]
    for link in links:
        pool.checkin(link, reusable=True)
    assert pool.stats()["totals"]["idle"] == 20
    assert not any(link.terminated for link in links)
    again = [link_of(take(pool.checkout(APP, {}))) for _ in range(20)]
    assert set(again) == set(links) and len(conn.calls) == 20
    assert pool.counters["closed_idle"] == 0


def test_a_client_beyond_the_bound_times_out_naming_the_setting():
    pool, clock, _ = txn_pool(1, checkout_timeout=5)
    link_of(take(pool.checkout(APP, {})))
    box = take(pool.checkout(APP, {}))
    clock.advance(5)
    assert box[0].check(PoolExhausted)
    assert box[0].value.message.endswith(
        ": 1 of transaction_pool_size=1 in use, 1 clients waiting")


def test_a_new_login_at_the_bound_replaces_the_oldest_idle_link():
    pool, _, conn = txn_pool(2)
    old, new = (link_of(take(pool.checkout(APP, {}))) for _ in range(2))
    pool.checkin(old, reusable=True)
    pool.checkin(new, reusable=True)
    fresh = link_of(take(pool.checkout(APP, {}, fresh=True)))
    assert fresh not in (old, new) and old.terminated and not new.terminated
    assert pool.counters["evicted"] == 1
    assert pool.stats()["keys"][APP] == {"idle": 1, "busy": 1, "connecting": 0, "waiting": 0}


def test_a_new_login_waiting_at_the_bound_gets_a_released_links_room():
    """A link released while only a new login waits goes idle, then makes room for it
    (before, the login waited for checkout_timeout: an idle link may not stand in)."""
    conn = Connector()
    pool, _, _ = txn_pool(1, conn)
    d = take(pool.checkout(APP, {}))
    first = conn.succeed(0)
    assert link_of(d) is first
    box = take(pool.checkout(APP, {}, fresh=True))
    assert box == [] and len(conn.calls) == 1
    pool.checkin(first, reusable=True)
    assert first.terminated and len(conn.calls) == 2
    second = conn.succeed(1)
    assert link_of(box) is second


def test_a_new_login_at_the_bound_with_every_link_busy_waits():
    pool, _, conn = txn_pool(1)
    link_of(take(pool.checkout(APP, {})))
    box = take(pool.checkout(APP, {}, fresh=True))
    assert box == [] and len(conn.calls) == 1


def test_transaction_pool_size_option():
    cfg = parse_config({**ONE, "pool_mode": "transaction"})
    assert cfg.pool.transaction_pool_size == 20
    cfg = parse_config({**ONE, "pool_mode": "transaction", "transaction_pool_size": 3})
    assert cfg.pool.transaction_pool_size == 3
