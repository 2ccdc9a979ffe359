"""Integration fixtures: a real primary + streaming replica, and pgtwist as a real twistd process.

``cluster`` is started once per session.  ``pgtwist`` (function scope) and
``shared_pgtwist`` (session scope, read-only tests) run ``twistd -n pgtwist``
against it; ``pgtwist_factory`` starts one with a custom config.  At teardown a
daemon log containing a traceback fails the test: an unexpected exception in
the daemon is a bug even when the client saw a sensible answer.
"""

from __future__ import annotations

import atexit
import json
import signal
import subprocess
from pathlib import Path

import pytest

from pgtwist.dev import devcluster as dc

_BAD_LOG_MARKERS = ("Traceback", "Unhandled")


class Pgtwist:
    """One running pgtwist daemon."""

    def __init__(
        self, port: int, proc: subprocess.Popen, workdir: str, config_path: str, log_path: str
    ):
        self.port = port
        self.proc = proc
        self.workdir = workdir
        self.config_path = config_path
        self.log_path = log_path
        self.host = dc.HOST

    def log_text(self) -> str:
        try:
            return Path(self.log_path).read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def dsn(self, user="postgres", dbname="postgres", password=None, **kw) -> str:
        return dc.conninfo(
            host=self.host, port=self.port, user=user, dbname=dbname, password=password, **kw
        )

    def stop(self) -> None:
        """SIGTERM, up to 10 s grace, then SIGKILL. Safe to call again."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        atexit.unregister(self.stop)

    def __repr__(self) -> str:
        return f"<Pgtwist port={self.port} pid={self.proc.pid} workdir={self.workdir}>"


def log_problems(text: str) -> list[str]:
    """Excerpts around each unexpected-exception marker in a daemon log."""
    lines = text.splitlines()
    out, shown_until = [], 0
    for i, line in enumerate(lines):
        if i >= shown_until and any(m in line for m in _BAD_LOG_MARKERS):
            shown_until = i + 25
            out.append("\n".join(lines[max(0, i - 2) : shown_until]))
    return out


def assert_log_clean(pg: Pgtwist | str) -> None:
    """Fail if the daemon log shows a traceback or an unhandled error."""
    text = pg if isinstance(pg, str) else pg.log_text()
    problems = log_problems(text)
    if problems:
        where = "" if isinstance(pg, str) else f" ({pg.log_path})"
        pytest.fail(
            f"pgtwist log{where} shows an unexpected exception:\n" + "\n...\n".join(problems),
            pytrace=False,
        )


# pool_hba.conf trusting the tests' clients: pgtwist's own trust, under which a login may
# take a cached link.  With pool_hba off a server's trust is honoured only through a fresh
# login per client (security review S3), so tests about link reuse use this.
TRUST_HBA = "host all all 127.0.0.1/32 trust\n"


def start_pgtwist(
    cluster, workdir, extra: dict | None = None, passwd: dict[str, str] | None = None, env=None,
    replica_weight: float = 0, hba: str | None = None,
) -> Pgtwist:
    """Write workdir/pgtwist.yaml (+ pool_passwd, + pool_hba.conf when ``hba`` is given) and
    run twistd until its port accepts TCP.

    By default the replica has weight 0, so reads stay on the primary: the protocol
    tests compare against the primary.  Routing tests pass ``replica_weight``.
    """
    workdir = Path(workdir)
    if hba is not None:
        workdir.mkdir(parents=True, exist_ok=True)
        hba_path = workdir / "pool_hba.conf"
        hba_path.write_text(hba)
        hba_path.chmod(0o600)
        extra = {"enable_pool_hba": True, "pool_hba_file": str(hba_path), **(extra or {})}
    fixed_port = (extra or {}).get("port")
    for attempt in range(3):
        port = fixed_port or dc.free_port()
        config = dc.pgtwist_config(cluster, port, extra, replica_weight=replica_weight)
        port = int(config["port"])
        if dc.wait_listening(port, timeout=0):
            raise RuntimeError(f"port {port} already accepts connections before pgtwist started")
        config_path = dc.write_pgtwist_files(workdir, config, passwd)
        log_path = workdir / "pgtwist.log"
        log_path.write_bytes(b"")
        with open(log_path, "ab") as log:  # O_APPEND: test code may add to it too
            proc = subprocess.Popen(
                dc.twistd_argv(config_path),
                cwd=workdir,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=dc.pgtwist_env(env),
            )
        pg = Pgtwist(port, proc, str(workdir), str(config_path), str(log_path))
        atexit.register(pg.stop)
        if dc.wait_listening(port, proc, timeout=20) and proc.poll() is None:
            return pg
        pg.stop()
        text = pg.log_text()
        raced = "Address already in use" in text or "CannotListenError" in text
        if raced and not fixed_port and attempt < 2:
            continue
        state = f"exited with {proc.returncode}" if proc.returncode is not None else "timed out"
        raise RuntimeError(
            f"pgtwist did not start listening on {dc.HOST}:{port} ({state}); "
            f"argv: {' '.join(proc.args)}\n--- {log_path} ---\n{text}"
        )
    raise AssertionError("unreachable")


@pytest.fixture(scope="session")
def cluster():
    c = dc.make_cluster()
    try:
        c.start()
    except RuntimeError as e:
        if "docker engine not reachable" in str(e):
            pytest.skip(str(e))
        raise
    try:
        yield c
    finally:
        c.stop()


POOL_DB = "pooldb"


@pytest.fixture(scope="session")
def pool_database(cluster) -> str:
    """A database for pooling tests (postgres, template0/1 and regression are never pooled)."""
    if cluster.psql(f"select count(*) from pg_database where datname = '{POOL_DB}'") == "0":
        cluster.psql(f"create database {POOL_DB}")
    return POOL_DB


@pytest.fixture
def pgtwist_factory(cluster, tmp_path):
    """``factory(extra=None, passwd=TEST_USERS, env=None, replica_weight=0, hba=None)`` -> a
    started Pgtwist, stopped and log-checked at teardown."""
    started: list[Pgtwist] = []

    def factory(extra=None, passwd=dc.TEST_USERS, env=None, replica_weight=0,
                hba=None) -> Pgtwist:
        workdir = tmp_path / f"pgtwist{len(started)}"
        pg = start_pgtwist(cluster, workdir, extra=extra, passwd=passwd, env=env,
                           replica_weight=replica_weight, hba=hba)
        started.append(pg)
        return pg

    yield factory
    for pg in started:
        pg.stop()
    for pg in started:
        assert_log_clean(pg)


@pytest.fixture
def pgtwist(pgtwist_factory) -> Pgtwist:
    """A fresh daemon with the default config and pool_passwd = TEST_USERS."""
    return pgtwist_factory()


@pytest.fixture(scope="session")
def shared_pgtwist(cluster, tmp_path_factory):
    """One daemon for the whole session; only for tests that change no state."""
    pg = start_pgtwist(cluster, tmp_path_factory.mktemp("shared_pgtwist"), passwd=dc.TEST_USERS)
    try:
        yield pg
    finally:
        pg.stop()
    assert_log_clean(pg)


def backends(cluster, primary_weight: float = 0, replica_weight: float = 1,
             extra_nodes: list[dict] | tuple = ()) -> list[dict]:
    """The dev cluster's backends (primary flagged ALWAYS_PRIMARY) with the given weights."""
    nodes = dc.pgtwist_config(cluster, 1, replica_weight=replica_weight)["backends"]
    nodes[0]["weight"] = primary_weight
    return nodes + list(extra_nodes)


@pytest.fixture(scope="module")
def daemons(cluster, tmp_path_factory):
    """``daemons(primary_weight=0, replica_weight=1, **extra)``: a running pgtwist with that
    configuration, one per distinct configuration in the module, log-checked at its end.

    Routing state lives in sessions, so tests with the same configuration share a daemon:
    starting one costs more than most routing tests.
    """
    started: dict[str, Pgtwist] = {}

    def get(primary_weight: float = 0, replica_weight: float = 1, **extra) -> Pgtwist:
        # These daemons check Pgpool-II's routing rules, which read_consistency: lsn (the
        # default; tests/integration/test_read_consistency.py) would override for reads
        # right after writes.
        extra = {"backends": backends(cluster, primary_weight, replica_weight),
                 "read_consistency": "none", **extra}
        key = json.dumps(extra, sort_keys=True)
        if key not in started:
            started[key] = start_pgtwist(cluster, tmp_path_factory.mktemp("pgtwist"),
                                         extra=extra, passwd=dc.TEST_USERS)
        return started[key]

    yield get
    for pg in started.values():
        pg.stop()
    for pg in started.values():
        assert_log_clean(pg)


__all__ = ["TRUST_HBA", "Pgtwist", "assert_log_clean", "backends", "log_problems", "start_pgtwist"]
