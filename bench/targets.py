"""The things pgbench is pointed at: PostgreSQL itself and the proxies in front of it.

Every proxy runs as a child process listening on 127.0.0.1 on a free port, with
its files in a temporary folder, and is stopped (SIGTERM, then SIGKILL) by
``stop()``.  PgBouncer and Pgpool-II are only used when their binaries are
installed; nothing here installs anything.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

from pgtwist.dev import devcluster as dc

REPO_ROOT = Path(__file__).resolve().parent.parent
#: every target the benchmark knows, in table order
ALL_TARGETS = (
    "direct", "pgtwist", "pgtwist-lb", "pgtwist-lb-metrics", "base", "base-lb", "relay",
    "relayfast", "pgbouncer", "pgpool",
)
#: what runs without --targets (relayfast is opt-in; base/base-lb come with --base-rev)
DEFAULT_TARGETS = ("direct", "pgtwist", "pgtwist-lb", "relay", "pgbouncer", "pgpool")
#: the pgtwist targets: name -> (replica weight, which code: "current" or "base")
#: weight 0 keeps every read on the primary (one server vs one server); weight 1 on both
#: nodes with load_balance_mode on (the default) is pgtwist as users run it
PGTWISTS = {
    "pgtwist": (0, "current"),
    "pgtwist-lb": (1, "current"),
    "pgtwist-lb-metrics": (1, "current"),
    "base": (0, "base"),
    "base-lb": (1, "base"),
}
#: pgtwist targets with the metrics port on, scraped every METRICS_SCRAPE_EVERY seconds
#: while they run (a Prometheus scrapes every 15-60 s: once a second is the harder case)
METRICS_TARGETS = frozenset({"pgtwist-lb-metrics"})
METRICS_SCRAPE_EVERY = 1.0
#: the --base-rev twin of each pgtwist target
BASE_OF = {"pgtwist": "base", "pgtwist-lb": "base-lb"}
OPTIONAL_BINARIES = {"pgbouncer": "pgbouncer", "pgpool": "pgpool"}
#: log lines from a proxy that deserve a look after the run
_LOG_MARKERS = ("Traceback", "Unhandled", "CRITICAL", "#critical]", "#error]", "#failure]",
                "ERROR:  ", "FATAL:  ")  # the last two: log_line_prefix lines (pgtwist.logs)


class TargetError(RuntimeError):
    """A target could not be started."""


def missing_binary(name: str) -> str | None:
    """The binary an optional target needs when it is not installed, else None."""
    binary = OPTIONAL_BINARIES.get(name)
    return binary if binary and shutil.which(binary) is None else None


def _as_postgres_kw() -> dict:
    """subprocess keywords that drop root to the postgres OS user (tools refusing root)."""
    if os.geteuid() != 0:
        return {}
    return {"user": "postgres", "group": "postgres", "extra_groups": []}


def rss_kb(pid: int) -> int:
    """VmRSS of ``pid`` in KiB, from /proc/PID/status."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


class Target:
    """Something pgbench can connect to: host, port and (for proxies) a process."""

    name = "?"

    def __init__(self, cluster: dc.DevCluster):
        self.cluster = cluster
        self.host = dc.HOST
        self.port = 0
        self.proc: subprocess.Popen | None = None
        self.workdir: str | None = None
        self.log_path: str | None = None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def start(self) -> Target:
        return self

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if self.workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)
            self.workdir = None

    def save_log(self, path: Path) -> None:
        """Keep a copy of the log (the work folder goes away in stop())."""
        text = self.log_text()
        if text:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)

    def log_text(self) -> str:
        """The child's output, plus its own log file where it writes one."""
        if not self.workdir:
            return ""
        paths = dict.fromkeys([str(Path(self.workdir, f"{self.name}.out")), self.log_path])
        text = []
        for path in filter(None, paths):
            with contextlib.suppress(OSError):
                text.append(Path(path).read_text(errors="replace"))
        return "".join(text)

    def _mkdir(self, for_postgres: bool = False) -> Path:
        self.workdir = tempfile.mkdtemp(prefix=f"pgtwist-bench-{self.name}-", dir="/tmp")
        os.chmod(self.workdir, 0o755)
        if for_postgres and os.geteuid() == 0:
            shutil.chown(self.workdir, "postgres", "postgres")
        return Path(self.workdir)

    def _spawn(self, argv: list[str], env=None, **kw) -> None:
        """Start the child with its output in ``workdir/NAME.out``; wait until it listens."""
        self.port = self.port or dc.free_port()
        out_path = Path(self.workdir, f"{self.name}.out")
        self.log_path = self.log_path or str(out_path)
        with open(out_path, "wb") as out:
            self.proc = subprocess.Popen(
                argv,
                cwd=self.workdir,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                **kw,
            )
        if not dc.wait_listening(self.port, self.proc, timeout=30):
            code = self.proc.poll()
            log = self.log_text()[-3000:]
            self.stop()
            raise TargetError(
                f"{self.name} did not listen on port {self.port} "
                f"({'exited ' + str(code) if code is not None else 'timeout'}):\n{log}"
            )


class Direct(Target):
    name = "direct"

    def start(self) -> Direct:
        self.port = self.cluster.primary_port
        return self


class Pgtwist(Target):
    """``twistd -n pgtwist`` with the devcluster's config (primary + replica).

    Routing runs on every statement.  With ``replica_weight`` 0 (target
    ``pgtwist``) the reads land on the primary like the other targets' (a ratio
    against direct PostgreSQL compares one server with one server); with 1
    (``pgtwist-lb``) both nodes have weight 1 and ``load_balance_mode`` is on
    (its default), as users run it.  Pool sizes are the defaults unless ``extra``
    sets them.

    With ``rev`` the pgtwist package and its twistd plugin come from that git
    revision (``git archive`` into the work folder, first on PYTHONPATH)
    instead of the working tree.
    """

    name = "pgtwist"

    def __init__(self, cluster, extra: dict | None = None, rev: str | None = None,
                 replica_weight: float = 0, name: str = "pgtwist", scrape_every: float = 0):
        super().__init__(cluster)
        self.extra = extra or {}
        self.rev = rev
        self.replica_weight = replica_weight
        self.name = name
        self.scrape_every = scrape_every  # > 0: metrics port on, /metrics fetched this often
        self.scrapes = 0
        self.scrape_seconds = 0.0         # summed time of the scrapes (request to last byte)
        self._scraping: threading.Event | None = None

    def start(self) -> Pgtwist:
        workdir = self._mkdir()
        self.port = dc.free_port()
        config = dc.pgtwist_config(self.cluster, self.port, self.extra,
                                   replica_weight=self.replica_weight)
        path = dc.write_pgtwist_files(workdir, config, passwd={})
        env = dc.pgtwist_env()
        if self.rev:
            src = workdir / "src"
            export_revision(self.rev, src)
            env["PYTHONPATH"] = os.pathsep.join([str(src), env["PYTHONPATH"]])
        self._spawn(dc.twistd_argv(path, logfile="-"), env=env)
        if self.scrape_every > 0:
            self._scraping = threading.Event()
            threading.Thread(target=self._scrape_loop, daemon=True).start()
        return self

    def _scrape_loop(self) -> None:
        """GET /metrics every ``scrape_every`` seconds, as Prometheus would."""
        url = f"http://{dc.HOST}:{self.extra['metrics_port']}/metrics"
        stop = self._scraping
        while not stop.wait(self.scrape_every):
            t0 = time.perf_counter()
            try:
                with urllib.request.urlopen(url, timeout=5) as resp:
                    resp.read()
            except OSError:
                continue  # not listening yet, or stopping
            self.scrape_seconds += time.perf_counter() - t0
            self.scrapes += 1

    def stop(self) -> None:
        if self._scraping is not None:
            self._scraping.set()
            if self.scrapes:
                print(f"{self.name}: {self.scrapes} scrapes of /metrics, "
                      f"{1000 * self.scrape_seconds / self.scrapes:.1f} ms each on average",
                      file=sys.stderr)
        super().stop()


def export_revision(rev: str, dest: Path) -> None:
    """Extract pgtwist/ and twisted/ of git revision ``rev`` into ``dest``."""
    dest.mkdir(parents=True)
    archive = subprocess.run(
        ["git", "-C", str(REPO_ROOT), "archive", "--format=tar", rev, "pgtwist", "twisted"],
        capture_output=True,
    )
    if archive.returncode != 0:
        raise TargetError(f"git archive {rev} failed: {archive.stderr.decode(errors='replace')}")
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive.stdout, check=True)


class Relay(Target):
    """bench/relay.py in front of the primary."""

    name = "relay"
    extra_args: tuple[str, ...] = ()

    def start(self) -> Relay:
        self._mkdir()
        self.port = dc.free_port()
        env = dict(os.environ, PYTHONPATH=str(REPO_ROOT), PYTHONUNBUFFERED="1")
        argv = [
            sys.executable,
            "-m",
            "bench.relay",
            str(self.port),
            dc.HOST,
            str(self.cluster.primary_port),
            *self.extra_args,
        ]
        self._spawn(argv, env=env)
        return self


class RelayFast(Relay):
    """bench/relay.py sending like pgtwist does (socket send when nothing is queued)."""

    name = "relayfast"
    extra_args = ("--direct-writes",)


class PgBouncer(Target):
    """PgBouncer in session mode, trust auth, the primary as database ``postgres``."""

    name = "pgbouncer"

    def start(self) -> PgBouncer:
        workdir = self._mkdir(for_postgres=True)
        self.port = dc.free_port()
        (workdir / "users.txt").write_text('"postgres" ""\n')
        ini = f"""\
[databases]
postgres = host={dc.HOST} port={self.cluster.primary_port} dbname=postgres

[pgbouncer]
listen_addr = {dc.HOST}
listen_port = {self.port}
unix_socket_dir =
auth_type = trust
auth_file = {workdir}/users.txt
pool_mode = session
max_client_conn = 2000
default_pool_size = 100
logfile = {workdir}/pgbouncer.log
pidfile = {workdir}/pgbouncer.pid
log_connections = 0
log_disconnections = 0
"""
        (workdir / "pgbouncer.ini").write_text(ini)
        self.log_path = str(workdir / "pgbouncer.log")
        # PgBouncer refuses to run as root
        self._spawn(
            [shutil.which("pgbouncer"), str(workdir / "pgbouncer.ini")], **_as_postgres_kw()
        )
        return self


class Pgpool(Target):
    """Pgpool-II in streaming-replication mode: primary ALWAYS_PRIMARY, no load balancing."""

    name = "pgpool"

    def __init__(self, cluster, children: int = 40):
        super().__init__(cluster)
        self.children = children

    def start(self) -> Pgpool:
        workdir = self._mkdir(for_postgres=True)
        self.port = dc.free_port()
        pcp_port = dc.free_port()
        nodes = [(self.cluster.primary_port, "ALWAYS_PRIMARY|DISALLOW_TO_FAILOVER")]
        nodes += [(p, "DISALLOW_TO_FAILOVER") for p in self.cluster.replica_ports]
        backends = "".join(
            f"backend_hostname{i} = '{dc.HOST}'\nbackend_port{i} = {port}\n"
            f"backend_weight{i} = 1\nbackend_flag{i} = '{flag}'\n"
            for i, (port, flag) in enumerate(nodes)
        )
        conf = f"""\
backend_clustering_mode = 'streaming_replication'
listen_addresses = '{dc.HOST}'
port = {self.port}
socket_dir = '{workdir}'
pcp_listen_addresses = '{dc.HOST}'
pcp_port = {pcp_port}
pcp_socket_dir = '{workdir}'
wd_ipc_socket_dir = '{workdir}'
pid_file_name = '{workdir}/pgpool.pid'
logdir = '{workdir}'
log_destination = 'stderr'
enable_pool_hba = off
pool_passwd = ''
num_init_children = {self.children}
max_pool = 4
load_balance_mode = off
sr_check_user = 'postgres'
sr_check_period = 10
health_check_period = 0
failover_on_backend_error = off
{backends}"""
        (workdir / "pgpool.conf").write_text(conf)
        (workdir / "pcp.conf").write_text("")
        kw = _as_postgres_kw()
        if kw:
            for name in ("pgpool.conf", "pcp.conf"):
                shutil.chown(workdir / name, "postgres", "postgres")
        argv = [
            shutil.which("pgpool"),
            "-n",
            "-f",
            str(workdir / "pgpool.conf"),
            "-F",
            str(workdir / "pcp.conf"),
        ]
        self._spawn(argv, **kw)
        return self


def make_pgtwist(name: str, cluster, pgtwist_rev: str | None = None,
                 base_rev: str | None = None, extra: dict | None = None) -> Pgtwist:
    """The pgtwist target ``name`` (a key of :data:`PGTWISTS`), with ``extra`` settings."""
    weight, code = PGTWISTS[name]
    rev = base_rev if code == "base" else pgtwist_rev
    if code == "base" and not base_rev:
        raise TargetError(f"target {name} needs --base-rev")
    scrape_every = 0.0
    if name in METRICS_TARGETS:
        extra = {**(extra or {}), "metrics_port": dc.free_port(),
                 "metrics_listen_addresses": dc.HOST}
        scrape_every = METRICS_SCRAPE_EVERY
    return Pgtwist(cluster, extra, rev=rev, replica_weight=weight, name=name,
                   scrape_every=scrape_every)


def make_target(name: str, cluster, pgtwist_rev: str | None = None,
                base_rev: str | None = None) -> Target:
    classes = {
        "direct": Direct,
        "relay": Relay,
        "relayfast": RelayFast,
        "pgbouncer": PgBouncer,
        "pgpool": Pgpool,
    }
    if name in PGTWISTS:
        return make_pgtwist(name, cluster, pgtwist_rev, base_rev)
    return classes[name](cluster)


def log_problems(target: Target) -> list[str]:
    """The first 20 lines of the target's log that look like errors."""
    return [
        line
        for line in target.log_text().splitlines()
        if any(marker in line for marker in _LOG_MARKERS)
    ][:20]


def stop_quietly(target: Target) -> None:
    with contextlib.suppress(Exception):
        target.stop()
