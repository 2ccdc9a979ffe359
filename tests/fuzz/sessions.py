"""Generated client sessions for the daemon fuzzer, and a raw-socket runner for them.

A session is plain data (JSON-able) so a failing one can be saved and replayed:

    {"user": ..., "password": ..., "auth": "right|wrong|garbled", "pre": [...],
     "startup": "valid|pipelined|v2|nouser|badlen|garbage|cancel", "steps": [...],
     "end": "terminate|abrupt"}

Each step is ``{"kind": ..., "data": hex, "copy": bool, "malformed": bool}``: the bytes
sent at once.  After each step the runner sends a terminator that ends any COPY or
failed batch (``CopyFail``, ``Sync``) and a probe Query carrying a unique token, and
reads until the probe is answered: every message before it has been answered then,
whatever the batch shapes were.  A read that waits longer than the deadline is a hang.
"""

from __future__ import annotations

import hashlib
import random
import socket
import struct
import time

from scramp import ScramClient

from . import streams as s

DB = "pooldb"
KNOWN_ROWS = "a,b,c"
USERS = {  # user -> (pool_hba method, password)
    "postgres": ("trust", None),
    "md5_user": ("md5", "md5 secret 2"),
    "scram_user": ("scram-sha-256", "scram secret 3"),
    "pw_user": ("password", "pw secret 1"),
}
HBA = "".join(f"host all {u} 127.0.0.1/32 {m}\n" for u, (m, _) in USERS.items()
              if u != "postgres") + "host all all 127.0.0.1/32 trust\n"

SETUP_SQL = [
    "create table if not exists fuzz_known(id int primary key, v text)",
    "truncate fuzz_known",
    "insert into fuzz_known values (1, 'a'), (2, 'b'), (3, 'c')",
    "create table if not exists fuzz_copy(a int, b text)",
    "grant select on fuzz_known to public",
    "grant select, insert, delete on fuzz_copy to public",
    "create schema if not exists fz_schema",
    "grant usage on schema fz_schema to public",
]

SQL = [
    "select 1", "select 1 from fuzz_known", "select v from fuzz_known order by id",
    "select 1/0", "selec broken", "select * from fz_missing", "", " ; ",
    "begin", "commit", "rollback", "savepoint fz_sp", "release fz_sp", "rollback to fz_sp",
    "begin read only", "start transaction isolation level serializable",
    "set search_path = fz_schema, public", "set statement_timeout = 12345",
    "set local search_path = fz_local", "set role md5_user", "reset role", "reset all",
    "select set_config('search_path', 'fz_cfg', false)", "discard all",
    "create temp table fz_tmp(a int)", "create temp table if not exists fz_tmp2(a int)",
    "prepare fz_p as select 1", "execute fz_p", "deallocate fz_p", "deallocate all",
    "declare fz_c cursor with hold for select 1", "declare fz_c2 cursor for select 1",
    "fetch 1 from fz_c2", "close fz_c", "close all",
    "copy fuzz_copy from stdin", "copy fuzz_copy to stdout",
    "copy (select * from fuzz_known) to stdout", "copy fz_missing from stdin",
    "copy fuzz_copy(a) from stdin with (format csv)",
    "insert into fuzz_copy values (1, 'x')", "delete from fuzz_copy where a = 1",
    "listen fz_chan", "notify fz_chan, 'x'", "unlisten *",
    "do $$begin perform set_config('search_path', 'fz_do', false); end$$",
    "select current_setting('search_path')", "select pg_sleep(0.001)",
    "select $1::int", "select $1::text, $2::int", "show search_path",
    "select pg_try_advisory_lock(7)", "select pg_advisory_unlock_all()",
    "select x from generate_series(1, 50) x", "values (1), (2)",
    # catalog lookups: temp tables (never cached), functions' volatility, unlogged tables
    "select * from fz_tmp", "insert into fz_tmp values (1)", "select count(*) from fz_tmp2",
    "select now(), random()", "select fz_missing_fn(1)", "select upper(v) from fuzz_known",
    "select * from pg_temp.fz_tmp", "with w as (select 1) select * from w, fuzz_known",
]
COPY_IN = ("from stdin",)
NAMES = ["", "fz1", "fz2"]


def _param_count(sql: str) -> int:
    return 2 if "$2" in sql else 1 if "$1" in sql else 0


def _sql(rng: random.Random) -> str:
    if rng.random() < 0.25:
        return "; ".join(rng.choice(SQL) for _ in range(rng.randint(2, 3)))
    return rng.choice(SQL)


def _copy_payload(rng: random.Random) -> bytes:
    out = b""
    for _ in range(rng.randrange(4)):
        out += s.copy_data(rng.choice([b"1\tx\n", b"2\t\\N\n", b"bad row\n", b"3\ty\n4\tz\n",
                                       b"5,csv\n", b""]))
    r = rng.random()
    if r < 0.15:
        out += rng.choice([s.SYNC, s.FLUSH]) + s.copy_data(b"6\tw\n")
    r = rng.random()
    if r < 0.5:
        out += s.COPY_DONE
    elif r < 0.8:
        out += s.copy_fail(rng.choice(["fz abort", ""]))
    elif r < 0.9:
        out += s.query("select 1")  # not a COPY message: the COPY fails
    else:
        out += s.bind()
    return out


def _extended(rng: random.Random) -> tuple[bytes, bool]:
    out, copy = b"", False
    for _ in range(rng.randint(1, 8)):
        r = rng.randrange(20)
        name = rng.choice(NAMES)
        if r < 5:
            sql = _sql(rng) if rng.random() < 0.3 else rng.choice(SQL)
            out += s.parse(sql, name, (23,) * rng.randrange(2))
            if any(c in sql for c in COPY_IN):
                copy = True
        elif r < 9:
            n = rng.choice([0, 0, 1, 1, 2])
            out += s.bind([rng.choice([b"1", b"x", None]) for _ in range(n)],
                          rng.choice(NAMES), name)
        elif r < 11:
            out += s.describe(rng.choice([b"S", b"P"]), name)
        elif r < 14:
            out += s.execute(rng.choice(NAMES), rng.choice([0, 0, 1, 2]))
            if copy:
                out += _copy_payload(rng)
        elif r < 15:
            out += s.close(rng.choice([b"S", b"P"]), name)
        elif r < 16:
            out += s.FLUSH
        elif r < 19:
            out += s.SYNC
        else:
            sql = _sql(rng)
            out += s.query(sql)
            if any(c in sql for c in COPY_IN):
                out += _copy_payload(rng)
                copy = True
    if rng.random() < 0.8:
        out += s.SYNC
    return out, copy


def _malformed(rng: random.Random) -> tuple[bytes, bool]:
    """A framing-complete bad item (so an answer is due), or a body that never completes
    (then the client disconnects: ``True``)."""
    r = rng.randrange(9)
    if r == 0:
        return b"Q" + struct.pack("!I", rng.choice([0, 1, 3])), False
    if r == 1:
        return bytes((rng.choice(b"zYq\x00\xff"),)) + struct.pack("!I", 8) + b"abcd", False
    if r == 2:
        return b"D" + struct.pack("!I", 20000) + b"P", False  # above the small-message limit
    if r == 3:
        return s.msg(b"B", b"\x00\x00\x00\x05"), False  # truncated Bind layout
    if r == 4:
        return s.msg(b"E", b"no terminator"), False
    if r == 5:
        return b"P" + struct.pack("!I", 100) + b"\x00select", True  # body never completes
    if r == 6:
        return s.msg(b"Q", b"select 1\x00select 2\x00"), False
    if r == 7:
        return s.msg(b"p", b"late password\x00"), False
    return s.msg(b"S", b"x"), False


def generate(rng: random.Random) -> dict:
    user = rng.choice(list(USERS))
    sess: dict = {"user": user, "auth": "right", "pre": [], "startup": "valid", "steps": [],
                  "end": "terminate"}
    r = rng.random()
    if r < 0.06:
        sess["auth"] = "wrong"
    elif r < 0.1:
        sess["auth"] = "garbled"
    r = rng.random()
    if r < 0.15:
        sess["pre"] = rng.choice([["ssl"], ["gss"], ["ssl", "gss"], ["gss", "ssl"],
                                  ["ssl", "ssl"], ["gss", "gss"]])
    r = rng.random()
    if r < 0.04:
        sess["startup"] = rng.choice(["v2", "nouser", "badlen", "garbage", "cancel"])
    elif r < 0.12 and USERS[user][0] == "trust":
        sess["startup"] = "pipelined"
    for _ in range(rng.randint(1, 3)):
        r = rng.random()
        step = {"copy": False, "malformed": False}
        if r < 0.35:
            sql = _sql(rng)
            data = s.query(sql)
            if any(c in sql for c in COPY_IN):
                data += _copy_payload(rng)
                step["copy"] = True
            step["kind"] = "simple"
        elif r < 0.9:
            data, step["copy"] = _extended(rng)
            step["kind"] = "extended"
        elif r < 0.95:
            bad, cut = _malformed(rng)
            data = (_extended(rng)[0] if rng.random() < 0.5 else b"") + bad
            step["kind"], step["malformed"] = "malformed", True
            if cut:  # the client goes away in the middle of a message
                step["data"] = data.hex()
                sess["steps"].append(step)
                sess["end"] = "abrupt-after"
                break
        else:
            data = s.function_call(rng.choice([1, 2147483647]), [b"1"])
            step["kind"] = "function"
        step["data"] = data.hex()
        sess["steps"].append(step)
    if rng.random() < 0.1:
        sess["end"] = "abrupt"
    return sess


# -- running a session ---------------------------------------------------------------

class Hang(Exception):
    pass


class Closed(Exception):
    pass


class Conn:
    def __init__(self, port: int, deadline: float):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=deadline)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.deadline = deadline
        self.buf = b""
        self.log: list[str] = []

    def send(self, data: bytes) -> None:
        try:
            self.sock.sendall(data)
        except OSError:
            pass  # the peer closed: reading tells

    def _fill(self, n: int, waiting_for: str) -> None:
        end = time.monotonic() + self.deadline
        while len(self.buf) < n:
            left = end - time.monotonic()
            if left <= 0:
                raise Hang(waiting_for)
            self.sock.settimeout(left)
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                raise Hang(waiting_for) from None
            except OSError:
                data = b""
            if not data:
                raise Closed()
            self.buf += data

    def read_byte(self, waiting_for: str) -> bytes:
        self._fill(1, waiting_for)
        b, self.buf = self.buf[:1], self.buf[1:]
        return b

    def read_msg(self, waiting_for: str) -> tuple[str, bytes]:
        self._fill(5, waiting_for)
        code, length = struct.unpack_from("!cI", self.buf)
        self._fill(1 + length, waiting_for)
        body = self.buf[5:1 + length]
        self.buf = self.buf[1 + length:]
        c = code.decode("latin-1")
        if c == "E":
            f = s_fields(body)
            self.log.append("E" + f.get("C", "?"))
            if "internal error" in f.get("M", "") or f.get("C") == "XX000":
                raise InternalError(f.get("M", ""))
        elif c not in "SNKA":
            self.log.append(c)
        return c, body

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass


class InternalError(Exception):
    pass


def s_fields(body: bytes) -> dict[str, str]:
    out = {}
    for part in body.rstrip(b"\0").split(b"\0"):
        if part:
            out[chr(part[0])] = part[1:].decode("utf-8", "replace")
    return out


def _startup_bytes(sess: dict) -> bytes:
    params = {"user": sess["user"], "database": DB, "application_name": "fz"}
    kind = sess["startup"]
    if kind == "v2":
        return s.startup_packet(params, 2 << 16)
    if kind == "nouser":
        return s.startup_packet({"database": DB})
    if kind == "badlen":
        return struct.pack("!I", 3) + b"\x00\x03\x00\x00"
    if kind == "garbage":
        return struct.pack("!I", 20) + bytes(range(16))
    if kind == "cancel":
        return s.cancel_request(12345, 67890)
    return s.startup_packet(params)


def run(port: int, sess: dict, deadline: float = 10.0, token: str = "0") -> dict:
    """Run one session; returns {"outcome": ok|closed|hang|internal, "log": [...], ...}."""
    conn = Conn(port, deadline)
    what = "connect"
    try:
        for pre in sess["pre"]:
            conn.send(s.SSL_REQUEST if pre == "ssl" else s.GSSENC_REQUEST)
            what = f"answer to {pre} request"
            b = conn.read_byte(what)
            conn.log.append("pre:" + b.decode("latin-1"))
            if b in (b"S", b"G"):  # a server with TLS or GSS on (the oracle): not comparable
                return {"outcome": "tls", "log": conn.log}
            if b == b"E":
                conn.buf = b"E" + conn.buf
                conn.read_msg(what)
                raise Closed()
        data = _startup_bytes(sess)
        if sess["startup"] == "pipelined":
            data += s.query("select 'fz-pipelined'")
        conn.send(data)
        what = "answer to startup"
        user = sess["user"]
        password = USERS[user][1]
        scram = None
        while True:
            code, body = conn.read_msg(what)
            if code == "E":
                raise Closed()
            if code == "Z":
                break
            if code != "R":
                continue
            (auth,) = struct.unpack_from("!I", body)
            what = f"answer to authentication message (request {auth})"
            if auth in (0, 12):
                continue
            secret = password if sess["auth"] == "right" else "wrong password"
            if sess["auth"] == "garbled":
                conn.send(rng_garble(user))
                continue
            if auth == 3:
                conn.send(s.password(secret.encode()))
            elif auth == 5:
                inner = hashlib.md5((secret + user).encode()).hexdigest()
                outer = hashlib.md5(inner.encode() + body[4:8]).hexdigest()
                conn.send(s.password(("md5" + outer).encode()))
            elif auth == 10:
                scram = ScramClient(["SCRAM-SHA-256"], user, secret)
                first = scram.get_client_first().encode()
                conn.send(s.msg(b"p", b"SCRAM-SHA-256\0" + struct.pack("!i", len(first)) + first))
            elif auth == 11:
                scram.set_server_first(body[4:].decode())
                conn.send(s.msg(b"p", scram.get_client_final().encode()))
            else:
                conn.send(s.TERMINATE)
                raise Closed()
        if sess["startup"] == "pipelined":
            what = "answer to a Query pipelined with the StartupMessage"
            while conn.read_msg(what)[0] != "Z":
                pass
        conn.log.append("|")
        for i, step in enumerate(sess["steps"]):
            data = bytes.fromhex(step["data"])
            last = i == len(sess["steps"]) - 1
            if last and sess["end"] == "abrupt":
                conn.send(data[: len(data) // 2])
                return {"outcome": "ok", "log": conn.log}
            if last and sess["end"] == "abrupt-after":
                conn.send(data)
                return {"outcome": "ok", "log": conn.log}
            probe = f"fzprobe-{token}-{i}"
            conn.send(data + s.copy_fail("fz end") + s.SYNC + s.query(f"select '{probe}'"))
            what = f"answer to step {i} ({step['kind']}) and its probe"
            _await_probe(conn, probe, what)
            conn.log.append("|")
        conn.send(s.TERMINATE)
        return {"outcome": "ok", "log": conn.log}
    except Hang as exc:
        return {"outcome": "hang", "log": conn.log, "waiting_for": str(exc)}
    except Closed:
        return {"outcome": "closed", "log": conn.log, "waiting_for": what}
    except InternalError as exc:
        return {"outcome": "internal", "log": conn.log, "message": str(exc)}
    finally:
        conn.close()


def rng_garble(user: str) -> bytes:
    h = hashlib.sha1(user.encode()).digest()
    return [s.msg(b"p", h), s.msg(b"p", b""), s.msg(b"p", b"SCRAM-SHA-256\0\xff\xff\xff\x00"),
            s.msg(b"Q", b"select 1\0")][h[0] % 4]


def _await_probe(conn: Conn, probe: str, what: str) -> None:
    """Read until the probe's row and its ReadyForQuery (rolling back an aborted
    transaction once, so the probe can run)."""
    target = probe.encode()
    seen = False
    rolled_back = False
    while True:
        code, body = conn.read_msg(what)
        if code == "D" and target in body:
            seen = True
        elif code == "Z":
            if seen:
                return
            if body == b"E" and not rolled_back:
                rolled_back = True
                target = (probe + "-after-rollback").encode()
                conn.send(s.query("rollback") + s.query(f"select '{target.decode()}'"))
