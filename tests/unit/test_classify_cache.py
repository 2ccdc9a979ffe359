"""The classification cache: literal-normalised keys, LRU bound, counters."""

from __future__ import annotations

import pytest

from pgtwist.sql.classify import Classifier
from pgtwist.sql.info import BOTH, EITHER, PRIMARY
from pgtwist.sql.normalize import shape_key


@pytest.fixture
def clf() -> Classifier:
    return Classifier()


def test_statements_differing_only_in_literals_share_an_entry(clf):
    first = clf.classify("select * from t where id = 1")
    second = clf.classify("select * from t where id = 2")
    third = clf.classify("SELECT * FROM t WHERE id = 'x'")
    assert first is second
    assert third is not first                    # different keywords' case: own shape
    assert (clf.stats.hits, clf.stats.misses) == (1, 2)
    assert len(clf) == 2


@pytest.mark.parametrize("a,b", [
    ("select * from t where s = 'it''s' and n = 1.5e3", "select * from t where s = '' and n = 7"),
    ("select E'a\\'b', x from t", "select E'z\\\\z', x from t"),
    ("select $$a$$, $q$ ' ; $q$ from t", "select $x$b$x$, 'c' from t"),
    ("select * from t where id in (1, 2, 3)", "select * from t where id in (4, 5, 6, 7, 8, 9)"),
    ("insert into t values (1, 'a'), (2, 'b')", "insert into t values (3, 'c'), (4, 'd'), (5, 'e')"),
    ("select  *\n  from t\twhere a = 1", "select * from t where a = 2"),
    ("select * from t where a = 1 -- note\n", "select * from t where a = 2 -- note\n"),
    ("/* tag */ select 1", "/*  tag  */ select 2"),
])
def test_equal_shapes(clf, a, b):
    assert shape_key(a) == shape_key(b)
    assert clf.classify(a) is clf.classify(b)


@pytest.mark.parametrize("a,b", [
    ("select * from t1", "select * from t2"),
    ('select * from "1a"', 'select * from "2a"'),
    ('select * from "my  table"', 'select * from "my table"'),
    ("select 1 -- c\n; delete from t", "select 1 -- c ; delete from t"),
    ("select E'\\'', x from t1 where y = 'z'", "select E'\\'', x from t2 where y = 'z'"),
    ("/*NO LOAD BALANCE*/ select 1", "/*x*/ select 1"),
    ("select 1", "select 1; select 2"),
    ("select f(1)", "select g(1)"),
    ("/* a /* b */ '*/ select 1 -- '", "/* a /* b */ '*/ delete from t -- '"),
    ("select 1; -- c\rdelete from t1", "select 1; -- c\rdelete from t2"),
])
def test_different_shapes(clf, a, b):
    assert shape_key(a) != shape_key(b)
    assert clf.classify(a) != clf.classify(b)


def test_nested_comments_and_carriage_returns_are_read_like_postgresql(clf):
    assert clf.classify("/* a /* b */ '*/ delete from t -- '").command == "DELETE"
    info = clf.classify("select 1; -- c\rdelete from t")
    assert info.multi_statement and info.tables_written == ("t",)


@pytest.mark.parametrize("a,b", [
    ("SET transaction_read_only = on", "SET transaction_read_only = off"),
    ("SET transaction_read_only = 1", "SET transaction_read_only = 0"),
    ("SET transaction_read_only = 'true'", "SET transaction_read_only = 'false'"),
    ("SET transaction_isolation = 'read committed'", "SET transaction_isolation = 'serializable'"),
    ("SET default_transaction_isolation TO 'repeatable read'",
     "SET default_transaction_isolation TO 'serializable'"),
    ("select 1; SET transaction_read_only = 1", "select 1; SET transaction_read_only = 0"),
])
def test_set_values_are_not_conflated(clf, a, b):
    for _ in range(2):                             # cold, then from the cache
        first, second = clf.classify(a), clf.classify(b)
        assert first.route != PRIMARY or first.multi_statement
        assert second.route == PRIMARY
        assert first.read_write or first.serializable is False
        assert (second.read_write or second.serializable)
        assert not (first.read_write or first.serializable)
    assert clf.stats.hits == 2


def test_set_with_same_value_is_a_hit(clf):
    assert clf.classify("SET application_name = 'a'").route == BOTH
    clf.classify("SET application_name = 'a'")
    assert (clf.stats.hits, clf.stats.misses) == (1, 1)


def test_classify_parse_shares_entries_with_literal_text(clf):
    literal = clf.classify("SELECT * FROM users WHERE id = 42 LIMIT 1")
    param = clf.classify_parse("SELECT * FROM users WHERE id = $1 LIMIT $2")
    assert param is literal
    assert (param.route, param.tables_read) == (EITHER, ("users",))
    assert (clf.stats.hits, clf.stats.misses) == (1, 1)
    # The parameterised text recurs verbatim: it now hits by exact text.
    assert clf.classify_parse("SELECT * FROM users WHERE id = $1 LIMIT $2") is literal
    assert clf.stats.hits == 2


def test_classify_parse_placeholders_everywhere(clf):
    info = clf.classify_parse("UPDATE t SET a = $1, b = $2::jsonb WHERE id = ANY($3::int[])")
    assert (info.command, info.route, info.tables_written) == ("UPDATE", PRIMARY, ("t",))
    assert not info.parse_error
    again = clf.classify_parse("UPDATE t SET a = $9, b = $8::jsonb WHERE id = ANY($7::int[])")
    assert again is info


def test_lru_eviction():
    clf = Classifier(cache_size=2)
    a, b, c = "select * from a", "select * from b", "select * from c"
    clf.classify(a)
    clf.classify(b)
    clf.classify(a)            # hit: a is now the most recently used
    clf.classify(c)            # evicts b
    assert len(clf) == 2
    hits = clf.stats.hits
    clf.classify(a)
    assert clf.stats.hits == hits + 1
    clf.classify(b)
    assert clf.stats.hits == hits + 1 and clf.stats.misses == 4


def test_size_is_bounded():
    clf = Classifier(cache_size=10)
    for i in range(100):
        clf.classify(f"select * from t{i} where id = $1")
    assert len(clf) <= 10
    assert clf.stats.misses == 100


def test_counters(clf):
    clf.classify("select 1")
    clf.classify("select 2")
    clf.classify("select * from")          # parse error
    clf.classify("select * from")          # cached
    clf.classify("select 'a' +")           # parse errors are cached by exact text only
    clf.classify("select 'b' +")
    assert clf.stats.hits == 2
    assert clf.stats.misses == 4
    assert clf.stats.parse_errors == 3


def test_leading_whitespace_matters_when_not_ignored():
    clf = Classifier(ignore_leading_white_space=False)
    assert clf.classify("select 1").route == EITHER
    assert clf.classify(" select 2").route == PRIMARY
    assert clf.classify("\tselect 3").route == PRIMARY
    assert clf.classify("select 4").route == EITHER


def test_whitespace_inside_strings_and_names_is_not_folded_into_other_names(clf):
    a = clf.classify('select "a  b" from "x  y"')
    b = clf.classify('select "a b" from "x y"')
    assert a.tables_read == ("x  y",) and b.tables_read == ("x y",)
