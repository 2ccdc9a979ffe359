"""The PCP port's Twisted shell: feeds bytes to :class:`PcpMachine`, runs the commands it
lets through one at a time, writes the replies."""

from __future__ import annotations

import os

from twisted.internet import defer
from twisted.internet.protocol import Factory, Protocol

from ..logs import logger
from . import codec
from .commands import CommandError
from .conf import PcpConfError, read_pcp_conf
from .machine import Close, Command, LoginRefused, PcpMachine, Write

log = logger(__name__)

# An idle or half-finished PCP connection is closed after this long (Pgpool-II's pcp
# workers wait forever; pgtwist bounds them like its client logins).
IDLE_TIMEOUT = 300.0
# PCP connections open at once; more are closed at once (Pgpool-II forks without a limit).
MAX_CONNECTIONS = 64


class PcpProtocol(Protocol):
    def __init__(self, factory: PcpFactory):
        self.factory = factory
        self.machine = PcpMachine(factory.credentials, factory.salt, self._login_failed)
        self._backlog: list = []
        self._busy = False
        self._timer = None

    def connectionMade(self) -> None:
        if len(self.factory.open) >= MAX_CONNECTIONS:
            log.warn("{n} PCP connections open: a new one is closed", n=len(self.factory.open))
            self.transport.abortConnection()
            return
        self.factory.open.add(self)
        self._timer = self.factory.reactor.callLater(IDLE_TIMEOUT, self._idle)

    def _idle(self) -> None:
        self._timer = None
        self.transport.loseConnection()

    def dataReceived(self, data: bytes) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.reset(IDLE_TIMEOUT)
        self._backlog.extend(self.machine.receive(data))
        self._drain()

    def _drain(self) -> None:
        while self._backlog and not self._busy:
            event = self._backlog.pop(0)
            if isinstance(event, Write):
                self.transport.write(event.data)
            elif isinstance(event, Close):
                self._backlog.clear()
                self.transport.loseConnection()
            elif isinstance(event, Command):
                self._run(event)

    def _run(self, event: Command) -> None:
        self._busy = True
        self.transport.pauseProducing()   # no reading (and queueing) while it runs
        d = defer.maybeDeferred(self.factory.commands.run, event.letter, event.payload)
        d.addErrback(self._failed, event.letter)
        d.addCallback(self._replied)

    def _failed(self, failure, letter: str) -> bytes:
        if failure.check(CommandError):
            return codec.error("ERROR", failure.value.message, failure.value.detail)
        log.failure("PCP request {letter!r} failed", failure, letter=letter)
        return codec.error("ERROR", "PCP request failed", "internal error in pgtwist")

    def _replied(self, data: bytes) -> None:
        self._busy = False
        if self.transport is not None and self in self.factory.open:
            self.transport.write(data)
            self.transport.resumeProducing()
            self._drain()

    def _login_failed(self, user: str, why: str) -> None:
        peer = self.transport.getPeer() if self.transport is not None else None
        log.warn("PCP login as {user!r} from {peer} refused: {why}", user=user,
                 peer=getattr(peer, "host", None) or "local socket", why=why)

    def connectionLost(self, reason=None) -> None:
        self.factory.open.discard(self)
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None


class PcpFactory(Factory):
    noisy = False

    def __init__(self, reactor, commands, conf_path: str):
        self.reactor = reactor
        self.commands = commands
        self.conf_path = conf_path
        self.open: set[PcpProtocol] = set()

    def buildProtocol(self, addr):
        return PcpProtocol(self)

    def credentials(self, user: str) -> str | None:
        try:
            return read_pcp_conf(self.conf_path).get(user)
        except PcpConfError as exc:
            raise LoginRefused(str(exc)) from None

    @staticmethod
    def salt() -> bytes:
        return os.urandom(4)

    def close_all(self) -> None:
        for proto in list(self.open):
            proto.transport.loseConnection()
