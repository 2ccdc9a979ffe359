"""Transaction pooling: pins keep a session's link; cancellation reaches only the link
the session holds; a checkout timeout is an error the session survives.
"""

from __future__ import annotations

import asyncio
import threading
import time

import asyncpg
import pytest
from psycopg import errors as pgerr
from psycopg import pq

from .conftest import assert_log_clean
from .txnpool_util import (
    DB,
    _connect,
    _direct,
    _one,
    _pid,
    _stat,
    _stats,
    _txn,
    _wait_active,
    pgbench_schema,  # noqa: F401  (a fixture)
    pooldb,  # noqa: F401  (a fixture)
)

pytestmark = pytest.mark.integration


# -- 8. pins -----------------------------------------------------------------------------------


def test_pins_keep_the_link(pooldb, pgtwist_factory):
    pg = _txn(pgtwist_factory, backend_max_connections=7, checkout_timeout=20)
    listener, temp, locker, cursor_c, other, notifier = (_connect(pg) for _ in range(6))
    stop = threading.Event()
    traffic_errors = []

    def traffic(k):  # other sessions keep taking and returning the unpinned links
        try:
            with _connect(pg, prepare_threshold=0) as c:
                i = 0
                while not stop.is_set():
                    assert _one(c, "select %s::int + 1", [i]) == (i + 1,)
                    assert c.execute("select to_regclass('pg_temp.txn_tmp')").fetchone() == (
                        None,)
                    i += 1
        except BaseException as e:  # noqa: BLE001
            traffic_errors.append((k, e))

    threads = [threading.Thread(target=traffic, args=(k,), daemon=True) for k in range(2)]
    for t in threads:
        t.start()
    try:
        listener.execute("LISTEN txn_chan")
        temp.execute("CREATE TEMP TABLE txn_tmp (v int)")
        temp.execute("INSERT INTO txn_tmp VALUES (1), (2)")
        locker.execute("select pg_advisory_lock(727272)")
        cursor_c.execute("DECLARE txn_cur CURSOR WITH HOLD FOR "
                         "select g from generate_series(1, 10) g")
        pinned = [listener, temp, locker, cursor_c]
        pids = [_pid(c) for c in pinned]
        assert len(set(pids)) == 4, pids
        for i in range(10):
            assert [_pid(c) for c in pinned] == pids, f"a pinned session changed link ({i})"
            assert _one(temp, "select count(*) from txn_tmp") == (2 + i,)
            temp.execute("insert into txn_tmp values (%s)", [i])
            assert _one(other, "select to_regclass('pg_temp.txn_tmp')") == (None,)
            assert _one(other, "select pg_try_advisory_lock(727272)") == (False,)
            assert _one(other, "select count(*) from pg_listening_channels()") == (0,)
            assert _one(listener, "select array_agg(c) from pg_listening_channels() c") == (
                ["txn_chan"],)
            if i % 2:
                assert cursor_c.execute("FETCH 1 FROM txn_cur").fetchall() == [(i + 1,)]
            else:
                cursor_c.execute("BEGIN")
                assert cursor_c.execute("FETCH 1 FROM txn_cur").fetchall() == [(i + 1,)]
                cursor_c.execute("COMMIT")
        assert cursor_c.execute("FETCH ALL FROM txn_cur").fetchall() == []
        cursor_c.execute("CLOSE txn_cur")

        notifier.execute("NOTIFY txn_chan, 'hello'")
        got = list(listener.notifies(timeout=10, stop_after=1))
        assert [(n.channel, n.payload) for n in got] == [("txn_chan", "hello")]
        assert _one(listener, "select 1") == (1,)

        stats = _stats(other)
        for name in ("pinned_listen", "pinned_temp_table", "pinned_advisory_lock",
                     "pinned_with_hold_cursor"):
            assert _stat(stats, name) >= 1, (name, stats)
        assert _stat(stats, "pinned") >= 4, stats

        assert _one(locker, "select pg_advisory_unlock(727272)") == (True,)
        assert _one(other, "select pg_try_advisory_lock(727272)") == (True,)
        other.execute("select pg_advisory_unlock_all()")
    finally:
        stop.set()
        for t in threads:
            t.join(20)
        for c in (listener, temp, locker, cursor_c, other, notifier):
            c.close()
    assert traffic_errors == [], traffic_errors
    assert_log_clean(pg)


def test_cancel_reaches_only_the_link_the_session_holds(pooldb, pgtwist_factory, cluster):
    pg = _txn(pgtwist_factory, backend_max_connections=1, checkout_timeout=40)
    a, b = _connect(pg), _connect(pg)
    direct = _direct(cluster)
    try:
        # (a) cancel a running query; B, queued behind it on the only link, is not hit
        b_rows, b_errors = [], []

        def b_work():
            try:
                for i in range(300):
                    sql = "select %s::int" if i % 2 else f"select {i}"
                    b_rows.append(_one(b, sql, [i] if i % 2 else None)[0])
            except BaseException as e:  # noqa: BLE001
                b_errors.append(e)

        bt = threading.Thread(target=b_work, daemon=True)
        cancel_errors = []

        def canceller():
            try:
                _wait_active(direct, "%pg_sleep(30)%")
                bt.start()
                time.sleep(0.2)  # lets B queue for the link (the test holds either way)
                a.cancel_safe()
            except BaseException as e:  # noqa: BLE001
                cancel_errors.append(e)

        ct = threading.Thread(target=canceller, daemon=True)
        ct.start()
        with pytest.raises(pgerr.QueryCanceled) as exc:
            a.execute("select pg_sleep(30)")
        assert exc.value.sqlstate == "57014"
        ct.join(20)
        assert cancel_errors == []
        bt.join(60)
        assert not bt.is_alive()
        assert b_errors == [], b_errors
        assert b_rows == list(range(300))
        assert _one(a, "select 'a usable'") == ("a usable",)

        # (b) A's cancel while A holds no link does not touch B's running query
        assert _one(a, "select 1") == (1,)
        done = {}

        def sleeper():
            try:
                done["row"] = _one(b, "select pg_sleep(2), 'slept'")
            except BaseException as e:  # noqa: BLE001
                done["error"] = e

        st = threading.Thread(target=sleeper, daemon=True)
        st.start()
        _wait_active(direct, "%pg_sleep(2)%")
        a.cancel_safe()
        st.join(30)
        assert "error" not in done, done
        assert done["row"][1] == "slept"
        assert _one(a, "select 2") == (2,)
        assert _one(b, "select 3") == (3,)
    finally:
        direct.close()
        a.close()
        b.close()

    # (c) asyncpg: a timeout sends the CancelRequest; the next query is not stuck behind
    async def main():
        conn = await asyncpg.connect(host=pg.host, port=pg.port, user="postgres",
                                     database=DB, timeout=10)
        try:
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(conn.fetchval("select pg_sleep(30)"), 0.5)
            # well under the 30 s: the sleep was cancelled, not waited for
            assert await asyncio.wait_for(conn.fetchval("select $1::int", 7), 15) == 7
        finally:
            await conn.close(timeout=10)

    asyncio.run(main())
    assert_log_clean(pg)


# -- 10. saturation -----------------------------------------------------------------------------


def test_checkout_timeout_is_an_error_and_the_session_survives(pooldb, pgtwist_factory):
    pg = _txn(pgtwist_factory, backend_max_connections=1, checkout_timeout=1)
    a, b = _connect(pg), _connect(pg)
    try:
        a.execute("BEGIN")
        assert _one(a, "select 1") == (1,)
        with pytest.raises(pgerr.TooManyConnections) as exc:
            b.execute("select 2")
        assert exc.value.sqlstate == "53300"
        assert exc.value.diag.severity == "ERROR"
        assert "node 0" in exc.value.diag.message_primary, exc.value.diag.message_primary
        with pytest.raises(pgerr.TooManyConnections):
            b.execute("select %s::int", [2])
        assert not b.closed
        assert b.info.transaction_status == pq.TransactionStatus.IDLE
        assert _one(a, "select 4") == (4,)  # A's transaction is not disturbed
        a.execute("COMMIT")
        assert _one(b, "select 3") == (3,)
        assert _one(b, "select %s::int", [5]) == (5,)
        assert _stat(_stats(b), "timeouts") >= 2
    finally:
        a.close()
        b.close()
    assert_log_clean(pg)

