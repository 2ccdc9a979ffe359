"""The PostgreSQL servers of the dev cluster: binaries, settings, test roles, and what a
primary + streaming replicas cluster offers (``_ClusterBase``).

pgtwist.dev.localcluster builds one from the local server binaries,
pgtwist.dev.dockercluster from containers; pgtwist.dev.devcluster picks one.
"""

from __future__ import annotations

import contextlib
import glob
import os
import socket
import subprocess
import time
from pathlib import Path

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
