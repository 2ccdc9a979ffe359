"""Wire-level limits, through a real ``twistd -n pgtwist`` against the real cluster.

Security review 2026-12, findings 2 (pre-auth memory), 9 (big server errors), 11
(repeated SSLRequests) and S4 (a Query pipelined with the StartupMessage).  Where
PostgreSQL itself answers, the same probe runs against the primary directly and
pgtwist must give the same answer.
"""

from __future__ import annotations

import struct
import threading
import time

import psycopg
import pytest

from .rawpg import (
    RawClient,
    data_row,
    error_fields,
    query,
    ssl_request,
    startup_packet,
)

pytestmark = pytest.mark.integration

HUGE = 250 << 20  # what the review's clients claimed


def _target(cluster, shared_pgtwist, which: str) -> int:
    return cluster.primary_port if which == "postgres" else shared_pgtwist.port


def _until_close(client: RawClient) -> list[tuple[str, bytes]]:
    """Every message up to the peer's close (a socket timeout fails the test)."""
    out = []
    try:
        while True:
            out.append(client.read_msg())
    except (EOFError, ConnectionResetError):
        return out


def _login_request(client: RawClient, user: str) -> int:
    """Send a StartupMessage; return the Authentication request code the server sends."""
    client.send(startup_packet({"user": user, "database": "postgres"}))
    code, body = client.read_msg()
    assert code == "R", (code, body)
    (request,) = struct.unpack_from("!I", body)
    return request


def _vmrss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError(f"no VmRSS for pid {pid}")


# -- finding 2: the auth phase judges a message on its 5-byte header --------------------------

AUTH_PROBES = {
    # (user, header sent after the server's authentication request) -> (SQLSTATE, message)
    "sasl_huge_p": ("scram_user", b"p" + struct.pack("!I", HUGE),
                    ("28P01", 'password authentication failed for user "scram_user"')),
    "sasl_Q": ("scram_user", b"Q" + struct.pack("!I", HUGE),
               ("08P01", "expected SASL response, got message type 81")),
    "sasl_huge_X": ("scram_user", b"X" + struct.pack("!I", HUGE),
                    ("08P01", "expected SASL response, got message type 88")),
    "password_Q": ("pw_user", b"Q" + struct.pack("!I", HUGE),
                   ("08P01", "expected password response, got message type 81")),
    "password_huge_p": ("pw_user", b"p" + struct.pack("!I", HUGE),
                        ("28P01", 'password authentication failed for user "pw_user"')),
    "md5_Q": ("md5_user", b"Q" + struct.pack("!I", 100),
              ("08P01", "expected password response, got message type 81")),
}


@pytest.mark.parametrize("which", ["postgres", "pgtwist"])
@pytest.mark.parametrize("probe", AUTH_PROBES.values(), ids=AUTH_PROBES.keys())
def test_auth_phase_message_refused_on_its_header(cluster, shared_pgtwist, which, probe):
    user, header, (sqlstate, message) = probe
    with RawClient(_target(cluster, shared_pgtwist, which), timeout=3) as client:
        assert _login_request(client, user) in (3, 5, 10)
        t0 = time.monotonic()
        client.send(header + b"A" * 1024)  # 1 kB of a body that never comes
        msgs = _until_close(client)
        elapsed = time.monotonic() - t0
    assert elapsed < 2, elapsed  # answered on the header, not after a body or a timeout
    if which == "postgres" and user == "pw_user" and header[:1] == b"p":
        # PostgreSQL only logs "invalid message length" (COMMERROR) and hangs up;
        # pgtwist tells the client, as it does for SCRAM.
        assert msgs == []
        return
    assert [c for c, _ in msgs] == ["E"], msgs
    fields = error_fields(msgs[0][1])
    assert (fields["S"], fields["C"], fields["M"]) == ("FATAL", sqlstate, message)


@pytest.mark.parametrize("code", [b"Q", b"p", b"X"])
def test_pre_auth_bytes_are_not_buffered(shared_pgtwist, code):
    """The review's memory probe: a huge claimed message, then 120 MB sent pre-auth."""
    pid = shared_pgtwist.proc.pid
    before = _vmrss_kib(pid)
    sent = 0
    with RawClient(shared_pgtwist.port, timeout=3) as client:
        assert _login_request(client, "scram_user") == 10
        client.send(code + struct.pack("!I", HUGE))
        chunk = b"A" * (1 << 20)
        try:
            for _ in range(120):
                client.sock.sendall(chunk)
                sent += len(chunk)
        except OSError:
            pass  # refused and closed: the rest has nowhere to go
        code_, body = client.read_msg()
        assert code_ == "E", (code_, body)
    time.sleep(0.2)
    grown = _vmrss_kib(pid) - before
    assert grown < 20 * 1024, f"daemon RSS grew by {grown} KiB after {sent} bytes pre-auth"
    assert sent < 100 << 20, f"pgtwist kept reading: {sent} bytes accepted"


SMALL_PROBES = {
    "describe_huge": (b"D" + struct.pack("!I", 200 << 20), "invalid message length"),
    "sync_10001": (b"S" + struct.pack("!I", 10001), "invalid message length"),
    "unknown_type": (b"z" + struct.pack("!I", 200 << 20), "invalid frontend message type 122"),
    "password_after_login": (b"p" + struct.pack("!I", 200 << 20),
                             "invalid frontend message type 112"),
}


@pytest.mark.parametrize("probe", SMALL_PROBES.values(), ids=SMALL_PROBES.keys())
def test_after_login_small_message_limit_on_the_header(shared_pgtwist, probe):
    header, message = probe
    with RawClient(shared_pgtwist.port, timeout=3) as client:
        client.startup()
        assert client.rows("SELECT 1") == [["1"]]
        t0 = time.monotonic()
        client.send(header)
        msgs = _until_close(client)
    assert time.monotonic() - t0 < 2
    assert [c for c, _ in msgs] == ["E"], msgs
    fields = error_fields(msgs[0][1])
    assert (fields["S"], fields["C"], fields["M"]) == ("FATAL", "08P01", message)


def test_after_login_large_messages_keep_max_message_length(shared_pgtwist):
    """Query stays limited by max_message_length only: a 2 MB query works."""
    with RawClient(shared_pgtwist.port) as client:
        client.startup()
        text = "x" * (2 << 20)
        rows = client.rows(f"SELECT length('{text}')")
    assert rows == [[str(2 << 20)]]


# -- S4: a Query pipelined with the StartupMessage -----------------------------------------------

@pytest.mark.parametrize("which", ["postgres", "pgtwist"])
def test_query_pipelined_with_startup_under_trust(cluster, shared_pgtwist, which):
    with RawClient(_target(cluster, shared_pgtwist, which)) as client:
        client.send(startup_packet({"user": "postgres", "database": "postgres"}),
                    query("SELECT 'pipelined'"))
        client.read_login()
        msgs = client.read_until("Z")
    assert [data_row(b) for c, b in msgs if c == "D"] == [["pipelined"]]
    assert not [error_fields(b) for c, b in msgs if c == "E"]


@pytest.mark.parametrize("which", ["postgres", "pgtwist"])
def test_query_pipelined_with_startup_when_a_password_is_asked(cluster, shared_pgtwist, which):
    """PostgreSQL reads the pipelined Query when it wants the SASL answer: it refuses it
    after its AuthenticationSASL, not before."""
    with RawClient(_target(cluster, shared_pgtwist, which), timeout=3) as client:
        client.send(startup_packet({"user": "scram_user", "database": "postgres"}),
                    query("SELECT 1"))
        msgs = _until_close(client)
    assert [c for c, _ in msgs] == ["R", "E"], msgs
    fields = error_fields(msgs[1][1])
    assert (fields["C"], fields["M"]) == ("08P01", "expected SASL response, got message type 81")


@pytest.mark.parametrize("which", ["postgres", "pgtwist"])
def test_big_query_pipelined_with_startup_when_a_password_is_asked(cluster, shared_pgtwist,
                                                                   which):
    """More than pgtwist reads ahead (it stops reading until it asks): the same answer."""
    big = startup_packet({"user": "scram_user", "database": "postgres"}) + query(
        "SELECT '" + "x" * 1_000_000 + "'")
    with RawClient(_target(cluster, shared_pgtwist, which), timeout=3) as client:
        sender = threading.Thread(target=_send_quietly, args=(client.sock, big), daemon=True)
        sender.start()
        msgs = _until_close(client)
        sender.join(5)
    assert [c for c, _ in msgs] == ["R", "E"], msgs
    assert error_fields(msgs[1][1])["M"] == "expected SASL response, got message type 81"


def _send_quietly(sock, data: bytes) -> None:
    try:
        sock.sendall(data)
    except OSError:
        pass  # the server hung up first


def test_query_pipelined_with_startup_in_transaction_mode(pgtwist_factory, pool_database):
    pg = pgtwist_factory({"pool_mode": "transaction"})
    with RawClient(pg.port) as client:
        client.send(startup_packet({"user": "postgres", "database": pool_database}),
                    query("SELECT 'tx pipelined'"), query("SELECT current_database()"))
        client.read_login()
        msgs = client.read_until("Z", count=2)
    assert [data_row(b) for c, b in msgs if c == "D"] == [["tx pipelined"], [pool_database]]


# -- finding 11: one SSLRequest, no recursion ------------------------------------------------------

@pytest.mark.parametrize("which", ["postgres", "pgtwist"])
@pytest.mark.parametrize("count", [2, 3000])
def test_ssl_requests_pipelined(cluster, shared_pgtwist, which, count):
    with RawClient(_target(cluster, shared_pgtwist, which)) as client:
        client.send(ssl_request() * count)
        assert client.read_byte() == b"N"
        msgs = _until_close(client)
    assert [c for c, _ in msgs] == ["E"], msgs
    fields = error_fields(msgs[0][1])
    assert (fields["S"], fields["C"], fields["M"]) == (
        "FATAL", "08P01", "received unencrypted data after SSL request")
    if which == "pgtwist":
        assert "internal error" not in shared_pgtwist.log_text()


@pytest.mark.parametrize("which", ["postgres", "pgtwist"])
def test_second_ssl_request_refused(cluster, shared_pgtwist, which):
    with RawClient(_target(cluster, shared_pgtwist, which)) as client:
        client.send(ssl_request())
        assert client.read_byte() == b"N"
        client.send(ssl_request())
        msgs = _until_close(client)
    assert [c for c, _ in msgs] == ["E"], msgs
    fields = error_fields(msgs[0][1])
    assert (fields["C"], fields["M"]) == (
        "0A000", "unsupported frontend protocol 1234.5679: server supports 3.0 to 3.0")


def test_startup_after_one_ssl_request_still_works(shared_pgtwist):
    with RawClient(shared_pgtwist.port) as client:
        client.send(ssl_request())
        assert client.read_byte() == b"N"
        client.startup()
        assert client.rows("SELECT 'fine'") == [["fine"]]


# -- finding 9: server errors and notices of any size reach the client ------------------------

BIG = 1_100_000


def test_big_error_response_delivered_and_session_usable(shared_pgtwist):
    with psycopg.connect(shared_pgtwist.dsn(), connect_timeout=5, autocommit=True) as conn:
        pid = conn.execute("SELECT pg_backend_pid()").fetchone()
        with pytest.raises(psycopg.errors.RaiseException) as exc:
            conn.execute(f"DO $$BEGIN RAISE EXCEPTION '%', repeat('x', {BIG}); END$$")
        assert exc.value.diag.message_primary == "x" * BIG
        assert conn.execute("SELECT 1").fetchone() == (1,)
        assert conn.execute("SELECT pg_backend_pid()").fetchone() == pid


def test_big_notice_delivered(shared_pgtwist):
    got = []
    with psycopg.connect(shared_pgtwist.dsn(), connect_timeout=5, autocommit=True) as conn:
        conn.add_notice_handler(lambda diag: got.append(diag.message_primary))
        conn.execute(f"DO $$BEGIN RAISE NOTICE '%', repeat('y', {BIG}); END$$")
        assert conn.execute("SELECT 2").fetchone() == (2,)
    assert got == ["y" * BIG]


def test_big_row_failing_a_check_constraint(shared_pgtwist):
    """PostgreSQL cuts each value of "Failing row contains" at 64 bytes, so the error is
    small; the >1 MiB row itself goes through and the session stays."""
    with psycopg.connect(shared_pgtwist.dsn(), connect_timeout=5, autocommit=True) as conn:
        conn.execute("CREATE TEMP TABLE wire_check (v text CHECK (length(v) < 10))")
        with pytest.raises(psycopg.errors.CheckViolation) as exc:
            conn.execute("INSERT INTO wire_check VALUES (%s)", ["z" * 1_200_000])
        assert exc.value.diag.message_detail.startswith("Failing row contains (zzz")
        assert conn.execute("SELECT count(*) FROM wire_check").fetchone() == (0,)


def test_big_value_in_an_ordinary_error(shared_pgtwist):
    """Without RAISE: a bad input value is quoted whole in the message."""
    with psycopg.connect(shared_pgtwist.dsn(), connect_timeout=5, autocommit=True) as conn:
        with pytest.raises(psycopg.errors.InvalidTextRepresentation) as exc:
            conn.execute("SELECT %s::text::int", ["a" * BIG])
        assert exc.value.diag.message_primary == (
            'invalid input syntax for type integer: "' + "a" * BIG + '"')
        assert conn.execute("SELECT 4").fetchone() == (4,)


def test_big_error_inside_a_pipeline(shared_pgtwist):
    """Extended protocol: the error of one statement, then the next batch runs."""
    with psycopg.connect(shared_pgtwist.dsn(), connect_timeout=5) as conn:
        with pytest.raises(psycopg.errors.RaiseException):
            with conn.pipeline():
                conn.execute("SELECT 1")
                conn.execute(f"DO $$BEGIN RAISE EXCEPTION '%', repeat('e', {BIG}); END$$")
        conn.rollback()
        assert conn.execute("SELECT 3").fetchone() == (3,)

