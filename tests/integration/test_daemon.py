"""pgtwist as an operator runs it: twistd options, configuration checks, environment
overrides, daemonized mode with a pidfile, and an unreachable backend."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pytest
import yaml

from pgtwist.dev import devcluster as dc

from .conftest import assert_log_clean
from .metricsutil import Forwarder
from .rawpg import RawClient, error_fields, startup_packet

pytestmark = pytest.mark.integration

RUN_TIMEOUT = 30


def _twistd() -> list[str]:
    twistd = Path(sys.executable).parent / "twistd"
    if twistd.exists():
        return [str(twistd)]
    return [sys.executable, "-c", "from twisted.scripts.twistd import run; run()"]


def _pgtwist_cli() -> list[str]:
    cli = Path(sys.executable).parent / "pgtwist"
    if cli.exists():
        return [str(cli)]
    return [sys.executable, "-m", "pgtwist.cli"]


def _run(argv: list[str], cwd, env=None) -> subprocess.CompletedProcess:
    return subprocess.run(
        argv,
        cwd=cwd,
        env=dc.pgtwist_env(env),
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
        stdin=subprocess.DEVNULL,
        check=False,
    )


def _write(path: Path, config: dict) -> Path:
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


@pytest.fixture
def good_config(cluster, tmp_path) -> Path:
    return dc.write_pgtwist_files(
        tmp_path / "good", dc.pgtwist_config(cluster, dc.free_port()), dc.TEST_USERS
    )


@pytest.fixture
def bad_config(cluster, tmp_path) -> Path:
    config = dc.pgtwist_config(cluster, 70000)
    config["bogus_key"] = 1
    config["backends"][1]["port"] = "abc"
    return _write(tmp_path / "bad.yaml", config)


BAD_LINES = (
    "port: expected an integer 1-65535, got 70000",
    "bogus_key: unknown parameter",
    "backends[1].port: expected an integer 1-65535, got 'abc'",
)


def _assert_reports_every_error(text: str) -> None:
    lines = [line.strip() for line in text.splitlines()]
    for expected in BAD_LINES:
        assert expected in lines, f"{expected!r} not reported on its own line in:\n{text}"
    assert "Traceback" not in text


# -- twistd options and configuration checks ---------------------------------------------------


def test_twistd_help_lists_config_and_check(tmp_path):
    proc = _run([*_twistd(), "pgtwist", "--help"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "-c, --config=" in proc.stdout
    assert "--check" in proc.stdout
    assert "PGPOOL_PARAMS_" in proc.stdout


def test_twistd_check_bad_config_reports_every_error(bad_config, tmp_path):
    proc = _run([*_twistd(), "pgtwist", "-c", str(bad_config), "--check"], tmp_path)
    assert proc.returncode != 0
    _assert_reports_every_error(proc.stderr)
    assert "is valid" not in proc.stdout
    assert not (tmp_path / "twistd.pid").exists()


def test_twistd_bad_config_without_check_fails_before_starting(bad_config, tmp_path):
    proc = _run([*_twistd(), "-n", "--pidfile=", "pgtwist", "-c", str(bad_config)], tmp_path)
    assert proc.returncode != 0
    _assert_reports_every_error(proc.stderr)


def test_twistd_check_good_config(good_config, tmp_path):
    port = yaml.safe_load(good_config.read_text())["port"]
    proc = _run([*_twistd(), "pgtwist", "-c", str(good_config), "--check"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "is valid" in proc.stdout
    assert f":{port}" in proc.stdout
    assert not dc.wait_listening(port, timeout=0)  # checked, not started


def test_pgtwist_check_command(good_config, bad_config, tmp_path):
    ok = _run([*_pgtwist_cli(), "check", "-c", str(good_config)], tmp_path)
    assert ok.returncode == 0, ok.stderr
    assert "is valid" in ok.stdout
    bad = _run([*_pgtwist_cli(), "check", "-c", str(bad_config)], tmp_path)
    assert bad.returncode != 0
    _assert_reports_every_error(bad.stderr)


def test_check_missing_file_names_it(tmp_path):
    missing = tmp_path / "nope.yaml"
    proc = _run([*_twistd(), "pgtwist", "-c", str(missing), "--check"], tmp_path)
    assert proc.returncode != 0
    assert str(missing) in proc.stderr or "nope.yaml" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr


# -- environment override on a running daemon ----------------------------------------------------


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def test_env_overrides_port_of_running_daemon(cluster, tmp_path):
    """PGPOOL_PARAMS_PORT wins over the file.  (conftest's start_pgtwist waits on the file's
    port, so this test starts twistd itself.)"""
    file_port, env_port = dc.free_port(), dc.free_port()
    while env_port == file_port:
        env_port = dc.free_port()
    config = dc.write_pgtwist_files(tmp_path, dc.pgtwist_config(cluster, file_port), dc.TEST_USERS)
    log_path = tmp_path / "pgtwist.log"
    env = dict(os.environ, PGPOOL_PARAMS_PORT=str(env_port))
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            dc.twistd_argv(config),
            cwd=tmp_path,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=dc.pgtwist_env(env),
        )
    try:
        assert dc.wait_listening(env_port, proc, timeout=20), log_path.read_text()
        assert not dc.wait_listening(file_port, timeout=0)
        dsn = dc.conninfo(host=dc.HOST, port=env_port, user="postgres", dbname="postgres")
        with psycopg.connect(dsn, connect_timeout=5) as conn:
            row = conn.execute("SELECT inet_server_port(), pg_is_in_recovery()").fetchone()
        assert row == (cluster.primary_port, False)
    finally:
        _stop(proc)
    # twistd re-raises the signal that stopped it: -SIGTERM is a clean stop
    assert proc.returncode in (0, -signal.SIGTERM), log_path.read_text()
    assert "Server Shut Down" in log_path.read_text()
    assert_log_clean(log_path.read_text())


# -- daemonized mode ------------------------------------------------------------------------------


def _alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie nobody reaps yet counts as gone)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    state = next((line for line in status.splitlines() if line.startswith("State:")), "")
    return "Z" not in state.split()[1:2]


def test_daemonized_mode_pidfile_and_sigterm(cluster, tmp_path):
    port = dc.free_port()
    config = dc.write_pgtwist_files(tmp_path, dc.pgtwist_config(cluster, port), dc.TEST_USERS)
    pidfile, logfile = tmp_path / "p.pid", tmp_path / "l.log"
    argv = [
        *_twistd(),
        f"--pidfile={pidfile}",
        f"--logfile={logfile}",
        "pgtwist",
        "-c",
        str(config),
    ]
    pid = None
    try:
        launcher = _run(argv, tmp_path)
        # the launching process returns at once; the daemon lives on in the background
        assert launcher.returncode == 0, launcher.stdout + launcher.stderr
        deadline = time.monotonic() + 10
        while not (pidfile.exists() and pidfile.read_text().strip()):
            assert time.monotonic() < deadline, "no pidfile written"
            time.sleep(0.05)
        pid = int(pidfile.read_text().strip())
        assert _alive(pid)
        assert dc.wait_listening(port, timeout=10), logfile.read_text()
        with psycopg.connect(
            dc.conninfo(host=dc.HOST, port=port, user="postgres", dbname="postgres"),
            connect_timeout=5,
        ) as conn:
            row = conn.execute("SELECT inet_server_port(), pg_is_in_recovery()").fetchone()
        assert row == (cluster.primary_port, False)

        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 10
        while _alive(pid):
            assert time.monotonic() < deadline, "daemon still running 10 s after SIGTERM"
            time.sleep(0.05)
        deadline = time.monotonic() + 2
        while pidfile.exists():
            assert time.monotonic() < deadline, "pidfile left behind"
            time.sleep(0.05)
        assert not dc.wait_listening(port, timeout=0)
        log = logfile.read_text()
        assert "Server Shut Down" in log, log
        assert_log_clean(log)
    finally:
        if pid is not None and _alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


# -- unreachable backends ---------------------------------------------------------------------------


def _only_primary_at(port: int, **extra) -> dict:
    return {
        "backends": [
            {
                "hostname": dc.HOST,
                "port": port,
                "weight": 1,
                "flag": "ALWAYS_PRIMARY|DISALLOW_TO_FAILOVER",
            }
        ],
        **extra,
    }


def _expect_fatal_08006(pg, address: str, within: float) -> dict[str, str]:
    t0 = time.monotonic()
    with RawClient(pg.port, timeout=within + 5) as c:
        c.send(startup_packet({"user": "postgres", "database": "postgres"}))
        code, body = c.read_msg()
        fields = error_fields(body)
        assert code == "E", (code, body)
        assert fields["S"] == "FATAL" and fields["C"] == "08006", fields
        assert address in fields["M"], fields
        assert c.closed_by_peer()
    assert time.monotonic() - t0 < within
    return fields


def test_unreachable_backend_gives_fatal_08006_not_a_hang(cluster, pgtwist_factory):
    closed = dc.free_port()  # nothing listens there
    pg = pgtwist_factory(extra=_only_primary_at(closed))
    address = f"{dc.HOST}:{closed}"
    for _ in range(3):
        _expect_fatal_08006(pg, address, within=3)
    with pytest.raises(psycopg.OperationalError) as exc:
        psycopg.connect(pg.dsn(), connect_timeout=5)
    assert address in str(exc.value)
    assert pg.proc.poll() is None, "daemon exited"
    assert dc.wait_listening(pg.port, timeout=1)


def test_silent_backend_bounded_by_connect_timeout(cluster, pgtwist_factory):
    """A backend that accepts TCP but never answers: the login is bounded by connect_timeout."""
    with socket.socket() as blackhole:
        blackhole.bind((dc.HOST, 0))
        blackhole.listen(16)
        port = blackhole.getsockname()[1]
        pg = pgtwist_factory(extra=_only_primary_at(port, connect_timeout=1000))
        fields = _expect_fatal_08006(pg, f"{dc.HOST}:{port}", within=4)
        assert "timeout" in fields["M"], fields
        assert pg.proc.poll() is None


def test_backend_comes_back(cluster, pgtwist_factory):
    """Once the address answers again, new clients get sessions (no sticky 'down' state)."""
    with socket.socket() as s:
        s.bind((dc.HOST, 0))
        port = s.getsockname()[1]
    pg = pgtwist_factory(extra=_only_primary_at(port))
    _expect_fatal_08006(pg, f"{dc.HOST}:{port}", within=3)
    # a plain TCP forwarder on that port to the real primary stands in for a restarted server
    forward = Forwarder(cluster.primary_port, port=port)
    try:
        with psycopg.connect(pg.dsn(), connect_timeout=5) as conn:
            row = conn.execute("SELECT pg_is_in_recovery()").fetchone()
        assert row == (False,)
    finally:
        forward.close()

