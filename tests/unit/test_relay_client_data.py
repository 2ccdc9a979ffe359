"""Relay.client_data: iterative negotiation, bounded unread input, logged internal errors.

A bare Relay (no proxy, no links) is enough: these paths never reach routing.
"""

from __future__ import annotations

import struct
from collections import deque
from types import SimpleNamespace

import pytest
from twisted.logger import globalLogPublisher

from pgtwist.conn.frontend import FrontendMachine, FrontendState
from pgtwist.session.flow import Valve as _Valve
from pgtwist.session.relay import Relay

SSL_REQUEST = b"\x00\x00\x00\x08\x04\xd2\x16\x2f"


def startup(user: str = "alice") -> bytes:
    body = struct.pack("!I", 3 << 16) + b"user\0" + user.encode() + b"\0\0"
    return struct.pack("!I", len(body) + 4) + body


class Transport:
    def __init__(self):
        self.paused = False

    def pauseProducing(self):
        self.paused = True

    def resumeProducing(self):
        self.paused = False


def bare_relay():
    relay = Relay.__new__(Relay)
    relay.closed = False
    relay.idle_timer = None
    relay.machine = FrontendMachine(1 << 20)
    relay.auth = None
    relay.backlog = deque()
    relay.waiting = False
    relay.transport = Transport()
    relay.client_valve = _Valve(relay.transport)
    relay.session = SimpleNamespace(client_address="127.0.0.1:1", ssl=False)
    relay.proxy = SimpleNamespace(server_tls=None)
    relay.written = []
    relay.write = relay.written.append
    relay.fatals = []

    def fatal(sqlstate, message):
        relay.fatals.append((sqlstate, message))
        relay.closed = True

    relay.fatal = fatal
    relay.started = []
    relay._startup = relay.started.append
    return relay


@pytest.fixture
def logged():
    events = []
    globalLogPublisher.addObserver(events.append)
    yield events
    globalLogPublisher.removeObserver(events.append)


def test_thousands_of_ssl_requests_in_one_write(logged):
    relay = bare_relay()
    relay.client_data(SSL_REQUEST * 3000)
    assert relay.written == [b"N"]
    assert relay.fatals == [("08P01", "received unencrypted data after SSL request")]
    assert not [e for e in logged if "log_failure" in e]


def test_ssl_then_startup_in_separate_writes():
    relay = bare_relay()
    relay.client_data(SSL_REQUEST)
    relay.client_data(startup())
    assert relay.written == [b"N"] and relay.fatals == []
    assert [e.user for e in relay.started] == ["alice"]


def test_internal_error_is_logged_with_its_traceback(logged):
    relay = bare_relay()

    def broken(data):
        raise ZeroDivisionError("boom")

    relay.machine.receive = broken
    relay.client_data(b"x")
    assert relay.fatals == [("XX000", "internal error in pgtwist; the session was closed")]
    (event,) = [e for e in logged if "log_failure" in e]
    assert "ZeroDivisionError: boom" in event["log_failure"].getTraceback()
    assert "broken" in event["log_failure"].getTraceback()


def test_unread_input_while_authenticating_pauses_the_client_until_ready():
    relay = bare_relay()
    query = b"Q" + struct.pack("!I", 4 + 70000) + b"x" * 69999 + b"\0"
    relay.client_data(startup() + query[:40000])
    assert relay.machine.state is FrontendState.AUTHENTICATING
    assert not relay.transport.paused
    relay.client_data(query[40000:])
    assert relay.transport.paused  # nothing asked for it: stop reading, as PostgreSQL does
    routed = []
    relay._drain = lambda: routed.extend(relay.backlog)
    relay.machine.authenticated()
    relay.client_data(b"")  # what _startup_done does
    assert not relay.transport.paused
    assert len(routed) == 1 and routed[0][1][0][0] == ord("Q")
