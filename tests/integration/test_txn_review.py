"""Transaction pooling review: adversarial edge cases of ``pool_mode: transaction``.

Raw-socket tests (tests/integration/rawpg.py) pin down exact message sequences where a
batch meets a link change, a failed statement, COPY, a FunctionCall, a dead server
connection or a departing client; driver tests (asyncpg, psycopg pipeline mode) cover the
same ground the way real applications do.  Tests marked xfail(strict=True) show bugs.
"""

from __future__ import annotations

import asyncio
import struct
import time

import asyncpg
import psycopg
import pytest

from .conftest import TRUST_HBA, assert_log_clean, backends
from .rawpg import (
    COPY_DONE,
    SYNC,
    RawClient,
    bind,
    codes_of,
    copy_data,
    describe,
    error_fields,
    errors_of,
    execute,
    msg,
    parse,
    query,
    rows_of,
)

pytestmark = pytest.mark.integration

DB = "pooldb"


@pytest.fixture(scope="module")
def pooldb(pool_database, cluster):
    """pooldb with the review's tables, created straight on the primary and replicated."""
    with psycopg.connect(cluster.dsn(dbname=DB), autocommit=True, connect_timeout=10) as c:
        c.execute("create table if not exists txr_items (v int)")
        c.execute("create table if not exists txr_copy (v int)")
        c.execute("create table if not exists txr_lock (v int)")
        c.execute("grant all on txr_items, txr_copy, txr_lock to public")
    cluster.wait_replayed()
    return DB


def _daemon(factory, links=1, **extra):
    return factory({"pool_mode": "transaction", "backend_max_connections": links,
                    "max_pool": links, "checkout_timeout": 20, **extra}, hba=TRUST_HBA)


def _lb_daemon(factory, cluster, links=1, **extra):
    """Transaction mode with every read on the replica (primary weight 0)."""
    return factory({"pool_mode": "transaction", "backend_max_connections": links,
                    "max_pool": links, "checkout_timeout": 20,
                    "backends": backends(cluster, 0, 1), **extra})


def _client(pg, **params) -> RawClient:
    client = RawClient(pg.port)
    client.startup({"database": DB, **params})
    return client




def _sqlstates(msgs) -> list[str]:
    return [e["C"] for e in errors_of(msgs)]


def _status(msgs) -> str:
    return msgs[-1][1].decode()


def _direct(cluster):
    return psycopg.connect(cluster.dsn(dbname=DB), autocommit=True, connect_timeout=10)


def _truncate(cluster, table: str) -> None:
    with _direct(cluster) as c:
        c.execute(f"truncate {table}")


def _count(cluster, table: str) -> int:
    with _direct(cluster) as c:
        return c.execute(f"select count(*) from {table}").fetchone()[0]


# -- batches that meet a link lacking their statements -----------------------------------------


def test_batch_split_across_writes_stays_one_transaction(pooldb, pgtwist_factory, cluster):
    _truncate(cluster, "txr_items")
    pg = _daemon(pgtwist_factory, links=1)
    with _client(pg) as a, _client(pg) as b:
        b.rows("begin")
        b.rows("select 1")  # b holds the only link: a's prepares are answered ahead
        a.send(parse("insert into txr_items values ($1::int)", "ins"),
               parse("select 1 / $1::int", "div"), SYNC)
        assert codes_of(a.read_until()) == "11Z"
        b.rows("commit")
        # One batch (one implicit transaction) in two TCP writes.
        a.send(bind([b"1"], statement="ins"), execute())
        time.sleep(0.3)
        a.send(bind([b"0"], statement="div"), execute(), SYNC)
        msgs = a.read_until()
        assert codes_of(msgs) == "2CEZ", msgs
        assert _sqlstates(msgs) == ["22012"]
        # PostgreSQL rolls the whole batch back at the error.
        assert a.rows("select count(*) from txr_items") == [["0"]]
    assert_log_clean(pg)


def test_pipelined_batches_with_parses_and_binds_across_syncs(pooldb, pgtwist_factory):
    """Several Syncs in one write, statements defined in one batch and used in later ones,
    on a link that lacks the earlier ones (prepared ahead while the only link was busy)."""
    pg = _daemon(pgtwist_factory, links=1)
    with _client(pg) as a, _client(pg) as b:
        b.rows("begin")
        b.rows("select 1")
        a.send(parse("select 'early'::text", "e1"), SYNC)
        assert codes_of(a.read_until()) == "1Z"  # answered ahead, not parsed anywhere
        b.rows("commit")
        a.send(parse("select $1::int * 2", "dbl"), SYNC,
               bind([b"21"], statement="dbl"), execute(), bind(statement="e1"), execute(), SYNC,
               parse("select 'late'::text", "l1"), bind(statement="l1"), execute(),
               bind([b"5"], statement="dbl"), execute(), SYNC,
               describe(b"S", "e1"), bind(statement="e1"), execute(), SYNC)
        msgs = a.read_until(count=4)
        assert codes_of(msgs) == "1Z" "2DC2DCZ" "12DC2DCZ" "tT2DCZ", errors_of(msgs)
        assert rows_of(msgs) == [["42"], ["early"], ["late"], ["10"], ["early"]]
        assert [s for c, s in msgs if c == "Z"] == [b"I"] * 4
    assert_log_clean(pg)


def test_describe_and_bind_in_separate_batches_on_different_links(pooldb, pgtwist_factory):
    pg = _daemon(pgtwist_factory, links=2)
    with _client(pg) as a, _client(pg) as h1, _client(pg) as h2:
        a.send(parse("select $1::int + 100 as plus", "p"), SYNC)
        assert codes_of(a.read_until()) == "1Z"
        for holder in (h1, h2, h1):
            # the holder sits on the link a used last: a moves to the other one
            holder.rows("begin")
            holder.rows("select 1")
            a.send(describe(b"S", "p"), SYNC)
            msgs = a.read_until()
            assert codes_of(msgs) == "tTZ", errors_of(msgs)
            holder.rows("commit")
            a.send(bind([b"1"], statement="p"), execute(), SYNC)
            msgs = a.read_until()
            assert rows_of(msgs) == [["101"]], errors_of(msgs)


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


def test_more_statements_in_one_batch_than_the_link_bound(pooldb, pgtwist_factory):
    pg = _daemon(pgtwist_factory, links=2, max_prepared_statements=2)
    with _client(pg) as a, _client(pg) as h:
        a.send(*(parse(f"select {i}::int", f"m{i}") for i in range(6)), SYNC)
        assert codes_of(a.read_until()) == "1" * 6 + "Z"
        for round_ in range(3):
            if round_ == 1:  # once on the other link
                h.rows("begin")
                h.rows("select 1")
            a.send(*(b for i in range(6) for b in (bind(statement=f"m{i}"), execute())), SYNC)
            msgs = a.read_until()
            assert rows_of(msgs) == [[str(i)] for i in range(6)], errors_of(msgs)
            if round_ == 1:
                h.rows("commit")
        held = int(a.rows("select count(*) from pg_prepared_statements")[0][0])
        assert held <= 6 + 1


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


def test_statement_level_load_balance(pooldb, pgtwist_factory, cluster):
    pg = _lb_daemon(pgtwist_factory, cluster, links=1, statement_level_load_balance=True)
    with _client(pg) as a, _client(pg) as b:
        a.rows("set work_mem = '3MB'")
        a.send(parse("select current_setting('work_mem'), "
                     "current_setting('transaction_read_only')", "w"), SYNC)
        assert codes_of(a.read_until()) == "1Z"
        for _ in range(3):
            a.send(bind(statement="w"), execute(), SYNC)
            msgs = a.read_until()
            assert rows_of(msgs) == [["3MB", "on"]], errors_of(msgs)
            assert a.rows("select current_setting('work_mem')") == [["3MB"]]
            b.rows("select 1")
        a.rows("begin")
        a.rows("insert into txr_items values (2)")
        assert a.rows("select current_setting('transaction_read_only')") == [["off"]]
        a.rows("rollback")


# -- session state that PostgreSQL rolled back --------------------------------------------------


def _work_mem(c) -> str:
    return c.rows("select current_setting('work_mem')")[0][0]


def test_set_in_a_failed_multi_statement_query_stays_rolled_back(pooldb, pgtwist_factory):
    pg = _daemon(pgtwist_factory, links=1)
    with _client(pg) as a, _client(pg) as b:
        default = _work_mem(a)
        assert _sqlstates(a.simple("SET work_mem = '7MB'; SELECT 1/0")) == ["22012"]
        assert _work_mem(a) == default  # same link: the server rolled the SET back
        b.rows("select 1")  # another session's state on the link
        assert _work_mem(a) == default


def test_set_rolled_back_to_a_savepoint_stays_rolled_back(pooldb, pgtwist_factory):
    pg = _daemon(pgtwist_factory, links=1)
    with _client(pg) as a, _client(pg) as b:
        default = _work_mem(a)
        for sql in ("begin", "savepoint sp", "set work_mem = '7MB'", "rollback to savepoint sp",
                    "commit"):
            a.rows(sql)
        assert _work_mem(a) == default
        b.rows("select 1")
        assert _work_mem(a) == default


def test_set_in_a_failed_extended_batch_stays_rolled_back(pooldb, pgtwist_factory):
    pg = _daemon(pgtwist_factory, links=1)
    with _client(pg) as a, _client(pg) as b:
        default = _work_mem(a)
        a.send(parse("set work_mem = '7MB'"), bind(), execute(),
               parse("select 1/0"), bind(), execute(), SYNC)
        assert _sqlstates(a.read_until()) == ["22012"]
        assert _work_mem(a) == default
        b.rows("select 1")
        assert _work_mem(a) == default


# -- load balancing in transaction mode ------------------------------------------------------------


def test_set_in_a_rolled_back_transaction_does_not_stay_on_the_replica(
        pooldb, pgtwist_factory, cluster):
    pg = _lb_daemon(pgtwist_factory, cluster, links=1)
    with _client(pg) as a:
        default, on_replica = a.rows("select current_setting('work_mem'), "
                                     "current_setting('transaction_read_only')")[0]
        assert on_replica == "on"
        a.rows("begin")
        a.rows("set work_mem = '7MB'")
        assert a.rows("select current_setting('work_mem')") == [["7MB"]]
        a.rows("rollback")
    with _client(pg) as c:  # the next client of the replica link
        assert c.rows("select current_setting('work_mem'), "
                      "current_setting('transaction_read_only')") == [[default, "on"]]


def test_set_then_reads_on_the_replica(pooldb, pgtwist_factory, cluster):
    pg = _lb_daemon(pgtwist_factory, cluster, links=1)
    with _client(pg) as a, _client(pg) as b:
        a.rows("set work_mem = '5MB'")
        a.rows("set application_name = 'txr_app'")
        for _ in range(3):
            assert a.rows("select current_setting('work_mem'), current_setting("
                          "'application_name'), current_setting('transaction_read_only')") == [
                ["5MB", "txr_app", "on"]]
            assert b.rows("select current_setting('application_name'), "
                          "current_setting('transaction_read_only')") == [["", "on"]]


def test_error_on_the_replica_aborts_the_transaction_until_rollback(
        pooldb, pgtwist_factory, cluster):
    pg = _lb_daemon(pgtwist_factory, cluster, links=1)
    with _client(pg) as a, _client(pg) as b:
        a.rows("begin")
        assert a.rows("select current_setting('transaction_read_only')") == [["on"]]
        msgs = a.simple("select 1/0")
        assert _sqlstates(msgs) == ["22012"] and _status(msgs) == "E"
        assert _sqlstates(a.simple("select 1")) == ["25P02"]
        a.send(parse("select 2"), bind(), execute(), SYNC)
        msgs = a.read_until()
        assert _sqlstates(msgs) == ["25P02"] and _status(msgs) == "E"
        msgs = a.simple("commit")
        assert [c for c, _ in msgs] == ["C", "Z"] and msgs[0][1] == b"ROLLBACK\0"
        assert _status(msgs) == "I"
        assert a.rows("select 3") == [["3"]]
        # both links went back clean
        assert b.rows("select count(*) from pg_stat_activity where state like 'idle in%'"
                      " and datname = current_database() and pid <> pg_backend_pid()") == [["0"]]
        b.rows("insert into txr_items values (1)")
    assert_log_clean(pg)


@pytest.mark.parametrize("mode", ["transaction", "session"])
def test_readyforquery_after_a_replica_error_says_failed(pooldb, pgtwist_factory, cluster, mode):
    pg = _lb_daemon(pgtwist_factory, cluster, links=2, pool_mode=mode)
    with _client(pg) as a:
        a.rows("begin")
        assert _status(a.simple("select 1/0")) == "E"
        msgs = a.simple("select 1")
        assert _sqlstates(msgs) == ["25P02"]
        assert _status(msgs) == "E"


# -- COPY and FunctionCall ----------------------------------------------------------------------


def _pbe(sql: str) -> bytes:
    return parse(sql) + bind() + execute()


def test_extended_copy_from_stdin_with_early_sync_releases_the_link(
        pooldb, pgtwist_factory, cluster):
    _truncate(cluster, "txr_copy")
    pg = _daemon(pgtwist_factory, links=1, checkout_timeout=2)
    with _client(pg) as a, _client(pg) as b:
        b.sock.settimeout(10)
        a.send(_pbe("COPY txr_copy FROM STDIN"), SYNC)
        assert codes_of(a.read_until("G")) == "12G"
        a.send(copy_data(b"1\n2\n"), COPY_DONE, SYNC)
        msgs = a.read_until()
        assert codes_of(msgs) == "CZ" and _status(msgs) == "I"
        msgs = b.simple("select 42")  # no table: no catalog lookup (see below)
        assert rows_of(msgs) == [["42"]], errors_of(msgs)
        assert _count(cluster, "txr_copy") == 2


def test_copy_in_and_out_through_a_freshly_checked_out_link(pooldb, pgtwist_factory, cluster):
    """COPY on a link whose state pgtwist re-applies first (the replay's answers are hidden)."""
    _truncate(cluster, "txr_copy")
    pg = _daemon(pgtwist_factory, links=1)
    with _client(pg) as a, _client(pg) as b:
        a.rows("set application_name = 'txr_copier'")
        for k in range(2):
            b.rows("select 1")  # b's state on the link: a's must be re-applied
            a.send(query("COPY txr_copy FROM STDIN"))
            assert codes_of(a.read_until("G")) == "G"
            a.send(copy_data(f"{k}\n".encode()), copy_data(b"100\n"), COPY_DONE)
            msgs = a.read_until()
            assert codes_of(msgs) == "CZ", errors_of(msgs)
            b.rows("select 1")
            a.send(_pbe("COPY (select current_setting('application_name')) TO STDOUT"), SYNC)
            msgs = a.read_until()
            assert codes_of(msgs) == "12HdcCZ", errors_of(msgs)
            assert [body for c, body in msgs if c == "d"] == [b"txr_copier\n"]
        b.rows("select 1")
        a.send(query("COPY txr_copy FROM STDIN"))
        assert codes_of(a.read_until("G")) == "G"
        a.send(copy_data(b"x\n"), COPY_DONE)
        msgs = a.read_until()
        assert _sqlstates(msgs) == ["22P02"] and _status(msgs) == "I"
        assert b.rows("select count(*) from txr_copy") == [["4"]]
    assert_log_clean(pg)


def test_copy_with_psycopg(pooldb, pgtwist_factory, cluster):
    _truncate(cluster, "txr_copy")
    pg = _daemon(pgtwist_factory, links=1)
    with psycopg.connect(pg.dsn(dbname=DB), autocommit=True) as a, \
            psycopg.connect(pg.dsn(dbname=DB), autocommit=True) as b:
        with a.cursor() as cur, cur.copy("COPY txr_copy FROM STDIN") as cp:
            for i in range(1000):
                cp.write_row((i,))
        assert b.execute("select count(*), sum(v) from txr_copy").fetchone() == (1000, 499500)
        with a.cursor() as cur, cur.copy(
                "COPY (select v from txr_copy where v < %s order by v) TO STDOUT", (3,)) as cp:
            assert [bytes(r) for r in cp] == [b"0\n", b"1\n", b"2\n"]
        assert b.execute("select 1").fetchone() == (1,)


def _function_call(oid: int, *args: bytes) -> bytes:
    body = struct.pack("!Ih", oid, 0) + struct.pack("!h", len(args))
    for a in args:
        body += struct.pack("!i", len(a)) + a
    return msg(b"F", body + struct.pack("!h", 0))


def test_function_call(pooldb, pgtwist_factory):
    pg = _daemon(pgtwist_factory, links=1)
    with _client(pg) as a, _client(pg) as b:
        oid = int(a.rows("select 'int4pl'::regproc::oid")[0][0])
        for _ in range(2):
            a.send(_function_call(oid, b"40", b"2"))
            msgs = a.read_until()
            assert codes_of(msgs) == "VZ", errors_of(msgs)
            (size,) = struct.unpack_from("!i", msgs[0][1])
            assert msgs[0][1][4:4 + size] == b"42"
            assert b.rows("select 1") == [["1"]]  # the link came back after the call


def test_checkout_timeout_reaches_a_statement_that_needs_a_catalog_lookup(
        pooldb, pgtwist_factory):
    pg = _daemon(pgtwist_factory, links=1, checkout_timeout=1)
    with _client(pg) as a, _client(pg) as b:
        a.rows("begin")
        a.rows("select 1")  # a holds the only link
        b.sock.settimeout(3.5)
        started = time.monotonic()
        msgs = b.simple("select count(*) from txr_lock")  # a table: its facts are looked up
        assert _sqlstates(msgs) == ["53300"], msgs
        assert time.monotonic() - started < 3
        a.rows("commit")
        assert b.rows("select count(*) from txr_lock") == [["0"]]


# -- server connections that die, clients that leave ------------------------------------------------


def test_terminated_idle_link_is_not_handed_out(pooldb, pgtwist_factory, cluster):
    pg = _daemon(pgtwist_factory, links=1)
    with _client(pg) as a, _direct(cluster) as direct:
        pid = int(a.rows("select pg_backend_pid()")[0][0])
        direct.execute("select pg_terminate_backend(%s)", [pid])
        time.sleep(0.3)
        msgs = a.simple("select pg_backend_pid()")
        assert not errors_of(msgs), msgs
        assert int(rows_of(msgs)[0][0]) != pid
    assert_log_clean(pg)


def test_client_gone_mid_transaction_leaves_no_open_transaction(pooldb, pgtwist_factory):
    pg = _daemon(pgtwist_factory, links=1)
    a = _client(pg)
    a.rows("begin")
    a.rows("set local lock_timeout = '5s'")
    a.rows("lock table txr_lock in access exclusive mode")
    a.rows("set work_mem = '9MB'")
    a.close()  # no Terminate, inside the transaction
    with _client(pg) as b:
        assert b.rows("select count(*) from txr_lock") == [["0"]]
        msgs = b.simple("select current_setting('work_mem'), "
                        "(select count(*) from pg_locks where locktype = 'relation' and "
                        "relation = 'txr_lock'::regclass and pid <> pg_backend_pid())")
        assert _status(msgs) == "I"
        assert rows_of(msgs)[0][1] == "0"
        assert rows_of(msgs)[0][0] != "9MB"
    assert_log_clean(pg)


def test_client_gone_mid_batch_without_sync(pooldb, pgtwist_factory):
    pg = _daemon(pgtwist_factory, links=1)
    a = _client(pg)
    a.send(parse("insert into txr_items values (777)"), bind(), execute())  # no Sync
    time.sleep(0.2)
    a.close()
    with _client(pg) as b:
        msgs = b.simple("select count(*) from txr_items where v = 777")
        assert rows_of(msgs) == [["0"]] and _status(msgs) == "I", msgs


def test_client_idle_limit_in_transaction_mode(pooldb, pgtwist_factory):
    pg = _daemon(pgtwist_factory, links=1, client_idle_limit=1)
    a = _client(pg)
    a.rows("begin")
    a.rows("set work_mem = '11MB'")
    code, body = a.read_msg()  # after about a second of silence
    assert code == "E" and error_fields(body)["C"] == "57P05"
    assert a.closed_by_peer()
    a.close()
    with _client(pg) as b:
        msgs = b.simple("select current_setting('work_mem')")
        assert _status(msgs) == "I"
        assert rows_of(msgs)[0][0] != "11MB"


def test_listen_pins_and_notify_arrives(pooldb, pgtwist_factory):
    pg = _daemon(pgtwist_factory, links=2)
    with _client(pg) as a, _client(pg) as b, _client(pg) as c:
        a.rows("listen txr_chan")
        for _ in range(3):
            assert b.rows("select 1") == [["1"]]
            assert c.rows("select 2") == [["2"]]
        b.rows("notify txr_chan, 'hi'")
        code, body = a.read_msg()
        assert code == "A"
        assert body[4:].split(b"\0")[:2] == [b"txr_chan", b"hi"]
        assert a.rows("select count(*) from pg_listening_channels()") == [["1"]]


# -- drivers -----------------------------------------------------------------------------------------


def test_asyncpg_statement_cache_over_a_small_server_bound(pooldb, pgtwist_factory):
    pg = _daemon(pgtwist_factory, links=2, max_prepared_statements=2)

    async def client(k: int) -> None:
        conn = await asyncpg.connect(host=pg.host, port=pg.port, user="postgres", database=DB,
                                     statement_cache_size=8)
        try:
            for i in range(40):
                q = i % 6
                got = await conn.fetchval(f"select $1::int + {q}", i)
                assert got == i + q
                if i % 10 == 0:
                    async with conn.transaction():
                        assert await conn.fetchval("select $1::int * 3", i) == i * 3
                        assert await conn.fetchval(f"select $1::int + {q}", 1) == 1 + q
        finally:
            await conn.close()

    async def main():
        await asyncio.wait_for(asyncio.gather(*(client(k) for k in range(4))), 30)

    asyncio.run(main())
    assert_log_clean(pg)


def test_psycopg_pipeline_with_prepare_threshold_zero(pooldb, pgtwist_factory, cluster):
    pg = _daemon(pgtwist_factory, links=1)
    with psycopg.connect(pg.dsn(dbname=DB), autocommit=True, prepare_threshold=0) as a, \
            psycopg.connect(pg.dsn(dbname=DB), autocommit=True, prepare_threshold=0) as b:
        for k in range(3):
            with a.pipeline():
                curs = [a.execute("select %s::int + %s::int", [i, k]) for i in range(5)]
                curs.append(a.execute("select %s::text", [f"k{k}"]))
            assert [c.fetchone()[0] for c in curs[:5]] == [i + k for i in range(5)]
            assert curs[5].fetchone() == (f"k{k}",)
            assert b.execute("select %s::int", [k]).fetchone() == (k,)
        with pytest.raises(psycopg.errors.DivisionByZero), a.pipeline():
            a.execute("select %s::int", [1])
            a.execute("select 1 / %s::int", [0])
        assert a.execute("select %s::int + %s::int", [1, 1]).fetchone() == (2,)
    assert_log_clean(pg)
