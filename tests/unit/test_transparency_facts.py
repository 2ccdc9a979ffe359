"""SQL facts and routing for issue 11's transparency fixes, with literal values."""

from __future__ import annotations

import pytest

from pgtwist.routing import builtin
from pgtwist.routing.values import UNDECIDED, Target
from pgtwist.sql.classify import Classifier
from pgtwist.testing import make_query, make_request


@pytest.mark.parametrize("sql, expected", [
    ("SHOW transaction_isolation", True),
    ("show TRANSACTION_READ_ONLY", True),
    ('SHOW "transaction_deferrable"', True),
    ("SHOW TRANSACTION ISOLATION LEVEL", True),
    ("SHOW ALL", True),
    ("SHOW work_mem", False),
    ("SHOW default_transaction_isolation", False),
    ("SELECT current_setting('transaction_isolation')", True),
    ("SELECT current_setting('Transaction_Read_Only', true)", True),
    ("SELECT pg_catalog.current_setting('transaction_deferrable')", True),
    ("SELECT x FROM t WHERE current_setting('transaction_read_only') = 'on'", True),
    ("SELECT current_setting($1)", True),          # the name is not known: maybe one
    ("SELECT current_setting(name) FROM t", True),
    ("SELECT current_setting('work_mem')", False),
    ("SELECT current_setting('search_path'), 1", False),
    ("SELECT 'transaction_isolation'", False),
    ("SELECT 1", False),
])
def test_reads_txn_setting(sql, expected):
    assert Classifier().classify(sql).reads_txn_setting is expected


def test_current_setting_is_cached_by_its_literal():
    """Two current_setting() calls that differ only in the literal share a shape key:
    the second must not get the first's classification from the cache."""
    c = Classifier()
    assert not c.classify("SELECT current_setting('work_mem')").reads_txn_setting
    assert c.classify("SELECT current_setting('transaction_isolation')").reads_txn_setting
    assert not c.classify("SELECT current_setting('statement_timeout')").reads_txn_setting
    # Other literals still share a shape.
    c.classify("SELECT 1 FROM t WHERE a = 5")
    misses = c.stats.misses
    c.classify("SELECT 1 FROM t WHERE a = 6")
    assert c.stats.misses == misses


@pytest.mark.parametrize("sql, database", [
    ("DROP DATABASE gone", "gone"),
    ("drop database if exists gone", "gone"),
    ('DROP DATABASE "Mixed Case" WITH (FORCE)', "Mixed Case"),
    ("DROP DATABASE Folded", "folded"),
    ("ALTER DATABASE old RENAME TO new", "old"),
    ("ALTER DATABASE moved SET TABLESPACE elsewhere", "moved"),
    ("CREATE DATABASE copy TEMPLATE source", "source"),
    ("CREATE DATABASE copy WITH OWNER me TEMPLATE = source ENCODING 'UTF8'", "source"),
    ("ALTER DATABASE db SET work_mem = '1MB'", None),
    ("ALTER DATABASE db OWNER TO me", None),
    ("CREATE DATABASE plain", None),
    ("DROP TABLE gone", None),
    ("DROP SCHEMA database", None),
    ("SELECT 1", None),
])
def test_exclusive_database(sql, database):
    info = Classifier().classify(sql)
    assert info.exclusive_database == database


def _statement_policy():
    _keys, parse, cls = builtin.POLICIES["statement"]
    return cls(parse({}, ""))


def test_transaction_setting_reads_go_to_the_primary():
    d = _statement_policy().route(make_request(make_query("SHOW", reads_txn_setting=True)))
    assert d.target is Target.PRIMARY
    assert "transaction setting" in d.reason
    assert _statement_policy().route(make_request(make_query("SHOW"))) is UNDECIDED
