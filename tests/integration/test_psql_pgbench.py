"""The stock command-line clients through pgtwist: psql scripts with transactions and
``\\copy``, and pgbench initialisation and runs in the simple, extended and prepared modes.

The tools are the ones on PATH; every run has PGCONNECT_TIMEOUT and a subprocess timeout.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
import uuid

import pytest

from .conftest import assert_log_clean, start_pgtwist

pytestmark = pytest.mark.integration

TOOL_TIMEOUT = 90


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env["PGCONNECT_TIMEOUT"] = "5"
    env["PGAPPNAME"] = "pgtwist_cli_tests"
    return env


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} not found on PATH (install the PostgreSQL client package)")
    return path


def _run(argv: list[str], timeout: float = TOOL_TIMEOUT, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(
        argv, capture_output=True, text=True, env=_env(), timeout=timeout, check=False, **kw
    )


def _psql_argv(pg, dbname: str = "postgres") -> list[str]:
    return [
        _tool("psql"),
        "-X",
        "-A",
        "-t",
        "-q",
        "-v",
        "ON_ERROR_STOP=1",
        "-h",
        pg.host,
        "-p",
        str(pg.port),
        "-U",
        "postgres",
        "-d",
        dbname,
    ]


@pytest.fixture(scope="module")
def module_pgtwist(cluster, tmp_path_factory):
    """One daemon for this module (its tests write, so not the session-wide one)."""
    pg = start_pgtwist(cluster, tmp_path_factory.mktemp("cli_pgtwist"))
    try:
        yield pg
    finally:
        pg.stop()
    assert_log_clean(pg)


# -- psql --------------------------------------------------------------------------------------


def test_psql_script_with_transaction_and_copy(cluster, module_pgtwist, tmp_path):
    table = f"psql_script_{uuid.uuid4().hex[:10]}"
    infile = tmp_path / "in.tsv"
    outfile = tmp_path / "out.tsv"
    lines = [f"{i}\tline {i}\\twith tab" for i in range(100, 1100)]
    lines.append("5000\t\\N")
    infile.write_text("\n".join(lines) + "\n")
    script = tmp_path / "script.sql"
    script.write_text(
        f"""
BEGIN;
CREATE TABLE {table} (id int PRIMARY KEY, label text);
INSERT INTO {table} SELECT g, 'row ' || g FROM generate_series(1, 10) g;
COMMIT;
\\copy {table} from '{infile}'
SELECT 'count', count(*), sum(id), count(label) FROM {table};
\\copy (SELECT id, label FROM {table} WHERE id >= 100 ORDER BY id) to '{outfile}'
BEGIN;
DELETE FROM {table};
SELECT 'inside', count(*) FROM {table};
ROLLBACK;
SELECT 'after rollback', count(*) FROM {table};
SELECT 'node', inet_server_port(), pg_is_in_recovery();
DROP TABLE {table};
"""
    )
    proc = _run([*_psql_argv(module_pgtwist), "-f", str(script)])
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    total = sum(range(1, 11)) + sum(range(100, 1100)) + 5000
    assert proc.stdout.splitlines() == [
        f"count|1011|{total}|1010",
        "inside|0",
        "after rollback|1011",
        f"node|{cluster.primary_port}|f",
    ]
    assert outfile.read_text() == infile.read_text()
    assert cluster.psql(f"SELECT to_regclass('{table}') IS NULL") == "t"


def test_psql_error_stops_script_and_reports_sqlstate(cluster, module_pgtwist, tmp_path):
    script = tmp_path / "fail.sql"
    script.write_text(
        "\\set VERBOSITY verbose\nSELECT 'before';\nBEGIN;\nSELECT 1 / 0;\nSELECT 'never';\n"
    )
    proc = _run([*_psql_argv(module_pgtwist), "-f", str(script)])
    assert proc.returncode == 3, (proc.returncode, proc.stdout, proc.stderr)
    assert proc.stdout.splitlines() == ["before"]
    assert "ERROR:  22012: division by zero" in proc.stderr


def test_psql_single_command_multi_statement(cluster, module_pgtwist):
    proc = _run(
        [
            *_psql_argv(module_pgtwist),
            "-c",
            "SELECT 1; SELECT 2 UNION ALL SELECT 3; SELECT current_setting('application_name')",
        ]
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ["1", "2", "3", "pgtwist_cli_tests"]


# -- pgbench -----------------------------------------------------------------------------------

CLIENTS, THREADS, TXNS = 4, 2, 200


@pytest.fixture(scope="module")
def bench_db(cluster, module_pgtwist):
    """A database of its own, initialised by ``pgbench -i`` through pgtwist."""
    name = f"pgtwist_bench_{uuid.uuid4().hex[:8]}"
    cluster.psql(f"CREATE DATABASE {name}")
    try:
        proc = _run(
            [
                _tool("pgbench"),
                "-i",
                "-s",
                "1",
                "-q",
                "-h",
                module_pgtwist.host,
                "-p",
                str(module_pgtwist.port),
                "-U",
                "postgres",
                name,
            ]
        )
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert "done in" in proc.stderr, proc.stderr
        yield name
    finally:
        cluster.psql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def _direct(cluster, dbname: str, sql: str) -> str:
    """psql straight to the primary (not through pgtwist), in ``dbname``."""
    proc = _run(
        [
            _tool("psql"),
            "-X",
            "-A",
            "-t",
            "-q",
            "-v",
            "ON_ERROR_STOP=1",
            "-h",
            cluster.host,
            "-p",
            str(cluster.primary_port),
            "-U",
            "postgres",
            "-d",
            dbname,
            "-c",
            sql,
        ]
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


def test_pgbench_initialised_through_pgtwist(cluster, bench_db):
    counts = _direct(
        cluster,
        bench_db,
        "SELECT (SELECT count(*) FROM pgbench_accounts), (SELECT count(*) FROM pgbench_branches),"
        " (SELECT count(*) FROM pgbench_tellers)",
    )
    assert counts == "100000|1|10"


@pytest.mark.parametrize("mode", ["simple", "extended", "prepared"])
def test_pgbench_run_has_no_failures(cluster, module_pgtwist, bench_db, mode):
    proc = _run(
        [
            _tool("pgbench"),
            "-M",
            mode,
            "-c",
            str(CLIENTS),
            "-j",
            str(THREADS),
            "-t",
            str(TXNS),
            "-h",
            module_pgtwist.host,
            "-p",
            str(module_pgtwist.port),
            "-U",
            "postgres",
            bench_db,
        ]
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert f"query mode: {mode}" in out
    expected = CLIENTS * TXNS
    processed = re.search(r"number of transactions actually processed: (\d+)/(\d+)", out)
    assert processed, out
    assert (int(processed[1]), int(processed[2])) == (expected, expected), out
    failed = re.search(r"number of failed transactions: (\d+)", out)
    if failed:  # pgbench >= 15 prints it
        assert int(failed[1]) == 0, out
    assert "error" not in proc.stderr.lower(), proc.stderr
    # pgbench's pre-run vacuum (no -n) truncated pgbench_history: every row now in it is one
    # transaction of this run, read straight from the primary
    assert _direct(cluster, bench_db, "SELECT count(*) FROM pgbench_history") == str(expected)


def test_pgbench_select_only_timed_run(cluster, module_pgtwist, bench_db):
    proc = _run(
        [
            _tool("pgbench"),
            "-S",
            "-M",
            "prepared",
            "-c",
            str(CLIENTS),
            "-j",
            str(THREADS),
            "-T",
            "3",
            "-n",
            "-h",
            module_pgtwist.host,
            "-p",
            str(module_pgtwist.port),
            "-U",
            "postgres",
            bench_db,
        ]
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    processed = re.search(r"number of transactions actually processed: (\d+)\n", out)
    assert processed and int(processed[1]) > 0, out
    failed = re.search(r"number of failed transactions: (\d+)", out)
    if failed:
        assert int(failed[1]) == 0, out


def test_pgbench_leaves_no_sessions_behind(cluster, module_pgtwist, bench_db):
    """After the runs, nothing pgbench started is still running on the primary.

    Links cached by the session pool stay connected, reset and idle (at most
    max_pool of them for this user and database); none is busy or in a transaction.
    """
    busy = (
        f"SELECT count(*) FROM pg_stat_activity WHERE datname = '{bench_db}' "
        "AND pid <> pg_backend_pid() AND state <> 'idle'"
    )
    idle = (
        f"SELECT count(*) FROM pg_stat_activity WHERE datname = '{bench_db}' "
        "AND pid <> pg_backend_pid() AND state = 'idle'"
    )
    deadline = time.monotonic() + 3
    while (n := _direct(cluster, bench_db, busy)) != "0":
        assert time.monotonic() < deadline, f"{n} sessions still busy in {bench_db}"
        time.sleep(0.05)
    assert int(_direct(cluster, bench_db, idle)) <= 4  # max_pool, Pgpool-II's default
