"""Property-based tests of the sans-IO frontend codec (framing, FrontendMachine, parsers).

Bounded and derandomized, so a CI run is deterministic; the long run is
``python -m tests.fuzz.codec`` (``make fuzz``).
"""

from __future__ import annotations

import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pgtwist.conn.frontend import (
    MAX_AUTH_MESSAGE,
    READY_CODES,
    SMALL_MESSAGE_LIMIT,
    Frames,
    FrontendMachine,
    FrontendState,
)
from pgtwist.wire import codes
from pgtwist.wire.decode import (
    check_cstring,
    check_function_call,
    decode_auth,
    decode_backend_key_data,
    decode_bind,
    decode_execute,
    decode_fields,
    decode_parameter_status,
    decode_parse,
    decode_query,
    decode_sasl_initial_response,
    decode_startup,
    decode_target,
)
from pgtwist.wire.errors import ProtocolViolation
from pgtwist.wire.framing import MAX_STARTUP_LENGTH, FrameSplitter, StartupSplitter

from . import streams as s

SETTINGS = settings(max_examples=150, derandomize=True, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.too_slow])
MAX = s.MAX_MESSAGE_LENGTH
LOGIN = s.startup_packet({"user": "alice", "database": "db"}) + s.password(b"secret")
LARGE = {codes.QUERY, codes.PARSE, codes.BIND, codes.FUNCTION_CALL, codes.COPY_DATA}

names = st.binary(max_size=8).map(lambda b: b.replace(b"\0", b""))
texts = st.text(max_size=30).map(lambda t: t.replace("\0", "").encode())
values = st.one_of(st.none(), st.binary(max_size=20))

ready_messages = st.one_of(
    texts.map(s.query),
    st.builds(s.parse, texts, names, st.lists(st.integers(0, 2**32 - 1), max_size=3).map(tuple)),
    st.builds(s.bind, st.lists(values, max_size=3), names, names,
              st.lists(st.integers(0, 1), max_size=3).map(tuple),
              st.lists(st.integers(0, 1), max_size=3).map(tuple)),
    st.builds(s.describe, st.sampled_from([b"S", b"P"]), names),
    st.builds(s.close, st.sampled_from([b"S", b"P"]), names),
    st.builds(s.execute, names, st.integers(-(2**31), 2**31 - 1)),
    st.just(s.SYNC), st.just(s.FLUSH), st.just(s.TERMINATE), st.just(s.COPY_DONE),
    st.binary(max_size=40).map(s.copy_data),
    st.text(max_size=10).map(lambda t: s.copy_fail(t.replace("\0", ""))),
    st.builds(s.function_call, st.integers(0, 2**32 - 1), st.lists(values, max_size=2)),
)
junk = st.one_of(
    st.binary(min_size=1, max_size=12),
    st.builds(lambda c, n: bytes((c,)) + struct.pack("!I", n),
              st.integers(0, 255), st.sampled_from([0, 3, 4, 5, 9999, 10000, 10001, 10004,
                                                    65535, 65536, MAX, MAX + 1, 2**31])),
)
streams = st.lists(st.one_of(ready_messages, ready_messages, junk), max_size=12).map(b"".join)


def cuts(data: bytes, points: list[int]) -> list[bytes]:
    marks = sorted({p % (len(data) + 1) for p in points} | {0, len(data)})
    return [data[a:b] for a, b in zip(marks, marks[1:], strict=False)] or [b""]


@SETTINGS
@given(st.binary(max_size=400), st.lists(st.integers(0, 400), max_size=8))
def test_any_bytes_at_startup_only_protocol_errors(data, points):
    s.drive(cuts(data, points))  # raises anything but ProtocolViolation


@SETTINGS
@given(st.binary(max_size=400), st.lists(st.integers(0, 400), max_size=8))
def test_any_bytes_after_login_only_protocol_errors(data, points):
    events = s.drive(cuts(LOGIN + data, points))
    assert events[1] == ("frame", codes.PASSWORD, b"secret\0")


@SETTINGS
@given(streams, st.lists(st.integers(0, 1000), max_size=10))
def test_chunking_does_not_change_events(body, points):
    data = LOGIN + body
    assert s.drive(cuts(data, points)) == s.drive([data]) == s.drive(
        [data[i:i + 1] for i in range(len(data))])


@SETTINGS
@given(st.lists(ready_messages, max_size=15), st.lists(st.integers(0, 2000), max_size=6))
def test_well_formed_messages_round_trip(messages, points):
    body = b"".join(messages)
    events = s.drive(cuts(LOGIN + body, points))
    frames = [(code, payload) for kind, code, payload, *_ in
              (e for e in events if e[0] == "frame")]
    expected = [(msg[0], msg[5:]) for msg in messages]
    assert events[0][0] == "startup" and not any(e[0] == "error" for e in events)
    assert frames[1:] == expected


@SETTINGS
@given(st.integers(0, 255), st.integers(0, 2**32 - 1))
def test_auth_header_limit_refuses_before_the_body(code, length):
    m = FrontendMachine(MAX)
    m.receive(s.startup_packet({"user": "alice"}))
    m.expecting = "password"
    header = bytes((code,)) + struct.pack("!I", length)
    allowed = (code == codes.PASSWORD and 4 <= length <= MAX_AUTH_MESSAGE) or (
        code == codes.TERMINATE and length == 4)
    if not allowed:
        with pytest.raises(ProtocolViolation):
            m.receive(header)
        return
    events = m.receive(header)
    if length == 4:
        assert len(events) == 1 and isinstance(events[0], Frames)
    else:
        assert events == [] and m.leftover == header


@SETTINGS
@given(st.integers(0, 255), st.integers(0, 2**32 - 1), st.binary(max_size=20))
def test_ready_header_limit_refuses_before_the_body(code, length, partial):
    m = FrontendMachine(MAX)
    m.receive(s.startup_packet({"user": "alice"}))
    m.authenticated()
    header = bytes((code,)) + struct.pack("!I", length)
    limit = MAX if code in LARGE else SMALL_MESSAGE_LIMIT
    allowed = code in READY_CODES and 4 <= length <= limit
    if not allowed:
        with pytest.raises(ProtocolViolation):
            m.receive(header)
        assert m._frames.pending == 0  # nothing of the body was held
        return
    body = partial[: length - 4 - 1] if length > 4 else b""
    try:
        events = m.receive(header + body)
    except ProtocolViolation:
        assert length == 4 and code in (codes.EXECUTE, codes.BIND, codes.PARSE, codes.DESCRIBE,
                                        codes.CLOSE, codes.FUNCTION_CALL, codes.COPY_FAIL,
                                        codes.QUERY)
        return
    if length == 4:
        assert len(events) == 1
    else:
        assert events == [] and m._frames.pending == 5 + len(body)


@SETTINGS
@given(st.integers(0, 2**32 - 1))
def test_startup_length_refused_on_its_header(length):
    splitter = StartupSplitter()
    head = struct.pack("!I", length)
    if length < 8 or length > MAX_STARTUP_LENGTH:
        with pytest.raises(ProtocolViolation):
            splitter.feed(head)
    else:
        assert splitter.feed(head) == (None, b"")


@SETTINGS
@given(st.binary(max_size=200))
def test_parsers_raise_only_protocol_violation(body):
    for parser in (decode_startup, decode_query, decode_parse, decode_bind,
                   decode_execute, check_function_call, decode_sasl_initial_response,
                   decode_parameter_status, lambda b: decode_target(b, "Close"),
                   lambda b: check_cstring(b, "CopyFail"), decode_auth,
                   decode_backend_key_data):
        try:
            parser(body)
        except ProtocolViolation:
            pass
    decode_fields(body)


@SETTINGS
@given(names, texts, st.lists(st.integers(0, 2**32 - 1), max_size=4).map(tuple),
       names, st.lists(values, max_size=4))
def test_parse_and_bind_decode_round_trip(name, sql, oids, portal, params):
    assert decode_parse(s.parse(sql, name, oids)[5:]) == (name, sql, oids)
    assert decode_bind(s.bind(params, portal, name)[5:]) == (portal, name)
    assert decode_execute(s.execute(portal, 7)[5:]) == (portal, 7)


@SETTINGS
@given(st.lists(ready_messages, max_size=10), st.lists(st.integers(0, 500), max_size=6))
def test_frame_splitter_alone_round_trips(messages, points):
    data = b"".join(messages)
    splitter = FrameSplitter(MAX)
    got = []
    for piece in cuts(data, points):
        buf, frames = splitter.feed(piece)
        got += [(c, buf[a:b]) for c, a, b in frames]
    assert got == [(msg[0], msg[5:]) for msg in messages] and splitter.pending == 0


def test_machine_is_closed_after_a_late_error():
    m = FrontendMachine(MAX)
    m.receive(s.startup_packet({"user": "alice"}))
    m.authenticated()
    events = m.receive(s.SYNC + b"\xff\x00\x00\x00\x04")
    assert isinstance(events[0], Frames) and isinstance(events[1], ProtocolViolation)
    assert m.state is FrontendState.CLOSED
