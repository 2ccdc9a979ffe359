"""pgtwist logging in to a server: BackendLogin driven by hand-built server frames."""

from __future__ import annotations

import hashlib
import struct

import pytest
from scramp import ScramException, ScramMechanism

from pgtwist.conn.auth import Secret, md5_inner, md5_response
from pgtwist.conn.backend import BackendLogin, LoginFailed, LoginState
from pgtwist.wire import codes
from pgtwist.wire import messages as m
from pgtwist.wire.decode import decode_sasl_initial_response

R, S, K, Z, E, V = (ord(c) for c in "RSKZEv")


def auth(subtype: int, payload: bytes = b"") -> bytes:
    return struct.pack("!I", subtype) + payload


def param(name: str, value: str) -> bytes:
    return name.encode() + b"\0" + value.encode() + b"\0"


def unframe(raw: bytes) -> tuple[int, bytes]:
    """Split one frame pgtwist sent into (code, body), checking its length."""
    code = raw[0]
    (length,) = struct.unpack_from("!I", raw, 1)
    assert length == len(raw) - 1
    return code, raw[5:]


def finish(login: BackendLogin) -> None:
    """The server's post-authentication messages, as PostgreSQL sends them."""
    assert login.receive(R, auth(codes.AUTH_OK)) == b""
    assert login.state is LoginState.AUTHENTICATED
    for name, value in (
        ("server_version", "16.4"),
        ("client_encoding", "UTF8"),
        ("TimeZone", "UTC"),
    ):
        assert login.receive(S, param(name, value)) == b""
    assert login.receive(K, struct.pack("!II", 31337, 0xA5A5A5A5)) == b""
    assert login.receive(Z, b"I") == b""
    assert login.state is LoginState.READY


# -- startup ---------------------------------------------------------------------

def test_startup_message():
    login = BackendLogin("alice", {"database": "shop", "application_name": "app"}, None)
    raw = login.startup()
    body = b"\x00\x03\x00\x00user\x00alice\x00database\x00shop\x00application_name\x00app\x00\x00"
    assert raw == struct.pack("!I", len(body) + 4) + body
    assert login.state is LoginState.AUTHENTICATING


# -- trust -------------------------------------------------------------------------

def test_trust():
    login = BackendLogin("alice", {"database": "shop"}, None)
    finish(login)
    assert login.auth_method == "trust"
    assert login.parameters == {
        "server_version": "16.4",
        "client_encoding": "UTF8",
        "TimeZone": "UTC",
    }
    assert login.parameter_frames == [
        b"S\x00\x00\x00\x18server_version\x0016.4\x00",
        b"S\x00\x00\x00\x19client_encoding\x00UTF8\x00",
        b"S\x00\x00\x00\x11TimeZone\x00UTC\x00",
    ]
    assert (login.backend_pid, login.backend_secret) == (31337, 0xA5A5A5A5)
    assert login.txn_status == codes.TXN_IDLE


def test_negotiate_protocol_version_is_tolerated():
    login = BackendLogin("alice", {}, None)
    assert login.receive(V, struct.pack("!II", 0, 0)) == b""
    finish(login)


def test_ready_for_query_status_recorded():
    login = BackendLogin("alice", {}, None)
    login.receive(R, auth(codes.AUTH_OK))
    login.receive(K, struct.pack("!II", 1, 2))
    login.receive(Z, b"T")
    assert login.txn_status == codes.TXN_BLOCK


# -- cleartext ---------------------------------------------------------------------

def test_cleartext_password():
    login = BackendLogin("alice", {}, Secret(plaintext="s3cr3t é"))
    reply = login.receive(R, auth(codes.AUTH_CLEARTEXT))
    assert reply == b"p" + struct.pack("!I", 4 + len("s3cr3t é".encode()) + 1) + "s3cr3t é".encode() + b"\0"
    assert login.auth_method == "password"
    finish(login)


def test_cleartext_without_secret():
    login = BackendLogin("alice", {}, None)
    with pytest.raises(LoginFailed) as exc:
        login.receive(R, auth(codes.AUTH_CLEARTEXT))
    assert exc.value.sqlstate == "28P01"
    assert login.state is LoginState.FAILED


def test_cleartext_with_only_md5_secret():
    login = BackendLogin("alice", {}, Secret(md5=md5_inner("pw", "alice")))
    with pytest.raises(LoginFailed) as exc:
        login.receive(R, auth(codes.AUTH_CLEARTEXT))
    assert exc.value.sqlstate == "28P01"
    assert "only an md5 hash" in str(exc.value)


# -- md5 ----------------------------------------------------------------------------

def expected_md5(password: str, user: str, salt: bytes) -> bytes:
    inner = hashlib.md5((password + user).encode()).hexdigest()
    return b"md5" + hashlib.md5(inner.encode() + salt).hexdigest().encode() + b"\0"


def test_md5_with_plaintext():
    salt = b"\x9a\x01\xff\x20"
    login = BackendLogin("alice", {}, Secret(plaintext="wonderland"))
    reply = login.receive(R, auth(codes.AUTH_MD5, salt))
    code, body = unframe(reply)
    assert code == ord("p")
    assert body == expected_md5("wonderland", "alice", salt)
    assert len(body) == 3 + 32 + 1
    assert login.auth_method == "md5"
    finish(login)


def test_md5_with_pool_passwd_hash():
    salt = b"salt"
    stored = "md5" + hashlib.md5(b"wonderlandalice").hexdigest()
    login = BackendLogin("alice", {}, Secret(md5=stored))
    code, body = unframe(login.receive(R, auth(codes.AUTH_MD5, salt)))
    assert code == ord("p")
    assert body == expected_md5("wonderland", "alice", salt)
    finish(login)


def test_md5_helpers():
    assert md5_inner("pw", "u") == "md5" + hashlib.md5(b"pwu").hexdigest()
    assert md5_response(Secret(), "u", b"salt") is None
    assert md5_response(Secret(plaintext="pw"), "u", b"salt") == expected_md5("pw", "u", b"salt")


def test_md5_without_secret():
    login = BackendLogin("alice", {}, None)
    with pytest.raises(LoginFailed) as exc:
        login.receive(R, auth(codes.AUTH_MD5, b"salt"))
    assert exc.value.sqlstate == "28P01"
    assert "no password" in str(exc.value)
    assert login.state is LoginState.FAILED


def test_md5_with_bad_salt():
    login = BackendLogin("alice", {}, Secret(plaintext="pw"))
    with pytest.raises(LoginFailed) as exc:
        login.receive(R, auth(codes.AUTH_MD5, b"abc"))
    assert exc.value.sqlstate == "08P01"


def test_md5_with_bad_salt_leaves_state_failed():
    # Every other LoginFailed path sets state FAILED before raising.
    login = BackendLogin("alice", {}, Secret(plaintext="pw"))
    with pytest.raises(LoginFailed):
        login.receive(R, auth(codes.AUTH_MD5, b"abc"))
    assert login.state is LoginState.FAILED


# -- SCRAM-SHA-256 ------------------------------------------------------------------

class ScramServer:
    """The server side of SCRAM, from scramp, speaking in v3 Authentication bodies."""

    def __init__(self, password: str, mechanisms: bytes = b"SCRAM-SHA-256\x00\x00"):
        mechanism = ScramMechanism("SCRAM-SHA-256")
        auth_info = mechanism.make_auth_info(password, iteration_count=4096)
        self.server = mechanism.make_server(lambda _user: auth_info)
        self.mechanisms = mechanisms

    def sasl(self) -> bytes:
        return auth(codes.AUTH_SASL, self.mechanisms)

    def continue_(self, initial_response: bytes) -> bytes:
        code, body = unframe(initial_response)
        assert code == ord("p")
        mechanism, data = decode_sasl_initial_response(body)
        assert mechanism == "SCRAM-SHA-256"
        self.server.set_client_first(data.decode())
        return auth(codes.AUTH_SASL_CONTINUE, self.server.get_server_first().encode())

    def final(self, response: bytes) -> bytes:
        code, body = unframe(response)
        assert code == ord("p")
        self.server.set_client_final(body.decode())  # raises if the proof is wrong
        return auth(codes.AUTH_SASL_FINAL, self.server.get_server_final().encode())


def test_scram_full_exchange():
    server = ScramServer("correct horse")
    login = BackendLogin("alice", {}, Secret(plaintext="correct horse"))
    initial = login.receive(R, server.sasl())
    assert login.auth_method == "scram-sha-256"
    response = login.receive(R, server.continue_(initial))
    assert login.receive(R, server.final(response)) == b""
    finish(login)


def test_scram_picks_sha256_among_mechanisms():
    server = ScramServer("pw", b"SCRAM-SHA-256-PLUS\x00SCRAM-SHA-256\x00\x00")
    login = BackendLogin("alice", {}, Secret(plaintext="pw"))
    initial = login.receive(R, server.sasl())
    response = login.receive(R, server.continue_(initial))
    login.receive(R, server.final(response))
    finish(login)


def test_scram_wrong_server_signature():
    server = ScramServer("pw")
    login = BackendLogin("alice", {}, Secret(plaintext="pw"))
    response = login.receive(R, server.continue_(login.receive(R, server.sasl())))
    final = server.final(response)
    assert final[4:6] == b"v="
    tampered = final[:6] + bytes([final[6] ^ 1]) + final[7:]  # still valid base64
    with pytest.raises(LoginFailed) as exc:
        login.receive(R, tampered)
    assert exc.value.sqlstate == "28P01"
    assert login.state is LoginState.FAILED


def test_scram_signature_from_another_password():
    # A server that does not know the password cannot produce a valid signature.
    impostor = ScramServer("something else")
    login = BackendLogin("alice", {}, Secret(plaintext="pw"))
    initial = login.receive(R, impostor.sasl())
    response = login.receive(R, impostor.continue_(initial))
    with pytest.raises(ScramException):  # the impostor cannot check our proof...
        impostor.final(response)
    with pytest.raises(LoginFailed) as exc:  # ...so it can only guess a signature
        login.receive(R, auth(codes.AUTH_SASL_FINAL, b"v=" + b"A" * 43 + b"="))
    assert exc.value.sqlstate == "28P01"


def test_scram_server_skips_final_message():
    server = ScramServer("pw")
    login = BackendLogin("alice", {}, Secret(plaintext="pw"))
    login.receive(R, server.continue_(login.receive(R, server.sasl())))
    with pytest.raises(LoginFailed) as exc:
        login.receive(R, auth(codes.AUTH_OK))  # success without proving it knows the password
    assert exc.value.sqlstate == "08P01"
    assert login.state is LoginState.FAILED


def test_scram_with_only_md5_secret():
    login = BackendLogin("alice", {}, Secret(md5=md5_inner("pw", "alice")))
    with pytest.raises(LoginFailed) as exc:
        login.receive(R, ScramServer("pw").sasl())
    assert exc.value.sqlstate == "28P01"
    assert "pool_passwd holds only an md5 hash" in str(exc.value)
    assert login.state is LoginState.FAILED


def test_scram_without_secret():
    login = BackendLogin("alice", {}, None)
    with pytest.raises(LoginFailed) as exc:
        login.receive(R, ScramServer("pw").sasl())
    assert exc.value.sqlstate == "28P01"
    assert exc.value.fields["S"] == "FATAL"


def test_scram_unsupported_mechanism_only():
    login = BackendLogin("alice", {}, Secret(plaintext="pw"))
    with pytest.raises(LoginFailed) as exc:
        login.receive(R, auth(codes.AUTH_SASL, b"SCRAM-SHA-256-PLUS\x00\x00"))
    assert "SCRAM-SHA-256-PLUS" in str(exc.value)


def test_scram_garbage_server_first():
    server = ScramServer("pw")
    login = BackendLogin("alice", {}, Secret(plaintext="pw"))
    login.receive(R, server.sasl())
    with pytest.raises(LoginFailed) as exc:
        login.receive(R, auth(codes.AUTH_SASL_CONTINUE, b"r=not-our-nonce,s=c2FsdA==,i=4096"))
    assert exc.value.sqlstate == "08P01"


def test_sasl_continue_without_sasl_start():
    login = BackendLogin("alice", {}, Secret(plaintext="pw"))
    with pytest.raises(LoginFailed) as exc:
        login.receive(R, auth(codes.AUTH_SASL_CONTINUE, b"r=x,s=eA==,i=1"))
    assert exc.value.sqlstate == "08P01"


# -- failures -----------------------------------------------------------------------

def test_error_response_during_login():
    body = (
        b"SFATAL\x00VFATAL\x00C28P01\x00"
        b'Mpassword authentication failed for user "alice"\x00Rauth_failed\x00\x00'
    )
    login = BackendLogin("alice", {}, Secret(plaintext="wrong"))
    login.receive(R, auth(codes.AUTH_CLEARTEXT))
    with pytest.raises(LoginFailed) as exc:
        login.receive(E, body)
    assert exc.value.fields == {
        "S": "FATAL",
        "V": "FATAL",
        "C": "28P01",
        "M": 'password authentication failed for user "alice"',
        "R": "auth_failed",
    }
    assert exc.value.sqlstate == "28P01"
    assert exc.value.raw == b"E" + struct.pack("!I", len(body) + 4) + body
    assert str(exc.value) == 'password authentication failed for user "alice"'
    assert login.state is LoginState.FAILED


def test_error_response_after_authentication_ok():
    login = BackendLogin("alice", {}, None)
    login.receive(R, auth(codes.AUTH_OK))
    raw = m.error_response("53300", "sorry, too many clients already", severity="FATAL")
    with pytest.raises(LoginFailed) as exc:
        login.receive(E, raw[5:])
    assert exc.value.sqlstate == "53300"
    assert exc.value.raw == raw


@pytest.mark.parametrize(
    "subtype", [codes.AUTH_KERBEROS_V5, codes.AUTH_GSS, codes.AUTH_SSPI, 4, 6, 99]
)
def test_unsupported_auth_method(subtype):
    login = BackendLogin("alice", {}, Secret(plaintext="pw"))
    with pytest.raises(LoginFailed) as exc:
        login.receive(R, auth(subtype))
    assert f"({subtype})" in str(exc.value)
    assert exc.value.sqlstate == "08P01"
    assert login.state is LoginState.FAILED


@pytest.mark.parametrize(
    "steps",
    [
        [(Z, b"I")],  # ReadyForQuery before authentication
        [(K, struct.pack("!II", 1, 2))],  # BackendKeyData before authentication
        [(S, param("a", "b"))],  # ParameterStatus before authentication
        [(ord("D"), b"\x00\x00")],  # a DataRow during login
        [(R, auth(codes.AUTH_OK)), (R, auth(codes.AUTH_OK))],  # AuthenticationOk twice
        [(R, auth(codes.AUTH_OK)), (R, auth(codes.AUTH_CLEARTEXT))],  # auth after Ok
        [(R, auth(codes.AUTH_OK)), (ord("T"), b"\x00\x00")],  # RowDescription
        [(R, auth(codes.AUTH_OK)), (Z, b"I"), (S, param("a", "b"))],  # after READY
    ],
)
def test_unexpected_message_order(steps):
    login = BackendLogin("alice", {}, Secret(plaintext="pw"))
    *before, (code, body) = steps
    for c, b in before:
        login.receive(c, b)
    with pytest.raises(LoginFailed) as exc:
        login.receive(code, body)
    assert exc.value.sqlstate == "08P01"
    assert "unexpected" in str(exc.value)
    assert login.state is LoginState.FAILED


@pytest.mark.parametrize(
    "code, body",
    [
        (K, b"\x00" * 36),  # protocol 3.2 style long cancel key
        (K, b"\x00\x01"),  # truncated BackendKeyData
        (S, b"name-without-value\x00"),  # truncated ParameterStatus
    ],
    ids=["long-cancel-key", "short-key-data", "truncated-parameter-status"],
)
def test_malformed_frames_after_ok_raise_login_failed(code, body):
    # BackendLogin promises LoginFailed on failure; the protocol layer only
    # catches LoginFailed around receive(), so anything else escapes into the reactor.
    login = BackendLogin("alice", {}, None)
    login.receive(R, auth(codes.AUTH_OK))
    with pytest.raises(LoginFailed) as exc:
        login.receive(code, body)
    assert exc.value.sqlstate == "08P01"
    assert login.state is LoginState.FAILED


def test_truncated_authentication_raises_login_failed():
    login = BackendLogin("alice", {}, None)
    with pytest.raises(LoginFailed) as exc:
        login.receive(R, b"\x00\x00")
    assert exc.value.sqlstate == "08P01"


def test_login_failed_defaults():
    exc = LoginFailed({})
    assert exc.sqlstate == "08P01"
    assert str(exc) == "login failed"
    assert exc.raw is None


# -- secrets never shown ---------------------------------------------------------

def test_secret_repr_hides_password():
    secret = Secret(plaintext="hunter2", md5=md5_inner("hunter2", "alice"))
    text = repr(secret)
    assert "hunter2" not in text
    assert secret.md5 not in text
    assert secret.md5[3:] not in text
    assert text == "Secret(plaintext=set, md5=set)"
    assert repr(Secret()) == "Secret(plaintext=None, md5=None)"
    assert "hunter2" not in str(secret)
    assert "hunter2" not in repr([secret])


def test_login_failure_does_not_leak_password():
    login = BackendLogin("alice", {}, Secret(plaintext="hunter2"))
    with pytest.raises(LoginFailed) as exc:
        login.receive(R, auth(codes.AUTH_GSS))
    assert "hunter2" not in str(exc.value)
    assert "hunter2" not in repr(exc.value.fields)
