"""In-process mutation fuzzer for the frontend codec (framing, FrontendMachine, parsers).

    python -m tests.fuzz.codec --inputs N --seed S [--out DIR] [--atheris]

Each input is a mutated valid client stream (byte flips, splices, length-field edits,
dropped/duplicated/swapped messages, truncation) fed twice: whole, and in a random
chunking.  A *crash* is any exception other than ``ProtocolViolation``; a *mismatch* is
a chunking that changes the events.  Both are saved to ``DIR`` for
``python -m tests.fuzz.replay FILE``.  The last line printed is a JSON summary.

``--atheris`` runs the same checks under atheris' coverage-guided engine instead (only
when the optional ``fuzz`` extra is installed).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import struct
import sys
import time
import traceback

from pgtwist.wire.decode import (
    check_cstring,
    check_function_call,
    decode_bind,
    decode_execute,
    decode_parameter_status,
    decode_parse,
    decode_query,
    decode_sasl_initial_response,
    decode_startup,
    decode_target,
)
from pgtwist.wire.errors import ProtocolViolation
from pgtwist.wire.framing import FrameSplitter, StartupSplitter

from .streams import chunked, corpus, drive

_INTERESTING_LENGTHS = (0, 1, 3, 4, 5, 7, 8, 9, 12, 16, 10000, 10001, 10004, 10005, 65535,
                        65536, 65539, 65540, (1 << 16) + 1, (1 << 20), 0x7FFFFFFF, 0x80000000,
                        0xFFFFFFFF)
_TYPE_BYTES = b"QPBDECSHFXdcfpGWAZ\x00\xff" + bytes(range(0x20, 0x7f, 7))

_PARSERS = (
    decode_startup, decode_query, decode_parse, decode_bind,
    lambda b: decode_target(b, "Describe"), decode_execute, check_function_call,
    decode_sasl_initial_response, decode_parameter_status,
    lambda b: check_cstring(b, "CopyFail"),
)


def mutate(parts: list[tuple[bytes, int]], pool: list[list[tuple[bytes, int]]],
           rng: random.Random) -> bytes:
    """One mutant of a message list: 1-4 structural or byte-level edits."""
    parts = list(parts)
    byte_edits = 0
    for _ in range(rng.randint(1, 4)):
        op = rng.randrange(10)
        if op == 0 and parts:  # length-field edit
            i = rng.randrange(len(parts))
            data, off = parts[i]
            if len(data) >= off + 4:
                value = rng.choice(_INTERESTING_LENGTHS)
                if rng.random() < 0.3:
                    value = (struct.unpack_from("!I", data, off)[0] + rng.randint(-5, 5)) % (1 << 32)
                data = data[:off] + struct.pack("!I", value) + data[off + 4:]
                parts[i] = (data, off)
        elif op == 1 and parts:  # drop a message
            del parts[rng.randrange(len(parts))]
        elif op == 2 and parts:  # duplicate a message
            i = rng.randrange(len(parts))
            parts.insert(rng.randrange(len(parts) + 1), parts[i])
        elif op == 3 and len(parts) > 1:  # swap two
            i, j = rng.randrange(len(parts)), rng.randrange(len(parts))
            parts[i], parts[j] = parts[j], parts[i]
        elif op == 4:  # splice messages of another stream
            other = rng.choice(pool)
            if other:
                i = rng.randrange(len(other))
                parts[rng.randrange(len(parts) + 1):0] = other[i:i + rng.randint(1, 4)]
        elif op == 5 and parts:  # change a type byte
            i = rng.randrange(len(parts))
            data, off = parts[i]
            if off == 1:
                parts[i] = (bytes((rng.choice(_TYPE_BYTES),)) + data[1:], off)
        else:  # byte-level edits happen on the joined stream below
            byte_edits += 1
    data = bytearray(b"".join(p for p, _ in parts))
    for _ in range(byte_edits):
        if not data:
            break
        op = rng.randrange(5)
        i = rng.randrange(len(data))
        if op == 0:
            data[i] ^= 1 << rng.randrange(8)
        elif op == 1:
            data[i] = rng.randrange(256)
        elif op == 2:  # truncate
            del data[i:]
        elif op == 3:  # insert random bytes or a bare header
            junk = (bytes((rng.choice(_TYPE_BYTES),)) + struct.pack("!I", rng.choice(_INTERESTING_LENGTHS))
                    if rng.random() < 0.5 else os.urandom(rng.randint(1, 8)))
            data[i:i] = junk
        else:  # splice raw bytes of another stream
            other = b"".join(p for p, _ in rng.choice(pool))
            if other:
                a = rng.randrange(len(other))
                data[i:i] = other[a:a + rng.randint(1, 64)]
    return bytes(data)


class Result:
    def __init__(self) -> None:
        self.inputs = 0
        self.crashes = 0
        self.mismatches = 0
        self.saved: list[str] = []


def check_one(data: bytes, chunks: list[bytes]) -> str | None:
    """None if fine, else a description of the failure (a traceback or a mismatch)."""
    try:
        whole = drive([data])
        pieces = drive(chunks)
        for parser in _PARSERS[: 1 + len(data) % len(_PARSERS)]:
            try:
                parser(data[5:])
            except ProtocolViolation:
                pass
        _splitters(data)
    except Exception:
        return "crash\n" + traceback.format_exc()
    if whole != pieces:
        return f"mismatch\nwhole:  {whole!r}\nchunks: {pieces!r}"
    return None


def _splitters(data: bytes) -> None:
    """The bare splitters (no state machine around them) on the same bytes."""
    s = StartupSplitter()
    try:
        s.feed(data)
    except ProtocolViolation:
        pass
    f = FrameSplitter(1 << 16, {ord("Q"): 1 << 16, ord("S"): 4})
    try:
        f.feed(data)
    except ProtocolViolation:
        pass


def save(out_dir: str, data: bytes, chunks: list[bytes], what: str) -> str:
    os.makedirs(out_dir, exist_ok=True)
    name = "codec-" + hashlib.sha1(data).hexdigest()[:16] + ".json"
    path = os.path.join(out_dir, name)
    with open(path, "w") as f:
        json.dump({"kind": "codec", "data": data.hex(), "chunks": [len(c) for c in chunks],
                   "failure": what,
                   "replay": f"python -m tests.fuzz.replay {path}"}, f, indent=1)
    return path


def run(inputs: int, seed: int, out_dir: str, log=print) -> Result:
    rng = random.Random(seed)
    pool = corpus(seed, 300)
    res = Result()
    t0 = time.monotonic()
    for n in range(inputs):
        base = pool[rng.randrange(len(pool))]
        data = mutate(base, pool, rng) if rng.random() < 0.95 else b"".join(p for p, _ in base)
        chunks = chunked(data, rng)
        failure = check_one(data, chunks)
        res.inputs += 1
        if failure is not None:
            if failure.startswith("crash"):
                res.crashes += 1
            else:
                res.mismatches += 1
            if len(res.saved) < 50:
                res.saved.append(save(out_dir, data, chunks, failure))
                log(f"codec: {failure.splitlines()[0]} saved to {res.saved[-1]}")
        if n and n % 100000 == 0:
            rate = n / (time.monotonic() - t0)
            log(f"codec: {n} inputs, {rate:.0f}/s, {res.crashes} crashes, "
                f"{res.mismatches} mismatches")
        # the corpus grows with mutants that reach the ready state
        if n % 997 == 0 and len(pool) < 2000:
            pool.append([(data, 0)])
    res.elapsed = time.monotonic() - t0
    return res


def run_atheris(inputs: int, seed: int) -> None:  # pragma: no cover - optional engine
    import atheris

    def one(buf: bytes) -> None:
        fdp = atheris.FuzzedDataProvider(buf)
        cut = fdp.ConsumeIntInRange(1, 64)
        data = fdp.ConsumeBytes(fdp.remaining_bytes())
        chunks = [data[i:i + cut] for i in range(0, len(data), cut)] or [b""]
        failure = check_one(data, chunks)
        if failure is not None:
            raise AssertionError(failure)

    atheris.instrument_all()  # coverage of the already imported codec modules
    atheris.Setup([sys.argv[0], f"-seed={seed}", f"-runs={inputs}"], one)
    atheris.Fuzz()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--inputs", type=int, default=100000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--out", default="fuzz-out")
    ap.add_argument("--atheris", action="store_true", help="coverage-guided engine (optional)")
    args = ap.parse_args(argv)
    if args.atheris:
        run_atheris(args.inputs, args.seed)
        return 0
    res = run(args.inputs, args.seed, args.out)
    summary = {"part": "codec", "inputs": res.inputs, "crashes": res.crashes,
               "mismatches": res.mismatches, "elapsed": round(res.elapsed, 1),
               "per_second": round(res.inputs / max(res.elapsed, 1e-9)), "saved": res.saved}
    print(json.dumps(summary))
    return 1 if res.crashes or res.mismatches else 0


if __name__ == "__main__":
    sys.exit(main())
