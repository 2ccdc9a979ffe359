"""Transaction pooling edge cases: a link's life (checkout timeouts, a terminated idle
link, clients leaving mid-transaction or mid-batch, client_idle_limit, LISTEN).
"""

from __future__ import annotations

import time

import pytest

from .conftest import assert_log_clean
from .rawpg import (
    bind,
    error_fields,
    errors_of,
    execute,
    parse,
    rows_of,
)
from .txnedge_util import (
    _client,
    _daemon,
    _direct,
    _sqlstates,
    _status,
    pooldb,  # noqa: F401  (a fixture)
)

pytestmark = pytest.mark.integration


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

