"""Client byte streams for fuzzing the sans-IO frontend codec, and a driver that plays
the server's part so a whole stream (startup, password, ready-state frames) goes through
``FrontendMachine`` in any chunking.

``drive`` returns a normalised event list that does not depend on how the bytes were
cut: frames are flattened to ``("frame", code, body)`` and a protocol error ends the list
as ``("error", sqlstate, message)``.  Anything but ``ProtocolViolation`` escapes: that is
a crash of the codec.
"""

from __future__ import annotations

import random
import struct

from pgtwist.conn.frontend import (
    CancelRequested,
    Frames,
    FrontendMachine,
    FrontendState,
    GSSENCRequested,
    SSLRequested,
    StartupReceived,
)
from pgtwist.wire import codes
from pgtwist.wire.errors import ProtocolViolation

from ..frontend_messages import (  # noqa: F401 (sessions.py builds its messages from here)
    COPY_DONE,
    FLUSH,
    SYNC,
    TERMINATE,
    bind,
    cancel_request,
    close,
    copy_data,
    copy_fail,
    cstr,
    describe,
    execute,
    function_call,
    msg,
    parse,
    password,
    query,
    startup_packet,
)

MAX_MESSAGE_LENGTH = 1 << 16
SSL_REQUEST = struct.pack("!II", 8, codes.SSL_REQUEST)
GSSENC_REQUEST = struct.pack("!II", 8, codes.GSSENC_REQUEST)


# -- generating valid streams ---------------------------------------------------------

_WORDS = ["select 1", "select $1::int", "begin", "commit", "set search_path = x",
          "copy t from stdin", "select * from t", "", "show all", "x" * 300]


def ready_message(rng: random.Random) -> bytes:
    """One well-formed ready-state client message."""
    kind = rng.randrange(13)
    name = rng.choice([b"", b"s1", b"portal_x", b"\xc3\xa9"])
    if kind == 0:
        return query(rng.choice(_WORDS))
    if kind == 1:
        return parse(rng.choice(_WORDS), name, tuple(rng.randrange(1 << 32)
                                                      for _ in range(rng.randrange(3))))
    if kind == 2:
        params = [rng.choice([None, b"", b"42", bytes(rng.randrange(40))])
                  for _ in range(rng.randrange(4))]
        return bind(params, name, rng.choice([b"", b"s1"]),
                    tuple(rng.randrange(2) for _ in range(rng.randrange(3))),
                    tuple(rng.randrange(2) for _ in range(rng.randrange(3))))
    if kind == 3:
        return describe(rng.choice([b"S", b"P"]), name)
    if kind == 4:
        return close(rng.choice([b"S", b"P"]), name)
    if kind == 5:
        return execute(name, rng.randrange(-1, 5))
    if kind == 6:
        return SYNC
    if kind == 7:
        return FLUSH
    if kind == 8:
        return copy_data(bytes(rng.randrange(256) for _ in range(rng.randrange(30))))
    if kind == 9:
        return COPY_DONE
    if kind == 10:
        return copy_fail(rng.choice(["", "abort", "é"]))
    if kind == 11:
        return function_call(rng.randrange(1 << 32), [None, b"1"][: rng.randrange(3)])
    return TERMINATE if rng.random() < 0.2 else query("select 2")


def valid_parts(rng: random.Random) -> list[tuple[bytes, int]]:
    """A whole well-formed client stream as its messages: ``(bytes, offset of the length
    field)`` (0 for the untyped startup packets, 1 for typed messages)."""
    if rng.random() < 0.05:
        return [(cancel_request(rng.randrange(1 << 32), rng.randrange(1 << 32)), 0)]
    params = {"user": rng.choice(["alice", "bob", "u" * 60]), "database": "db"}
    if rng.random() < 0.3:
        params["application_name"] = "fuzz"
    if rng.random() < 0.1:
        params["_pq_.compression"] = "on"
    parts = [(p, 0) for p in (GSSENC_REQUEST, SSL_REQUEST) if rng.random() < 0.3]
    rng.shuffle(parts)
    parts.append((startup_packet(params, (3 << 16) | rng.choice([0, 0, 0, 1, 2])), 0))
    parts.append((password(rng.choice([b"secret", b"", b"x" * 100])), 1))
    parts += [(ready_message(rng), 1) for _ in range(rng.randrange(12))]
    return parts


def valid_stream(rng: random.Random) -> bytes:
    return b"".join(p for p, _ in valid_parts(rng))


def corpus(seed: int, n: int = 200) -> list[list[tuple[bytes, int]]]:
    rng = random.Random(seed)
    return [valid_parts(rng) for _ in range(n)]


# -- the driver ------------------------------------------------------------------------

def drive(chunks, max_message_length: int = MAX_MESSAGE_LENGTH) -> list[tuple]:
    """Feed ``chunks`` to a FrontendMachine, answering as a server whose every login asks
    for one password and accepts it.  Returns normalised events (see module doc)."""
    m = FrontendMachine(max_message_length)
    out: list[tuple] = []
    password_seen = False
    try:
        for chunk in chunks:
            data = chunk
            while True:
                if m.state is FrontendState.AUTHENTICATING:
                    m.expecting = None if password_seen else "password"
                events = m.receive(data)
                data = b""
                for event in events:
                    kind = type(event)
                    if kind is Frames:
                        buf = event.buf
                        for code, start, end in event.frames:
                            out.append(("frame", code, buf[start:end]))
                        if m.state is FrontendState.AUTHENTICATING:
                            password_seen = True
                            m.authenticated()
                    elif kind is StartupReceived:
                        out.append(("startup", tuple(event.params.items()), event.minor_version,
                                    event.unsupported_options))
                    elif kind is SSLRequested:
                        out.append(("ssl",))
                    elif kind is GSSENCRequested:
                        out.append(("gss",))
                    elif kind is CancelRequested:
                        out.append(("cancel", event.pid, event.secret))
                    elif isinstance(event, ProtocolViolation):
                        raise event
                    else:  # pragma: no cover - a new event type the driver must learn
                        raise AssertionError(f"unknown event {event!r}")
                if not (events and m.leftover):
                    break
    except ProtocolViolation as exc:
        out.append(("error", exc.sqlstate, exc.message))
    return out


def chunked(data: bytes, rng: random.Random, max_piece: int | None = None) -> list[bytes]:
    """``data`` cut at random points (pieces of 1 byte up to ``max_piece``)."""
    if not data:
        return [b""]
    max_piece = max_piece or max(1, len(data) // rng.choice([1, 2, 3, 8, 32]))
    out, pos = [], 0
    while pos < len(data):
        step = rng.randint(1, max_piece)
        out.append(data[pos:pos + step])
        pos += step
    return out
