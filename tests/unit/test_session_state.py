"""Session-state bookkeeping for links a session uses later: statement splitting and the
SET/RESET record (pgtwist.session.state.Session)."""

from __future__ import annotations

import pytest

from pgtwist.pooling.statements import pin_reason
from pgtwist.session import Session
from pgtwist.sql.classify import Classifier
from pgtwist.sql.split import split_statements


@pytest.mark.parametrize("sql, parts", [
    ("SET a = 1; SET b = 2", ["SET a = 1", "SET b = 2"]),
    ("select 1;", ["select 1"]),
    (";; select 1 ;;", ["select 1"]),
    ("select 'a;b'; select 2", ["select 'a;b'", "select 2"]),
    ("select 'it''s;'; x", ["select 'it''s;'", "x"]),
    ("select E'\\';'; y", ["select E'\\';'", "y"]),
    ("select '\\'; z", ["select '\\'", "z"]),  # standard strings: the backslash is literal
    ('select "a;""b"; w', ['select "a;""b"', "w"]),
    ("select $$a;b$$; v", ["select $$a;b$$", "v"]),
    ("select $f$ $$; $f$; u", ["select $f$ $$; $f$", "u"]),
    ("select a$1; t", ["select a$1", "t"]),
    ("select 1 -- c;d\n; s", ["select 1 -- c;d", "s"]),
    ("select /* a /* b; */ c; */ 1; r", ["select /* a /* b; */ c; */ 1", "r"]),
    ("select 'unterminated; q", ["select 'unterminated; q"]),
])
def test_split_statements(sql, parts):
    assert split_statements(sql) == parts


def _session(*replay):
    return Session(pid=1, secret=1, replay=list(replay))


def test_state_is_recorded_in_order():
    s = _session()
    s._remember_state("SET a = 1")
    s._remember_state("SET b = 2")
    assert s.replay == ["SET a = 1", "SET b = 2"]


def test_setting_a_value_back_moves_its_statement_last():
    s = _session()
    for sql in ("SET t = '5s'", "SET t = '0'", "SET t = '5s'"):
        s._remember_state(sql)
    assert s.replay == ["SET t = '0'", "SET t = '5s'"]  # replayed in order: ends at 5s


@pytest.mark.parametrize("sql", ["SET LOCAL a = 1", "set transaction isolation level serializable",
                                 "  SET   LOCAL x TO 2"])
def test_transaction_scoped_settings_are_not_recorded(sql):
    s = _session("SET a = 0")
    s._remember_state(sql)
    assert s.replay == ["SET a = 0"]


@pytest.mark.parametrize("sql", ["RESET ALL", "discard all", " Reset  All;"])
def test_reset_all_clears_the_record(sql):
    s = _session("SET a = 0", "SET b = 1")
    s._remember_state(sql)
    assert s.replay == []


def test_single_resets_are_recorded():
    s = _session("SET a = 0")
    s._remember_state("RESET a")
    assert s.replay == ["SET a = 0", "RESET a"]


@pytest.fixture(scope="module")
def classify():
    return Classifier().classify


@pytest.mark.parametrize("sql, pinned", [
    ("select set_config('work_mem', '64MB', false)", True),
    ("select set_config('myapp.user', $1, false)", True),
    ("select set_config($1, $2, false)", True),
    ("select set_config('TimeZone', $1, false)", False),      # reported: tracked
    ("select set_config('application_name', 'x', false)", False),
    ("select set_config('work_mem', '64MB', true)", False),   # transaction-local
])
def test_set_config_pins_unless_tracked_or_local(classify, sql, pinned):
    assert (pin_reason(classify(sql), sql) == "set_config") is pinned


def _txn_session(*replay):
    return Session(pid=1, secret=1, replay=list(replay), route_status="T")


def _savepoint(s, command: str, sql: str) -> None:
    s.statement_sent(Classifier().classify(sql), 0, sql)


def test_rollback_to_a_savepoint_forgets_later_sets():
    s = _txn_session("SET a = 1")
    _savepoint(s, "SAVEPOINT", "SAVEPOINT sp1")
    s._remember_state("SET b = 2")
    _savepoint(s, "SAVEPOINT", 'savepoint "Sp2"')
    s._remember_state("SET c = 3")
    _savepoint(s, "ROLLBACK TO", 'ROLLBACK TO SAVEPOINT "Sp2"')
    assert s.replay == ["SET a = 1", "SET b = 2"]
    s._remember_state("SET d = 4")
    _savepoint(s, "ROLLBACK TO", "rollback work to sp1")
    assert s.replay == ["SET a = 1"]
    assert [name for name, _ in s.savepoints] == ["sp1"]  # a savepoint outlives ROLLBACK TO


def test_release_keeps_the_sets_and_drops_the_savepoint():
    s = _txn_session()
    _savepoint(s, "SAVEPOINT", "SAVEPOINT sp")
    s._remember_state("SET a = 1")
    _savepoint(s, "RELEASE", "RELEASE SAVEPOINT sp")
    assert s.replay == ["SET a = 1"] and s.savepoints == []
    _savepoint(s, "ROLLBACK TO", "ROLLBACK TO sp")  # unknown now: nothing happens
    assert s.replay == ["SET a = 1"]
