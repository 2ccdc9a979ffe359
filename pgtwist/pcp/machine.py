"""One PCP connection's state, sans-IO: framing, the md5-salt login, and which packets may
reach a command handler.

``receive(data)`` returns events: ``Write(bytes)``, ``Command(letter, payload)`` (only after
a successful login) and ``Close()`` (after a FATAL or 'X'). Nothing is read after a close.
The errors and their texts are Pgpool-II 4.3.5's, so the real pcp_* tools print the same.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable
from dataclasses import dataclass

from . import codec

# The request letters pgtwist answers once logged in ('X' ends the connection).
COMMANDS = frozenset("LICDdJjNPBHZTt")


@dataclass(frozen=True)
class Write:
    data: bytes


@dataclass(frozen=True)
class Command:
    letter: str
    payload: bytes


@dataclass(frozen=True)
class Close:
    pass


class LoginRefused(Exception):
    """Credentials are unusable (no pcp.conf, malformed file): logged, never shown."""


class PcpMachine:
    """``credentials(user)`` returns the user's md5hex(password), None for an unknown user, or
    raises LoginRefused; ``salt()`` returns 4 random bytes; ``on_login_failure(user, why)``
    hears about every refused login (for the log)."""

    def __init__(self, credentials: Callable[[str], str | None], salt: Callable[[], bytes],
                 on_login_failure: Callable[[str, str], None] = lambda user, why: None):
        self._credentials = credentials
        self._salt_source = salt
        self._on_login_failure = on_login_failure
        self._reader = codec.PacketReader()
        self._salt: bytes | None = None
        self.user: str | None = None
        self.closed = False

    @property
    def authenticated(self) -> bool:
        return self.user is not None

    def receive(self, data: bytes) -> list:
        if self.closed:
            return []
        packets = self._reader.feed(data)
        bad = self._reader.error
        events: list = []
        for letter, payload in packets:
            events.extend(self._packet(letter, payload))
            if self.closed:
                return events
        if bad is not None:
            events.extend(self._fatal(bad.message, bad.detail))
        return events

    def _fatal(self, message: str, detail: str) -> list:
        self.closed = True
        return [Write(codec.error("FATAL", message, detail)), Close()]

    def _packet(self, letter: str, payload: bytes) -> list:
        if letter == "X":
            self.closed = True
            return [Close()]
        if letter == "M":
            self._salt = self._salt_source()
            return [Write(codec.packet("m", self._salt))]
        if letter == "R":
            return self._login(payload)
        if not self.authenticated:
            return self._fatal("authentication failed for new PCP connection",
                               "connection not authorized")
        if letter not in COMMANDS:
            return self._fatal("PCP processing request", f'unknown PCP packet type "{letter}"')
        return [Command(letter, payload)]

    def _login(self, payload: bytes) -> list:
        fields = codec.split_strings(payload)
        user = fields[0] if fields else ""
        sent = fields[1] if len(fields) > 1 else ""
        salt, self._salt = self._salt, None  # one salt, one try
        why = None
        if salt is None:
            why = "no salt was requested before the password"
        else:
            try:
                stored = self._credentials(user)
            except LoginRefused as exc:
                stored, why = None, str(exc)
            if stored is None:
                why = why or "no such user in pcp.conf"
            elif not hmac.compare_digest(codec.expected_hash(stored, user, salt).encode(),
                                         sent.encode("utf-8", "replace")):
                why = "wrong password"
        if why is not None:
            self._on_login_failure(user, why)
            if salt is None:
                return self._fatal("authentication failed",
                                   "username and/or password does not match")
            return self._fatal(f'authentication failed for user "{user}"',
                               "username and/or password does not match")
        self.user = user
        return [Write(codec.reply("r", "AuthenticationOK"))]
