"""read_consistency through a real daemon, primary and streaming replica (issue 11 item 3).

The "Done when" test: one connection writes, another reads right after, 1,000 times,
with load balancing on (the replica is every session's load-balance node) and replay
delayed on the replica (``recovery_min_apply_delay``, set with ALTER SYSTEM and reset at
the end).  Under ``lsn`` no read is stale; under ``none`` reads are measurably stale;
under ``lsn`` with no delay most reads still reach the replica.  The figures are printed.
"""

from __future__ import annotations

import psycopg
import pytest

from pgtwist.dev import devcluster as dc
from tests.integration.conftest import backends

pytestmark = pytest.mark.integration

ROUNDS = 1000
DELAY = "300ms"


@pytest.fixture(scope="module")
def table(cluster):
    cluster.psql("DROP TABLE IF EXISTS rc_probe; CREATE TABLE rc_probe (id int PRIMARY KEY, "
                 "v int NOT NULL); INSERT INTO rc_probe VALUES (1, 0)")
    yield "rc_probe"
    cluster.psql("DROP TABLE IF EXISTS rc_probe")


def _replica_delay(cluster, delay: str | None) -> None:
    port = cluster.replica_ports[0]
    if delay is None:
        cluster.psql("ALTER SYSTEM RESET recovery_min_apply_delay", port=port)
    else:
        cluster.psql(f"ALTER SYSTEM SET recovery_min_apply_delay = '{delay}'", port=port)
    cluster.psql("SELECT pg_reload_conf()", port=port)


@pytest.fixture
def delayed_replica(cluster, table):
    _replica_delay(cluster, DELAY)
    try:
        yield
    finally:
        _replica_delay(cluster, None)


def _start(factory, cluster, pool_mode: str, **extra):
    return factory(extra={"backends": backends(cluster, 0, 1), "pool_mode": pool_mode,
                          "load_balance_mode": True, **extra})


def _connect(pg) -> psycopg.Connection:
    return psycopg.connect(pg.dsn(user="postgres", password=dc.TEST_USERS.get("postgres")),
                           autocommit=True, prepare_threshold=None, connect_timeout=5)


def _write_then_read(pg, cluster, rounds: int = ROUNDS) -> tuple[int, int]:
    """(stale reads, reads answered by the replica) over ``rounds`` write-then-read pairs
    on two connections."""
    replica = cluster.replica_ports[0]
    stale = on_replica = 0
    with _connect(pg) as writer, _connect(pg) as reader:
        # PostgreSQL's default (the dev cluster turns it off): a commit's WAL is flushed,
        # and so streamed, when it returns, not at the WAL writer's next round.
        writer.execute("SET synchronous_commit = on")
        start = writer.execute("SELECT v FROM rc_probe WHERE id = 1 FOR UPDATE").fetchone()[0]
        for i in range(1, rounds + 1):
            writer.execute("UPDATE rc_probe SET v = %s WHERE id = 1", (start + i,))
            v, port = reader.execute(
                "SELECT v, inet_server_port() FROM rc_probe WHERE id = 1").fetchone()
            stale += v != start + i
            on_replica += port == replica
    return stale, on_replica


def _show(pg) -> dict[str, str]:
    with _connect(pg) as conn:
        return dict(conn.execute("SHOW pgtwist_consistency").fetchall())


@pytest.mark.parametrize("pool_mode", ["session", "transaction"])
def test_lsn_never_reads_stale_data_from_a_delayed_replica(pgtwist_factory, cluster,
                                                           delayed_replica, pool_mode):
    pg = _start(pgtwist_factory, cluster, pool_mode, read_consistency_wait=0)
    stale, on_replica = _write_then_read(pg, cluster)
    counts = _show(pg)
    print(f"\n[{pool_mode}] read_consistency=lsn, replay delayed {DELAY}: "
          f"{stale}/{ROUNDS} stale, {on_replica}/{ROUNDS} on the replica; {counts}")
    assert stale == 0
    assert int(counts["primary"]) >= ROUNDS - on_replica  # each kept-off read was counted
    assert int(counts["captures"]) >= ROUNDS


@pytest.mark.parametrize("pool_mode", ["session", "transaction"])
def test_none_reads_stale_data_from_a_delayed_replica(pgtwist_factory, cluster,
                                                      delayed_replica, pool_mode):
    pg = _start(pgtwist_factory, cluster, pool_mode, read_consistency="none")
    stale, on_replica = _write_then_read(pg, cluster, 200)
    print(f"\n[{pool_mode}] read_consistency=none, replay delayed {DELAY}: "
          f"{stale}/200 stale, {on_replica}/200 on the replica")
    assert on_replica == 200
    assert stale > 100   # Pgpool-II's behaviour: most reads miss the write just made


@pytest.mark.parametrize("pool_mode", ["session", "transaction"])
def test_lsn_still_uses_the_replica_when_it_keeps_up(pgtwist_factory, cluster, table,
                                                     pool_mode):
    pg = _start(pgtwist_factory, cluster, pool_mode, read_consistency_wait=50)
    stale, on_replica = _write_then_read(pg, cluster)
    counts = _show(pg)
    print(f"\n[{pool_mode}] read_consistency=lsn, wait 50 ms, no delay: "
          f"{stale}/{ROUNDS} stale, {on_replica}/{ROUNDS} on the replica; {counts}")
    assert stale == 0
    assert on_replica > ROUNDS // 2
    # Each read is counted once (a read decided again after waiting for a link keeps its
    # first count, so the split between outcomes is approximate in transaction mode).
    assert sum(int(counts[k]) for k in ("waited_replica", "replica_fresh", "primary")) \
        == ROUNDS


def test_a_bounded_wait_ends_on_the_primary_when_the_replica_lags(pgtwist_factory, cluster,
                                                                  delayed_replica):
    pg = _start(pgtwist_factory, cluster, "session", read_consistency_wait=20)
    stale, on_replica = _write_then_read(pg, cluster, 30)
    counts = _show(pg)
    assert stale == 0
    assert on_replica == 0
    assert int(counts["primary"]) >= 30


def test_session_scope_guards_the_session_own_writes_only(pgtwist_factory, cluster,
                                                          delayed_replica):
    pg = _start(pgtwist_factory, cluster, "session", read_consistency_scope="session")
    replica = cluster.replica_ports[0]
    with _connect(pg) as conn:
        base = conn.execute("SELECT v FROM rc_probe WHERE id = 1 FOR UPDATE").fetchone()[0]
        for i in range(1, 21):
            conn.execute("UPDATE rc_probe SET v = %s WHERE id = 1", (base + i,))
            assert conn.execute("SELECT v FROM rc_probe WHERE id = 1").fetchone()[0] == base + i
    # Another session's reads are not held to those writes: they use the replica.
    _replica_delay(cluster, None)
    with _connect(pg) as other:
        assert other.execute("SELECT inet_server_port()").fetchone()[0] == replica


@pytest.mark.parametrize("pool_mode", ["session", "transaction"])
def test_rows_of_an_autocommit_copy_are_never_read_stale(pgtwist_factory, cluster,
                                                         delayed_replica, pool_mode):
    """A COPY FROM STDIN in autocommit has no client sync point behind it to capture its
    commit LSN (the client may send nothing more): its rows count from the COPY on and
    reads stay on the primary until a poll of the primary's position settles it."""
    cluster.psql("DROP TABLE IF EXISTS rc_copy; CREATE TABLE rc_copy (id int)")
    cluster.wait_replayed(10)
    pg = _start(pgtwist_factory, cluster, pool_mode)
    try:
        with _connect(pg) as writer, _connect(pg) as reader:
            for i in range(1, 21):
                with writer.cursor().copy("COPY rc_copy (id) FROM STDIN") as copy:
                    copy.write_row((i,))
                # The writer stays idle: no later statement of its carries the capture.
                seen = reader.execute("SELECT count(*) FROM rc_copy").fetchone()[0]
                assert seen == i, f"round {i}: read {seen} rows after the COPY"
    finally:
        cluster.psql("DROP TABLE IF EXISTS rc_copy")
