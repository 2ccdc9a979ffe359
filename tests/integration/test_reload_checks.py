"""SIGHUP applies the health-check settings (RELOAD context in Pgpool-II): a health check
switched on by a reload runs, and one switched off stops marking nodes down."""

from __future__ import annotations

import time

import psycopg
import pytest

from .conftest import backends
from .metricsutil import Forwarder
from .reloadutil import hup_and_wait as _hup
from .reloadutil import rewrite_config as _rewrite

pytestmark = pytest.mark.integration




def _status(pg, node: int) -> str:
    with psycopg.connect(pg.dsn(), autocommit=True) as conn:
        rows = conn.execute("SHOW pool_nodes").fetchall()
    return rows[node][3]


UP = ("up", "waiting")  # waiting: up, no session has used it yet


def _until(pg, node: int, want: str, timeout: float) -> str:
    """The node's status once it is ``want`` ('up' or 'down'), or at the timeout."""
    deadline = time.monotonic() + timeout
    while True:
        status = _status(pg, node)
        if status in (UP if want == "up" else (want,)) or time.monotonic() > deadline:
            return status
        time.sleep(0.2)


def test_sighup_starts_and_stops_health_checks(cluster, pgtwist_factory):
    forward = Forwarder(cluster.replica_ports[0])
    nodes = backends(cluster, primary_weight=0, replica_weight=1)
    nodes[1].update(port=forward.port, flag="ALLOW_TO_FAILOVER")
    try:
        pg = pgtwist_factory(extra={"backends": nodes, "read_consistency": "none",
                                    "sr_check_period": 0,  # no other check looks
                                    "health_check_period": 0, "health_check_timeout": 1,
                                    "health_check_max_retries": 0,
                                    "health_check_user": "postgres", "auto_failback": True})
        assert _status(pg, 1) in UP
        forward.close()
        # No health check: nothing notices the replica is gone (no client read it).
        assert _until(pg, 1, "down", 2.5) in UP
        _rewrite(pg, health_check_period=1)
        _hup(pg)
        assert _until(pg, 1, "down", 10) == "down"
        # Back, and found by the reloaded check (auto_failback).
        forward = Forwarder(cluster.replica_ports[0], port=forward.port)
        assert _until(pg, 1, "up", 10) in UP
        # Switched off again: the loop stops (the node stays as last seen).
        _rewrite(pg, health_check_period=0)
        _hup(pg)
        forward.close()
        assert _until(pg, 1, "down", 2.5) in UP
    finally:
        forward.close()
