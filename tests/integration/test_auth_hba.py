"""Client authentication by pgtwist itself: pool_hba.conf methods over plain TCP.

With ``enable_pool_hba: on`` the first pool_hba.conf record matching a connection picks
the method (trust, reject, password, md5, scram-sha-256); pgtwist checks the client's
password against pool_passwd before it logs in to any backend.  Every login behaviour is
checked with psycopg (libpq) and with asyncpg.  psycopg hides a refused login's SQLSTATE,
so with it the FATAL message text is compared; asyncpg gives both.

Also here: ``authentication_timeout``, ``twistd pgtwist --check`` on a bad pool_hba.conf,
and the two ``enable_pool_hba: off`` behaviours (the client is asked for what the primary
asks pgtwist for; ``allow_clear_text_frontend_auth``).

The helpers at the top (``psycopg_login``, ``asyncpg_login``, ``hba_daemon`` ...) are shared
with the other authentication and TLS test modules.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import shutil
import struct
import subprocess
import sys
import time
from pathlib import Path

import asyncpg
import psycopg
import pytest
from scramp import ScramClient

from pgtwist.auth.passwd import encode_entry
from pgtwist.dev import devcluster as dc

from .conftest import assert_log_clean, start_pgtwist
from .rawpg import RawClient, cstr, error_fields, msg, startup_packet

pytestmark = pytest.mark.integration

TIMEOUT = 10
DRIVERS = ("psycopg", "asyncpg")
GOOD = object()  # what the login helpers return on success

# Authentication request codes (AuthenticationXXX 'R' messages).
AUTH_CLEARTEXT, AUTH_MD5, AUTH_SASL = 3, 5, 10


# -- helpers shared with test_auth_passthrough, test_tls and test_secrets_hygiene -------------


def write_hba(path: Path, text: str) -> str:
    """A pool_hba.conf readable by its owner only."""
    path = Path(path)
    path.write_text(text)
    path.chmod(0o600)
    return str(path)


def write_passwd(path: Path, lines: list[str]) -> str:
    path = Path(path)
    path.write_text("".join(line + "\n" for line in lines))
    path.chmod(0o600)
    return str(path)


def _fatal(text: str) -> str:
    """The server's message out of libpq's 'connection to server ... failed: FATAL:  msg'."""
    found = re.search(r"FATAL:\s+(.*)", text)
    return found.group(1).strip() if found else text.strip()


def psycopg_login(pg, user: str, password: str | None = None, dbname: str = "postgres",
                  check_user: bool = True, **kw):
    """GOOD if the login works (and the session runs as ``user``), else the error text.

    Connection keywords default to plain TCP (``sslmode=disable``).
    """
    kw.setdefault("sslmode", "disable")
    try:
        conn = psycopg.connect(pg.dsn(user=user, dbname=dbname, password=password, **kw),
                               connect_timeout=TIMEOUT)
    except psycopg.OperationalError as exc:
        return str(exc)
    with conn:
        row = conn.execute("SELECT current_user, current_database()").fetchone()
    if check_user:
        assert row == (user, dbname)
    return GOOD


CLOSE_TIMEOUT = 5


def asyncpg_login(pg, user: str, password: str | None = None, database: str = "postgres",
                  check_user: bool = True, graceful_close: bool = True, **kw):
    """GOOD if the login works, else (sqlstate, message) of the server's error.

    Connection keywords default to plain TCP (``ssl=False``).  A client-side failure
    (no server error) comes back as ('client', text).  The session ends with asyncpg's
    ``close()`` (Terminate, then wait for the server to close), bounded by CLOSE_TIMEOUT;
    ``graceful_close=False`` uses ``terminate()`` (the client drops the socket itself).
    """
    kw.setdefault("ssl", False)

    async def attempt():
        try:
            conn = await asyncpg.connect(host=pg.host, port=pg.port, user=user,
                                         database=database, password=password,
                                         timeout=TIMEOUT, **kw)
        except asyncpg.PostgresError as exc:
            return exc.sqlstate, str(exc)
        except (OSError, asyncpg.InterfaceError, asyncio.TimeoutError) as exc:
            return "client", f"{type(exc).__name__}: {exc}"
        try:
            row = await conn.fetchrow("SELECT current_user, current_database()")
        finally:
            await close_asyncpg(conn, graceful_close)
        if check_user:
            assert tuple(row) == (user, database)
        return GOOD

    return asyncio.run(attempt())


async def close_asyncpg(conn, graceful: bool = True) -> None:
    """asyncpg's close(), failing clearly (not hanging) if the server never closes."""
    if not graceful:
        conn.terminate()
        return
    try:
        await asyncio.wait_for(conn.close(), CLOSE_TIMEOUT)
    except asyncio.TimeoutError:
        conn.terminate()
        pytest.fail(f"asyncpg close() did not finish in {CLOSE_TIMEOUT}s: pgtwist did not "
                    "close the connection after the client's Terminate")


def login(driver: str, pg, user: str, password: str | None = None,
          database: str = "postgres", **kw):
    """psycopg_login or asyncpg_login; refusals normalised to (sqlstate or None, message)."""
    if driver == "psycopg":
        out = psycopg_login(pg, user, password, database, **kw)
        return out if out is GOOD else (None, _fatal(out))
    return asyncpg_login(pg, user, password, database, **kw)


def assert_refused(driver: str, result, sqlstate: str, message: str) -> None:
    """A refusal with ``message`` (and, where the driver tells, ``sqlstate``)."""
    assert result is not GOOD, "login unexpectedly succeeded"
    got_state, got_message = result
    assert got_message == message, f"{driver}: {result!r}"
    if driver == "asyncpg":
        assert got_state == sqlstate, f"{driver}: {result!r}"


def password_failed(user: str) -> str:
    return f'password authentication failed for user "{user}"'


def auth_request(port: int, user: str, database: str = "postgres") -> int:
    """The first Authentication request code pgtwist sends for a raw startup as ``user``."""
    with RawClient(port) as raw:
        raw.send(startup_packet({"user": user, "database": database}))
        code, body = raw.read_msg()
        assert code == "R", (code, error_fields(body) if code == "E" else body)
        return struct.unpack_from("!I", body)[0]


def scram_login_sequence(port: int, user: str, password: str,
                         database: str = "postgres") -> list[str]:
    """Log in with SCRAM over a raw socket; the message types pgtwist sends after the
    client's final SCRAM message, 'R<code>' for Authentication messages, up to
    ReadyForQuery and AuthenticationSASLFinal (R12), whichever comes last."""
    with RawClient(port) as raw:
        raw.send(startup_packet({"user": user, "database": database}))
        code, body = raw.read_msg()
        assert (code, struct.unpack_from("!I", body)[0]) == ("R", AUTH_SASL), (code, body)
        client = ScramClient(["SCRAM-SHA-256"], user, password)
        first = client.get_client_first().encode()
        raw.send(msg(b"p", cstr("SCRAM-SHA-256") + struct.pack("!i", len(first)) + first))
        code, body = raw.read_msg()
        assert (code, struct.unpack_from("!I", body)[0]) == ("R", 11), (code, body)
        client.set_server_first(body[4:].decode())
        raw.send(msg(b"p", client.get_client_final().encode()))
        seq: list[str] = []
        while not ("Z" in seq and "R12" in seq):
            code, body = raw.read_msg()
            if code == "E":
                pytest.fail(f"login failed: {error_fields(body)}")
            seq.append(code + (str(struct.unpack_from("!I", body)[0]) if code == "R" else ""))
        return [c for c in seq if c != "S"]


def start_daemon(cluster, workdir: Path, extra: dict, passwd=dc.TEST_USERS, **kw):
    return start_pgtwist(cluster, workdir, extra=extra, passwd=passwd, **kw)


def stop_daemon(pg) -> None:
    pg.stop()
    assert_log_clean(pg)


def twistd_argv() -> list[str]:
    twistd = Path(sys.executable).parent / "twistd"
    if twistd.exists():
        return [str(twistd)]
    return [sys.executable, "-c", "from twisted.scripts.twistd import run; run()"]


def run_check(config_path: Path | str, cwd) -> subprocess.CompletedProcess:
    """``twistd pgtwist -c FILE --check``."""
    return subprocess.run(
        [*twistd_argv(), "pgtwist", "-c", str(config_path), "--check"], cwd=cwd,
        env=dc.pgtwist_env(), capture_output=True, text=True, timeout=30,
        stdin=subprocess.DEVNULL, check=False,
    )


# -- daemon A: one pool_hba.conf exercising every method and the matching rules ----------------

HBA_A = """\
# Line 2 never matches (wrong network): if it did, every connection would be rejected.
host    all                 all                     10.0.0.0/8      reject
# First match wins: scram_user on template1 hits the reject before the trust below.
host    template1           scram_user              127.0.0.1/32    reject
host    template1           scram_user,md5_user     127.0.0.1/32    trust
host    postgres,template1  pw_user,ghost_pw        127.0.0.1/32    password
host    postgres            md5_user,ghost_md5      127.0.0.1/32    md5
host    postgres            scram_user,ghost_scram  127.0.0.1/32    scram-sha-256
host    all                 postgres                127.0.0.1/32    trust
"""


@pytest.fixture(scope="module")
def hba_pg(cluster, tmp_path_factory):
    """pool_hba.conf = HBA_A, pool_passwd = TEXT entries of every test user."""
    workdir = tmp_path_factory.mktemp("hba_a")
    hba = write_hba(workdir / "pool_hba.conf", HBA_A)
    pg = start_daemon(cluster, workdir, {"enable_pool_hba": True, "pool_hba_file": hba})
    yield pg
    stop_daemon(pg)


@pytest.mark.parametrize("driver", DRIVERS)
def test_trust_needs_no_password(hba_pg, driver):
    # md5_user's backend login uses its pool_passwd entry; the client gives none.
    assert login(driver, hba_pg, "md5_user", None, "template1") is GOOD
    # `all` in the database field.
    assert login(driver, hba_pg, "postgres", None, "template1") is GOOD
    assert login(driver, hba_pg, "postgres", None, "postgres") is GOOD


@pytest.mark.parametrize("driver", DRIVERS)
def test_reject_line_wins_over_a_later_trust_line(hba_pg, driver):
    result = login(driver, hba_pg, "scram_user", dc.TEST_USERS["scram_user"], "template1")
    assert_refused(
        driver, result, "28000",
        'pool_hba.conf rejects connection for host "127.0.0.1", user "scram_user", '
        'database "template1", SSL off',
    )


@pytest.mark.parametrize("driver", DRIVERS)
@pytest.mark.parametrize("user,database", [
    ("pw_user", "postgres"), ("pw_user", "template1"),  # database list
    ("md5_user", "postgres"), ("scram_user", "postgres"),
])
def test_method_accepts_the_right_password_only(hba_pg, driver, user, database):
    assert login(driver, hba_pg, user, dc.TEST_USERS[user], database) is GOOD
    assert_refused(driver, login(driver, hba_pg, user, "wrong password", database),
                   "28P01", password_failed(user))


def test_methods_ask_for_their_own_exchange(hba_pg):
    """The hba line, not the backend, decides what the client is asked for."""
    assert auth_request(hba_pg.port, "pw_user") == AUTH_CLEARTEXT
    assert auth_request(hba_pg.port, "md5_user") == AUTH_MD5
    assert auth_request(hba_pg.port, "scram_user") == AUTH_SASL
    # md5_user's trust line (template1) asks for nothing: AuthenticationOk comes first.
    with RawClient(hba_pg.port) as raw:
        msgs = raw.startup({"user": "md5_user", "database": "template1"})
    assert msgs[0] == ("R", struct.pack("!I", 0))


@pytest.mark.parametrize("driver", DRIVERS)
@pytest.mark.parametrize("user,database", [
    ("pw_user", "nosuchdb"), ("nomatch_user", "postgres"), ("md5_user", "template0"),
])
def test_no_matching_line_is_refused(hba_pg, driver, user, database):
    result = login(driver, hba_pg, user, "whatever", database)
    assert_refused(
        driver, result, "28000",
        f'no pool_hba.conf entry for host "127.0.0.1", user "{user}", database "{database}", '
        "SSL off",
    )


@pytest.mark.parametrize("driver", DRIVERS)
@pytest.mark.parametrize("user,ghost", [
    ("pw_user", "ghost_pw"), ("md5_user", "ghost_md5"), ("scram_user", "ghost_scram"),
])
def test_wrong_password_and_unknown_user_look_the_same(hba_pg, driver, user, ghost):
    """An attacker cannot tell an existing user from an unknown one."""
    wrong = login(driver, hba_pg, user, "not it")
    unknown = login(driver, hba_pg, ghost, "not it")
    assert wrong is not GOOD and unknown is not GOOD
    assert wrong[0] == unknown[0]
    assert wrong[1].replace(f'"{user}"', '"U"') == unknown[1].replace(f'"{ghost}"', '"U"')
    assert_refused(driver, unknown, "28P01", password_failed(ghost))
    # and the exchange is the same kind
    assert auth_request(hba_pg.port, user) == auth_request(hba_pg.port, ghost)


# -- daemon B: md5-hash and AES pool_passwd entries, `all` users --------------------------------

HBA_B = """\
host    all     all           10.0.0.0/8      trust
host    all     scram_user    127.0.0.1/32    scram-sha-256
host    all     all           127.0.0.1/32    md5
"""
AES_KEY = "pgtwist test key"


def _md5_entry(user: str) -> str:
    return "md5" + hashlib.md5((dc.TEST_USERS[user] + user).encode()).hexdigest()


@pytest.fixture(scope="module")
def hashed_pg(cluster, tmp_path_factory):
    """md5_user and scram_user as md5 hashes, pw_user AES-encrypted."""
    workdir = tmp_path_factory.mktemp("hba_b")
    key_file = write_passwd(workdir / "pgpoolkey", [AES_KEY])
    passwd = write_passwd(workdir / "hashed_passwd", [
        f"md5_user:{_md5_entry('md5_user')}",
        f"scram_user:{_md5_entry('scram_user')}",
        f"pw_user:{encode_entry('pw_user', dc.TEST_USERS['pw_user'], 'aes', AES_KEY)}",
    ])
    pg = start_daemon(cluster, workdir, {
        "enable_pool_hba": True, "pool_hba_file": write_hba(workdir / "pool_hba.conf", HBA_B),
        "pool_passwd": passwd, "pool_key_file": key_file,
    }, passwd=None)
    yield pg
    stop_daemon(pg)


@pytest.mark.parametrize("driver", DRIVERS)
@pytest.mark.parametrize("user", ["md5_user", "pw_user"])
def test_md5_line_with_hash_and_aes_entries(hashed_pg, driver, user):
    # md5_user: md5-hash entry; pw_user: AES entry, both matched by the `all` user field.
    assert login(driver, hashed_pg, user, dc.TEST_USERS[user]) is GOOD
    assert_refused(driver, login(driver, hashed_pg, user, "nope"), "28P01",
                   password_failed(user))


@pytest.mark.parametrize("driver", DRIVERS)
def test_scram_line_with_only_an_md5_hash_fails_generically(hashed_pg, driver):
    """An md5 hash cannot drive SCRAM; the client learns nothing more than 'failed'."""
    result = login(driver, hashed_pg, "scram_user", dc.TEST_USERS["scram_user"])
    assert_refused(driver, result, "28P01", password_failed("scram_user"))


@pytest.mark.parametrize("driver", DRIVERS)
def test_address_outside_the_network_does_not_match(hashed_pg, driver):
    # The 10.0.0.0/8 trust line would let postgres in without a password; 127.0.0.1 falls
    # through to the md5 line, and postgres has no pool_passwd entry.
    assert_refused(driver, login(driver, hashed_pg, "postgres", "x"), "28P01",
                   password_failed("postgres"))


def test_aes_entries_match_pg_enc(tmp_path):
    pg_enc = shutil.which("pg_enc")
    if pg_enc is None:
        pytest.skip("pgpool2's pg_enc is not installed: cannot compare AES entries with it")
    password = dc.TEST_USERS["pw_user"]
    out = subprocess.run([pg_enc, "-K", AES_KEY, password], capture_output=True, text=True,
                         timeout=30, check=True, cwd=tmp_path).stdout
    found = re.search(r"pool_passwd string: (AES\S+)", out)
    assert found, out
    assert found.group(1) == encode_entry("pw_user", password, "aes", AES_KEY)


# -- configuration checks -------------------------------------------------------------------------


@pytest.fixture
def bad_hba_config(cluster, tmp_path) -> Path:
    hba = write_hba(tmp_path / "pool_hba.conf",
                    "host all all 127.0.0.1/32 trust\n"
                    "# a comment\n"
                    "host all all 127.0.0.1/32 no-such-method\n")
    config = dc.pgtwist_config(cluster, dc.free_port(),
                               {"enable_pool_hba": True, "pool_hba_file": hba})
    return dc.write_pgtwist_files(tmp_path, config, dc.TEST_USERS)


def test_twistd_check_names_the_bad_pool_hba_line(bad_hba_config, tmp_path):
    proc = run_check(bad_hba_config, tmp_path)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, f"--check accepted a bad pool_hba.conf:\n{out}"
    assert "pool_hba.conf:3" in out, out
    assert "Traceback" not in out


def test_pgtwist_check_command_names_the_bad_pool_hba_line(bad_hba_config, tmp_path):
    cli = Path(sys.executable).parent / "pgtwist"
    argv = [str(cli)] if cli.exists() else [sys.executable, "-m", "pgtwist.cli"]
    proc = subprocess.run([*argv, "check", "-c", str(bad_hba_config)], cwd=tmp_path,
                          env=dc.pgtwist_env(), capture_output=True, text=True, timeout=30,
                          stdin=subprocess.DEVNULL, check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, out
    assert "pool_hba.conf:3" in out, out


# -- authentication_timeout -----------------------------------------------------------------------


def _read_until_closed(raw: RawClient, timeout: float) -> list[tuple[str, bytes]]:
    """Every message until the peer closes; fails if it stays open ``timeout`` seconds."""
    raw.sock.settimeout(timeout)
    msgs = []
    try:
        while True:
            msgs.append(raw.read_msg())
    except (EOFError, ConnectionResetError):
        return msgs
    except TimeoutError:
        pytest.fail(f"connection still open after {timeout}s; got {msgs!r}")


def test_authentication_timeout_disconnects_a_silent_client(cluster, tmp_path):
    hba = write_hba(tmp_path / "pool_hba.conf", "host all all 127.0.0.1/32 password\n")
    pg = start_daemon(cluster, tmp_path / "d",
                      {"enable_pool_hba": True, "pool_hba_file": hba,
                       "authentication_timeout": 1})
    try:
        with RawClient(pg.port) as raw:
            t0 = time.monotonic()
            raw.send(startup_packet({"user": "pw_user", "database": "postgres"}))
            code, body = raw.read_msg()
            assert (code, struct.unpack_from("!I", body)[0]) == ("R", AUTH_CLEARTEXT)
            # ...and never answer.  Within the timeout (plus slack) pgtwist gives up.
            msgs, elapsed = _read_until_closed(raw, 5), time.monotonic() - t0
        assert 0.8 <= elapsed < 4, elapsed
        assert [c for c, _ in msgs] == ["E"], msgs
        assert error_fields(msgs[0][1])["S"] == "FATAL"
        # A client that never even sends a startup packet is cut off too (an error
        # message before the close is allowed: it is nothing the client asked about).
        with RawClient(pg.port) as raw:
            t0 = time.monotonic()
            msgs, elapsed = _read_until_closed(raw, 5), time.monotonic() - t0
        assert 0.8 <= elapsed < 4, elapsed
        assert [c for c, _ in msgs] in ([], ["E"]), msgs
        # Other clients are unaffected.
        assert psycopg_login(pg, "pw_user", dc.TEST_USERS["pw_user"]) is GOOD
    finally:
        stop_daemon(pg)


# -- enable_pool_hba off --------------------------------------------------------------------------


@pytest.mark.parametrize("user,code", [
    ("pw_user", AUTH_CLEARTEXT), ("md5_user", AUTH_MD5), ("scram_user", AUTH_SASL),
])
def test_without_pool_hba_the_client_gets_the_primary_method(shared_pgtwist, user, code):
    assert auth_request(shared_pgtwist.port, user) == code


@pytest.mark.parametrize("driver", DRIVERS)
def test_without_pool_hba_scram_user_needs_a_password(shared_pgtwist, driver):
    result = login(driver, shared_pgtwist, "scram_user", None)
    assert result is not GOOD
    if driver == "psycopg":
        assert "no password supplied" in result[1]
    else:
        # asyncpg answers a SCRAM request without a password itself, or sends an empty one
        assert result[0] in ("client", "28P01"), result
    assert login(driver, shared_pgtwist, "scram_user", dc.TEST_USERS["scram_user"]) is GOOD


@pytest.mark.parametrize("daemon", ["shared_pgtwist", "hba_pg"])
def test_scram_final_message_comes_before_authentication_ok(request, daemon):
    """AuthenticationSASLFinal, then AuthenticationOk ... ReadyForQuery (RFC 5802, protocol
    docs).  ``shared_pgtwist`` has pool_hba off (pgtwist asks for SCRAM because the primary
    did), ``hba_pg`` has a scram-sha-256 line."""
    pg = request.getfixturevalue(daemon)
    seq = scram_login_sequence(pg.port, "scram_user", dc.TEST_USERS["scram_user"])
    assert seq == ["R12", "R0", "K", "Z"], seq


@pytest.fixture(scope="module")
def cleartext_pg(cluster, tmp_path_factory):
    """enable_pool_hba off, allow_clear_text_frontend_auth on, nobody in pool_passwd."""
    workdir = tmp_path_factory.mktemp("cleartext")
    pg = start_daemon(cluster, workdir, {"allow_clear_text_frontend_auth": True}, passwd={})
    yield pg
    stop_daemon(pg)


@pytest.mark.parametrize("driver", DRIVERS)
@pytest.mark.parametrize("user", sorted(dc.TEST_USERS))
def test_clear_text_frontend_auth_passes_the_password_on(cleartext_pg, driver, user):
    assert auth_request(cleartext_pg.port, user) == AUTH_CLEARTEXT
    assert login(driver, cleartext_pg, user, dc.TEST_USERS[user]) is GOOD
    # A wrong one is judged by the server, whose 28P01 reaches the client.
    assert_refused(driver, login(driver, cleartext_pg, user, "bad guess"), "28P01",
                   password_failed(user))

