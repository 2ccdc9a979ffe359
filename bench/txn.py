"""Many clients on few links: pgtwist's transaction pool next to direct connections.

``pgbench -c 200`` runs once against the primary itself (200 server connections)
and once through a pgtwist started with ``pool_mode: transaction`` and
``backend_max_connections: 10`` (and ``max_pool: 10``), interleaved cell by cell,
on a database pgtwist pools (:data:`bench.__main__.POOLED_DB`).  While each run
lasts, a thread samples ``pg_stat_activity`` on every node and counts the server
connections on that database that belong to the target: for pgtwist the ones whose
client port is a local port of one of pgtwist's own sockets (read from /proc), for
direct all the others.
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

from pgtwist import devcluster as dc

from . import pgbench
from .targets import Direct, Pgtwist, Target, TargetError, log_problems, stop_quietly

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
    except those of ``exclude_pid`` (a proxy left running idle next to the direct run).
    """

    cluster: dc.DevCluster
    database: str
    proxy_pid: int | None = None
    exclude_pid: int | None = None
    exclude_port: int = 0
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
                pid = self.proxy_pid or self.exclude_pid
                theirs = socket_ports(pid) - {self.exclude_port} if pid else set()
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


def run(args, cluster, database: str, say, logs: Path) -> dict:
    """The whole section; returns its JSON (``rows`` plus settings and problems)."""
    clients, links = args.txn_clients, args.txn_links
    extra = {
        "pool_mode": "transaction",
        "backend_max_connections": links,
        "max_pool": links,
        "num_init_children": max(1000, clients + 100),
    }
    out: dict = {
        "clients": clients,
        "links": links,
        "database": database,
        "seconds": args.seconds,
        "rounds": args.rounds,
        "pgtwist_settings": extra,
        "fd_limit": raise_fd_limit(2 * clients + 200, say),
        "rows": [],
        "problems": [],
    }
    max_conn = int(cluster.psql("SHOW max_connections"))
    reserved = int(cluster.psql("SHOW superuser_reserved_connections"))
    out["server_max_connections"] = max_conn
    if clients > max_conn - reserved - 10:
        out["problems"].append(
            f"the primary allows {max_conn} connections ({reserved} reserved): too few for "
            f"{clients} direct clients"
        )
    direct = Direct(cluster).start()
    proxy = Pgtwist(cluster, extra, rev=args.pgtwist_rev)
    try:
        proxy.start()
    except TargetError as e:
        out["problems"].append(f"pgtwist did not start: {e}")
        say(f"  pgtwist (transaction mode) did not start: {e}")
        return out
    try:
        say(f"  pgtwist (pool_mode transaction, backend_max_connections {links}, "
            f"max_pool {links}) on port {proxy.port}")
        targets = {"direct": direct, "pgtwist": proxy}
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
                    _wait_quiet(cluster, database, proxy.pid, proxy.port)
                    sampler = LinkSampler(
                        cluster,
                        database,
                        proxy_pid=proxy.pid if name == "pgtwist" else None,
                        exclude_pid=proxy.pid if name == "direct" else None,
                        exclude_port=proxy.port,
                    )
                    with sampler:
                        result = pgbench.many_clients(
                            target.port, script, mode, clients, args.seconds, database,
                            threads=threads,
                        )
                    entry = {
                        "tps": result.tps,
                        "latency_ms": result.latency_ms,
                        "connect_ms": result.connect_ms,
                        "processed": result.processed,
                        "server_connections": sampler.summary(),
                    }
                    if name == "pgtwist":
                        entry["pgtwist_pool"] = pool_counters(proxy)
                    if not result.ok:
                        entry["problem"] = {
                            "returncode": result.returncode,
                            "failed": result.failed,
                            "stderr": result.errors[-8:],
                        }
                    runs[script, mode, threads][name].append(entry)
                    conns = entry["server_connections"].get("primary", {})
                    line.append(
                        (f"{name} {result.tps:,.0f} tps" if result.tps is not None
                         else f"{name} FAILED (rc={result.returncode}, failed={result.failed})")
                        + f", {conns.get('peak', '?')} server conns peak"
                    )
                    if not result.ok:
                        say(f"    {name}: {' | '.join(result.errors[-3:])}")
                    pool = entry.get("pgtwist_pool")
                    if isinstance(pool, dict):
                        shown = [f"{k} {pool[k]}" for k in _POOL_SHOWN if k in pool]
                        say(f"    SHOW pgtwist_pool (cumulative): {', '.join(shown)}")
                    elif pool:
                        say(f"    {pool}")
                say(f"  round {rnd} {SCRIPT_NAMES[script]:<16} -M {mode:<8} -c {clients} "
                    f"-j {threads:<3}: "
                    + "; ".join(line))
        for (script, mode, threads), per_target in runs.items():
            row = _row(script, mode, per_target, links, out["problems"])
            out["rows"].append(dict(row, threads=threads))
        out["log_problems"] = log_problems(proxy)
        if out["log_problems"]:
            out["problems"].append(
                f"pgtwist log: {len(out['log_problems'])} suspicious line(s), first: "
                f"{out['log_problems'][0]}"
            )
    finally:
        proxy.save_log(logs / "txn-pgtwist.log")
        stop_quietly(proxy)
    return out


def _row(script: str, mode: str, per_target: dict, links: int, problems: list) -> dict:
    row: dict = {"script": script, "mode": mode, "runs": per_target}
    for name, entries in per_target.items():
        good = [e["tps"] for e in entries if e["tps"] is not None and "problem" not in e]
        row[f"{name}_tps"] = round(statistics.median(good), 1) if good else None
        lat = [e["latency_ms"] for e in entries if e["latency_ms"] is not None]
        row[f"{name}_latency_ms"] = round(statistics.median(lat), 3) if lat else None
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
    if row.get("pgtwist_tps") and row.get("direct_tps"):
        row["ratio"] = round(row["pgtwist_tps"] / row["direct_tps"], 3)
    peak = row.get("pgtwist_conns_peak")
    if peak is not None and peak > links:
        problems.append(
            f"pgtwist used {peak} server connections on the primary in {script} -M {mode}, "
            f"more than backend_max_connections {links}"
        )
    return row


def _wait_quiet(cluster, database: str, proxy_pid: int | None, proxy_port: int,
                timeout: float = 30) -> None:
    """Wait until the previous run's direct connections to ``database`` have gone."""
    deadline = time.monotonic() + timeout
    sql = _ACTIVITY.format(db=database)
    while time.monotonic() < deadline:
        theirs = socket_ports(proxy_pid) - {proxy_port} if proxy_pid else set()
        rows = [line.split("|") for line in cluster.psql(sql).splitlines() if line]
        if not [p for p, _ in rows if not p or int(p) not in theirs]:
            return
        time.sleep(0.2)


def format_table(section: dict) -> str:
    head = ["script", "mode", "-j", "direct tps", "pgtwist tps", "pgtwist/direct",
            "direct conns", "pgtwist conns peak/median", "direct lat ms", "pgtwist lat ms"]
    body = []

    def num(v, fmt="{:,.0f}"):
        return "FAILED" if v is None else fmt.format(v)

    for row in section["rows"]:
        body.append([
            SCRIPT_NAMES[row["script"]],
            row["mode"],
            str(row["threads"]),
            num(row.get("direct_tps")),
            num(row.get("pgtwist_tps")),
            f"{row['ratio']:.2f}" if row.get("ratio") else "-",
            "?" if row.get("direct_conns_peak") is None else str(row["direct_conns_peak"]),
            "?" if row.get("pgtwist_conns_peak") is None
            else f"{row['pgtwist_conns_peak']}/{row['pgtwist_conns_median']:g}",
            num(row.get("direct_latency_ms"), "{:.2f}"),
            num(row.get("pgtwist_latency_ms"), "{:.2f}"),
        ])
    widths = [max(len(r[i]) for r in [head, *body]) for i in range(len(head))]
    lines = [
        "  ".join(c.rjust(w) if i > 1 else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths,
                                                                                  strict=True)))
        for r in [head, *body]
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)
