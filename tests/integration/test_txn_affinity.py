"""Transaction pooling gives a session back the link it used last while no one else took
it (no reset, no re-Parse), and a link another session took is reset and re-prepared for
whoever gets it: taking back a parked link never hands over one that is in use.
"""

from __future__ import annotations

import threading

import pytest

from .txnpool_util import _connect, _one, _pid, _stat, _stats, _txn, pooldb  # noqa: F401

pytestmark = pytest.mark.integration


def test_interleaved_sessions_keep_their_own_backend(pooldb, pgtwist_factory):
    """Two sessions taking turns, links to spare: each keeps one backend (before, the
    second took the first's just-released link and both were reset every turn)."""
    pg = _txn(pgtwist_factory)
    a, b = _connect(pg), _connect(pg)
    try:
        # Two links exist: both sessions inside a transaction at once.
        a.execute("BEGIN")
        b.execute("BEGIN")
        first_a, first_b = _pid(a), _pid(b)
        a.execute("COMMIT")
        b.execute("COMMIT")  # the most recently used idle link is b's
        pids_a, pids_b = {first_a}, {first_b}
        for _ in range(10):
            pids_a.add(_pid(a))
            pids_b.add(_pid(b))
        assert len(pids_a) == 1 and len(pids_b) == 1 and pids_a != pids_b
        # A setting survives between transactions on the same backend, and the other
        # session never sees it.
        a.execute("SET application_name = 'affinity_a'")
        for _ in range(5):
            assert _one(b, "SHOW application_name") != ("affinity_a",)
            assert _one(a, "SHOW application_name") == ("affinity_a",)
    finally:
        a.close()
        b.close()


def test_one_link_shared_by_sessions_taking_turns(pooldb, pgtwist_factory):
    """transaction_pool_size 1: every turn takes the link the other session parked.  Each
    session's settings and prepared statements follow it; nothing of the other's leaks."""
    pg = _txn(pgtwist_factory, transaction_pool_size=1)
    a, b = _connect(pg, prepare_threshold=0), _connect(pg, prepare_threshold=0)
    try:
        a.execute("SET search_path = txn_s1, public")
        b.execute("SET search_path = txn_s2, public")
        a.execute("SET work_mem = '3MB'")
        pids = set()
        for i in range(20):
            assert _one(a, "select v from txn_where") == ("txn_s1",)
            assert _one(b, "select v from txn_where") == ("txn_s2",)
            assert _one(a, "select %s::int * 2", [i]) == (i * 2,)
            assert _one(b, "SHOW work_mem") != ("3MB",)
            assert _one(a, "SHOW work_mem") == ("3MB",)
            pids.add(_pid(a))
            pids.add(_pid(b))
        assert len(pids) == 1  # one link served both
        with _connect(pg) as c:
            assert _stat(_stats(c), "created") == 1
    finally:
        a.close()
        b.close()


def test_parked_links_under_concurrent_load_stay_consistent(pooldb, pgtwist_factory):
    """More sessions than links, all busy: parked links change hands all the time; every
    answer is the asking session's own."""
    pg = _txn(pgtwist_factory, transaction_pool_size=3)
    errors = []

    def worker(k):
        try:
            with _connect(pg, prepare_threshold=0) as c:
                c.execute(f"SET application_name = 'w{k}'")
                for i in range(150):
                    assert _one(c, "select %s::int + %s::int, current_setting('application_name')",
                                [i, k]) == (i + k, f"w{k}")
        except BaseException as e:  # noqa: BLE001
            errors.append((k, e))

    threads = [threading.Thread(target=worker, args=(k,), daemon=True) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors[:3]
    assert not any(t.is_alive() for t in threads)
