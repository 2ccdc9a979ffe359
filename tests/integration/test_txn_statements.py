"""Transaction pooling: SQL-level and protocol-level prepared statements follow a
session across links; DISCARD ALL / DEALLOCATE ALL from clients.
"""

from __future__ import annotations

import pytest
from psycopg import errors as pgerr
from psycopg import pq

from .conftest import assert_log_clean
from .txnpool_util import (
    INT4,
    INT8,
    TEXT,
    _connect,
    _hold_link,
    _link_pids,
    _one,
    _raw_ok,
    _raw_sqlstate,
    _txn,
    pgbench_schema,  # noqa: F401  (a fixture)
    pooldb,  # noqa: F401  (a fixture)
)

pytestmark = pytest.mark.integration


# -- 6. SQL-level PREPARE / EXECUTE / DEALLOCATE across links ---------------------------------


def test_sql_prepare_execute_deallocate_across_links(pooldb, pgtwist_factory):
    pg = _txn(pgtwist_factory, backend_max_connections=2, checkout_timeout=10)
    a, b, h1, h2 = (_connect(pg) for _ in range(4))
    holders = [h1, h2]
    try:
        links = _link_pids(holders)
        a.execute("PREPARE txn_pa (int) AS select $1 * 2, pg_backend_pid()")
        b.execute("PREPARE txn_pb (int) AS select $1 + 1000, pg_backend_pid()")
        with pytest.raises(pgerr.DuplicatePreparedStatement):
            a.execute("PREPARE txn_pa AS select 1")
        seen_a, seen_b = set(), set()
        for i in range(8):
            busy = links[i % 2]
            h = _hold_link(holders, busy)
            va, pa = _one(a, f"EXECUTE txn_pa({i})")
            vb, pb = _one(b, f"EXECUTE txn_pb({i})")
            with pytest.raises(pgerr.InvalidSqlStatementName):
                b.execute("EXECUTE txn_pa(1)")  # A's statement is not B's
            h.execute("COMMIT")
            assert (va, vb) == (2 * i, 1000 + i), (i, va, vb)
            assert busy not in (pa, pb)
            seen_a.add(pa)
            seen_b.add(pb)
        assert seen_a == seen_b == set(links)

        assert a.execute("DEALLOCATE txn_pa").statusmessage == "DEALLOCATE"
        for i in range(2):
            h = _hold_link(holders, links[i])
            with pytest.raises(pgerr.InvalidSqlStatementName) as exc:
                a.execute("EXECUTE txn_pa(1)")
            assert exc.value.sqlstate == "26000"
            assert _one(b, "EXECUTE txn_pb(1)")[0] == 1001
            h.execute("COMMIT")
        with pytest.raises(pgerr.InvalidSqlStatementName):
            a.execute("DEALLOCATE txn_pa")
        a.execute("PREPARE txn_pa (text) AS select 'again ' || $1, pg_backend_pid()")

        b.execute("PREPARE txn_q AS select 'q'")
        assert _one(b, "EXECUTE txn_q") == ("q",)
        assert b.execute("DEALLOCATE ALL").statusmessage == "DEALLOCATE ALL"
        for i in range(2):
            h = _hold_link(holders, links[i])
            for name in ("txn_pb(1)", "txn_q"):
                with pytest.raises(pgerr.InvalidSqlStatementName):
                    b.execute(f"EXECUTE {name}")
            assert _one(a, "EXECUTE txn_pa('x')")[0] == "again x"  # A's are untouched
            h.execute("COMMIT")
        b.execute("PREPARE txn_q AS select 'q2'")
        for i in range(2):
            h = _hold_link(holders, links[i])
            assert _one(b, "EXECUTE txn_q") == ("q2",)
            h.execute("COMMIT")
    finally:
        for c in (a, b, h1, h2):
            c.close()
    assert_log_clean(pg)


def test_sql_prepare_same_name_in_two_sessions(pooldb, pgtwist_factory):
    """Two sessions PREPARE the same name with different bodies: each EXECUTE runs its own,
    whichever link it lands on, also after the other session DEALLOCATEs."""
    pg = _txn(pgtwist_factory, backend_max_connections=2, checkout_timeout=10)
    a, b, h1, h2 = (_connect(pg) for _ in range(4))
    holders = [h1, h2]
    try:
        links = _link_pids(holders)
        a.execute("PREPARE txn_p (int) AS select $1 * 2, 'a'")
        b.execute("PREPARE txn_p (int) AS select $1 + 1000, 'b'")
        for i in range(6):
            h = _hold_link(holders, links[i % 2])
            got = (_one(a, f"EXECUTE txn_p({i})"), _one(b, f"EXECUTE txn_p({i})"),
                   _one(a, f"EXECUTE txn_p({i})"))
            h.execute("COMMIT")
            assert got == ((2 * i, "a"), (1000 + i, "b"), (2 * i, "a")), (i, got)
        a.execute("DEALLOCATE txn_p")
        for i in range(2):
            h = _hold_link(holders, links[i])
            assert _one(b, "EXECUTE txn_p(1)") == (1001, "b")
            with pytest.raises(pgerr.InvalidSqlStatementName):
                a.execute("EXECUTE txn_p(1)")
            h.execute("COMMIT")
    finally:
        for c in (a, b, h1, h2):
            c.close()
    assert_log_clean(pg)


# -- 7. protocol-level statement names: same name, different SQL / types ---------------------


def test_protocol_statement_names_are_per_session(pooldb, pgtwist_factory):
    pg = _txn(pgtwist_factory, backend_max_connections=2, checkout_timeout=10)
    a, b, h1, h2 = (_connect(pg) for _ in range(4))
    holders = [h1, h2]
    try:
        links = _link_pids(holders)
        _raw_ok(a.pgconn.prepare(b"s1", b"select $1::int + 1, pg_backend_pid()", None), "a s1")
        _raw_ok(b.pgconn.prepare(b"s1", b"select $1::text || '-b', pg_backend_pid()", None),
                "b s1")
        # the same text with different parameter types, in two sessions and in one
        _raw_ok(a.pgconn.prepare(b"s2", b"select $1", [INT4]), "a s2")
        _raw_ok(b.pgconn.prepare(b"s2", b"select $1", [TEXT]), "b s2")
        _raw_ok(a.pgconn.prepare(b"s3", b"select $1", [INT8]), "a s3")
        seen = set()
        for r in range(6):
            busy = links[r % 2]
            h = _hold_link(holders, busy)
            res = _raw_ok(a.pgconn.exec_prepared(b"s1", [str(r).encode()]), "a exec s1")
            assert res.get_value(0, 0) == str(r + 1).encode()
            seen.add(int(res.get_value(0, 1)))
            res = _raw_ok(b.pgconn.exec_prepared(b"s1", [f"x{r}".encode()]), "b exec s1")
            assert res.get_value(0, 0) == f"x{r}-b".encode()
            res = _raw_ok(a.pgconn.exec_prepared(b"s2", [b"7"]), "a exec s2")
            assert (res.ftype(0), res.get_value(0, 0)) == (INT4, b"7")
            res = _raw_ok(b.pgconn.exec_prepared(b"s2", [b"abc"]), "b exec s2")
            assert (res.ftype(0), res.get_value(0, 0)) == (TEXT, b"abc")
            res = _raw_ok(a.pgconn.exec_prepared(b"s3", [b"9000000000"]), "a exec s3")
            assert (res.ftype(0), res.get_value(0, 0)) == (INT8, b"9000000000")
            # Describe 'S' on whichever link is free
            res = _raw_ok(a.pgconn.describe_prepared(b"s1"), "a describe s1")
            assert (res.nparams, res.param_type(0), res.nfields) == (1, INT4, 2)
            res = _raw_ok(b.pgconn.describe_prepared(b"s1"), "b describe s1")
            assert (res.nparams, res.param_type(0)) == (1, TEXT)
            res = _raw_ok(b.pgconn.describe_prepared(b"s2"), "b describe s2")
            assert (res.param_type(0), res.ftype(0)) == (TEXT, TEXT)
            h.execute("COMMIT")
        assert seen == set(links), "the session's statements did not run on both links"

        res = a.pgconn.exec_prepared(b"nope", [])
        assert _raw_sqlstate(res) == "26000"
        if pq.version() >= 170000:  # protocol-level Close 'S'
            _raw_ok(a.pgconn.close_prepared(b"s1"), "a close s1")
            for link in links:
                h = _hold_link(holders, link)
                res = a.pgconn.exec_prepared(b"s1", [b"1"])
                assert _raw_sqlstate(res) == "26000", res.error_message
                res = _raw_ok(b.pgconn.exec_prepared(b"s1", [b"y"]), "b s1 after a's close")
                assert res.get_value(0, 0) == b"y-b"
                h.execute("COMMIT")
            _raw_ok(a.pgconn.prepare(b"s1", b"select $1::int * 3", None), "a s1 again")
            for link in links:
                h = _hold_link(holders, link)
                res = _raw_ok(a.pgconn.exec_prepared(b"s1", [b"5"]), "a new s1")
                assert res.get_value(0, 0) == b"15"
                h.execute("COMMIT")
        # a duplicate name is refused like by PostgreSQL
        res = a.pgconn.prepare(b"s2", b"select 2", None)
        assert _raw_sqlstate(res) == "42P05", res.error_message
        assert _one(a, "select %s::int", [5]) == (5,)
    finally:
        for c in (a, b, h1, h2):
            c.close()
    assert_log_clean(pg)


# -- 11. DISCARD ALL / DEALLOCATE ALL from clients ---------------------------------------------


def test_discard_all_and_deallocate_all_from_clients(pooldb, pgtwist_factory):
    pg = _txn(pgtwist_factory, backend_max_connections=2, checkout_timeout=10)
    c = _connect(pg, prepare_threshold=0)
    other, h1, h2 = _connect(pg), _connect(pg), _connect(pg)
    holders = [h1, h2]
    try:
        links = _link_pids(holders)
        default_wm = _one(other, "show work_mem")[0]

        def exercise(tag):
            for i in range(6):
                h = _hold_link(holders, links[i % 2])
                assert _one(c, "select %s::int + 1", [i]) == (i + 1,), tag
                assert _one(c, "select %s::text || 'z'", [str(i)]) == (f"{i}z",), tag
                assert _one(other, "select %s::int + 1", [i]) == (i + 1,), tag
                h.execute("COMMIT")

        exercise("before")
        # c prepares everything (prepare_threshold 0): prepare=False keeps these simple queries
        c.execute("SET work_mem = '33MB'", prepare=False)
        c.execute("PREPARE txn_d AS select 'd'", prepare=False)
        _raw_ok(c.pgconn.prepare(b"txn_raw", b"select $1::int * 10", None), "prepare txn_raw")
        assert c.execute("show work_mem", prepare=False).fetchone() == ("33MB",)

        assert c.execute("DISCARD ALL", prepare=False).statusmessage == "DISCARD ALL"
        for link in links:
            h = _hold_link(holders, link)
            assert c.execute("show work_mem", prepare=False).fetchone() == (default_wm,)
            with pytest.raises(pgerr.InvalidSqlStatementName):
                c.execute("EXECUTE txn_d", prepare=False)
            assert _raw_sqlstate(c.pgconn.exec_prepared(b"txn_raw", [b"1"])) == "26000"
            h.execute("COMMIT")
        exercise("after DISCARD ALL")
        _raw_ok(c.pgconn.prepare(b"txn_raw", b"select $1::int * 10", None), "prepare again")
        assert _raw_ok(c.pgconn.exec_prepared(b"txn_raw", [b"4"]), "exec").get_value(0, 0) == (
            b"40")

        assert c.execute("DEALLOCATE ALL", prepare=False).statusmessage == "DEALLOCATE ALL"
        assert _raw_sqlstate(c.pgconn.exec_prepared(b"txn_raw", [b"1"])) == "26000"
        exercise("after DEALLOCATE ALL")
        assert _one(other, "show work_mem") == (default_wm,)
    finally:
        for conn in (c, other, h1, h2):
            conn.close()
    assert_log_clean(pg)

