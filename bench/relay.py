"""A minimal Twisted byte relay: the speed ceiling of any Twisted proxy.

``python -m bench.relay LISTEN_PORT TARGET_HOST TARGET_PORT`` listens on
127.0.0.1, opens one TCP connection to the target per client and copies bytes
both ways with plain ``transport.write``. Each transport is registered as the
other's streaming producer, so a full send buffer pauses reading on the other
side instead of buffering without bound. Default (epoll) reactor.

With a fourth argument ``--direct-writes`` it sends with pgtwist's
``fastwrite.make_writer`` instead (socket ``send`` when nothing is queued), the
ceiling for a proxy that writes the way pgtwist does.
"""

import sys

from twisted.internet import protocol, reactor


def make_writer(transport):
    return transport.write


class Pipe(protocol.Protocol):
    peer = None

    def dataReceived(self, data):
        self.peer.send(data)

    def connectionLost(self, reason=None):
        if self.peer is not None:
            self.peer.transport.loseConnection()


class Outbound(Pipe):
    def connectionMade(self):
        if not self.factory.inbound.transport.connected:  # the client left meanwhile
            self.transport.loseConnection()
            return
        self.peer, self.factory.inbound.peer = self.factory.inbound, self
        for a, b in ((self, self.peer), (self.peer, self)):
            a.transport.setTcpNoDelay(True)
            a.transport.registerProducer(b.transport, True)  # a's buffer full -> pause b
            a.send = make_writer(a.transport)
        self.peer.transport.resumeProducing()


class OutboundFactory(protocol.ClientFactory):
    protocol = Outbound
    noisy = False

    def __init__(self, inbound):
        self.inbound = inbound

    def clientConnectionFailed(self, connector, reason):
        self.inbound.transport.loseConnection()


class Inbound(Pipe):
    def connectionMade(self):
        self.transport.pauseProducing()  # nothing to forward to until the target answers
        reactor.connectTCP(self.factory.target[0], self.factory.target[1], OutboundFactory(self))


def main(argv):
    global make_writer
    listen_port, host, port = int(argv[0]), argv[1], int(argv[2])
    if argv[3:] == ["--direct-writes"]:
        from pgtwist.protocols.fastwrite import make_writer
    factory = protocol.ServerFactory.forProtocol(Inbound)
    factory.noisy, factory.target = False, (host, port)
    reactor.listenTCP(listen_port, factory, backlog=2048, interface="127.0.0.1")
    reactor.run()


if __name__ == "__main__":
    main(sys.argv[1:])
