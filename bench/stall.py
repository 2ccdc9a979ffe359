"""``python -m bench.stall``: how long one client's huge statement stalls other sessions.

Security review 2026-12, finding 3.  Starts a throwaway primary + replica and pgtwist
(the working tree, or ``--rev REV``), then for each statement shape: client B sends
``select 1`` round trips back to back while client A sends one ~1 MB Query and reads its
whole answer.  Prints B's worst round trip while A's statement was in flight (the stall
every other session sees), B's median, and A's own time; the same through direct
PostgreSQL is the floor (A's statement only costs its own backend there).
"""

from __future__ import annotations

import argparse
import socket
import statistics
import struct
import threading
import time

from pgtwist.dev import devcluster as dc

from .targets import Pgtwist

_STARTUP = b"user\0postgres\0database\0postgres\0application_name\0bench-stall\0\0"
STARTUP_PACKET = struct.pack("!ii", 8 + len(_STARTUP), 196608) + _STARTUP
TABLE = "bench_stall_rows"


def shapes() -> dict[str, str]:
    """The review's shapes (about 0.9 MB each) and a 1 MB multi-row INSERT."""
    return {
        "'select 1;' x 100000": "select 1;" * 100_000,
        "select + 450000 nested parens": "select " + "(" * 450_000 + "1" + ")" * 450_000,
        "150k-item select list": "select " + ",".join(f"c{i}" for i in range(150_000))[:900_000],
        "100k IN-list": "select count(*) from generate_series(1, 10) g where g in ("
                        + ",".join(str(100_000 + i) for i in range(100_000)) + ")",
        "20k statements": "".join(f"select {i}, 'a padding literal' where 0 > {i};"
                                  for i in range(20_000)),
        "1 MB multi-row INSERT": f"insert into {TABLE} (a, b) values "
                                 + ",".join(f"({i}, 'row {i}')" for i in range(50_000)),
    }


class Client:
    """A blocking v3 client on a raw socket (trust authentication)."""

    def __init__(self, port: int):
        self.sock = socket.create_connection((dc.HOST, port), timeout=300)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""
        self.sock.sendall(STARTUP_PACKET)
        self.until_ready()

    def until_ready(self) -> int:
        """Read to the next ReadyForQuery; the number of messages read."""
        n = 0
        while True:
            while len(self.buf) < 5:
                self._recv()
            code = self.buf[:1]
            length = struct.unpack_from("!i", self.buf, 1)[0]
            while len(self.buf) < 1 + length:
                self._recv()
            self.buf = self.buf[1 + length:]
            n += 1
            if code == b"Z":
                return n

    def _recv(self) -> None:
        data = self.sock.recv(1 << 20)
        if not data:
            raise EOFError("server closed the connection")
        self.buf += data

    def query(self, sql: str) -> int:
        body = sql.encode() + b"\0"
        self.sock.sendall(b"Q" + struct.pack("!i", len(body) + 4) + body)
        return self.until_ready()

    def close(self) -> None:
        self.sock.close()


def measure(port: int, sql: str) -> dict:
    """B's round trips while A's ``sql`` is in flight."""
    a, b = Client(port), Client(port)
    try:
        for _ in range(20):
            b.query("select 1")  # warm: B's link is open
        done = threading.Event()
        a_time: list[float] = []

        def run_a():
            t0 = time.perf_counter()
            a.query(sql)
            a_time.append(time.perf_counter() - t0)
            done.set()

        samples: list[float] = []
        thread = threading.Thread(target=run_a)
        thread.start()
        while not done.is_set():
            t0 = time.perf_counter()
            b.query("select 1")
            samples.append(time.perf_counter() - t0)
        thread.join()
        return {"worst_ms": 1000 * max(samples), "median_ms": 1000 * statistics.median(samples),
                "samples": len(samples), "a_ms": 1000 * a_time[0]}
    finally:
        a.close()
        b.close()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.stall", description=__doc__.split("\n\n")[0])
    ap.add_argument("--rev", help="run pgtwist from this git revision (e.g. the base commit)")
    ap.add_argument("--pool-mode", default="session", choices=("session", "transaction"))
    ap.add_argument("--rounds", type=int, default=1, help="runs per shape; the worst is shown")
    ap.add_argument("--no-direct", action="store_true", help="skip the direct PostgreSQL rows")
    args = ap.parse_args(argv)
    cluster = dc.DevCluster(replicas=1, log=lambda m: print(m, flush=True))
    target = None
    try:
        cluster.start()
        cluster.psql(f"CREATE TABLE {TABLE} (a int, b text)")
        target = Pgtwist(cluster, {"pool_mode": args.pool_mode}, rev=args.rev).start()
        rev = args.rev or "working tree"
        print(f"pgtwist ({rev}, pool_mode {args.pool_mode}) on port {target.port}; "
              f"direct primary on {cluster.primary_port}", flush=True)
        ports = [("pgtwist", target.port)]
        if not args.no_direct:
            ports.append(("direct", cluster.primary_port))
        print(f"{'shape':32} {'bytes':>8} {'via':8} {'B worst ms':>11} {'B median ms':>12} "
              f"{'B trips':>8} {'A ms':>9}", flush=True)
        for name, sql in shapes().items():
            for via, port in ports:
                runs = [measure(port, sql) for _ in range(args.rounds)]
                r = max(runs, key=lambda x: x["worst_ms"])
                print(f"{name:32} {len(sql):8d} {via:8} {r['worst_ms']:11.1f} "
                      f"{r['median_ms']:12.2f} {r['samples']:8d} {r['a_ms']:9.0f}", flush=True)
        problems = [line for line in target.log_text().splitlines() if "Traceback" in line]
        if problems:
            print("pgtwist logged tracebacks:\n" + target.log_text()[-4000:])
            return 1
        return 0
    finally:
        if target is not None:
            target.stop()
        cluster.stop()


if __name__ == "__main__":
    raise SystemExit(main())
