"""``make fuzz``: the codec fuzz and the daemon fuzz in both pool modes, one summary.

    python -m tests.fuzz.run --inputs N --seed S --out DIR [--codec-share 0.9]

``--codec-share`` of the inputs go to the in-process codec fuzzer, the rest to the
daemon fuzzer, split evenly between session and transaction pooling.  Exits non-zero
on any crash, hang, disturbed session (or codec chunking mismatch).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import signal
import sys
import time

from . import codec, daemon


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--inputs", type=int, default=1_000_000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--out", default="fuzz-out")
    ap.add_argument("--codec-share", type=float, default=0.9)
    ap.add_argument("--workers", type=int, default=16)
    args = ap.parse_args(argv)
    # SIGTERM (timeout, kill) still stops twistd and the cluster in the finally blocks.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    t0 = time.monotonic()
    n_codec = round(args.inputs * args.codec_share)
    n_daemon = args.inputs - n_codec
    parts = []
    res = codec.run(n_codec, args.seed, args.out)
    parts.append({"part": "codec", "inputs": res.inputs, "crashes": res.crashes + res.mismatches,
                  "hangs": 0, "disturbed": 0, "deviations": 0,
                  "elapsed": round(res.elapsed, 1)})
    print(json.dumps({**parts[-1], "chunking_mismatches": res.mismatches}), flush=True)
    if n_daemon:
        cluster = daemon.start_cluster()
        try:
            for i, mode in enumerate(("session", "transaction")):
                n = n_daemon // 2 + (n_daemon % 2 if i == 0 else 0)
                summary = daemon.fuzz(cluster, mode, n, args.seed, args.out, args.workers)
                parts.append(summary)
                print(json.dumps(summary), flush=True)
        finally:
            with contextlib.suppress(Exception):
                cluster.stop()
    total = {k: sum(p[k] for p in parts)
             for k in ("inputs", "crashes", "hangs", "disturbed", "deviations")}
    elapsed = time.monotonic() - t0
    print()
    print(f"fuzz summary (seed {args.seed}, output {args.out}):")
    for p in parts:
        print(f"  {p['part']:<20} {p['inputs']:>9} inputs  {p['crashes']} crashes  "
              f"{p['hangs']} hangs  {p['disturbed']} disturbed  {p['deviations']} deviations  "
              f"{p['elapsed']:.0f} s")
    print(f"  {'total':<20} {total['inputs']:>9} inputs  {total['crashes']} crashes  "
          f"{total['hangs']} hangs  {total['disturbed']} disturbed  "
          f"{total['deviations']} deviations  {elapsed:.0f} s elapsed")
    failed = total["crashes"] or total["hangs"] or total["disturbed"]
    print("FAIL" if failed else "OK", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
