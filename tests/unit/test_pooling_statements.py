"""Transaction pooling, sans-IO: statement names, per-link LRU, batch look-ahead, pins."""

from __future__ import annotations

import struct

import pytest

from pgtwist.conn.server import LinkStatements
from pgtwist.pooling.statements import (
    StatementRegistry,
    batch_needs,
    close_statement,
    describe_statement,
    parse_frame,
    pin_reason,
    rename_bind,
    split_parse,
    statement_used,
)
from pgtwist.sql.classify import Classifier
from pgtwist.wire import codes
from pgtwist.wire import messages as m


def _parse_rest(sql: bytes, oids: tuple[int, ...] = ()) -> bytes:
    return sql + b"\0" + struct.pack(f"!H{len(oids)}I", len(oids), *oids)


def _frame(code: int, body: bytes) -> tuple[int, bytes, int, int]:
    """(code, buf, body start, body end) as the relay sees a frame."""
    buf = m.frame(code, body)
    return code, buf, 5, len(buf)


def _parse(name: bytes, sql: bytes):
    return _frame(codes.PARSE, name + b"\0" + _parse_rest(sql))


def _bind(stmt: bytes, portal: bytes = b""):
    return _frame(codes.BIND, portal + b"\0" + stmt + b"\0" + b"\0\0\0\0\0\0")


def _describe(kind: bytes, name: bytes):
    return _frame(codes.DESCRIBE, kind + name + b"\0")


SYNC = _frame(codes.SYNC, b"")
EXECUTE = _frame(codes.EXECUTE, b"\0\0\0\0\0")


# -- registry ----------------------------------------------------------------------------------
def test_same_text_and_types_share_a_name():
    reg = StatementRegistry()
    a = reg.name_for(_parse_rest(b"select $1", (23,)))
    assert a == reg.name_for(_parse_rest(b"select $1", (23,)))
    assert a.startswith(b"pgtwist_")


def test_parameter_types_are_part_of_the_identity():
    reg = StatementRegistry()
    assert reg.name_for(_parse_rest(b"select $1", (23,))) != \
        reg.name_for(_parse_rest(b"select $1", (25,)))
    assert reg.name_for(_parse_rest(b"select $1")) != \
        reg.name_for(_parse_rest(b"select $1", (23,)))


def test_texts_differing_anywhere_get_different_names():
    """Full text, not a hash: even texts that collide under a short hash stay apart."""
    reg = StatementRegistry()
    names = {reg.name_for(_parse_rest(b"select %d" % i)) for i in range(5000)}
    assert len(names) == 5000
    # Two long texts differing only in their last byte.
    long_a = b"select 1 /*" + b"x" * 10000 + b"a*/"
    long_b = b"select 1 /*" + b"x" * 10000 + b"b*/"
    assert reg.name_for(_parse_rest(long_a)) != reg.name_for(_parse_rest(long_b))


def test_registry_is_bounded_and_forgotten_texts_get_fresh_names():
    reg = StatementRegistry(limit=3)
    first = reg.name_for(_parse_rest(b"q0"))
    for i in range(1, 5):
        reg.name_for(_parse_rest(b"q%d" % i))
    assert len(reg) == 3
    again = reg.name_for(_parse_rest(b"q0"))
    assert again != first  # a new name: links may still hold the old one under its text


def test_registry_lru_keeps_recently_named_texts():
    reg = StatementRegistry(limit=2)
    a = reg.name_for(_parse_rest(b"a"))
    reg.name_for(_parse_rest(b"b"))
    assert reg.name_for(_parse_rest(b"a")) == a  # touched: "b" is now the oldest
    reg.name_for(_parse_rest(b"c"))
    assert reg.name_for(_parse_rest(b"a")) == a


def test_fresh_names_are_unique():
    reg = StatementRegistry()
    assert len({reg.fresh() for _ in range(100)}) == 100


# -- per-link LRU ----------------------------------------------------------------------------
def test_link_statements_evict_least_recently_used_first():
    cache = LinkStatements(capacity=2)
    for name in (b"a", b"b", b"c"):
        cache.use(name)
    cache.touch(b"a")
    assert cache.evictions() == [b"b"]
    assert b"b" not in cache and b"a" in cache and b"c" in cache
    assert cache.evictions() == []


def test_link_statements_never_evict_what_the_batch_needs():
    cache = LinkStatements(capacity=1)
    for name in (b"a", b"b", b"c"):
        cache.use(name)
    assert cache.evictions(keep={b"a"}) == [b"b", b"c"]
    assert b"a" in cache and len(cache) == 1


def test_link_statements_keep_more_than_capacity_when_all_are_needed():
    cache = LinkStatements(capacity=1)
    cache.use(b"a")
    cache.use(b"b")
    assert cache.evictions(keep={b"a", b"b"}) == []
    assert len(cache) == 2


def test_link_statements_discard_and_clear():
    cache = LinkStatements(capacity=5)
    cache.use(b"a")
    cache.use(b"b")
    cache.discard(b"a")
    cache.discard(b"missing")
    assert b"a" not in cache and len(cache) == 1
    cache.clear()
    assert len(cache) == 0


def test_capacity_is_at_least_one():
    cache = LinkStatements(capacity=0)
    cache.use(b"a")
    assert cache.evictions() == []


# -- frames ------------------------------------------------------------------------------------
def test_split_and_rebuild_parse():
    body = b"s1\0select $1\0\0\1\0\0\0\x17"
    name, rest = split_parse(body)
    assert name == b"s1"
    assert rest == b"select $1\0\0\1\0\0\0\x17"
    assert parse_frame(b"pgtwist_7", rest) == m.frame(codes.PARSE, b"pgtwist_7\0" + rest)


def test_rename_bind_keeps_portal_and_parameters():
    params = b"\0\1\0\0\0\1\0\0\0\0\x01" + b"7" + b"\0\0"
    body = b"p1\0s1\0" + params
    buf = b"junk" + m.frame(codes.BIND, body) + b"more"
    out = rename_bind(buf, 4 + 5, 4 + 5 + len(body), b"pgtwist_3")
    assert out == m.frame(codes.BIND, b"p1\0pgtwist_3\0" + params)


def test_rename_bind_of_the_unnamed_portal():
    body = b"\0s\0\0\0\0\0\0\0"
    buf = m.frame(codes.BIND, body)
    assert rename_bind(buf, 5, len(buf), b"x") == m.frame(codes.BIND, b"\0x\0\0\0\0\0\0\0")


def test_describe_and_close_frames():
    assert describe_statement(b"pgtwist_1") == m.frame(codes.DESCRIBE, b"Spgtwist_1\0")
    assert close_statement(b"pgtwist_1") == m.frame(codes.CLOSE, b"Spgtwist_1\0")


def test_statement_used():
    assert statement_used(*_bind(b"s1", b"p")) == b"s1"
    assert statement_used(*_describe(b"S", b"s2")) == b"s2"
    assert statement_used(*_describe(b"P", b"p")) is None
    assert statement_used(*EXECUTE) is None


# -- batch look-ahead --------------------------------------------------------------------------
def test_batch_needs_what_it_uses_before_defining():
    frames = [_bind(b"a"), EXECUTE, _describe(b"S", b"b"), _bind(b"b"), EXECUTE, SYNC]
    assert batch_needs(frames) == [b"a", b"b"]


def test_batch_defining_its_statement_needs_nothing():
    frames = [_parse(b"a", b"select 1"), _describe(b"S", b"a"), _bind(b"a"), EXECUTE, SYNC]
    assert batch_needs(frames) == []


def test_batch_ends_at_sync_or_query():
    frames = [_bind(b"a"), EXECUTE, SYNC, _bind(b"b"), EXECUTE, SYNC]
    assert batch_needs(frames) == [b"a"]
    query = _frame(codes.QUERY, b"select 1\0")
    assert batch_needs([_bind(b"a"), query, _bind(b"c")]) == [b"a"]


def test_batch_lists_each_statement_once_and_includes_unnamed():
    frames = [_bind(b"a"), EXECUTE, _bind(b"a"), EXECUTE, _bind(b""), EXECUTE, SYNC]
    assert batch_needs(frames) == [b"a", b""]


def test_batch_use_before_its_parse_still_needs_it():
    frames = [_bind(b"a"), EXECUTE, _parse(b"a", b"select 2"), SYNC]
    assert batch_needs(frames) == [b"a"]


# -- pins --------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def classify():
    return Classifier().classify


@pytest.mark.parametrize("sql, reason", [
    ("LISTEN jobs", "listen"),
    ("select pg_advisory_lock(1)", "advisory_lock"),
    ("select pg_try_advisory_lock(1, 2)", "advisory_lock"),
    ("select pg_catalog.pg_advisory_lock_shared(5)", "advisory_lock"),
    ("create temp table t (a int)", "temp_table"),
    ("CREATE TEMPORARY TABLE t2 AS SELECT 1", "temp_table"),
    ("declare c cursor with hold for select 1", "with_hold_cursor"),
    ("SET SESSION AUTHORIZATION alice", "session_authorization"),
    ("set session session authorization alice", "session_authorization"),
])
def test_session_features_pin(classify, sql, reason):
    assert pin_reason(classify(sql), sql) == reason


@pytest.mark.parametrize("sql", [
    "select 1",
    "select pg_advisory_xact_lock(1)",
    "select pg_advisory_unlock_all()",
    "select pg_advisory_unlock(1)",
    "declare c cursor for select 1",
    "declare c cursor without hold for select 1",
    "SET LOCAL SESSION AUTHORIZATION alice",
    "set search_path to a",
    "UNLISTEN *",
    "create table t (a int)",
    "NOTIFY jobs",
])
def test_ordinary_statements_do_not_pin(classify, sql):
    assert pin_reason(classify(sql), sql) is None
