"""Pooling.release: a link with a cancel on its way is parked, not handed to anyone."""

from __future__ import annotations

from types import SimpleNamespace

from twisted.internet import defer
from twisted.internet.task import Clock

from pgtwist.config import parse_config
from pgtwist.pooling.checkout import Pooling
from pgtwist.pooling.pool import PoolKey
from pgtwist.protocols.backend import BackendLink

KEY = PoolKey("app", "shop", 0, ())


class Link(BackendLink):
    """A real BackendLink with no connection: writes are recorded."""

    def __init__(self):
        super().__init__(0, None, "127.0.0.1:5432")
        self.transport = None
        self.written: list[bytes] = []
        self.write = self.written.append

    def terminate(self) -> None:
        self.closed = True


def _pooling():
    config = parse_config({"backend_hostname0": "127.0.0.1", "pool_mode": "transaction",
                           "backend_max_connections": 1, "max_pool": 1,
                           "connect_timeout": 1000}, env={}, check_files=False)
    proxy = SimpleNamespace(reactor=Clock())
    pooling = Pooling(proxy, config)
    link = Link()
    pooling.pool._connect = lambda key, params: defer.succeed(link)
    return pooling, link


def _checkout(pooling):
    box = []
    pooling.pool.checkout(KEY, {}).addBoth(box.append)
    return box


def test_a_link_with_a_cancel_on_its_way_waits_before_serving_anyone():
    pooling, link = _pooling()
    assert _checkout(pooling) == [link]
    link.cancelling = 1                       # a cancel request is being delivered
    pooling.release(link, clean=True, reset=False)
    waiting = _checkout(pooling)
    assert waiting == []                      # not handed out meanwhile
    assert type(link.owner).__name__ == "_Parked"
    link.cancelling = 0                       # the server closed the cancel connection
    run, link.after_cancel = link.after_cancel, None
    run()
    assert waiting == [link]                  # only now


def test_a_clean_idle_link_goes_straight_back_in_transaction_mode():
    pooling, link = _pooling()
    _checkout(pooling)
    pooling.release(link, clean=True, reset=False)
    assert link.written == []                 # no reset_query_list between transactions
    assert _checkout(pooling) == [link]


def test_session_end_resets_a_link():
    pooling, link = _pooling()
    _checkout(pooling)
    pooling.release(link, clean=True, reset=True)
    assert link.written and b"DISCARD ALL" in b"".join(link.written)
