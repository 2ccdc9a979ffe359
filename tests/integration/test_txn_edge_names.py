"""Transaction pooling edge cases: statement names (failed Parse or PREPARE, aborted
transactions, another session's names, DISCARD ALL that fails).
"""

from __future__ import annotations

import pytest

from .rawpg import (
    SYNC,
    bind,
    codes_of,
    errors_of,
    execute,
    parse,
    rows_of,
)
from .txnedge_util import (
    _client,
    _daemon,
    _sqlstates,
    _status,
    pooldb,  # noqa: F401  (a fixture)
)

pytestmark = pytest.mark.integration


def test_unnamed_statement_of_another_session_is_not_visible(pooldb, pgtwist_factory):
    pg = _daemon(pgtwist_factory, links=1)
    with _client(pg) as a, _client(pg) as b:
        a.send(parse("select 'secret of a'::text"), SYNC)
        assert codes_of(a.read_until()) == "1Z"
        b.send(bind(), execute(), SYNC)
        msgs = b.read_until()
        assert rows_of(msgs) == [], msgs
        assert _sqlstates(msgs) == ["26000"]


def test_failed_parse_does_not_reserve_its_name(pooldb, pgtwist_factory):
    pg = _daemon(pgtwist_factory, links=1)
    with _client(pg) as c:
        c.send(parse("select nope from", "s"), SYNC)
        msgs = c.read_until()
        assert _sqlstates(msgs) == ["42601"]
        c.send(parse("select 'fixed'::text", "s"), bind(statement="s"), execute(), SYNC)
        msgs = c.read_until()
        assert codes_of(msgs) == "12DCZ", errors_of(msgs)
        assert rows_of(msgs) == [["fixed"]]


def test_parse_in_an_aborted_transaction_is_refused(pooldb, pgtwist_factory):
    pg = _daemon(pgtwist_factory, links=1)
    with _client(pg) as c:
        c.send(parse("select 5", "warm"), SYNC)  # the link now holds this text
        assert codes_of(c.read_until()) == "1Z"
        c.rows("begin")
        assert _sqlstates(c.simple("select 1/0")) == ["22012"]
        c.send(parse("select 5", "late"), SYNC)
        msgs = c.read_until()
        assert codes_of(msgs) == "EZ", msgs
        assert _sqlstates(msgs) == ["25P02"] and _status(msgs) == "E"
        c.rows("rollback")
        c.send(bind(statement="late"), execute(), SYNC)
        assert _sqlstates(c.read_until()) == ["26000"]


def test_failed_sql_prepare_does_not_reserve_its_name(pooldb, pgtwist_factory):
    pg = _daemon(pgtwist_factory, links=1)
    with _client(pg) as c:
        assert _sqlstates(c.simple("PREPARE q AS SELECT * FROM txr_no_such_table")) == ["42P01"]
        msgs = c.simple("PREPARE q AS SELECT 'fixed'::text")
        assert _sqlstates(msgs) == [], errors_of(msgs)
        assert c.rows("EXECUTE q") == [["fixed"]]


def test_prepare_in_a_multi_statement_query_can_be_executed_later(pooldb, pgtwist_factory):
    pg = _daemon(pgtwist_factory, links=1)
    with _client(pg) as c:
        msgs = c.simple("PREPARE mq AS SELECT 'multi'::text; EXECUTE mq")
        assert rows_of(msgs) == [["multi"]], errors_of(msgs)
        msgs = c.simple("EXECUTE mq")
        assert rows_of(msgs) == [["multi"]], errors_of(msgs)


def test_two_sessions_prepare_and_deallocate_one_sql_name(pooldb, pgtwist_factory):
    pg = _daemon(pgtwist_factory, links=1)
    with _client(pg) as a, _client(pg) as b:
        for i in range(3):
            a.rows(f"PREPARE same AS SELECT 'a{i}'::text")
            b.rows(f"PREPARE same AS SELECT 'b{i}'::text")
            assert a.rows("EXECUTE same") == [[f"a{i}"]]
            assert b.rows("EXECUTE same") == [[f"b{i}"]]
            a.rows("DEALLOCATE same")
            assert b.rows("EXECUTE same") == [[f"b{i}"]]
            assert _sqlstates(a.simple("EXECUTE same")) == ["26000"]
            b.rows("DEALLOCATE same")


def test_failed_discard_all_keeps_the_prepared_statements(pooldb, pgtwist_factory):
    pg = _daemon(pgtwist_factory, links=1)
    with _client(pg) as c:
        c.send(parse("select 'kept'::text", "k"), SYNC)
        assert codes_of(c.read_until()) == "1Z"
        c.rows("begin")
        assert _sqlstates(c.simple("DISCARD ALL")) == ["25001"]
        c.rows("rollback")
        c.send(bind(statement="k"), execute(), SYNC)
        msgs = c.read_until()
        assert rows_of(msgs) == [["kept"]], errors_of(msgs)


def test_failed_discard_all_keeps_the_pin(pooldb, pgtwist_factory):
    pg = _daemon(pgtwist_factory, links=2)
    with _client(pg) as a, _client(pg) as b:
        a.rows("create temp table txr_tmp (v int)")
        a.rows("begin")
        assert _sqlstates(a.simple("DISCARD ALL")) == ["25001"]
        a.rows("rollback")
        assert a.rows("select to_regclass('pg_temp.txr_tmp')::text") == [["txr_tmp"]]
        for _ in range(3):  # b never lands on a's link
            assert b.rows("select to_regclass('pg_temp.txr_tmp')::text") == [[None]]

