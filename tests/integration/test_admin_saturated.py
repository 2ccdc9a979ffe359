"""Admin commands need no server connection: they are answered while every pooled link is
busy (and clients queue for one), while every client slot is taken, and while the
primary refuses connections at max_connections."""

from __future__ import annotations

import threading
import time

import psycopg
import pytest

from pgtwist.dev import devcluster as dc

from .adminutil import connect, show, table, wait_for

pytestmark = pytest.mark.integration

QUICK = 2.0   # seconds: an answer that needed a link would wait far longer


def timed(conn, sql: str, **kw):
    started = time.monotonic()
    result = show(conn, sql, **kw) if not kw.get("binary") else (
        conn.execute(sql, **kw).fetchall())
    assert time.monotonic() - started < QUICK, sql
    return result


def ask_everything(conn, named) -> dict:
    out = {}
    for name in ("pool_nodes", "pool_processes", "pool_pools", "pool_backend_stats",
                 "pool_health_check_stats", "pool_status", "pool_version", "pool_cache"):
        out[name] = timed(conn, f"SHOW {name}")
        assert timed(named, f"SHOW {name}", binary=True)
    out["port"] = timed(conn, "PGPOOL SHOW port")
    named.execute("PGPOOL SET client_idle_limit = 99")
    assert named.execute("PGPOOL SHOW client_idle_limit").fetchall() == [("99",)]
    return out


def test_admin_answers_while_every_pooled_link_is_busy(cluster, pgtwist_factory,
                                                       pool_database):
    pg = pgtwist_factory(extra={"pool_mode": "transaction", "transaction_pool_size": 2,
                                "checkout_timeout": 30})
    dsn = pg.dsn(dbname=pool_database)
    with psycopg.connect(dsn, autocommit=True, prepare_threshold=None) as admin, \
            psycopg.connect(dsn, autocommit=True, prepare_threshold=0) as named, \
            psycopg.connect(dsn) as busy1, psycopg.connect(dsn) as busy2, \
            psycopg.connect(dsn, autocommit=True) as queued:
        busy1.execute("SELECT 1")          # each holds a link in its open transaction
        busy2.execute("SELECT 1")
        done = threading.Event()

        def wait_for_a_link():
            queued.execute("SELECT 1")     # queues: both links are busy
            done.set()

        waiter = threading.Thread(target=wait_for_a_link, daemon=True)
        waiter.start()
        wait_for(lambda: dict(admin.execute("SHOW pgtwist_pool").fetchall())["waiting"] == "1")
        answers = ask_everything(admin, named)
        _names, rows = answers["pool_processes"]
        statuses = sorted(r[7] for r in rows if r[3] == pool_database)
        assert statuses.count("Idle in transaction") == 2
        assert not done.is_set()           # still queued: the admin answers did not wait
        busy1.rollback()
        assert done.wait(10)
        waiter.join(10)
        busy2.rollback()


def test_admin_answers_while_every_client_slot_is_taken(cluster, pgtwist_factory):
    pg = pgtwist_factory(extra={"num_init_children": 3})
    with connect(pg) as admin, connect(pg) as a, connect(pg) as b:
        sleepers = [threading.Thread(target=c.execute, args=("SELECT pg_sleep(3)",),
                                     daemon=True) for c in (a, b)]
        for t in sleepers:
            t.start()
        procs = wait_for(lambda: (t := table(admin, "SHOW pool_processes"))
                         and sum(r["status"] == "Execute command" for r in t.values()) == 3
                         and t)
        assert len(procs) == 3                                   # no free slot left
        assert all(r["username"] == "postgres" for r in procs.values())
        started = time.monotonic()
        show(admin, "SHOW pool_pools")
        show(admin, "PGPOOL SHOW ALL")
        assert time.monotonic() - started < QUICK
        for t in sleepers:
            t.join(10)


def _fill(port: int) -> list[psycopg.Connection]:
    """Connections to ``port`` until the server refuses one for max_connections."""
    held = []
    try:
        while True:
            try:
                held.append(psycopg.connect(dc.conninfo(host=dc.HOST, port=port, user="postgres",
                                                        dbname="postgres"), connect_timeout=5))
            except psycopg.OperationalError as exc:
                assert "too many clients" in str(exc), exc
                return held
            assert len(held) < 2000
    except BaseException:
        for c in held:
            c.close()
        raise


@pytest.mark.parametrize("pool_mode", ["session", "transaction"])
def test_admin_answers_while_the_primary_is_at_max_connections(cluster, pgtwist_factory,
                                                               pool_mode):
    pg = pgtwist_factory(extra={"pool_mode": pool_mode})
    dsn = pg.dsn(user="scram_user", password=dc.TEST_USERS["scram_user"])
    with psycopg.connect(dsn, autocommit=True) as admin, \
            psycopg.connect(dsn, autocommit=True, prepare_threshold=0) as named:
        admin.execute("SELECT 1")
        named.execute("SELECT 1")
        held = _fill(cluster.primary_port)
        try:
            with pytest.raises(psycopg.OperationalError, match="too many clients"):
                psycopg.connect(cluster.dsn(), connect_timeout=5)
            answers = ask_everything(admin, named)
            nodes = {r[0]: r for r in answers["pool_nodes"][1]}
            assert nodes["0"][3] == "up"     # a full server is not a down one
            if pool_mode == "transaction":
                # a new client logs in on the link the pool keeps, and asks too
                with psycopg.connect(dsn, autocommit=True, connect_timeout=5) as late:
                    assert show(late, "SHOW pool_version")[1][0][0].startswith("4.")
        finally:
            for c in held:
                c.close()
