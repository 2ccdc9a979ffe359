"""Daemon fuzzer: generated client sessions over real sockets against a real twistd.

    python -m tests.fuzz.daemon --inputs N --seed S --pool-mode session|transaction
                                [--out DIR] [--workers W] [--oracle-rate R]

Starts the dev cluster (primary + replica, ``pgtwist.dev.devcluster``) and one pgtwist
daemon (load balancing on: replica weight 1) in the pool mode, with pool_hba asking
md5 / scram-sha-256 / password of the test roles and trusting ``postgres``.  Each input
is one generated session (``tests.fuzz.sessions``); W of them run at once.  Checked:

* crash: twistd exits, its log gains a Traceback / "Unhandled" / internal error line, or
  a client gets pgtwist's internal-error ErrorResponse;
* hang: a startup, Query, Sync or COPY end gets no answer within the deadline;
* disturbed: a sentinel session on the same daemon runs a check query between inputs
  and must always get exactly the expected row (user, search_path, statement_timeout,
  its token, the known table; no fuzz temp table, prepared statement or cursor);
* deviation (reported, not a failure): for a sampled share of inputs the same session
  goes straight to the primary and the reply codes differ.

Failing inputs go to DIR as JSON with a ``python -m tests.fuzz.replay FILE`` command.
The last line printed is a JSON summary.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import signal
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from pgtwist.dev import devcluster as dc

from . import sessions

BAD_LOG_MARKERS = ("Traceback", "Unhandled", "internal error")


def start_cluster(log=print):
    cluster = dc.make_cluster()
    cluster.start()
    prepare_cluster(cluster)
    return cluster


def prepare_cluster(cluster) -> None:
    import psycopg

    with psycopg.connect(cluster.dsn(), autocommit=True) as conn:
        if not conn.execute("select 1 from pg_database where datname = %s",
                            (sessions.DB,)).fetchone():
            conn.execute(f"create database {sessions.DB}")
    with psycopg.connect(cluster.dsn(dbname=sessions.DB), autocommit=True) as conn:
        for sql in sessions.SETUP_SQL:
            conn.execute(sql)
    cluster.wait_replayed(30)


def daemon_config(cluster, pool_mode: str, workdir: str) -> dict:
    hba = Path(workdir) / "pool_hba.conf"
    Path(workdir).mkdir(parents=True, exist_ok=True)
    hba.write_text(sessions.HBA)
    hba.chmod(0o600)
    extra = {"pool_mode": pool_mode, "enable_pool_hba": True, "pool_hba_file": str(hba)}
    if pool_mode == "transaction":
        extra.update({"backend_max_connections": 8, "max_pool": 8})
    return extra


class Daemon:
    """A twistd running pgtwist, watched for exits and bad log lines."""

    def __init__(self, cluster, pool_mode: str, workdir: str | None = None):
        import subprocess

        self.workdir = workdir or tempfile.mkdtemp(prefix=f"fuzz-{pool_mode}-")
        extra = daemon_config(cluster, pool_mode, self.workdir)
        self.port = dc.free_port()
        config = dc.pgtwist_config(cluster, self.port, extra, replica_weight=1)
        path = dc.write_pgtwist_files(self.workdir, config, dc.TEST_USERS)
        self.log_path = Path(self.workdir) / "pgtwist.log"
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(dc.twistd_argv(path), cwd=self.workdir,
                                     stdin=subprocess.DEVNULL, stdout=self._log,
                                     stderr=subprocess.STDOUT, env=dc.pgtwist_env())
        if not dc.wait_listening(self.port, self.proc, timeout=30):
            raise RuntimeError(f"pgtwist did not start:\n{self.log_path.read_text()}")
        self._seen = 0

    def new_problems(self) -> list[str]:
        """Bad log excerpts since the last call, and an exit."""
        out = []
        if self.proc.poll() is not None:
            out.append(f"twistd exited with {self.proc.returncode}")
        with open(self.log_path, "rb") as f:
            f.seek(self._seen)
            text = f.read()
        # only whole lines
        cut = text.rfind(b"\n") + 1
        self._seen += cut
        lines = text[:cut].decode("utf-8", "replace").splitlines()
        for i, line in enumerate(lines):
            if any(m in line for m in BAD_LOG_MARKERS):
                out.append("\n".join(lines[max(0, i - 2):i + 30]))
        return out

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except Exception:
                self.proc.kill()
        self._log.close()


class Sentinel(threading.Thread):
    """One session kept open that checks, again and again, that nothing leaked into it."""

    CHECK = ("select current_user, current_setting('search_path'), "
             "current_setting('statement_timeout'), '{token}', "
             "(select string_agg(v, ',' order by id) from fuzz_known), "
             "(select count(*) from pg_prepared_statements where name like 'fz%'), "
             "(select count(*) from pg_class where relnamespace = pg_my_temp_schema()), "
             "(select count(*) from pg_cursors where name like 'fz%')")

    def __init__(self, port: int, deadline: float, interval: float = 0.05):
        super().__init__(daemon=True)
        self.port = port
        self.deadline = deadline
        self.interval = interval
        self.checks = 0
        self.problems: list[dict] = []
        self.stopping = threading.Event()

    def expected(self, token: str) -> list[str]:
        return ["postgres", '"$user", public', "0", token, sessions.KNOWN_ROWS, "0", "0", "0"]

    def run(self) -> None:
        conn = None
        try:
            conn = sessions.Conn(self.port, self.deadline)
            conn.send(sessions.s.startup_packet({"user": "postgres", "database": sessions.DB,
                                                 "application_name": "fz-sentinel"}))
            while conn.read_msg("sentinel login")[0] != "Z":
                pass
            n = 0
            while not self.stopping.wait(self.interval):
                n += 1
                token = f"sentinel-{n}"
                conn.send(sessions.s.query(self.CHECK.format(token=token)))
                msgs = []
                while True:
                    code, body = conn.read_msg("sentinel check")
                    msgs.append((code, body))
                    if code == "Z":
                        break
                rows = [_row(b) for c, b in msgs if c == "D"]
                errors = [sessions.s_fields(b) for c, b in msgs if c == "E"]
                self.checks += 1
                if errors or rows != [self.expected(token)] or msgs[-1][1] != b"I":
                    self.problems.append({"check": n, "rows": rows, "errors": errors,
                                          "codes": "".join(c for c, _ in msgs)})
                    if len(self.problems) > 20:
                        return
        except Exception as exc:  # a hang or a close of the sentinel is a disturbance
            if not self.stopping.is_set():
                self.problems.append({"check": self.checks, "error": repr(exc)})
        finally:
            if conn is not None:
                conn.close()


def _row(body: bytes) -> list[str | None]:
    import struct

    (n,) = struct.unpack_from("!h", body)
    pos, out = 2, []
    for _ in range(n):
        (size,) = struct.unpack_from("!i", body, pos)
        pos += 4
        if size < 0:
            out.append(None)
        else:
            out.append(body[pos:pos + size].decode())
            pos += size
    return out


def input_session(seed: int, index: int) -> dict:
    return sessions.generate(random.Random(seed * 1_000_003 + index))


def signature(log: list[str]) -> str:
    return " ".join(log)


def save(out_dir: str, name: str, record: dict) -> str:
    os.makedirs(out_dir, exist_ok=True)
    path = os.path.join(out_dir, name + ".json")
    record["replay"] = f"python -m tests.fuzz.replay {path}"
    with open(path, "w") as f:
        json.dump(record, f, indent=1)
    return path


def fuzz(cluster, pool_mode: str, inputs: int, seed: int, out_dir: str, workers: int = 8,
         deadline: float = 10.0, oracle_rate: float = 0.05, log=print) -> dict:
    daemon = Daemon(cluster, pool_mode)
    sentinel = Sentinel(daemon.port, deadline)
    sentinel.start()
    counts = {"inputs": 0, "crashes": 0, "hangs": 0, "disturbed": 0, "deviations": 0,
              "closed": 0, "oracle_compared": 0}
    deviation_kinds: dict[str, int] = {}
    saved: list[str] = []
    lock = threading.Lock()
    t0 = time.monotonic()

    def record(kind: str, index: int, extra: dict) -> None:
        if len(saved) < 200:
            saved.append(save(out_dir, f"daemon-{pool_mode}-{kind}-{seed}-{index}", {
                "kind": "daemon", "pool_mode": pool_mode, "seed": seed, "index": index,
                "failure": kind, "session": input_session(seed, index), **extra}))

    def one(index: int) -> None:
        sess = input_session(seed, index)
        result = sessions.run(daemon.port, sess, deadline, token=f"{seed}-{index}")
        outcome = result["outcome"]
        with lock:
            counts["inputs"] += 1
            if outcome == "hang":
                counts["hangs"] += 1
                record("hang", index, {"result": result})
            elif outcome == "internal":
                counts["crashes"] += 1
                record("internal", index, {"result": result})
            elif outcome == "closed":
                counts["closed"] += 1
        if oracle_rate and random.Random(index).random() < oracle_rate and outcome != "hang":
            direct = sessions.run(cluster.primary_port, sess, deadline, token=f"{seed}-{index}")
            if direct["outcome"] == "tls":
                return
            a, b = _comparable(result), _comparable(direct)
            with lock:
                counts["oracle_compared"] += 1
                if a != b:
                    counts["deviations"] += 1
                    kind = _deviation_kind(sess, result, direct)
                    deviation_kinds[kind] = deviation_kinds.get(kind, 0) + 1
                    if deviation_kinds[kind] <= 3:
                        record("deviation", index, {"pgtwist": result, "postgresql": direct})

    try:
        with ThreadPoolExecutor(workers) as pool:
            batch = 200
            for start in range(0, inputs, batch):
                list(pool.map(one, range(start, min(inputs, start + batch))))
                problems = daemon.new_problems()
                if problems:
                    counts["crashes"] += len(problems)
                    record("crash-log", start, {"log_excerpts": problems[:5]})
                    log(f"daemon[{pool_mode}]: daemon log problem near input {start}:\n"
                        + problems[0][:3000])
                    if daemon.proc.poll() is not None:
                        break
                if sentinel.problems and not sentinel.is_alive():
                    break
                done = start + batch
                if done % 5000 == 0:
                    rate = counts["inputs"] / (time.monotonic() - t0)
                    log(f"daemon[{pool_mode}]: {counts['inputs']} inputs {rate:.0f}/s {counts}")
    finally:
        time.sleep(sentinel.interval * 3)
        sentinel.stopping.set()
        sentinel.join(deadline + 2)
        problems = daemon.new_problems()
        daemon.stop()
        problems += [p for p in daemon.new_problems() if "exited" not in p]
        if problems:
            counts["crashes"] += len(problems)
            record("crash-log", inputs, {"log_excerpts": problems[:5]})
    if sentinel.problems:
        counts["disturbed"] = len(sentinel.problems)
        saved.append(save(out_dir, f"daemon-{pool_mode}-disturbed-{seed}", {
            "kind": "sentinel", "pool_mode": pool_mode, "seed": seed,
            "problems": sentinel.problems[:20]}))
    elapsed = time.monotonic() - t0
    return {"part": f"daemon-{pool_mode}", **counts, "sentinel_checks": sentinel.checks,
            "elapsed": round(elapsed, 1),
            "per_second": round(counts["inputs"] / max(elapsed, 1e-9)),
            "deviation_kinds": deviation_kinds, "saved": len(saved),
            "daemon_workdir": daemon.workdir}


def _comparable(result: dict) -> tuple:
    return result["outcome"], tuple(result["log"])


def _deviation_kind(sess: dict, a: dict, b: dict) -> str:
    kinds = "+".join(sorted({st["kind"] for st in sess["steps"]}))
    return (f"startup={sess['startup']} pre={','.join(sess['pre'])} auth={sess['auth']} "
            f"steps={kinds}: pgtwist {a['outcome']} / postgresql {b['outcome']}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--inputs", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--pool-mode", choices=["session", "transaction"], action="append")
    ap.add_argument("--out", default="fuzz-out")
    ap.add_argument("--workers", type=int, default=8)
    ap.add_argument("--deadline", type=float, default=10.0)
    ap.add_argument("--oracle-rate", type=float, default=0.05)
    args = ap.parse_args(argv)
    # SIGTERM (timeout, kill) still stops twistd and the cluster in the finally blocks.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    modes = args.pool_mode or ["session", "transaction"]
    cluster = start_cluster()
    failed = False
    try:
        per_mode = [args.inputs // len(modes)] * len(modes)
        per_mode[0] += args.inputs - sum(per_mode)
        for mode, n in zip(modes, per_mode, strict=True):
            summary = fuzz(cluster, mode, n, args.seed, args.out, args.workers,
                           args.deadline, args.oracle_rate)
            print(json.dumps(summary), flush=True)
            failed |= bool(summary["crashes"] or summary["hangs"] or summary["disturbed"])
    finally:
        with contextlib.suppress(Exception):
            cluster.stop()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
