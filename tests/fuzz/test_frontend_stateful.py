"""Hypothesis stateful test of FrontendMachine against a small model of what PostgreSQL
accepts: SSLRequest / GSSENCRequest once each, CancelRequest, StartupMessage, one password
message while one is expected, then ready-state messages; every refusal is a
ProtocolViolation and leaves nothing half-read."""

from __future__ import annotations

import struct

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from pgtwist.conn.frontend import (
    CancelRequested,
    Frames,
    FrontendMachine,
    FrontendState,
    GSSENCRequested,
    SSLRequested,
    StartupReceived,
)
from pgtwist.wire.errors import ProtocolViolation

from . import streams as s
from .test_codec_properties import junk, ready_messages

MAX = s.MAX_MESSAGE_LENGTH


class FrontendModel(RuleBasedStateMachine):
    def __init__(self):
        super().__init__()
        self.m = FrontendMachine(MAX)
        self.phase = "startup"
        self.ssl = self.gss = False
        self.pending_password = b""  # sent before it was asked for

    def feed(self, data: bytes, cut: int) -> list:
        """Feed in pieces of ``cut`` bytes; a ProtocolViolation is returned as an event."""
        events: list = []
        pieces = [data[i:i + cut] for i in range(0, len(data), cut)] or [b""]
        for piece in pieces:
            try:
                events += self.m.receive(piece)
            except ProtocolViolation as exc:
                events.append(exc)
                break
        return events

    def expect_violation(self, events: list) -> None:
        assert events and isinstance(events[-1], ProtocolViolation), events
        self.phase = "closed"
        self.m.close()

    # -- startup -------------------------------------------------------------------
    @precondition(lambda self: self.phase == "startup")
    @rule(cut=st.integers(1, 8))
    def ssl_request(self, cut):
        events = self.feed(s.SSL_REQUEST, cut)
        if self.ssl:
            self.expect_violation(events)
            assert events[-1].sqlstate == "0A000"
        else:
            assert events == [SSLRequested()]
            self.ssl = True

    @precondition(lambda self: self.phase == "startup")
    @rule(cut=st.integers(1, 8))
    def gssenc_request(self, cut):
        events = self.feed(s.GSSENC_REQUEST, cut)
        if self.gss:
            self.expect_violation(events)
        else:
            assert events == [GSSENCRequested()]
            self.gss = True

    @precondition(lambda self: self.phase == "startup")
    @rule(pid=st.integers(0, 2**32 - 1), secret=st.integers(0, 2**32 - 1), cut=st.integers(1, 16))
    def cancel_request(self, pid, secret, cut):
        assert self.feed(s.cancel_request(pid, secret), cut) == [CancelRequested(pid, secret)]
        assert self.m.state is FrontendState.CLOSED
        self.phase = "closed"

    @precondition(lambda self: self.phase == "startup")
    @rule(user=st.text(min_size=1, max_size=10).filter(lambda u: "\0" not in u),
          minor=st.integers(0, 3), cut=st.integers(1, 64))
    def startup(self, user, minor, cut):
        events = self.feed(s.startup_packet({"user": user}, (3 << 16) | minor), cut)
        assert len(events) == 1 and isinstance(events[0], StartupReceived)
        assert events[0].user == user and events[0].minor_version == minor
        self.phase = "auth"

    @precondition(lambda self: self.phase == "startup")
    @rule(body=st.binary(min_size=4, max_size=40), cut=st.integers(1, 16))
    def bad_startup(self, body, cut):
        events = self.feed(struct.pack("!I", len(body) + 4) + body, cut)
        if events and isinstance(events[-1], ProtocolViolation):
            self.expect_violation(events)
        elif events:
            event = events[0]
            if isinstance(event, StartupReceived):
                self.phase = "auth"
            elif isinstance(event, CancelRequested):
                self.phase = "closed"
            elif isinstance(event, SSLRequested):
                assert not self.ssl
                self.ssl = True
            else:
                assert isinstance(event, GSSENCRequested) and not self.gss
                self.gss = True

    # -- authentication ------------------------------------------------------------
    @precondition(lambda self: self.phase == "auth" and not self.pending_password)
    @rule(secret=st.binary(max_size=30).map(lambda b: b.replace(b"\0", b"")))
    def password_before_asked(self, secret):
        """PostgreSQL reads nothing while it has not asked: the bytes wait."""
        data = s.password(secret)
        assert self.m.receive(data) == []
        self.pending_password = data

    @precondition(lambda self: self.phase == "auth")
    @rule(secret=st.binary(max_size=30).map(lambda b: b.replace(b"\0", b"")),
          cut=st.integers(1, 12))
    def password(self, secret, cut):
        self.m.expecting = "password"
        data = self.pending_password or s.password(secret)
        events = self.feed(b"" if self.pending_password else data, cut)
        self.pending_password = b""
        assert len(events) == 1 and isinstance(events[0], Frames)
        (frame,) = events[0].frames
        assert events[0].buf[frame[1]:frame[2]] == data[5:]
        self.m.authenticated()
        self.phase = "ready"

    @precondition(lambda self: self.phase == "auth" and not self.pending_password)
    @rule(message=ready_messages)
    def other_message_while_authenticating(self, message):
        self.m.expecting = "password"
        events = self.feed(message, len(message))
        if message[:1] == b"X":
            assert len(events) == 1 and isinstance(events[0], Frames)
            self.phase = "closed"
            self.m.close()
        else:
            self.expect_violation(events)

    # -- ready ---------------------------------------------------------------------
    @precondition(lambda self: self.phase == "ready")
    @rule(messages=st.lists(ready_messages, min_size=1, max_size=6), cut=st.integers(1, 50))
    def ready_messages(self, messages, cut):
        events = self.feed(b"".join(messages), cut)
        got = [(e.buf[a - 5], e.buf[a:b]) for e in events for _, a, b in e.frames]
        assert got == [(msg[0], msg[5:]) for msg in messages]

    @precondition(lambda self: self.phase == "ready")
    @rule(bad=junk, cut=st.integers(1, 8))
    def junk_when_ready(self, bad, cut):
        events = self.feed(bad, cut)
        if events and isinstance(events[-1], ProtocolViolation):
            self.expect_violation(events)
        elif self.m._frames.pending:
            # an incomplete frame: nothing more can be said about the stream
            self.phase = "closed"
            self.m.close()

    @precondition(lambda self: self.phase == "closed")
    @rule(data=st.binary(max_size=20))
    def closed_reads_nothing(self, data):
        assert self.m.receive(data) == []

    @invariant()
    def state_matches(self):
        expected = {"startup": FrontendState.STARTUP, "auth": FrontendState.AUTHENTICATING,
                    "ready": FrontendState.READY, "closed": FrontendState.CLOSED}[self.phase]
        assert self.m.state is expected


FrontendModel.TestCase.settings = settings(
    max_examples=60, stateful_step_count=20, derandomize=True, deadline=None, database=None,
    suppress_health_check=[HealthCheck.too_slow])
TestFrontendModel = FrontendModel.TestCase
