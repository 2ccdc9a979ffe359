"""Client-side state machine: startup negotiation, then validated frames."""

from __future__ import annotations

import struct

import pytest

from pgtwist.conn.frontend import (
    CancelRequested,
    Frames,
    FrontendMachine,
    FrontendState,
    GSSENCRequested,
    SSLRequested,
    StartupReceived,
)
from pgtwist.wire import messages as m
from pgtwist.wire.errors import ProtocolViolation


def frame(code: bytes, body: bytes = b"") -> bytes:
    return code + struct.pack("!I", len(body) + 4) + body


def startup(params: dict[str, str], major: int = 3, minor: int = 0) -> bytes:
    body = struct.pack("!HH", major, minor)
    for key, value in params.items():
        body += key.encode() + b"\0" + value.encode() + b"\0"
    body += b"\0"
    return struct.pack("!I", len(body) + 4) + body


SSL_REQUEST = b"\x00\x00\x00\x08\x04\xd2\x16\x2f"
GSSENC_REQUEST = b"\x00\x00\x00\x08\x04\xd2\x16\x30"
PASSWORD = frame(b"p", b"secret\x00")
BATCH = b"".join(
    [
        frame(b"P", b"\x00SELECT $1\x00\x00\x01\x00\x00\x00\x17"),
        frame(b"B", b"\x00\x00\x00\x00\x00\x01\x00\x00\x00\x011\x00\x00"),
        frame(b"D", b"P\x00"),
        frame(b"E", b"\x00\x00\x00\x00\x00"),
        frame(b"S"),
    ]
)


def ready_machine(max_message_length: int = 1 << 20, validate: bool = True) -> FrontendMachine:
    machine = FrontendMachine(max_message_length, validate=validate)
    events = machine.receive(startup({"user": "alice"}))
    assert isinstance(events[0], StartupReceived)
    machine.authenticated()
    assert machine.state is FrontendState.READY
    return machine


def frame_list(events) -> list[tuple[str, bytes]]:
    out = []
    for event in events:
        assert isinstance(event, Frames)
        for code, start, end in event.frames:
            assert event.buf[start - 5] == code
            assert struct.unpack_from("!I", event.buf, start - 4)[0] == end - start + 4
            out.append((chr(code), event.buf[start:end]))
    return out


# -- startup phase ---------------------------------------------------------------

def test_initial_state():
    machine = FrontendMachine(1 << 20)
    assert machine.state is FrontendState.STARTUP
    assert not machine.ssl_requested
    assert machine.receive(b"") == []


def test_ssl_request_then_startup_on_same_stream():
    machine = FrontendMachine(1 << 20)
    assert machine.receive(SSL_REQUEST) == [SSLRequested()]
    assert machine.ssl_requested
    assert machine.state is FrontendState.STARTUP
    events = machine.receive(startup({"user": "alice", "database": "db"}))
    assert events == [StartupReceived({"user": "alice", "database": "db"}, 0, ())]
    assert machine.state is FrontendState.AUTHENTICATING


def test_ssl_request_and_startup_in_one_chunk_keeps_the_rest_for_the_caller():
    # Bytes after an SSLRequest must not be read before the answer: after 'S' they
    # would be plaintext injected ahead of the TLS handshake (CVE-2021-23214).
    machine = FrontendMachine(1 << 20)
    events = machine.receive(SSL_REQUEST + startup({"user": "alice"}))
    assert events == [SSLRequested()]
    assert machine.leftover == startup({"user": "alice"})
    assert machine.state is FrontendState.STARTUP
    # After answering 'N' the caller feeds them back.
    rest, machine.leftover = machine.leftover, b""
    assert machine.receive(rest) == [StartupReceived({"user": "alice"}, 0, ())]


def test_gssenc_request():
    machine = FrontendMachine(1 << 20)
    assert machine.receive(GSSENC_REQUEST) == [GSSENCRequested()]
    assert machine.state is FrontendState.STARTUP
    assert not machine.ssl_requested
    assert machine.receive(startup({"user": "bob"}))[0].user == "bob"


def test_cancel_request():
    machine = FrontendMachine(1 << 20)
    packet = struct.pack("!IIII", 16, 80877102, 4242, 0xCAFEBABE)
    assert packet == m.cancel_request(4242, 0xCAFEBABE)
    events = machine.receive(packet + b"anything after is ignored")
    assert events == [CancelRequested(4242, 0xCAFEBABE)]
    assert machine.state is FrontendState.CLOSED
    assert machine.receive(frame(b"Q", b"SELECT 1\x00")) == []


def test_startup_message_with_params():
    params = {
        "user": "alice",
        "database": "shop",
        "application_name": "psql",
        "client_encoding": "UTF8",
        "options": "-c search_path=app",
    }
    (event,) = FrontendMachine(1 << 20).receive(startup(params))
    assert event.params == params
    assert event.minor_version == 0
    assert event.unsupported_options == ()
    assert event.user == "alice"
    assert event.database == "shop"


def test_database_defaults_to_user():
    (event,) = FrontendMachine(1 << 20).receive(startup({"user": "alice"}))
    assert event.database == "alice"
    (event,) = FrontendMachine(1 << 20).receive(startup({"user": "alice", "database": ""}))
    assert event.database == "alice"


def test_protocol_3_1_with_pq_options():
    params = {"user": "alice", "_pq_.compression": "on", "database": "db", "_pq_.x": "1"}
    (event,) = FrontendMachine(1 << 20).receive(startup(params, minor=1))
    assert event.minor_version == 1
    assert event.unsupported_options == ("_pq_.compression", "_pq_.x")
    assert event.params == {"user": "alice", "database": "db"}
    assert not any(key.startswith("_pq_") for key in event.params)


def test_protocol_3_2_without_options():
    (event,) = FrontendMachine(1 << 20).receive(startup({"user": "alice"}, minor=2))
    assert event.minor_version == 2
    assert event.unsupported_options == ()


@pytest.mark.parametrize("major, minor", [(2, 0), (1, 0), (4, 0)])
def test_unsupported_protocol_version(major, minor):
    with pytest.raises(ProtocolViolation) as exc:
        FrontendMachine(1 << 20).receive(startup({"user": "alice"}, major, minor))
    assert exc.value.sqlstate == "0A000"
    assert f"{major}.{minor}" in exc.value.message


def test_real_protocol_2_startup_packet():
    # A protocol 2.0 client sends the fixed-layout StartupPacket (database[64],
    # user[32], options[64], unused[64], tty[64]).  PostgreSQL checks the version
    # before the layout and answers 0A000 "unsupported frontend protocol".
    body = struct.pack("!HH", 2, 0)
    body += b"shop".ljust(64, b"\0") + b"alice".ljust(32, b"\0")
    body += b"\0" * 64 + b"\0" * 64 + b"\0" * 64
    packet = struct.pack("!I", len(body) + 4) + body
    assert len(packet) == 296
    with pytest.raises(ProtocolViolation) as exc:
        FrontendMachine(1 << 20).receive(packet)
    assert exc.value.sqlstate == "0A000"


@pytest.mark.parametrize("params", [{}, {"database": "db"}, {"user": ""}])
def test_missing_user(params):
    with pytest.raises(ProtocolViolation) as exc:
        FrontendMachine(1 << 20).receive(startup(params))
    assert exc.value.sqlstate == "28000"


def feed_like_relay(machine: FrontendMachine, data: bytes, expecting: str = "password"):
    """What the relay does: answer each event, then let the machine read on."""
    events = []
    while True:
        if machine.state is FrontendState.AUTHENTICATING:
            machine.expecting = expecting
        got = machine.receive(data)
        data = b""
        events += got
        if not (got and machine.leftover):
            return events


def test_startup_split_at_every_byte():
    stream = SSL_REQUEST + startup({"user": "alice", "database": "db"}) + PASSWORD
    expected = [
        SSLRequested(),
        StartupReceived({"user": "alice", "database": "db"}, 0, ()),
        ("p", b"secret\x00"),
    ]
    for cut in range(len(stream) + 1):
        machine = FrontendMachine(1 << 20)
        events = feed_like_relay(machine, stream[:cut]) + feed_like_relay(machine, stream[cut:])
        flat = []
        for event in events:
            flat.extend(frame_list([event]) if isinstance(event, Frames) else [event])
        assert flat == expected, cut
        assert machine.state is FrontendState.AUTHENTICATING


def test_startup_byte_by_byte():
    stream = startup({"user": "alice", "application_name": "x" * 50})
    machine = FrontendMachine(1 << 20)
    events = []
    for i in range(len(stream)):
        events += machine.receive(stream[i:i + 1])
    assert events == [StartupReceived({"user": "alice", "application_name": "x" * 50}, 0, ())]


@pytest.mark.parametrize(
    "packet",
    [
        struct.pack("!II", 8, (1234 << 16) | 9999),  # unknown request code
        struct.pack("!II", 8, 196608),  # 3.0 with no parameter terminator
        struct.pack("!IIII", 16, (1234 << 16) | 5679, 1, 2),  # special code, wrong length
        struct.pack("!III", 12, 80877103, 0),  # SSLRequest with extra bytes
        startup({"user": "alice"})[:-1] + b"x\0",  # no final terminator before garbage
        struct.pack("!I", 7) + b"\0\0\0",  # length below 8
        struct.pack("!I", 10001),  # length above the startup limit
    ],
)
def test_malformed_startup_packets(packet):
    with pytest.raises(ProtocolViolation) as exc:
        FrontendMachine(1 << 20).receive(packet)
    assert exc.value.sqlstate == "08P01"


# -- authenticating --------------------------------------------------------------

def authenticating(expecting: str | None = "password") -> FrontendMachine:
    machine = FrontendMachine(1 << 20)
    assert isinstance(machine.receive(startup({"user": "alice"}))[0], StartupReceived)
    machine.expecting = expecting
    return machine


def test_authenticating_reads_one_password_message_at_a_time():
    # PostgreSQL reads the next one only after answering this one.
    machine = authenticating()
    assert frame_list(machine.receive(PASSWORD + PASSWORD)) == [("p", b"secret\x00")]
    assert machine.leftover == PASSWORD
    assert frame_list(machine.receive(b"")) == [("p", b"secret\x00")]
    assert machine.leftover == b""


def test_startup_and_password_in_one_write():
    machine = FrontendMachine(1 << 20)
    events = feed_like_relay(machine, startup({"user": "alice"}) + PASSWORD + PASSWORD)
    assert isinstance(events[0], StartupReceived)
    assert frame_list(events[1:]) == [("p", b"secret\x00"), ("p", b"secret\x00")]


@pytest.mark.parametrize(("expecting", "message", "text"), [
    ("SASL", frame(b"Q", b"SELECT 1\x00"), "expected SASL response, got message type 81"),
    ("password", frame(b"S"), "expected password response, got message type 83"),
])
def test_authenticating_rejects_other_frames(expecting, message, text):
    machine = authenticating(expecting)
    with pytest.raises(ProtocolViolation) as exc:
        machine.receive(message[:5])  # the header is enough
    assert exc.value.sqlstate == "08P01"
    assert exc.value.message == text


@pytest.mark.parametrize("length", [65536, 250 << 20, 0x7FFFFFFF, 3])
def test_authenticating_refuses_a_password_message_length_on_its_header(length):
    # PostgreSQL caps password messages at PG_MAX_AUTH_TOKEN_LENGTH before reading them.
    machine = authenticating("SASL")
    with pytest.raises(ProtocolViolation) as exc:
        machine.receive(b"p" + struct.pack("!I", length) + b"A" * 1000)
    assert exc.value.sqlstate == "28P01"
    assert exc.value.message == 'password authentication failed for user "alice"'


def test_authenticating_accepts_the_largest_password_message():
    body = b"x" * 65530 + b"\0"
    message = frame(b"p", body)
    machine = authenticating()
    assert machine.receive(message[:40000]) == []
    assert frame_list(machine.receive(message[40000:])) == [("p", body)]


def test_authenticating_accepts_terminate():
    # A client that gives up at the password prompt (psql does) just says goodbye.
    machine = authenticating()
    assert frame_list(machine.receive(frame(b"X"))) == [("X", b"")]


def test_authenticating_reads_nothing_until_asked_then_ready_gets_the_query():
    # trust: the Query pipelined with the StartupMessage is answered once the session is
    # ready, as PostgreSQL does; nothing is judged while no password was asked for.
    machine = FrontendMachine(1 << 20)
    query = frame(b"Q", b"SELECT 1\x00")
    events = feed_like_relay(machine, startup({"user": "alice"}) + query, expecting=None)
    assert [type(e) for e in events] == [StartupReceived]
    assert machine.leftover == query
    assert machine.receive(b"") == []
    assert not machine.stalled
    machine.authenticated()
    assert frame_list(machine.receive(b"")) == [("Q", b"SELECT 1\x00")]
    assert machine.leftover == b""


def test_authenticating_unread_input_stalls_past_one_auth_message():
    machine = authenticating(None)
    machine.receive(b"Q" + struct.pack("!I", 250 << 20) + b"A" * 60000)
    assert not machine.stalled
    machine.receive(b"A" * 10000)
    assert machine.stalled  # the relay stops reading the client
    machine.expecting = "SASL"
    with pytest.raises(ProtocolViolation) as exc:
        machine.receive(b"")
    assert exc.value.message == "expected SASL response, got message type 81"


# -- ready -------------------------------------------------------------------------

def test_ready_batch_offsets():
    machine = ready_machine()
    events = machine.receive(BATCH)
    assert len(events) == 1
    (event,) = events
    assert event.buf == BATCH
    assert [(chr(c), s, e) for c, s, e in event.frames] == [
        ("P", 5, 22),  # 17-byte body
        ("B", 27, 40),  # 13-byte body
        ("D", 45, 47),
        ("E", 52, 57),
        ("S", 62, 62),
    ]
    assert frame_list(events)[0] == ("P", b"\x00SELECT $1\x00\x00\x01\x00\x00\x00\x17")


def test_ready_batch_split_everywhere():
    expected = frame_list([ready_machine().receive(BATCH)[0]])
    for cut in range(len(BATCH) + 1):
        machine = ready_machine()
        events = machine.receive(BATCH[:cut]) + machine.receive(BATCH[cut:])
        assert frame_list(events) == expected


def test_ready_partial_frame_gives_no_event():
    machine = ready_machine()
    q = frame(b"Q", b"SELECT 1\x00")
    assert machine.receive(q[:7]) == []
    assert frame_list(machine.receive(q[7:])) == [("Q", b"SELECT 1\x00")]


def test_startup_followed_by_frames_after_authentication():
    machine = FrontendMachine(1 << 20)
    machine.receive(startup({"user": "alice"}))
    machine.authenticated()
    assert frame_list(machine.receive(frame(b"Q", b"SELECT 1\x00") + frame(b"X"))) == [
        ("Q", b"SELECT 1\x00"),
        ("X", b""),
    ]


@pytest.mark.parametrize(
    "message",
    [
        frame(b"p", b"secret\x00"),  # password outside authentication
        frame(b"z", b""),  # unknown type
        frame(b"Z", b"I"),  # a backend code
        frame(b"Q", b"SELECT 1\x00SELECT 2\x00"),  # embedded NUL
        frame(b"D", b"Xname\x00"),  # bad Describe kind
        frame(b"E", b"\x00\x00"),  # Execute too short
        frame(b"S", b"x"),  # Sync with a body
    ],
)
def test_ready_rejects(message):
    machine = ready_machine()
    with pytest.raises(ProtocolViolation) as exc:
        machine.receive(message)
    assert exc.value.sqlstate == "08P01"


@pytest.mark.parametrize("bad", [frame(b"p", b"x\x00"), frame(b"B", b"\x00"),
                                 b"Q" + struct.pack("!I", 3)])
def test_ready_rejects_invalid_frame_after_valid_ones(bad):
    """The valid Query before the bad frame is delivered, then the error, in one call or
    byte by byte alike (fuzz finding: one-shot feeds used to drop it)."""
    data = frame(b"Q", b"SELECT 1\x00") + bad
    for cut in (len(data), 1):
        machine = ready_machine()
        events = []
        for i in range(0, len(data), cut):
            try:
                events += machine.receive(data[i:i + cut])
            except ProtocolViolation as exc:  # nothing came before it in this call
                events.append(exc)
                machine.close()
            if events and isinstance(events[-1], ProtocolViolation):
                break
        assert frame_list(events[:-1]) == [("Q", b"SELECT 1\x00")]
        assert isinstance(events[-1], ProtocolViolation)
        assert machine.state is FrontendState.CLOSED


def test_validation_can_be_disabled_but_codes_still_checked():
    machine = ready_machine(validate=False)
    bad_query = frame(b"Q", b"SELECT 1\x00SELECT 2\x00")
    assert frame_list(machine.receive(bad_query)) == [("Q", b"SELECT 1\x00SELECT 2\x00")]
    with pytest.raises(ProtocolViolation):
        machine.receive(frame(b"p", b"x\x00"))


def test_oversize_message():
    machine = ready_machine(max_message_length=64)
    with pytest.raises(ProtocolViolation) as exc:
        machine.receive(b"Q" + struct.pack("!I", 65))  # header alone is enough
    assert exc.value.sqlstate == "08P01"
    assert "max_message_length" in exc.value.message


def test_message_at_max_length_accepted():
    machine = ready_machine(max_message_length=64)
    body = b"x" * 59 + b"\0"
    assert frame_list(machine.receive(frame(b"Q", body))) == [("Q", body)]


def test_copy_messages_accepted_in_ready():
    machine = ready_machine()
    stream = frame(b"d", b"1\tone\n") + frame(b"d", b"\xff\x00") + frame(b"c")
    assert frame_list(machine.receive(stream)) == [
        ("d", b"1\tone\n"),
        ("d", b"\xff\x00"),
        ("c", b""),
    ]
    assert frame_list(machine.receive(frame(b"f", b"aborted\x00"))) == [("f", b"aborted\x00")]


def test_function_call_accepted_in_ready():
    body = struct.pack("!Ihhi", 1598, 0, 1, 1) + b"7" + struct.pack("!h", 0)
    assert frame_list(ready_machine().receive(frame(b"F", body))) == [("F", body)]


def test_close():
    machine = ready_machine()
    machine.close()
    assert machine.state is FrontendState.CLOSED
    assert machine.receive(frame(b"Q", b"SELECT 1\x00")) == []


# -- header checks once ready (PostgreSQL's SocketBackend limits) -----------------

@pytest.mark.parametrize("code", [b"D", b"E", b"C", b"S", b"H", b"X", b"c", b"f"])
def test_ready_small_messages_refused_on_the_header(code):
    machine = ready_machine(max_message_length=1 << 28)
    with pytest.raises(ProtocolViolation) as exc:
        machine.receive(code + struct.pack("!I", 10001))  # no body: the header decides
    assert exc.value.sqlstate == "08P01"
    assert exc.value.message == "invalid message length"


@pytest.mark.parametrize("code", [b"Q", b"P", b"B", b"F", b"d"])
def test_ready_large_messages_keep_max_message_length(code):
    machine = ready_machine(max_message_length=1 << 20)
    assert machine.receive(code + struct.pack("!I", 1 << 20)) == []  # waits for the body
    with pytest.raises(ProtocolViolation) as exc:
        ready_machine(max_message_length=1 << 20).receive(code + struct.pack("!I", (1 << 20) + 1))
    assert "max_message_length" in exc.value.message


def test_ready_small_message_at_the_limit_accepted():
    body = b"P" + b"x" * 9994 + b"\0"
    assert frame_list(ready_machine().receive(frame(b"D", body))) == [("D", body)]


@pytest.mark.parametrize("code", [b"z", b"p", b"\0", b"T"])
def test_ready_unknown_type_refused_on_the_header(code):
    with pytest.raises(ProtocolViolation) as exc:
        ready_machine().receive(code + struct.pack("!I", 200 << 20))
    assert exc.value.message == f"invalid frontend message type {code[0]}"


# -- one SSLRequest and one GSSENCRequest, as PostgreSQL allows ---------------------

@pytest.mark.parametrize(("first", "second", "text"), [
    (SSL_REQUEST, SSL_REQUEST, "unsupported frontend protocol 1234.5679"),
    (GSSENC_REQUEST, GSSENC_REQUEST, "unsupported frontend protocol 1234.5680"),
])
def test_second_encryption_request_refused(first, second, text):
    machine = FrontendMachine(1 << 20)
    assert len(machine.receive(first)) == 1
    with pytest.raises(ProtocolViolation) as exc:
        machine.receive(second)
    assert exc.value.sqlstate == "0A000"
    assert exc.value.message.startswith(text)


@pytest.mark.parametrize("order", [(SSL_REQUEST, GSSENC_REQUEST), (GSSENC_REQUEST, SSL_REQUEST)])
def test_one_of_each_encryption_request_accepted(order):
    machine = FrontendMachine(1 << 20)
    assert [type(e) for e in machine.receive(order[0])] != []
    assert [type(e) for e in machine.receive(order[1])] != []
    assert isinstance(machine.receive(startup({"user": "a"}))[0], StartupReceived)


def test_gssenc_refused_once_tls_is_on():
    machine = FrontendMachine(1 << 20)
    machine.receive(SSL_REQUEST)
    machine.gss_done = True  # what the relay sets when it answers 'S'
    with pytest.raises(ProtocolViolation):
        machine.receive(GSSENC_REQUEST)


def test_many_ssl_requests_in_one_write_stop_after_the_first():
    machine = FrontendMachine(1 << 20)
    assert machine.receive(SSL_REQUEST * 3000) == [SSLRequested()]
    assert machine.leftover == SSL_REQUEST * 2999  # the relay refuses data sent ahead
