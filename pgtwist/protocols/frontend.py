"""Twisted glue for client connections: bytes in, relay out."""

from __future__ import annotations

from twisted.internet.protocol import Protocol, ServerFactory


class ClientProtocol(Protocol):
    relay = None

    def connectionMade(self) -> None:
        if hasattr(self.transport, "setTcpNoDelay"):
            self.transport.setTcpNoDelay(True)
        self.relay = self.factory.proxy.make_relay(self.transport)

    def dataReceived(self, data: bytes) -> None:
        self.relay.client_data(data)

    def connectionLost(self, reason=None) -> None:
        if self.relay is not None:
            self.relay.client_lost()


class ClientFactory(ServerFactory):
    protocol = ClientProtocol
    noisy = False

    def __init__(self, proxy):
        self.proxy = proxy


