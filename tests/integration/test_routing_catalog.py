"""Catalog facts pgtwist looks up on the primary: unlogged and other sessions' temp tables."""

from __future__ import annotations

import psycopg
import pytest

pytestmark = pytest.mark.integration


@pytest.fixture
def replica_reads(cluster, pgtwist_factory):
    primary = {"hostname": cluster.host, "port": cluster.primary_port, "weight": 0,
               "flag": "ALWAYS_PRIMARY"}
    replica = {"hostname": cluster.host, "port": cluster.replica_ports[0], "weight": 1}
    return pgtwist_factory(extra={"backends": [primary, replica]})


def _port(conn, sql: str) -> int:
    return conn.execute(sql).fetchone()[0]


def test_unlogged_table_reads_go_to_the_primary(cluster, replica_reads):
    cluster.psql("create unlogged table if not exists rc_unlogged (a int); "
                 "create table if not exists rc_logged (a int)")
    cluster.wait_replayed()
    try:
        with psycopg.connect(replica_reads.dsn(), autocommit=True) as conn:
            assert _port(conn, "select inet_server_port() from rc_logged "
                               "union all select inet_server_port()") == cluster.replica_ports[0]
            assert _port(conn, "select inet_server_port() from rc_unlogged "
                               "union all select inet_server_port()") == cluster.primary_port
    finally:
        cluster.psql("drop table if exists rc_unlogged, rc_logged")


def test_unlogged_check_can_be_turned_off(cluster, pgtwist_factory):
    cluster.psql("create unlogged table if not exists rc_unlogged2 (a int)")
    cluster.wait_replayed()
    primary = {"hostname": cluster.host, "port": cluster.primary_port, "weight": 0,
               "flag": "ALWAYS_PRIMARY"}
    replica = {"hostname": cluster.host, "port": cluster.replica_ports[0], "weight": 1}
    pg = pgtwist_factory(extra={"backends": [primary, replica], "check_unlogged_table": False})
    try:
        with psycopg.connect(pg.dsn(), autocommit=True) as conn:
            # An unlogged table is empty on a standby; with the check off it is read there.
            with pytest.raises(psycopg.errors.FeatureNotSupported):
                conn.execute("select * from rc_unlogged2")
    finally:
        cluster.psql("drop table if exists rc_unlogged2")


def test_temp_table_made_outside_pgtwist_sends_reads_to_the_primary(cluster, replica_reads):
    """check_temp_table=catalog: a temp table pgtwist did not see created is still found."""
    with psycopg.connect(replica_reads.dsn(), autocommit=True) as conn:
        # Created by a server-side function, so the statement text names no temp table.
        conn.execute("do $$ begin create temp table rc_hidden_temp (a int); end $$")
        assert _port(conn, "select inet_server_port() from rc_hidden_temp "
                           "union all select inet_server_port()") == cluster.primary_port
