"""Replay one saved fuzz failure: ``python -m tests.fuzz.replay FILE [--port P]``.

A codec input is fed to the codec again (whole and in its saved chunking) and the
events or the traceback are printed.  A daemon input (a generated session) is run
against ``--port`` when given (a pgtwist already running with the fuzzer's config), else
against a fresh dev cluster and daemon in the saved pool mode, and then straight
against the primary; both transcripts are printed.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import traceback

from . import sessions
from .streams import drive


def replay_codec(record: dict) -> int:
    data = bytes.fromhex(record["data"])
    chunks, pos = [], 0
    for n in record["chunks"]:
        chunks.append(data[pos:pos + n])
        pos += n
    try:
        whole, pieces = drive([data]), drive(chunks)
    except Exception:
        traceback.print_exc()
        return 1
    print("whole: ", whole)
    print("chunks:", pieces)
    return 0 if whole == pieces else 1


def replay_daemon(record: dict, port: int | None) -> int:
    from . import daemon

    sess = record["session"]
    print(json.dumps(sess, indent=1))
    if port is not None:
        result = sessions.run(port, sess, token="replay")
        print("pgtwist:", result)
        return 0 if result["outcome"] in ("ok", "closed") else 1
    cluster = daemon.start_cluster()
    try:
        d = daemon.Daemon(cluster, record["pool_mode"])
        try:
            result = sessions.run(d.port, sess, token="replay")
            problems = d.new_problems()
        finally:
            d.stop()
        direct = sessions.run(cluster.primary_port, sess, token="replay")
    finally:
        with contextlib.suppress(Exception):
            cluster.stop()
    print("pgtwist:   ", result["outcome"], result.get("waiting_for", ""), " ".join(result["log"]))
    print("postgresql:", direct["outcome"], direct.get("waiting_for", ""), " ".join(direct["log"]))
    for p in problems:
        print(p)
    return 0 if result["outcome"] in ("ok", "closed") and not problems else 1


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("file")
    ap.add_argument("--port", type=int)
    args = ap.parse_args(argv)
    with open(args.file) as f:
        record = json.load(f)
    if record["kind"] == "codec":
        return replay_codec(record)
    if record["kind"] == "daemon":
        return replay_daemon(record, args.port)
    print(json.dumps(record, indent=1))  # a sentinel report: nothing to resend
    return 1


if __name__ == "__main__":
    sys.exit(main())
