"""Frame splitting: identical results however the byte stream is cut."""

from __future__ import annotations

import random
import struct

import pytest

from pgtwist.wire import codes
from pgtwist.wire import messages as m
from pgtwist.wire.decode import decode_fields
from pgtwist.wire.errors import ProtocolViolation
from pgtwist.wire.framing import (
    MAX_STARTUP_LENGTH,
    WATCHED,
    BackendScanner,
    FrameSplitter,
    StartupSplitter,
)


def frame(code: bytes, body: bytes = b"") -> bytes:
    return code + struct.pack("!I", len(body) + 4) + body


def frames_of(stream: bytes) -> list[tuple[int, bytes, int]]:
    """Independent parse: (code, body, end offset) for each frame."""
    out = []
    pos = 0
    while pos < len(stream):
        code = stream[pos]
        (length,) = struct.unpack_from("!I", stream, pos + 1)
        end = pos + 1 + length
        out.append((code, stream[pos + 5:end], end))
        pos = end
    assert pos == len(stream)
    return out


EXTENDED_BATCH = b"".join(
    [
        frame(b"P", b"s1\x00SELECT $1::int\x00\x00\x01\x00\x00\x00\x17"),
        frame(b"B", b"\x00s1\x00\x00\x00\x00\x01\x00\x00\x00\x0242\x00\x00"),
        frame(b"D", b"P\x00"),
        frame(b"E", b"\x00\x00\x00\x00\x00"),
        frame(b"S"),
    ]
)


# -- FrameSplitter ---------------------------------------------------------------

def split_frames(splitter: FrameSplitter, chunks) -> tuple[bytes, list[tuple[int, bytes]]]:
    forwarded = b""
    got = []
    for chunk in chunks:
        buf, frames = splitter.feed(chunk)
        forwarded += buf
        for code, start, end in frames:
            assert buf[start - 5] == code
            assert struct.unpack_from("!I", buf, start - 4)[0] == end - start + 4
            got.append((code, bytes(buf[start:end])))
    return forwarded, got


def test_frame_splitter_whole_stream():
    buf, frames = FrameSplitter(1 << 20).feed(EXTENDED_BATCH)
    assert buf == EXTENDED_BATCH
    assert [chr(code) for code, _s, _e in frames] == ["P", "B", "D", "E", "S"]
    assert [(c, buf[s:e]) for c, s, e in frames] == [(c, b) for c, b, _end in frames_of(EXTENDED_BATCH)]


@pytest.mark.parametrize("cut", range(len(EXTENDED_BATCH) + 1))
def test_frame_splitter_every_two_way_split(cut):
    expected = [(c, b) for c, b, _end in frames_of(EXTENDED_BATCH)]
    splitter = FrameSplitter(1 << 20)
    forwarded, got = split_frames(splitter, [EXTENDED_BATCH[:cut], EXTENDED_BATCH[cut:]])
    assert forwarded == EXTENDED_BATCH
    assert got == expected
    assert splitter.pending == 0


def test_frame_splitter_byte_by_byte():
    expected = [(c, b) for c, b, _end in frames_of(EXTENDED_BATCH)]
    splitter = FrameSplitter(1 << 20)
    chunks = [EXTENDED_BATCH[i:i + 1] for i in range(len(EXTENDED_BATCH))]
    forwarded, got = split_frames(splitter, chunks)
    assert forwarded == EXTENDED_BATCH
    assert got == expected


def test_frame_splitter_random_splits():
    rng = random.Random(20240501)
    stream = EXTENDED_BATCH * 3 + frame(b"Q", b"SELECT 1\x00") + frame(b"d", b"x" * 300)
    expected = [(c, b) for c, b, _end in frames_of(stream)]
    for _ in range(200):
        cuts = sorted(rng.sample(range(1, len(stream)), rng.randint(1, 12)))
        bounds = [0, *cuts, len(stream)]
        chunks = [stream[a:b] for a, b in zip(bounds, bounds[1:], strict=False)]
        forwarded, got = split_frames(FrameSplitter(1 << 20), chunks)
        assert forwarded == stream
        assert got == expected


def test_frame_splitter_keeps_partial_frames():
    splitter = FrameSplitter(1 << 20)
    q = frame(b"Q", b"SELECT 1\x00")
    buf, frames = splitter.feed(q[:3])
    assert (buf, frames) == (b"", [])
    assert splitter.pending == 3
    buf, frames = splitter.feed(q[3:8])
    assert (buf, frames) == (b"", [])
    assert splitter.pending == 8
    buf, frames = splitter.feed(q[8:] + frame(b"S")[:2])
    assert buf == q
    assert frames == [(ord("Q"), 5, len(q))]
    assert splitter.pending == 2
    buf, frames = splitter.feed(frame(b"S")[2:])
    assert buf == frame(b"S")
    assert frames == [(ord("S"), 5, 5)]
    assert splitter.pending == 0


def test_frame_splitter_empty_feed():
    assert FrameSplitter(100).feed(b"") == (b"", [])


@pytest.mark.parametrize("length", [0, 1, 2, 3])
def test_frame_splitter_rejects_short_length_on_header(length):
    splitter = FrameSplitter(1 << 20)
    header = b"Q" + struct.pack("!I", length)
    assert splitter.feed(header[:4]) == (b"", [])  # not yet a whole header
    with pytest.raises(ProtocolViolation) as exc:
        splitter.feed(header[4:])
    assert exc.value.sqlstate == "08P01"


def test_frame_splitter_rejects_negative_looking_length():
    with pytest.raises(ProtocolViolation):
        FrameSplitter(1 << 20).feed(b"Q\xff\xff\xff\xff")


def test_frame_splitter_rejects_oversize_before_body():
    splitter = FrameSplitter(1000)
    with pytest.raises(ProtocolViolation) as exc:
        splitter.feed(b"Q" + struct.pack("!I", 1001))  # header only, no body
    assert exc.value.sqlstate == "08P01"
    assert "max_message_length" in exc.value.message
    assert "1001" in exc.value.message


def test_frame_splitter_oversize_after_good_frames():
    """The good frame is returned whatever the chunking; the refusal comes next."""
    splitter = FrameSplitter(1000)
    buf, frames = splitter.feed(frame(b"S") + b"Q" + struct.pack("!I", 5000))
    assert [(c, buf[s:e]) for c, s, e in frames] == [(ord("S"), b"")]
    assert splitter.error is not None and "max_message_length" in splitter.error.message
    with pytest.raises(ProtocolViolation):
        splitter.feed(b"")


def test_frame_splitter_max_length_inclusive():
    splitter = FrameSplitter(1000)
    body = b"x" * 995 + b"\x00"  # length field 1000
    buf, frames = splitter.feed(frame(b"Q", body))
    assert frames == [(ord("Q"), 5, 1001)]


# -- StartupSplitter ---------------------------------------------------------------

def test_startup_splitter_whole_and_leftover():
    startup = m.startup_message({"user": "u"})
    body, rest = StartupSplitter().feed(startup + b"Pxx")
    assert body == startup[4:]
    assert rest == b"Pxx"


def test_startup_splitter_byte_by_byte():
    startup = m.startup_message({"user": "u", "database": "d"})
    splitter = StartupSplitter()
    for i in range(len(startup) - 1):
        assert splitter.feed(startup[i:i + 1]) == (None, b"")
    assert splitter.feed(startup[-1:]) == (startup[4:], b"")


def test_startup_splitter_ssl_request():
    assert StartupSplitter().feed(m.ssl_request()) == (m.ssl_request()[4:], b"")


@pytest.mark.parametrize("length", [0, 4, 7, MAX_STARTUP_LENGTH + 1, 0xFFFFFFFF])
def test_startup_splitter_rejects_bad_length(length):
    splitter = StartupSplitter()
    with pytest.raises(ProtocolViolation) as exc:
        splitter.feed(struct.pack("!I", length))  # rejected from the length alone
    assert exc.value.sqlstate == "08P01"


def test_startup_splitter_accepts_limits():
    assert StartupSplitter().feed(struct.pack("!II", 8, 1)) == (struct.pack("!I", 1), b"")
    splitter = StartupSplitter()
    assert splitter.feed(struct.pack("!I", MAX_STARTUP_LENGTH)) == (None, b"")
    body, rest = splitter.feed(b"\x00" * (MAX_STARTUP_LENGTH - 4))
    assert len(body) == MAX_STARTUP_LENGTH - 4 and rest == b""


# -- BackendScanner ----------------------------------------------------------------

def rows_stream(nrows: int = 40) -> bytes:
    parts = [
        m.row_description(["id", "name"]),
        m.notice_response("starting"),
    ]
    for i in range(nrows):
        parts.append(m.data_row([str(i), None if i % 7 == 0 else "x" * (i % 13)]))
        if i == nrows // 2:
            parts.append(frame(b"A", struct.pack("!I", 99) + b"chan\x00payload\x00"))
            parts.append(m.parameter_status("application_name", "changed"))
    parts += [m.command_complete(f"SELECT {nrows}"), m.ready_for_query()]
    return b"".join(parts)


COPY_STREAM = b"".join(
    [
        frame(b"H", b"\x00\x00\x02\x00\x00\x00\x00"),
        frame(b"d", b"1\tone\n"),
        frame(b"d", b"2\ttwo\n"),
        frame(b"d", b""),
        frame(b"c"),
        m.command_complete("COPY 2"),
        m.ready_for_query(codes.TXN_BLOCK),
    ]
)

ERROR_STREAM = b"".join(
    [
        frame(b"1"),
        frame(b"2"),
        m.error_response("22012", "division by zero"),
        m.ready_for_query(codes.TXN_FAILED),
    ]
)

STREAMS = {
    "rows": rows_stream(),
    "copy": COPY_STREAM,
    "error": ERROR_STREAM,
    "all": rows_stream(5) + COPY_STREAM + ERROR_STREAM,
}


def scan(chunks, scanner: BackendScanner | None = None):
    """Feed chunks; return (forwarded bytes, [(code, body, bytes forwarded at that point)])."""
    scanner = scanner or BackendScanner()
    forwarded = bytearray()
    events = []
    for chunk in chunks:
        for item in scanner.feed(chunk):
            if isinstance(item, tuple):
                code, body = item
                events.append((code, bytes(body), len(forwarded)))
            else:
                assert isinstance(item, bytes)
                forwarded += item
    return bytes(forwarded), events


def expected_events(stream: bytes):
    return [(code, body, end) for code, body, end in frames_of(stream) if code in WATCHED]


def check(stream: bytes, chunks) -> None:
    scanner = BackendScanner()
    forwarded, events = scan(chunks, scanner)
    assert forwarded == stream
    # Each watched frame once, in order, right after its own frame's bytes.
    assert events == expected_events(stream)
    assert scanner.idle


def test_expected_events_are_meaningful():
    codes_seen = [chr(c) for c, _b, _e in expected_events(STREAMS["all"])]
    assert codes_seen == ["A", "S", "Z", "H", "Z", "1", "E", "Z"]


def test_scanner_common_case_is_one_run_and_one_event():
    stream = b"".join(
        [m.row_description(["id", "name"]), m.notice_response("starting")]
        + [m.data_row([str(i), "x" * i]) for i in range(20)]
        + [m.command_complete("SELECT 20"), m.ready_for_query()]
    )
    assert BackendScanner().feed(stream) == [stream, (ord("Z"), b"I")]


@pytest.mark.parametrize("name", list(STREAMS))
def test_scanner_every_two_way_split(name):
    stream = STREAMS[name]
    for cut in range(len(stream) + 1):
        check(stream, [stream[:cut], stream[cut:]])


@pytest.mark.parametrize("name", list(STREAMS))
def test_scanner_byte_by_byte(name):
    stream = STREAMS[name]
    check(stream, [stream[i:i + 1] for i in range(len(stream))])


@pytest.mark.parametrize("seed", range(5))
def test_scanner_random_multi_way_splits(seed):
    rng = random.Random(seed)
    stream = STREAMS["all"]
    for _ in range(200):
        cuts = sorted(set(rng.choices(range(1, len(stream)), k=rng.randint(1, 40))))
        bounds = [0, *cuts, len(stream)]
        check(stream, [stream[a:b] for a, b in zip(bounds, bounds[1:], strict=False)])


def test_scanner_streams_big_data_row_without_holding_it():
    value = b"v" * (1 << 20)
    big = frame(b"D", b"\x00\x01" + struct.pack("!i", len(value)) + value)
    stream = big + m.command_complete("SELECT 1") + m.ready_for_query()
    scanner = BackendScanner()
    chunk = 4096
    forwarded = 0
    for pos in range(0, len(big) - chunk, chunk):
        out = scanner.feed(stream[pos:pos + chunk])
        # Every byte of the unfinished DataRow goes out at once.
        assert out == [stream[pos:pos + chunk]]
        forwarded += chunk
        assert not scanner.idle
    assert forwarded < len(big)
    rest = stream[forwarded:]
    assert scanner.feed(rest) == [rest, (ord("Z"), b"I")]
    assert scanner.idle


def test_scanner_big_data_row_with_split_header():
    value = b"w" * (1 << 20)
    big = frame(b"D", b"\x00\x01" + struct.pack("!i", len(value)) + value)
    scanner = BackendScanner()
    assert scanner.feed(big[:3]) == []  # not even a header yet
    assert not scanner.idle
    assert scanner.feed(big[3:1000]) == [big[:1000]]
    assert scanner.feed(big[1000:2000]) == [big[1000:2000]]
    forwarded, events = scan([big[2000:] + m.ready_for_query()], scanner)
    assert forwarded == big[2000:] + m.ready_for_query()
    assert events == [(ord("Z"), b"I", len(forwarded))]


def test_scanner_holds_back_partial_watched_frame():
    scanner = BackendScanner()
    err = m.error_response("42601", "syntax error")
    out = scanner.feed(frame(b"n") + err[:10])
    assert out == [frame(b"n")]
    assert not scanner.idle
    out = scanner.feed(err[10:])
    assert out == [err, (ord("E"), err[5:])]
    assert scanner.idle


def test_scanner_idle():
    scanner = BackendScanner()
    assert scanner.idle
    scanner.feed(b"Z\x00")
    assert not scanner.idle
    scanner.feed(b"\x00\x00\x05I")
    assert scanner.idle
    scanner.feed(frame(b"D", b"\x00\x00")[:6])
    assert not scanner.idle
    scanner.feed(b"\x00")
    assert scanner.idle
    assert scanner.feed(b"") == []
    assert scanner.idle


@pytest.mark.parametrize("length", [0, 1, 3])
def test_scanner_rejects_invalid_length(length):
    with pytest.raises(ProtocolViolation) as exc:
        BackendScanner().feed(b"D" + struct.pack("!I", length))
    assert exc.value.sqlstate == "08P01"


def test_scanner_rejects_invalid_length_after_skip():
    scanner = BackendScanner()
    row = frame(b"D", b"\x00\x01\x00\x00\x00\x03abc")
    scanner.feed(row[:7])
    with pytest.raises(ProtocolViolation):
        scanner.feed(row[7:] + b"Z\x00\x00\x00\x02")


@pytest.mark.parametrize("code", [b"Z", b"S", b"G"])
def test_scanner_rejects_oversized_watched_frame(code):
    with pytest.raises(ProtocolViolation) as exc:
        BackendScanner().feed(code + struct.pack("!I", (1 << 20) + 1))
    assert exc.value.sqlstate == "08P01"


def big_error(size: int = 1_100_000) -> bytes:
    return m.error_response("P0001", "x" * size)


def test_scanner_streams_a_big_error_response_with_its_head_as_event():
    err = big_error()
    stream = frame(b"n") + err + m.ready_for_query()
    scanner = BackendScanner()
    forwarded, events = scan([stream[i:i + 65536] for i in range(0, len(stream), 65536)],
                             scanner)
    assert forwarded == stream
    (code, head, at), z = events
    assert (code, at) == (ord("E"), 5 + len(err))  # right after its own frame's bytes
    fields = decode_fields(head)
    assert fields["S"] == "ERROR" and fields["C"] == "P0001"
    assert fields["M"].startswith("xxx") and fields["M"].endswith("...")
    assert len(head) < 20000 and head.endswith(b"\0\0")
    assert z == (ord("Z"), b"I", len(stream))
    assert scanner.idle


def test_scanner_big_error_never_held_beyond_its_head():
    err = big_error()
    scanner = BackendScanner()
    assert scanner.feed(err[:1000]) == []  # the head is not complete yet
    out = scanner.feed(err[1000:100_000])
    assert out == [err[:100_000]]  # from then on every byte goes out at once
    out = scanner.feed(err[100_000:200_000])
    assert out == [err[100_000:200_000]]
    rest = err[200_000:] + m.ready_for_query()
    out = scanner.feed(rest)
    assert out[0] == err[200_000:]
    assert out[1][0] == ord("E") and decode_fields(out[1][1])["C"] == "P0001"
    assert out[2:] == [m.ready_for_query(), (ord("Z"), b"I")]


@pytest.mark.parametrize("cut", [0, 1, 5, 16000, 16389, 16390, 500_000, 1_100_020])
def test_scanner_big_error_any_split(cut):
    stream = big_error() + m.ready_for_query()
    forwarded, events = scan([stream[:cut], stream[cut:]])
    assert forwarded == stream
    assert [(c, at) for c, _b, at in events] == [(ord("E"), len(stream) - 6),
                                                (ord("Z"), len(stream))]


def test_error_head_is_well_formed():
    from pgtwist.wire.framing import error_head

    assert error_head(b"SERROR\0C1\0Mabc") == b"SERROR\0C1\0Mabc...\0\0"
    assert error_head(b"SERROR\0") == b"SERROR\0\0"
    assert error_head(b"Mab") == b"Mab...\0\0"


def test_frame_splitter_limits_checked_on_the_header():
    splitter = FrameSplitter(1 << 20, {ord("Q"): 1 << 20, ord("S"): 10000})
    with pytest.raises(ProtocolViolation) as exc:
        splitter.feed(b"S" + struct.pack("!I", 10001))
    assert exc.value.message == "invalid message length"
    with pytest.raises(ProtocolViolation) as exc:
        FrameSplitter(1 << 20, {ord("Q"): 100}).feed(b"z" + struct.pack("!I", 4))
    assert exc.value.message == "invalid frontend message type 122"
    splitter = FrameSplitter(1 << 20, {ord("Q"): 1 << 20, ord("S"): 10000})
    buf, frames = splitter.feed(frame(b"S") + frame(b"Q", b"x" * 20000)[:100])
    assert frames == [(ord("S"), 5, 5)]
