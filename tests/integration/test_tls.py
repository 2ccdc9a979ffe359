"""TLS on both sides of pgtwist, with certificates made for the test (see tlsutil.py).

Client side: ``ssl: on`` with ``ssl_cert`` / ``ssl_key``; ``ssl_ca_cert`` (the test CA)
verifies client certificates for the ``cert`` method.  pool_hba.conf ``hostssl`` /
``hostnossl`` lines, ``ssl_require``, SCRAM-SHA-256-PLUS channel binding.  Backend side: a
dedicated one-node cluster running with ``ssl = on`` and a server certificate from the same
CA; pgtwist verifies it against ``ssl_ca_cert`` and the server reports the session as SSL.
"""

from __future__ import annotations

import asyncio
import os
import ssl
import subprocess
import uuid

import asyncpg
import psycopg
import pytest

from pgtwist.dev import devcluster as dc

from .rawpg import RawClient, error_fields, ssl_request, startup_packet
from .test_auth_hba import (
    DRIVERS,
    GOOD,
    assert_refused,
    asyncpg_login,
    close_asyncpg,
    login,
    psycopg_login,
    start_daemon,
    stop_daemon,
    write_hba,
)
from .tlsutil import Pki, make_pki

pytestmark = pytest.mark.integration

CERT_USER = "scram_user"
OTHER_USER = "pw_user"

HBA = """\
hostssl     template1   all             127.0.0.1/32    cert
hostssl     postgres    md5_user        127.0.0.1/32    md5
hostnossl   postgres    pw_user         127.0.0.1/32    password
host        postgres    scram_user      127.0.0.1/32    scram-sha-256
host        all         postgres        127.0.0.1/32    trust
"""


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"), client_cns=(CERT_USER, OTHER_USER),
                    foreign_client_cns=(CERT_USER,))


def _tls_extra(pki: Pki, **more) -> dict:
    return {"ssl": True, "ssl_cert": pki.server_cert, "ssl_key": pki.server_key,
            "ssl_ca_cert": pki.ca, **more}


@pytest.fixture(scope="module")
def tls_pg(cluster, pki, tmp_path_factory):
    """ssl on, client certificates verified against the test CA, pool_hba = HBA."""
    workdir = tmp_path_factory.mktemp("tls")
    hba = write_hba(workdir / "pool_hba.conf", HBA)
    pg = start_daemon(cluster, workdir,
                      _tls_extra(pki, enable_pool_hba=True, pool_hba_file=hba))
    yield pg
    stop_daemon(pg)


def _verify_full(pki: Pki, ca: str | None = None) -> dict:
    """libpq keywords: TLS, server verified against ``ca`` (default the test CA), and no
    client certificate (sslcertmode needs libpq 16; psycopg's bundled libpq has it)."""
    out = {"sslmode": "verify-full", "sslrootcert": ca or pki.ca}
    if psycopg.pq.version() >= 160000:
        out["sslcertmode"] = "disable"
    return out


def _client_cert(pki: Pki, cn: str, foreign: bool = False) -> dict:
    cert, key = (pki.foreign_clients if foreign else pki.clients)[cn]
    return {"sslmode": "verify-full", "sslrootcert": pki.ca, "sslcert": cert, "sslkey": key}


def _context(pki: Pki, cert_cn: str | None = None, foreign: bool = False) -> ssl.SSLContext:
    """An asyncpg SSLContext trusting the test CA, optionally with a client certificate."""
    ctx = ssl.create_default_context(cafile=pki.ca)
    if cert_cn is not None:
        ctx.load_cert_chain(*(pki.foreign_clients if foreign else pki.clients)[cert_cn])
    return ctx


def _psycopg(pg, user: str, password: str | None = None, dbname: str = "postgres", **kw):
    return psycopg.connect(pg.dsn(user=user, dbname=dbname, password=password, **kw),
                           connect_timeout=10)


# -- the client side ------------------------------------------------------------------------------


def test_psycopg_gets_tls(tls_pg):
    with _psycopg(tls_pg, "postgres", sslmode="require") as conn:
        assert conn.pgconn.ssl_in_use
    with _psycopg(tls_pg, "postgres", sslmode="disable") as conn:
        assert not conn.pgconn.ssl_in_use


def test_asyncpg_gets_tls(tls_pg, pki):
    async def run():
        conn = await asyncpg.connect(host=tls_pg.host, port=tls_pg.port, user="postgres",
                                     database="postgres", ssl=_context(pki), timeout=10)
        try:
            assert await conn.fetchval("SELECT 1") == 1
            return conn._transport.get_extra_info("ssl_object") is not None
        finally:
            await close_asyncpg(conn, graceful=False)  # see test_asyncpg_close_over_tls_...

    assert asyncio.run(run())


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
def test_psql_verify_full_with_the_test_ca(tls_pg, pki, host):
    def psql(ca: str) -> subprocess.CompletedProcess:
        # psql may use an older libpq than psycopg: only the classic keywords.
        conninfo = dc.conninfo(host=host, hostaddr="127.0.0.1", port=tls_pg.port,
                               user="postgres", dbname="postgres", sslmode="verify-full",
                               sslrootcert=ca)
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        return subprocess.run(["psql", "-X", "-A", "-t", "-c", "SELECT 'tls ok'", conninfo],
                              capture_output=True, text=True, timeout=30, env=env,
                              stdin=subprocess.DEVNULL, check=False)

    ok = psql(pki.ca)
    assert (ok.returncode, ok.stdout.strip()) == (0, "tls ok"), ok.stderr
    bad = psql(pki.other_ca)
    assert bad.returncode != 0
    assert "certificate verify failed" in bad.stderr, bad.stderr


@pytest.mark.parametrize("driver", DRIVERS)
def test_hostssl_line_needs_tls(tls_pg, pki, driver):
    password = dc.TEST_USERS["md5_user"]
    assert_refused(
        driver, login(driver, tls_pg, "md5_user", password), "28000",
        'no pool_hba.conf entry for host "127.0.0.1", user "md5_user", database "postgres", '
        "SSL off",
    )
    if driver == "psycopg":
        assert psycopg_login(tls_pg, "md5_user", password, **_verify_full(pki)) is GOOD
    else:
        assert asyncpg_login(tls_pg, "md5_user", password, ssl=_context(pki),
                             graceful_close=False) is GOOD


@pytest.mark.parametrize("driver", DRIVERS)
def test_hostnossl_line_refuses_tls(tls_pg, pki, driver):
    password = dc.TEST_USERS["pw_user"]
    assert login(driver, tls_pg, "pw_user", password) is GOOD
    if driver == "psycopg":
        result = psycopg_login(tls_pg, "pw_user", password, **_verify_full(pki))
        result = result if result is GOOD else (None, result.split("FATAL:", 1)[-1].strip())
    else:
        result = asyncpg_login(tls_pg, "pw_user", password, ssl=_context(pki),
                               graceful_close=False)
    assert_refused(
        driver, result, "28000",
        'no pool_hba.conf entry for host "127.0.0.1", user "pw_user", database "postgres", '
        "SSL on",
    )


def test_scram_channel_binding(tls_pg, pki):
    password = dc.TEST_USERS["scram_user"]
    with _psycopg(tls_pg, "scram_user", password, channel_binding="require",
                  **_verify_full(pki)) as conn:
        assert conn.pgconn.ssl_in_use
        assert conn.execute("SELECT current_user").fetchone() == ("scram_user",)
    # A wrong password still fails with channel binding.
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        _psycopg(tls_pg, "scram_user", "wrong", channel_binding="require", **_verify_full(pki))
    # asyncpg does not do channel binding: plain SCRAM over TLS must still be accepted.
    assert asyncpg_login(tls_pg, "scram_user", password, ssl=_context(pki),
                         graceful_close=False) is GOOD


@pytest.mark.parametrize("driver", DRIVERS)
def test_cert_method(tls_pg, pki, driver):
    def attempt(user: str, cert_cn: str | None, foreign: bool = False):
        if driver == "psycopg":
            kw = _client_cert(pki, cert_cn, foreign) if cert_cn else _verify_full(pki)
            out = psycopg_login(tls_pg, user, None, "template1", **kw)
            return out if out is GOOD else (None, out.split("FATAL:", 1)[-1].strip())
        return asyncpg_login(tls_pg, user, None, "template1",
                             ssl=_context(pki, cert_cn, foreign), graceful_close=False)

    def refused(user: str) -> str:
        return f'certificate authentication failed for user "{user}"'

    # CN equal to the user name: in, without a password.
    assert attempt(CERT_USER, CERT_USER) is GOOD
    # A valid certificate for someone else.
    assert_refused(driver, attempt(OTHER_USER, CERT_USER), "28000", refused(OTHER_USER))
    # No certificate at all.
    assert_refused(driver, attempt(CERT_USER, None), "28000", refused(CERT_USER))
    # The right CN from a CA pgtwist does not trust: the handshake or the login fails.
    assert attempt(CERT_USER, CERT_USER, foreign=True) is not GOOD


def test_server_closes_a_tls_session_after_terminate(tls_pg, pki):
    """Like PostgreSQL, pgtwist ends the connection when the client sends Terminate.

    asyncpg's close() waits for exactly that; the TLS behaviour tests above end their
    asyncpg sessions with terminate() instead, so that they check only their own topic.
    """
    with RawClient(tls_pg.port) as raw:
        raw.send(ssl_request())
        assert raw.read_byte() == b"S"
        tls = _context(pki).wrap_socket(raw.sock, server_hostname="127.0.0.1")
        tls.settimeout(5)
        tls.sendall(startup_packet({"user": "postgres", "database": "postgres"}))
        data = b""
        while b"Z\x00\x00\x00\x05" not in data:  # ReadyForQuery
            chunk = tls.recv(65536)
            assert chunk, data
            data += chunk
        tls.sendall(b"X\x00\x00\x00\x04")  # Terminate
        try:
            rest = tls.recv(65536)
        except TimeoutError:
            pytest.fail("pgtwist kept the TLS connection open 5 s after Terminate")
        except (ssl.SSLError, ConnectionResetError):
            rest = b""
        assert rest == b""


def test_asyncpg_close_over_tls_finishes(tls_pg, pki):
    assert asyncpg_login(tls_pg, "postgres", ssl=_context(pki)) is GOOD


def test_sslrequest_followed_by_plaintext_in_one_write_is_refused(tls_pg):
    """Bytes sent after SSLRequest but before the handshake must not be trusted (the
    CVE-2021-23222 family): pgtwist must not answer 'S' and then read them as TLS-era data."""
    with RawClient(tls_pg.port) as raw:
        raw.send(ssl_request() + startup_packet({"user": "postgres", "database": "postgres"}))
        first = raw.read_byte()
        assert first != b"S", "pgtwist accepted TLS with plaintext bytes queued behind it"
        assert first == b"E", first
        raw.buf = first + raw.buf
        code, body = raw.read_msg()
        fields = error_fields(body)
        assert (code, fields["C"]) == ("E", "08P01"), fields
        assert "unencrypted data after SSL request" in fields["M"], fields
        assert raw.closed_by_peer()


# -- ssl_require ----------------------------------------------------------------------------------


@pytest.mark.parametrize("driver", DRIVERS)
def test_ssl_require_refuses_plain_clients(cluster, pki, tmp_path, driver):
    pg = start_daemon(cluster, tmp_path, _tls_extra(pki, ssl_require=True))
    try:
        result = login(driver, pg, "postgres")
        assert result is not GOOD
        if driver == "asyncpg":
            assert result[0] == "28000", result
        assert "SSL" in result[1], result
        if driver == "psycopg":
            assert psycopg_login(pg, "postgres", **_verify_full(pki)) is GOOD
        else:
            assert asyncpg_login(pg, "postgres", ssl=_context(pki),
                                 graceful_close=False) is GOOD
    finally:
        stop_daemon(pg)


# -- the backend side -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tls_cluster(pki):
    """A one-node cluster with ssl = on and a server certificate from the test CA."""
    if os.environ.get("PGTWIST_TEST_BACKEND", "local").strip().lower() == "docker":
        pytest.skip("the TLS backend cluster is built from local server binaries only")
    c = dc.DevCluster(replicas=0, ssl_files=(pki.server_cert, pki.server_key))
    c.start()
    try:
        yield c
    finally:
        c.stop()


def _backend_ssl(cluster, app: str) -> str:
    return cluster.psql(
        "SELECT coalesce(string_agg(s.ssl::text, ','), 'no session') FROM pg_stat_ssl s "
        f"JOIN pg_stat_activity a USING (pid) WHERE a.application_name = '{app}'"
    )


@pytest.mark.parametrize("user", ["postgres", "scram_user"])
def test_backend_connection_uses_verified_tls(tls_cluster, pki, tmp_path, user):
    pg = start_daemon(tls_cluster, tmp_path, _tls_extra(pki))
    try:
        app = f"pgtwist_tls_{uuid.uuid4().hex[:8]}"
        with _psycopg(pg, user, dc.TEST_USERS.get(user), sslmode="disable",
                      application_name=app) as conn:
            assert conn.execute("SELECT current_user").fetchone() == (user,)
            assert _backend_ssl(tls_cluster, app) == "true"
    finally:
        stop_daemon(pg)


def test_backend_certificate_from_an_unknown_ca_is_refused(tls_cluster, pki, tmp_path):
    """With ssl_ca_cert naming another CA, pgtwist must not log in (no plaintext fallback)."""
    pg = start_daemon(tls_cluster, tmp_path, _tls_extra(pki, ssl_ca_cert=pki.other_ca))
    app = f"pgtwist_badca_{uuid.uuid4().hex[:8]}"
    try:
        with pytest.raises(psycopg.OperationalError):
            _psycopg(pg, "postgres", sslmode="disable", application_name=app).close()
        assert _backend_ssl(tls_cluster, app) == "no session"
    finally:
        stop_daemon(pg)
