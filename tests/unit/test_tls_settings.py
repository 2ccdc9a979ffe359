"""ssl_crl_file and ssl_ca_cert_dir load or stop the start with an error naming the key."""

from __future__ import annotations

import datetime

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

from pgtwist.config import ConfigError
from pgtwist.tls import ServerTLS, client_tls, load_crls
from tests.integration.tlsutil import make_ca, write_pem


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    d = tmp_path_factory.mktemp("pki")
    ca = make_ca("unit CA")
    cert, key = ca.issue("localhost", server=True, dns=("localhost",))
    now = datetime.datetime.now(datetime.timezone.utc)
    crl = (x509.CertificateRevocationListBuilder().issuer_name(ca.cert.subject)
           .last_update(now).next_update(now + datetime.timedelta(days=1))
           .sign(ca.key, hashes.SHA256()))
    crl_pem = crl.public_bytes(serialization.Encoding.PEM)
    return {
        "dir": d,
        "ca": write_pem(d / "ca.crt", ca.cert.public_bytes(serialization.Encoding.PEM)),
        "cert": write_pem(d / "server.crt", cert),
        "key": write_pem(d / "server.key", key),
        "crl": write_pem(d / "crl.pem", b"# two CRLs\n" + crl_pem + crl_pem),
        "garbage": write_pem(d / "garbage.pem", b"garbage, not a CRL\n"),
        "broken": write_pem(d / "broken.pem", b"-----BEGIN X509 CRL-----\nAAAA\n"
                                              b"-----END X509 CRL-----\n"),
    }


def test_every_crl_of_the_file_loads(pki):
    assert len(load_crls(pki["crl"])) == 2
    ServerTLS(pki["cert"], pki["key"], pki["ca"], crl_path=pki["crl"])


@pytest.mark.parametrize("name, message", [
    ("garbage", "ssl_crl_file: {path} holds no PEM certificate revocation list"),
    ("broken", "ssl_crl_file: {path} holds a CRL that cannot be parsed"),
    ("missing", "ssl_crl_file: cannot read {path}: No such file or directory"),
])
def test_a_crl_file_that_does_not_load_is_an_error(pki, name, message):
    path = pki.get(name) or str(pki["dir"] / "missing.pem")
    with pytest.raises(ConfigError) as exc:
        ServerTLS(pki["cert"], pki["key"], pki["ca"], crl_path=path)
    assert str(exc.value) == message.format(path=path)


def test_a_crl_needs_a_ca(pki):
    with pytest.raises(ConfigError, match="^ssl_crl_file: needs ssl_ca_cert or ssl_ca_cert_dir"):
        ServerTLS(pki["cert"], pki["key"], crl_path=pki["crl"])


def test_ca_dir(pki, tmp_path):
    ServerTLS(pki["cert"], pki["key"], ca_dir=str(pki["dir"]))
    missing = str(tmp_path / "nope")
    with pytest.raises(ConfigError) as exc:
        ServerTLS(pki["cert"], pki["key"], ca_dir=missing)
    assert str(exc.value) == f"ssl_ca_cert_dir: {missing} is not a readable directory"
    # Backends: the directory's certificates are trusted (files that are not, skipped).
    assert client_tls("localhost", ca_dir=str(pki["dir"])) is not None
