"""Identifier folding (sql/idents.py), statement-text facts (sql/state.py), the QueryInfo fields
the classifier fills from them, and the router's session bookkeeping that reads those fields."""

from types import SimpleNamespace

import pytest

from pgtwist.config import parse_config
from pgtwist.router import Router
from pgtwist.session import Session, SqlPrepared
from pgtwist.sql import state
from pgtwist.sql.classify import Classifier
from pgtwist.sql.idents import fold, fold_name, split_qualified, strip_quotes
from pgtwist.testing import fake_cluster

# --- idents -------------------------------------------------------------------------------------


def test_fold():
    assert fold("MyTable") == "mytable"
    assert fold('"MyTable"') == "MyTable"
    assert fold('"a""b"') == 'a"b'
    assert fold('"') == '"'          # not a quoted identifier: folded as a word
    assert fold_name("MyTable", quoted=True) == "MyTable"
    assert fold_name("MyTable", quoted=False) == "mytable"


def test_strip_quotes_and_split_qualified():
    assert strip_quotes('"My""T"') == 'My"T'
    assert strip_quotes("MyT") == "MyT"   # already folded names keep their case
    assert split_qualified("public.t") == ("public", "t")
    assert split_qualified("a.b.t") == ("a.b", "t")
    assert split_qualified("t") == (None, "t")


# --- state: one statement's text ------------------------------------------------------------------


@pytest.mark.parametrize(("text", "local", "reset", "discard"), [
    ("SET LOCAL work_mem = 1", True, False, False),
    ("  set transaction isolation level serializable", True, False, False),
    ("SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY", False, False, False),
    ("SET work_mem = 1", False, False, False),
    ("SET localtime = 1", False, False, False),
    ("RESET ALL", False, True, False),
    ("reset all;", False, True, False),
    ("RESET work_mem", False, False, False),
    ("DISCARD ALL", False, True, True),
    ("DISCARD TEMP", False, False, False),
])
def test_setting_facts(text, local, reset, discard):
    assert (state.set_local(text), state.reset_all(text), state.discard_all(text)) == (
        local, reset, discard)


def test_setting_statements_of_a_multi_statement_text():
    sql = "SET a = 1; SELECT 'SET b = 2'; reset c; DISCARD ALL; DISCARD TEMP; SETx"
    assert state.may_change_settings(sql)
    assert state.setting_statements(sql) == ["SET a = 1", "reset c", "DISCARD ALL"]
    assert not state.may_change_settings("SELECT 1; SELECT settings FROM t")


@pytest.mark.parametrize(("text", "name"), [
    ("SAVEPOINT Sp1", "sp1"),
    ('savepoint "Sp 2"', "Sp 2"),
    ('RELEASE SAVEPOINT "a""b"', 'a"b'),
    ("RELEASE savepoint", "savepoint"),
    ("ROLLBACK WORK TO SAVEPOINT x", "x"),
    ("rollback transaction to y;", "y"),
    ("ROLLBACK", None),
    ("SELECT 1", None),
])
def test_savepoint_name(text, name):
    assert state.savepoint_name(text) == name


def test_last_name():
    assert state.last_name("FETCH 10 FROM Cur") == "cur"
    assert state.last_name('CLOSE "My Cur";') == "My Cur"
    assert state.last_name("FETCH 10") is None


# --- QueryInfo fields ---------------------------------------------------------------------------


@pytest.fixture
def classify():
    return Classifier().classify


def test_classifier_records_setting_facts(classify):
    assert classify("SET LOCAL a = 1").set_local
    assert classify("SET TRANSACTION READ ONLY").set_local
    assert not classify("SET a = 1").set_local
    assert classify("/* hint */ SET LOCAL a = 1").set_local   # comments do not hide it
    info = classify("DISCARD ALL")
    assert (info.reset_all, info.discard_all) == (True, True)
    info = classify("RESET ALL")
    assert (info.reset_all, info.discard_all) == (True, False)
    info = classify("DISCARD PLANS")
    assert (info.reset_all, info.discard_all) == (False, False)
    assert not classify("RESET a").reset_all


def test_classifier_records_savepoint_names(classify):
    assert classify("SAVEPOINT A").savepoint_name == "a"
    assert classify('RELEASE SAVEPOINT "A"').savepoint_name == "A"
    assert classify("ROLLBACK TO SAVEPOINT b").savepoint_name == "b"
    assert classify("-- why\nSAVEPOINT c").savepoint_name == "c"
    assert classify("ROLLBACK").savepoint_name is None
    # Names are not literals: texts that differ only in the name do not share an answer.
    assert classify("SAVEPOINT sp1").savepoint_name == "sp1"
    assert classify("SAVEPOINT sp2").savepoint_name == "sp2"


def test_classifier_records_cursor_names(classify):
    assert classify("DECLARE Cur CURSOR FOR SELECT 1").cursor_name == "cur"
    assert classify('DECLARE "Cur" BINARY CURSOR WITH HOLD FOR SELECT 1').cursor_name == "Cur"
    assert classify("FETCH 10 FROM c1").cursor_name == "c1"
    assert classify("FETCH 20 FROM c1").cursor_name == "c1"
    assert classify("FETCH 20 FROM c2").cursor_name == "c2"
    assert classify("MOVE LAST IN c -- to the end").cursor_name == "c"
    assert classify('CLOSE "C"').cursor_name == "C"
    assert classify("CLOSE ALL").cursor_name is None
    assert classify("SELECT 1").cursor_name is None


def test_multi_statement_and_bounded_texts_describe_their_first_statement(classify):
    info = classify("DISCARD ALL; SELECT 1")
    assert info.multi_statement and info.discard_all and info.reset_all
    assert classify("SAVEPOINT a; SET x = 1").savepoint_name == "a"
    assert not classify("SELECT 1; DISCARD ALL").discard_all
    bounded = Classifier(max_length=64).classify("SAVEPOINT s; " + "SELECT 1; " * 20)
    assert bounded.bounded and bounded.savepoint_name == "s"
    bounded = Classifier(max_length=64).classify("DISCARD ALL; " + "SELECT 1; " * 20)
    assert bounded.bounded and bounded.discard_all


# --- the router's bookkeeping reads them ----------------------------------------------------------


def _router():
    config = parse_config({"backends": [{"hostname": "p"}, {"hostname": "s"}]}, path=None,
                          env={})
    nodes = [SimpleNamespace(select_cnt=0, count=lambda command: None) for _ in range(2)]
    return Router(SimpleNamespace(cluster=SimpleNamespace(view=lambda: fake_cluster(2),
                                                          nodes=nodes, version=0)), config)


def _run(router, s, sql):
    router.after_statement(s, router.classify(sql), None, 0, sql)


def test_router_replays_session_settings_only():
    router, s = _router(), Session(1, 2, primary_id=0, lb_node=1)
    _run(router, s, "SET a = 1")
    _run(router, s, "/* x */ SET LOCAL b = 2")   # the comment used to hide SET LOCAL
    _run(router, s, "SET c = 3; SET LOCAL d = 4")
    assert s.replay == ["SET a = 1", "SET c = 3"]
    _run(router, s, "/* x */ RESET ALL")
    assert s.replay == []


def test_router_follows_savepoints_by_their_folded_names():
    router, s = _router(), Session(1, 2, primary_id=0, lb_node=1)
    _run(router, s, "BEGIN")
    _run(router, s, "SET a = 1")
    _run(router, s, "-- c\nSAVEPOINT Sp")
    _run(router, s, "SET b = 2")
    _run(router, s, "ROLLBACK TO sp")
    assert s.replay == ["SET a = 1"]
    assert [name for name, _ in s.savepoints] == ["sp"]


def test_router_forgets_sql_prepared_statements_at_discard_all():
    router, s = _router(), Session(1, 2, primary_id=0, lb_node=1)
    s.sql_prepared["p"] = SqlPrepared("PREPARE p AS SELECT 1", router.classify("SELECT 1"), {0})
    _run(router, s, "DISCARD PLANS")
    assert "p" in s.sql_prepared
    _run(router, s, "discard all")
    assert s.sql_prepared == {}


@pytest.mark.parametrize(("text", "temp", "read_only"), [
    ("DISCARD TEMP", True, False),
    ("discard temporary", True, False),
    ("DISCARD ALL", True, False),
    ("DISCARD PLANS", False, False),
    ("SET TRANSACTION ISOLATION LEVEL SERIALIZABLE, READ ONLY", False, True),
    ("SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY", False, True),
    ("SET transaction_read_only TO 'on'", False, True),
    ("SET LOCAL transaction_read_only = true", False, True),
    ("SET transaction_read_only = off", False, False),
    ("SET TRANSACTION READ WRITE", False, False),
])
def test_discard_temp_and_read_only_sets(text, temp, read_only):
    assert (state.discard_temp(text), state.sets_read_only(text)) == (temp, read_only)


def test_session_state_facts_of_texts_that_pin_a_transaction_pooled_session():
    assert state.with_hold("DECLARE c CURSOR with  hold FOR SELECT 1")
    assert not state.with_hold("DECLARE c CURSOR WITHOUT HOLD FOR SELECT 1")
    assert state.sets_session_authorization("  set session session authorization bob")
    assert state.sets_session_authorization("SET SESSION AUTHORIZATION bob")
    assert not state.sets_session_authorization("SET LOCAL SESSION AUTHORIZATION bob")
    assert state.session_set_config_names("select set_config('Search_Path', 'x', false)") == \
        frozenset({"search_path"})
    assert state.session_set_config_names("select set_config(name, 'x', false)") == frozenset()
    assert state.session_set_config_names("select set_config('work_mem', '1MB', true)") is None
    assert state.may_keep_state("select 1; LISTEN x") and state.may_keep_state("create TEMP table")
    assert not state.may_keep_state("select settings from t")
