"""Transaction pooling edge cases: what a failure or rollback undoes (SETs in failed
queries, batches and savepoints), and errors on the replica inside a transaction.

Which node answered a read is told by ``current_setting('in_hot_standby')`` (not
transaction_read_only: transaction-scoped settings are read on the primary).
"""

from __future__ import annotations

import pytest

from .conftest import assert_log_clean
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
    _lb_daemon,
    _sqlstates,
    _status,
    _work_mem,
    pooldb,  # noqa: F401  (a fixture)
)

pytestmark = pytest.mark.integration


def test_statement_level_load_balance(pooldb, pgtwist_factory, cluster):
    pg = _lb_daemon(pgtwist_factory, cluster, links=1, statement_level_load_balance=True)
    with _client(pg) as a, _client(pg) as b:
        a.rows("set work_mem = '3MB'")
        a.send(parse("select current_setting('work_mem'), "
                     "current_setting('in_hot_standby')", "w"), SYNC)
        assert codes_of(a.read_until()) == "1Z"
        for _ in range(3):
            a.send(bind(statement="w"), execute(), SYNC)
            msgs = a.read_until()
            assert rows_of(msgs) == [["3MB", "on"]], errors_of(msgs)
            assert a.rows("select current_setting('work_mem')") == [["3MB"]]
            b.rows("select 1")
        a.rows("begin")
        a.rows("insert into txr_items values (2)")
        assert a.rows("select current_setting('in_hot_standby')") == [["off"]]
        a.rows("rollback")


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
                                     "current_setting('in_hot_standby')")[0]
        assert on_replica == "on"
        a.rows("begin")
        a.rows("set work_mem = '7MB'")
        assert a.rows("select current_setting('work_mem')") == [["7MB"]]
        a.rows("rollback")
    with _client(pg) as c:  # the next client of the replica link
        assert c.rows("select current_setting('work_mem'), "
                      "current_setting('in_hot_standby')") == [[default, "on"]]


def test_set_then_reads_on_the_replica(pooldb, pgtwist_factory, cluster):
    pg = _lb_daemon(pgtwist_factory, cluster, links=1)
    with _client(pg) as a, _client(pg) as b:
        a.rows("set work_mem = '5MB'")
        a.rows("set application_name = 'txr_app'")
        for _ in range(3):
            assert a.rows("select current_setting('work_mem'), current_setting("
                          "'application_name'), current_setting('in_hot_standby')") == [
                ["5MB", "txr_app", "on"]]
            assert b.rows("select current_setting('application_name'), "
                          "current_setting('in_hot_standby')") == [["", "on"]]


def test_error_on_the_replica_aborts_the_transaction_until_rollback(
        pooldb, pgtwist_factory, cluster):
    pg = _lb_daemon(pgtwist_factory, cluster, links=1)
    with _client(pg) as a, _client(pg) as b:
        a.rows("begin")
        assert a.rows("select current_setting('in_hot_standby')") == [["on"]]
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

