"""Many clients on few links: pgtwist's transaction pool next to direct connections.

``pgbench -c 200`` runs once against the primary itself (200 server connections)
and once through each pgtwist target (``pgtwist``, ``pgtwist-lb``, with
``--base-rev`` also ``base``, ``base-lb``), each started with ``pool_mode:
transaction`` and ``backend_max_connections: 10`` (and ``max_pool: 10``),
interleaved cell by cell, on a database pgtwist pools
(:data:`bench.__main__.POOLED_DB`).  While each run lasts, a thread samples
``pg_stat_activity`` on every node and counts the server connections on that
database that belong to the target: for a pgtwist the ones whose client port is a
local port of one of its own sockets (read from /proc), for direct all the
others; and the CPU of the target and of the servers is read around the run
(bench/cpu.py).
"""

from __future__ import annotations

import contextlib
import os
import resource
import statistics
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from pgtwist.dev import devcluster as dc

from . import pgbench
from .cpu import CpuMeter, median
from .report import base_pairs, num, ratios
from .report import table as text_table
from .targets import (
    PGTWISTS,
    Direct,
    Target,
    TargetError,
    log_problems,
    make_pgtwist,
    stop_quietly,
)

#: SHOW pgtwist_pool rows printed after each pgtwist run (all of them go to the JSON)
_POOL_SHOWN = ("created", "reused", "links", "links_busy", "waiting", "timeouts", "pinned",
               "statements_parsed", "statements_evicted", "closed_reset_failed", "discarded")
SCRIPT_NAMES = {"select": "select-only (-S)", "tpcb": "tpcb-like"}
THREADS = 2  # pgbench -j


def threads_for(script: str, mode: str, clients: int) -> int:
    """pgbench -j for a cell: 2 for all of them.

    (pgbench 15 prepares each statement with a blocking PQprepare, stalling the other
    clients of its thread; pgtwist answers such a prepare itself when every link is
    busy, so -M prepared with BEGIN ... END needs no thread per client.)
    """
    return THREADS


_ACTIVITY = (
    "SELECT client_port, state FROM pg_stat_activity "
    "WHERE backend_type = 'client backend' AND datname = '{db}' AND pid <> pg_backend_pid()"
)


def raise_fd_limit(need: int, say) -> int:
    """Raise this process's soft RLIMIT_NOFILE to ``need`` (children inherit it).

    pgbench keeps one socket per client and pgtwist one per client plus its links;
    returns the soft limit now in force.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < need:
        new = need if hard == resource.RLIM_INFINITY else min(need, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))
        say(f"  ulimit -n raised from {soft} to {new}")
        soft = new
    if soft != resource.RLIM_INFINITY and soft < need:
        say(f"  WARNING: ulimit -n is {soft} (hard limit), {need} wanted")
    return soft


# -- whose server connections ----------------------------------------------------------


def socket_ports(pid: int) -> set[int]:
    """Local TCP ports of process ``pid``'s sockets (its outgoing links' source ports)."""
    inodes = set()
    fd_dir = f"/proc/{pid}/fd"
    for fd in os.listdir(fd_dir):
        with contextlib.suppress(OSError):
            link = os.readlink(f"{fd_dir}/{fd}")
            if link.startswith("socket:["):
                inodes.add(link[8:-1])
    ports = set()
    for table in ("tcp", "tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]:
                cols = line.split()
                if len(cols) > 9 and cols[9] in inodes:
                    ports.add(int(cols[1].rsplit(":", 1)[1], 16))
    return ports


def proxies_ports(proxies: dict[int, int]) -> set[int]:
    """Local ports of the links of the proxies ``{pid: listen port}``."""
    ports: set[int] = set()
    for pid in proxies:
        with contextlib.suppress(OSError):
            ports |= socket_ports(pid)
    return ports - set(proxies.values())


@dataclass
class Sample:
    at: float  # seconds since the sampler started
    node: int  # 0 = primary, then the replicas
    count: int  # server connections of the measured target on the database
    active: int  # ... of which not 'idle' (in a query or a transaction)


@dataclass
class LinkSampler:
    """Counts a target's server connections on ``database``, every ``interval`` s, per node.

    ``proxy_pid`` set: the connections from that process; None: every connection
    except those of the ``exclude`` proxies (pid -> listen port: proxies left running
    idle next to the direct run).  A proxy's listen port is never one of its links'.
    """

    cluster: dc.DevCluster
    database: str
    proxy_pid: int | None = None
    exclude: dict[int, int] = field(default_factory=dict)
    interval: float = 0.2
    samples: list[Sample] = field(default_factory=list)
    error: str | None = None

    def __post_init__(self):
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="link-sampler", daemon=True)
        self._t0 = 0.0

    def __enter__(self) -> LinkSampler:
        self._t0 = time.monotonic()
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(10)

    def _run(self) -> None:
        try:
            import psycopg
        except ImportError:  # pragma: no cover - psycopg is in the [test] extra
            psycopg = None
        conns = []
        try:
            ports = self.cluster.ports
            if psycopg is not None:
                conns = [psycopg.connect(self.cluster.dsn(port=p), autocommit=True) for p in ports]
            sql = _ACTIVITY.format(db=self.database)
            while not self._stop.is_set():
                if self.proxy_pid:
                    theirs = socket_ports(self.proxy_pid)
                else:
                    theirs = proxies_ports(self.exclude)
                for node, port in enumerate(ports):
                    if conns:
                        rows = conns[node].execute(sql).fetchall()
                    else:
                        out = self.cluster.psql(sql, port=port)
                        rows = [line.split("|") for line in out.splitlines() if line]
                        rows = [(int(p) if p else None, s) for p, s in rows]
                    mine = [
                        state
                        for client_port, state in rows
                        if (client_port in theirs) == (self.proxy_pid is not None)
                    ]
                    self.samples.append(
                        Sample(
                            round(time.monotonic() - self._t0, 2),
                            node,
                            len(mine),
                            sum(1 for s in mine if s != "idle"),
                        )
                    )
                self._stop.wait(self.interval)
        except Exception as e:  # reported next to the figures, never fatal
            self.error = f"{type(e).__name__}: {e}"
        finally:
            for conn in conns:
                with contextlib.suppress(Exception):
                    conn.close()

    def summary(self) -> dict:
        """Per node: peak, median over the middle half of the run, peak active."""
        out = {}
        if not self.samples:
            return {"error": self.error or "no samples"}
        end = max(s.at for s in self.samples)
        for node in sorted({s.node for s in self.samples}):
            mine = [s for s in self.samples if s.node == node]
            middle = [s.count for s in mine if end * 0.25 <= s.at <= end * 0.75] or [
                s.count for s in mine
            ]
            out["primary" if node == 0 else f"replica{node}"] = {
                "peak": max(s.count for s in mine),
                "median": statistics.median(middle),
                "peak_active": max(s.active for s in mine),
                "samples": len(mine),
            }
        if self.error:
            out["error"] = self.error
        return out


# -- the section -----------------------------------------------------------------------


def pool_counters(target: Target) -> dict | str:
    """``SHOW pgtwist_pool`` through the proxy (simple query protocol, via psql)."""
    argv = ["psql", "-X", "-A", "-t", "-q", "-h", target.host, "-p", str(target.port),
            "-U", "postgres", "-d", "postgres", "-c", "SHOW pgtwist_pool"]
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, env=dc._clean_env(),
                              timeout=60)
    except subprocess.TimeoutExpired:
        return "SHOW pgtwist_pool: no answer in 60 s"
    if proc.returncode != 0:
        return f"SHOW pgtwist_pool failed ({proc.returncode}): {proc.stderr.strip()[:300]}"
    return dict(line.split("|", 1) for line in proc.stdout.splitlines() if "|" in line)


def run(args, cluster, database: str, say, logs: Path, meter: CpuMeter | None = None) -> dict:
    """The whole section; returns its JSON (``rows`` plus settings and problems).

    Targets: ``direct`` and each pgtwist target of ``args.targets`` (``pgtwist``,
    ``pgtwist-lb``, and with ``--base-rev`` ``base``/``base-lb``), every pgtwist
    with the same transaction-pool settings; all of them run for the whole section.
    """
    clients, links = args.txn_clients, args.txn_links
    extra = {
        "pool_mode": "transaction",
        "backend_max_connections": links,
        "max_pool": links,
        "num_init_children": max(1000, clients + 100),
    }
    meter = meter or CpuMeter(())
    variants = [n for n in PGTWISTS if n in args.targets] or ["pgtwist"]
    out: dict = {
        "clients": clients,
        "links": links,
        "database": database,
        "seconds": args.txn_seconds,
        "rounds": args.rounds,
        "pgtwist_settings": extra,
        "targets": ["direct", *variants],
        "replica_weight": {n: PGTWISTS[n][0] for n in variants},
        "fd_limit": raise_fd_limit(2 * clients * len(variants) + 200, say),
        "rows": [],
        "problems": [],
    }
    max_conn = int(cluster.psql("SHOW max_connections"))
    reserved = int(cluster.psql("SHOW superuser_reserved_connections"))
    out["server_max_connections"] = max_conn
    idle_links = links * len(variants)
    if clients + idle_links > max_conn - reserved - 10:
        out["problems"].append(
            f"the primary allows {max_conn} connections ({reserved} reserved): too few for "
            f"{clients} direct clients next to {idle_links} idle pooled links"
        )
    targets: dict[str, Target] = {"direct": Direct(cluster).start()}
    proxies: dict[str, Target] = {}
    try:
        for name in variants:
            proxy = make_pgtwist(name, cluster, args.pgtwist_rev, args.base_rev, extra)
            try:
                proxy.start()
            except TargetError as e:
                out["problems"].append(f"{name} did not start: {e}")
                say(f"  {name} (transaction mode) did not start: {e}")
                continue
            proxies[name] = targets[name] = proxy
            say(f"  {name} (pool_mode transaction, backend_max_connections {links}, "
                f"max_pool {links}, replica weight {PGTWISTS[name][0]}) on port {proxy.port}")
        if not proxies:
            return out
        listen = {p.pid: p.port for p in proxies.values()}
        for name, target in targets.items():  # warm-up, and proof each target answers
            warm = pgbench.many_clients(target.port, "select", "prepared", 8, 1, database)
            if not warm.ok:
                msg = (f"warm-up of {name} failed: rc={warm.returncode} failed={warm.failed} "
                       f"{' | '.join(warm.errors[-3:])}")
                say(f"  {msg}")
                out["problems"].append(msg)
        cells = [(s, m, threads_for(s, m, clients)) for s in args.txn_scripts
                 for m in args.modes]
        runs = {cell: {n: [] for n in targets} for cell in cells}
        for rnd in range(1, args.rounds + 1):
            for script, mode, threads in cells:
                line = []
                for name, target in targets.items():
                    entry = _one_run(cluster, database, target, name, listen, meter, script,
                                     mode, clients, args.txn_seconds, threads, say)
                    runs[script, mode, threads][name].append(entry)
                    conns = entry["server_connections"]
                    line.append(
                        (f"{name} {entry['tps']:,.0f} tps" if entry["tps"] is not None
                         else f"{name} FAILED")
                        + (f" {entry['cpu_steady']['proxy_us']:.0f} µs"
                           if entry["cpu_steady"]["proxy_us"] else "")
                        + f", {_conns(conns)} server conns peak"
                    )
                say(f"  round {rnd} {SCRIPT_NAMES[script]:<16} -M {mode:<8} -c {clients} "
                    f"-j {threads:<3}: "
                    + "; ".join(line))
        for (script, mode, threads), per_target in runs.items():
            row = _row(script, mode, per_target, links, out["problems"])
            out["rows"].append(dict(row, threads=threads))
        for name, proxy in proxies.items():
            found = log_problems(proxy)
            out.setdefault("log_problems", {})[name] = found
            if found:
                out["problems"].append(
                    f"{name} log: {len(found)} suspicious line(s), first: {found[0]}"
                )
    finally:
        for name, proxy in proxies.items():
            proxy.save_log(logs / f"txn-{name}.log")
            stop_quietly(proxy)
    return out


def _conns(summary: dict) -> str:
    """``P`` or ``P+R``: peak server connections on the primary (+ on the replicas)."""
    primary = summary.get("primary", {}).get("peak", "?")
    replicas = [v.get("peak", 0) for k, v in summary.items() if k.startswith("replica")]
    return f"{primary}+{max(replicas)}" if any(replicas) else str(primary)


def _one_run(cluster, database, target, name, listen, meter, script, mode, clients, seconds,
             threads, say) -> dict:
    """One pgbench run against ``target`` while sampling its server connections and CPU."""
    _wait_quiet(cluster, database, listen)
    mine = target.pid if target.pid in listen else None
    sampler = LinkSampler(cluster, database, proxy_pid=mine,
                          exclude={} if mine else listen)
    with sampler, meter.measure(target.pid, every=min(0.25, seconds / 10)) as reading:
        result = pgbench.many_clients(target.port, script, mode, clients, seconds, database,
                                      threads=threads)
    # pgbench 15 first connects every client, then runs until `seconds` after its start
    # (connecting included); its tps is processed / the time after connecting
    connected = (result.connect_ms or 0) / 1000
    measured = result.processed / result.tps if result.tps else seconds - connected
    entry = {
        "tps": result.tps,
        "latency_ms": result.latency_ms,
        "connect_ms": result.connect_ms,
        "processed": result.processed,
        "cpu": reading.per_txn(result.processed),
        "cpu_steady": reading.window_per_txn(result.processed, connected,
                                             connected + measured),
        "server_connections": sampler.summary(),
    }
    if mine:
        entry["pgtwist_pool"] = pool_counters(target)
    if not result.ok:
        entry["problem"] = {
            "returncode": result.returncode,
            "failed": result.failed,
            "stderr": result.errors[-8:],
        }
        say(f"    {name}: {' | '.join(result.errors[-3:])}")
    pool = entry.get("pgtwist_pool")
    if isinstance(pool, dict):
        shown = [f"{k} {pool[k]}" for k in _POOL_SHOWN if k in pool]
        say(f"    {name} SHOW pgtwist_pool (cumulative): {', '.join(shown)}")
    elif pool:
        say(f"    {name} {pool}")
    return entry


def _row(script: str, mode: str, per_target: dict, links: int, problems: list) -> dict:
    row: dict = {"script": script, "mode": mode, "runs": per_target}
    for name, entries in per_target.items():
        ok = [e for e in entries if e["tps"] is not None and "problem" not in e]
        row[f"{name}_tps"] = round(statistics.median(e["tps"] for e in ok), 1) if ok else None
        lat = [e["latency_ms"] for e in entries if e["latency_ms"] is not None]
        row[f"{name}_latency_ms"] = round(statistics.median(lat), 3) if lat else None
        # once every client is connected (what the table shows) ...
        row[f"{name}_us_per_txn"] = median(e["cpu_steady"]["proxy_us"] for e in ok)
        row[f"{name}_server_us_per_txn"] = median(e["cpu_steady"]["server_us"] for e in ok)
        # ... and over the whole pgbench run, the 200 logins included
        row[f"{name}_us_per_txn_with_logins"] = median(e["cpu"]["proxy_us"] for e in ok)
        row[f"{name}_server_us_per_txn_with_logins"] = median(e["cpu"]["server_us"] for e in ok)
        peaks = [e["server_connections"].get("primary", {}).get("peak") for e in entries]
        peaks = [p for p in peaks if p is not None]
        row[f"{name}_conns_peak"] = max(peaks) if peaks else None
        medians = [e["server_connections"].get("primary", {}).get("median") for e in entries]
        medians = [m for m in medians if m is not None]
        row[f"{name}_conns_median"] = statistics.median(medians) if medians else None
        replica = [
            v.get("peak", 0)
            for e in entries
            for k, v in e["server_connections"].items()
            if k.startswith("replica")
        ]
        row[f"{name}_replica_conns_peak"] = max(replica) if replica else None
        for e in entries:
            if "problem" in e:
                problems.append(f"{name} {script} -M {mode}: {e['problem']}")
            if e["server_connections"].get("error"):
                problems.append(f"sampling {name}: {e['server_connections']['error']}")
        if name in PGTWISTS:
            for where in ("conns_peak", "replica_conns_peak"):
                peak = row[f"{name}_{where}"]
                if peak is not None and peak > links:
                    node = "a replica" if where.startswith("replica") else "the primary"
                    problems.append(
                        f"{name} used {peak} server connections on {node} in {script} "
                        f"-M {mode}, more than backend_max_connections {links}"
                    )
    names = list(per_target)
    tps = {n: row[f"{n}_tps"] for n in names}
    row["ratios"] = ratios(tps, [(n, "direct") for n in names if n != "direct"]
                           + base_pairs(names))
    row["cpu_ratios"] = ratios({n: row[f"{n}_us_per_txn"] for n in names}, base_pairs(names),
                               "cpu ")
    if "pgtwist/direct" in row["ratios"]:
        row["ratio"] = row["ratios"]["pgtwist/direct"]
    return row


def _wait_quiet(cluster, database: str, proxies: dict[int, int], timeout: float = 30) -> None:
    """Wait until the previous run's direct connections to ``database`` have gone.

    ``proxies``: pid -> listen port of the proxies whose links do not count.
    """
    deadline = time.monotonic() + timeout
    sql = _ACTIVITY.format(db=database)
    while time.monotonic() < deadline:
        theirs = proxies_ports(proxies)
        rows = [line.split("|") for line in cluster.psql(sql).splitlines() if line]
        if not [p for p, _ in rows if not p or int(p) not in theirs]:
            return
        time.sleep(0.2)


def format_table(section: dict) -> str:
    """Per script, mode and target: tps, ratio to direct, CPU µs/txn, server connections."""
    head = ["script", "mode", "-j", "target", "tps", "/direct", "proxy µs/txn", "pg µs/txn",
            "lat ms", "primary conns peak/median", "replica conns peak"]
    body = []
    for row in section["rows"]:
        names = [k[:-4] for k in row if k.endswith("_tps")]
        for i, name in enumerate(names):
            peak, med = row.get(f"{name}_conns_peak"), row.get(f"{name}_conns_median")
            body.append([
                SCRIPT_NAMES[row["script"]] if i == 0 else "",
                row["mode"] if i == 0 else "",
                str(row["threads"]) if i == 0 else "",
                name,
                num(row.get(f"{name}_tps"), missing="FAILED"),
                "1.00" if name == "direct" and row.get("direct_tps")
                else num(row["ratios"].get(f"{name}/direct"), "{:.2f}"),
                num(row.get(f"{name}_us_per_txn")),
                num(row.get(f"{name}_server_us_per_txn")),
                num(row.get(f"{name}_latency_ms"), "{:.2f}"),
                "?" if peak is None else f"{peak}/{med:g}",
                num(row.get(f"{name}_replica_conns_peak"), "{}", "?"),
            ])
    return text_table(head, body, left=4)


def format_base(section: dict) -> str:
    """Lines ``script mode: pgtwist/base 1.01, cpu pgtwist/base 0.99, ...`` (empty without a base)."""
    lines = []
    for row in section["rows"]:
        found = {k: v for k, v in {**row["ratios"], **row["cpu_ratios"]}.items()
                 if not k.endswith("/direct")}
        if found:
            lines.append(f"  {SCRIPT_NAMES[row['script']]} -M {row['mode']}: "
                         + ", ".join(f"{k} {v:.2f}" for k, v in found.items()))
    return "\n".join(lines)
