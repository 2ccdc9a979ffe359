"""Transaction pooling with default settings next to session pooling (issue 11).

``pgbench -S -M prepared`` at 8 and 32 clients on a pooled database, straight to the
primary and through two pgtwists with load balancing on (replica weight 1) and nothing
else set: ``pool_mode: session`` and ``pool_mode: transaction``.  The figure that matters
is transaction / session (target >= 0.8): with ``max_pool`` as the only bound, the
transaction pool closed links above it on release and opened them again at the connect
pace (789 tps where session mode made 7,500).
"""

from __future__ import annotations

import statistics

from . import pgbench
from .report import table as text_table
from .targets import Direct, Pgtwist, TargetError, stop_quietly

CLIENTS = (8, 32)
TARGETS = ("direct", "session-lb", "txn-lb")


def _start(name: str, cluster):
    if name == "direct":
        return Direct(cluster).start()
    extra = {"pool_mode": "transaction"} if name == "txn-lb" else {}
    return Pgtwist(cluster, extra, rev=None, replica_weight=1, name=name).start()


def _select(port: int, clients: int, seconds: int, database: str) -> pgbench.Run:
    argv = ["-S", "-n", "-M", "prepared", "-T", str(seconds), "-c", str(clients),
            "-j", str(min(clients, 2))]
    proc = pgbench.pgbench(argv, port, timeout=seconds + 60, database=database)
    return pgbench.parse(proc.stdout, proc.stderr, proc.returncode)


def run(args, cluster, database: str, say, logs) -> dict:
    running = {}
    out = {"clients": list(CLIENTS), "seconds": args.seconds, "rounds": args.rounds,
           "rows": [], "problems": []}
    try:
        for name in TARGETS:
            try:
                running[name] = _start(name, cluster)
            except TargetError as e:
                out["problems"].append(f"{name} did not start: {str(e).splitlines()[0]}")
        for target in running.values():  # warm up: logins, statement caches
            _select(target.port, 8, 1, database)
        tps = {(c, n): [] for c in CLIENTS for n in running}
        for rnd in range(1, args.rounds + 1):
            for clients in CLIENTS:
                line = []
                for name, target in running.items():
                    result = _select(target.port, clients, args.seconds, database)
                    if not result.ok:
                        out["problems"].append(f"{name} -c {clients}: rc={result.returncode} "
                                               f"failed={result.failed} {result.errors[-1:]}")
                    tps[clients, name].append(result.tps or 0.0)
                    line.append(f"{name} {result.tps or 0:,.0f} "
                                f"({result.latency_ms or 0:.1f} ms)")
                say(f"  round {rnd} -c {clients:<3} " + ", ".join(line))
        for clients in CLIENTS:
            row = {"clients": clients,
                   "tps": {n: round(statistics.median(tps[clients, n]), 1) for n in running}}
            session, txn = row["tps"].get("session-lb"), row["tps"].get("txn-lb")
            if session and txn is not None:
                row["txn/session"] = round(txn / session, 2)
            out["rows"].append(row)
    finally:
        for name, target in running.items():
            target.save_log(logs / f"txmode-{name}.log")
            stop_quietly(target)
    return out


def format_table(section: dict) -> str:
    names = [n for n in TARGETS if any(n in row["tps"] for row in section["rows"])]
    rows = [[f"-c {row['clients']}", *(f"{row['tps'].get(n, 0):,.0f}" for n in names),
             f"{row.get('txn/session', 0):.2f}"] for row in section["rows"]]
    return text_table(["clients", *names, "txn/session"], rows)
