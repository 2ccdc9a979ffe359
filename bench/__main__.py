"""``python -m bench``: pgbench through pgtwist, against direct PostgreSQL and a bare relay.

Starts a throwaway primary + replica (pgtwist.dev.devcluster), pgtwist (replica
weight 0, and as ``pgtwist-lb`` with load balancing over both nodes), the
minimal Twisted relay (bench/relay.py) and, when installed, PgBouncer and
Pgpool-II; runs ``pgbench -S`` against each, interleaved, and prints tps,
ratios and CPU µs per transaction (bench/cpu.py); then ``pgbench -C``; then
200 clients on 10 links through pgtwist's transaction pool next to 200 direct
connections (bench/txn.py); then measures pgtwist's resident memory per idle
client.  ``--base-rev REV`` adds pgtwist from git revision REV (``base``,
``base-lb``) to the same run.  ``--only`` picks sections.  The tables also go
to bench/results/latest.json.  See bench/README.md.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

from pgtwist.dev import devcluster as dc

from . import memory, pgbench, txmode, txn
from . import report as tables
from .cpu import CpuMeter
from .cpu import median as median_of
from .targets import (
    ALL_TARGETS,
    BASE_OF,
    DEFAULT_TARGETS,
    PGTWISTS,
    REPO_ROOT,
    Pgtwist,
    Relay,
    Target,
    TargetError,
    log_problems,
    make_target,
    missing_binary,
    stop_quietly,
)

RESULTS = Path(__file__).resolve().parent / "results" / "latest.json"
LOGS = RESULTS.parent / "logs"
MODES = ("simple", "prepared")
CLIENTS = (1, 8, 32)
#: the parts of a run, in the order they run; --only picks some
SECTIONS = ("sweep", "connect", "txn", "txmode", "memory")


class BenchCluster(dc.DevCluster):
    """A DevCluster with extra server settings (DevCluster takes none of its own).

    The idle-connection test needs more than DevCluster's 300 max_connections;
    every node gets the same value, as a hot standby requires.
    """

    def __init__(self, settings: dict, **kw):
        super().__init__(**kw)
        self.extra_settings = settings

    def _write_settings(self, name, data, port) -> None:
        super()._write_settings(name, data, port)
        with open(Path(data) / "pgtwist_dev.conf", "a") as f:
            for key, value in self.extra_settings.items():
                f.write(f"{key} = {dc._conf_value(value)}\n")

    def postmaster_pids(self) -> list[int]:
        """The running nodes' postmasters (every backend is a child of one)."""
        pids = []
        for _name, data in self._nodes:
            with contextlib.suppress(OSError, ValueError, IndexError):
                pids.append(int((Path(data) / "postmaster.pid").read_text().split()[0]))
        return pids


def say(msg: str) -> None:
    print(msg, flush=True)


def parse_args(argv):
    ap = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=int, default=5, help="pgbench -T per run (default 5)")
    ap.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="repeat the whole interleaved sweep; the median is reported (default 1)",
    )
    ap.add_argument(
        "--quick",
        action="store_true",
        help="1 s runs at 8 clients only, 200 idle clients for the memory test",
    )
    ap.add_argument(
        "--targets",
        default=",".join(DEFAULT_TARGETS),
        help=f"comma-separated subset of {','.join(ALL_TARGETS)} (default: "
        f"{','.join(DEFAULT_TARGETS)}; pgbouncer/pgpool are skipped when not installed)",
    )
    ap.add_argument(
        "--clients", default=None, help="comma-separated client counts (default 1,8,32)"
    )
    ap.add_argument("--modes", default=",".join(MODES), help="pgbench -M modes (default both)")
    ap.add_argument(
        "--memory-clients",
        type=int,
        default=None,
        help="idle clients for the memory test (default 1000; 0 skips it)",
    )
    ap.add_argument(
        "--only",
        default=",".join(SECTIONS),
        metavar="SECTIONS",
        help="comma-separated subset of " + ",".join(SECTIONS) + " (default: all): sweep = "
        "the pgbench -S table, connect = pgbench -C, txn = many clients on few links in "
        "transaction mode vs direct, txmode = pgbench -S at 8 and 32 clients, transaction "
        "mode with default settings next to session mode (load balancing on), memory = "
        "idle clients",
    )
    ap.add_argument(
        "--txn-clients",
        type=int,
        default=200,
        help="pgbench -c for the txn section (default 200)",
    )
    ap.add_argument(
        "--txn-links",
        type=int,
        default=10,
        help="pgtwist backend_max_connections and max_pool for the txn section (default 10)",
    )
    ap.add_argument(
        "--txn-seconds",
        type=int,
        default=None,
        help="pgbench -T for the txn section (default: --seconds, but at least 3: pgbench "
        "counts connecting 200 clients in -T)",
    )
    ap.add_argument(
        "--txn-scripts",
        default=None,
        help="pgbench scripts for the txn section: select (-S), tpcb (the default "
        "TPC-B-like script); default select,tpcb (--quick: select)",
    )
    ap.add_argument(
        "--pgtwist-rev",
        default=None,
        metavar="REV",
        help="run pgtwist as committed in git revision REV (e.g. HEAD) instead of the working tree",
    )
    ap.add_argument(
        "--base-rev",
        default=None,
        metavar="REV",
        help="also run pgtwist as committed in git revision REV, as targets base (next to "
        "pgtwist) and base-lb (next to pgtwist-lb), in the sweep, pgbench -C and the txn "
        "section, and print pgtwist/base ratios (e.g. --base-rev main~5)",
    )
    ap.add_argument("--json", default=str(RESULTS), help=f"result file (default {RESULTS})")
    args = ap.parse_args(argv)
    if args.quick:
        args.seconds = 1
    if args.txn_seconds is None:
        args.txn_seconds = max(args.seconds, 3)
    args.clients = [int(c) for c in (args.clients or ("8" if args.quick else "1,8,32")).split(",")]
    args.modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    args.targets = [t.strip() for t in args.targets.split(",") if t.strip()]
    unknown = [t for t in args.targets if t not in ALL_TARGETS]
    if unknown:
        ap.error(f"unknown target(s) {unknown}; choose from {list(ALL_TARGETS)}")
    bases = set(BASE_OF.values())
    if not args.base_rev and bases & set(args.targets):
        ap.error(f"targets {sorted(bases & set(args.targets))} need --base-rev REV")
    if args.base_rev:  # each pgtwist target gets its twin from REV
        args.targets += [BASE_OF[t] for t in list(args.targets)
                         if t in BASE_OF and BASE_OF[t] not in args.targets]
    if args.memory_clients is None:
        args.memory_clients = 200 if args.quick else 1000
    args.only = [x.strip() for x in args.only.split(",") if x.strip()]
    unknown = [x for x in args.only if x not in SECTIONS]
    if unknown:
        ap.error(f"unknown section(s) {unknown}; choose from {list(SECTIONS)}")
    if "memory" not in args.only:
        args.memory_clients = 0
    args.txn_scripts = [
        x.strip() for x in (args.txn_scripts or ("select" if args.quick else "select,tpcb"))
        .split(",") if x.strip()
    ]
    unknown = [x for x in args.txn_scripts if x not in pgbench.SCRIPTS]
    if unknown:
        ap.error(f"unknown txn script(s) {unknown}; choose from {list(pgbench.SCRIPTS)}")
    return args


def choose_targets(wanted: list[str]) -> tuple[list[str], dict[str, str]]:
    chosen, skipped = [], {}
    for name in ALL_TARGETS:
        if name not in wanted:
            continue
        binary = missing_binary(name)
        if binary:
            skipped[name] = (
                f"`{binary}` not installed (apt-get install {'pgpool2' if name == 'pgpool' else name})"
            )
        else:
            chosen.append(name)
    return chosen, skipped


def versions(cluster, args) -> dict:
    out = {
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "machine": platform.machine(),
    }
    try:
        import twisted

        out["twisted"] = twisted.__version__
    except Exception:  # pragma: no cover
        pass
    out["postgresql"] = cluster.psql("SHOW server_version")
    git = subprocess.run(
        ["git", "-C", str(REPO_ROOT), "describe", "--always", "--dirty"],
        capture_output=True,
        text=True,
    )
    out["pgtwist_git"] = git.stdout.strip() or "?"
    if args.pgtwist_rev:
        rev = subprocess.run(
            ["git", "-C", str(REPO_ROOT), "rev-parse", "--short", args.pgtwist_rev],
            capture_output=True,
            text=True,
        )
        out["pgtwist_git"] = f"{args.pgtwist_rev} = {rev.stdout.strip()} (git archive)"
    if args.base_rev:
        rev = subprocess.run(
            ["git", "-C", str(REPO_ROOT), "rev-parse", "--short", args.base_rev],
            capture_output=True,
            text=True,
        )
        out["base_git"] = f"{args.base_rev} = {rev.stdout.strip()} (git archive)"
    for name, argv in (
        ("pgbouncer", ["pgbouncer", "--version"]),
        ("pgpool", ["pgpool", "--version"]),
        ("pgbench", ["pgbench", "--version"]),
    ):
        if shutil.which(argv[0]):
            proc = subprocess.run(argv, capture_output=True, text=True)
            out[name] = (proc.stdout or proc.stderr).strip().splitlines()[0]
    return out


# -- throughput ------------------------------------------------------------------------


def throughput(args, running: dict[str, Target], meter: CpuMeter) -> list[dict]:
    names = list(running)
    for name, target in running.items():  # warm up (and prove each target answers)
        run = pgbench.select_only(target.port, "prepared", 8, 1)
        if not run.ok:
            say(
                f"  warm-up of {name} failed: rc={run.returncode} failed={run.failed} "
                f"{' | '.join(run.errors[-3:])}"
            )
    cells = {(mode, c): {n: [] for n in names} for mode in args.modes for c in args.clients}
    for rnd in range(1, args.rounds + 1):
        for mode in args.modes:
            for clients in args.clients:
                line = []
                for name in names:
                    with meter.measure(running[name].pid) as reading:
                        run = pgbench.select_only(running[name].port, mode, clients, args.seconds)
                    cpu = reading.per_txn(run.processed)
                    cells[mode, clients][name].append((run, cpu))
                    line.append(
                        f"{name} {run.tps:,.0f}" if run.tps is not None else f"{name} FAILED"
                    )
                    if cpu["proxy_us"] is not None:
                        line[-1] += f" ({cpu['proxy_us']:.0f} µs)"
                    if not run.ok:
                        line[-1] += f" (rc={run.returncode}, failed={run.failed})"
                say(f"  round {rnd} -M {mode:<8} -c {clients:<3} " + ", ".join(line))
    pairs = tables.ratio_pairs(names)
    rows = []
    for (mode, clients), per_target in cells.items():
        row = {"mode": mode, "clients": clients, "tps": {}, "us_per_txn": {},
               "server_us_per_txn": {}, "pgbench_us_per_txn": {}, "runs": {}, "cpu_runs": {},
               "problems": {}}
        for name, runs in per_target.items():
            good = [r.tps for r, _ in runs if r.tps is not None]
            row["tps"][name] = round(statistics.median(good), 1) if good else None
            row["runs"][name] = [r.tps for r, _ in runs]
            row["cpu_runs"][name] = [dict(cpu, processed=r.processed) for r, cpu in runs]
            for key, field in (("us_per_txn", "proxy_us"), ("server_us_per_txn", "server_us"),
                               ("pgbench_us_per_txn", "pgbench_us")):
                row[key][name] = median_of(cpu[field] for r, cpu in runs if r.ok)
            bad = [
                {
                    "returncode": r.returncode,
                    "failed": r.failed,
                    "processed": r.processed,
                    "stderr": r.errors[-5:],
                }
                for r, _ in runs
                if not r.ok
            ]
            if bad:
                row["problems"][name] = bad
        row["ratios"] = tables.ratios(row["tps"], pairs)
        row["cpu_ratios"] = tables.ratios(row["us_per_txn"], tables.base_pairs(names), "cpu ")
        rows.append(row)
    return rows


POOLED_DB = "pgtwist_bench"  # pgbench's database "postgres" is never cached (Pgpool-II rule)


def pooled_db(cluster) -> None:
    """Create and ``pgbench -i`` the database pgtwist's pool caches links to."""
    if cluster.psql(f"SELECT count(*) FROM pg_database WHERE datname = '{POOLED_DB}'") == "0":
        cluster.psql(f"CREATE DATABASE {POOLED_DB}")
    pgbench.initialise(cluster.primary_port, database=POOLED_DB)
    cluster.wait_replayed(timeout=60)  # pgtwist-lb reads from the replica


def connect_each(args, cluster, running: dict[str, Target], meter: CpuMeter) -> dict:
    """pgbench -C directly and through each pgtwist target, on a database pgtwist's pool caches."""
    pooled_db(cluster)
    clients = 8
    names = [n for n in running if n == "direct" or n in PGTWISTS]
    tps: dict[str, float | None] = {}
    cpu: dict[str, dict] = {}
    for name in names:
        with meter.measure(running[name].pid) as reading:
            run = pgbench.connect_each(running[name].port, clients, args.seconds, POOLED_DB)
        tps[name] = run.tps
        cpu[name] = dict(reading.per_txn(run.processed), processed=run.processed)
        say(f"  pgbench -C -c {clients}  {name} {tables.num(run.tps, missing='FAILED')} tps"
            + (f", {cpu[name]['proxy_us']:.0f} µs/txn" if cpu[name]["proxy_us"] else "")
            + (f"  errors: {run.errors[:2]}" if not run.ok else ""))
    ratio = tps.get("pgtwist") / tps["direct"] if tps.get("pgtwist") and tps["direct"] else None
    pairs = [(n, "direct") for n in names if n != "direct"] + tables.base_pairs(names)
    us = {n: c["proxy_us"] for n, c in cpu.items()}
    return {"clients": clients, "tps": tps, "ratio": ratio,
            "ratios": tables.ratios(tps, pairs),
            "us_per_txn": us,
            "server_us_per_txn": {n: c["server_us"] for n, c in cpu.items()},
            "cpu_ratios": tables.ratios(us, tables.base_pairs(names), "cpu "),
            "cpu": cpu}


def format_connect(each: dict) -> str:
    head = ["target", "tps", "/direct", "proxy µs/txn", "pg µs/txn"]
    body = [
        [name, tables.num(tps, missing="FAILED"),
         "1.00" if name == "direct" else tables.num(each["ratios"].get(f"{name}/direct"),
                                                    "{:.2f}"),
         tables.num(each["us_per_txn"].get(name)),
         tables.num(each["server_us_per_txn"].get(name))]
        for name, tps in each["tps"].items()
    ]
    return tables.table(head, body, left=1)


def format_table(rows: list[dict], names: list[str]) -> str:
    """Per cell and target: tps, ratio to direct, CPU µs per transaction."""
    head = ["mode", "clients", "target", "tps", "/direct", "proxy µs/txn", "pg µs/txn",
            "pgbench µs/txn"]
    body = []
    for row in rows:
        direct = row["tps"].get("direct")
        for i, name in enumerate(names):
            tps = row["tps"].get(name)
            body.append([
                row["mode"] if i == 0 else "",
                str(row["clients"]) if i == 0 else "",
                name,
                tables.num(tps, missing="FAILED"),
                f"{tps / direct:.2f}" if tps and direct else "-",
                tables.num(row["us_per_txn"].get(name)),
                tables.num(row["server_us_per_txn"].get(name)),
                tables.num(row["pgbench_us_per_txn"].get(name)),
            ])
    return tables.table(head, body, left=3)


def format_ratios(rows: list[dict], names: list[str]) -> str:
    """Per cell: the tps ratios of :func:`report.ratio_pairs`, then CPU ratios to the base."""
    keys = [f"{a}/{b}" for a, b in tables.ratio_pairs(names) if b != "direct"]
    keys += [f"cpu {a}/{b}" for a, b in tables.base_pairs(names)]
    head = ["mode", "clients", *keys]
    body = [
        [row["mode"], str(row["clients"]),
         *(tables.num({**row["ratios"], **row["cpu_ratios"]}.get(k), "{:.2f}") for k in keys)]
        for row in rows
    ]
    return tables.table(head, body)


# -- memory ----------------------------------------------------------------------------


def memory_tests(args, cluster) -> dict:
    max_conn = int(cluster.psql("SHOW max_connections"))
    reserved = int(cluster.psql("SHOW superuser_reserved_connections"))
    clients = min(args.memory_clients, max_conn - reserved - 20)
    out: dict = {
        "requested_clients": args.memory_clients,
        "clients": clients,
        "server_max_connections": max_conn,
        "results": [],
    }
    if clients < args.memory_clients:
        out["note"] = (
            f"the primary allows only {max_conn} connections and pgtwist opens one "
            f"server connection per client in this version; measured with {clients}"
        )
        say(f"  NOTE: {out['note']}")
    plans = [
        ("pgtwist", True, "full session: client connection + its backend link to the primary"),
        ("pgtwist", False, "accepted TCP connection before any StartupMessage (client side only)"),
        ("relay", True, "bare Twisted relay: client socket + server socket, no PostgreSQL logic"),
    ]
    for name, startup, what in plans:
        if name not in args.targets:
            continue
        target = (
            Pgtwist(cluster, {"num_init_children": clients + 100}, rev=args.pgtwist_rev)
            if name == "pgtwist"
            else Relay(cluster)
        )
        try:
            target.start()
            m = memory.measure(
                name,
                target.pid,
                target.port,
                clients,
                startup=startup,
                fds_per_client=2 if startup else 1,
            )
        except Exception as e:
            say(f"  memory test {name} ({'startup' if startup else 'tcp only'}) failed: {e}")
            out["results"].append({"target": name, "startup": startup, "error": str(e)})
            out["failed"] = True
            continue
        finally:
            problems = log_problems(target)
            target.save_log(LOGS / f"memory-{name}-{'startup' if startup else 'tcp'}.log")
            stop_quietly(target)
            _wait_backends_gone(cluster)
        res = dict(m.as_dict(), what=what, log_problems=problems)
        out["results"].append(res)
        say(
            f"  {name:<8} {'startup+idle' if startup else 'tcp only':<13} {clients} clients: "
            f"RSS {m.rss_before_kb / 1024:.1f} -> {m.rss_after_kb / 1024:.1f} MiB "
            f"(+{m.growth_kb / 1024:.1f} MiB, {m.kb_per_client:.1f} KiB/client; "
            f"{m.rss_after_close_kb / 1024:.1f} MiB after closing); fds {m.fds_before} -> "
            f"{m.fds_after}; opened in {m.seconds_to_open:.1f}s"
        )
    by = {(r["target"], r["startup"]): r for r in out["results"] if "error" not in r}
    full, tcp = by.get(("pgtwist", True)), by.get(("pgtwist", False))
    if full and tcp:
        out["pgtwist_backend_side_kb_per_client"] = round(
            full["kb_per_client"] - tcp["kb_per_client"], 2
        )
        say(
            f"  pgtwist per idle client: {full['kb_per_client']:.1f} KiB total = "
            f"{tcp['kb_per_client']:.1f} KiB before startup + "
            f"{out['pgtwist_backend_side_kb_per_client']:.1f} KiB for the session "
            "(startup state + backend link)"
        )
    return out


def _wait_backends_gone(cluster, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        n = int(
            cluster.psql(
                "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend'"
            )
        )
        if n < 20:
            return
        time.sleep(0.2)


# -- main ------------------------------------------------------------------------------


def main(argv=None) -> int:
    args = parse_args(argv)
    shutil.rmtree(LOGS, ignore_errors=True)
    chosen, skipped = choose_targets(args.targets)
    for name, why in skipped.items():
        say(f"skipping {name}: {why}")
    need = max(args.memory_clients + 100, 300)
    if "txn" in args.only:  # direct: a server connection per client, plus the samplers
        # ... and the idle pooled links of every pgtwist of the section
        need = max(need, args.txn_clients + 100 + args.txn_links * len(PGTWISTS))
    cluster = BenchCluster({"max_connections": need}, replicas=1, log=say)
    running: dict[str, Target] = {}
    report: dict = {
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "seconds": args.seconds,
        "rounds": args.rounds,
        "skipped": skipped,
        "pgbench": "-S -n -j min(c,2)",
    }
    code = 0
    try:
        cluster.start()
        meter = CpuMeter(cluster.postmaster_pids())
        report["versions"] = versions(cluster, args)
        report["sections"] = args.only
        if "sweep" in args.only:
            say(f"pgbench -i -s 1 on the primary (port {cluster.primary_port})")
            pgbench.initialise(cluster.primary_port)
            cluster.wait_replayed(timeout=60)  # the -lb targets read from the replica
        elif "connect" in args.only:
            chosen = [n for n in chosen if n == "direct" or n in PGTWISTS]
        else:
            chosen = []
        for name in chosen:
            try:
                running[name] = make_target(name, cluster, args.pgtwist_rev, args.base_rev).start()
                say(f"{name} on port {running[name].port}")
            except TargetError as e:
                say(f"could not start {name}: {e}")
                report["skipped"][name] = f"failed to start: {str(e).splitlines()[0]}"
        names = list(running)
        rows = []
        if "sweep" in args.only:
            say(
                f"pgbench -S -n -T {args.seconds}, modes {args.modes}, clients {args.clients}, "
                f"{args.rounds} round(s), targets {names}"
            )
            rows = throughput(args, running, meter)
            report["targets"] = names
            report["rows"] = rows
        if "connect" in args.only and "direct" in running and set(running) & set(PGTWISTS):
            report["connect_each"] = connect_each(args, cluster, running, meter)
        report["log_problems"] = {n: log_problems(t) for n, t in running.items() if log_problems(t)}
        for name, target in running.items():
            target.save_log(LOGS / f"{name}.log")
            stop_quietly(target)
        _wait_backends_gone(cluster)
        if "txn" in args.only:
            say(
                f"transaction pooling: pgbench -c {args.txn_clients} -T {args.txn_seconds} on "
                f"{POOLED_DB}, directly and through pgtwist with {args.txn_links} links"
            )
            if "connect_each" not in report:
                say(f"pgbench -i -s 1 on {POOLED_DB}")
                pooled_db(cluster)
            report["txn"] = txn.run(args, cluster, POOLED_DB, say, LOGS, meter)
            _wait_backends_gone(cluster)
        if "txmode" in args.only:
            say(f"transaction vs session pooling, defaults, load balancing on: pgbench -S "
                f"-M prepared -c {','.join(map(str, txmode.CLIENTS))} on {POOLED_DB}")
            if "connect_each" not in report and "txn" not in args.only:
                say(f"pgbench -i -s 1 on {POOLED_DB}")
                pooled_db(cluster)
                cluster.wait_replayed(timeout=60)
            report["txmode"] = txmode.run(args, cluster, POOLED_DB, say, LOGS)
            _wait_backends_gone(cluster)
        if args.memory_clients > 0:
            say(f"memory: {args.memory_clients} idle clients")
            report["memory"] = memory_tests(args, cluster)
        if rows:
            say("")
            say(
                f"pgbench -S, median tps of {args.rounds} round(s) x {args.seconds} s "
                f"({os.cpu_count()} CPUs shared by pgbench, PostgreSQL and the proxy); "
                "µs/txn = CPU time per transaction of the proxy's process tree, of both "
                "PostgreSQL servers (pg) and of pgbench"
            )
            say(format_table(rows, names))
            if any(row["ratios"] or row["cpu_ratios"] for row in rows):
                say("")
                say("ratios of median tps (cpu = ratio of proxy CPU µs per transaction)")
                say(format_ratios(rows, names))
        each = report.get("connect_each")
        if each:
            say("")
            say(f"pgbench -C -S -c {each['clients']} (a new connection per transaction, "
                f"database {POOLED_DB}; tps including connection time; session pooling "
                "reuses links)")
            say(format_connect(each))
            for key, value in {**each["ratios"], **each["cpu_ratios"]}.items():
                if not key.endswith("/direct"):
                    say(f"  {key} {value:.2f}")
        section = report.get("txn")
        if section:
            say("")
            say(
                f"{section['clients']} clients on {section['links']} links: pgbench -c "
                f"{section['clients']} -j (listed) -n, median tps of {args.rounds} round(s) x "
                f"{args.txn_seconds} s on {POOLED_DB}; direct = {section['clients']} server "
                f"connections, pgtwist = pool_mode transaction, backend_max_connections "
                f"{section['links']}, max_pool {section['links']} (per node; -lb targets "
                "balance reads over primary and replica); conns = client backends from "
                "pg_stat_activity during the run; µs/txn = CPU per transaction once every "
                "client is connected (with the logins: in the JSON)"
            )
            if section["rows"]:
                say(txn.format_table(section))
                base = txn.format_base(section)
                if base:
                    say("ratios to the base revision (cpu = ratio of proxy CPU µs per transaction)")
                    say(base)
            for problem in section["problems"]:
                say(f"  problem: txn: {problem}")
                code = 1
        section = report.get("txmode")
        if section:
            say("")
            say(f"pgbench -S -M prepared -n, median tps of {args.rounds} round(s) x "
                f"{args.seconds} s on {POOLED_DB}; session-lb / txn-lb = pgtwist with default "
                "settings, pool_mode session / transaction, reads balanced 1:1 over primary "
                "and replica; target txn/session >= 0.8")
            say(txmode.format_table(section))
            for problem in section["problems"]:
                say(f"  problem: txmode: {problem}")
                code = 1
        for row in rows:
            for name, bad in row["problems"].items():
                say(f"  problem: {name} -M {row['mode']} -c {row['clients']}: {bad}")
                code = 1
        for name, lines in report["log_problems"].items():
            say(f"  {name} log: {len(lines)} suspicious line(s), first: {lines[0]}")
        mem = report.get("memory", {})
        for res in mem.get("results", []):
            if res.get("error") or res.get("log_problems"):
                code = 1
                say(f"  memory {res['target']}: {res.get('error') or res['log_problems'][0]}")
        for name, why in skipped.items():
            say(f"  skipped {name}: {why}")
    except KeyboardInterrupt:
        say("interrupted")
        code = 130
    except (dc.ClusterError, RuntimeError) as e:
        say(f"benchmark aborted: {e}")
        report["error"] = str(e)
        code = 1
    finally:
        for target in running.values():
            stop_quietly(target)
        cluster.stop()
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    say(f"results written to {out}")
    return code


if __name__ == "__main__":
    sys.exit(main())
