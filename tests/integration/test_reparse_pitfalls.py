"""A statement moved to another node is parsed there first, for every message naming it.

protocol-pitfalls: replay Parse before *any* message that names the statement on a
new backend — Bind, Describe 'S' and Close — and hide its ParseComplete.  Reads go to
the replica here (primary weight 0); after a write in a transaction they must run on
the primary, where the statement was never parsed.
"""

from __future__ import annotations

import pytest

from .rawpg import (
    SYNC,
    RawClient,
    bind,
    codes_of,
    data_row,
    describe,
    execute,
    msg,
    parse,
)

pytestmark = pytest.mark.integration


def close_statement(name: str) -> bytes:
    return msg(b"C", b"S" + name.encode() + b"\0")


@pytest.fixture
def reads_on_replica(cluster, pgtwist_factory):
    cluster.psql("create table if not exists rp_items (v int)")
    cluster.wait_replayed()
    primary = {"hostname": cluster.host, "port": cluster.primary_port, "weight": 0,
               "flag": "ALWAYS_PRIMARY"}
    replica = {"hostname": cluster.host, "port": cluster.replica_ports[0], "weight": 1}
    return pgtwist_factory(extra={"backends": [primary, replica]})


def test_describe_bind_and_close_follow_a_statement_to_the_primary(cluster, reads_on_replica):
    with RawClient(reads_on_replica.port) as c:
        c.startup({"user": "postgres", "database": "postgres"})
        c.send(parse("select inet_server_port()", name="s1"), SYNC)
        assert codes_of(c.read_until("Z")) == "1Z"
        c.send(bind(statement="s1"), execute(), SYNC)
        got = c.read_until("Z")
        assert codes_of(got) == "2DCZ"
        assert data_row(got[1][1]) == [str(cluster.replica_ports[0])]

        assert codes_of(c.simple("begin")) == "CZ"
        assert codes_of(c.simple("insert into rp_items values (1)")) == "CZ"
        # Describe 'S' now goes to the primary: no extra ParseComplete may show.
        c.send(describe(b"S", "s1"), SYNC)
        assert codes_of(c.read_until("Z")) == "tTZ"
        c.send(bind(statement="s1"), execute(), SYNC)
        got = c.read_until("Z")
        assert codes_of(got) == "2DCZ"
        assert data_row(got[1][1]) == [str(cluster.primary_port)]
        # Close answers once, although the statement lives on two nodes.
        c.send(close_statement("s1"), SYNC)
        assert codes_of(c.read_until("Z")) == "3Z"
        assert codes_of(c.simple("rollback")) == "CZ"
        # Gone on both nodes: using it again is PostgreSQL's own 26000.
        c.send(bind(statement="s1"), execute(), SYNC)
        got = c.read_until("Z")
        assert codes_of(got) == "EZ"
        assert b"C26000" in got[0][1]


def test_reparse_inside_a_batch_keeps_the_batch_one_transaction(cluster, pgtwist_factory):
    """Session mode: a statement parsed on the replica is needed on the primary in the
    middle of a batch (a write came first).  It is parsed there inside the batch, so a
    failure later in the batch still rolls back the write."""
    cluster.psql("create table if not exists rp_batch (v int)")
    cluster.psql("truncate rp_batch")
    cluster.wait_replayed()
    primary = {"hostname": cluster.host, "port": cluster.primary_port, "weight": 0,
               "flag": "ALWAYS_PRIMARY"}
    replica = {"hostname": cluster.host, "port": cluster.replica_ports[0], "weight": 1}
    pg = pgtwist_factory(extra={"backends": [primary, replica],
                                "disable_load_balance_on_write": "always"})
    with RawClient(pg.port) as c:
        c.startup({"user": "postgres", "database": "postgres"})
        c.send(parse("select 1 / $1::int, inet_server_port()", name="div"), SYNC)
        assert codes_of(c.read_until("Z")) == "1Z"
        c.send(bind([b"1"], statement="div"), execute(), SYNC)
        got = c.read_until("Z")
        assert data_row(got[1][1]) == ["1", str(cluster.replica_ports[0])]
        c.send(parse("insert into rp_batch values ($1::int)", name="ins"),
               bind([b"7"], statement="ins"), execute(),
               bind([b"0"], statement="div"), execute(), SYNC)
        got = c.read_until("Z")
        assert codes_of(got) == "12CEZ", got
        assert b"C22012" in got[3][1]
    assert cluster.psql("select count(*) from rp_batch") == "0"
