"""Classification work is bounded (security review 2026-12, finding 3).

Texts above the length / statement / parenthesis bounds are classified without sqlglot and
without the per-token Python passes (scan, tokens over the whole text, shape_key); what
they still report is what session-state tracking needs.  No timing assertions: the tests
check which work is done, and the bench (``python -m bench.stall``) measures the stall.
"""

from __future__ import annotations

import random

import pytest

from pgtwist.session import Session
from pgtwist.session.state import _MAX_REPLAY, _last_states
from pgtwist.sql import classify as classify_module
from pgtwist.sql import parsed as parsed_module
from pgtwist.sql.classify import MAX_LENGTH, MAX_PARENS, MAX_STATEMENTS, Classifier
from pgtwist.sql.info import PRIMARY
from pgtwist.sql.split import split_statements, statement_ends

MB = 900_000

SHAPES = {
    "semicolons": "select 1;" * 100_000,
    "nested_parens": "select " + "(" * 450_000 + "1" + ")" * 450_000,
    "select_list": "select " + ",".join(f"c{i}" for i in range(150_000))[:MB],
    "in_list": "select * from t where id in (" + ",".join(map(str, range(100_000))) + ")",
    "statements_20k": "".join(f"insert into t{i} values ({i}, 'x');" for i in range(20_000)),
    "multirow_insert": "insert into s.t (a, b) values "
                       + ",".join(f"({i}, 'name {i}', now())" for i in range(36_000)),
    "long_string": "select '" + "x" * MB + "'",
    "deep_comment": "select 1 /*" + "/*" * 300_000 + "*/" * 300_000 + "*/",
    "line_comments": "select 1 -- c\n" * 70_000,
}


@pytest.fixture
def no_full_parse(monkeypatch):
    """Fail if a bounded text reaches the expensive passes."""
    def forbidden(name, real):
        def check(text, *args, **kwargs):
            if name == "_sqlglot" or len(text) > 2048:
                raise AssertionError(f"{name} ran on a bounded text ({len(text)} chars)")
            return real(text, *args, **kwargs)
        return check
    for module, name in ((parsed_module, "_sqlglot"), (classify_module, "shape_key"),
                         (classify_module, "scan"), (parsed_module, "shorten_lists"),
                         (classify_module, "tokens")):
        monkeypatch.setattr(module, name, forbidden(name, getattr(module, name)))


@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_big_texts_are_bounded(no_full_parse, shape):
    clf = Classifier()
    info = clf.classify(SHAPES[shape])
    assert info.bounded and info.parse_error
    assert info.route == PRIMARY and info.is_write and not info.is_read
    assert clf.stats.bounded == 1 and len(clf) == 0  # never cached (keys of megabytes)


def test_bounded_head_keeps_transaction_control(no_full_parse):
    clf = Classifier()
    tail = "; insert into t values (1)" * 100
    info = clf.classify("BEGIN ISOLATION LEVEL SERIALIZABLE" + tail)
    assert (info.command, info.multi_statement, info.serializable) == ("BEGIN", True, True)
    assert clf.classify("  ;; commit" + tail).command == "COMMIT"
    assert clf.classify("ROLLBACK" + tail).command == "ROLLBACK"
    info = clf.classify("set search_path = 'a;b'" + tail)
    assert (info.command, info.multi_statement) == ("SET", True)
    # Not parsed: the statement after the head might read or write anything.
    assert info.route == PRIMARY and info.is_write


def test_bounded_single_statement_knows_its_dml_target(no_full_parse):
    clf = Classifier()
    info = clf.classify(SHAPES["multirow_insert"])
    assert (info.command, info.tables_written, info.multi_statement) == (
        "INSERT", ("s.t",), False)
    info = clf.classify("UPDATE ONLY \"T\" SET a = 1 WHERE id IN ("
                        + ",".join(map(str, range(5000))) + ")")
    assert (info.command, info.tables_written) == ("UPDATE", ("T",))
    info = clf.classify("DELETE FROM t WHERE id IN (" + ",".join(map(str, range(5000))) + ")")
    assert (info.command, info.tables_written) == ("DELETE", ("t",))
    info = clf.classify(SHAPES["in_list"])
    assert (info.command, info.tables_written) == ("UNKNOWN", ())


def test_each_bound_applies():
    clf = Classifier()
    assert not clf.classify("select 1" + " " * (MAX_LENGTH - 8)).bounded
    assert clf.classify("select 1" + " " * (MAX_LENGTH - 7)).bounded
    assert not clf.classify("select 1;" * MAX_STATEMENTS).bounded
    assert clf.classify("select 1;" * (MAX_STATEMENTS + 1)).bounded
    parens = MAX_PARENS // 2
    assert not clf.classify("select " + "(" * parens + "1" + ")" * parens).bounded
    assert clf.classify("select " + "(" * (MAX_PARENS + 1) + "1" + ")" * (MAX_PARENS + 1)).bounded


def test_bounds_are_settable():
    sql = "select * from t where id in (" + ",".join(map(str, range(20_000))) + ")"
    assert Classifier().classify(sql).bounded
    info = Classifier(max_length=1 << 20).classify(sql)
    assert not info.bounded and info.tables_read == ("t",) and info.is_read
    assert Classifier(max_length=0).classify("select 1").bounded


def test_big_multi_statement_texts_split_exactly():
    parts = split_statements(SHAPES["semicolons"])
    assert len(parts) == 100_000 and set(parts) == {"select 1"}
    text = "set a = 'x;y'; /* c; /* nested; */ ; */ select $q$;$q$; select E'\\';'; -- ;\nreset b"
    one = split_statements(text)
    assert one == ["set a = 'x;y'", "/* c; /* nested; */ ; */ select $q$;$q$",
                   "select E'\\';'", "-- ;\nreset b"]
    assert split_statements((text + ";") * 1000) == one * 1000
    assert list(statement_ends("a;b", 2)) == [(2, 3)]


def test_pathological_nested_comment_is_cut_short():
    # More nested comment edges than the splitter follows: the rest counts as comment
    # (bounded work; such texts pin their session in transaction pooling).
    text = "set a = 1; /*" + "/*" * 20_000 + "*/" * 20_001 + "; set b = 2"
    assert split_statements(text)[0] == "set a = 1"
    assert len(split_statements(text)) == 2


def _replay_one_by_one(start, parts):
    s = Session(pid=1, secret=1, replay=list(start))
    for part in parts:
        s._remember_state(part)
    return s.replay


def test_last_states_record_the_same_as_one_by_one():
    rng = random.Random(3)
    words = [f"SET v{i} = 1" for i in range(300)] + ["RESET ALL", "SET LOCAL x = 1",
                                                    "DISCARD ALL", "SET TRANSACTION READ ONLY"]
    for _ in range(200):
        parts = [rng.choice(words) for _ in range(rng.randint(_MAX_REPLAY + 1, 900))]
        start = [f"SET old{i} = 1" for i in range(rng.randint(0, 5))]
        s = Session(pid=1, secret=1, replay=list(start))
        for part in _last_states(parts):
            s._remember_state(part)
        assert s.replay == _replay_one_by_one(start, parts)
