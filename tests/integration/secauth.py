"""Helpers for the authentication attack tests (test_security_auth.py).

A raw-socket login that answers cleartext, md5 and SCRAM requests itself (or, without a
password, gives up at the first request as libpq does), the server-side pg_hba.conf of
every dev cluster node edited and reloaded, and small SQL / SIGHUP helpers.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import signal
import socket
import struct
import time
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
from scramp import ScramClient

from .rawpg import RawClient, cstr, data_row, error_fields, msg, startup_packet

#: what a login's first query reports: the session's server pid, user and database
WHOAMI = "SELECT pg_backend_pid(), current_user, current_database()"

#: words a client-visible refusal must not contain: they reveal pgtwist's internals
INTERNALS = ("pool_passwd", "auth_query", "auth_user", "not permitted", "too many",
             "Traceback")



def lookup_function_sql(schema: str) -> str:
    """SQL creating ``schema.lookup(username)``: an auth_query target that, like the
    default query, returns no password for an expired role.  Owned by the superuser,
    executable only by the role named like the schema (the auth_user)."""
    return f"""
CREATE SCHEMA {schema} AUTHORIZATION postgres;
CREATE FUNCTION {schema}.lookup(username text, OUT rolname name, OUT rolpassword text)
    RETURNS SETOF record LANGUAGE sql STABLE SECURITY DEFINER
    SET search_path = pg_catalog AS $$
        SELECT a.rolname,
               CASE WHEN a.rolvaliduntil < now() THEN NULL ELSE a.rolpassword END
        FROM pg_catalog.pg_authid a WHERE a.rolname = username AND a.rolcanlogin
    $$;
REVOKE ALL ON FUNCTION {schema}.lookup(text) FROM PUBLIC;
GRANT USAGE ON SCHEMA {schema} TO {schema};
GRANT EXECUTE ON FUNCTION {schema}.lookup(text) TO {schema};
"""

@dataclass
class Outcome:
    """How one login attempt ended."""

    challenge: int | None = None  # first Authentication request code other than Ok, if any
    error: dict[str, str] | None = None  # the ErrorResponse fields, if refused
    pid: int | None = None  # server pid of the session, if admitted
    user: str | None = None
    database: str | None = None
    closed: bool = False  # the connection ended without an ErrorResponse
    client: RawClient | None = field(default=None, repr=False)

    @property
    def admitted(self) -> bool:
        return self.pid is not None


def _auth_code(body: bytes) -> int:
    return struct.unpack_from("!I", body)[0]


def login(port: int, user: str, password: str | None, database: str | None,
          keep: bool = False, timeout: float = 10.0) -> Outcome:
    """Log in over a raw socket and run WHOAMI; ``database=None`` leaves the key out.

    Without a password the attempt stops at the first credentials request (as libpq's
    "no password supplied").  ``keep`` leaves an admitted session open in
    ``Outcome.client`` (the caller closes it).
    """
    params = {"user": user} if database is None else {"user": user, "database": database}
    raw = RawClient(port, timeout=timeout)
    out = Outcome()
    scram = None
    try:
        raw.send(startup_packet(params))
        while True:
            code, body = raw.read_msg()
            if code == "E":
                out.error = error_fields(body)
                return out
            if code == "Z":
                break
            if code != "R":
                continue  # ParameterStatus, BackendKeyData, NoticeResponse
            auth = _auth_code(body)
            if auth in (0, 12):
                if auth == 12 and scram is not None:
                    scram.set_server_final(body[4:].decode())  # checks the server's signature
                continue
            if out.challenge is None:
                out.challenge = auth
            if password is None:
                return out
            if auth == 3:
                raw.send(msg(b"p", cstr(password)))
            elif auth == 5:
                inner = hashlib.md5((password + user).encode()).hexdigest()
                outer = hashlib.md5(inner.encode() + body[4:8]).hexdigest()
                raw.send(msg(b"p", cstr("md5" + outer)))
            elif auth == 10:
                scram = ScramClient(["SCRAM-SHA-256"], user, password)
                first = scram.get_client_first().encode()
                raw.send(msg(b"p", cstr("SCRAM-SHA-256") + struct.pack("!i", len(first))
                             + first))
            elif auth == 11:
                scram.set_server_first(body[4:].decode())
                raw.send(msg(b"p", scram.get_client_final().encode()))
            else:
                raise AssertionError(f"unexpected authentication request {auth}")
        msgs = raw.simple(WHOAMI)
        errors = [error_fields(b) for c, b in msgs if c == "E"]
        assert not errors, errors
        (row,) = [b for c, b in msgs if c == "D"]
        pid, out.user, out.database = data_row(row)
        out.pid = int(pid)
        if keep:
            out.client, raw = raw, None
        return out
    except (EOFError, ConnectionResetError):
        out.closed = True
        return out
    finally:
        if raw is not None:
            with contextlib.suppress(OSError):
                raw.send(msg(b"X"))
            raw.close()


def assert_refused(out: Outcome, sqlstates=("28P01",), victim_pid: int | None = None,
                   stopped_at_challenge_ok: bool = False, hidden: tuple[str, ...] = ()) -> None:
    """Not admitted; refused with a FATAL of one of ``sqlstates`` that reveals no internals
    (nor any of the ``hidden`` words, e.g. the auth user's name).

    ``stopped_at_challenge_ok``: the attempt had no password, so being asked for one (and
    giving up, as libpq does) also counts as refused.
    """
    assert not out.admitted, (
        f"admitted without proof: server pid {out.pid} as {out.user!r}"
        + (f" (the victim's pid is {victim_pid})" if victim_pid is not None else "")
    )
    if out.error is None:
        assert stopped_at_challenge_ok and out.challenge is not None and not out.closed, out
        return
    assert out.error.get("S") == "FATAL", out.error
    assert out.error.get("C") in sqlstates, out.error
    text = " ".join(out.error.get(k, "") for k in "MDH")
    leaks = [w for w in INTERNALS + tuple(hidden) if w.lower() in text.lower()]
    assert not leaks, f"the refusal reveals internals ({leaks}): {out.error}"


def first_reply(port: int, user: str, database: str) -> tuple:
    """The first message pgtwist sends for a bare StartupMessage: ('R', code), with the
    mechanism list for SASL (code 10), or ('E', sqlstate, message)."""
    with RawClient(port) as raw:
        raw.send(startup_packet({"user": user, "database": database}))
        code, body = raw.read_msg()
    if code == "R":
        auth = _auth_code(body)
        return ("R", auth, body[4:]) if auth == 10 else ("R", auth)
    fields = error_fields(body)
    return ("E", fields.get("C"), fields.get("M"))


def run_sql(cluster, sql: str, dbname: str = "postgres", port: int | None = None) -> list:
    """Run ``sql`` as postgres (autocommit, over TCP: the dev cluster trusts postgres);
    the last statement's rows."""
    dsn = cluster.dsn(port=port, dbname=dbname)
    with psycopg.connect(dsn, autocommit=True, connect_timeout=10) as conn:
        cur = conn.execute(sql)
        return cur.fetchall() if cur.description else []


def direct_login_works(cluster, user: str, password: str | None, port: int | None = None,
                       dbname: str = "postgres") -> bool:
    """Whether ``user`` can log in to a node directly (no pgtwist in between)."""
    port = cluster.primary_port if port is None else port
    dsn = cluster.dsn(port=port, user=user, dbname=dbname, password=password)
    try:
        with psycopg.connect(dsn + " passfile=/nonexistent/pgpass sslmode=disable", connect_timeout=10):
            return True
    except psycopg.OperationalError:
        return False


class ServerHba:
    """Every node's pg_hba.conf: lines put in front of the dev cluster's own, reloaded."""

    def __init__(self, cluster):
        self.cluster = cluster
        self.files = {p: Path(cluster.psql("SHOW hba_file", port=p)) for p in cluster.ports}
        self.original = {p: f.read_text() for p, f in self.files.items()}

    def put_first(self, lines: list[str]) -> None:
        for port, path in self.files.items():
            path.write_text("".join(line + "\n" for line in lines) + self.original[port])
            self.cluster.psql("SELECT pg_reload_conf()", port=port)

    def restore(self) -> None:
        for port, path in self.files.items():
            path.write_text(self.original[port])
            self.cluster.psql("SELECT pg_reload_conf()", port=port)


def wait_for(predicate, what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def wait_direct_login(cluster, user: str, password: str | None, works: bool) -> None:
    """Wait until every node has applied a pg_hba.conf reload (seen as ``user``'s login)."""
    for port in cluster.ports:
        wait_for(lambda p=port: direct_login_works(cluster, user, password, p) == works,
                 f"{user} login {'working' if works else 'refused'} on port {port}")


def hup_and_wait(pg, marker: str = "configuration reloaded") -> None:
    before = pg.log_text().count(marker)
    os.kill(pg.proc.pid, signal.SIGHUP)
    wait_for(lambda: pg.log_text().count(marker) > before, "pgtwist's SIGHUP reload")


def write_hba(path: Path, text: str) -> str:
    """A pool_hba.conf readable by its owner only."""
    path = Path(path)
    path.write_text(text)
    path.chmod(0o600)
    return str(path)


def wait_link_idle(cluster, pid: int, reset: bool = True, timeout: float = 10.0) -> None:
    """Wait until server session ``pid`` sits idle, its link back in pgtwist's pool.

    ``reset``: the client has left (session mode), so wait for the reset queries too, i.e.
    for a last query other than the client's own WHOAMI.
    """
    sql = f"SELECT state || '|' || query FROM pg_stat_activity WHERE pid = {int(pid)}"

    def idle() -> bool:
        state, _, query = cluster.psql(sql).partition("|")
        return state == "idle" and not (reset and query == WHOAMI)

    wait_for(idle, f"server pid {pid} idle" + (" after its reset" if reset else ""), timeout)
    time.sleep(0.2)  # pgtwist files the link after the ReadyForQuery the server just sent


def write_passwd(pg, entries: dict[str, str]) -> None:
    """Replace the daemon's pool_passwd (TEXT entries); it applies after SIGHUP."""
    path = Path(pg.workdir, "pool_passwd")
    path.write_text("".join(f"{u}:TEXT{p}\n" for u, p in entries.items()))
    path.chmod(0o600)


def open_startups(port: int, params: dict[str, str], count: int,
                  wait: float = 5.0) -> tuple[list[socket.socket], list[bytes]]:
    """``count`` sockets that each send only a StartupMessage and then nothing.

    Returns the sockets (the caller closes them) and the first bytes each received within
    ``wait`` seconds overall (b"" when nothing came: the daemon may queue them).
    """
    socks = []
    for _ in range(count):
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
        s.sendall(startup_packet(params))
        socks.append(s)
    firsts = []
    deadline = time.monotonic() + wait
    for s in socks:
        s.settimeout(max(0.05, deadline - time.monotonic()))
        try:
            firsts.append(s.recv(1))
        except (TimeoutError, ConnectionResetError):
            firsts.append(b"")
    return socks, firsts


def close_all(socks) -> None:
    for s in socks:
        with contextlib.suppress(OSError):
            s.close()
