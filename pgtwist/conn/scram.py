"""SCRAM-SHA-256 maths scramp does not offer: working from a verifier and a ClientKey.

PostgreSQL stores ``SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>``
(RFC 5802 / RFC 7677), where, with ``H`` = SHA-256 and ``HMAC`` = HMAC-SHA-256::

    SaltedPassword  = PBKDF2-HMAC-SHA-256(SASLprep(password), salt, iterations)
    ClientKey       = HMAC(SaltedPassword, "Client Key")
    StoredKey       = H(ClientKey)
    ServerKey       = HMAC(SaltedPassword, "Server Key")
    ClientSignature = HMAC(StoredKey, AuthMessage)
    ClientProof     = ClientKey XOR ClientSignature
    ServerSignature = HMAC(ServerKey, AuthMessage)

A server holding the verifier checks a proof by recovering
``ClientKey = ClientProof XOR ClientSignature`` and testing ``H(ClientKey) ==
StoredKey``.  That recovered ClientKey is all a client needs to log in again to
any server holding the same verifier (same salt and iteration count), with a new
AuthMessage: this is PgBouncer's "SCRAM pass-through", and what
:class:`KeyScramClient` does.  Its ServerKey (from the verifier) still lets it
check that the backend knows the verifier too.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
from dataclasses import dataclass, field
from hmac import compare_digest

from scramp.utils import saslprep  # scramp's own SASLprep (RFC 4013), as its client uses

__all__ = [
    "KEY_LENGTH",
    "KeyScramClient",
    "ScramError",
    "Verifier",
    "VerifierFormatError",
    "VerifierMismatch",
    "client_proof",
    "derive_verifier",
    "format_verifier",
    "parse_verifier",
    "prepare_password",
    "recover_client_key",
    "server_signature",
    "tls_server_end_point",
]

PREFIX = "SCRAM-SHA-256"
KEY_LENGTH = 32  # SHA-256 digest size
_MAX_ITERATIONS = 2**31 - 1  # PostgreSQL's scram_iterations is an int


class ScramError(Exception):
    """A SCRAM exchange cannot go on (bad message, bad signature, ...)."""


class VerifierMismatch(ScramError):
    """The server's salt or iteration count differ from the verifier's."""


class VerifierFormatError(ScramError, ValueError):
    """A stored verifier that is not ``SCRAM-SHA-256$i:salt$stored:server``.

    The message never quotes the verifier: its keys are secrets.
    """


@dataclass(frozen=True)
class Verifier:
    """A parsed ``pg_authid.rolpassword`` SCRAM-SHA-256 verifier."""

    iterations: int
    salt: bytes
    stored_key: bytes = field(repr=False)
    server_key: bytes = field(repr=False)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: str | bytes) -> bytes:
    """Strict base64 (no stray characters); raises ``binascii.Error``/``ValueError``."""
    return base64.b64decode(text, validate=True)


def parse_verifier(text: str) -> Verifier:
    """Parse PostgreSQL's stored form; raise :class:`VerifierFormatError` if malformed."""
    if not isinstance(text, str):
        raise VerifierFormatError("SCRAM verifier must be a string")
    parts = text.split("$")
    if len(parts) != 3 or parts[0] != PREFIX:
        raise VerifierFormatError("not a SCRAM-SHA-256 verifier")
    iterations_text, sep1, salt_text = parts[1].partition(":")
    stored_text, sep2, server_text = parts[2].partition(":")
    if not (sep1 and sep2):
        raise VerifierFormatError("malformed SCRAM-SHA-256 verifier")
    if not iterations_text.isascii() or not iterations_text.isdigit():
        raise VerifierFormatError("malformed iteration count in SCRAM-SHA-256 verifier")
    iterations = int(iterations_text)
    if not 1 <= iterations <= _MAX_ITERATIONS:
        raise VerifierFormatError("iteration count out of range in SCRAM-SHA-256 verifier")
    try:
        salt = _unb64(salt_text)
        stored_key = _unb64(stored_text)
        server_key = _unb64(server_text)
    except (binascii.Error, ValueError):
        raise VerifierFormatError("invalid base64 in SCRAM-SHA-256 verifier") from None
    if not salt:
        raise VerifierFormatError("empty salt in SCRAM-SHA-256 verifier")
    if len(stored_key) != KEY_LENGTH or len(server_key) != KEY_LENGTH:
        raise VerifierFormatError("wrong key length in SCRAM-SHA-256 verifier")
    return Verifier(iterations, salt, stored_key, server_key)


def format_verifier(verifier: Verifier) -> str:
    """The ``pg_authid.rolpassword`` text for ``verifier``."""
    return (
        f"{PREFIX}${verifier.iterations}:{_b64(verifier.salt)}"
        f"${_b64(verifier.stored_key)}:{_b64(verifier.server_key)}"
    )


def prepare_password(password: str | bytes) -> bytes:
    """SASLprep the password as PostgreSQL does: if it is not valid UTF-8 or SASLprep
    rejects it, PostgreSQL (server and libpq alike) hashes the raw bytes instead."""
    if isinstance(password, bytes):
        try:
            password = password.decode("utf-8")
        except UnicodeDecodeError:
            return password
    try:
        return saslprep(password).encode("utf-8")
    except Exception:  # noqa: BLE001 - scramp raises ScramException for prohibited input
        return password.encode("utf-8", "surrogateescape")


def _hmac(key: bytes, msg: bytes) -> bytes:
    return hmac.new(key, msg, hashlib.sha256).digest()


def _xor(a: bytes, b: bytes) -> bytes:
    return bytes(x ^ y for x, y in zip(a, b, strict=True))


def password_keys(password: str | bytes, salt: bytes, iterations: int) -> tuple[bytes, bytes, bytes]:
    """(ClientKey, StoredKey, ServerKey) for a password; costs ``iterations`` HMACs."""
    salted = hashlib.pbkdf2_hmac("sha256", prepare_password(password), salt, iterations)
    client_key = _hmac(salted, b"Client Key")
    return client_key, hashlib.sha256(client_key).digest(), _hmac(salted, b"Server Key")


def derive_verifier(password: str | bytes, salt: bytes, iterations: int = 4096) -> Verifier:
    """The verifier PostgreSQL would store for ``password`` with this salt."""
    _, stored_key, server_key = password_keys(password, salt, iterations)
    return Verifier(iterations, salt, stored_key, server_key)


def recover_client_key(verifier: Verifier, auth_message: bytes, proof: bytes) -> bytes | None:
    """The ClientKey behind a client's proof, or None if the proof is wrong."""
    if len(proof) != KEY_LENGTH:
        return None
    client_key = _xor(proof, _hmac(verifier.stored_key, auth_message))
    if not compare_digest(hashlib.sha256(client_key).digest(), verifier.stored_key):
        return None
    return client_key


def client_proof(client_key: bytes, stored_key: bytes, auth_message: bytes) -> bytes:
    """ClientKey XOR HMAC(StoredKey, AuthMessage)."""
    return _xor(client_key, _hmac(stored_key, auth_message))


def server_signature(server_key: bytes, auth_message: bytes) -> bytes:
    """HMAC(ServerKey, AuthMessage): what the server sends as ``v=``."""
    return _hmac(server_key, auth_message)


def tls_server_end_point(der_certificate: bytes) -> bytes:
    """RFC 5929 ``tls-server-end-point`` data for a DER certificate.

    The certificate's signature hash, with MD5 and SHA-1 upgraded to SHA-256 (what
    PostgreSQL's be_tls_get_certificate_hash does); via scramp's asn1crypto.
    """
    from scramp.core import CBindData  # not in scramp's public API; lazy to keep imports light

    return bytes(CBindData.from_der(der_certificate))


# -- the client side, from a ClientKey --------------------------------------------------


def _attributes(message: bytes) -> list[tuple[bytes, bytes]]:
    """``a=x,b=y`` as pairs; each attribute a single ASCII letter."""
    pairs = []
    for part in message.split(b","):
        if len(part) < 2 or part[1:2] != b"=" or not part[:1].isalpha():
            raise ScramError("malformed SCRAM message from server")
        pairs.append((part[:1], part[2:]))
    return pairs


def _escape_user(user: str) -> bytes:
    return user.replace("=", "=3D").replace(",", "=2C").encode("utf-8")


class KeyScramClient:
    """Client side of SCRAM-SHA-256 driven by a ClientKey and the user's verifier.

    Same interface as :class:`pgtwist.conn.auth.ScramExchange`: ``first()``,
    ``final(server_first)``, ``verify(server_final)``; errors are
    :class:`ScramError` (:class:`VerifierMismatch` when the server's salt or
    iteration count are not the verifier's: it stores another password).
    """

    def __init__(self, user: str, client_key: bytes, verifier: Verifier | str, nonce: str | None = None):
        if isinstance(verifier, str):
            verifier = parse_verifier(verifier)
        if len(client_key) != KEY_LENGTH:
            raise ScramError("a SCRAM ClientKey is 32 bytes")
        self._user = user
        self._client_key = client_key
        self._verifier = verifier
        if nonce is None:
            nonce = _b64(secrets.token_bytes(18))
        self._nonce = nonce.encode("ascii")
        self._client_first_bare = b""
        self._auth_message: bytes | None = None

    def first(self) -> bytes:
        self._client_first_bare = b"n=" + _escape_user(self._user) + b",r=" + self._nonce
        return b"n,," + self._client_first_bare

    def final(self, server_first: bytes) -> bytes:
        if self._auth_message is not None or not self._client_first_bare:
            raise ScramError("SCRAM messages out of order")
        attrs = _attributes(bytes(server_first))
        if attrs and attrs[0][0] == b"e":
            raise ScramError("server reported a SCRAM error")
        if [k for k, _ in attrs[:3]] != [b"r", b"s", b"i"]:
            raise ScramError("malformed SCRAM server-first-message")
        if any(k == b"m" for k, _ in attrs[3:]):
            raise ScramError("server requires an unsupported SCRAM extension")
        nonce, salt_text, iterations_text = (v for _, v in attrs[:3])
        if not nonce.startswith(self._nonce) or len(nonce) <= len(self._nonce):
            raise ScramError("SCRAM server nonce does not extend ours")
        try:
            salt = _unb64(salt_text)
        except (binascii.Error, ValueError):
            raise ScramError("invalid salt in SCRAM server-first-message") from None
        if not iterations_text.isdigit():
            raise ScramError("invalid iteration count in SCRAM server-first-message")
        if salt != self._verifier.salt or int(iterations_text) != self._verifier.iterations:
            raise VerifierMismatch("server uses a different SCRAM verifier for this user")
        without_proof = b"c=biws,r=" + nonce  # biws = base64("n,,"): no channel binding
        self._auth_message = self._client_first_bare + b"," + bytes(server_first) + b"," + without_proof
        proof = client_proof(self._client_key, self._verifier.stored_key, self._auth_message)
        return without_proof + b",p=" + _b64(proof).encode("ascii")

    def verify(self, server_final: bytes) -> None:
        """Raise unless the server proved it holds the verifier's ServerKey."""
        if self._auth_message is None:
            raise ScramError("SCRAM messages out of order")
        attrs = _attributes(bytes(server_final))
        if attrs and attrs[0][0] == b"e":
            raise ScramError("server reported a SCRAM error")
        if not attrs or attrs[0][0] != b"v":
            raise ScramError("malformed SCRAM server-final-message")
        try:
            signature = _unb64(attrs[0][1])
        except (binascii.Error, ValueError):
            raise ScramError("invalid SCRAM server signature") from None
        expected = server_signature(self._verifier.server_key, self._auth_message)
        if not compare_digest(signature, expected):
            raise ScramError("server's SCRAM signature did not verify")
