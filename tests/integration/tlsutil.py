"""Throwaway X.509 material for the TLS tests, made with ``cryptography``.

:func:`make_pki` writes, into one folder, a test CA, a second unrelated CA, a server
certificate for 127.0.0.1 / localhost signed by the test CA, and client certificates.
Every file is mode 0600 (the private keys must be; the rest does no harm).
"""

from __future__ import annotations

import datetime
import ipaddress
import os
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = ["CA", "Pki", "make_ca", "make_pki", "write_pem"]


def write_pem(path: Path, data: bytes) -> str:
    """Write ``data`` to a new 0600 file (whatever the umask); return its path."""
    path = Path(path)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        os.fchmod(f.fileno(), 0o600)
        f.write(data)
    return str(path)


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _key_pem(key) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _name(cn: str) -> x509.Name:
    return x509.Name([
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "pgtwist tests"),
        x509.NameAttribute(NameOID.COMMON_NAME, cn),
    ])


def _validity(builder: x509.CertificateBuilder) -> x509.CertificateBuilder:
    now = datetime.datetime.now(datetime.timezone.utc)
    return builder.not_valid_before(now - datetime.timedelta(hours=1)).not_valid_after(
        now + datetime.timedelta(days=2)
    )


@dataclass
class CA:
    name: str
    key: ec.EllipticCurvePrivateKey
    cert: x509.Certificate
    cert_path: str = ""

    def issue(self, cn: str, *, server: bool = False, ips: tuple[str, ...] = (),
              dns: tuple[str, ...] = ()) -> tuple[bytes, bytes]:
        """A leaf certificate signed by this CA: (certificate PEM, key PEM)."""
        key = _key()
        builder = (
            x509.CertificateBuilder()
            .subject_name(_name(cn))
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True, key_encipherment=False, content_commitment=False,
                    data_encipherment=False, key_agreement=True, key_cert_sign=False,
                    crl_sign=False, encipher_only=False, decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(
                x509.ExtendedKeyUsage(
                    [ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH]
                ),
                critical=False,
            )
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()),
                critical=False,
            )
        )
        names: list[x509.GeneralName] = [x509.DNSName(d) for d in dns]
        names += [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
        if names:
            builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
        cert = _validity(builder).sign(self.key, hashes.SHA256())
        return _cert_pem(cert), _key_pem(key)


def make_ca(name: str) -> CA:
    key = _key()
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(name))
        .issuer_name(_name(name))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, key_encipherment=False, content_commitment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=True,
                crl_sign=True, encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )
    return CA(name, key, _validity(builder).sign(key, hashes.SHA256()))


@dataclass
class Pki:
    """Paths of everything :func:`make_pki` wrote."""

    directory: str
    ca: str                 # the test CA's certificate
    other_ca: str           # an unrelated CA's certificate
    server_cert: str        # CN=localhost, SAN DNS:localhost, IP:127.0.0.1; signed by ca
    server_key: str
    clients: dict[str, tuple[str, str]] = field(default_factory=dict)  # CN -> (cert, key)
    foreign_clients: dict[str, tuple[str, str]] = field(default_factory=dict)  # by other_ca


def make_pki(directory: Path | str, client_cns: tuple[str, ...] = (),
             foreign_client_cns: tuple[str, ...] = ()) -> Pki:
    """Write a CA, another CA, a server certificate and client certificates to ``directory``.

    ``client_cns`` get certificates from the test CA, ``foreign_client_cns`` from the other.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    ca = make_ca("pgtwist test CA")
    other = make_ca("some other CA")
    ca_path = write_pem(directory / "ca.crt", _cert_pem(ca.cert))
    other_path = write_pem(directory / "other_ca.crt", _cert_pem(other.cert))
    cert, key = ca.issue("localhost", server=True, ips=("127.0.0.1",), dns=("localhost",))
    pki = Pki(
        str(directory), ca_path, other_path,
        write_pem(directory / "server.crt", cert), write_pem(directory / "server.key", key),
    )
    for issuer, cns, out, prefix in ((ca, client_cns, pki.clients, "client"),
                                     (other, foreign_client_cns, pki.foreign_clients, "foreign")):
        for i, cn in enumerate(cns):
            cert, key = issuer.issue(cn)
            out[cn] = (write_pem(directory / f"{prefix}{i}.crt", cert),
                       write_pem(directory / f"{prefix}{i}.key", key))
    return pki
