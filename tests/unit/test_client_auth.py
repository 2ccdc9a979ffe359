"""pgtwist authenticating a client (ClientAuthenticator), driven with bytes by scramp's
client, a libpq-shaped hand-made SCRAM client, and hand-built password messages."""

from __future__ import annotations

import base64
import hashlib
import hmac
import itertools
import struct

import pytest
from scramp import ScramClient, ScramMechanism

from pgtwist.conn import scram
from pgtwist.conn.auth import Secret
from pgtwist.conn.backend import BackendLogin, LoginFailed, LoginState
from pgtwist.conn.client_auth import AuthSecret, ClientAuthenticator, ClientAuthFailed
from pgtwist.wire import codes
from pgtwist.wire import messages as m
from pgtwist.wire.decode import decode_fields, decode_sasl_initial_response, decode_sasl_mechanisms
from pgtwist.wire.errors import ProtocolViolation

USER = "alice"
PASSWORD = "correct horse"
FAILED = 'password authentication failed for user "alice"'


def make_verifier(password: str, salt: bytes | None = None, iterations: int = 4096) -> str:
    """PostgreSQL's rolpassword for ``password``, made by scramp (16-byte salt like PostgreSQL)."""
    salt, stored_key, server_key, i = ScramMechanism().make_auth_info(
        password, iteration_count=iterations, salt=salt or hashlib.sha256(password.encode()).digest()[:16]
    )
    b64 = base64.b64encode
    return f"SCRAM-SHA-256${i}:{b64(salt).decode()}${b64(stored_key).decode()}:{b64(server_key).decode()}"


VERIFIER = make_verifier(PASSWORD)
MD5 = "md5" + hashlib.md5((PASSWORD + USER).encode()).hexdigest()


def counter_rng():
    """Deterministic 'random' bytes, different on every call."""
    counter = itertools.count(1)

    def rng(n: int) -> bytes:
        seed = next(counter).to_bytes(4, "big")
        return hashlib.sha256(seed).digest()[:n]

    return rng


def authenticator(method: str, secret: AuthSecret | None, user: str = USER, **kwargs) -> ClientAuthenticator:
    kwargs.setdefault("rng", counter_rng())
    kwargs.setdefault("mock_secret", b"server secret")
    return ClientAuthenticator(method, user, secret_lookup=lambda _user: secret, **kwargs)


def request(raw: bytes) -> tuple[int, bytes]:
    """(Authentication subtype, payload) of one framed Authentication message."""
    assert raw[0] == ord("R")
    (length,) = struct.unpack_from("!I", raw, 1)
    assert length == len(raw) - 1
    return struct.unpack_from("!I", raw, 5)[0], raw[9:]


def initial(mechanism: str, data: bytes) -> bytes:
    return m.cstr(mechanism) + struct.pack("!i", len(data)) + data


def password_body(text: str | bytes) -> bytes:
    return (text.encode() if isinstance(text, str) else text) + b"\0"


def md5_body(password: str, user: str, salt: bytes) -> bytes:
    inner = hashlib.md5((password + user).encode()).hexdigest()
    return b"md5" + hashlib.md5(inner.encode() + salt).hexdigest().encode() + b"\0"


# -- SCRAM with scramp's client ----------------------------------------------------------

def scramp_login(auth: ClientAuthenticator, client: ScramClient) -> list[tuple[int, int]]:
    """Run scramp's client against ``auth``; returns the (subtype, size) of each reply."""
    shape = []
    subtype, payload = request(auth.start())
    shape.append((subtype, len(payload)))
    assert subtype == codes.AUTH_SASL
    assert client.mechanism_name in decode_sasl_mechanisms(payload)
    reply = auth.receive(initial(client.mechanism_name, client.get_client_first().encode()))
    subtype, server_first = request(reply)
    shape.append((subtype, len(server_first)))
    assert subtype == codes.AUTH_SASL_CONTINUE
    client.set_server_first(server_first.decode())
    reply = auth.receive(client.get_client_final().encode())
    subtype, server_final = request(reply)
    assert subtype == codes.AUTH_SASL_FINAL
    client.set_server_final(server_final.decode())  # scramp checks our ServerSignature
    return shape


def test_scram_with_plaintext_secret():
    auth = authenticator("scram-sha-256", AuthSecret(plaintext=PASSWORD))
    scramp_login(auth, ScramClient(["SCRAM-SHA-256"], USER, PASSWORD))
    assert auth.done
    assert auth.client_key is None  # a derived verifier's key is no use to backends
    assert auth.password is None
    assert auth.backend_secret() == Secret(plaintext=PASSWORD)


def test_scram_with_stored_verifier_recovers_client_key():
    auth = authenticator("scram-sha-256", AuthSecret(scram_verifier=VERIFIER))
    scramp_login(auth, ScramClient(["SCRAM-SHA-256"], USER, PASSWORD))
    assert auth.done
    v = scram.parse_verifier(VERIFIER)
    assert auth.client_key == scram.password_keys(PASSWORD, v.salt, v.iterations)[0]
    assert auth.password is None
    assert auth.backend_secret() == Secret(client_key=auth.client_key, scram_verifier=VERIFIER)


def test_recovered_client_key_logs_in_to_a_backend_with_the_same_verifier():
    auth = authenticator("scram-sha-256", AuthSecret(scram_verifier=VERIFIER))
    scramp_login(auth, ScramClient(["SCRAM-SHA-256"], USER, PASSWORD))
    v = scram.parse_verifier(VERIFIER)
    backend = ScramMechanism().make_server(lambda _u: (v.salt, v.stored_key, v.server_key, v.iterations))
    client = scram.KeyScramClient(USER, auth.client_key, VERIFIER)
    backend.set_client_first(client.first().decode())
    final = client.final(backend.get_server_first().encode())
    backend.set_client_final(final.decode())  # scramp accepts the proof
    client.verify(backend.get_server_final().encode())


def test_recovered_client_key_fails_against_a_backend_with_another_salt():
    auth = authenticator("scram-sha-256", AuthSecret(scram_verifier=VERIFIER))
    scramp_login(auth, ScramClient(["SCRAM-SHA-256"], USER, PASSWORD))
    other = scram.parse_verifier(make_verifier(PASSWORD, salt=b"another salt 16b"))
    backend = ScramMechanism().make_server(
        lambda _u: (other.salt, other.stored_key, other.server_key, other.iterations)
    )
    client = scram.KeyScramClient(USER, auth.client_key, VERIFIER)
    backend.set_client_first(client.first().decode())
    with pytest.raises(scram.VerifierMismatch, match="server uses a different SCRAM verifier"):
        client.final(backend.get_server_first().encode())


def test_pass_through_end_to_end_with_backend_login():
    auth = authenticator("scram-sha-256", AuthSecret(scram_verifier=VERIFIER))
    scramp_login(auth, ScramClient(["SCRAM-SHA-256"], USER, PASSWORD))
    v = scram.parse_verifier(VERIFIER)
    backend = ScramMechanism().make_server(lambda _u: (v.salt, v.stored_key, v.server_key, v.iterations))
    login = BackendLogin(USER, {"database": "shop"}, auth.backend_secret())
    initial_frame = login.receive(ord("R"), struct.pack("!I", codes.AUTH_SASL) + b"SCRAM-SHA-256\0\0")
    _, data = decode_sasl_initial_response(initial_frame[5:])
    backend.set_client_first(data.decode())
    response = login.receive(
        ord("R"), struct.pack("!I", codes.AUTH_SASL_CONTINUE) + backend.get_server_first().encode()
    )
    backend.set_client_final(response[5:].decode())
    login.receive(ord("R"), struct.pack("!I", codes.AUTH_SASL_FINAL) + backend.get_server_final().encode())
    login.receive(ord("R"), struct.pack("!I", codes.AUTH_OK))
    login.receive(ord("Z"), b"I")
    assert login.state is LoginState.READY
    assert login.scram_pass_through


def test_pass_through_end_to_end_fails_on_a_replica_with_another_verifier():
    auth = authenticator("scram-sha-256", AuthSecret(scram_verifier=VERIFIER))
    scramp_login(auth, ScramClient(["SCRAM-SHA-256"], USER, PASSWORD))
    login = BackendLogin(USER, {}, auth.backend_secret())
    login.receive(ord("R"), struct.pack("!I", codes.AUTH_SASL) + b"SCRAM-SHA-256\0\0")
    nonce = login._scram._nonce.decode()  # the fake replica only needs to extend our nonce
    server_first = f"r={nonce}xyz,s={base64.b64encode(b'another salt 16b').decode()},i=4096"
    with pytest.raises(LoginFailed) as exc:
        login.receive(ord("R"), struct.pack("!I", codes.AUTH_SASL_CONTINUE) + server_first.encode())
    assert exc.value.sqlstate == "28P01"
    assert "different SCRAM verifier" in str(exc.value)


@pytest.mark.parametrize("secret", [AuthSecret(plaintext=PASSWORD), AuthSecret(scram_verifier=VERIFIER)],
                         ids=["plaintext", "verifier"])
def test_scram_wrong_password(secret):
    auth = authenticator("scram-sha-256", secret)
    with pytest.raises(ClientAuthFailed) as exc:
        scramp_login(auth, ScramClient(["SCRAM-SHA-256"], USER, "wrong horse"))
    assert exc.value.sqlstate == "28P01"
    assert exc.value.message == FAILED
    assert str(exc.value) == FAILED
    assert "Password does not match" in exc.value.log_message
    assert not auth.done and auth.client_key is None


def scram_messages_until_failure(auth: ClientAuthenticator, password: str):
    """Every message pgtwist sends, then the error, for a SCRAM login with ``password``."""
    sent = [auth.start()]
    client = ScramClient(["SCRAM-SHA-256"], USER, password)
    sent.append(auth.receive(initial("SCRAM-SHA-256", client.get_client_first().encode())))
    client.set_server_first(request(sent[-1])[1].decode())
    with pytest.raises(ClientAuthFailed) as exc:
        auth.receive(client.get_client_final().encode())
    return sent, exc.value


def shape_of(sent: list[bytes]) -> list[tuple[int, int, tuple[bytes, ...]]]:
    """(subtype, size, attribute names) of each Authentication message."""
    result = []
    for raw in sent:
        subtype, payload = request(raw)
        names = tuple(p[:2] for p in payload.split(b",")) if subtype == codes.AUTH_SASL_CONTINUE else ()
        result.append((subtype, len(payload), names))
    return result


def test_unknown_user_looks_like_a_wrong_password():
    known, known_exc = scram_messages_until_failure(
        authenticator("scram-sha-256", AuthSecret(scram_verifier=VERIFIER)), "wrong"
    )
    unknown, unknown_exc = scram_messages_until_failure(authenticator("scram-sha-256", None), "wrong")
    assert shape_of(known) == shape_of(unknown)
    assert (unknown_exc.sqlstate, unknown_exc.message) == (known_exc.sqlstate, known_exc.message)
    assert unknown_exc.message == FAILED
    assert unknown_exc.log_message == 'Role "alice" does not exist.'


def test_unknown_user_fails_even_with_a_plausible_proof():
    # A doomed exchange never succeeds, whatever the client sends.
    auth = authenticator("scram-sha-256", None)
    with pytest.raises(ClientAuthFailed) as exc:
        scramp_login(auth, ScramClient(["SCRAM-SHA-256"], USER, ""))
    assert exc.value.message == FAILED


def server_salt(auth: ClientAuthenticator) -> bytes:
    auth.start()
    reply = auth.receive(initial("SCRAM-SHA-256", b"n,,n=,r=clientnonce"))
    attrs = dict(p.split(b"=", 1) for p in request(reply)[1].split(b","))
    assert attrs[b"i"] == b"4096"
    return base64.b64decode(attrs[b"s"])


def test_unknown_user_salt_is_stable_per_user_and_secret():
    first = server_salt(authenticator("scram-sha-256", None))
    assert len(first) == 16
    assert server_salt(authenticator("scram-sha-256", None)) == first  # like a stored salt
    assert server_salt(authenticator("scram-sha-256", None, user="bob")) != first
    assert server_salt(authenticator("scram-sha-256", None, mock_secret=b"other")) != first


def test_plaintext_secret_salt_is_stable_too():
    # A fresh salt per login would tell a known user (changing salt) from an unknown one.
    a = server_salt(authenticator("scram-sha-256", AuthSecret(plaintext=PASSWORD)))
    assert a == server_salt(authenticator("scram-sha-256", AuthSecret(plaintext=PASSWORD)))


def test_user_without_any_secret():
    auth = authenticator("scram-sha-256", AuthSecret())
    with pytest.raises(ClientAuthFailed) as exc:
        scramp_login(auth, ScramClient(["SCRAM-SHA-256"], USER, PASSWORD))
    assert exc.value.message == FAILED
    assert exc.value.log_message == 'User "alice" has no password assigned.'


def test_md5_secret_cannot_drive_scram():
    auth = authenticator("scram-sha-256", AuthSecret(md5=MD5))
    sent, exc = scram_messages_until_failure(auth, PASSWORD)  # even the right password
    assert shape_of(sent) == shape_of(
        scram_messages_until_failure(authenticator("scram-sha-256", None), PASSWORD)[0]
    )
    assert exc.sqlstate == "28P01"
    assert exc.message == FAILED
    assert "md5" in exc.log_message and "SCRAM" in exc.log_message
    assert "md5" not in exc.message


def test_malformed_stored_verifier_is_a_generic_failure():
    auth = authenticator("scram-sha-256", AuthSecret(scram_verifier="SCRAM-SHA-256$broken"))
    sent, exc = scram_messages_until_failure(auth, PASSWORD)
    assert exc.message == FAILED
    assert "valid SCRAM secret" in exc.log_message


# -- SCRAM with a libpq-shaped client (empty user name), hand-made from RFC 5802 ---------------

def _hmac(key: bytes, msg: bytes) -> bytes:
    return hmac.new(key, msg, hashlib.sha256).digest()


def libpq_like_login(auth: ClientAuthenticator, password: str) -> bytes:
    """libpq sends ``n,,n=,r=...``: the server must take the user from the startup packet."""
    auth.start()
    bare = b"n=,r=fyko+d2lbbFgONRv9qkxdawL"
    server_first = request(auth.receive(initial("SCRAM-SHA-256", b"n,," + bare)))[1]
    attrs = dict(p.split(b"=", 1) for p in server_first.split(b","))
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), base64.b64decode(attrs[b"s"]), int(attrs[b"i"]))
    client_key = _hmac(salted, b"Client Key")
    without_proof = b"c=biws,r=" + attrs[b"r"]
    auth_message = bare + b"," + server_first + b"," + without_proof
    signature = _hmac(hashlib.sha256(client_key).digest(), auth_message)
    proof = bytes(a ^ b for a, b in zip(client_key, signature, strict=True))
    reply = auth.receive(without_proof + b",p=" + base64.b64encode(proof))
    subtype, final = request(reply)
    assert subtype == codes.AUTH_SASL_FINAL
    assert final == b"v=" + base64.b64encode(_hmac(_hmac(salted, b"Server Key"), auth_message))
    return client_key


def test_libpq_style_client_with_verifier():
    auth = authenticator("scram-sha-256", AuthSecret(scram_verifier=VERIFIER))
    client_key = libpq_like_login(auth, PASSWORD)
    assert auth.done and auth.client_key == client_key


def test_libpq_style_client_with_plaintext():
    auth = authenticator("scram-sha-256", AuthSecret(plaintext=PASSWORD))
    libpq_like_login(auth, PASSWORD)
    assert auth.done


def test_libpq_style_client_low_iteration_verifier():
    # PostgreSQL's scram_iterations may be below scramp's 4096 minimum; pgtwist copes.
    verifier = scram.format_verifier(scram.derive_verifier(PASSWORD, b"0123456789abcdef", 16))
    auth = authenticator("scram-sha-256", AuthSecret(scram_verifier=verifier))
    libpq_like_login(auth, PASSWORD)
    assert auth.done


# -- malformed SASL messages -------------------------------------------------------------------

def started_scram(**kwargs) -> ClientAuthenticator:
    auth = authenticator("scram-sha-256", AuthSecret(scram_verifier=VERIFIER), **kwargs)
    auth.start()
    return auth


@pytest.mark.parametrize(
    "body, sqlstate",
    [
        (b"SCRAM-SHA-256", "08P01"),  # no length
        (m.cstr("SCRAM-SHA-256") + struct.pack("!i", 10) + b"n,,n=", "08P01"),  # short data
        (m.cstr("SCRAM-SHA-256") + struct.pack("!i", 3) + b"n,,extra", "08P01"),  # trailing bytes
        (initial("SCRAM-SHA-1", b"n,,n=,r=abc"), "08P01"),  # not offered
        (initial("SCRAM-SHA-256-PLUS", b"p=tls-server-end-point,,n=,r=abc"), "08P01"),  # not offered
        (m.cstr("SCRAM-SHA-256") + struct.pack("!i", -1), "08P01"),  # no data
        (initial("SCRAM-SHA-256", b""), "08P01"),
        (initial("SCRAM-SHA-256", b"n,,n=,r=a\0bc"), "08P01"),
        (initial("SCRAM-SHA-256", b"x,,n=,r=abc"), "08P01"),  # unknown gs2 flag
        (initial("SCRAM-SHA-256", b"n;,n=,r=abc"), "08P01"),
        (initial("SCRAM-SHA-256", b"p=tls-server-end-point,,n=,r=abc"), "08P01"),  # p without PLUS
        (initial("SCRAM-SHA-256", b"n,a=bob,n=,r=abc"), "0A000"),  # authzid
        (initial("SCRAM-SHA-256", b"n,x,n=,r=abc"), "08P01"),
        (initial("SCRAM-SHA-256", b"n,,m=ext,n=,r=abc"), "0A000"),  # mandatory extension
        (initial("SCRAM-SHA-256", b"n,,n=alice"), "08P01"),  # no nonce
        (initial("SCRAM-SHA-256", b"n,,r=abc,n=alice"), "08P01"),  # wrong order
        (initial("SCRAM-SHA-256", b"n,,n=,r="), "08P01"),  # empty nonce
        (initial("SCRAM-SHA-256", b"n,,n=,r=ab\x7fc"), "08P01"),  # unprintable nonce
        (initial("SCRAM-SHA-256", b"n,,n=,r=abc,junk"), "08P01"),
        (initial("SCRAM-SHA-256", b"n,,n=,r=abc,"), "08P01"),
    ],
)
def test_malformed_client_first(body, sqlstate):
    auth = started_scram()
    with pytest.raises(ProtocolViolation) as exc:
        auth.receive(body)
    assert exc.value.sqlstate == sqlstate
    assert not auth.done
    with pytest.raises(ProtocolViolation):  # the exchange is over
        auth.receive(initial("SCRAM-SHA-256", b"n,,n=,r=abc"))


def nonce_after_first(auth: ClientAuthenticator) -> bytes:
    reply = auth.receive(initial("SCRAM-SHA-256", b"n,,n=,r=abc"))
    return dict(p.split(b"=", 1) for p in request(reply)[1].split(b","))[b"r"]


GOOD_PROOF = base64.b64encode(bytes(32))


@pytest.mark.parametrize(
    "final",
    [
        lambda r: b"",
        lambda r: b"c=biws,r=" + r,  # no proof
        lambda r: b"r=" + r + b",c=biws,p=" + GOOD_PROOF,  # wrong order
        lambda r: b"c=biws,r=" + r + b",p=" + GOOD_PROOF + b",x=1",  # proof not last
        lambda r: b"c=biws,r=" + r + b",p=" + GOOD_PROOF + b",p=" + GOOD_PROOF,
        lambda r: b"c=biws,r=" + r + b"x,p=" + GOOD_PROOF,  # nonce mismatch
        lambda r: b"c=biws,r=abc,p=" + GOOD_PROOF,  # client nonce only
        lambda r: b"c=eSws,r=" + r + b",p=" + GOOD_PROOF,  # says 'y' but sent 'n'
        lambda r: b"c=!!!!,r=" + r + b",p=" + GOOD_PROOF,
        lambda r: b"c=biws,r=" + r + b",p=!!!!",
        lambda r: b"c=biws,r=" + r + b",p=" + base64.b64encode(bytes(31)),
        lambda r: b"c=biws,r=" + r + b",p=" + GOOD_PROOF + b"\0",
        lambda r: b"c=biws,,r=" + r + b",p=" + GOOD_PROOF,
    ],
)
def test_malformed_client_final(final):
    auth = started_scram()
    r = nonce_after_first(auth)
    with pytest.raises(ProtocolViolation) as exc:
        auth.receive(final(r))
    assert exc.value.sqlstate == "08P01"
    assert not auth.done


def test_client_final_extensions_are_ignored():
    # RFC 5802 allows extensions between the nonce and the proof; they are in AuthMessage.
    auth = started_scram()
    client = ScramClient(["SCRAM-SHA-256"], USER, PASSWORD)
    server_first = request(auth.receive(initial("SCRAM-SHA-256", client.get_client_first().encode())))[1]
    v = scram.parse_verifier(VERIFIER)
    client_key = scram.password_keys(PASSWORD, v.salt, v.iterations)[0]
    nonce = dict(p.split(b"=", 1) for p in server_first.split(b","))[b"r"]
    without_proof = b"c=biws,r=" + nonce + b",x=extension"
    bare = client.client_first_bare.encode()
    auth_message = bare + b"," + server_first + b"," + without_proof
    proof = scram.client_proof(client_key, v.stored_key, auth_message)
    auth.receive(without_proof + b",p=" + base64.b64encode(proof))
    assert auth.done and auth.client_key == client_key


# -- channel binding (SCRAM-SHA-256-PLUS, tls-server-end-point) --------------------------------

CBIND = hashlib.sha256(b"pgtwist's DER certificate").digest()


def test_plus_is_offered_first_with_channel_binding():
    auth = authenticator("scram-sha-256", AuthSecret(scram_verifier=VERIFIER), channel_binding=CBIND)
    subtype, payload = request(auth.start())
    assert subtype == codes.AUTH_SASL
    assert payload == b"SCRAM-SHA-256-PLUS\0SCRAM-SHA-256\0\0"
    assert decode_sasl_mechanisms(payload) == ["SCRAM-SHA-256-PLUS", "SCRAM-SHA-256"]


def test_plus_not_offered_without_channel_binding():
    auth = authenticator("scram-sha-256", AuthSecret(scram_verifier=VERIFIER))
    assert request(auth.start())[1] == b"SCRAM-SHA-256\0\0"


@pytest.mark.parametrize("secret", [AuthSecret(plaintext=PASSWORD), AuthSecret(scram_verifier=VERIFIER)],
                         ids=["plaintext", "verifier"])
def test_plus_accepted_with_the_right_binding(secret):
    auth = authenticator("scram-sha-256", secret, channel_binding=CBIND)
    client = ScramClient(
        ["SCRAM-SHA-256", "SCRAM-SHA-256-PLUS"], USER, PASSWORD,
        channel_binding=("tls-server-end-point", CBIND),
    )
    assert client.mechanism_name == "SCRAM-SHA-256-PLUS"
    scramp_login(auth, client)
    assert auth.done


def test_plus_rejected_with_the_wrong_binding():
    # What a client sees through a man in the middle that re-terminates TLS.
    auth = authenticator("scram-sha-256", AuthSecret(scram_verifier=VERIFIER), channel_binding=CBIND)
    client = ScramClient(
        ["SCRAM-SHA-256-PLUS"], USER, PASSWORD,
        channel_binding=("tls-server-end-point", hashlib.sha256(b"the attacker's cert").digest()),
    )
    with pytest.raises(ProtocolViolation) as exc:
        scramp_login(auth, client)
    assert exc.value.sqlstate == "08P01"
    assert "channel binding check failed" in exc.value.message
    assert not auth.done and auth.client_key is None


def test_y_flag_rejected_when_plus_was_offered():
    # The client can bind but believes we cannot: someone stripped PLUS from our list.
    auth = authenticator("scram-sha-256", AuthSecret(scram_verifier=VERIFIER), channel_binding=CBIND)
    client = ScramClient(["SCRAM-SHA-256"], USER, PASSWORD, channel_binding=("tls-server-end-point", CBIND))
    first = client.get_client_first().encode()
    assert first.startswith(b"y,,")
    auth.start()
    with pytest.raises(ProtocolViolation) as exc:
        auth.receive(initial("SCRAM-SHA-256", first))
    assert exc.value.sqlstate == "08P01"
    assert "channel binding negotiation error" in exc.value.message


def test_y_flag_accepted_when_plus_was_not_offered():
    auth = authenticator("scram-sha-256", AuthSecret(scram_verifier=VERIFIER))
    client = ScramClient(["SCRAM-SHA-256"], USER, PASSWORD, channel_binding=("tls-server-end-point", CBIND))
    scramp_login(auth, client)  # c=eSws ("y,,") checked against the flag it sent
    assert auth.done


def test_client_without_binding_support_may_use_plain_scram_when_plus_offered():
    auth = authenticator("scram-sha-256", AuthSecret(scram_verifier=VERIFIER), channel_binding=CBIND)
    scramp_login(auth, ScramClient(["SCRAM-SHA-256"], USER, PASSWORD))
    assert auth.done


@pytest.mark.parametrize(
    "mechanism, data",
    [
        ("SCRAM-SHA-256-PLUS", b"n,,n=,r=abc"),  # PLUS chosen, no binding data
        ("SCRAM-SHA-256-PLUS", b"y,,n=,r=abc"),
        ("SCRAM-SHA-256", b"p=tls-server-end-point,,n=,r=abc"),  # binding without PLUS
        ("SCRAM-SHA-256-PLUS", b"p=tls-unique,,n=,r=abc"),  # a type we do not offer
        ("SCRAM-SHA-256-PLUS", b"p=tls-server-end-point"),
        ("SCRAM-SHA-256-PLUS", b"p,,n=,r=abc"),
    ],
)
def test_inconsistent_channel_binding_choices(mechanism, data):
    auth = authenticator("scram-sha-256", AuthSecret(scram_verifier=VERIFIER), channel_binding=CBIND)
    auth.start()
    with pytest.raises(ProtocolViolation) as exc:
        auth.receive(initial(mechanism, data))
    assert exc.value.sqlstate == "08P01"


def test_plus_client_final_must_carry_binding_data():
    auth = authenticator("scram-sha-256", AuthSecret(scram_verifier=VERIFIER), channel_binding=CBIND)
    auth.start()
    reply = auth.receive(initial("SCRAM-SHA-256-PLUS", b"p=tls-server-end-point,,n=,r=abc"))
    r = dict(p.split(b"=", 1) for p in request(reply)[1].split(b","))[b"r"]
    header_only = base64.b64encode(b"p=tls-server-end-point,,")
    with pytest.raises(ProtocolViolation, match="channel binding check failed"):
        auth.receive(b"c=" + header_only + b",r=" + r + b",p=" + GOOD_PROOF)


# -- md5 ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("secret", [AuthSecret(plaintext=PASSWORD), AuthSecret(md5=MD5), AuthSecret(md5=MD5.upper().replace("MD5", "md5"))],
                         ids=["plaintext", "md5", "md5-uppercase-hex"])
def test_md5_method(secret):
    auth = authenticator("md5", secret)
    subtype, salt = request(auth.start())
    assert subtype == codes.AUTH_MD5 and len(salt) == 4
    assert auth.receive(md5_body(PASSWORD, USER, salt)) == b""
    assert auth.done
    assert auth.password is None
    assert auth.effective_method == "md5"


def test_md5_salt_comes_from_rng():
    auth = authenticator("md5", AuthSecret(md5=MD5), rng=lambda n: b"\x01\x02\x03\x04"[:n])
    assert request(auth.start())[1] == b"\x01\x02\x03\x04"


@pytest.mark.parametrize("secret", [AuthSecret(plaintext=PASSWORD), AuthSecret(md5=MD5)], ids=["plaintext", "md5"])
def test_md5_wrong_password(secret):
    auth = authenticator("md5", secret)
    salt = request(auth.start())[1]
    with pytest.raises(ClientAuthFailed) as exc:
        auth.receive(md5_body("wrong", USER, salt))
    assert (exc.value.sqlstate, exc.value.message) == ("28P01", FAILED)
    assert not auth.done


def test_md5_answer_for_another_salt_is_refused():
    auth = authenticator("md5", AuthSecret(md5=MD5))
    salt = request(auth.start())[1]
    with pytest.raises(ClientAuthFailed):
        auth.receive(md5_body(PASSWORD, USER, bytes(b ^ 1 for b in salt)))


@pytest.mark.parametrize(
    "secret, log",
    [(None, 'Role "alice" does not exist.'), (AuthSecret(), 'User "alice" has no password assigned.'),
     (AuthSecret(md5="md5nothex"), "not")],
    ids=["unknown", "no-password", "bad-md5"],
)
def test_md5_without_a_usable_secret_runs_a_fake_challenge(secret, log):
    auth = authenticator("md5", secret)
    subtype, salt = request(auth.start())
    assert subtype == codes.AUTH_MD5 and len(salt) == 4
    with pytest.raises(ClientAuthFailed) as exc:
        auth.receive(md5_body(PASSWORD, USER, salt))
    assert (exc.value.sqlstate, exc.value.message) == ("28P01", FAILED)
    assert log in exc.value.log_message


def test_md5_method_with_only_a_verifier_runs_scram():
    # As PostgreSQL and PgBouncer do: a SCRAM secret cannot answer an md5 challenge.
    auth = authenticator("md5", AuthSecret(scram_verifier=VERIFIER))
    scramp_login(auth, ScramClient(["SCRAM-SHA-256"], USER, PASSWORD))
    assert auth.effective_method == "scram-sha-256"
    assert auth.client_key is not None


@pytest.mark.parametrize("body", [b"md5abc", b"md5abc\0extra", b""], ids=["no-nul", "trailing", "empty-body"])
def test_md5_malformed_packet(body):
    auth = authenticator("md5", AuthSecret(md5=MD5))
    auth.start()
    with pytest.raises(ProtocolViolation) as exc:
        auth.receive(body)
    assert exc.value.sqlstate == "08P01"


# -- password (clear text) ----------------------------------------------------------------------

@pytest.mark.parametrize(
    "secret",
    [AuthSecret(plaintext=PASSWORD), AuthSecret(md5=MD5), AuthSecret(scram_verifier=VERIFIER)],
    ids=["plaintext", "md5", "verifier"],
)
def test_password_method(secret):
    auth = authenticator("password", secret)
    assert request(auth.start()) == (codes.AUTH_CLEARTEXT, b"")
    assert auth.receive(password_body(PASSWORD)) == b""
    assert auth.done
    assert auth.password == PASSWORD
    assert auth.backend_secret().plaintext == PASSWORD


@pytest.mark.parametrize(
    "secret",
    [AuthSecret(plaintext=PASSWORD), AuthSecret(md5=MD5), AuthSecret(scram_verifier=VERIFIER), AuthSecret(), None],
    ids=["plaintext", "md5", "verifier", "no-password", "unknown"],
)
def test_password_method_wrong_password(secret):
    auth = authenticator("password", secret)
    auth.start()
    with pytest.raises(ClientAuthFailed) as exc:
        auth.receive(password_body("wrong horse"))
    assert (exc.value.sqlstate, exc.value.message) == ("28P01", FAILED)
    assert auth.password is None and not auth.done
    assert "wrong horse" not in exc.value.log_message


def test_password_method_unicode_password_against_verifier():
    password = "s3cr3t \u00e9\u00adx"  # SASLprep drops the soft hyphen
    auth = authenticator("password", AuthSecret(scram_verifier=make_verifier(password)))
    auth.start()
    auth.receive(password_body(password))
    assert auth.password == password


def test_password_method_empty_password():
    auth = authenticator("password", AuthSecret(plaintext=""))
    auth.start()
    with pytest.raises(ClientAuthFailed) as exc:
        auth.receive(b"\0")
    assert exc.value.message == FAILED
    assert exc.value.log_message == "empty password returned by client"


@pytest.mark.parametrize("body", [b"secret", b"secret\0\0", b"sec\0ret\0"], ids=["no-nul", "two-nuls", "inner-nul"])
def test_password_method_malformed_packet(body):
    auth = authenticator("password", AuthSecret(plaintext="secret"))
    auth.start()
    with pytest.raises(ProtocolViolation) as exc:
        auth.receive(body)
    assert exc.value.sqlstate == "08P01"
    assert exc.value.message == "invalid password packet size"


# -- trust, reject, states -----------------------------------------------------------------------

def test_trust():
    looked_up = []
    auth = ClientAuthenticator("trust", USER, secret_lookup=lambda u: looked_up.append(u) or AuthSecret(md5=MD5))
    assert auth.start() == b""
    assert auth.done
    assert looked_up == []  # trust needs no secret...
    assert auth.backend_secret() == Secret(md5=MD5)  # ...until a backend login asks
    with pytest.raises(ProtocolViolation):
        auth.receive(password_body("x"))


def test_reject():
    auth = authenticator("reject", AuthSecret(plaintext=PASSWORD))
    with pytest.raises(ClientAuthFailed) as exc:
        auth.start()
    assert exc.value.sqlstate == "28000"
    assert 'rejects connection for user "alice"' in exc.value.message
    assert not auth.done


@pytest.mark.parametrize("method", ["cert", "gss", "MD5", ""])
def test_unknown_methods_are_a_programming_error(method):
    with pytest.raises(ValueError):
        authenticator(method, None)


def test_receive_before_start_and_after_done():
    auth = authenticator("password", AuthSecret(plaintext=PASSWORD))
    with pytest.raises(ProtocolViolation):
        auth.receive(password_body(PASSWORD))
    auth.start()
    with pytest.raises(RuntimeError):
        auth.start()
    auth.receive(password_body(PASSWORD))
    with pytest.raises(ProtocolViolation) as exc:
        auth.receive(password_body(PASSWORD))
    assert exc.value.sqlstate == "08P01"


def test_no_second_try_after_a_failure():
    auth = authenticator("password", AuthSecret(plaintext=PASSWORD))
    auth.start()
    with pytest.raises(ClientAuthFailed):
        auth.receive(password_body("wrong"))
    with pytest.raises(ProtocolViolation):
        auth.receive(password_body(PASSWORD))
    assert not auth.done and auth.password is None


def test_oversized_message():
    auth = authenticator("password", AuthSecret(plaintext=PASSWORD))
    auth.start()
    with pytest.raises(ProtocolViolation) as exc:
        auth.receive(b"x" * 70000 + b"\0")
    assert exc.value.sqlstate == "08P01"


def test_secret_lookup_called_once_with_the_user():
    calls = []
    auth = ClientAuthenticator(
        "md5", "bob", secret_lookup=lambda u: calls.append(u) or None, rng=counter_rng()
    )
    auth.start()
    assert calls == ["bob"]


def test_backend_secret_before_done_is_none():
    auth = authenticator("password", AuthSecret(plaintext=PASSWORD))
    auth.start()
    assert auth.backend_secret() is None


# -- errors and secrets in text ---------------------------------------------------------------------

def test_client_auth_failed_error_response():
    exc = ClientAuthFailed("28P01", FAILED, log_message="Password does not match.")
    fields = decode_fields(exc.error_response()[5:])
    assert fields["S"] == "FATAL" and fields["C"] == "28P01" and fields["M"] == FAILED
    assert ClientAuthFailed("28000", "no").log_message == "no"


def test_auth_secret_repr_never_shows_secrets():
    secret = AuthSecret(plaintext="hunter2", md5=MD5, scram_verifier=VERIFIER)
    text = repr(secret)
    assert text == "AuthSecret(plaintext=set, md5=set, scram_verifier=set)"
    assert "hunter2" not in text and MD5[3:] not in text
    assert VERIFIER.split("$")[2].split(":")[0] not in text
    assert "hunter2" not in str([secret])
    assert repr(AuthSecret()) == "AuthSecret(plaintext=None, md5=None, scram_verifier=None)"


def test_failures_never_show_secrets():
    secret = AuthSecret(plaintext="hunter2", md5=MD5, scram_verifier=VERIFIER)
    for method in ("password", "md5", "scram-sha-256"):
        auth = authenticator(method, secret)
        auth.start()
        body = initial("SCRAM-SHA-256", b"n,,n=,r=abc") if method == "scram-sha-256" else b"guess\0"
        try:
            reply = auth.receive(body)
            if method == "scram-sha-256":
                r = dict(p.split(b"=", 1) for p in request(reply)[1].split(b","))[b"r"]
                auth.receive(b"c=biws,r=" + r + b",p=" + GOOD_PROOF)
        except ClientAuthFailed as exc:
            for text in (exc.message, exc.log_message, repr(exc)):
                assert "hunter2" not in text and MD5[3:] not in text
                assert VERIFIER.split("$")[2][:20] not in text
        else:
            pytest.fail(f"{method}: a wrong answer was accepted")
