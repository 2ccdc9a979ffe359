"""Transaction pooling, sans-IO: stale statements retired, SQL EXECUTE of a protocol-level
statement renamed (issue 11)."""

from __future__ import annotations

import struct

import pytest

from pgtwist.pooling.statements import (
    StatementRegistry,
    execute_sql,
    parse_frame,
    parse_rest,
    stale_plan,
)
from pgtwist.wire import messages as m


def _rest(sql: bytes) -> bytes:
    return sql + b"\0" + struct.pack("!H", 0)


def _error_body(sqlstate: str, message: str) -> bytes:
    return m.error_response(sqlstate, message)[5:]


def test_retire_gives_the_text_a_fresh_name():
    reg = StatementRegistry()
    old = reg.name_for(_rest(b"select * from t"))
    assert reg.retire(_rest(b"select * from t"), old)
    new = reg.name_for(_rest(b"select * from t"))
    assert new != old
    assert reg.name_for(_rest(b"select * from t")) == new


def test_retire_of_a_name_the_text_no_longer_has_changes_nothing():
    reg = StatementRegistry()
    old = reg.name_for(_rest(b"select 1"))
    reg.retire(_rest(b"select 1"), old)
    new = reg.name_for(_rest(b"select 1"))
    assert not reg.retire(_rest(b"select 1"), old)   # a second error of the old copies
    assert reg.name_for(_rest(b"select 1")) == new
    assert not reg.retire(_rest(b"select 2"), new)   # a text never named


def test_parse_rest_is_the_body_after_the_name():
    rest = _rest(b"select $1::int")
    assert parse_rest(parse_frame(b"pgtwist_7", rest)) == rest
    assert parse_rest(parse_frame(b"", rest)) == rest


def test_stale_plan_error():
    assert stale_plan(_error_body("0A000", "cached plan must not change result type"))
    assert not stale_plan(_error_body("0A000", "cannot do that"))
    assert not stale_plan(_error_body("42P01", "cached plan must not change result type"))
    assert not stale_plan(b"")


@pytest.mark.parametrize(("sql", "want"), [
    ("EXECUTE foobar(1)", "EXECUTE pgtwist_3(1)"),
    ("execute foobar", "execute pgtwist_3"),
    ('execute "foobar" (1, \'foobar\')', "execute pgtwist_3 (1, 'foobar')"),
    ("  EXECUTE FooBar ( 2 ) ;", "  EXECUTE pgtwist_3 ( 2 ) ;"),
    ("/* why */ execute foobar(1) -- x", "execute pgtwist_3(1)"),
])
def test_execute_sql_names_the_server_statement(sql, want):
    assert execute_sql(sql, "foobar", "pgtwist_3") == want


@pytest.mark.parametrize("sql", [
    "execute foo(1)",
    'execute "FooBar"(1)',          # a quoted name keeps its case: not foobar
    "select 'execute foobar'",
    "execute",
    "/* a */ execute foobar; execute foobar",
])
def test_execute_sql_of_other_text_is_none(sql):
    assert execute_sql(sql, "foobar", "pgtwist_3") is None
