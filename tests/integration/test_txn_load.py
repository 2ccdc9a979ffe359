"""Transaction pooling under load: asyncpg and psycopg statement caches and pgbench
over a handful of shared links (``pool_mode: transaction``).
"""

from __future__ import annotations

import asyncio
import re
import subprocess

import asyncpg
import psycopg
import pytest
from psycopg import errors as pgerr

from .conftest import assert_log_clean
from .txnpool_util import (
    ASYNCPG_CLIENTS,
    ASYNCPG_ITERATIONS,
    DB,
    PGBENCH_CLIENTS,
    PGBENCH_THREADS,
    PGBENCH_TXNS,
    _connect,
    _one,
    _pgbench,
    _psql_db,
    _run_threads,
    _Sampler,
    _stat,
    _stats,
    _tag,
    _tool_env,
    _txn,
    _wait_no_backends,
    pgbench_schema,  # noqa: F401  (a fixture)
    pooldb,  # noqa: F401  (a fixture)
)

pytestmark = pytest.mark.integration


def test_asyncpg_50_clients_share_5_links_with_prepared_statements(
        pooldb, pgtwist_factory, cluster):
    pg = _txn(pgtwist_factory, backend_max_connections=5, max_pool=5, checkout_timeout=60)
    tag = _tag()
    _wait_no_backends(cluster)

    async def client(k: int):
        conn = await asyncpg.connect(host=pg.host, port=pg.port, user="postgres",
                                     database=DB, timeout=60)
        inserted = 0
        try:
            product = await conn.prepare("select $1::int * $2::int")
            for i in range(ASYNCPG_ITERATIONS):
                r = i % 10
                if r < 5:  # client-specific text: every client has its own statement
                    got, want = await conn.fetchval(f"select $1::int + {k}", i), i + k
                elif r == 5:  # the same text in every client
                    got, want = await conn.fetchval("select $1::int + 1", i), i + 1
                elif r == 6:
                    got = tuple(await conn.fetchrow("select $1::text || $2::text, $3::int8 * 2",
                                                    f"c{k}:", str(i), i))
                    want = (f"c{k}:{i}", 2 * i)
                elif r == 7:
                    got, want = await product.fetchval(i, k), i * k
                elif r == 8:
                    got = await conn.fetchval(
                        "select count(*) from txn_items where tag = $1 and client = $2", tag, k)
                    want = inserted
                else:
                    async with conn.transaction():
                        await conn.execute(
                            "insert into txn_items (tag, client, i) values ($1, $2, $3)", tag, k, i)
                        got = await conn.fetchval(
                            "select count(*) from txn_items where tag = $1 and client = $2",
                            tag, k)
                    inserted += 1
                    want = inserted
                if got != want:
                    raise AssertionError(f"client {k} iteration {i}: got {got!r}, want {want!r}")
        finally:
            await conn.close(timeout=10)

    async def main():
        results = await asyncio.gather(*(client(k) for k in range(ASYNCPG_CLIENTS)),
                                       return_exceptions=True)
        return [(k, r) for k, r in enumerate(results) if isinstance(r, BaseException)]

    sampler = _Sampler(cluster)
    sampler.start()
    try:
        errors = asyncio.run(asyncio.wait_for(main(), 240))
    finally:
        peak = sampler.finish()
    assert errors == [], f"{len(errors)} clients failed, first: {errors[:5]}"
    assert peak[cluster.primary_port] >= 1, peak
    per_client = ASYNCPG_ITERATIONS // 10
    assert _psql_db(cluster, f"select count(*), count(distinct client) from txn_items "
                             f"where tag = '{tag}'") == f"{ASYNCPG_CLIENTS * per_client}|50"
    with _connect(pg) as conn:
        stats = _stats(conn)
    assert _stat(stats, "statements_parsed") >= 1, stats
    assert _stat(stats, "links") <= 5, stats
    assert_log_clean(pg)
    sampler.check(5)


# -- 2. psycopg automatic prepare, psycopg's own DEALLOCATE / Close -------------------------


def test_psycopg_auto_prepare_20_clients_over_3_links(pooldb, pgtwist_factory, cluster):
    pg = _txn(pgtwist_factory, backend_max_connections=3, max_pool=3, checkout_timeout=60)
    tag = _tag()
    _wait_no_backends(cluster)

    def worker(k: int):
        with _connect(pg, prepare_threshold=0) as conn:
            inserted = 0
            for i in range(100):
                # the same text in every client, then text of this client only: psycopg names
                # both _pg3_<n>, so the same client-side name has 20 different bodies
                assert _one(conn, "select %s::int + %s::int", [i, k]) == (i + k,)
                assert _one(conn, f"select %s::text || '-{k}'", [str(i)]) == (f"{i}-{k}",)
                if i % 10 == 0:
                    with conn.transaction():
                        conn.execute("insert into txn_items (tag, client, i) values (%s, %s, %s)",
                                     [tag, k, i])
                        n = _one(conn, "select count(*) from txn_items where tag = %s "
                                       "and client = %s", [tag, k])[0]
                    inserted += 1
                    assert n == inserted, (k, i, n, inserted)
                if i % 25 == 7:  # a rolled back transaction (psycopg then DEALLOCATEs ALL)
                    with conn.transaction():
                        conn.execute("insert into txn_items (tag, client, i) values (%s, %s, %s)",
                                     [tag, k, -1])
                        raise psycopg.Rollback
            # a statement first parsed inside a failed transaction, used after the rollback
            conn.execute("BEGIN")
            with pytest.raises(pgerr.DivisionByZero):
                conn.execute("select 1 / %s::int", [0])
            with pytest.raises(pgerr.InFailedSqlTransaction):
                conn.execute(f"select %s::int + 100 /* txn_failed_{k} */", [1])
            conn.execute("ROLLBACK")
            assert _one(conn, f"select %s::int + 100 /* txn_failed_{k} */", [1]) == (101,)
            # more distinct statements than prepared_max: psycopg evicts (Close 'S' with
            # libpq >= 17, else DEALLOCATE name) and prepares again
            conn.prepare_threshold = 1
            conn.prepared_max = 5
            for rnd in range(4):
                for j in range(15):
                    row = _one(conn, f"select %s::int * {j + 2} /* txn_evict_{j} */", [rnd + k])
                    assert row == ((rnd + k) * (j + 2),), (k, rnd, j, row)
            assert _one(conn, "select %s::int + %s::int", [1, k]) == (1 + k,)
            assert _one(conn, "select count(*) from txn_items where tag = %s and client = %s",
                        [tag, k]) == (inserted,)

    sampler = _Sampler(cluster)
    sampler.start()
    try:
        errors = _run_threads(worker, 20)
    finally:
        sampler.finish()
    assert errors == [], f"{len(errors)} clients failed, first: {errors[:3]}"
    assert _psql_db(cluster, f"select count(*) from txn_items where tag = '{tag}'") == "200"
    assert_log_clean(pg)
    sampler.check(3)


@pytest.mark.parametrize("mode,threads", [("prepared", PGBENCH_THREADS),
                                          ("extended", PGBENCH_THREADS),
                                          ("prepared", PGBENCH_CLIENTS)])
def test_pgbench_over_3_links(pgbench_schema, pgtwist_factory, cluster, mode, threads):
    """pgbench -M prepared prepares each command with a blocking PQprepare the first time it
    runs it: with -j 2 that Parse must not wait for a link while other clients of the same
    thread hold all links in open transactions (that would deadlock until checkout_timeout).
    With -j 8 every client has a thread of its own."""
    pg = _txn(pgtwist_factory, backend_max_connections=3, max_pool=3, checkout_timeout=10)
    _wait_no_backends(cluster)
    sampler = _Sampler(cluster)
    sampler.start()
    try:
        proc = subprocess.run(
            [_pgbench(), "-M", mode, "-c", str(PGBENCH_CLIENTS), "-j", str(threads),
             "-t", str(PGBENCH_TXNS), "-h", pg.host, "-p", str(pg.port), "-U", "postgres", DB],
            capture_output=True, text=True, env=_tool_env(), timeout=180)
    finally:
        sampler.finish()
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert f"query mode: {mode}" in out, out
    expected = PGBENCH_CLIENTS * PGBENCH_TXNS
    processed = re.search(r"number of transactions actually processed: (\d+)/(\d+)", out)
    assert processed and int(processed[1]) == int(processed[2]) == expected, out
    failed = re.search(r"number of failed transactions: (\d+)", out)
    if failed:
        assert int(failed[1]) == 0, out
    assert "error" not in proc.stderr.lower(), proc.stderr
    # the pre-run vacuum truncated pgbench_history: each row is one transaction of this run
    assert _psql_db(cluster, "select count(*) from pgbench_history") == str(expected)
    assert_log_clean(pg)
    sampler.check(3)

