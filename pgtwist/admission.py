"""Admission: which client connections take one of the ``num_init_children`` slots.

A connection's first packet is read before it takes a slot, because PostgreSQL
serves a CancelRequest before its "too many clients" check: a runaway query must
stay cancellable when every slot is taken.  SSLRequest and GSSENCRequest are
answered first (a cancel may come over TLS); then a CancelRequest is served
without a slot, and anything else takes one.  At the cap such a connection gets
FATAL 53300 with ``reserved_connections``, or else waits, unanswered, until a
slot frees -- what Pgpool-II's clients do in the listen queue.

Bounds (fail closed): a connection still reading its first packet is closed
after ``authentication_timeout`` (unless 0), and a waiting one is not read beyond
``_WAIT_BUFFER`` bytes.  The connections holding no slot are few: the proxy
stops accepting once ``num_init_children`` plus :func:`spare_connections` are
open, and the kernel's listen queue holds the rest (cancels included).
"""

from __future__ import annotations

import struct

from .timeouts import call_later
from .wire import codes
from .wire.errors import TOO_MANY_CONNECTIONS

NEED_MORE = "need more"
NEGOTIATE = "negotiate"   # SSLRequest or GSSENCRequest: answered before admission
CANCEL = "cancel"         # served without a slot
STARTUP = "startup"       # anything else: needs a slot (bad packets are refused after)

_HEADER = struct.Struct("!II")
_WAIT_BUFFER = 16 * 1024  # a waiting client has sent its StartupMessage (<= 10000 bytes)


def spare_connections(num_init_children: int) -> int:
    """How many connections may be open without a slot (reading, or waiting for one)."""
    return max(num_init_children, 16)


def first_packet(buf: bytes) -> str:
    """What the packet at the start of ``buf`` asks for, from its first 8 bytes."""
    if len(buf) < 8:
        return NEED_MORE
    length, code = _HEADER.unpack_from(buf)
    if length == 8 and code in (codes.SSL_REQUEST, codes.GSSENC_REQUEST):
        return NEGOTIATE
    if length == 16 and code == codes.CANCEL_REQUEST:
        return CANCEL
    return STARTUP


class Gate:
    """Stands before one client's Relay until its first packet says what it is."""

    def __init__(self, proxy, relay):
        self.proxy = proxy
        self.relay = relay
        self.buf = b""
        self.state = "reading"   # reading -> cancel | waiting -> admitted; or closed
        self.holds_slot = False
        self.paused = False

    def client_data(self, data: bytes) -> None:
        if self.state == "closed" or self.relay.closed:
            return
        self.buf += data
        if self.state == "waiting":
            if len(self.buf) > _WAIT_BUFFER and not self.paused:
                self.paused = True
                self.relay.transport.pauseProducing()
            return
        while self.state == "reading" and not self.relay.closed:
            kind = first_packet(self.buf)
            if kind is NEED_MORE:
                return
            if kind is NEGOTIATE:
                self._negotiate()
            elif kind is CANCEL:
                self._pass_through("cancel")
            else:
                self._ask_for_slot()

    def _negotiate(self) -> None:
        if len(self.buf) > 8:
            # Bytes pipelined behind an SSLRequest or GSSENCRequest: the relay refuses
            # them as PostgreSQL does (CVE-2021-23214), so it must see them all at once.
            self._pass_through("closed")
            return
        packet, self.buf = self.buf, b""
        self.relay.client_data(packet)

    def _ask_for_slot(self) -> None:
        answer = self.proxy.take_slot(self)
        if answer == "admitted":
            self.admitted()
        elif answer == "refused":
            self.state = "closed"
            self.buf = b""
            self.relay.fatal(TOO_MANY_CONNECTIONS, "sorry, too many clients already")
        else:
            self.state = "waiting"
            self._hold_timers()

    def admitted(self) -> None:
        """A slot is ours (now, or after waiting): the relay takes over the connection."""
        waited = self.state == "waiting"
        self.holds_slot = True
        if waited:
            self._restart_timers()
        self._pass_through("admitted")
        if self.paused:
            self.paused = False
            self.relay.transport.resumeProducing()

    def _pass_through(self, state: str) -> None:
        self.state = state
        # From now on bytes go straight to the relay, without this gate in between.
        self.client_data = self.relay.client_data
        buf, self.buf = self.buf, b""
        if buf:
            self.relay.client_data(buf)

    def client_lost(self) -> None:
        was = self.state
        self.state = "closed"
        self.buf = b""
        if was == "waiting":
            self.proxy.stop_waiting(self)
        self.relay.client_lost()
        if self.holds_slot:
            self.holds_slot = False
            self.proxy.release_slot()

    # A waiting client is not yet anybody's client: like a connection in Pgpool-II's
    # listen queue, its authentication_timeout and client_idle_limit start on admission.
    def _hold_timers(self) -> None:
        relay = self.relay
        if relay.auth_timer.active():
            relay.auth_timer.cancel()
        if relay.idle_timer is not None and relay.idle_timer.active():
            relay.idle_timer.cancel()
        relay.idle_timer = None

    def _restart_timers(self) -> None:
        relay = self.relay
        if relay.closed:
            return
        reactor = self.proxy.reactor
        relay.auth_timer = call_later(reactor, relay.config.authentication_timeout,
                                      relay._auth_timeout)
        if relay.idle_limit > 0:
            relay.idle_timer = reactor.callLater(relay.idle_limit, relay._idle_timeout)

