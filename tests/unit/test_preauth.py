"""Pre-authentication bounds (security review finding 1, S1, S2): fresh logins that never
take a cached link, the per-user gate on pre-auth server connections, the remembered
server methods, and the cached SCRAM verifier derivation.  No sockets."""

from __future__ import annotations

from twisted.internet import defer

from pgtwist.conn import client_auth, scram
from pgtwist.conn.auth import Secret
from pgtwist.conn.backend import BackendLogin, LoginFailed, SecretMissing
from pgtwist.pooling.checkout import PreAuthGate, ServerMethods
from pgtwist.wire import codes
from pgtwist.wire import messages as m

from .test_pool import APP, link_of, make_pool, take


# -- fresh checkouts --------------------------------------------------------------------------
def test_a_fresh_checkout_never_takes_an_idle_link():
    pool, _, conn = make_pool()
    first = link_of(take(pool.checkout(APP, {})))
    pool.checkin(first, reusable=True)
    fresh = link_of(take(pool.checkout(APP, {}, fresh=True)))
    assert fresh is not first and len(conn.calls) == 2
    assert pool.stats()["keys"][APP]["idle"] == 1  # the cached one is still there


def test_a_fresh_checkout_counts_against_the_node_cap_and_evicts_an_idle_link():
    pool, _, conn = make_pool(backend_max_connections=1)
    first = link_of(take(pool.checkout(APP, {})))
    pool.checkin(first, reusable=True)
    fresh = link_of(take(pool.checkout(APP, {}, fresh=True)))
    assert first.terminated and fresh is not first
    assert pool.stats()["nodes"][1] == {"idle": 0, "busy": 1, "connecting": 0, "waiting": 0}


def test_a_fresh_waiter_is_not_handed_a_checked_in_link():
    pool, _, conn = make_pool(backend_max_connections=1)
    busy = link_of(take(pool.checkout(APP, {})))
    box = take(pool.checkout(APP, {}, fresh=True))
    assert box == []  # the node is full
    pool.checkin(busy, reusable=True)
    # The slot is freed by evicting the idle link; the waiter gets a new login.
    fresh = link_of(box)
    assert fresh is not busy and busy.terminated and len(conn.calls) == 2


def test_a_fresh_checkout_is_paced_like_any_connection():
    pool, clock, conn = make_pool(connect_rate=1.0, connect_burst=1)
    link_of(take(pool.checkout(APP, {})))
    box = take(pool.checkout(APP, {}, fresh=True))
    assert box == [] and len(conn.calls) == 1
    clock.advance(1.0)
    link_of(box)


def test_a_plain_waiter_behind_a_fresh_one_still_gets_checked_in_links():
    pool, _, conn = make_pool(backend_max_connections=1, checkout_timeout=0)
    conn.auto = False
    d = take(pool.checkout(APP, {}))
    first = conn.succeed(0)
    assert link_of(d) is first
    fresh_box = take(pool.checkout(APP, {}, fresh=True))
    plain_box = take(pool.checkout(APP, {}))
    pool.checkin(first, reusable=True)
    assert link_of(plain_box) is first  # the fresh waiter may not have it
    assert fresh_box == []


# -- the gate ------------------------------------------------------------------------------------
def test_the_gate_bounds_pre_auth_connections_per_claimed_user():
    gate = PreAuthGate(2)
    a, b, c = take(gate.acquire("alice")), take(gate.acquire("alice")), take(gate.acquire("alice"))
    other = take(gate.acquire("bob"))
    assert a == [None] and b == [None] and c == [] and other == [None]
    gate.release("alice")
    assert c == [None]  # the slot passed on
    gate.release("alice")
    gate.release("alice")
    assert gate.active == {"bob": 1}


def test_a_cancelled_gate_waiter_leaves_the_queue():
    gate = PreAuthGate(1)
    take(gate.acquire("alice"))
    d = gate.acquire("alice")
    box = take(d)
    d.cancel()
    assert isinstance(box[0].value, defer.CancelledError)
    gate.release("alice")
    assert gate.active == {} and gate.waiters == {}


# -- remembered methods -----------------------------------------------------------------------
def test_trust_is_never_remembered():
    methods = ServerMethods()
    methods.put("alice", "db", "scram-sha-256")
    assert methods.get("alice", "db") == "scram-sha-256"
    methods.put("alice", "db", "trust")
    assert methods.get("alice", "db") is None


def test_remembered_methods_are_bounded():
    methods = ServerMethods(size=2)
    for user in ("a", "b", "c"):
        methods.put(user, "db", "md5")
    assert methods.get("a", "db") is None and methods.get("c", "db") == "md5"


# -- the server asks for a secret pgtwist lacks -------------------------------------------------
def _ask(login: BackendLogin, subtype: int, payload: bytes = b"") -> None:
    login.startup()
    login.receive(codes.AUTHENTICATION, subtype.to_bytes(4, "big") + payload)


def test_a_missing_secret_names_the_method_the_server_asked_for():
    for subtype, payload, method in (
        (codes.AUTH_CLEARTEXT, b"", "password"),
        (codes.AUTH_MD5, b"salt", "md5"),
        (codes.AUTH_SASL, b"SCRAM-SHA-256\0\0", "scram-sha-256"),
    ):
        login = BackendLogin("bob", {"database": "db"}, None)
        try:
            _ask(login, subtype, payload)
        except SecretMissing as exc:
            assert exc.method == method
            assert isinstance(exc, LoginFailed) and exc.sqlstate == "28P01"
        else:
            raise AssertionError(f"no SecretMissing for {method}")


def test_an_md5_hash_against_scram_is_a_missing_secret_too():
    login = BackendLogin("bob", {}, Secret(md5="md5" + "0" * 32))
    try:
        _ask(login, codes.AUTH_SASL, b"SCRAM-SHA-256\0\0")
    except SecretMissing as exc:
        assert exc.method == "scram-sha-256" and "md5 hash" in str(exc)
    else:
        raise AssertionError("no SecretMissing")


# -- S1: PBKDF2 once per (user, secret) --------------------------------------------------------
def test_scram_verifier_derivation_is_cached(monkeypatch):
    calls = []
    real = scram.password_keys

    def counting(*args):
        calls.append(args)
        return real(*args)

    monkeypatch.setattr(scram, "password_keys", counting)
    client_auth._derived_verifier.cache_clear()
    secret = client_auth.AuthSecret(plaintext="pw one")
    for _ in range(5):
        auth = client_auth.ClientAuthenticator("scram-sha-256", "alice",
                                               secret_lookup=lambda _u: secret)
        assert auth.start().startswith(m.frame(codes.AUTHENTICATION)[:1])
    assert len(calls) == 1
