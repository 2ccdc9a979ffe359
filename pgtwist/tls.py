"""TLS for both sides: pyOpenSSL contexts built once from the configuration.

Frontend: a client's SSLRequest is answered 'S' when ``ssl`` is on with a
certificate and key; ``ssl_ca_cert`` and/or ``ssl_ca_cert_dir`` make pgtwist ask
for (and verify) client certificates, which the ``cert`` method of pool_hba.conf
needs, and ``ssl_crl_file`` refuses revoked ones (as PostgreSQL, every
certificate of the chain is checked, so each issuing CA needs a CRL in the file).
Backend: with ``ssl`` on, pgtwist sends SSLRequest to each server and, if the
server agrees, talks TLS, verifying the server against ``ssl_ca_cert`` /
``ssl_ca_cert_dir`` when set.  A setting that cannot be loaded stops the start.
"""

from __future__ import annotations

import hashlib
import os
import re

from OpenSSL import SSL, crypto
from twisted.internet import ssl as tssl
from twisted.internet.interfaces import IOpenSSLContextFactory
from zope.interface import implementer

from .errors import ConfigError

_WEAK_HASHES = ("md5", "sha1")


@implementer(IOpenSSLContextFactory)
class ServerTLS:
    """An IOpenSSLContextFactory for the client-facing side."""

    def __init__(self, cert_path: str, key_path: str, ca_path: str = "", ciphers: str = "",
                 prefer_server_ciphers: bool = False, ca_dir: str = "", crl_path: str = ""):
        ctx = SSL.Context(SSL.TLS_SERVER_METHOD)
        ctx.set_min_proto_version(SSL.TLS1_2_VERSION)
        try:
            ctx.use_certificate_chain_file(cert_path.encode())
            ctx.use_privatekey_file(key_path.encode())
            ctx.check_privatekey()
        except SSL.Error as exc:
            raise ConfigError(f"ssl_cert/ssl_key: cannot use {cert_path} and {key_path}: "
                              f"{_ssl_reason(exc)}") from None
        if ciphers:
            try:
                ctx.set_cipher_list(ciphers.encode())
            except SSL.Error:
                raise ConfigError(f"ssl_ciphers: no usable cipher in {ciphers!r}") from None
        if prefer_server_ciphers:
            ctx.set_options(SSL.OP_CIPHER_SERVER_PREFERENCE)
        ctx.set_options(SSL.OP_NO_COMPRESSION)
        if ca_path or ca_dir:
            _load_ca(ctx, ca_path, ca_dir)
            if crl_path:
                store = ctx.get_cert_store()
                for crl in load_crls(crl_path):
                    store.add_crl(crl)
                store.set_flags(crypto.X509StoreFlags.CRL_CHECK
                                | crypto.X509StoreFlags.CRL_CHECK_ALL)
            # Ask for a certificate and verify one if sent; the cert method requires it.
            ctx.set_verify(SSL.VERIFY_PEER, _keep_verdict)
        elif crl_path:
            raise ConfigError("ssl_crl_file: needs ssl_ca_cert or ssl_ca_cert_dir (client "
                              "certificates are only checked against a CA)")
        ctx.set_session_id(b"pgtwist")
        self._ctx = ctx
        self.channel_binding = tls_server_end_point(open(cert_path, "rb").read())

    def getContext(self):
        return self._ctx


def _load_ca(ctx: SSL.Context, ca_path: str, ca_dir: str) -> None:
    if ca_path:
        try:
            ctx.load_verify_locations(ca_path.encode())
        except SSL.Error as exc:
            raise ConfigError(f"ssl_ca_cert: cannot load {ca_path}: {_ssl_reason(exc)}") from None
    if ca_dir:
        # OpenSSL reads the directory lazily, by subject hash (c_rehash / openssl rehash
        # names): only whether it is a readable directory can be checked up front.
        if not os.path.isdir(ca_dir) or not os.access(ca_dir, os.R_OK | os.X_OK):
            raise ConfigError(f"ssl_ca_cert_dir: {ca_dir} is not a readable directory")
        try:
            ctx.load_verify_locations(None, ca_dir.encode())
        except SSL.Error as exc:
            raise ConfigError(f"ssl_ca_cert_dir: cannot use {ca_dir}: {_ssl_reason(exc)}") from None


def load_crls(path: str) -> list:
    """Every CRL of a PEM file (as PostgreSQL's ssl_crl_file); ConfigError if none loads."""
    from cryptography import x509

    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as exc:
        raise ConfigError(f"ssl_crl_file: cannot read {path}: {exc.strerror or exc}") from None
    crls = []
    for block in _PEM_CRL.findall(data):
        try:
            crls.append(x509.load_pem_x509_crl(block))
        except ValueError:
            raise ConfigError(f"ssl_crl_file: {path} holds a CRL that cannot be parsed") from None
    if not crls:
        raise ConfigError(f"ssl_crl_file: {path} holds no PEM certificate revocation list")
    return crls


_PEM_CRL = re.compile(rb"-----BEGIN X509 CRL-----\r?\n.*?-----END X509 CRL-----", re.S)


def _keep_verdict(conn, cert, errno, depth, ok) -> bool:
    return bool(ok)


def _ssl_reason(exc: SSL.Error) -> str:
    try:
        return "; ".join(str(part[2]) for part in exc.args[0]) or str(exc)
    except (IndexError, TypeError):
        return str(exc)


def tls_server_end_point(cert_pem: bytes) -> bytes:
    """RFC 5929 channel-binding data: the certificate's hash (SHA-256 for MD5/SHA-1)."""
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding

    cert = x509.load_pem_x509_certificate(cert_pem)
    algorithm = cert.signature_hash_algorithm
    name = algorithm.name if algorithm is not None else "sha256"
    if name in _WEAK_HASHES:
        name = "sha256"
    return hashlib.new(name, cert.public_bytes(Encoding.DER)).digest()


def client_tls(hostname: str, ca_path: str = "", ca_dir: str = ""):
    """Context factory for TLS to a backend: verified against ``ca_path`` / ``ca_dir``
    if either is given."""
    if ca_dir:
        pems = _pem_certificates(ca_path) if ca_path else []
        for entry in sorted(os.listdir(ca_dir)):
            pems.extend(_pem_certificates(os.path.join(ca_dir, entry)))
        roots = [tssl.Certificate.loadPEM(pem) for pem in pems]
        return tssl.optionsForClientTLS(hostname, trustRoot=tssl.trustRootFromCertificates(roots))
    if ca_path:
        with open(ca_path, "rb") as f:
            root = tssl.Certificate.loadPEM(f.read())
        return tssl.optionsForClientTLS(hostname, trustRoot=root)
    # Like libpq's sslmode=require: encrypted, server not verified.
    return tssl.CertificateOptions(verify=False, raiseMinimumTo=tssl.TLSVersion.TLSv1_2)


def _pem_certificates(path: str) -> list[bytes]:
    """The PEM certificates in a file; none from a file that is not one (a CRL, say)."""
    if not os.path.isfile(path):
        return []
    with open(path, "rb") as f:
        return _PEM_CERT.findall(f.read())


_PEM_CERT = re.compile(rb"-----BEGIN CERTIFICATE-----\r?\n.*?-----END CERTIFICATE-----", re.S)


def peer_common_name(transport) -> str | None:
    """CN of the client's verified certificate, if it sent one."""
    get = getattr(transport, "getPeerCertificate", None)
    cert = get() if get is not None else None
    if cert is None:
        return None
    for key, value in cert.get_subject().get_components():
        if key == b"CN":
            return value.decode("utf-8", "replace")
    return None


def server_tls_from_config(config) -> ServerTLS | None:
    o = config.tls
    if not o.enabled:
        return None
    if not o.cert or not o.key:
        raise ConfigError("ssl: on needs ssl_cert and ssl_key")
    return ServerTLS(o.cert, o.key, o.ca_cert, o.ciphers, o.prefer_server_ciphers,
                     ca_dir=o.ca_cert_dir, crl_path=o.crl_file)
