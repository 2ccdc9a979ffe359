"""Password maths for authenticating to a backend (the client side of auth).

SCRAM with a password comes from scramp; SCRAM from a ClientKey (pass-through)
is in :mod:`pgtwist.conn.scram`, because scramp cannot do it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from scramp import ScramClient

SCRAM_MECHANISM = "SCRAM-SHA-256"


@dataclass(frozen=True)
class Secret:
    """What pgtwist knows about a user's password for logging in to a backend.

    ``plaintext`` drives every method; ``md5`` (the pool_passwd form
    ``md5`` + md5(password || user)) drives only md5 authentication.
    ``client_key`` with ``scram_verifier`` (the ``SCRAM-SHA-256$...`` text the
    key belongs to) drives only SCRAM-SHA-256, against servers storing that same
    verifier: the ClientKey recovered from a client's own SCRAM exchange
    (SCRAM pass-through, see :mod:`pgtwist.conn.scram`).
    """

    plaintext: str | None = None
    md5: str | None = None
    client_key: bytes | None = None
    scram_verifier: str | None = None

    def __repr__(self) -> str:  # never show the secret
        text = f"Secret(plaintext={'set' if self.plaintext else None}, md5={'set' if self.md5 else None}"
        if self.client_key or self.scram_verifier:
            text += (
                f", client_key={'set' if self.client_key else None}"
                f", scram_verifier={'set' if self.scram_verifier else None}"
            )
        return text + ")"

    @property
    def can_scram_pass_through(self) -> bool:
        return bool(self.client_key and self.scram_verifier)


def md5_inner(password: str, user: str) -> str:
    """The value stored by md5 password_encryption: 'md5' + md5(password || user)."""
    return "md5" + hashlib.md5((password + user).encode("utf-8")).hexdigest()


def md5_response(secret: Secret, user: str, salt: bytes) -> bytes | None:
    """Answer to AuthenticationMD5Password, or None if the secret cannot drive it."""
    if secret.plaintext is not None:
        inner = md5_inner(secret.plaintext, user)
    elif secret.md5:
        inner = secret.md5
    else:
        return None
    outer = hashlib.md5(inner[3:].encode("ascii") + salt).hexdigest()
    return b"md5" + outer.encode("ascii") + b"\0"


class ScramExchange:
    """Client side of SCRAM-SHA-256 via scramp, one instance per login."""

    def __init__(self, user: str, password: str):
        self._client = ScramClient([SCRAM_MECHANISM], user, password)

    def first(self) -> bytes:
        return self._client.get_client_first().encode("utf-8")

    def final(self, server_first: bytes) -> bytes:
        self._client.set_server_first(server_first.decode("utf-8"))
        return self._client.get_client_final().encode("utf-8")

    def verify(self, server_final: bytes) -> None:
        """Raise if the server's signature is wrong (a server that fakes success)."""
        self._client.set_server_final(server_final.decode("utf-8"))
