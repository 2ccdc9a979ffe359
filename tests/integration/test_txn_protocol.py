"""Transaction pooling at the protocol level: exact message sequences over raw sockets.

Every test runs pgtwist with ``pool_mode: transaction`` and few links, so sessions share
server connections, and checks what the client receives byte-message by message.
"""

from __future__ import annotations

import pytest

from .conftest import TRUST_HBA, assert_log_clean
from .rawpg import (
    SYNC,
    RawClient,
    bind,
    codes_of,
    cstr,
    describe,
    errors_of,
    execute,
    msg,
    parse,
    query,
    rows_of,
)

pytestmark = pytest.mark.integration

DB = "pooldb"


def _daemon(factory, links=1, **extra):
    return factory({"pool_mode": "transaction", "backend_max_connections": links,
                    "max_pool": links, **extra}, hba=TRUST_HBA)


def _client(pg) -> RawClient:
    client = RawClient(pg.port)
    client.startup({"database": DB})
    return client


def close_statement(name: str) -> bytes:
    return msg(b"C", b"S" + cstr(name))




def _tags(msgs) -> list[str]:
    return [b[:-1].decode() for c, b in msgs if c == "C"]


def test_two_sessions_same_statement_name_different_queries(pool_database, pgtwist_factory):
    pg = _daemon(pgtwist_factory)
    with _client(pg) as a, _client(pg) as b:
        a.send(parse("select 'a'::text", "s1"), SYNC)
        b.send(parse("select 'b'::text", "s1"), SYNC)
        assert codes_of(a.read_until()) == "1Z"
        assert codes_of(b.read_until()) == "1Z"
        for _ in range(3):
            a.send(bind(statement="s1"), execute(), SYNC)
            b.send(bind(statement="s1"), execute(), SYNC)
            assert rows_of(a.read_until()) == [["a"]]
            assert rows_of(b.read_until()) == [["b"]]
    assert_log_clean(pg)


def test_same_text_different_parameter_types(pool_database, pgtwist_factory):
    pg = _daemon(pgtwist_factory)
    with _client(pg) as c:
        c.send(parse("select pg_typeof($1)::text", "int", (23,)),
               parse("select pg_typeof($1)::text", "txt", (25,)), SYNC)
        assert codes_of(c.read_until()) == "11Z"
        c.send(bind([b"1"], statement="int"), execute(),
               bind([b"1"], statement="txt"), execute(), SYNC)
        assert rows_of(c.read_until()) == [["integer"], ["text"]]


def test_parse_of_a_statement_the_link_holds_inside_a_batch(pool_database, pgtwist_factory):
    """Two names for one text in one batch, on a link that already has that text."""
    pg = _daemon(pgtwist_factory)
    with _client(pg) as a, _client(pg) as b:
        a.send(parse("select 41 + 1", "x"), SYNC)
        assert codes_of(a.read_until()) == "1Z"
        b.send(bind(statement=""), SYNC)  # nothing: an error, then the batch goes on
        b.read_until()
        b.send(parse("select 7", "first"), bind(statement="first"), execute(),
               parse("select 41 + 1", "y"), bind(statement="y"), execute(),
               parse("select 41 + 1", "z"), bind(statement="z"), execute(), SYNC)
        msgs = b.read_until()
        assert codes_of(msgs) == "12DC12DC12DCZ", errors_of(msgs)
        assert rows_of(msgs) == [["7"], ["42"], ["42"]]


def test_parse_answered_by_pgtwist_when_the_link_has_the_statement(pool_database, pgtwist_factory):
    pg = _daemon(pgtwist_factory)
    with _client(pg) as a, _client(pg) as b:
        a.send(parse("select 5", "p"), SYNC)
        a.read_until()
        b.send(parse("select 5", "q"), describe(b"S", "q"), SYNC)
        assert codes_of(b.read_until()) == "1tTZ"
        b.send(bind(statement="q"), execute(), SYNC)
        assert rows_of(b.read_until()) == [["5"]]


def test_close_is_answered_and_other_sessions_keep_the_statement(pool_database, pgtwist_factory):
    pg = _daemon(pgtwist_factory)
    with _client(pg) as a, _client(pg) as b:
        a.send(parse("select 'shared'", "s"), SYNC)
        b.send(parse("select 'shared'", "s"), SYNC)
        a.read_until()
        b.read_until()
        a.send(close_statement("s"), SYNC)
        assert codes_of(a.read_until()) == "3Z"
        b.send(bind(statement="s"), execute(), SYNC)
        assert rows_of(b.read_until()) == [["shared"]]
        # Inside a batch the CloseComplete comes in its place.
        b.send(bind(statement="s"), execute(), close_statement("s"), close_statement("nope"),
               SYNC)
        assert codes_of(b.read_until()) == "2DC33Z"
        # The client's name is gone, as after a real Close.
        a.send(bind(statement="s"), execute(), SYNC)
        msgs = a.read_until()
        assert errors_of(msgs)[0]["C"] == "26000"
        assert '"s"' in errors_of(msgs)[0]["M"]


def test_unnamed_statement_survives_a_link_change(pool_database, pgtwist_factory):
    pg = _daemon(pgtwist_factory, links=2)
    with _client(pg) as a, _client(pg) as b:
        a.send(parse("select pg_backend_pid()"), SYNC)
        assert codes_of(a.read_until()) == "1Z"
        # b holds a link in a transaction, so a's next batch may get the other one
        b.rows("begin")
        b.rows("select 1")
        a.send(bind(), execute(), SYNC)
        assert len(rows_of(a.read_until())) == 1
        b.rows("commit")
        for _ in range(3):
            a.send(bind(), execute(), SYNC)
            assert not errors_of(a.read_until())


def test_duplicate_statement_name_is_refused_like_postgres(pool_database, pgtwist_factory):
    pg = _daemon(pgtwist_factory)
    with _client(pg) as c:
        c.send(parse("select 1", "dup"), SYNC)
        c.read_until()
        c.send(parse("select 2", "dup"), bind(statement="dup"), execute(), SYNC)
        msgs = c.read_until()
        assert codes_of(msgs) == "EZ"
        assert errors_of(msgs)[0]["C"] == "42P05"
        assert msgs[-1][1] == b"I"
        c.send(bind(statement="dup"), execute(), SYNC)
        assert rows_of(c.read_until()) == [["1"]]


def test_deallocate_of_protocol_statements(pool_database, pgtwist_factory):
    """psycopg evicts its prepared statements with DEALLOCATE name (simple or extended)."""
    pg = _daemon(pgtwist_factory)
    with _client(pg) as c:
        c.send(parse("select 1", "_pg3_0"), parse("select 2", "_pg3_1"), SYNC)
        c.read_until()
        assert _tags(c.simple("DEALLOCATE _pg3_0")) == ["DEALLOCATE"]
        c.send(parse("DEALLOCATE _pg3_1"), bind(), execute(), SYNC)
        msgs = c.read_until()
        assert codes_of(msgs) == "12CZ", errors_of(msgs)
        assert _tags(msgs) == ["DEALLOCATE"]
        for name in ("_pg3_0", "_pg3_1"):
            c.send(bind(statement=name), execute(), SYNC)
            assert errors_of(c.read_until())[0]["C"] == "26000"
        assert errors_of(c.simple("DEALLOCATE nothing_here"))[0]["C"] == "26000"
        # the names are free again
        c.send(parse("select 3", "_pg3_0"), bind(statement="_pg3_0"), execute(), SYNC)
        assert rows_of(c.read_until()) == [["3"]]


def test_deallocate_all_and_discard_all(pool_database, pgtwist_factory):
    pg = _daemon(pgtwist_factory)
    with _client(pg) as c, _client(pg) as other:
        other.send(parse("select 'other'", "o"), SYNC)
        other.read_until()
        c.send(parse("select 1", "a"), SYNC)
        c.read_until()
        c.rows("PREPARE sq AS SELECT 2")
        assert _tags(c.simple("DEALLOCATE ALL")) == ["DEALLOCATE ALL"]
        assert errors_of(c.simple("EXECUTE sq"))[0]["C"] == "26000"
        c.send(parse("select 4", "a"), bind(statement="a"), execute(), SYNC)
        assert rows_of(c.read_until()) == [["4"]]
        c.rows("SET application_name = 'discarded'")
        assert _tags(c.simple("DISCARD ALL")) == ["DISCARD ALL"]
        assert c.rows("SHOW application_name") == [[""]]
        c.send(bind(statement="a"), execute(), SYNC)
        assert errors_of(c.read_until())[0]["C"] == "26000"
        # another session's statements are untouched
        other.send(bind(statement="o"), execute(), SYNC)
        assert rows_of(other.read_until()) == [["other"]]


def test_lru_bound_evicts_and_statements_come_back(pool_database, pgtwist_factory):
    pg = _daemon(pgtwist_factory, max_prepared_statements=3)
    with _client(pg) as c:
        for i in range(10):
            c.send(parse(f"select {i}", f"s{i}"), SYNC)
            c.read_until()
        for _round in range(2):
            for i in range(10):
                c.send(bind(statement=f"s{i}"), execute(), SYNC)
                msgs = c.read_until()
                assert rows_of(msgs) == [[str(i)]], errors_of(msgs)
        held = c.rows("select count(*) from pg_prepared_statements")
        assert int(held[0][0]) <= 4  # the bound, plus the one in use
        stats = dict(tuple(r) for r in c.rows("SHOW pgtwist_pool"))
        assert int(stats["statements_evicted"]) > 0
    assert_log_clean(pg)


def test_batch_on_a_link_lacking_its_statements_stays_one_transaction(pool_database, pgtwist_factory):
    """pgtwist prepares the batch's statements first, in a round of their own: the
    client's batch is not split, so an error later in it rolls back its earlier part."""
    pg = _daemon(pgtwist_factory, links=2)
    with _client(pg) as a, _client(pg) as b:
        a.rows("create table if not exists txn_batch (v int)")
        a.rows("truncate txn_batch")
        a.send(parse("insert into txn_batch values ($1::int)", "ins"),
               parse("select 1 / $1::int", "div"), SYNC)
        a.read_until()
        for _ in range(4):
            # b takes one link inside a transaction; a's batch may land on the other one
            b.rows("begin")
            b.rows("select 1")
            a.send(bind([b"1"], statement="ins"), execute(),
                   bind([b"0"], statement="div"), execute(), SYNC)
            msgs = a.read_until()
            assert codes_of(msgs) == "2CEZ", msgs
            assert errors_of(msgs)[0]["C"] == "22012"
            b.rows("commit")
        assert a.rows("select count(*) from txn_batch") == [["0"]]
        a.rows("drop table txn_batch")


def test_state_follows_the_session_across_links(pool_database, pgtwist_factory):
    pg = _daemon(pgtwist_factory, links=2)
    with _client(pg) as a, _client(pg) as b:
        a.rows("SET search_path = a_schema, public")
        a.rows("SET application_name = 'app_a'")
        b.rows("SET application_name = 'app_b'")
        for _ in range(5):
            b.rows("begin")
            b.rows("select 1")
            assert a.rows("SHOW search_path") == [["a_schema, public"]]
            assert a.rows("SHOW application_name") == [["app_a"]]
            b.rows("commit")
            assert b.rows("SHOW application_name") == [["app_b"]]
            assert b.rows("SHOW search_path") == [['"$user", public']]
        a.rows("RESET ALL")
        assert a.rows("SHOW application_name") == [[""]]


def test_simple_query_in_the_middle_of_a_batch(pool_database, pgtwist_factory):
    pg = _daemon(pgtwist_factory)
    with _client(pg) as c:
        c.send(parse("select 10", "ten"), SYNC)
        c.read_until()
        c.send(bind(statement="ten"), execute(), query("select 11"))
        msgs = c.read_until()
        c.send(SYNC)
        msgs += c.read_until()
        assert rows_of(msgs) == [["10"], ["11"]], msgs
        assert not errors_of(msgs)


def test_a_replayed_parse_that_fails_shows_its_own_error(pool_database, pgtwist_factory):
    """The statement's table was dropped after the client prepared it: the replayed Parse
    fails, and the client sees that error (not a pgtwist-made name) in place of its Bind."""
    pg = _daemon(pgtwist_factory, max_prepared_statements=1)
    with _client(pg) as c:
        c.rows("create table txn_gone (v int)")
        c.send(parse("select v from txn_gone", "g"), parse("select 1", "o"), SYNC)
        assert codes_of(c.read_until()) == "11Z"
        c.send(bind(statement="o"), execute(), SYNC)  # evicts g from the link (bound 1)
        assert rows_of(c.read_until()) == [["1"]]
        c.rows("drop table txn_gone")
        c.send(bind(statement="g"), execute(), SYNC)
        msgs = c.read_until()
        assert codes_of(msgs) == "EZ"
        assert errors_of(msgs)[0]["C"] == "42P01", errors_of(msgs)
        assert "pgtwist_" not in errors_of(msgs)[0]["M"]
        # the session goes on
        c.send(bind(statement="o"), execute(), SYNC)
        assert rows_of(c.read_until()) == [["1"]]


def test_prepare_while_every_link_is_busy_is_answered_at_once(pool_database, pgtwist_factory):
    """pgbench -M prepared drives many connections from one thread and waits for each
    prepare: a prepare must not wait for a link that the same thread's other
    connections hold.  It is answered ahead and parsed where it is first used."""
    pg = _daemon(pgtwist_factory, links=1, checkout_timeout=20)
    with _client(pg) as a, _client(pg) as b:
        a.rows("begin")
        a.rows("select 1")  # a holds the only link
        b.send(parse("select 'ok'::text", "later"), parse("select nope from", "bad"), SYNC)
        assert codes_of(b.read_until()) == "11Z"   # without waiting for a's transaction
        b.send(bind(statement="later"), execute(), SYNC)
        a.rows("commit")
        assert rows_of(b.read_until()) == [["ok"]]
        # the bad statement's error comes where it is first used, and only there
        b.send(bind(statement="bad"), execute(), SYNC)
        msgs = b.read_until()
        assert codes_of(msgs) == "EZ" and errors_of(msgs)[0]["C"] == "42601"
        b.send(bind(statement="later"), execute(), SYNC)
        assert rows_of(b.read_until()) == [["ok"]]


def test_unknown_statement_inside_a_transaction_aborts_it(pool_database, pgtwist_factory):
    """PostgreSQL aborts the transaction on that error: a later COMMIT must not commit
    what came before it."""
    pg = _daemon(pgtwist_factory)
    with _client(pg) as c:
        c.rows("create table if not exists txn_abort (v int)")
        c.rows("truncate txn_abort")
        c.rows("begin")
        c.rows("insert into txn_abort values (1)")
        c.send(bind(statement="never_prepared"), execute(), SYNC)
        msgs = c.read_until()
        assert codes_of(msgs) == "EZ" and errors_of(msgs)[0]["C"] == "26000"
        assert msgs[-1][1] == b"E"
        assert errors_of(c.simple("select 1"))[0]["C"] == "25P02"
        c.simple("commit")  # answered ROLLBACK, as PostgreSQL does
        assert c.rows("select count(*) from txn_abort") == [["0"]]
        c.rows("drop table txn_abort")
