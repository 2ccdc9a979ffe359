"""Shared set-up of the transaction pooling end-to-end tests (test_txn_load, test_txn_state,
test_txn_statements, test_txn_links): the ``pooldb`` database, holders, samplers.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
import time
import uuid

import psycopg
import pytest
from psycopg import pq

from .conftest import TRUST_HBA

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


# -- 5. no leak to the next client of a link ---------------------------------------------------


_LEAKS = {
    "settings": (["SET work_mem = '77MB'", "SET statement_timeout = '4321ms'",
                  "SET application_name = 'txn_leaky'", "SET search_path = txn_s1",
                  "SET TimeZone = 'Asia/Tokyo'", "PREPARE txn_leak AS select 'leaked'"],
                 "select current_setting('work_mem'), current_setting('search_path')",
                 ("77MB", "txn_s1")),
    "role": (["SET ROLE pw_user"], "select current_user, session_user", ("pw_user", "postgres")),
}


# -- 9. cancel -----------------------------------------------------------------------------------


def _wait_active(direct, like: str, timeout=15) -> None:
    sql = ("select count(*) from pg_stat_activity where datname = %s and state = 'active' "
           "and query like %s")
    deadline = time.monotonic() + timeout
    while _one(direct, sql, [DB, like])[0] == 0:
        if time.monotonic() > deadline:
            raise AssertionError(f"no active query like {like!r} in {DB}")
        time.sleep(0.01)

