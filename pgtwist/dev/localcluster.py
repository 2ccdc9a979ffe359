"""A throwaway local PostgreSQL primary + streaming replicas, from the local server
binaries (``pg_config --bindir``) with initdb and pg_basebackup.

The server refuses to run as root, so when we are root every server binary runs as the
``postgres`` OS user and the cluster lives in a folder under /tmp that it owns.
Everything binds to 127.0.0.1 on free ports.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from .pgserver import (
    _SERVER_SETTINGS,
    ClusterError,
    _clean_env,
    _ClusterBase,
    _conf_value,
    _tail,
    free_port,
    pg_bindir,
    pg_hba,
)


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

    def stop_node(self, name: str) -> None:
        """Stop one server (``primary``, ``replica1`` ...) in immediate mode, keeping its files."""
        self._stop_node(Path(self.base_dir, name))

    def start_node(self, name: str) -> None:
        """Start a server stop_node stopped again, on its old port."""
        port = self.primary_port if name == "primary" else self.replica_ports[int(name[7:]) - 1]
        self._nodes = [(n, d) for n, d in self._nodes if n != name]
        self._start_node(name, Path(self.base_dir, name), port)

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
