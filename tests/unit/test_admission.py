"""The admission gate: what a client's first packet is, and when it takes a slot."""

from __future__ import annotations

import struct
from types import SimpleNamespace

import pytest
from twisted.internet.testing import MemoryReactorClock, StringTransport

from pgtwist.admission import (
    _WAIT_BUFFER,
    CANCEL,
    NEED_MORE,
    NEGOTIATE,
    STARTUP,
    Gate,
    first_packet,
    spare_connections,
)

SSL = struct.pack("!II", 8, 80877103)
GSS = struct.pack("!II", 8, 80877104)
CANCEL_PACKET = struct.pack("!IIII", 16, 80877102, 1234, 5678)
STARTUP_PACKET = struct.pack("!II", 41, 196608) + b"user\0postgres\0database\0postgres\0\0"


@pytest.mark.parametrize("buf, kind", [
    (b"", NEED_MORE),
    (SSL[:7], NEED_MORE),
    (SSL, NEGOTIATE),
    (GSS + STARTUP_PACKET, NEGOTIATE),
    (CANCEL_PACKET[:8], CANCEL),
    (STARTUP_PACKET, STARTUP),
    (struct.pack("!II", 12, 80877102), STARTUP),  # a cancel code with the wrong length
    (struct.pack("!II", 9, 80877103), STARTUP),
    (b"\xff" * 8, STARTUP),  # garbage takes a slot; the relay refuses it
])
def test_first_packet(buf, kind):
    assert first_packet(buf) is kind


def test_spare_connections_are_bounded():
    assert spare_connections(1) == 16
    assert spare_connections(1000) == 1000


class FakeRelay:
    def __init__(self, clock):
        self.transport = StringTransport()
        self.closed = False
        self.received: list[bytes] = []
        self.session = SimpleNamespace(ssl=False)
        self.config = SimpleNamespace(authentication_timeout=60)
        self.auth_timer = clock.callLater(60, self._auth_timeout)
        self.idle_limit = 0.0
        self.idle_timer = None
        self.fatals: list[tuple[str, str]] = []
        self.lost = False

    def client_data(self, data):
        self.received.append(data)

    def _auth_timeout(self):
        self.fatals.append(("08P01", "timeout"))

    def _idle_timeout(self):
        pass

    def fatal(self, sqlstate, message):
        self.fatals.append((sqlstate, message))
        self.closed = True

    def client_lost(self):
        self.lost = True


class FakeProxy:
    def __init__(self, answer="admitted", server_tls=None):
        self.reactor = MemoryReactorClock()
        self.server_tls = server_tls
        self.answer = answer
        self.asked: list[Gate] = []
        self.released = 0
        self.stopped: list[Gate] = []

    def take_slot(self, gate):
        self.asked.append(gate)
        return self.answer

    def release_slot(self):
        self.released += 1

    def stop_waiting(self, gate):
        self.stopped.append(gate)


def _gate(answer="admitted", server_tls=None):
    proxy = FakeProxy(answer, server_tls)
    relay = FakeRelay(proxy.reactor)
    return proxy, relay, Gate(proxy, relay)


def test_a_cancel_request_takes_no_slot():
    proxy, relay, gate = _gate(answer="refused")
    gate.client_data(CANCEL_PACKET[:5])
    assert relay.received == []
    gate.client_data(CANCEL_PACKET[5:])
    assert relay.received == [CANCEL_PACKET]
    assert proxy.asked == [] and relay.fatals == []
    gate.client_lost()
    assert proxy.released == 0 and relay.lost


def test_negotiation_is_answered_before_admission_then_the_startup_asks():
    proxy, relay, gate = _gate()
    gate.client_data(GSS)
    gate.client_data(SSL)  # sent after the answer to GSS, as clients do
    assert relay.received == [GSS, SSL] and proxy.asked == []
    gate.client_data(STARTUP_PACKET)
    assert proxy.asked == [gate] and relay.received[-1] == STARTUP_PACKET
    gate.client_data(b"more")  # admitted: straight through
    assert relay.received[-1] == b"more"
    gate.client_lost()
    assert proxy.released == 1


@pytest.mark.parametrize("tls", [object(), None])
def test_bytes_pipelined_behind_an_ssl_request_reach_the_relay_together(tls):
    """The relay must see them at once to refuse them, TLS or not, as PostgreSQL does
    (CVE-2021-23214; "received unencrypted data after SSL request")."""
    proxy, relay, gate = _gate(answer="refused", server_tls=tls)
    gate.client_data(SSL + STARTUP_PACKET)
    assert relay.received == [SSL + STARTUP_PACKET] and proxy.asked == []
    gate2_proxy, relay2, gate2 = _gate(answer="refused", server_tls=tls)
    gate2.client_data(GSS + SSL)
    assert relay2.received == [GSS + SSL] and gate2_proxy.asked == []


def test_at_the_cap_with_reserved_connections_a_startup_is_refused():
    proxy, relay, gate = _gate(answer="refused")
    gate.client_data(STARTUP_PACKET)
    assert relay.fatals == [("53300", "sorry, too many clients already")]
    assert relay.received == []
    gate.client_data(b"x" * 100)  # ignored, not buffered
    assert gate.buf == b""
    gate.client_lost()
    assert proxy.released == 0


def test_a_waiting_client_is_not_timed_out_and_is_admitted_later():
    proxy, relay, gate = _gate(answer="waiting")
    gate.client_data(STARTUP_PACKET)
    assert relay.received == [] and not relay.auth_timer.active()
    proxy.reactor.advance(3600)
    assert relay.fatals == []
    gate.admitted()
    assert relay.received == [STARTUP_PACKET]
    assert relay.auth_timer.active()  # authentication_timeout starts now
    proxy.reactor.advance(60)
    assert relay.fatals == [("08P01", "timeout")]
    gate.client_lost()
    assert proxy.released == 1


def test_a_waiting_client_is_not_read_without_bound():
    proxy, relay, gate = _gate(answer="waiting")
    gate.client_data(STARTUP_PACKET)
    gate.client_data(b"x" * _WAIT_BUFFER)
    assert relay.transport.producerState == "paused"
    gate.admitted()
    assert relay.transport.producerState == "producing"
    assert b"".join(relay.received) == STARTUP_PACKET + b"x" * _WAIT_BUFFER


def test_a_waiting_client_that_leaves_gives_up_its_place():
    proxy, relay, gate = _gate(answer="waiting")
    gate.client_data(STARTUP_PACKET)
    gate.client_lost()
    assert proxy.stopped == [gate] and proxy.released == 0 and relay.lost


def test_a_silent_connection_is_left_to_the_relays_authentication_timeout():
    proxy, relay, gate = _gate()
    proxy.reactor.advance(60)
    assert relay.fatals == [("08P01", "timeout")]
    assert proxy.asked == []


# -- the proxy's slot accounting -------------------------------------------------------------------


class FakePort:
    reading = True

    def stopReading(self):  # noqa: N802 - Twisted's name
        self.reading = False

    def startReading(self):  # noqa: N802
        self.reading = True


class QueuedGate:
    def __init__(self):
        self.admitted_count = 0

    def admitted(self):
        self.admitted_count += 1


def _proxy(**extra):
    from pgtwist.config import parse_config
    from pgtwist.service import Proxy

    config = parse_config({"backends": [{"hostname": "127.0.0.1"}], "pool_passwd": "",
                           "sr_check_period": 0, **extra}, env={}, check_files=False)
    proxy = Proxy(MemoryReactorClock(), config)
    proxy.ports = [FakePort()]
    return proxy


def test_connections_without_a_slot_are_bounded():
    proxy = _proxy(num_init_children=2)
    for _ in range(2 + 16 - 1):
        assert proxy.admit(StringTransport())
    assert proxy.ports[0].reading
    proxy.admit(StringTransport())  # the 18th: stop accepting, the kernel queues the rest
    assert not proxy.ports[0].reading
    proxy.client_gone()
    assert proxy.ports[0].reading


def test_slots_wait_in_order_without_reserved_connections():
    proxy = _proxy(num_init_children=2)
    first, second, third, fourth = (QueuedGate() for _ in range(4))
    assert [proxy.take_slot(g) for g in (first, second, third, fourth)] == [
        "admitted", "admitted", "waiting", "waiting"]
    proxy.stop_waiting(third)  # it left
    proxy.release_slot()
    assert (third.admitted_count, fourth.admitted_count) == (0, 1)
    assert proxy.clients == 2
    proxy.release_slot()
    assert proxy.take_slot(QueuedGate()) == "admitted"


def test_reserved_connections_refuse_at_once():
    proxy = _proxy(num_init_children=3, reserved_connections=1)
    assert [proxy.take_slot(QueuedGate()) for _ in range(3)] == [
        "admitted", "admitted", "refused"]
    proxy.release_slot()
    assert proxy.take_slot(QueuedGate()) == "admitted"
