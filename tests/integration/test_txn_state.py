"""Transaction pooling: session state (SET / RESET / SET LOCAL / set_config / startup
parameters) is re-applied on every checkout and never leaks to the next client.
"""

from __future__ import annotations

import random

import pytest
from psycopg import errors as pgerr

from .conftest import assert_log_clean
from .txnpool_util import (
    _LEAKS,
    _check_state,
    _connect,
    _one,
    _pid,
    _rounds,
    _run_threads,
    _state,
    _txn,
    pgbench_schema,  # noqa: F401  (a fixture)
    pooldb,  # noqa: F401  (a fixture)
)

pytestmark = pytest.mark.integration


def test_session_state_is_reapplied_on_every_checkout(pooldb, pgtwist_factory):
    pg = _txn(pgtwist_factory, backend_max_connections=2, checkout_timeout=20)
    rng = random.Random(4)
    clients = [_connect(pg) for _ in range(4)]
    holder = _connect(pg)
    try:
        default = _state(clients[3])
        assert default[3] == "public", default
        setups = {0: ("txn_s1, public", "txn_app_0", "Asia/Tokyo"),
                  1: ("txn_s2", "txn_app_1", "Europe/Paris"),
                  2: ("txn_s3", "txn_app_2", "America/New_York")}
        expected = {3: default}
        for k, (path, app, tz) in setups.items():
            c = clients[k]
            assert c.execute(f"SET search_path = {path}").statusmessage == "SET"
            c.execute(f"SET application_name = '{app}'")
            c.execute(f"SET TimeZone = '{tz}'")
            expected[k] = (path, app, tz, path.split(",")[0])
            # the other clients, already connected, keep theirs meanwhile
            _rounds(clients, {j: expected.get(j, default) for j in range(4)}, 1, rng)
        _rounds(clients, expected, 12, rng, holder=holder)

        # the same, all clients at once: 4 sessions on 2 links
        def worker(k):
            for i in range(40):
                _check_state(clients[k], expected[k], f"thread {k} check {i}", extended=bool(i % 2))

        errors = _run_threads(worker, 4, timeout=60)
        assert errors == [], errors

        # a new value replaces the old one
        clients[1].execute("SET search_path = txn_s1")
        expected[1] = ("txn_s1",) + expected[1][1:3] + ("txn_s1",)
        _rounds(clients, expected, 4, rng, holder=holder)

        # SET LOCAL lasts for its transaction only
        c0 = clients[0]
        c0.execute("BEGIN")
        c0.execute("SET LOCAL search_path = txn_s3")
        c0.execute("SET LOCAL application_name = 'txn_local'")
        assert _state(c0) == ("txn_s3", "txn_local", expected[0][2], "txn_s3")
        _rounds(clients[1:], [expected[1], expected[2], expected[3]], 1, rng)
        assert _state(c0, extended=True) == ("txn_s3", "txn_local", expected[0][2], "txn_s3")
        c0.execute("COMMIT")
        _rounds(clients, expected, 4, rng, holder=holder)

        # RESET one setting, RESET ALL
        clients[2].execute("RESET search_path")
        expected[2] = (default[0], expected[2][1], expected[2][2], "public")
        assert clients[0].execute("RESET ALL").statusmessage == "RESET"
        expected[0] = default
        _rounds(clients, expected, 6, rng, holder=holder)
    finally:
        for c in [*clients, holder]:
            c.close()
    assert_log_clean(pg)


def test_set_in_rolled_back_transaction_is_forgotten(pooldb, pgtwist_factory):
    """PostgreSQL undoes SET (and RESET) done in a transaction that rolls back; a SET in a
    committed transaction stays."""
    pg = _txn(pgtwist_factory, backend_max_connections=2, checkout_timeout=20)
    a, other, holder = _connect(pg), _connect(pg), _connect(pg)
    try:
        default = _one(other, "show work_mem")[0]

        def check(want, what):
            for i in range(6):
                if i % 2 == 0:
                    holder.execute("BEGIN")
                    holder.execute("select 1")
                assert _one(other, "show work_mem") == (default,), f"{what}: other client"
                assert _one(a, "show work_mem") == (want,), f"{what}: check {i}"
                assert _one(a, "select current_setting(%s)", ["work_mem"]) == (want,), what
                if i % 2 == 0:
                    holder.execute("COMMIT")

        a.execute("SET work_mem = '21MB'")
        check("21MB", "plain SET")
        a.execute("BEGIN")
        a.execute("SET work_mem = '22MB'")
        a.execute("ROLLBACK")
        check("21MB", "SET in a rolled back transaction")
        a.execute("BEGIN")
        a.execute("SET work_mem = '23MB'")
        a.execute("COMMIT")
        check("23MB", "SET in a committed transaction")
        a.execute("BEGIN")
        a.execute("RESET work_mem")
        a.execute("ROLLBACK")
        check("23MB", "RESET in a rolled back transaction")
        a.execute("BEGIN")
        a.execute("SET work_mem = '25MB'")
        with pytest.raises(pgerr.DivisionByZero):
            a.execute("select 1 / 0")
        a.execute("ROLLBACK")
        check("23MB", "SET in a failed transaction")
    finally:
        for c in (a, other, holder):
            c.close()


def test_set_back_to_an_earlier_value_is_kept(pooldb, pgtwist_factory):
    """SET x = 1; SET x = 2; SET x = 1: the session's value is 1 (an application toggling
    statement_timeout per request does this)."""
    pg = _txn(pgtwist_factory, backend_max_connections=1, checkout_timeout=20)
    a, other = _connect(pg), _connect(pg)
    try:
        default = _one(other, "show statement_timeout")[0]
        for n, value in enumerate(("5s", "0", "5s", "0", "7s", "5s")):
            a.execute(f"SET statement_timeout = '{value}'")
            for i in range(2):
                assert _one(other, "show statement_timeout") == (default,)
                assert _one(a, "show statement_timeout") == (value,), f"SET number {n}, check {i}"
    finally:
        a.close()
        other.close()


def test_set_syntax_variants_are_reapplied(pooldb, pgtwist_factory):
    pg = _txn(pgtwist_factory, backend_max_connections=2, checkout_timeout=20)
    a, other, holder = _connect(pg), _connect(pg), _connect(pg)
    try:
        names = ["work_mem", "TimeZone", "search_path", "lock_timeout", "application_name",
                 "maintenance_work_mem", "statement_timeout"]
        sql = "select " + ", ".join(f"current_setting('{n}')" for n in names)
        default = dict(zip(names, _one(other, sql), strict=True))
        want = dict(default)

        def check(what):
            for i in range(4):
                if i % 2 == 0:
                    holder.execute("BEGIN")
                    holder.execute("select 1")
                assert dict(zip(names, _one(other, sql), strict=True)) == default, f"{what}: other client"
                got = dict(zip(names, _one(a, sql), strict=True))
                assert got == want, f"{what}: {got} != {want}"
                if i % 2 == 0:
                    holder.execute("COMMIT")

        a.execute("SET SESSION work_mem = '13MB'")
        want["work_mem"] = "13MB"
        check("SET SESSION")
        a.execute("SET TIME ZONE 'Europe/Paris'")
        want["TimeZone"] = "Europe/Paris"
        check("SET TIME ZONE")
        a.execute("SET search_path TO txn_s2, public")
        want["search_path"] = "txn_s2, public"
        check("SET ... TO")
        a.execute("set   Lock_Timeout=1234")
        want["lock_timeout"] = "1234ms"
        check("mixed case, no spaces")
        a.execute("SET application_name = 'it''s quoted'")
        want["application_name"] = "it's quoted"
        check("quoted literal")
        a.execute("SET statement_timeout = '7s'")
        a.execute("SET statement_timeout TO DEFAULT")
        check("SET ... TO DEFAULT")
        a.execute("RESET lock_timeout")
        want["lock_timeout"] = default["lock_timeout"]
        check("RESET one")
        a.execute("SET work_mem = '14MB'; SET maintenance_work_mem = '70MB'")
        want["work_mem"], want["maintenance_work_mem"] = "14MB", "70MB"
        check("two SETs in one simple query")
    finally:
        for c in (a, other, holder):
            c.close()


def test_set_config_function_is_reapplied(pooldb, pgtwist_factory):
    """``select set_config('TimeZone', ..., false)`` (what Django runs on connect) changes
    session state like SET does."""
    pg = _txn(pgtwist_factory, backend_max_connections=2, checkout_timeout=20)
    a, other, holder = _connect(pg), _connect(pg), _connect(pg)
    try:
        default_tz = _one(other, "show TimeZone")[0]
        assert _one(a, "select set_config('TimeZone', %s, false)", ["Asia/Tokyo"]) == (
            "Asia/Tokyo",)
        for i in range(4):
            if i % 2 == 0:
                holder.execute("BEGIN")
                holder.execute("select 1")
            assert _one(other, "show TimeZone") == (default_tz,)
            assert _one(a, "show TimeZone") == ("Asia/Tokyo",), f"check {i}"
            if i % 2 == 0:
                holder.execute("COMMIT")
    finally:
        for c in (a, other, holder):
            c.close()


def test_startup_parameters_follow_the_session(pooldb, pgtwist_factory):
    pg = _txn(pgtwist_factory, backend_max_connections=3, checkout_timeout=20)
    a = _connect(pg, application_name="txn_start_a", options="-c work_mem=12MB")
    b = _connect(pg)
    try:
        sql = "select current_setting('application_name'), current_setting('work_mem')"
        default = _one(b, sql)
        assert default != ("txn_start_a", "12MB")
        for _ in range(5):
            assert _one(a, sql) == ("txn_start_a", "12MB")
            assert _one(b, sql) == default
        a.execute("SET work_mem = '15MB'")
        assert _one(b, sql) == default
        assert _one(a, sql) == ("txn_start_a", "15MB")
        a.execute("RESET work_mem")  # back to the startup value, not the server default
        assert _one(b, sql) == default
        assert _one(a, sql) == ("txn_start_a", "12MB")
        a.execute("SET application_name = 'txn_other'")
        a.execute("RESET ALL")
        assert _one(b, sql) == default
        assert _one(a, sql) == ("txn_start_a", "12MB")
    finally:
        a.close()
        b.close()


@pytest.mark.parametrize("kind", sorted(_LEAKS))
def test_state_does_not_leak_to_the_next_client_of_the_link(pooldb, pgtwist_factory, kind):
    pg = _txn(pgtwist_factory, backend_max_connections=1, checkout_timeout=20)
    statements, a_sql, a_want = _LEAKS[kind]
    sql = ("select current_setting('work_mem'), current_setting('statement_timeout'), "
           "current_setting('application_name'), current_setting('search_path'), "
           "current_setting('TimeZone'), current_user, current_setting('role'), "
           "(select v from txn_where)")
    b = _connect(pg)
    a = _connect(pg)
    try:
        default = _one(b, sql)
        pid = _pid(b)
        for stmt in statements:
            a.execute(stmt)
        assert _one(a, a_sql) == a_want  # A's own state is there for A

        # A idle, still connected: B on the same link sees none of it
        for i in range(3):
            assert _pid(b) == pid, "the single link was replaced: the leak check is vacuous"
            assert _one(b, sql) == default, f"B saw A's state (check {i})"
            assert _one(b, "select pg_sleep(0.05), 'not cancelled'")[1] == "not cancelled"
            with pytest.raises(pgerr.InvalidSqlStatementName):
                b.execute("EXECUTE txn_leak")
            assert _one(a, a_sql) == a_want, f"A lost its state (check {i})"

        # A leaves: a new client on the link sees none of it either
        a.close()
        with _connect(pg) as c:
            assert _pid(c) == pid
            assert _one(c, sql) == default, "a new client saw the state of one that left"
            with pytest.raises(pgerr.InvalidSqlStatementName):
                c.execute("EXECUTE txn_leak")
        assert _one(b, sql) == default
    finally:
        a.close()
        b.close()
    assert_log_clean(pg)

