"""Transaction pooling edge cases: COPY (extended protocol, early Sync, a freshly
checked-out link, psycopg) and FunctionCall.
"""

from __future__ import annotations

import struct

import psycopg
import pytest

from .conftest import assert_log_clean
from .rawpg import (
    COPY_DONE,
    SYNC,
    codes_of,
    copy_data,
    errors_of,
    query,
    rows_of,
)
from .txnedge_util import (
    DB,
    _client,
    _count,
    _daemon,
    _function_call,
    _pbe,
    _sqlstates,
    _status,
    _truncate,
    pooldb,  # noqa: F401  (a fixture)
)

pytestmark = pytest.mark.integration


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

