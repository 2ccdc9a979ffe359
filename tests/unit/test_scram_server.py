"""SCRAM maths from a verifier and a ClientKey (pgtwist.conn.scram), checked against
RFC 7677's example and scramp's own client and server; and BackendLogin using it."""

from __future__ import annotations

import base64
import hashlib
import hmac
import struct

import pytest
from scramp import ScramException, ScramMechanism

from pgtwist.conn import scram
from pgtwist.conn.auth import Secret
from pgtwist.conn.backend import BackendLogin, LoginFailed, LoginState
from pgtwist.wire import codes
from pgtwist.wire.decode import decode_sasl_initial_response

from .test_layering import loaded_forbidden

R, S, K, Z = (ord(c) for c in "RSKZ")


def make_verifier(password: str, salt: bytes | None = None, iterations: int = 4096) -> str:
    """PostgreSQL's rolpassword text for a password, made by scramp."""
    salt, stored_key, server_key, i = ScramMechanism().make_auth_info(
        password, iteration_count=iterations, salt=salt
    )
    b64 = base64.b64encode
    return f"SCRAM-SHA-256${i}:{b64(salt).decode()}${b64(stored_key).decode()}:{b64(server_key).decode()}"


def scramp_server(verifier: str, **kwargs):
    """A scramp ScramServer whose user store holds ``verifier`` (the backend's pg_authid)."""
    v = scram.parse_verifier(verifier)
    return ScramMechanism().make_server(
        lambda _user: (v.salt, v.stored_key, v.server_key, v.iterations), **kwargs
    )


def run_against_scramp(client: scram.KeyScramClient, server) -> None:
    server.set_client_first(client.first().decode())
    final = client.final(server.get_server_first().encode())
    server.set_client_final(final.decode())
    client.verify(server.get_server_final().encode())


# -- RFC 7677 section 3 example (user "user", password "pencil") -----------------------------

RFC_SALT = base64.b64decode("W22ZaJ0SNY7soEsUEjb6gQ==")
RFC_CLIENT_NONCE = "rOprNGfwEbeRWgbNEkqO"
RFC_SERVER_FIRST = b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"
RFC_CLIENT_FINAL = (
    b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
    b"p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
)
RFC_SERVER_FINAL = b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="
RFC_AUTH_MESSAGE = (
    b"n=user,r=rOprNGfwEbeRWgbNEkqO," + RFC_SERVER_FIRST + b","
    + RFC_CLIENT_FINAL[: RFC_CLIENT_FINAL.index(b",p=")]
)


def test_rfc7677_example_with_key_client():
    verifier = scram.derive_verifier("pencil", RFC_SALT, 4096)
    client_key, _, _ = scram.password_keys("pencil", RFC_SALT, 4096)
    client = scram.KeyScramClient("user", client_key, verifier, nonce=RFC_CLIENT_NONCE)
    assert client.first() == b"n,,n=user,r=" + RFC_CLIENT_NONCE.encode()
    assert client.final(RFC_SERVER_FIRST) == RFC_CLIENT_FINAL
    client.verify(RFC_SERVER_FINAL)


def test_rfc7677_example_recovers_client_key():
    verifier = scram.derive_verifier("pencil", RFC_SALT, 4096)
    proof = base64.b64decode(RFC_CLIENT_FINAL.rsplit(b"p=", 1)[1])
    client_key = scram.recover_client_key(verifier, RFC_AUTH_MESSAGE, proof)
    assert client_key == scram.password_keys("pencil", RFC_SALT, 4096)[0]
    assert hashlib.sha256(client_key).digest() == verifier.stored_key
    assert scram.client_proof(client_key, verifier.stored_key, RFC_AUTH_MESSAGE) == proof
    assert base64.b64encode(scram.server_signature(verifier.server_key, RFC_AUTH_MESSAGE)) == (
        RFC_SERVER_FINAL[2:]
    )


def test_recover_client_key_rejects_wrong_proofs():
    verifier = scram.derive_verifier("pencil", RFC_SALT, 4096)
    proof = bytearray(base64.b64decode(RFC_CLIENT_FINAL.rsplit(b"p=", 1)[1]))
    proof[0] ^= 1
    assert scram.recover_client_key(verifier, RFC_AUTH_MESSAGE, bytes(proof)) is None
    assert scram.recover_client_key(verifier, RFC_AUTH_MESSAGE, bytes(proof[:31])) is None
    assert scram.recover_client_key(verifier, RFC_AUTH_MESSAGE + b"x", bytes(proof)) is None


# -- verifiers ------------------------------------------------------------------------------

def test_parse_and_format_round_trip_with_scramp():
    text = make_verifier("correct horse", salt=b"0123456789abcdef")
    v = scram.parse_verifier(text)
    assert v.iterations == 4096
    assert v.salt == b"0123456789abcdef"
    salt, stored_key, server_key, i = ScramMechanism().make_auth_info(
        "correct horse", iteration_count=4096, salt=b"0123456789abcdef"
    )
    assert (v.stored_key, v.server_key) == (stored_key, server_key)
    assert scram.format_verifier(v) == text


@pytest.mark.parametrize(
    "password",
    ["pencil", "s3cr3t é", "I\u00adX", "\u2168", "pass word with\u00a0nbsp"],
    ids=["ascii", "latin", "soft-hyphen", "roman-nine", "nbsp"],
)
def test_derive_verifier_matches_scramp(password):
    salt = bytes(range(16))
    assert scram.derive_verifier(password, salt, 4096) == scram.parse_verifier(
        make_verifier(password, salt=salt)
    )


def test_prohibited_password_is_hashed_raw_like_postgresql():
    # SASLprep forbids control characters; PostgreSQL then uses the raw bytes.
    assert scram.prepare_password("bell\x07") == b"bell\x07"
    assert scram.prepare_password(b"\xff\xfe") == b"\xff\xfe"
    assert scram.prepare_password("I\u00adX") == b"IX"
    with pytest.raises(ScramException):
        ScramMechanism().make_auth_info("bell\x07")


def test_verifier_repr_hides_keys():
    text = make_verifier("pw")
    v = scram.parse_verifier(text)
    shown = repr(v)
    for secret in (v.stored_key, v.server_key):
        assert repr(secret) not in shown
        assert base64.b64encode(secret).decode() not in shown


GOOD = make_verifier("pw", salt=b"0123456789abcdef")


@pytest.mark.parametrize(
    "text",
    [
        "",
        "md5" + "0" * 32,
        GOOD.replace("SCRAM-SHA-256", "SCRAM-SHA-1"),
        GOOD + "$",
        GOOD.replace("$", "!", 1),
        GOOD.replace("4096:", "4096", 1),
        GOOD.replace("4096", "0", 1),
        GOOD.replace("4096", "-1", 1),
        GOOD.replace("4096", "4k", 1),
        GOOD.replace("4096", "99999999999", 1),
        GOOD.replace("4096:", "4096:!!", 1),
        GOOD.replace("4096:MDEyMzQ1Njc4OWFiY2RlZg==", "4096:", 1),
        GOOD[:-4],
        GOOD.rsplit(":", 1)[0],
        GOOD.rsplit(":", 1)[0] + ":" + base64.b64encode(b"x" * 31).decode(),
    ],
)
def test_parse_verifier_rejects_bad_format(text):
    with pytest.raises(scram.VerifierFormatError) as exc:
        scram.parse_verifier(text)
    assert isinstance(exc.value, ValueError)
    stored_b64 = GOOD.split("$")[2].split(":")[0]
    assert stored_b64 not in str(exc.value)


def test_parse_verifier_rejects_non_strings():
    with pytest.raises(scram.VerifierFormatError):
        scram.parse_verifier(GOOD.encode())  # type: ignore[arg-type]


# -- KeyScramClient against scramp's server ---------------------------------------------------

def key_client_for(password: str, verifier: str, user: str = "alice") -> scram.KeyScramClient:
    v = scram.parse_verifier(verifier)
    client_key, _, _ = scram.password_keys(password, v.salt, v.iterations)
    return scram.KeyScramClient(user, client_key, verifier)


def test_key_client_logs_in_to_scramp_server():
    verifier = make_verifier("correct horse")
    run_against_scramp(key_client_for("correct horse", verifier), scramp_server(verifier))


def test_key_client_accepts_parsed_verifier():
    verifier = make_verifier("pw")
    v = scram.parse_verifier(verifier)
    client = scram.KeyScramClient("alice", scram.password_keys("pw", v.salt, v.iterations)[0], v)
    run_against_scramp(client, scramp_server(verifier))


def test_key_client_fails_against_other_salt():
    verifier = make_verifier("correct horse")
    other = make_verifier("correct horse")  # same password, fresh salt: another verifier
    client = key_client_for("correct horse", verifier)
    server = scramp_server(other)
    server.set_client_first(client.first().decode())
    with pytest.raises(scram.VerifierMismatch) as exc:
        client.final(server.get_server_first().encode())
    assert str(exc.value) == "server uses a different SCRAM verifier for this user"
    assert isinstance(exc.value, scram.ScramError)


def test_key_client_fails_against_other_iteration_count():
    salt = b"0123456789abcdef"
    client = key_client_for("pw", make_verifier("pw", salt=salt))
    server = scramp_server(make_verifier("pw", salt=salt, iterations=8192))
    server.set_client_first(client.first().decode())
    with pytest.raises(scram.VerifierMismatch):
        client.final(server.get_server_first().encode())


def test_key_client_with_wrong_key_is_refused_by_scramp():
    verifier = make_verifier("pw", salt=b"0123456789abcdef")
    v = scram.parse_verifier(verifier)
    wrong_key = scram.password_keys("not pw", v.salt, v.iterations)[0]
    client = scram.KeyScramClient("alice", wrong_key, verifier)
    server = scramp_server(verifier)
    server.set_client_first(client.first().decode())
    final = client.final(server.get_server_first().encode())
    with pytest.raises(ScramException):
        server.set_client_final(final.decode())


def test_key_client_rejects_forged_server_signature():
    # A server holding another verifier with the same salt/iterations cannot sign.
    salt = b"0123456789abcdef"
    client = key_client_for("pw", make_verifier("pw", salt=salt))
    impostor = scramp_server(make_verifier("other", salt=salt))
    impostor.set_client_first(client.first().decode())
    client.final(impostor.get_server_first().encode())
    forged = scram.server_signature(scram.parse_verifier(make_verifier("other", salt=salt)).server_key, b"x")
    with pytest.raises(scram.ScramError, match="did not verify"):
        client.verify(b"v=" + base64.b64encode(forged))


@pytest.mark.parametrize(
    "server_first",
    [
        b"",
        b"garbage",
        b"e=other-error",
        b"s=MDEy,r=abc,i=4096",
        b"r=someone-elses-nonce,s=MDEyMzQ1Njc4OWFiY2RlZg==,i=4096",
        b"r=NONCE,s=MDEyMzQ1Njc4OWFiY2RlZg==,i=4096",  # nonce not extended
        b"r=NONCEx,s=!!!,i=4096",
        b"r=NONCEx,s=MDEyMzQ1Njc4OWFiY2RlZg==,i=four",
        b"r=NONCEx,s=MDEyMzQ1Njc4OWFiY2RlZg==,i=4096,m=ext",
    ],
)
def test_key_client_rejects_bad_server_first(server_first):
    verifier = make_verifier("pw", salt=b"0123456789abcdef")
    client = scram.KeyScramClient("alice", bytes(32), verifier, nonce="NONCE")
    client.first()
    with pytest.raises(scram.ScramError):
        client.final(server_first)


@pytest.mark.parametrize("server_final", [b"", b"e=invalid-proof", b"v=!!!", b"x=1", b"v=" + b"A" * 44])
def test_key_client_rejects_bad_server_final(server_final):
    verifier = make_verifier("pw")
    client = key_client_for("pw", verifier)
    server = scramp_server(verifier)
    server.set_client_first(client.first().decode())
    client.final(server.get_server_first().encode())
    with pytest.raises(scram.ScramError):
        client.verify(server_final)


def test_key_client_order_and_key_checks():
    verifier = make_verifier("pw")
    with pytest.raises(scram.ScramError):
        scram.KeyScramClient("alice", b"short", verifier)
    with pytest.raises(scram.VerifierFormatError):
        scram.KeyScramClient("alice", bytes(32), "SCRAM-SHA-256$nope")
    client = scram.KeyScramClient("alice", bytes(32), verifier)
    with pytest.raises(scram.ScramError):
        client.final(b"r=x,s=eA==,i=1")  # before first()
    with pytest.raises(scram.ScramError):
        client.verify(b"v=eA==")  # before final()


def test_key_client_escapes_user_name():
    client = scram.KeyScramClient("a=b,c", bytes(32), make_verifier("pw"), nonce="N")
    assert client.first() == b"n,,n=a=3Db=2Cc,r=N"


# -- channel binding data ---------------------------------------------------------------

CERT_SHA256 = base64.b64decode(
    "MIIBhTCCASugAwIBAgIUaANOgOKZBYIBLn8onojgL2xFVrEwCgYIKoZIzj0EAwIwFzEVMBMGA1UE"
    "AwwMcGd0d2lzdC10ZXN0MCAXDTI2MTEyNTEzNTkzNFoYDzIxMjYxMTAxMTM1OTM0WjAXMRUwEwYD"
    "VQQDDAxwZ3R3aXN0LXRlc3QwWTATBgcqhkjOPQIBBggqhkjOPQMBBwNCAATeHwrLU6xyXRaY0/GQ"
    "nr++RWaYvJBk/z8ouHA2cNdlK/tFFSTBBYWRDIhqmoC5ktFVBgfYoJ9hLYYL2v3svbzXo1MwUTAd"
    "BgNVHQ4EFgQUIOIH47JqQ+snohBjXChJZEKYKxMwHwYDVR0jBBgwFoAUIOIH47JqQ+snohBjXChJ"
    "ZEKYKxMwDwYDVR0TAQH/BAUwAwEB/zAKBggqhkjOPQQDAgNIADBFAiEA0UFUMzPbSrvfe2Ngc356"
    "N0nUFGR7slTFJSYEWaybiT0CIDghlA96zQmKXbgnr1igxx2U0mWp2I1N36hxq5RBtOkn"
)
CERT_SHA384 = base64.b64decode(
    "MIIBhDCCASugAwIBAgIUU/t0+XpSa7xuHv/XOxcFMx7PTdcwCgYIKoZIzj0EAwMwFzEVMBMGA1UE"
    "AwwMcGd0d2lzdC10ZXN0MCAXDTI2MTEyNTEzNTkzNFoYDzIxMjYxMTAxMTM1OTM0WjAXMRUwEwYD"
    "VQQDDAxwZ3R3aXN0LXRlc3QwWTATBgcqhkjOPQIBBggqhkjOPQMBBwNCAAR96HzyxkDLxOfAD8Zo"
    "Hr9EJH1BXTPF0ikumIdvndaq6b91DzRwuEh8OhH21qLZ2RyGBNif0btYpnUcKQPS+/z6o1MwUTAd"
    "BgNVHQ4EFgQUWZEQidH/400k4arSnz5cJFzen8AwHwYDVR0jBBgwFoAUWZEQidH/400k4arSnz5c"
    "JFzen8AwDwYDVR0TAQH/BAUwAwEB/zAKBggqhkjOPQQDAwNHADBEAiBiwJpSw6DvU1P0N/eqCbpg"
    "Ip7cZX/JJTn6GIw6Shp4fwIga/BIG/TGzHuZL9I1C0h9NLTgOgHxm5RuN/A11VGbzQo="
)


def test_tls_server_end_point_follows_the_signature_hash():
    assert scram.tls_server_end_point(CERT_SHA256) == hashlib.sha256(CERT_SHA256).digest()
    assert scram.tls_server_end_point(CERT_SHA384) == hashlib.sha384(CERT_SHA384).digest()


# -- BackendLogin with a ClientKey --------------------------------------------------------

def auth(subtype: int, payload: bytes = b"") -> bytes:
    return struct.pack("!I", subtype) + payload


def unframe(raw: bytes) -> tuple[int, bytes]:
    (length,) = struct.unpack_from("!I", raw, 1)
    assert length == len(raw) - 1
    return raw[0], raw[5:]


class FakeBackend:
    """A backend's SCRAM side, scramp's server over the user's stored verifier."""

    def __init__(self, verifier: str):
        self.server = scramp_server(verifier)

    def continue_(self, initial: bytes) -> bytes:
        code, body = unframe(initial)
        assert code == ord("p")
        mechanism, data = decode_sasl_initial_response(body)
        assert mechanism == "SCRAM-SHA-256"
        self.server.set_client_first(data.decode())
        return auth(codes.AUTH_SASL_CONTINUE, self.server.get_server_first().encode())

    def final(self, response: bytes) -> bytes:
        code, body = unframe(response)
        assert code == ord("p")
        self.server.set_client_final(body.decode())
        return auth(codes.AUTH_SASL_FINAL, self.server.get_server_final().encode())


SASL = auth(codes.AUTH_SASL, b"SCRAM-SHA-256\x00\x00")


def key_secret(password: str, verifier: str) -> Secret:
    v = scram.parse_verifier(verifier)
    return Secret(client_key=scram.password_keys(password, v.salt, v.iterations)[0], scram_verifier=verifier)


def finish(login: BackendLogin) -> None:
    login.receive(R, auth(codes.AUTH_OK))
    login.receive(K, struct.pack("!II", 7, 8))
    login.receive(Z, b"I")
    assert login.state is LoginState.READY


def test_backend_login_with_client_key():
    verifier = make_verifier("correct horse")
    backend = FakeBackend(verifier)
    login = BackendLogin("alice", {"database": "shop"}, key_secret("correct horse", verifier))
    response = login.receive(R, backend.continue_(login.receive(R, SASL)))
    assert login.receive(R, backend.final(response)) == b""
    assert login.auth_method == "scram-sha-256"
    assert login.scram_pass_through is True
    finish(login)


def test_backend_login_prefers_plaintext_over_client_key():
    verifier = make_verifier("pw")
    secret = Secret(plaintext="pw", client_key=key_secret("pw", verifier).client_key, scram_verifier=verifier)
    backend = FakeBackend(verifier)
    login = BackendLogin("alice", {}, secret)
    login.receive(R, backend.final(login.receive(R, backend.continue_(login.receive(R, SASL)))))
    assert login.scram_pass_through is False
    finish(login)


def test_backend_login_client_key_against_other_verifier():
    verifier = make_verifier("pw")
    backend = FakeBackend(make_verifier("pw"))  # a replica that stores another verifier
    login = BackendLogin("alice", {}, key_secret("pw", verifier))
    initial = login.receive(R, SASL)
    with pytest.raises(LoginFailed) as exc:
        login.receive(R, backend.continue_(initial))
    assert exc.value.sqlstate == "28P01"
    assert "server uses a different SCRAM verifier for this user" in str(exc.value)
    assert login.state is LoginState.FAILED


def test_backend_login_client_key_bad_server_signature():
    verifier = make_verifier("pw")
    backend = FakeBackend(verifier)
    login = BackendLogin("alice", {}, key_secret("pw", verifier))
    response = login.receive(R, backend.continue_(login.receive(R, SASL)))
    backend.final(response)
    with pytest.raises(LoginFailed) as exc:
        login.receive(R, auth(codes.AUTH_SASL_FINAL, b"v=" + base64.b64encode(bytes(32))))
    assert exc.value.sqlstate == "28P01"
    assert "signature did not verify" in str(exc.value)


def test_backend_login_client_key_garbage_server_first():
    login = BackendLogin("alice", {}, key_secret("pw", make_verifier("pw")))
    login.receive(R, SASL)
    with pytest.raises(LoginFailed) as exc:
        login.receive(R, auth(codes.AUTH_SASL_CONTINUE, b"r=not-ours,s=eA==,i=4096"))
    assert exc.value.sqlstate == "08P01"


def test_backend_login_client_key_with_malformed_verifier():
    login = BackendLogin("alice", {}, Secret(client_key=bytes(32), scram_verifier="SCRAM-SHA-256$x"))
    with pytest.raises(LoginFailed) as exc:
        login.receive(R, SASL)
    assert exc.value.sqlstate == "28P01"
    assert "pass-through" in str(exc.value)
    assert login.state is LoginState.FAILED


@pytest.mark.parametrize(
    "request_", [auth(codes.AUTH_CLEARTEXT), auth(codes.AUTH_MD5, b"salt")], ids=["password", "md5"]
)
def test_backend_login_client_key_cannot_drive_other_methods(request_):
    login = BackendLogin("alice", {}, key_secret("pw", make_verifier("pw")))
    with pytest.raises(LoginFailed) as exc:
        login.receive(R, request_)
    assert exc.value.sqlstate == "28P01"
    assert "SCRAM pass-through" in str(exc.value)
    assert login.state is LoginState.FAILED


def test_secret_repr_hides_client_key_and_verifier():
    verifier = make_verifier("hunter2")
    secret = key_secret("hunter2", verifier)
    text = repr(secret)
    assert text == "Secret(plaintext=None, md5=None, client_key=set, scram_verifier=set)"
    for part in verifier.split("$")[1:]:
        for piece in part.split(":"):
            if len(piece) > 8:
                assert piece not in text
    assert repr(secret.client_key) not in text
    assert repr(Secret(plaintext="x")) == "Secret(plaintext=set, md5=None)"


def test_existing_secret_callers_unchanged():
    secret = Secret("pw", None)  # positional construction still means (plaintext, md5)
    assert (secret.plaintext, secret.md5, secret.client_key, secret.scram_verifier) == ("pw", None, None, None)
    assert not secret.can_scram_pass_through


# -- layering -----------------------------------------------------------------------------

def test_new_conn_modules_do_not_load_twisted_or_sqlglot():
    assert loaded_forbidden("pgtwist.conn.scram", "pgtwist.conn.client_auth") == []


def test_hmac_helper_matches_stdlib():
    # client_proof really is ClientKey XOR HMAC-SHA-256(StoredKey, AuthMessage).
    key, stored, msg = bytes(range(32)), bytes(range(32, 64)), b"auth message"
    sig = hmac.new(stored, msg, hashlib.sha256).digest()
    assert scram.client_proof(key, stored, msg) == bytes(a ^ b for a, b in zip(key, sig, strict=True))
