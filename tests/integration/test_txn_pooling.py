"""Transaction pooling end to end (``pool_mode: transaction``).

Real drivers and tools through a real pgtwist: asyncpg and psycopg statement caches over a
handful of shared links, pgbench in the prepared and extended modes, session state (SET /
RESET / SET LOCAL / startup parameters) re-applied on every checkout and never leaking,
SQL-level and protocol-level prepared statements following a session across links, pins
(LISTEN, temp tables, advisory locks, WITH HOLD cursors), cancellation and saturation.

Every test uses the ``pooldb`` database (postgres is never pooled) and tables / schemas
named ``txn_*``.  Links are made to change under a session deterministically with
"holders": clients that open a transaction on a chosen server pid, so that the next
statement of the session under test must run on another link.
"""

from __future__ import annotations

import asyncio
import os
import random
import re
import shutil
import subprocess
import threading
import time
import uuid

import asyncpg
import psycopg
import pytest
from psycopg import errors as pgerr
from psycopg import pq

from .conftest import TRUST_HBA, assert_log_clean

pytestmark = pytest.mark.integration

DB = "pooldb"
CONNECT_TIMEOUT = 10
SCHEMAS = ("txn_s1", "txn_s2", "txn_s3")
INT4, INT8, TEXT = 23, 20, 25

_BACKENDS_WHERE = (
    f"from pg_stat_activity where datname = '{DB}' "
    "and backend_type = 'client backend' and pid <> pg_backend_pid()"
)
_BACKENDS_SQL = f"select count(*) {_BACKENDS_WHERE}"
_BACKEND_ROWS_SQL = (
    "select pid, application_name, state, to_char(backend_start, 'HH24:MI:SS.MS'), "
    "left(query, 40) "
    f"{_BACKENDS_WHERE} order by backend_start"
)


# -- fixtures and helpers ---------------------------------------------------------------------


def _psql_db(cluster, sql):
    return subprocess.run(["psql", "-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h", cluster.host,
                           "-p", str(cluster.primary_port), "-U", "postgres", "-d", DB, "-c", sql],
                          check=True, capture_output=True, text=True).stdout.strip()


@pytest.fixture(scope="module")
def pooldb(pool_database, cluster):
    stmts = [
        "create table if not exists txn_items (tag text, client int, i int)",
        "create table if not exists public.txn_where (v text)",
        "truncate public.txn_where",
        "insert into public.txn_where values ('public')",
        "grant select on public.txn_where to public",
    ]
    for s in SCHEMAS:
        stmts += [f"create schema if not exists {s}",
                  f"create table if not exists {s}.txn_where (v text)",
                  f"truncate {s}.txn_where",
                  f"insert into {s}.txn_where values ('{s}')",
                  f"grant usage on schema {s} to public",
                  f"grant select on {s}.txn_where to public"]
    _psql_db(cluster, "; ".join(stmts))
    cluster.wait_replayed()
    return DB


def _txn(pgtwist_factory, **extra):
    """A pgtwist in transaction mode (reads stay on the primary)."""
    return pgtwist_factory(extra={"pool_mode": "transaction", "checkout_timeout": 30, **extra},
                           hba=TRUST_HBA)


def _connect(pg, prepare_threshold=5, **kw) -> psycopg.Connection:
    return psycopg.connect(pg.dsn(dbname=DB, **kw), autocommit=True,
                           connect_timeout=CONNECT_TIMEOUT, prepare_threshold=prepare_threshold)


def _direct(cluster, port=None) -> psycopg.Connection:
    """A connection straight to a server (database postgres), not through pgtwist."""
    return psycopg.connect(cluster.dsn(port=port), autocommit=True, connect_timeout=10)


def _tag() -> str:
    return uuid.uuid4().hex[:12]


def _one(conn, sql, params=None):
    return conn.execute(sql, params).fetchone()


def _pid(conn) -> int:
    return _one(conn, "select pg_backend_pid()")[0]


def _stats(conn) -> dict[str, int]:
    """``SHOW pgtwist_pool`` (simple protocol) as {name: int}."""
    rows = conn.execute("SHOW pgtwist_pool").fetchall()
    out = {}
    for name, value in rows:
        try:
            out[name] = int(value)
        except (TypeError, ValueError):
            pass
    return out


def _stat(stats: dict[str, int], name: str) -> int:
    assert name in stats, f"SHOW pgtwist_pool has no {name!r} row: {sorted(stats)}"
    return stats[name]


def _wait_no_backends(cluster, timeout=10) -> None:
    """Sessions of earlier daemons in pooldb are gone (they would spoil the link counts)."""
    deadline = time.monotonic() + timeout
    with _direct(cluster) as conn:
        while (n := _one(conn, _BACKENDS_SQL)[0]) != 0:
            if time.monotonic() > deadline:
                pytest.fail(f"{n} sessions of earlier tests still connected to {DB}")
            time.sleep(0.05)


class _Sampler(threading.Thread):
    """Peak number of server sessions in pooldb on every node, sampled directly.

    ``peak``: all sessions; ``peak_links``: without pgtwist's own short catalog-lookup
    connections (application_name 'pgtwist'), i.e. the pooled links only.
    """

    def __init__(self, cluster):
        super().__init__(daemon=True)
        self.ports = list(cluster.ports)
        self.conns = [_direct(cluster, port=p) for p in self.ports]
        self.peak = {p: 0 for p in self.ports}
        self.peak_links = {p: 0 for p in self.ports}
        self.at_peak = {p: [] for p in self.ports}  # the sessions seen at the peak
        self.samples = 0
        self.error: BaseException | None = None
        self._stop_event = threading.Event()

    def run(self):
        try:
            while not self._stop_event.is_set():
                for port, conn in zip(self.ports, self.conns, strict=True):
                    rows = conn.execute(_BACKEND_ROWS_SQL).fetchall()
                    links = sum(1 for r in rows if r[1] != "pgtwist")
                    self.peak_links[port] = max(self.peak_links[port], links)
                    if len(rows) > self.peak[port]:
                        self.peak[port], self.at_peak[port] = len(rows), rows
                self.samples += 1
                time.sleep(0.01)
        except BaseException as e:  # noqa: BLE001 - reported by finish()
            self.error = e

    def finish(self) -> dict[int, int]:
        self._stop_event.set()
        self.join(10)
        for c in self.conns:
            c.close()
        if self.error is not None:
            raise self.error
        return self.peak

    def check(self, cap: int) -> None:
        assert self.samples > 0
        assert all(n <= cap for n in self.peak_links.values()), (
            f"more than backend_max_connections={cap} pooled links: {self.peak_links}: "
            f"{self.at_peak}")
        assert all(n <= cap for n in self.peak.values()), (
            f"more than backend_max_connections={cap} server sessions in {DB} "
            f"(pooled links at most {self.peak_links}): {self.at_peak}")


def _hold_link(holders, pid: int):
    """Open a transaction on holders until one of them sits on server ``pid``; the others
    commit again. Returns the holder (the caller commits it)."""
    opened = []
    found = None
    try:
        for h in holders:
            h.execute("BEGIN")
            opened.append(h)
            if _pid(h) == pid:
                found = h
                return h
        raise AssertionError(f"no holder landed on the link of server pid {pid}")
    finally:
        for h in opened:
            if h is not found:
                h.execute("COMMIT")


def _link_pids(holders) -> list[int]:
    """The server pids of len(holders) distinct links (all holders in a transaction at once)."""
    pids = []
    for h in holders:
        h.execute("BEGIN")
        pids.append(_pid(h))
    for h in holders:
        h.execute("COMMIT")
    assert len(set(pids)) == len(pids), f"holders in concurrent transactions shared a link: {pids}"
    return pids


def _run_threads(target, n, timeout=120) -> list:
    """Run target(k) in n threads; return [(k, exception)] of those that failed."""
    errors = []

    def wrap(k):
        try:
            target(k)
        except BaseException as e:  # noqa: BLE001 - collected and asserted by the test
            errors.append((k, e))

    threads = [threading.Thread(target=wrap, args=(k,), daemon=True) for k in range(n)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + timeout
    for t in threads:
        t.join(max(0.1, deadline - time.monotonic()))
    stuck = [k for k, t in enumerate(threads) if t.is_alive()]
    assert not stuck, f"threads {stuck} still running after {timeout} s"
    return errors


def _raw_ok(res, what: str):
    if res.status not in (pq.ExecStatus.COMMAND_OK, pq.ExecStatus.TUPLES_OK):
        msg = (res.error_message or b"").decode(errors="replace")
        raise AssertionError(f"{what}: {pq.ExecStatus(res.status).name} {msg}")
    return res


def _raw_sqlstate(res) -> str:
    return (res.error_field(pq.DiagnosticField.SQLSTATE) or b"").decode()


# -- 1. asyncpg: 50 clients, 5 links, the statement cache ------------------------------------

ASYNCPG_CLIENTS, ASYNCPG_ITERATIONS = 50, 1000


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


# -- 3. pgbench -M prepared / extended ---------------------------------------------------------

PGBENCH_CLIENTS, PGBENCH_THREADS, PGBENCH_TXNS = 8, 2, 200


def _tool_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env["PGCONNECT_TIMEOUT"] = "10"
    return env


def _pgbench() -> str:
    path = shutil.which("pgbench")
    if path is None:
        pytest.fail("pgbench not found on PATH (install the PostgreSQL client package)")
    return path


@pytest.fixture(scope="module")
def pgbench_schema(pooldb, cluster):
    """pgbench tables (scale 1) in pooldb, initialised straight on the primary."""
    proc = subprocess.run([_pgbench(), "-i", "-s", "1", "-q", "-h", cluster.host, "-p",
                           str(cluster.primary_port), "-U", "postgres", DB],
                          capture_output=True, text=True, env=_tool_env(), timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    cluster.wait_replayed()
    yield DB
    _psql_db(cluster, "drop table if exists pgbench_accounts, pgbench_branches, "
                      "pgbench_tellers, pgbench_history")


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


# -- 4. session state re-applied on every checkout ---------------------------------------------

_STATE_SQL = ("select current_setting('search_path'), current_setting('application_name'), "
              "current_setting('TimeZone'), (select v from txn_where)")
_STATE_SQL_EXT = ("select current_setting(%s), current_setting(%s), current_setting(%s), "
                  "(select v from txn_where)")


def _state(conn, extended=False) -> tuple:
    if extended:
        return _one(conn, _STATE_SQL_EXT, ["search_path", "application_name", "TimeZone"])
    return _one(conn, _STATE_SQL)


def _check_state(conn, want: tuple, what: str, extended=False) -> None:
    got = _state(conn, extended)
    assert got == want, f"{what}: {'extended' if extended else 'simple'} query saw {got}, " \
                        f"expected {want}"
    # ParameterStatus the client was sent must agree (drivers decode timestamps with it)
    reported = (conn.info.parameter_status("application_name"),
                conn.info.parameter_status("TimeZone"))
    assert reported == want[1:3], f"{what}: ParameterStatus says {reported}, expected {want[1:3]}"


def _rounds(clients, expected, rounds, rng, holder=None) -> None:
    """Each round: maybe a holder sits in a transaction on one link, then every client (in
    random order, simple and extended protocol) checks it still sees its own state."""
    for r in range(rounds):
        if holder is not None and r % 2 == 0:
            holder.execute("BEGIN")
            holder.execute("select 1")
        order = list(range(len(clients)))
        rng.shuffle(order)
        for k in order:
            _check_state(clients[k], expected[k], f"client {k} round {r}", extended=bool(r % 3))
        if holder is not None and r % 2 == 0:
            holder.execute("COMMIT")


def test_session_state_is_reapplied_on_every_checkout(pooldb, pgtwist_factory):
    pg = _txn(pgtwist_factory, backend_max_connections=2, checkout_timeout=20)
    rng = random.Random(4)
    clients = [_connect(pg) for _ in range(4)]
    holder = _connect(pg)
    try:
        default = _state(clients[3])
        assert default[3] == "public", default
        setups = {0: ("txn_s1, public", "txn_app_0", "Asia/Tokyo"),
                  1: ("txn_s2", "txn_app_1", "Europe/Paris"),
                  2: ("txn_s3", "txn_app_2", "America/New_York")}
        expected = {3: default}
        for k, (path, app, tz) in setups.items():
            c = clients[k]
            assert c.execute(f"SET search_path = {path}").statusmessage == "SET"
            c.execute(f"SET application_name = '{app}'")
            c.execute(f"SET TimeZone = '{tz}'")
            expected[k] = (path, app, tz, path.split(",")[0])
            # the other clients, already connected, keep theirs meanwhile
            _rounds(clients, {j: expected.get(j, default) for j in range(4)}, 1, rng)
        _rounds(clients, expected, 12, rng, holder=holder)

        # the same, all clients at once: 4 sessions on 2 links
        def worker(k):
            for i in range(40):
                _check_state(clients[k], expected[k], f"thread {k} check {i}", extended=bool(i % 2))

        errors = _run_threads(worker, 4, timeout=60)
        assert errors == [], errors

        # a new value replaces the old one
        clients[1].execute("SET search_path = txn_s1")
        expected[1] = ("txn_s1",) + expected[1][1:3] + ("txn_s1",)
        _rounds(clients, expected, 4, rng, holder=holder)

        # SET LOCAL lasts for its transaction only
        c0 = clients[0]
        c0.execute("BEGIN")
        c0.execute("SET LOCAL search_path = txn_s3")
        c0.execute("SET LOCAL application_name = 'txn_local'")
        assert _state(c0) == ("txn_s3", "txn_local", expected[0][2], "txn_s3")
        _rounds(clients[1:], [expected[1], expected[2], expected[3]], 1, rng)
        assert _state(c0, extended=True) == ("txn_s3", "txn_local", expected[0][2], "txn_s3")
        c0.execute("COMMIT")
        _rounds(clients, expected, 4, rng, holder=holder)

        # RESET one setting, RESET ALL
        clients[2].execute("RESET search_path")
        expected[2] = (default[0], expected[2][1], expected[2][2], "public")
        assert clients[0].execute("RESET ALL").statusmessage == "RESET"
        expected[0] = default
        _rounds(clients, expected, 6, rng, holder=holder)
    finally:
        for c in [*clients, holder]:
            c.close()
    assert_log_clean(pg)


def test_set_in_rolled_back_transaction_is_forgotten(pooldb, pgtwist_factory):
    """PostgreSQL undoes SET (and RESET) done in a transaction that rolls back; a SET in a
    committed transaction stays."""
    pg = _txn(pgtwist_factory, backend_max_connections=2, checkout_timeout=20)
    a, other, holder = _connect(pg), _connect(pg), _connect(pg)
    try:
        default = _one(other, "show work_mem")[0]

        def check(want, what):
            for i in range(6):
                if i % 2 == 0:
                    holder.execute("BEGIN")
                    holder.execute("select 1")
                assert _one(other, "show work_mem") == (default,), f"{what}: other client"
                assert _one(a, "show work_mem") == (want,), f"{what}: check {i}"
                assert _one(a, "select current_setting(%s)", ["work_mem"]) == (want,), what
                if i % 2 == 0:
                    holder.execute("COMMIT")

        a.execute("SET work_mem = '21MB'")
        check("21MB", "plain SET")
        a.execute("BEGIN")
        a.execute("SET work_mem = '22MB'")
        a.execute("ROLLBACK")
        check("21MB", "SET in a rolled back transaction")
        a.execute("BEGIN")
        a.execute("SET work_mem = '23MB'")
        a.execute("COMMIT")
        check("23MB", "SET in a committed transaction")
        a.execute("BEGIN")
        a.execute("RESET work_mem")
        a.execute("ROLLBACK")
        check("23MB", "RESET in a rolled back transaction")
        a.execute("BEGIN")
        a.execute("SET work_mem = '25MB'")
        with pytest.raises(pgerr.DivisionByZero):
            a.execute("select 1 / 0")
        a.execute("ROLLBACK")
        check("23MB", "SET in a failed transaction")
    finally:
        for c in (a, other, holder):
            c.close()


def test_set_back_to_an_earlier_value_is_kept(pooldb, pgtwist_factory):
    """SET x = 1; SET x = 2; SET x = 1: the session's value is 1 (an application toggling
    statement_timeout per request does this)."""
    pg = _txn(pgtwist_factory, backend_max_connections=1, checkout_timeout=20)
    a, other = _connect(pg), _connect(pg)
    try:
        default = _one(other, "show statement_timeout")[0]
        for n, value in enumerate(("5s", "0", "5s", "0", "7s", "5s")):
            a.execute(f"SET statement_timeout = '{value}'")
            for i in range(2):
                assert _one(other, "show statement_timeout") == (default,)
                assert _one(a, "show statement_timeout") == (value,), f"SET number {n}, check {i}"
    finally:
        a.close()
        other.close()


def test_set_syntax_variants_are_reapplied(pooldb, pgtwist_factory):
    pg = _txn(pgtwist_factory, backend_max_connections=2, checkout_timeout=20)
    a, other, holder = _connect(pg), _connect(pg), _connect(pg)
    try:
        names = ["work_mem", "TimeZone", "search_path", "lock_timeout", "application_name",
                 "maintenance_work_mem", "statement_timeout"]
        sql = "select " + ", ".join(f"current_setting('{n}')" for n in names)
        default = dict(zip(names, _one(other, sql), strict=True))
        want = dict(default)

        def check(what):
            for i in range(4):
                if i % 2 == 0:
                    holder.execute("BEGIN")
                    holder.execute("select 1")
                assert dict(zip(names, _one(other, sql), strict=True)) == default, f"{what}: other client"
                got = dict(zip(names, _one(a, sql), strict=True))
                assert got == want, f"{what}: {got} != {want}"
                if i % 2 == 0:
                    holder.execute("COMMIT")

        a.execute("SET SESSION work_mem = '13MB'")
        want["work_mem"] = "13MB"
        check("SET SESSION")
        a.execute("SET TIME ZONE 'Europe/Paris'")
        want["TimeZone"] = "Europe/Paris"
        check("SET TIME ZONE")
        a.execute("SET search_path TO txn_s2, public")
        want["search_path"] = "txn_s2, public"
        check("SET ... TO")
        a.execute("set   Lock_Timeout=1234")
        want["lock_timeout"] = "1234ms"
        check("mixed case, no spaces")
        a.execute("SET application_name = 'it''s quoted'")
        want["application_name"] = "it's quoted"
        check("quoted literal")
        a.execute("SET statement_timeout = '7s'")
        a.execute("SET statement_timeout TO DEFAULT")
        check("SET ... TO DEFAULT")
        a.execute("RESET lock_timeout")
        want["lock_timeout"] = default["lock_timeout"]
        check("RESET one")
        a.execute("SET work_mem = '14MB'; SET maintenance_work_mem = '70MB'")
        want["work_mem"], want["maintenance_work_mem"] = "14MB", "70MB"
        check("two SETs in one simple query")
    finally:
        for c in (a, other, holder):
            c.close()


def test_set_config_function_is_reapplied(pooldb, pgtwist_factory):
    """``select set_config('TimeZone', ..., false)`` (what Django runs on connect) changes
    session state like SET does."""
    pg = _txn(pgtwist_factory, backend_max_connections=2, checkout_timeout=20)
    a, other, holder = _connect(pg), _connect(pg), _connect(pg)
    try:
        default_tz = _one(other, "show TimeZone")[0]
        assert _one(a, "select set_config('TimeZone', %s, false)", ["Asia/Tokyo"]) == (
            "Asia/Tokyo",)
        for i in range(4):
            if i % 2 == 0:
                holder.execute("BEGIN")
                holder.execute("select 1")
            assert _one(other, "show TimeZone") == (default_tz,)
            assert _one(a, "show TimeZone") == ("Asia/Tokyo",), f"check {i}"
            if i % 2 == 0:
                holder.execute("COMMIT")
    finally:
        for c in (a, other, holder):
            c.close()


def test_startup_parameters_follow_the_session(pooldb, pgtwist_factory):
    pg = _txn(pgtwist_factory, backend_max_connections=3, checkout_timeout=20)
    a = _connect(pg, application_name="txn_start_a", options="-c work_mem=12MB")
    b = _connect(pg)
    try:
        sql = "select current_setting('application_name'), current_setting('work_mem')"
        default = _one(b, sql)
        assert default != ("txn_start_a", "12MB")
        for _ in range(5):
            assert _one(a, sql) == ("txn_start_a", "12MB")
            assert _one(b, sql) == default
        a.execute("SET work_mem = '15MB'")
        assert _one(b, sql) == default
        assert _one(a, sql) == ("txn_start_a", "15MB")
        a.execute("RESET work_mem")  # back to the startup value, not the server default
        assert _one(b, sql) == default
        assert _one(a, sql) == ("txn_start_a", "12MB")
        a.execute("SET application_name = 'txn_other'")
        a.execute("RESET ALL")
        assert _one(b, sql) == default
        assert _one(a, sql) == ("txn_start_a", "12MB")
    finally:
        a.close()
        b.close()


# -- 5. no leak to the next client of a link ---------------------------------------------------


_LEAKS = {
    "settings": (["SET work_mem = '77MB'", "SET statement_timeout = '4321ms'",
                  "SET application_name = 'txn_leaky'", "SET search_path = txn_s1",
                  "SET TimeZone = 'Asia/Tokyo'", "PREPARE txn_leak AS select 'leaked'"],
                 "select current_setting('work_mem'), current_setting('search_path')",
                 ("77MB", "txn_s1")),
    "role": (["SET ROLE pw_user"], "select current_user, session_user", ("pw_user", "postgres")),
}


@pytest.mark.parametrize("kind", sorted(_LEAKS))
def test_state_does_not_leak_to_the_next_client_of_the_link(pooldb, pgtwist_factory, kind):
    pg = _txn(pgtwist_factory, backend_max_connections=1, checkout_timeout=20)
    statements, a_sql, a_want = _LEAKS[kind]
    sql = ("select current_setting('work_mem'), current_setting('statement_timeout'), "
           "current_setting('application_name'), current_setting('search_path'), "
           "current_setting('TimeZone'), current_user, current_setting('role'), "
           "(select v from txn_where)")
    b = _connect(pg)
    a = _connect(pg)
    try:
        default = _one(b, sql)
        pid = _pid(b)
        for stmt in statements:
            a.execute(stmt)
        assert _one(a, a_sql) == a_want  # A's own state is there for A

        # A idle, still connected: B on the same link sees none of it
        for i in range(3):
            assert _pid(b) == pid, "the single link was replaced: the leak check is vacuous"
            assert _one(b, sql) == default, f"B saw A's state (check {i})"
            assert _one(b, "select pg_sleep(0.05), 'not cancelled'")[1] == "not cancelled"
            with pytest.raises(pgerr.InvalidSqlStatementName):
                b.execute("EXECUTE txn_leak")
            assert _one(a, a_sql) == a_want, f"A lost its state (check {i})"

        # A leaves: a new client on the link sees none of it either
        a.close()
        with _connect(pg) as c:
            assert _pid(c) == pid
            assert _one(c, sql) == default, "a new client saw the state of one that left"
            with pytest.raises(pgerr.InvalidSqlStatementName):
                c.execute("EXECUTE txn_leak")
        assert _one(b, sql) == default
    finally:
        a.close()
        b.close()
    assert_log_clean(pg)


# -- 6. SQL-level PREPARE / EXECUTE / DEALLOCATE across links ---------------------------------


def test_sql_prepare_execute_deallocate_across_links(pooldb, pgtwist_factory):
    pg = _txn(pgtwist_factory, backend_max_connections=2, checkout_timeout=10)
    a, b, h1, h2 = (_connect(pg) for _ in range(4))
    holders = [h1, h2]
    try:
        links = _link_pids(holders)
        a.execute("PREPARE txn_pa (int) AS select $1 * 2, pg_backend_pid()")
        b.execute("PREPARE txn_pb (int) AS select $1 + 1000, pg_backend_pid()")
        with pytest.raises(pgerr.DuplicatePreparedStatement):
            a.execute("PREPARE txn_pa AS select 1")
        seen_a, seen_b = set(), set()
        for i in range(8):
            busy = links[i % 2]
            h = _hold_link(holders, busy)
            va, pa = _one(a, f"EXECUTE txn_pa({i})")
            vb, pb = _one(b, f"EXECUTE txn_pb({i})")
            with pytest.raises(pgerr.InvalidSqlStatementName):
                b.execute("EXECUTE txn_pa(1)")  # A's statement is not B's
            h.execute("COMMIT")
            assert (va, vb) == (2 * i, 1000 + i), (i, va, vb)
            assert busy not in (pa, pb)
            seen_a.add(pa)
            seen_b.add(pb)
        assert seen_a == seen_b == set(links)

        assert a.execute("DEALLOCATE txn_pa").statusmessage == "DEALLOCATE"
        for i in range(2):
            h = _hold_link(holders, links[i])
            with pytest.raises(pgerr.InvalidSqlStatementName) as exc:
                a.execute("EXECUTE txn_pa(1)")
            assert exc.value.sqlstate == "26000"
            assert _one(b, "EXECUTE txn_pb(1)")[0] == 1001
            h.execute("COMMIT")
        with pytest.raises(pgerr.InvalidSqlStatementName):
            a.execute("DEALLOCATE txn_pa")
        a.execute("PREPARE txn_pa (text) AS select 'again ' || $1, pg_backend_pid()")

        b.execute("PREPARE txn_q AS select 'q'")
        assert _one(b, "EXECUTE txn_q") == ("q",)
        assert b.execute("DEALLOCATE ALL").statusmessage == "DEALLOCATE ALL"
        for i in range(2):
            h = _hold_link(holders, links[i])
            for name in ("txn_pb(1)", "txn_q"):
                with pytest.raises(pgerr.InvalidSqlStatementName):
                    b.execute(f"EXECUTE {name}")
            assert _one(a, "EXECUTE txn_pa('x')")[0] == "again x"  # A's are untouched
            h.execute("COMMIT")
        b.execute("PREPARE txn_q AS select 'q2'")
        for i in range(2):
            h = _hold_link(holders, links[i])
            assert _one(b, "EXECUTE txn_q") == ("q2",)
            h.execute("COMMIT")
    finally:
        for c in (a, b, h1, h2):
            c.close()
    assert_log_clean(pg)


def test_sql_prepare_same_name_in_two_sessions(pooldb, pgtwist_factory):
    """Two sessions PREPARE the same name with different bodies: each EXECUTE runs its own,
    whichever link it lands on, also after the other session DEALLOCATEs."""
    pg = _txn(pgtwist_factory, backend_max_connections=2, checkout_timeout=10)
    a, b, h1, h2 = (_connect(pg) for _ in range(4))
    holders = [h1, h2]
    try:
        links = _link_pids(holders)
        a.execute("PREPARE txn_p (int) AS select $1 * 2, 'a'")
        b.execute("PREPARE txn_p (int) AS select $1 + 1000, 'b'")
        for i in range(6):
            h = _hold_link(holders, links[i % 2])
            got = (_one(a, f"EXECUTE txn_p({i})"), _one(b, f"EXECUTE txn_p({i})"),
                   _one(a, f"EXECUTE txn_p({i})"))
            h.execute("COMMIT")
            assert got == ((2 * i, "a"), (1000 + i, "b"), (2 * i, "a")), (i, got)
        a.execute("DEALLOCATE txn_p")
        for i in range(2):
            h = _hold_link(holders, links[i])
            assert _one(b, "EXECUTE txn_p(1)") == (1001, "b")
            with pytest.raises(pgerr.InvalidSqlStatementName):
                a.execute("EXECUTE txn_p(1)")
            h.execute("COMMIT")
    finally:
        for c in (a, b, h1, h2):
            c.close()
    assert_log_clean(pg)


# -- 7. protocol-level statement names: same name, different SQL / types ---------------------


def test_protocol_statement_names_are_per_session(pooldb, pgtwist_factory):
    pg = _txn(pgtwist_factory, backend_max_connections=2, checkout_timeout=10)
    a, b, h1, h2 = (_connect(pg) for _ in range(4))
    holders = [h1, h2]
    try:
        links = _link_pids(holders)
        _raw_ok(a.pgconn.prepare(b"s1", b"select $1::int + 1, pg_backend_pid()", None), "a s1")
        _raw_ok(b.pgconn.prepare(b"s1", b"select $1::text || '-b', pg_backend_pid()", None),
                "b s1")
        # the same text with different parameter types, in two sessions and in one
        _raw_ok(a.pgconn.prepare(b"s2", b"select $1", [INT4]), "a s2")
        _raw_ok(b.pgconn.prepare(b"s2", b"select $1", [TEXT]), "b s2")
        _raw_ok(a.pgconn.prepare(b"s3", b"select $1", [INT8]), "a s3")
        seen = set()
        for r in range(6):
            busy = links[r % 2]
            h = _hold_link(holders, busy)
            res = _raw_ok(a.pgconn.exec_prepared(b"s1", [str(r).encode()]), "a exec s1")
            assert res.get_value(0, 0) == str(r + 1).encode()
            seen.add(int(res.get_value(0, 1)))
            res = _raw_ok(b.pgconn.exec_prepared(b"s1", [f"x{r}".encode()]), "b exec s1")
            assert res.get_value(0, 0) == f"x{r}-b".encode()
            res = _raw_ok(a.pgconn.exec_prepared(b"s2", [b"7"]), "a exec s2")
            assert (res.ftype(0), res.get_value(0, 0)) == (INT4, b"7")
            res = _raw_ok(b.pgconn.exec_prepared(b"s2", [b"abc"]), "b exec s2")
            assert (res.ftype(0), res.get_value(0, 0)) == (TEXT, b"abc")
            res = _raw_ok(a.pgconn.exec_prepared(b"s3", [b"9000000000"]), "a exec s3")
            assert (res.ftype(0), res.get_value(0, 0)) == (INT8, b"9000000000")
            # Describe 'S' on whichever link is free
            res = _raw_ok(a.pgconn.describe_prepared(b"s1"), "a describe s1")
            assert (res.nparams, res.param_type(0), res.nfields) == (1, INT4, 2)
            res = _raw_ok(b.pgconn.describe_prepared(b"s1"), "b describe s1")
            assert (res.nparams, res.param_type(0)) == (1, TEXT)
            res = _raw_ok(b.pgconn.describe_prepared(b"s2"), "b describe s2")
            assert (res.param_type(0), res.ftype(0)) == (TEXT, TEXT)
            h.execute("COMMIT")
        assert seen == set(links), "the session's statements did not run on both links"

        res = a.pgconn.exec_prepared(b"nope", [])
        assert _raw_sqlstate(res) == "26000"
        if pq.version() >= 170000:  # protocol-level Close 'S'
            _raw_ok(a.pgconn.close_prepared(b"s1"), "a close s1")
            for link in links:
                h = _hold_link(holders, link)
                res = a.pgconn.exec_prepared(b"s1", [b"1"])
                assert _raw_sqlstate(res) == "26000", res.error_message
                res = _raw_ok(b.pgconn.exec_prepared(b"s1", [b"y"]), "b s1 after a's close")
                assert res.get_value(0, 0) == b"y-b"
                h.execute("COMMIT")
            _raw_ok(a.pgconn.prepare(b"s1", b"select $1::int * 3", None), "a s1 again")
            for link in links:
                h = _hold_link(holders, link)
                res = _raw_ok(a.pgconn.exec_prepared(b"s1", [b"5"]), "a new s1")
                assert res.get_value(0, 0) == b"15"
                h.execute("COMMIT")
        # a duplicate name is refused like by PostgreSQL
        res = a.pgconn.prepare(b"s2", b"select 2", None)
        assert _raw_sqlstate(res) == "42P05", res.error_message
        assert _one(a, "select %s::int", [5]) == (5,)
    finally:
        for c in (a, b, h1, h2):
            c.close()
    assert_log_clean(pg)


# -- 8. pins -----------------------------------------------------------------------------------


def test_pins_keep_the_link(pooldb, pgtwist_factory):
    pg = _txn(pgtwist_factory, backend_max_connections=7, checkout_timeout=20)
    listener, temp, locker, cursor_c, other, notifier = (_connect(pg) for _ in range(6))
    stop = threading.Event()
    traffic_errors = []

    def traffic(k):  # other sessions keep taking and returning the unpinned links
        try:
            with _connect(pg, prepare_threshold=0) as c:
                i = 0
                while not stop.is_set():
                    assert _one(c, "select %s::int + 1", [i]) == (i + 1,)
                    assert c.execute("select to_regclass('pg_temp.txn_tmp')").fetchone() == (
                        None,)
                    i += 1
        except BaseException as e:  # noqa: BLE001
            traffic_errors.append((k, e))

    threads = [threading.Thread(target=traffic, args=(k,), daemon=True) for k in range(2)]
    for t in threads:
        t.start()
    try:
        listener.execute("LISTEN txn_chan")
        temp.execute("CREATE TEMP TABLE txn_tmp (v int)")
        temp.execute("INSERT INTO txn_tmp VALUES (1), (2)")
        locker.execute("select pg_advisory_lock(727272)")
        cursor_c.execute("DECLARE txn_cur CURSOR WITH HOLD FOR "
                         "select g from generate_series(1, 10) g")
        pinned = [listener, temp, locker, cursor_c]
        pids = [_pid(c) for c in pinned]
        assert len(set(pids)) == 4, pids
        for i in range(10):
            assert [_pid(c) for c in pinned] == pids, f"a pinned session changed link ({i})"
            assert _one(temp, "select count(*) from txn_tmp") == (2 + i,)
            temp.execute("insert into txn_tmp values (%s)", [i])
            assert _one(other, "select to_regclass('pg_temp.txn_tmp')") == (None,)
            assert _one(other, "select pg_try_advisory_lock(727272)") == (False,)
            assert _one(other, "select count(*) from pg_listening_channels()") == (0,)
            assert _one(listener, "select array_agg(c) from pg_listening_channels() c") == (
                ["txn_chan"],)
            if i % 2:
                assert cursor_c.execute("FETCH 1 FROM txn_cur").fetchall() == [(i + 1,)]
            else:
                cursor_c.execute("BEGIN")
                assert cursor_c.execute("FETCH 1 FROM txn_cur").fetchall() == [(i + 1,)]
                cursor_c.execute("COMMIT")
        assert cursor_c.execute("FETCH ALL FROM txn_cur").fetchall() == []
        cursor_c.execute("CLOSE txn_cur")

        notifier.execute("NOTIFY txn_chan, 'hello'")
        got = list(listener.notifies(timeout=10, stop_after=1))
        assert [(n.channel, n.payload) for n in got] == [("txn_chan", "hello")]
        assert _one(listener, "select 1") == (1,)

        stats = _stats(other)
        for name in ("pinned_listen", "pinned_temp_table", "pinned_advisory_lock",
                     "pinned_with_hold_cursor"):
            assert _stat(stats, name) >= 1, (name, stats)
        assert _stat(stats, "pinned") >= 4, stats

        assert _one(locker, "select pg_advisory_unlock(727272)") == (True,)
        assert _one(other, "select pg_try_advisory_lock(727272)") == (True,)
        other.execute("select pg_advisory_unlock_all()")
    finally:
        stop.set()
        for t in threads:
            t.join(20)
        for c in (listener, temp, locker, cursor_c, other, notifier):
            c.close()
    assert traffic_errors == [], traffic_errors
    assert_log_clean(pg)


# -- 9. cancel -----------------------------------------------------------------------------------


def _wait_active(direct, like: str, timeout=15) -> None:
    sql = ("select count(*) from pg_stat_activity where datname = %s and state = 'active' "
           "and query like %s")
    deadline = time.monotonic() + timeout
    while _one(direct, sql, [DB, like])[0] == 0:
        if time.monotonic() > deadline:
            raise AssertionError(f"no active query like {like!r} in {DB}")
        time.sleep(0.01)


def test_cancel_reaches_only_the_link_the_session_holds(pooldb, pgtwist_factory, cluster):
    pg = _txn(pgtwist_factory, backend_max_connections=1, checkout_timeout=40)
    a, b = _connect(pg), _connect(pg)
    direct = _direct(cluster)
    try:
        # (a) cancel a running query; B, queued behind it on the only link, is not hit
        b_rows, b_errors = [], []

        def b_work():
            try:
                for i in range(300):
                    sql = "select %s::int" if i % 2 else f"select {i}"
                    b_rows.append(_one(b, sql, [i] if i % 2 else None)[0])
            except BaseException as e:  # noqa: BLE001
                b_errors.append(e)

        bt = threading.Thread(target=b_work, daemon=True)
        cancel_errors = []

        def canceller():
            try:
                _wait_active(direct, "%pg_sleep(30)%")
                bt.start()
                time.sleep(0.2)  # lets B queue for the link (the test holds either way)
                a.cancel_safe()
            except BaseException as e:  # noqa: BLE001
                cancel_errors.append(e)

        ct = threading.Thread(target=canceller, daemon=True)
        ct.start()
        with pytest.raises(pgerr.QueryCanceled) as exc:
            a.execute("select pg_sleep(30)")
        assert exc.value.sqlstate == "57014"
        ct.join(20)
        assert cancel_errors == []
        bt.join(60)
        assert not bt.is_alive()
        assert b_errors == [], b_errors
        assert b_rows == list(range(300))
        assert _one(a, "select 'a usable'") == ("a usable",)

        # (b) A's cancel while A holds no link does not touch B's running query
        assert _one(a, "select 1") == (1,)
        done = {}

        def sleeper():
            try:
                done["row"] = _one(b, "select pg_sleep(2), 'slept'")
            except BaseException as e:  # noqa: BLE001
                done["error"] = e

        st = threading.Thread(target=sleeper, daemon=True)
        st.start()
        _wait_active(direct, "%pg_sleep(2)%")
        a.cancel_safe()
        st.join(30)
        assert "error" not in done, done
        assert done["row"][1] == "slept"
        assert _one(a, "select 2") == (2,)
        assert _one(b, "select 3") == (3,)
    finally:
        direct.close()
        a.close()
        b.close()

    # (c) asyncpg: a timeout sends the CancelRequest; the next query is not stuck behind
    async def main():
        conn = await asyncpg.connect(host=pg.host, port=pg.port, user="postgres",
                                     database=DB, timeout=10)
        try:
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(conn.fetchval("select pg_sleep(30)"), 0.5)
            # well under the 30 s: the sleep was cancelled, not waited for
            assert await asyncio.wait_for(conn.fetchval("select $1::int", 7), 15) == 7
        finally:
            await conn.close(timeout=10)

    asyncio.run(main())
    assert_log_clean(pg)


# -- 10. saturation -----------------------------------------------------------------------------


def test_checkout_timeout_is_an_error_and_the_session_survives(pooldb, pgtwist_factory):
    pg = _txn(pgtwist_factory, backend_max_connections=1, checkout_timeout=1)
    a, b = _connect(pg), _connect(pg)
    try:
        a.execute("BEGIN")
        assert _one(a, "select 1") == (1,)
        with pytest.raises(pgerr.TooManyConnections) as exc:
            b.execute("select 2")
        assert exc.value.sqlstate == "53300"
        assert exc.value.diag.severity == "ERROR"
        assert "node 0" in exc.value.diag.message_primary, exc.value.diag.message_primary
        with pytest.raises(pgerr.TooManyConnections):
            b.execute("select %s::int", [2])
        assert not b.closed
        assert b.info.transaction_status == pq.TransactionStatus.IDLE
        assert _one(a, "select 4") == (4,)  # A's transaction is not disturbed
        a.execute("COMMIT")
        assert _one(b, "select 3") == (3,)
        assert _one(b, "select %s::int", [5]) == (5,)
        assert _stat(_stats(b), "timeouts") >= 2
    finally:
        a.close()
        b.close()
    assert_log_clean(pg)


# -- 11. DISCARD ALL / DEALLOCATE ALL from clients ---------------------------------------------


def test_discard_all_and_deallocate_all_from_clients(pooldb, pgtwist_factory):
    pg = _txn(pgtwist_factory, backend_max_connections=2, checkout_timeout=10)
    c = _connect(pg, prepare_threshold=0)
    other, h1, h2 = _connect(pg), _connect(pg), _connect(pg)
    holders = [h1, h2]
    try:
        links = _link_pids(holders)
        default_wm = _one(other, "show work_mem")[0]

        def exercise(tag):
            for i in range(6):
                h = _hold_link(holders, links[i % 2])
                assert _one(c, "select %s::int + 1", [i]) == (i + 1,), tag
                assert _one(c, "select %s::text || 'z'", [str(i)]) == (f"{i}z",), tag
                assert _one(other, "select %s::int + 1", [i]) == (i + 1,), tag
                h.execute("COMMIT")

        exercise("before")
        # c prepares everything (prepare_threshold 0): prepare=False keeps these simple queries
        c.execute("SET work_mem = '33MB'", prepare=False)
        c.execute("PREPARE txn_d AS select 'd'", prepare=False)
        _raw_ok(c.pgconn.prepare(b"txn_raw", b"select $1::int * 10", None), "prepare txn_raw")
        assert c.execute("show work_mem", prepare=False).fetchone() == ("33MB",)

        assert c.execute("DISCARD ALL", prepare=False).statusmessage == "DISCARD ALL"
        for link in links:
            h = _hold_link(holders, link)
            assert c.execute("show work_mem", prepare=False).fetchone() == (default_wm,)
            with pytest.raises(pgerr.InvalidSqlStatementName):
                c.execute("EXECUTE txn_d", prepare=False)
            assert _raw_sqlstate(c.pgconn.exec_prepared(b"txn_raw", [b"1"])) == "26000"
            h.execute("COMMIT")
        exercise("after DISCARD ALL")
        _raw_ok(c.pgconn.prepare(b"txn_raw", b"select $1::int * 10", None), "prepare again")
        assert _raw_ok(c.pgconn.exec_prepared(b"txn_raw", [b"4"]), "exec").get_value(0, 0) == (
            b"40")

        assert c.execute("DEALLOCATE ALL", prepare=False).statusmessage == "DEALLOCATE ALL"
        assert _raw_sqlstate(c.pgconn.exec_prepared(b"txn_raw", [b"1"])) == "26000"
        exercise("after DEALLOCATE ALL")
        assert _one(other, "show work_mem") == (default_wm,)
    finally:
        for conn in (c, other, h1, h2):
            conn.close()
    assert_log_clean(pg)
