"""The dev cluster in containers (testcontainers), where ``PGTWIST_TEST_BACKEND=docker``:
the same attributes as the local one.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from .pgserver import _SERVER_SETTINGS, ClusterError, _ClusterBase, pg_hba


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
