"""The primary is restarted under a write load through pgtwist: clients get clear errors
while it is down (never a hang, never a daemon traceback), pgtwist recovers by itself, and
every write it acknowledged is still there afterwards.

The test restarts the shared cluster's primary and waits until the replica streams and
has replayed again before it ends (other tests share the cluster).
"""

from __future__ import annotations

import threading
import time
import uuid

import psycopg
import pytest

from .conftest import assert_log_clean

pytestmark = pytest.mark.integration

WRITERS = 4


def _needs_node_control(cluster):
    if not hasattr(cluster, "stop_node"):
        pytest.skip("this cluster backend cannot stop single nodes")


class Writer(threading.Thread):
    """Inserts rows through pgtwist, one autocommit statement at a time, reconnecting
    after a failure; keeps what was acknowledged and every error seen."""

    def __init__(self, dsn: str, table: str, stop: threading.Event):
        super().__init__(daemon=True)
        self.dsn, self.table, self.stop = dsn, table, stop
        self.acked: list[str] = []
        self.errors: list[tuple[float, str, str | None, str]] = []
        self.acked_at: list[float] = []

    def run(self) -> None:
        conn = None
        while not self.stop.is_set():
            try:
                if conn is None:
                    conn = psycopg.connect(self.dsn, autocommit=True, connect_timeout=5)
                    # The dev cluster commits asynchronously (synchronous_commit off): an
                    # acknowledged commit survives the server's crash only if it waited
                    # for its WAL, as a durable application's does.
                    conn.execute("set synchronous_commit = on")
                key = uuid.uuid4().hex
                conn.execute(f"insert into {self.table} values (%s)", (key,))
                self.acked.append(key)
                self.acked_at.append(time.monotonic())
            except psycopg.Error as exc:
                self.errors.append((time.monotonic(), type(exc).__name__,
                                    getattr(exc, "sqlstate", None), str(exc).strip()))
                if conn is not None:
                    conn.close()
                    conn = None
                time.sleep(0.1)
        if conn is not None:
            conn.close()


def test_primary_restart_under_write_load(cluster, pgtwist_factory, pool_database):
    _needs_node_control(cluster)
    table = "restart_acks"
    with psycopg.connect(cluster.dsn(dbname=pool_database), autocommit=True) as conn:
        conn.execute(f"drop table if exists {table}")
        conn.execute(f"create table {table} (id text primary key)")
    pg = pgtwist_factory({"health_check_period": 1, "health_check_timeout": 1,
                          "health_check_max_retries": 0, "health_check_user": "postgres",
                          "connect_timeout": 2000}, replica_weight=1)
    stop = threading.Event()
    writers = [Writer(pg.dsn(dbname=pool_database), table, stop) for _ in range(WRITERS)]
    for w in writers:
        w.start()
    try:
        time.sleep(2)
        down_at = time.monotonic()
        cluster.stop_node("primary")
        time.sleep(3)
        cluster.start_node("primary")
        up_at = time.monotonic()
        # Recovery: every writer gets acknowledged writes again within 30 s.
        deadline = up_at + 30
        while time.monotonic() < deadline and not all(
                w.acked_at and w.acked_at[-1] > up_at for w in writers):
            time.sleep(0.2)
    finally:
        stop.set()
        for w in writers:
            w.join(20)
    assert not any(w.is_alive() for w in writers), "a writer hung"
    recovered = [w.acked_at[-1] - up_at if w.acked_at and w.acked_at[-1] > up_at else None
                 for w in writers]
    assert all(r is not None for r in recovered), recovered
    errors = [e for w in writers for e in w.errors]
    assert errors, "the primary's restart was not seen by any writer"
    for when, kind, _sqlstate, message in errors:
        assert when >= down_at - 1, (kind, message)      # no error before the restart
        assert message, kind                             # every error says what happened
    acked = [key for w in writers for key in w.acked]
    with psycopg.connect(cluster.dsn(dbname=pool_database), autocommit=True) as conn:
        present = {r[0] for r in conn.execute(f"select id from {table}")}
        conn.execute(f"drop table {table}")
    missing = [key for key in acked if key not in present]
    assert not missing, f"{len(missing)} of {len(acked)} acknowledged writes lost"
    print(f"\nprimary restart: {len(acked)} writes acknowledged, {len(errors)} errors "
          f"while down, recovered in {max(recovered):.2f} s after the restart; errors seen: "
          f"{sorted({(k, s) for _w, k, s, _m in errors}, key=str)}")
    cluster.wait_replayed(60)
    assert_log_clean(pg)
