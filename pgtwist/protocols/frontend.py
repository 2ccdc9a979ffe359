"""Twisted glue for client connections: bytes in, relay out."""

from __future__ import annotations

from twisted.internet.protocol import Protocol, ServerFactory

from ..logs import logger
from ..wire import messages as m
from ..wire.errors import INTERNAL_ERROR

log = logger(__name__)


class ClientProtocol(Protocol):
    relay = None

    def connectionMade(self) -> None:
        if hasattr(self.transport, "setTcpNoDelay"):
            self.transport.setTcpNoDelay(True)
        if not self.factory.proxy.admit(self.transport):
            return
        self.admitted = True
        try:
            self.relay = self.factory.proxy.make_relay(self.transport)
        except Exception:
            log.failure("could not set up a client session")
            self.transport.write(m.error_response(
                INTERNAL_ERROR, "internal error in pgtwist; the session was closed", "FATAL"))
            self.transport.loseConnection()

    def dataReceived(self, data: bytes) -> None:
        if self.relay is not None:
            self.relay.client_data(data)

    admitted = False

    def connectionLost(self, reason=None) -> None:
        if self.relay is not None:
            self.relay.client_lost()
        if self.admitted:
            self.admitted = False
            self.factory.proxy.client_gone()


class ClientFactory(ServerFactory):
    protocol = ClientProtocol
    noisy = False

    def __init__(self, proxy):
        self.proxy = proxy


