"""The dev cluster as the test harness, the demo and the benchmarks use it: a throwaway
PostgreSQL primary + streaming replicas (``make_cluster``), and pgtwist run in front of
it (``pgtwist_config``, ``write_pgtwist_files``, ``twistd_argv``, ``pgtwist_env``).

The servers come from the local binaries (pgtwist.dev.localcluster); where
``PGTWIST_TEST_BACKEND=docker`` is set, :func:`make_cluster` returns a
:class:`DockerCluster` (testcontainers, pgtwist.dev.dockercluster) with the same
attributes instead.  Binaries, settings and test roles: pgtwist.dev.pgserver.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import yaml

from .dockercluster import DockerCluster
from .localcluster import DevCluster
from .pgserver import (  # noqa: F401 (the names the harness, demo and benchmarks use)
    HOST,
    REPO_ROOT,
    TEST_USER_METHODS,
    TEST_USERS,
    ClusterError,
    _clean_env,
    _ClusterBase,
    _conf_value,
    conninfo,
    free_port,
    pg_bindir,
    pg_hba,
)


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
        "pcp_port": 0,  # tests run many daemons at once: PCP only where a test asks
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
