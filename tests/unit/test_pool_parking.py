"""Transaction pooling keeps a session's link close between its transactions: the link is
idle in the pool for anyone (parked), taken back cheaply by its session while no one
else took it, and the session hears at once when someone did (no sockets)."""

from __future__ import annotations

from pgtwist.pooling.pool import PoolKey
from pgtwist.wire import codes

from .test_pool import APP, link_of, make_pool, take

OTHER = PoolKey("other", "shop", 1)


class Taken:
    def __init__(self):
        self.links = []

    def __call__(self, link):
        self.links.append(link)


def test_parked_link_is_idle_and_taken_back_by_its_session():
    pool, _, conn = make_pool()
    link = link_of(take(pool.checkout(APP, {})))
    taken = Taken()
    assert pool.park(link, taken)
    assert link.owner is pool
    assert [state for _k, _l, state, _c, _cl in pool.iter_links()] == ["idle"]
    assert pool.unpark(link, taken)
    assert link.owner is None and taken.links == []
    assert not pool.unpark(link, taken)  # busy again: nothing to take back
    pool.checkin(link, reusable=True)
    assert len(conn.calls) == 1


def test_another_checkout_takes_a_parked_link_and_its_session_is_told():
    pool, _, conn = make_pool()
    link = link_of(take(pool.checkout(APP, {})))
    taken = Taken()
    assert pool.park(link, taken)
    other = link_of(take(pool.checkout(APP, {})))
    assert other is link and taken.links == [link]
    assert not pool.unpark(link, taken)  # the session must not use it any more
    assert len(conn.calls) == 1


def test_a_parked_link_closed_by_the_pool_tells_its_session():
    pool, _, _ = make_pool()
    link = link_of(take(pool.checkout(APP, {})))
    taken = Taken()
    assert pool.park(link, taken)
    pool.close_idle()
    assert taken.links == [link] and link.terminated
    assert not pool.unpark(link, taken)


def test_a_parked_link_lost_tells_its_session():
    pool, _, _ = make_pool()
    link = link_of(take(pool.checkout(APP, {})))
    taken = Taken()
    assert pool.park(link, taken)
    link.closed = True
    pool.link_lost(link)
    assert taken.links == [link]
    assert not pool.unpark(link, taken)


def test_a_parked_link_evicted_for_another_key_tells_its_session():
    pool, _, conn = make_pool(backend_max_connections=1)
    link = link_of(take(pool.checkout(APP, {})))
    taken = Taken()
    assert pool.park(link, taken)
    other = take(pool.checkout(OTHER, {}))
    assert taken.links == [link] and link.terminated
    assert link_of(other) is not link and len(conn.calls) == 2


def test_only_the_session_that_parked_a_link_takes_it_back():
    pool, _, _ = make_pool()
    link = link_of(take(pool.checkout(APP, {})))
    mine, other = Taken(), Taken()
    assert pool.park(link, mine)
    assert not pool.unpark(link, other)
    assert pool.unpark(link, mine)


def test_no_parking_while_someone_waits_for_a_link():
    pool, _, _ = make_pool(max_pool=1)
    link = link_of(take(pool.checkout(APP, {})))
    waiting = take(pool.checkout(APP, {}))
    assert waiting == []
    assert not pool.park(link, Taken())
    pool.checkin(link, reusable=True)  # the usual way: straight to the waiter
    assert link_of(waiting) is link


def test_no_parking_inside_a_transaction_or_without_caching():
    pool, _, _ = make_pool()
    link = link_of(take(pool.checkout(APP, {})))
    link.txn_status = codes.TXN_BLOCK
    assert not pool.park(link, Taken())
    link.txn_status = codes.TXN_IDLE
    nocache, _, _ = make_pool(connection_cache=False)
    other = link_of(take(nocache.checkout(APP, {})))
    assert not nocache.park(other, Taken())


def test_take_idle_answers_at_once_or_none():
    pool, _, conn = make_pool()
    assert pool.take_idle(APP) is None
    a = link_of(take(pool.checkout(APP, {})))
    pool.checkin(a, reusable=True)
    assert pool.take_idle(APP, client="s") is a
    assert pool.take_idle(APP) is None
    assert len(conn.calls) == 1
