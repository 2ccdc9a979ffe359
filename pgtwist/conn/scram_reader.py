"""A client's SCRAM-SHA-256 messages as the server reads them (RFC 5802, RFC 7677; channel
binding RFC 5929): client-first and client-final, checked in PostgreSQL's order with its
error texts (auth-scram.c). Pure functions; the exchange itself is client_auth.py's.
"""

from __future__ import annotations

import base64
from hmac import compare_digest

from ..wire.errors import FEATURE_NOT_SUPPORTED, ProtocolViolation
from . import scram

CHANNEL_BINDING_TYPE = b"tls-server-end-point"


def malformed(detail: str) -> ProtocolViolation:
    return ProtocolViolation(f"malformed SCRAM message: {detail}")


def printable(value: bytes) -> bool:
    return all(0x21 <= c <= 0x7E and c != 0x2C for c in value)


def attributes(message: bytes) -> list[tuple[bytes, bytes]]:
    """``k=v,...`` pairs (values may be empty, as libpq's ``n=``)."""
    pairs = []
    for part in message.split(b","):
        if len(part) < 2 or part[1:2] != b"=" or not part[:1].isalpha():
            raise malformed("attribute expected")
        pairs.append((part[:1], part[2:]))
    return pairs


def read_client_first(data: bytes, *, plus: bool,
                      binding_offered: bool) -> tuple[bytes, bytes, bytes]:
    """Check a client-first-message; its GS2 header, its bare part and the client's nonce.

    ``plus``: the client chose SCRAM-SHA-256-PLUS; ``binding_offered``: pgtwist offered it.
    """
    if not data:
        raise malformed("the message is empty")
    if b"\0" in data:
        raise malformed("the message contains a NUL byte")
    flag = data[:1]
    if flag in (b"n", b"y"):
        if data[1:2] != b",":
            raise malformed("comma expected after the channel-binding flag")
        if flag == b"y" and binding_offered:
            # RFC 5802 downgrade protection: we offered PLUS, the client says we did not.
            raise ProtocolViolation(
                "SCRAM channel binding negotiation error: the client supports SCRAM "
                "channel binding but thinks the server does not; this server does "
                "support channel binding"
            )
        if plus:
            raise malformed(
                "the client selected SCRAM-SHA-256-PLUS, but the SCRAM message does "
                "not include channel binding data"
            )
        pos = 2
    elif flag == b"p":
        if data[1:2] != b"=":
            raise malformed("'=' expected after 'p'")
        end = data.find(b",", 2)
        if end < 0:
            raise malformed("unterminated channel-binding type")
        if not plus:
            raise malformed(
                "the client selected SCRAM-SHA-256 without channel binding, but the "
                "SCRAM message includes channel binding data"
            )
        if data[2:end] != CHANNEL_BINDING_TYPE:
            raise ProtocolViolation("unsupported SCRAM channel-binding type")
        pos = end + 1
    else:
        raise malformed("unexpected channel-binding flag")
    if data[pos:pos + 1] == b"a":
        raise ProtocolViolation(
            "client uses authorization identity, but it is not supported",
            FEATURE_NOT_SUPPORTED,
        )
    if data[pos:pos + 1] != b",":
        raise malformed("comma expected after the authorization identity")
    gs2_header = data[:pos + 1]
    bare = data[pos + 1:]
    attrs = attributes(bare)
    if attrs and attrs[0][0] == b"m":
        raise ProtocolViolation(
            "client requires an unsupported SCRAM extension", FEATURE_NOT_SUPPORTED
        )
    if len(attrs) < 2 or attrs[0][0] != b"n" or attrs[1][0] != b"r":
        raise malformed("expected username and nonce in client-first-message")
    client_nonce = attrs[1][1]
    if not client_nonce or not printable(client_nonce):
        raise malformed("the client nonce contains invalid characters")
    return gs2_header, bare, client_nonce


def read_client_final(data: bytes, *, gs2_header: bytes, channel_binding: bytes | None,
                      nonce: bytes) -> tuple[bytes, bytes]:
    """Check a client-final-message against the exchange so far; the proof, and the message
    without it (the end of the AuthMessage)."""
    if b"\0" in data:
        raise malformed("the message contains a NUL byte")
    attrs = attributes(data)
    if len(attrs) < 3 or attrs[0][0] != b"c" or attrs[1][0] != b"r" or attrs[-1][0] != b"p":
        raise malformed("expected channel binding, nonce and proof in client-final-message")
    if any(key == b"p" for key, _ in attrs[2:-1]):
        raise malformed("garbage found at the end of client-final-message")
    cbind_input = gs2_header
    if gs2_header.startswith(b"p="):
        cbind_input += channel_binding
    if not compare_digest(attrs[0][1], base64.b64encode(cbind_input)):
        if gs2_header.startswith(b"p="):
            raise ProtocolViolation("SCRAM channel binding check failed")
        raise ProtocolViolation(
            "unexpected SCRAM channel-binding attribute in client-final-message"
        )
    if not compare_digest(attrs[1][1], nonce):
        raise ProtocolViolation("invalid SCRAM response: nonce does not match")
    try:
        proof = base64.b64decode(attrs[-1][1], validate=True)
    except ValueError:
        proof = b""
    if len(proof) != scram.KEY_LENGTH:
        raise malformed("malformed proof in client-final-message")
    without_proof = data[: len(data) - len(attrs[-1][1]) - 3]  # drop ",p=<proof>"
    return proof, without_proof
