"""Limits and settings behave as documented (security review 2026-12, findings 6, 7, 8).

- A CancelRequest gets in when ``num_init_children`` is reached, with and without
  ``reserved_connections``; a connection that sends nothing holds no slot and is closed
  after ``authentication_timeout``.
- ``authentication_timeout: 0`` and ``connect_timeout: 0`` disable the timeout
  (Pgpool-II) instead of failing every connection.
- ``ssl_crl_file`` refuses revoked client certificates; ``ssl_ca_cert_dir`` is a CA
  directory; either one that cannot be loaded stops the start, naming the key.
"""

from __future__ import annotations

import datetime
import os
import socket
import time
import uuid

import psycopg
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from OpenSSL import crypto

from pgtwist.dev import devcluster as dc

from .conftest import assert_log_clean, start_pgtwist
from .rawpg import RawClient, cancel_request, error_fields, errors_of, query, startup_packet
from .test_auth_hba import GOOD, psycopg_login, run_check, write_hba
from .tlsutil import make_ca, write_pem

pytestmark = pytest.mark.integration

DB = "pooldb"


def _login(port: int) -> RawClient:
    raw = RawClient(port, timeout=15)
    raw.startup({"user": "postgres", "database": DB})
    return raw


def _startup_answer(port: int, wait: float) -> bytes | None:
    """Send a StartupMessage; the first byte of the answer, or None if none in ``wait`` s."""
    s = socket.create_connection(("127.0.0.1", port), timeout=wait)
    try:
        s.sendall(startup_packet({"user": "postgres", "database": DB}))
        try:
            return s.recv(1)
        except TimeoutError:
            return None
    finally:
        s.close()


# -- finding 6: cancel at the client cap -----------------------------------------------------------


@pytest.mark.parametrize("reserved", [0, 1])
def test_cancel_gets_in_when_every_slot_is_taken(pool_database, pgtwist_factory, reserved):
    pg = pgtwist_factory(extra={"num_init_children": 3, "reserved_connections": reserved})
    clients = [_login(pg.port) for _ in range(3 - reserved)]
    try:
        runner = clients[0]
        pid, secret = runner.key
        runner.send(query("select pg_sleep(6)"))
        time.sleep(0.5)
        with RawClient(pg.port) as cancel:
            cancel.send(cancel_request(pid, secret))
            assert cancel.closed_by_peer(timeout=3)  # served and closed, no error
        msgs = runner.read_until("Z")
        assert [e["C"] for e in errors_of(msgs)] == ["57014"], msgs  # query_canceled
        # Other startups at the cap are still refused (reserved) or wait (Pgpool-II).
        answer = _startup_answer(pg.port, wait=1.0)
        if reserved:
            assert answer == b"E"
        else:
            assert answer is None
        # The slots are all still usable.
        for raw in clients:
            assert raw.rows("select 1") == [["1"]]
    finally:
        for raw in clients:
            raw.close()


def test_a_waiting_client_gets_the_slot_a_leaving_one_frees(pool_database, pgtwist_factory):
    pg = pgtwist_factory(extra={"num_init_children": 1})
    first = _login(pg.port)
    waiting = RawClient(pg.port, timeout=15)
    waiting.send(startup_packet({"user": "postgres", "database": DB}))
    time.sleep(0.5)
    first.close()
    waiting.read_login()
    assert waiting.rows("select 1") == [["1"]]
    waiting.close()


def test_silent_connections_take_no_slot_and_time_out(pool_database, pgtwist_factory):
    pg = pgtwist_factory(extra={"num_init_children": 2, "authentication_timeout": 3})
    silent = [socket.create_connection(("127.0.0.1", pg.port), timeout=6) for _ in range(4)]
    try:
        time.sleep(0.3)
        # Both slots are free for real clients while the silent connections sit there.
        for _ in range(2):
            with psycopg.connect(pg.dsn(dbname=DB), autocommit=True, connect_timeout=2) as c:
                assert c.execute("select 1").fetchone() == (1,)
        # authentication_timeout covers the time before the first packet too.
        for s in silent:
            data = b""
            while chunk := s.recv(4096):
                data += chunk
            assert data[:1] == b"E", data
            fields = error_fields(data[5:])
            assert fields["C"] == "08P01" and "timeout" in fields["M"], fields
    finally:
        for s in silent:
            s.close()


# -- finding 7: 0 disables the timeouts ------------------------------------------------------------


def test_authentication_timeout_0_disables_it(pool_database, pgtwist_factory):
    pg = pgtwist_factory(extra={"authentication_timeout": 0})
    for _ in range(2):
        with psycopg.connect(pg.dsn(dbname=DB), autocommit=True, connect_timeout=10) as conn:
            assert conn.execute("select 1").fetchone() == (1,)
    # A client that takes its time to log in is not cut off at once either.
    with RawClient(pg.port) as raw:
        time.sleep(0.5)
        raw.startup({"user": "postgres", "database": DB})
        assert raw.rows("select 2") == [["2"]]


def test_connect_timeout_0_disables_it(pool_database, pgtwist_factory):
    pg = pgtwist_factory(extra={"connect_timeout": 0})
    for _ in range(2):  # the second one reuses the link the first one's reset gave back
        with psycopg.connect(pg.dsn(dbname=DB), autocommit=True, connect_timeout=10) as conn:
            assert conn.execute("select 1").fetchone() == (1,)
    # Cancel requests connect to the server with connect_timeout too.
    with _login(pg.port) as raw:
        pid, secret = raw.key
        raw.send(query("select pg_sleep(6)"))
        time.sleep(0.5)
        with RawClient(pg.port) as cancel:
            cancel.send(cancel_request(pid, secret))
        msgs = raw.read_until("Z")
        assert [e["C"] for e in errors_of(msgs)] == ["57014"], msgs


# -- finding 8: ssl_crl_file and ssl_ca_cert_dir ----------------------------------------------------

CERT_USER = "scram_user"
HBA = """\
hostssl     template1   all         127.0.0.1/32    cert
host        all         postgres    127.0.0.1/32    trust
"""


@pytest.fixture(scope="module")
def crl_pki(tmp_path_factory):
    """A CA, a server certificate, two client certificates for CERT_USER (one revoked), a
    CRL of the CA revoking it, and a hashed CA directory (``openssl rehash`` layout)."""
    d = tmp_path_factory.mktemp("crlpki")
    ca = make_ca("pgtwist CRL test CA")
    pem = ca.cert.public_bytes(serialization.Encoding.PEM)
    out = {"dir": d, "ca": write_pem(d / "ca.crt", pem)}
    cert, key = ca.issue("localhost", server=True, ips=("127.0.0.1",), dns=("localhost",))
    out["server"] = (write_pem(d / "server.crt", cert), write_pem(d / "server.key", key))
    for name in ("good", "revoked"):
        cert, key = ca.issue(CERT_USER)
        out[name] = (write_pem(d / f"{name}.crt", cert), write_pem(d / f"{name}.key", key))
    revoked = x509.load_pem_x509_certificate(open(out["revoked"][0], "rb").read())
    now = datetime.datetime.now(datetime.timezone.utc)
    crl = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(ca.cert.subject)
        .last_update(now - datetime.timedelta(hours=1))
        .next_update(now + datetime.timedelta(days=2))
        .add_revoked_certificate(
            x509.RevokedCertificateBuilder().serial_number(revoked.serial_number)
            .revocation_date(now - datetime.timedelta(minutes=5)).build())
        .sign(ca.key, hashes.SHA256())
    )
    out["crl"] = write_pem(d / "crl.pem", crl.public_bytes(serialization.Encoding.PEM))
    cadir = d / "cadir"
    cadir.mkdir()
    cadir.chmod(0o755)
    subject_hash = crypto.X509.from_cryptography(ca.cert).subject_name_hash()
    write_pem(cadir / f"{subject_hash:08x}.0", pem)
    out["cadir"] = str(cadir)
    out["hba"] = write_hba(d / "pool_hba.conf", HBA)
    return out


def _tls(pki, **more) -> dict:
    return {"ssl": True, "ssl_cert": pki["server"][0], "ssl_key": pki["server"][1],
            "enable_pool_hba": True, "pool_hba_file": pki["hba"], **more}


def _cert_login(pg, pki, which: str):
    cert, key = pki[which]
    return psycopg_login(pg, CERT_USER, None, "template1", sslmode="verify-full",
                         sslrootcert=pki["ca"], sslcert=cert, sslkey=key)


def test_a_revoked_client_certificate_is_refused(crl_pki, pgtwist_factory):
    pg = pgtwist_factory(extra=_tls(crl_pki, ssl_ca_cert=crl_pki["ca"],
                                    ssl_crl_file=crl_pki["crl"]))
    assert _cert_login(pg, crl_pki, "good") is GOOD
    refused = _cert_login(pg, crl_pki, "revoked")
    assert refused is not GOOD
    assert "revoked" in refused, refused


def test_ssl_ca_cert_dir_verifies_client_certificates(crl_pki, pgtwist_factory):
    pg = pgtwist_factory(extra=_tls(crl_pki, ssl_ca_cert_dir=crl_pki["cadir"],
                                    ssl_crl_file=crl_pki["crl"]))
    assert _cert_login(pg, crl_pki, "good") is GOOD
    assert _cert_login(pg, crl_pki, "revoked") is not GOOD


@pytest.fixture(scope="module")
def tls_backend(crl_pki):
    """A one-node cluster with ssl = on and a server certificate from the CRL test CA."""
    if os.environ.get("PGTWIST_TEST_BACKEND", "local").strip().lower() == "docker":
        pytest.skip("the TLS backend cluster is built from local server binaries only")
    c = dc.DevCluster(replicas=0, ssl_files=crl_pki["server"])
    c.start()
    try:
        yield c
    finally:
        c.stop()


@pytest.mark.parametrize("trusted", [True, False])
def test_ssl_ca_cert_dir_verifies_backends(crl_pki, tls_backend, tmp_path, trusted):
    other = tmp_path / "other_cadir"
    other.mkdir()
    foreign = make_ca("some other CA")
    write_pem(other / f"{crypto.X509.from_cryptography(foreign.cert).subject_name_hash():08x}.0",
              foreign.cert.public_bytes(serialization.Encoding.PEM))
    cadir = crl_pki["cadir"] if trusted else str(other)
    pg = start_pgtwist(tls_backend, tmp_path / "pg", extra={
        "ssl": True, "ssl_cert": crl_pki["server"][0], "ssl_key": crl_pki["server"][1],
        "ssl_ca_cert_dir": cadir}, passwd=dc.TEST_USERS)
    app = f"pgtwist_cadir_{uuid.uuid4().hex[:8]}"
    ssl_sql = ("SELECT coalesce(string_agg(s.ssl::text, ','), 'no session') FROM pg_stat_ssl s "
               f"JOIN pg_stat_activity a USING (pid) WHERE a.application_name = '{app}'")
    try:
        if trusted:
            with psycopg.connect(pg.dsn(sslmode="disable", application_name=app),
                                 connect_timeout=10) as conn:
                assert conn.execute("select 1").fetchone() == (1,)
                assert tls_backend.psql(ssl_sql) == "true"
        else:  # a server certificate from a CA outside the directory: no login
            with pytest.raises(psycopg.OperationalError):
                psycopg.connect(pg.dsn(sslmode="disable", application_name=app),
                                connect_timeout=10).close()
            assert tls_backend.psql(ssl_sql) == "no session"
    finally:
        pg.stop()
    assert_log_clean(pg)


@pytest.mark.parametrize("key, value, expected", [
    ("ssl_crl_file", "garbage", "ssl_crl_file: {path} holds no PEM certificate revocation list"),
    ("ssl_crl_file", "missing", "ssl_crl_file: cannot read {path}"),
    ("ssl_ca_cert_dir", "missing", "ssl_ca_cert_dir: {path} is not a readable directory"),
])
def test_settings_that_cannot_be_loaded_stop_the_start(crl_pki, cluster, tmp_path, key, value,
                                                       expected):
    path = tmp_path / "setting"
    if value == "garbage":
        write_pem(path, b"garbage, not a CRL\n")
    config = dc.pgtwist_config(cluster, dc.free_port(), {
        **_tls(crl_pki, ssl_ca_cert=crl_pki["ca"]), key: str(path)})
    config_path = dc.write_pgtwist_files(tmp_path, config, dc.TEST_USERS)
    result = run_check(config_path, tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr
    assert expected.format(path=path) in result.stderr, result.stderr


def test_unimplemented_settings_are_named_in_the_log(pool_database, pgtwist_factory):
    pg = pgtwist_factory(extra={"use_watchdog": True, "log_backend_messages": "terse"})
    with psycopg.connect(pg.dsn(dbname=DB), autocommit=True, connect_timeout=10) as conn:
        assert conn.execute("select 1").fetchone() == (1,)
    text = pg.log_text()
    for key in ("use_watchdog", "log_backend_messages"):
        assert f"{key}: accepted for Pgpool-II compatibility but not implemented" in text, text


def test_a_passphrase_command_stops_the_start(cluster, tmp_path):
    config = dc.pgtwist_config(cluster, dc.free_port(),
                               {"ssl_passphrase_command": "/bin/echo x"})
    config_path = dc.write_pgtwist_files(tmp_path, config, dc.TEST_USERS)
    result = run_check(config_path, tmp_path)
    assert result.returncode == 1
    assert "ssl_passphrase_command: accepted for Pgpool-II compatibility but not implemented" \
        in result.stderr, result.stderr
