"""``python -m pgtwist.dev.demo``: a throwaway primary + replica with pgtwist in front of it.

Everything lives under /tmp and is removed again on Ctrl-C / SIGTERM, or when
twistd exits (the demo then exits with twistd's code).
"""

from __future__ import annotations

import argparse
import signal
import subprocess
import sys
from pathlib import Path

from pgtwist.dev import devcluster as dc


class _Stop(Exception):
    """SIGTERM arrived."""


def _on_sigterm(signum, frame):
    raise _Stop()


def _stop_process(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _banner(cluster: dc.DevCluster, port: int) -> str:
    lines = [
        "",
        f"pgtwist is listening: psql -h {dc.HOST} -p {port} -U postgres",
        f"  primary, direct:    psql -h {dc.HOST} -p {cluster.primary_port} -U postgres",
    ]
    for i, p in enumerate(cluster.replica_ports, 1):
        lines.append(f"  replica{i}, direct:   psql -h {dc.HOST} -p {p} -U postgres")
    roles = ", ".join(
        f"{u} / '{pw}' ({dc.TEST_USER_METHODS[u]})" for u, pw in dc.TEST_USERS.items()
    )
    lines += [f"  test roles: {roles}", f"  files: {cluster.base_dir}", "Press Ctrl-C to stop.", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m pgtwist.dev.demo", description=__doc__)
    ap.add_argument("--port", type=int, default=9999, help="pgtwist's port (default 9999)")
    ap.add_argument("--replicas", type=int, default=1, help="streaming replicas (default 1)")
    ap.add_argument("--keep", action="store_true", help="keep the cluster's files at exit")
    args = ap.parse_args(argv)

    signal.signal(signal.SIGTERM, _on_sigterm)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even if started with it ignored
    cluster = dc.DevCluster(replicas=args.replicas, log=print, keep=args.keep)
    proc = None
    code = 0
    try:
        if dc.wait_listening(args.port, timeout=0):
            print(f"port {args.port} is already in use; try --port", file=sys.stderr)
            return 2
        cluster.start()
        workdir = Path(cluster.base_dir, "pgtwist")
        config_path = dc.write_pgtwist_files(
            workdir, dc.pgtwist_config(cluster, args.port), passwd=dc.TEST_USERS
        )
        argv_ = dc.twistd_argv(config_path, logfile=None)
        print(f"[demo] {' '.join(argv_)}", flush=True)
        # own session: Ctrl-C reaches only us, and we stop twistd before the cluster
        proc = subprocess.Popen(
            argv_,
            cwd=workdir,
            env=dc.pgtwist_env(),
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        if not dc.wait_listening(args.port, proc, timeout=20):
            if proc.poll() is None:
                print(
                    f"[demo] pgtwist not listening on port {args.port} after 20 s", file=sys.stderr
                )
                _stop_process(proc)
                return 1
        else:
            print(_banner(cluster, args.port), flush=True)
        code = proc.wait()
        print(f"[demo] twistd exited with code {code}", file=sys.stderr)
        code = code if code >= 0 else 128 - code
    except (KeyboardInterrupt, _Stop):
        print("\n[demo] stopping", flush=True)
    except dc.ClusterError as e:
        print(f"[demo] {e}", file=sys.stderr)
        code = 1
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # finish the clean-up undisturbed
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        if proc is not None:
            _stop_process(proc)
        cluster.stop()
        if args.keep and cluster.base_dir:
            print(f"[demo] kept {cluster.base_dir}")
    return code


if __name__ == "__main__":
    sys.exit(main())
