"""Producer/consumer plumbing between one client and its backend links.

A slow client pauses every backend link of its session; any backend link with
a full send buffer (or a wait for routing facts) pauses the client.  Several
holders may pause one transport, so pauses are counted.
"""

from __future__ import annotations

from twisted.internet.interfaces import IPushProducer
from zope.interface import implementer


@implementer(IPushProducer)
class Valve:
    """Pauses one transport while any of its holders asks (several links may)."""

    def __init__(self, transport):
        self.transport = transport
        self.holders: set = set()

    def hold(self, holder) -> None:
        if not self.holders:
            self.transport.pauseProducing()
        self.holders.add(holder)

    def release(self, holder) -> None:
        if holder in self.holders:
            self.holders.discard(holder)
            if not self.holders:
                self.transport.resumeProducing()


@implementer(IPushProducer)
class ValveHandle:
    """What one consumer registers: its pause requests go into a shared valve."""

    def __init__(self, valve: Valve):
        self.valve = valve

    def pauseProducing(self) -> None:
        self.valve.hold(self)

    def resumeProducing(self) -> None:
        self.valve.release(self)

    def stopProducing(self) -> None:
        self.valve.release(self)


@implementer(IPushProducer)
class LinksProducer:
    """Registered on the client transport: a slow client pauses every link."""

    def __init__(self, links):
        self.links = links

    def pauseProducing(self) -> None:
        self.links.pause_all()

    def resumeProducing(self) -> None:
        self.links.resume_all()

    def stopProducing(self) -> None:
        self.links.paused = False
