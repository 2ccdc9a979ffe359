"""CPU time per transaction: utime+stime of process trees, from /proc, around a pgbench run.

A proxy's figure is the CPU its whole process tree spent (for Pgpool-II the main
process and every child; for pgtwist, the relay and PgBouncer one process),
PostgreSQL's the same over the primary's and the replicas' postmasters and their
backends, and pgbench's the CPU of the children this process reaped meanwhile
(``RUSAGE_CHILDREN``: only pgbench ends during a run).  Each process counts
``utime + stime + cutime + cstime`` (fields 14-17 of /proc/PID/stat): a child that
exits during the run moves its time into its parent's ``cutime``, so a forked
backend or a recycled Pgpool-II child is still counted.  The kernel reports these
in clock ticks (``SC_CLK_TCK``, normally 100 a second: 10 ms resolution).
"""

from __future__ import annotations

import contextlib
import itertools
import os
import resource
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

CLK_TCK = os.sysconf("SC_CLK_TCK")


def parse_stat(text: str) -> tuple[int, int]:
    """``(ppid, utime+stime+cutime+cstime in ticks)`` from a /proc/PID/stat line.

    The command name (field 2) is in parentheses and may itself contain spaces and
    parentheses, so fields are counted from the *last* ``)``.
    """
    rest = text[text.rindex(")") + 2:].split()
    # rest[0] is field 3 (state): field n is rest[n - 3]
    ppid = int(rest[1])
    utime, stime, cutime, cstime = (int(v) for v in rest[11:15])
    return ppid, utime + stime + cutime + cstime


def snapshot(proc: str = "/proc") -> dict[int, tuple[int, int]]:
    """Every process now: ``{pid: (ppid, ticks)}`` (processes that vanish while read are left out)."""
    out = {}
    for entry in os.listdir(proc):
        if not entry.isdigit():
            continue
        with contextlib.suppress(OSError, ValueError, IndexError):
            with open(f"{proc}/{entry}/stat") as f:
                out[int(entry)] = parse_stat(f.read())
    return out


def tree_ticks(procs: dict[int, tuple[int, int]], roots: Iterable[int]) -> int:
    """Ticks of the processes in ``roots`` and all their descendants in ``procs``."""
    children: dict[int, list[int]] = {}
    for pid, (ppid, _ticks) in procs.items():
        children.setdefault(ppid, []).append(pid)
    seen: set[int] = set()
    todo = [r for r in roots if r in procs]
    while todo:
        pid = todo.pop()
        if pid in seen:
            continue
        seen.add(pid)
        todo.extend(children.get(pid, ()))
    return sum(procs[pid][1] for pid in seen)


def us_per_txn(seconds: float | None, processed: int) -> float | None:
    """CPU seconds spread over ``processed`` transactions, in µs each (None without both)."""
    if seconds is None or not processed:
        return None
    return round(seconds * 1e6 / processed, 1)


def interpolate(samples: Sequence[tuple[float, float]], at: float) -> float:
    """The value of a cumulative counter at time ``at``, from ``(time, value)`` samples.

    Linear between the two samples around ``at``; clamped to the first or last sample
    outside their range.
    """
    if at <= samples[0][0]:
        return samples[0][1]
    for (t0, v0), (t1, v1) in itertools.pairwise(samples):
        if at <= t1:
            return v0 + (v1 - v0) * (at - t0) / (t1 - t0) if t1 > t0 else v1
    return samples[-1][1]


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


@dataclass
class Reading:
    """CPU seconds spent during one run: by the proxy tree, the servers and pgbench."""

    proxy_s: float | None = None
    server_s: float | None = None
    pgbench_s: float | None = None
    #: (seconds since the start, proxy ticks or None, server ticks), when sampled
    samples: list[tuple[float, int | None, int]] = field(default_factory=list, repr=False)

    def window_per_txn(self, processed: int, start: float, end: float) -> dict:
        """Like :meth:`per_txn` for the CPU spent between ``start`` and ``end`` seconds
        after the run began, read from the samples (pgbench excluded: it is not sampled)."""
        out: dict = {"window_s": [round(start, 3), round(end, 3)]}
        for key, col in (("proxy", 1), ("server", 2)):
            points = [(s[0], s[col]) for s in self.samples if s[col] is not None]
            seconds = None
            if len(points) >= 2:
                ticks = interpolate(points, end) - interpolate(points, start)
                seconds = ticks / CLK_TCK
            out[f"{key}_us"] = us_per_txn(seconds, processed)
            out[f"{key}_cpu_s"] = None if seconds is None else round(seconds, 3)
        out["samples"] = len(self.samples)
        return out

    def per_txn(self, processed: int) -> dict:
        """``{proxy_us, server_us, pgbench_us}`` per transaction plus the raw seconds."""
        return {
            "proxy_us": us_per_txn(self.proxy_s, processed),
            "server_us": us_per_txn(self.server_s, processed),
            "pgbench_us": us_per_txn(self.pgbench_s, processed),
            "proxy_cpu_s": self.proxy_s,
            "server_cpu_s": self.server_s,
            "pgbench_cpu_s": self.pgbench_s,
        }


class CpuMeter:
    """Reads the CPU of a proxy (by pid), the PostgreSQL servers and pgbench around a run.

    ``server_pids``: the postmasters; every backend is one of their children.
    """

    def __init__(self, server_pids: Iterable[int]):
        self.server_pids = list(server_pids)

    def _read(self, proxy_pid: int | None) -> tuple[int | None, int, float]:
        procs = snapshot()
        proxy = tree_ticks(procs, [proxy_pid]) if proxy_pid in procs else None
        return proxy, tree_ticks(procs, self.server_pids), _children_cpu()

    @contextlib.contextmanager
    def measure(self, proxy_pid: int | None, every: float | None = None):
        """``with meter.measure(pid) as reading: <run pgbench>``; then ``reading.per_txn(n)``.

        With ``every`` a thread also reads the proxy's and the servers' CPU every
        ``every`` seconds during the run, for :meth:`Reading.window_per_txn`.
        """
        reading = Reading()
        t0 = time.monotonic()
        before = self._read(proxy_pid)
        reading.samples.append((0.0, before[0], before[1]))
        stop = threading.Event()

        def sample() -> None:
            while not stop.wait(every):
                proxy, server, _ = self._read(proxy_pid)
                reading.samples.append((time.monotonic() - t0, proxy, server))

        thread = threading.Thread(target=sample, name="cpu-sampler", daemon=True)
        if every:
            thread.start()
        try:
            yield reading
        finally:
            stop.set()
            if every:
                thread.join(10)
            after = self._read(proxy_pid)
            reading.samples.append((time.monotonic() - t0, after[0], after[1]))
            if before[0] is not None and after[0] is not None:
                reading.proxy_s = (after[0] - before[0]) / CLK_TCK
            if self.server_pids:
                reading.server_s = (after[1] - before[1]) / CLK_TCK
            reading.pgbench_s = round(after[2] - before[2], 4)


def median(values: Iterable[float | None]) -> float | None:
    """Median of the values that are not None (None when there are none)."""
    good = sorted(v for v in values if v is not None)
    if not good:
        return None
    mid = len(good) // 2
    return good[mid] if len(good) % 2 else (good[mid - 1] + good[mid]) / 2
