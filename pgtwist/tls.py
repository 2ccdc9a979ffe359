"""TLS for both sides: pyOpenSSL contexts built once from the configuration.

Frontend: a client's SSLRequest is answered 'S' when ``ssl`` is on with a
certificate and key; ``ssl_ca_cert`` makes pgtwist ask for (and verify) client
certificates, which the ``cert`` method of pool_hba.conf needs.  Backend: with
``ssl`` on, pgtwist sends SSLRequest to each server and, if the server agrees,
talks TLS, verifying the server against ``ssl_ca_cert`` when one is set.
"""

from __future__ import annotations

import hashlib

from OpenSSL import SSL
from twisted.internet import ssl as tssl
from twisted.internet.interfaces import IOpenSSLContextFactory
from zope.interface import implementer

from .config import ConfigError

_WEAK_HASHES = ("md5", "sha1")


@implementer(IOpenSSLContextFactory)
class ServerTLS:
    """An IOpenSSLContextFactory for the client-facing side."""

    def __init__(self, cert_path: str, key_path: str, ca_path: str = "", ciphers: str = "",
                 prefer_server_ciphers: bool = False):
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
        if ca_path:
            try:
                ctx.load_verify_locations(ca_path.encode())
            except SSL.Error as exc:
                raise ConfigError(f"ssl_ca_cert: cannot load {ca_path}: {_ssl_reason(exc)}") from None
            # Ask for a certificate and verify one if sent; the cert method requires it.
            ctx.set_verify(SSL.VERIFY_PEER, _keep_verdict)
        ctx.set_session_id(b"pgtwist")
        self._ctx = ctx
        self.channel_binding = tls_server_end_point(open(cert_path, "rb").read())

    def getContext(self):
        return self._ctx


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


def client_tls(hostname: str, ca_path: str = ""):
    """Context factory for TLS to a backend: verified against ``ca_path`` if given."""
    if ca_path:
        with open(ca_path, "rb") as f:
            root = tssl.Certificate.loadPEM(f.read())
        return tssl.optionsForClientTLS(hostname, trustRoot=root)
    # Like libpq's sslmode=require: encrypted, server not verified.
    return tssl.CertificateOptions(verify=False, raiseMinimumTo=tssl.TLSVersion.TLSv1_2)


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
    p = config.params
    if not p.get("ssl"):
        return None
    if not p.get("ssl_cert") or not p.get("ssl_key"):
        raise ConfigError("ssl: on needs ssl_cert and ssl_key")
    return ServerTLS(p["ssl_cert"], p["ssl_key"], p.get("ssl_ca_cert", ""),
                     p.get("ssl_ciphers", ""), bool(p.get("ssl_prefer_server_ciphers", False)))
