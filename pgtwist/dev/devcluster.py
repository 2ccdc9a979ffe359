"""A throwaway local PostgreSQL primary + streaming replicas for tests, demos and benchmarks.

Built from the local server binaries (``pg_config --bindir``) with initdb and
pg_basebackup.  The server refuses to run as root, so when we are root every
server binary runs as the ``postgres`` OS user and the cluster lives in a
folder under /tmp that it owns.  Everything binds to 127.0.0.1 on free ports.

Where ``PGTWIST_TEST_BACKEND=docker`` is set, :func:`make_cluster` returns a
:class:`DockerCluster` (testcontainers) with the same attributes instead.
"""

from __future__ import annotations

import atexit
import contextlib
import glob
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import yaml

HOST = "127.0.0.1"
REPO_ROOT = Path(__file__).resolve().parents[2]

#: role -> password; each role authenticates over TCP with TEST_USER_METHODS[role]
TEST_USERS: dict[str, str] = {
    "pw_user": "pw secret 1",
    "md5_user": "md5 secret 2",
    "scram_user": "scram secret 3",
}
TEST_USER_METHODS: dict[str, str] = {
    "pw_user": "password",
    "md5_user": "md5",
    "scram_user": "scram-sha-256",
}

_SERVER_SETTINGS = {
    "wal_level": "replica",
    "max_wal_senders": 10,
    "max_replication_slots": 10,
    "hot_standby": "on",
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "max_connections": 300,
    "shared_buffers": "64MB",
}


class ClusterError(RuntimeError):
    """The dev cluster could not be started or a command against it failed."""


def free_port(host: str = HOST) -> int:
    """A port that was free a moment ago (callers retry if they lose the race)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def conninfo(**params: object) -> str:
    """A libpq keyword/value string; None values are left out, others quoted as needed."""
    parts = []
    for key, value in params.items():
        if value is None:
            continue
        text = str(value)
        if text == "" or any(c in text for c in " '\\\t\n"):
            text = "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"
        parts.append(f"{key}={text}")
    return " ".join(parts)


def pg_bindir() -> str:
    """Folder of the PostgreSQL server binaries (Debian keeps it off PATH)."""
    candidates = []
    with contextlib.suppress(OSError, subprocess.CalledProcessError):
        out = subprocess.run(
            ["pg_config", "--bindir"], capture_output=True, text=True, check=True
        ).stdout.strip()
        candidates.append(out)
    candidates += sorted(
        glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: _version_key(p), reverse=True
    )
    for d in candidates:
        if d and os.path.exists(os.path.join(d, "initdb")):
            return d
    raise ClusterError(
        "PostgreSQL server binaries not found (no initdb next to `pg_config --bindir` "
        "nor in /usr/lib/postgresql/*/bin); install the postgresql package"
    )


def _version_key(path: str) -> tuple[int, ...]:
    name = Path(path).parent.name
    return tuple(int(x) for x in name.split(".") if x.isdigit())


def _clean_env() -> dict[str, str]:
    """Our environment without PG* variables that would redirect libpq tools."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env["PGCONNECT_TIMEOUT"] = "10"
    return env


def _conf_value(value: object) -> str:
    if isinstance(value, int):
        return str(value)
    return "'" + str(value).replace("'", "''") + "'"


def _tail(path: str | Path, lines: int = 40) -> str:
    try:
        text = Path(path).read_text(errors="replace")
    except OSError as e:
        return f"<cannot read {path}: {e}>"
    return "\n".join(text.splitlines()[-lines:])


def pg_hba(address: str = "127.0.0.1/32") -> str:
    """The pg_hba.conf every dev cluster uses: one role per backend auth method."""
    lines = ["local all all trust", f"host replication all {address} trust"]
    lines += [f"host all {user} {address} {m}" for user, m in TEST_USER_METHODS.items()]
    lines.append(f"host all all {address} trust")
    return "\n".join(lines) + "\n"


def _sql_literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _roles_sql() -> str:
    out = []
    for user, password in TEST_USERS.items():
        enc = "md5" if TEST_USER_METHODS[user] == "md5" else "scram-sha-256"
        out += [
            f"SET password_encryption = '{enc}';",
            f"CREATE ROLE {user} LOGIN PASSWORD {_sql_literal(password)};",
            f"GRANT CONNECT, CREATE, TEMPORARY ON DATABASE postgres TO {user};",
            f"GRANT USAGE, CREATE ON SCHEMA public TO {user};",
        ]
    out.append("RESET password_encryption;")
    return "\n".join(out) + "\n"


class _ClusterBase:
    """Shared client-side helpers: dsn, psql, waiting for replication."""

    host: str = HOST
    primary_port: int
    replica_ports: list[int]
    base_dir: str

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def start(self):  # pragma: no cover - overridden
        raise NotImplementedError

    def stop(self) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    @property
    def ports(self) -> list[int]:
        return [self.primary_port, *self.replica_ports]

    def dsn(self, port=None, user="postgres", dbname="postgres", password=None) -> str:
        port = self.primary_port if port is None else port
        return conninfo(host=self.host, port=port, user=user, dbname=dbname, password=password)

    def _psql_target(self, port: int) -> dict[str, str]:
        return {"host": self.host, "port": str(port)}

    def psql(self, sql: str, port=None, user="postgres") -> str:
        """Run ``psql -X -A -t -c sql``; return stdout stripped; raise ClusterError on failure."""
        return self._psql(["-c", sql], None, port, user)

    def _psql(self, args: list[str], stdin: str | None, port, user: str) -> str:
        port = self.primary_port if port is None else port
        target = self._psql_target(port)
        argv = [
            "psql",
            "-X",
            "-A",
            "-t",
            "-q",
            "-v",
            "ON_ERROR_STOP=1",
            "-h",
            target["host"],
            "-p",
            target["port"],
            "-U",
            user,
            "-d",
            "postgres",
            *args,
        ]
        proc = subprocess.run(
            argv, input=stdin, capture_output=True, text=True, env=_clean_env(), timeout=120
        )
        if proc.returncode != 0:
            raise ClusterError(
                f"psql on port {port} as {user} failed ({proc.returncode}): {proc.stderr.strip()}"
            )
        return proc.stdout.strip()

    def _create_roles(self) -> None:
        self._psql([], _roles_sql(), self.primary_port, "postgres")

    def _replication_ready(self) -> tuple[bool, str]:
        states = self.psql("SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'")
        if int(states or 0) < len(self.replica_ports):
            return False, f"pg_stat_replication: {states} of {len(self.replica_ports)} streaming"
        for port in self.replica_ports:
            if self.psql("SELECT pg_is_in_recovery()", port=port) != "t":
                return False, f"replica on port {port} is not in recovery"
        return True, "ok"

    def _wait_streaming(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        why = "not checked yet"
        while time.monotonic() < deadline:
            try:
                ok, why = self._replication_ready()
            except ClusterError as e:
                ok, why = False, str(e)
            if ok:
                return
            time.sleep(0.1)
        raise ClusterError(
            f"replication not streaming after {timeout:.0f}s: {why}\n" + self._diagnostics()
        )

    def _diagnostics(self) -> str:
        return ""

    def wait_replayed(self, timeout: float = 10) -> None:
        """Wait until every replica has replayed the primary's current WAL position."""
        # synchronous_commit is off cluster-wide, so earlier commits may not be flushed yet.
        # A transactional WAL message committed synchronously writes and flushes WAL (a bare
        # txid_current() commit writes none), so everything before it is sendable; then wait
        # for the position right after it.
        lsn = self._psql(
            [],
            "SET synchronous_commit = on;\n"
            "SELECT pg_logical_emit_message(true, 'pgtwist', 'sync');\n"
            "SELECT pg_current_wal_flush_lsn();\n",
            None,
            "postgres",
        ).split()[-1]
        deadline = time.monotonic() + timeout
        pending = list(self.replica_ports)
        while True:
            pending = [
                p
                for p in pending
                if self.psql(
                    f"SELECT coalesce(pg_last_wal_replay_lsn() >= '{lsn}'::pg_lsn, false)", port=p
                )
                != "t"
            ]
            if not pending:
                return
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"replicas on ports {pending} did not replay {lsn} within {timeout}s"
                )
            time.sleep(0.02)


class DevCluster(_ClusterBase):
    """initdb'd primary + ``replicas`` streaming standbys, removed again by stop()."""

    def __init__(
        self,
        base_dir: str | None = None,
        replicas: int = 1,
        primary_port: int | None = None,
        log: Callable[[str], object] | None = None,
        keep: bool = False,
        ssl_files: tuple[str | Path, str | Path] | None = None,
    ):
        self.base_dir = base_dir  # type: ignore[assignment]  # set for real in start()
        self.replicas = replicas
        # (certificate, key) PEM files: every node then runs with ssl = on using copies of
        # them that the server's OS user owns (the key mode 0600, as the server demands).
        self.ssl_files = ssl_files
        self._ssl_settings: dict[str, object] = {}
        self._fixed_primary_port = primary_port
        self.primary_port = primary_port or 0
        self.replica_ports = []
        self.keep = keep
        self._log = log
        self._created_base = False
        self._nodes: list[tuple[str, Path]] = []  # (name, data dir) started so far
        self._started = False
        self._stopped = False
        self._as_postgres = os.geteuid() == 0

    # -- lifecycle -------------------------------------------------------

    def start(self) -> DevCluster:
        if self._started:
            raise ClusterError("DevCluster.start() called twice")
        self._started = True
        atexit.register(self.stop)
        t0 = time.monotonic()
        try:
            self._bindir = pg_bindir()
            self._make_base_dir()
            self._install_ssl_files()
            primary = Path(self.base_dir, "primary")
            self.say(f"initdb {primary}")
            self._server(
                [
                    "initdb",
                    "-D",
                    str(primary),
                    "-A",
                    "trust",
                    "-U",
                    "postgres",
                    "--no-sync",
                    "--no-instructions",
                    "-E",
                    "UTF8",
                    "--locale=C",
                ]
            )
            (primary / "pg_hba.conf").write_text(pg_hba())
            with open(primary / "postgresql.conf", "a") as f:
                f.write("\ninclude_if_exists = 'pgtwist_dev.conf'\n")
            self.primary_port = self._start_node("primary", primary, self._fixed_primary_port)
            self._create_roles()
            for i in range(1, self.replicas + 1):
                name = f"replica{i}"
                data = Path(self.base_dir, name)
                self.say(f"pg_basebackup {data}")
                self._server(
                    [
                        "pg_basebackup",
                        "-D",
                        str(data),
                        "-R",
                        "-X",
                        "stream",
                        "-C",
                        "-S",
                        f"pgtwist_{name}",
                        "-h",
                        self.host,
                        "-p",
                        str(self.primary_port),
                        "-U",
                        "postgres",
                        "--no-sync",
                    ]
                )
                self.replica_ports.append(self._start_node(name, data, None))
            self._wait_streaming(60)
        except BaseException:
            self.stop()
            raise
        self.say(
            f"cluster up in {time.monotonic() - t0:.1f}s: primary {self.host}:"
            f"{self.primary_port}, replicas {self.replica_ports} ({self.base_dir})"
        )
        return self

    def stop(self) -> None:
        """Stop every server (immediate mode) and remove the files. Safe to call again."""
        if self._stopped or not self._started:
            self._stopped = True
            return
        self._stopped = True
        with contextlib.suppress(Exception):
            atexit.unregister(self.stop)
        for _name, data in reversed(self._nodes):
            self._stop_node(data)
        if self.keep or not self.base_dir:
            return
        if self._created_base:
            shutil.rmtree(self.base_dir, ignore_errors=True)
        else:
            for name in ["primary"] + [f"replica{i}" for i in range(1, self.replicas + 1)]:
                shutil.rmtree(Path(self.base_dir, name), ignore_errors=True)
                with contextlib.suppress(OSError):
                    os.unlink(Path(self.base_dir, f"{name}.log"))

    # -- helpers ---------------------------------------------------------

    def say(self, msg: str) -> None:
        if self._log is not None:
            self._log(f"[devcluster] {msg}")

    def _psql_target(self, port: int) -> dict[str, str]:
        # the unix socket: local trust works for every role, whatever its TCP method
        return {"host": self.base_dir, "port": str(port)}

    def _make_base_dir(self) -> None:
        if self.base_dir is None:
            self.base_dir = tempfile.mkdtemp(prefix="pgtwist-cluster-", dir="/tmp")
            self._created_base = True
        else:
            self.base_dir = os.path.abspath(self.base_dir)
            self._created_base = not os.path.exists(self.base_dir)
            os.makedirs(self.base_dir, exist_ok=True)
        os.chmod(self.base_dir, 0o755)
        if self._as_postgres:
            shutil.chown(self.base_dir, "postgres", "postgres")

    def _install_ssl_files(self) -> None:
        """Copy ``ssl_files`` next to the nodes, readable by the server only; enable ssl."""
        if not self.ssl_files:
            return
        cert, key = self.ssl_files
        settings: dict[str, object] = {"ssl": "on"}
        for name, src, setting in (("server.crt", cert, "ssl_cert_file"),
                                   ("server.key", key, "ssl_key_file")):
            dest = Path(self.base_dir, name)
            shutil.copyfile(src, dest)
            dest.chmod(0o600)
            if self._as_postgres:
                shutil.chown(dest, "postgres", "postgres")
            settings[setting] = str(dest)
        self._ssl_settings = settings

    def _server(self, argv: list[str], check: bool = True) -> subprocess.CompletedProcess:
        """Run a server binary, as the postgres OS user when we are root."""
        argv = [os.path.join(self._bindir, argv[0]), *argv[1:]]
        kw = {}
        if self._as_postgres:
            kw = {"user": "postgres", "group": "postgres", "extra_groups": []}
        proc = subprocess.run(
            argv,
            capture_output=True,
            text=True,
            cwd=self.base_dir,
            env=_clean_env(),
            timeout=180,
            **kw,
        )
        if check and proc.returncode != 0:
            raise ClusterError(
                f"{' '.join(argv)} failed ({proc.returncode}):\n{proc.stdout}{proc.stderr}"
            )
        return proc

    def _write_settings(self, name: str, data: Path, port: int) -> None:
        settings = dict(
            _SERVER_SETTINGS,
            listen_addresses=self.host,
            port=port,
            unix_socket_directories=self.base_dir,
            cluster_name=f"pgtwist_{name}",
            **self._ssl_settings,
        )
        text = "".join(f"{k} = {_conf_value(v)}\n" for k, v in settings.items())
        conf = data / "pgtwist_dev.conf"
        conf.write_text(text)
        if self._as_postgres:
            shutil.chown(conf, "postgres", "postgres")

    def _start_node(self, name: str, data: Path, port: int | None) -> int:
        """Start one server; on a lost race for a free port, try another one."""
        logfile = Path(self.base_dir, f"{name}.log")
        attempts = 1 if port else 5
        for attempt in range(attempts):
            p = port or free_port(self.host)
            self._write_settings(name, data, p)
            proc = self._server(
                ["pg_ctl", "start", "-w", "-t", "60", "-D", str(data), "-l", str(logfile)],
                check=False,
            )
            if proc.returncode == 0:
                self._nodes.append((name, data))
                self.say(f"{name} listening on {self.host}:{p}")
                return p
            tail = _tail(logfile)
            # pg_ctl may have given up while the postmaster lives on: never leave it behind
            self._stop_node(data)
            if "could not bind" in tail or "already in use" in tail:
                self.say(f"{name}: port {p} taken (attempt {attempt + 1}), retrying")
                continue
            break
        raise ClusterError(
            f"could not start {name} ({data}):\n{proc.stdout}{proc.stderr}\n"
            f"--- {logfile} (tail) ---\n{tail}"
        )

    def _stop_node(self, data: Path) -> None:
        pidfile = data / "postmaster.pid"
        if not pidfile.exists():
            return
        proc = self._server(
            ["pg_ctl", "stop", "-D", str(data), "-m", "immediate", "-w", "-t", "30"], check=False
        )
        if proc.returncode != 0 and pidfile.exists():
            with contextlib.suppress(OSError, ValueError, IndexError):
                os.kill(int(pidfile.read_text().split()[0]), signal.SIGKILL)

    def _diagnostics(self) -> str:
        return "".join(
            f"--- {name}.log (tail) ---\n{_tail(Path(self.base_dir, name + '.log'))}\n"
            for name, _ in self._nodes
        )


class DockerCluster(_ClusterBase):
    """Primary + streaming replicas in Docker (testcontainers); same attributes as DevCluster."""

    image = "postgres:15"

    def __init__(
        self,
        base_dir: str | None = None,
        replicas: int = 1,
        primary_port: int | None = None,
        log: Callable[[str], object] | None = None,
        keep: bool = False,
    ):
        self.base_dir = base_dir  # type: ignore[assignment]
        self.replicas = replicas
        self.primary_port = 0
        self.replica_ports = []
        self.keep = keep
        self._log = log
        self._containers: list = []
        self._network = None
        self._stopped = False

    def start(self) -> DockerCluster:
        try:
            import docker
            from testcontainers.core.container import DockerContainer
            from testcontainers.core.network import Network
        except ImportError as e:
            raise RuntimeError(
                f"docker engine not reachable: testcontainers missing ({e}); "
                "pip install -e '.[docker]'"
            ) from e
        try:
            docker.from_env().ping()
        except Exception as e:
            raise RuntimeError(f"docker engine not reachable ({e})") from e
        atexit.register(self.stop)
        try:
            self.base_dir = self.base_dir or tempfile.mkdtemp(prefix="pgtwist-docker-")
            os.chmod(self.base_dir, 0o755)
            hba = Path(self.base_dir, "pg_hba.conf")
            hba.write_text(pg_hba("0.0.0.0/0"))
            hba.chmod(0o644)
            settings = " ".join(f"-c {k}={v}" for k, v in _SERVER_SETTINGS.items())
            server = f"postgres {settings} -c hba_file=/etc/pgtwist/pg_hba.conf"
            self._network = Network().create()
            primary = (
                DockerContainer(self.image)
                .with_env("POSTGRES_HOST_AUTH_METHOD", "trust")
                .with_command(server)
                .with_exposed_ports(5432)
                .with_volume_mapping(self.base_dir, "/etc/pgtwist", "ro")
                .with_network(self._network)
                .with_network_aliases("primary")
            )
            self._containers.append(primary.start())
            self.host = primary.get_container_host_ip()
            self.primary_port = int(primary.get_exposed_port(5432))
            self._wait_ready(self.primary_port)
            self._create_roles()
            for i in range(1, self.replicas + 1):
                script = (
                    'set -e; mkdir -p "$PGDATA"; chown postgres "$PGDATA"; chmod 700 "$PGDATA"; '
                    'gosu postgres pg_basebackup -h primary -U postgres -D "$PGDATA" '
                    f"-R -X stream -C -S pgtwist_replica{i}; exec gosu postgres {server}"
                )
                replica = (
                    DockerContainer(self.image)
                    .with_exposed_ports(5432)
                    .with_volume_mapping(self.base_dir, "/etc/pgtwist", "ro")
                    .with_network(self._network)
                    .with_kwargs(entrypoint=["bash", "-c", script])
                )
                self._containers.append(replica.start())
                self.replica_ports.append(int(replica.get_exposed_port(5432)))
                self._wait_ready(self.replica_ports[-1])
            self._wait_streaming(60)
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ready(self, port: int, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.psql("SELECT 1", port=port)
                return
            except ClusterError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)

    def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        with contextlib.suppress(Exception):
            atexit.unregister(self.stop)
        for c in reversed(self._containers):
            with contextlib.suppress(Exception):
                c.stop()
        if self._network is not None:
            with contextlib.suppress(Exception):
                self._network.remove()
        if self.base_dir and not self.keep:
            shutil.rmtree(self.base_dir, ignore_errors=True)

    def _diagnostics(self) -> str:
        out = []
        for c in self._containers:
            with contextlib.suppress(Exception):
                stdout, stderr = c.get_logs()
                out.append((stdout + stderr).decode(errors="replace")[-4000:])
        return "\n".join(out)


def make_cluster(**kw) -> _ClusterBase:
    """DevCluster, or DockerCluster when PGTWIST_TEST_BACKEND=docker."""
    backend = os.environ.get("PGTWIST_TEST_BACKEND", "local").strip().lower() or "local"
    if backend == "docker":
        return DockerCluster(**kw)
    if backend in ("local", "devcluster"):
        return DevCluster(**kw)
    raise ValueError(f"PGTWIST_TEST_BACKEND={backend!r}: expected 'local' or 'docker'")


# -- running pgtwist itself (shared by the test harness, the demo and the benchmarks) --------


def pgtwist_config(cluster: _ClusterBase, port: int, extra: dict | None = None,
                   replica_weight: float = 1) -> dict:
    """The default pgtwist YAML config for ``cluster``; top-level keys of ``extra`` override.

    ``replica_weight`` 0 keeps every read on the primary (load balancing never picks
    a node of weight 0).
    """
    backends = [
        {
            "hostname": cluster.host,
            "port": cluster.primary_port,
            "weight": 1,
            "flag": "ALWAYS_PRIMARY|DISALLOW_TO_FAILOVER",
        }
    ]
    backends += [
        {"hostname": cluster.host, "port": p, "weight": replica_weight,
         "flag": "DISALLOW_TO_FAILOVER"}
        for p in cluster.replica_ports
    ]
    config = {
        "listen_addresses": HOST,
        "port": port,
        "sr_check_user": "postgres",
        "backends": backends,
    }
    config.update(extra or {})
    return config


def write_pgtwist_files(
    workdir: str | Path, config: dict, passwd: dict[str, str] | None = None
) -> Path:
    """Write ``workdir/pgtwist.yaml`` (and ``workdir/pool_passwd`` when given); return the config path."""
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / "pgtwist.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    if passwd is not None:
        pw = workdir / "pool_passwd"
        pw.write_text("".join(f"{user}:TEXT{password}\n" for user, password in passwd.items()))
        pw.chmod(0o600)
    return path


def twistd_argv(config_path: str | Path, logfile: str | None = "-") -> list[str]:
    """``twistd -n --pidfile= [--logfile=...] pgtwist -c FILE``, with the twistd next to our python."""
    twistd = Path(sys.executable).parent / "twistd"
    head = (
        [str(twistd)]
        if twistd.exists()
        else [sys.executable, "-c", "from twisted.scripts.twistd import run; run()"]
    )
    opts = ["-n", "--pidfile="] + ([f"--logfile={logfile}"] if logfile else [])
    return [*head, *opts, "pgtwist", "-c", str(config_path)]


def pgtwist_env(env: dict[str, str] | None = None) -> dict[str, str]:
    """Environment for a pgtwist child: the repo on PYTHONPATH so twisted/plugins is found."""
    out = dict(os.environ if env is None else env)
    paths = [str(REPO_ROOT)] + [p for p in out.get("PYTHONPATH", "").split(os.pathsep) if p]
    out["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
    out["PYTHONUNBUFFERED"] = "1"
    return out


def wait_listening(
    port: int, proc: subprocess.Popen | None = None, timeout: float = 20, host: str = HOST
) -> bool:
    """Wait until ``host:port`` accepts TCP; False if ``proc`` exits first or time runs out."""
    deadline = time.monotonic() + timeout
    while True:
        if proc is not None and proc.poll() is not None:
            return False
        with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)
