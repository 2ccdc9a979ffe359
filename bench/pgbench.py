"""Running pgbench and reading its summary."""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass, field

from pgtwist.dev import devcluster as dc

_TPS = re.compile(r"^tps = ([0-9.]+) \(without initial connection time\)", re.M)
_FAILED = re.compile(r"^number of failed transactions: (\d+)", re.M)
_PROCESSED = re.compile(r"^number of transactions actually processed: (\d+)", re.M)
_LATENCY = re.compile(r"^latency average = ([0-9.]+) ms", re.M)
_CONNECT = re.compile(r"^initial connection time = ([0-9.]+) ms", re.M)


@dataclass
class Run:
    """One pgbench run's outcome; ``tps`` is None when pgbench gave no figure."""

    tps: float | None
    processed: int = 0
    failed: int = 0
    returncode: int = 0
    errors: list[str] = field(default_factory=list)
    latency_ms: float | None = None  # pgbench's "latency average"
    connect_ms: float | None = None  # pgbench's "initial connection time" (all clients)

    @property
    def ok(self) -> bool:
        return self.tps is not None and self.returncode == 0 and not self.failed


def parse(stdout: str, stderr: str, returncode: int) -> Run:
    tps = _TPS.search(stdout)
    failed = _FAILED.search(stdout)
    processed = _PROCESSED.search(stdout)
    latency = _LATENCY.search(stdout)
    connect = _CONNECT.search(stdout)
    errors = [line for line in stderr.splitlines() if line.strip()]
    if tps is None and not errors:
        processed_ = int(processed.group(1)) if processed else 0
        errors = [f"pgbench printed no tps ({processed_} transactions processed; "
                  "did connecting take all of -T?)"]
    return Run(
        tps=float(tps.group(1)) if tps else None,
        processed=int(processed.group(1)) if processed else 0,
        failed=int(failed.group(1)) if failed else 0,
        returncode=returncode,
        errors=errors,
        latency_ms=float(latency.group(1)) if latency else None,
        connect_ms=float(connect.group(1)) if connect else None,
    )


def pgbench(args: list[str], port: int, timeout: float,
            database: str = "postgres") -> subprocess.CompletedProcess:
    argv = ["pgbench", "-h", dc.HOST, "-p", str(port), "-U", "postgres", *args, database]
    return subprocess.run(
        argv, capture_output=True, text=True, env=dc._clean_env(), timeout=timeout
    )


def initialise(port: int, scale: int = 1, database: str = "postgres") -> None:
    proc = pgbench(["-i", "-q", "-s", str(scale)], port, timeout=300, database=database)
    if proc.returncode != 0:
        raise RuntimeError(f"pgbench -i failed ({proc.returncode}):\n{proc.stderr}")


def select_only(port: int, mode: str, clients: int, seconds: float) -> Run:
    """``pgbench -S -n -T seconds -M mode -c clients -j min(clients, 2)``."""
    args = [
        "-S",
        "-n",
        "-T",
        str(seconds),
        "-M",
        mode,
        "-c",
        str(clients),
        "-j",
        str(min(clients, 2)),
    ]
    try:
        proc = pgbench(args, port, timeout=seconds + 60)
    except subprocess.TimeoutExpired:
        return Run(tps=None, returncode=-1, errors=[f"pgbench did not finish in {seconds + 60}s"])
    return parse(proc.stdout, proc.stderr, proc.returncode)


def connect_each(port: int, clients: int, seconds: float, database: str) -> Run:
    """``pgbench -C -S``: a new connection per transaction (what a pool is for).

    Reports tps *including* connection time, since that is what -C measures.
    """
    args = ["-C", "-S", "-n", "-T", str(seconds), "-c", str(clients),
            "-j", str(min(clients, 2))]
    try:
        proc = pgbench(args, port, timeout=seconds + 60, database=database)
    except subprocess.TimeoutExpired:
        return Run(tps=None, returncode=-1, errors=[f"pgbench did not finish in {seconds + 60}s"])
    run = parse(proc.stdout, proc.stderr, proc.returncode)
    found = _TPS_ALL.search(proc.stdout)
    run.tps = float(found.group(1)) if found else run.tps
    return run


#: the built-in scripts the transaction-pool section runs, as pgbench options
SCRIPTS = {"select": ["-S"], "tpcb": []}  # -S = -b select-only; no option = -b tpcb-like


def many_clients(port: int, script: str, mode: str, clients: int, seconds: float,
                 database: str, threads: int = 2) -> Run:
    """``pgbench [-S] -n -M mode -c clients -j threads -T seconds database``.

    ``script`` is a key of :data:`SCRIPTS`; ``-n`` skips pgbench's VACUUM (it would
    run through the proxy, and the targets are compared on the same tables anyway).
    """
    args = [*SCRIPTS[script], "-n", "-T", str(seconds), "-M", mode, "-c", str(clients),
            "-j", str(min(clients, threads))]
    limit = seconds + 120  # connecting 200 clients, then every client finishing its transaction
    try:
        proc = pgbench(args, port, timeout=limit, database=database)
    except subprocess.TimeoutExpired as e:
        tail = (e.stderr or b"")
        tail = tail.decode(errors="replace") if isinstance(tail, bytes) else tail
        return Run(tps=None, returncode=-1,
                   errors=[f"pgbench did not finish in {limit}s", *tail.splitlines()[-5:]])
    return parse(proc.stdout, proc.stderr, proc.returncode)


_TPS_ALL = re.compile(r"^tps = ([0-9.]+) \(including (?:reconnection|connections) times?\)", re.M)
