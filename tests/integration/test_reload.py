"""SIGHUP: configuration and cached catalog facts are re-read, sessions carry on."""

from __future__ import annotations

import psycopg
import pytest
import yaml

from .reloadutil import hup_and_wait as _hup_and_wait

pytestmark = pytest.mark.integration


def _port(conn) -> int:
    return conn.execute("select inet_server_port()").fetchone()[0]


def test_sighup_reloads_volatility_cache(cluster, pgtwist_factory):
    cluster.psql(
        "create or replace function reload_f() returns int language sql stable as 'select 1'"
    )
    cluster.wait_replayed()
    primary = {"hostname": cluster.host, "port": cluster.primary_port, "weight": 0,
               "flag": "ALWAYS_PRIMARY"}
    replica = {"hostname": cluster.host, "port": cluster.replica_ports[0], "weight": 1}
    pg = pgtwist_factory(extra={"backends": [primary, replica]})
    try:
        with psycopg.connect(pg.dsn(), autocommit=True) as conn:
            sql = "select reload_f(), inet_server_port()"
            assert conn.execute(sql).fetchone()[1] == cluster.replica_ports[0]
            cluster.psql("alter function reload_f() volatile")
            cluster.wait_replayed()
            # The cached volatility still says stable until SIGHUP.
            assert conn.execute(sql).fetchone()[1] == cluster.replica_ports[0]
            _hup_and_wait(pg)
            # The open session keeps working; fresh facts send the call to the primary.
            assert conn.execute(sql).fetchone()[1] == cluster.primary_port
    finally:
        cluster.psql("drop function if exists reload_f()")


def test_sighup_applies_new_routing_lists_to_new_sessions(cluster, pgtwist_factory):
    pg = pgtwist_factory(replica_weight=1)
    config = yaml.safe_load(open(pg.config_path))
    config["backends"][0]["weight"] = 0
    with open(pg.config_path, "w") as f:
        yaml.safe_dump(config, f)
    _hup_and_wait(pg)
    with psycopg.connect(pg.dsn(), autocommit=True) as conn:
        assert _port(conn) == cluster.replica_ports[0]
    config["primary_routing_query_pattern_list"] = r"select inet_server_port\(\)"
    with open(pg.config_path, "w") as f:
        yaml.safe_dump(config, f)
    _hup_and_wait(pg)
    with psycopg.connect(pg.dsn(), autocommit=True) as conn:
        assert _port(conn) == cluster.primary_port


def test_sighup_with_a_broken_file_keeps_running(cluster, pgtwist_factory):
    pg = pgtwist_factory()
    with open(pg.config_path, "a") as f:
        f.write("port: not-a-port\n")
    _hup_and_wait(pg, marker="reload failed")
    assert "port: expected an integer" in pg.log_text()
    with psycopg.connect(pg.dsn(), autocommit=True) as conn:
        assert conn.execute("select 1").fetchone() == (1,)
