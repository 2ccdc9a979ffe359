"""Ordering: backend responses reach the client in the client's order.

Links are plain sentinels; server responses are built with the wire encoders
and cut into items by one ``BackendScanner`` per link, as the relay does.
"""

from __future__ import annotations

import struct

from pgtwist.session.ordering import HOLD_LIMIT, Ordering
from pgtwist.wire import codes
from pgtwist.wire import messages as m
from pgtwist.wire.framing import BackendScanner

Z = codes.READY_FOR_QUERY
E = codes.ERROR_RESPONSE
RFQ = m.ready_for_query()  # b"Z\x00\x00\x00\x05I"


def response(*values: str, status: int = codes.TXN_IDLE) -> bytes:
    """A simple-query answer: RowDescription, DataRows, CommandComplete, ReadyForQuery."""
    rows = b"".join(m.data_row([v]) for v in values)
    return (m.row_description(["v"]) + rows + m.command_complete(f"SELECT {len(values)}")
            + m.ready_for_query(status))


def notification(channel: str = "chan", payload: str = "hi", pid: int = 42) -> bytes:
    return m.frame(codes.NOTIFICATION_RESPONSE,
                   struct.pack("!I", pid) + m.cstr(channel) + m.cstr(payload))


def frame_ends(stream: bytes) -> list[int]:
    """Offsets where a frame of ``stream`` ends (0 included)."""
    ends = [0]
    pos = 0
    while pos < len(stream):
        (length,) = struct.unpack_from("!I", stream, pos + 1)
        pos += 1 + length
        ends.append(pos)
    return ends


class Feed:
    """One Ordering plus one BackendScanner per link; records what the client got."""

    def __init__(self, primary=None) -> None:
        self.o = Ordering()
        self.o.primary = primary
        self.scanners: dict[object, BackendScanner] = {}
        self.client = b""

    def recv(self, link, data: bytes):
        scanner = self.scanners.setdefault(link, BackendScanner())
        out, events, hold = self.o.receive(link, scanner.feed(data))
        for part in out:
            assert type(part) is bytes
        self.client += b"".join(out)
        return out, events, hold

    def write(self, out: list[bytes]) -> None:
        self.client += b"".join(out)


def forwarded(o: Ordering, link, own: bool = False):
    seg = o.segment(link)
    o.synced(seg, own=own)
    return seg


def shadow(o: Ordering, link, syncs: int = 1, on_done=None):
    """What the relay's ``_shadow`` does with the ordering."""
    seg = o.segment(link, forward=False)
    seg.pending = syncs
    seg.closed = True
    seg.on_done = on_done
    return seg


# -- one link ---------------------------------------------------------------------------

def test_one_link_bytes_pass_through_and_ready_for_query_completes():
    f = Feed()
    link = object()
    seg = forwarded(f.o, link)
    assert list(f.o.fifo) == [seg]
    resp = response("1", "2")
    head, tail = resp[:-len(RFQ)], resp[-len(RFQ):]

    out, events, hold = f.recv(link, head)
    assert out == [head]           # streamed before the response is complete
    assert events == []
    assert hold is False
    assert list(f.o.fifo) == [seg]
    assert not seg.done

    out, events, hold = f.recv(link, tail)
    assert out == [RFQ]
    assert events == [(Z, b"I")]
    assert hold is False
    assert not f.o.fifo
    assert seg.done
    assert f.o.idle
    assert not f.o.busy(link)
    assert f.client == resp


def test_one_link_whole_response_in_one_chunk():
    f = Feed()
    link = object()
    forwarded(f.o, link)
    resp = response("a")
    out, events, hold = f.recv(link, resp)
    assert out == [resp]
    assert events == [(Z, b"I")]
    assert hold is False
    assert f.o.idle


def test_events_carry_error_and_status_byte():
    f = Feed()
    link = object()
    forwarded(f.o, link)
    err = m.error_response("42P01", "relation \"nope\" does not exist")
    resp = err + m.ready_for_query(codes.TXN_FAILED)
    out, events, _ = f.recv(link, resp)
    assert b"".join(out) == resp
    assert events == [(E, err[5:]), (Z, b"E")]
    assert f.o.idle


def test_ready_for_query_split_across_chunks():
    f = Feed()
    link = object()
    seg = forwarded(f.o, link)
    resp = response("x")
    out1, ev1, _ = f.recv(link, resp[:-3])
    assert ev1 == []
    assert list(f.o.fifo) == [seg]
    out2, ev2, _ = f.recv(link, resp[-3:])
    assert ev2 == [(Z, b"I")]
    assert f.client == resp
    assert f.o.idle


def test_same_link_pipelined_segments_in_one_chunk():
    f = Feed()
    link = object()
    a = forwarded(f.o, link)
    b = forwarded(f.o, link)
    assert a is not b
    assert list(f.o.fifo) == [a, b]
    both = response("1") + response("2")
    out, events, _ = f.recv(link, both)
    assert b"".join(out) == both
    assert events == [(Z, b"I"), (Z, b"I")]
    assert a.done and b.done
    assert f.o.idle


# -- several links ------------------------------------------------------------------------

def test_two_links_pipelined_second_answers_first():
    f = Feed()
    link1, link2 = object(), object()
    a = forwarded(f.o, link1)
    b = forwarded(f.o, link2)
    assert list(f.o.fifo) == [a, b]
    resp1, resp2 = response("one"), response("two", "deux")

    out, events, hold = f.recv(link2, resp2)
    assert out == []                    # not its turn: held
    assert events == [(Z, b"I")]        # events are reported even when held
    assert hold is False
    assert b.held_bytes == len(resp2)
    assert b"".join(b.held) == resp2
    assert b.done
    assert list(f.o.fifo) == [a, b]
    assert not f.o.busy(link2)          # its response is all in
    assert f.o.busy(link1)

    out, events, hold = f.recv(link1, resp1)
    assert b"".join(out) == resp1 + resp2   # link1's bytes first, then link2's held ones
    assert out[0] == resp1
    assert events == [(Z, b"I")]
    assert hold is False
    assert a.done and b.done
    assert b.held == [] and b.held_bytes == 0
    assert not f.o.fifo
    assert f.o.idle
    assert f.client == resp1 + resp2


def test_second_link_streams_once_it_becomes_head():
    f = Feed()
    link1, link2 = object(), object()
    forwarded(f.o, link1)
    b = forwarded(f.o, link2)
    resp2 = response("a", "b", "c")
    cut = len(m.row_description(["v"])) + 8   # inside the first DataRow's body
    assert f.recv(link2, resp2[:cut])[0] == []
    assert f.recv(link1, response("x"))[0] != []
    assert list(f.o.fifo) == [b]
    # b is head now: the rest of its response goes straight out.
    out, _, _ = f.recv(link2, resp2[cut:])
    assert b"".join(out) == resp2[cut:]
    assert f.client == response("x") + resp2
    assert f.o.idle


def test_three_segments_interleaved_links():
    f = Feed()
    link1, link2 = object(), object()
    a = forwarded(f.o, link1)
    b = forwarded(f.o, link2)
    c = forwarded(f.o, link1)
    ra, rb, rc = response("a"), response("b"), response("c")
    out, events, _ = f.recv(link1, ra + rc)
    assert b"".join(out) == ra          # c waits behind b
    assert events == [(Z, b"I"), (Z, b"I")]
    assert c.done and b"".join(c.held) == rc
    assert list(f.o.fifo) == [b, c]
    out, _, _ = f.recv(link2, rb)
    assert b"".join(out) == rb + rc
    assert a.done and b.done and c.done
    assert f.o.idle
    assert f.client == ra + rb + rc


def test_forward_on_done_runs_at_completion_and_on_release():
    f = Feed()
    link1, link2 = object(), object()
    calls = []
    a = forwarded(f.o, link1)
    a.on_done = lambda: calls.append("a")
    b = forwarded(f.o, link2)
    b.on_done = lambda: calls.append("b")
    f.recv(link2, response("2"))
    assert calls == []                  # b completed but not delivered yet
    f.recv(link1, response("1"))
    assert calls == ["a", "b"]


# -- hold flag -----------------------------------------------------------------------------

def test_hold_flag_when_held_bytes_exceed_limit():
    f = Feed()
    link1, link2 = object(), object()
    forwarded(f.o, link1)
    b = forwarded(f.o, link2)
    big = m.data_row(["x" * (HOLD_LIMIT // 2)])
    head = m.row_description(["v"]) + big

    out, _, hold = f.recv(link2, head)
    assert out == []
    assert hold is False                 # about half the limit
    out, _, hold = f.recv(link2, big)
    assert out == []
    assert b.held_bytes == len(head) + len(big) > HOLD_LIMIT
    assert hold is True                  # the caller should pause link2

    # link1 finishes: link2's held bytes are released and the flag clears.
    out, _, hold1 = f.recv(link1, response("1"))
    assert b"".join(out) == response("1") + head + big
    assert hold1 is False
    assert b.held_bytes == 0
    tail = m.command_complete("SELECT 2") + RFQ
    out, events, hold = f.recv(link2, tail)
    assert out == [tail]
    assert events == [(Z, b"I")]
    assert hold is False
    assert f.o.idle


def test_hold_flag_exactly_at_limit_is_not_set():
    f = Feed()
    link1, link2 = object(), object()
    forwarded(f.o, link1)
    forwarded(f.o, link2)
    # A DataRow of exactly HOLD_LIMIT bytes: header 5 + count 2 + length 4 + value.
    row = m.data_row(["y" * (HOLD_LIMIT - 11)])
    assert len(row) == HOLD_LIMIT
    _, _, hold = f.recv(link2, row)
    assert hold is False


def test_hold_flag_counts_all_bytes_link_holds():
    """BUG: the flag only looks at the link's *first* unfinished segment.

    ``receive`` promises to report "whether ``link`` holds more than
    HOLD_LIMIT".  Held bytes of a segment that completed while waiting its
    turn are no longer counted, so a link answering several pipelined
    segments behind a slow head is never paused however much it holds.
    """
    f = Feed()
    link1, link2 = object(), object()
    forwarded(f.o, link1)                  # slow head
    b1 = forwarded(f.o, link2)
    b2 = forwarded(f.o, link2)
    part = "z" * (HOLD_LIMIT * 3 // 5)
    _, _, hold = f.recv(link2, response(part))
    assert hold is False                   # 0.6 MiB held so far: fine
    _, _, hold = f.recv(link2, response(part))
    held = b1.held_bytes + b2.held_bytes
    assert held > HOLD_LIMIT
    assert hold is True, f"link2 holds {held} bytes > HOLD_LIMIT but hold is False"


# -- shadow segments -------------------------------------------------------------------------

def test_shadow_response_is_consumed_and_does_not_block():
    f = Feed()
    link1, link2 = object(), object()
    sh = shadow(f.o, link2)
    a = forwarded(f.o, link1)
    assert list(f.o.fifo) == [a]         # shadows are not in the client FIFO
    assert f.o.busy(link2)
    # The forwarded segment is not blocked by the shadow still in flight.
    out, _, _ = f.recv(link1, response("1"))
    assert b"".join(out) == response("1")
    assert not f.o.fifo
    assert not f.o.idle                  # the shadow is still pending
    out, events, hold = f.recv(link2, response("shadow"))
    assert out == []
    assert events == [(Z, b"I")]
    assert hold is False
    assert sh.done
    assert not f.o.busy(link2)
    assert f.o.idle
    assert f.client == response("1")


def test_shadow_before_forward_on_same_link():
    f = Feed()
    link = object()
    shadow(f.o, link)                     # e.g. a re-Parse ahead of the client's query
    a = forwarded(f.o, link)
    rs, ra = response("hidden"), response("shown")
    out, events, _ = f.recv(link, rs + ra)
    assert b"".join(out) == ra
    assert events == [(Z, b"I"), (Z, b"I")]
    assert a.done
    assert f.o.idle


def test_shadow_with_several_syncs_needs_all_ready_for_query():
    f = Feed()
    link = object()
    sh = shadow(f.o, link, syncs=2)
    out, _, _ = f.recv(link, response("1"))
    assert out == []
    assert not sh.done
    assert f.o.busy(link)
    out, _, _ = f.recv(link, response("2"))
    assert out == []
    assert sh.done
    assert f.o.idle


def test_shadow_error_is_swallowed_but_reported_as_event():
    f = Feed()
    link = object()
    shadow(f.o, link)
    err = m.error_response("42704", "unrecognized configuration parameter")
    out, events, _ = f.recv(link, err + RFQ)
    assert out == []
    assert events == [(E, err[5:]), (Z, b"I")]


def test_shadow_on_done_runs_when_it_completes():
    """BUG: a shadow segment's ``on_done`` is never called.

    ``Segment.on_done`` is documented as "callable run when the segment
    completes"; ``receive`` only calls it for forwarded segments.  The relay
    waits on it to send COMMIT to the primary after the standby's COMMIT.
    """
    f = Feed()
    link = object()
    calls = []
    sh = shadow(f.o, link, on_done=lambda: calls.append("shadow"))
    f.recv(link, response("1"))
    assert sh.done
    assert calls == ["shadow"]


def test_shadow_on_done_while_forward_segment_is_head():
    """Same bug with another link heading the FIFO: shadows must never wait for it."""
    f = Feed()
    link1, link2 = object(), object()
    calls = []
    forwarded(f.o, link1)
    shadow(f.o, link2, on_done=lambda: calls.append("standby COMMIT"))
    f.recv(link2, m.command_complete("COMMIT") + RFQ)
    assert calls == ["standby COMMIT"]


# -- own sync points ---------------------------------------------------------------------------

def test_own_sync_ready_for_query_hidden_when_head():
    f = Feed()
    link = object()
    seg = f.o.segment(link)               # a batch without Sync...
    f.o.synced(seg, own=True)             # ...closed by pgtwist's own Sync
    assert seg.swallow_z and seg.closed and seg.pending == 1
    resp = response("1")
    out, events, _ = f.recv(link, resp)
    assert b"".join(out) == resp[:-6]
    assert events == [(Z, b"I")]          # the event is still reported
    assert f.o.idle
    assert f.client == resp[:-6]


def test_own_sync_ready_for_query_alone_in_a_chunk():
    f = Feed()
    link = object()
    seg = f.o.segment(link)
    body = m.row_description(["v"]) + m.data_row(["1"])
    out, _, _ = f.recv(link, body)       # Flush-style: rows flow before the Sync
    assert out == [body]
    f.o.synced(seg, own=True)
    out, events, _ = f.recv(link, m.command_complete("SELECT 1") + RFQ)
    assert b"".join(out) == m.command_complete("SELECT 1")
    assert events == [(Z, b"I")]
    assert f.o.idle
    assert f.client == body + m.command_complete("SELECT 1")


def test_own_sync_ready_for_query_hidden_when_held():
    f = Feed()
    link1, link2 = object(), object()
    forwarded(f.o, link1)
    b = f.o.segment(link2)
    f.o.synced(b, own=True)
    r1, r2 = response("1"), response("2")
    out, events, _ = f.recv(link2, r2)
    assert out == []
    assert events == [(Z, b"I")]
    assert b"".join(b.held) == r2[:-6]
    assert b.held_bytes == len(r2) - 6
    out, _, _ = f.recv(link1, r1)
    assert b"".join(out) == r1 + r2[:-6]
    assert f.o.idle
    assert f.client == r1 + r2[:-6]


def test_client_sync_ready_for_query_is_kept():
    f = Feed()
    link = object()
    forwarded(f.o, link, own=False)
    resp = response("1")
    assert b"".join(f.recv(link, resp)[0]) == resp


# -- open segments (Flush-style batches) ---------------------------------------------------------

def test_open_segment_flows_while_head_and_blocks_the_next():
    f = Feed()
    link1, link2 = object(), object()
    a = f.o.segment(link1)
    assert f.o.open_segment(link1) is a
    assert f.o.tail_open() is a
    assert f.o.segment(link1) is a         # more messages join the open segment
    assert list(f.o.fifo) == [a]

    part1 = m.row_description(["v"]) + m.data_row(["1"])
    out, events, _ = f.recv(link1, part1)
    assert out == [part1]                  # head and open: streams
    assert events == []

    b = f.o.segment(link2)
    assert b is not a
    assert f.o.open_segment(link1) is None  # no longer the newest
    assert f.o.tail_open() is b
    f.o.synced(b)
    assert f.o.tail_open() is None
    rb = response("b")
    out, _, _ = f.recv(link2, rb)
    assert out == []                       # waits for the open head
    assert b.done

    part2 = m.data_row(["2"])
    out, _, _ = f.recv(link1, part2)
    assert out == [part2]                  # a is still head
    assert list(f.o.fifo) == [a, b]

    f.o.synced(a, own=True)                # pgtwist closes the batch with its own Sync
    out, events, _ = f.recv(link1, m.command_complete("SELECT 2") + RFQ)
    assert b"".join(out) == m.command_complete("SELECT 2") + rb
    assert events == [(Z, b"I")]
    assert a.done
    assert f.o.idle
    assert f.client == part1 + part2 + m.command_complete("SELECT 2") + rb


def test_open_segment_with_client_sync_later():
    f = Feed()
    link = object()
    a = f.o.segment(link)
    out, _, _ = f.recv(link, m.data_row(["1"]))
    assert out == [m.data_row(["1"])]
    assert f.o.segment(link) is a
    f.o.synced(a)
    assert f.o.open_segment(link) is None
    out, _, _ = f.recv(link, m.command_complete("SELECT 1") + RFQ)
    assert b"".join(out) == m.command_complete("SELECT 1") + RFQ
    assert f.o.idle


# -- local responses ---------------------------------------------------------------------------

def test_local_written_at_once_when_nothing_pending():
    o = Ordering()
    calls = []
    data = m.command_complete("SHOW") + RFQ
    out = o.local(data, on_done=lambda: calls.append("local"))
    assert out == [data]
    assert calls == ["local"]
    assert not o.fifo
    assert o.idle


def test_local_not_blocked_by_shadow():
    o = Ordering()
    link = object()
    shadow(o, link)
    data = m.command_complete("SHOW") + RFQ
    assert o.local(data) == [data]


def test_local_queued_behind_pending_segments_and_released_in_order():
    f = Feed()
    link1, link2 = object(), object()
    calls = []
    forwarded(f.o, link1)
    l1 = m.data_row(["local-1"]) + RFQ
    assert f.o.local(l1, on_done=lambda: calls.append("l1")) == []
    forwarded(f.o, link2)
    l2 = m.data_row(["local-2"]) + RFQ
    assert f.o.local(l2, on_done=lambda: calls.append("l2")) == []
    assert len(f.o.fifo) == 4
    assert f.o.tail_open() is None         # a local segment is never open

    r2 = response("2")
    out, _, _ = f.recv(link2, r2)
    assert out == []
    assert calls == []
    r1 = response("1")
    out, _, _ = f.recv(link1, r1)
    assert b"".join(out) == r1 + l1 + r2 + l2
    assert calls == ["l1", "l2"]
    assert f.o.idle


def test_local_behind_head_streams_after_it():
    f = Feed()
    link = object()
    forwarded(f.o, link)
    data = m.command_complete("SHOW") + RFQ
    assert f.o.local(data) == []
    r = response("1")
    out, _, _ = f.recv(link, r[:10])
    assert out == [r[:10]]
    out, _, _ = f.recv(link, r[10:])
    assert b"".join(out) == r[10:] + data
    assert f.o.idle


# -- unsolicited messages ---------------------------------------------------------------------------

def test_unsolicited_from_primary_is_forwarded():
    primary = object()
    f = Feed(primary=primary)
    note = notification()
    out, events, hold = f.recv(primary, note)
    assert out == [note]
    assert events == [(codes.NOTIFICATION_RESPONSE, note[5:])]  # watched, so shadows keep it
    assert hold is False
    assert f.o.idle


def test_unsolicited_from_other_link_is_dropped():
    primary, other = object(), object()
    f = Feed(primary=primary)
    note = notification()
    out, events, _ = f.recv(other, note)
    assert out == []
    assert events == [(codes.NOTIFICATION_RESPONSE, note[5:])]
    ps = m.parameter_status("application_name", "x")
    out, events, _ = f.recv(other, ps)
    assert out == []
    assert events == [(codes.PARAMETER_STATUS, ps[5:])]


def test_unsolicited_from_primary_while_another_link_heads_between_frames():
    primary, other = object(), object()
    f = Feed(primary=primary)
    forwarded(f.o, other)
    r = response("1", "2")
    first = m.row_description(["v"]) + m.data_row(["1"])
    f.recv(other, first)
    out, _, _ = f.recv(primary, notification())
    assert out == []  # held: the client is inside the other link's response
    f.recv(other, r[len(first):])
    assert f.client == r + notification()  # delivered at the next message boundary
    assert f.o.idle


def test_notification_from_primary_with_pending_segment_stays_in_order():
    primary, other = object(), object()
    f = Feed(primary=primary)
    forwarded(f.o, other)
    p = forwarded(f.o, primary)
    note = notification()
    rp = response("p")
    out, _, _ = f.recv(primary, note + rp)
    assert out == []                       # part of primary's (held) stream
    assert p.done
    ro = response("o")
    f.recv(other, ro)
    assert f.client == ro + note + rp


def test_unsolicited_from_primary_never_splits_another_links_frame():
    """BUG: the primary's unsolicited bytes can land inside another link's frame.

    The scanner streams DataRow bodies before they are complete.  When another
    link heads the FIFO and is mid-frame, a NotificationResponse from the idle
    primary is written at once, in the middle of that DataRow: the client
    sees a corrupt stream.  (Module docstring: "a link's bytes go to the
    client only while its segment is at the head".)
    """
    primary, other = object(), object()
    f = Feed(primary=primary)
    forwarded(f.o, other)
    r = response("v" * 1000)
    cut = len(m.row_description(["v"])) + 100   # inside the DataRow
    f.recv(other, r[:cut])
    f.recv(primary, notification())
    f.recv(other, r[cut:])
    note = notification()
    valid = {r[:end] + note + r[end:] for end in frame_ends(r)}
    assert f.client in valid, "NotificationResponse was written inside a DataRow"


# -- lost links -------------------------------------------------------------------------------------

def test_drop_link_releases_next_segments_held_bytes():
    f = Feed()
    link1, link2 = object(), object()
    forwarded(f.o, link1)
    b = forwarded(f.o, link2)
    f.recv(link1, m.row_description(["v"]))   # link1 started answering, then died
    r2 = response("2")
    assert f.recv(link2, r2)[0] == []
    out = f.o.drop_link(link1)
    assert b"".join(out) == r2
    assert b.done
    assert not f.o.busy(link1)
    assert link1 not in f.o.by_link
    assert f.o.idle


def test_drop_link_head_releases_partial_then_streams_next():
    f = Feed()
    link1, link2 = object(), object()
    forwarded(f.o, link1)
    b = forwarded(f.o, link2)
    r2 = response("a", "b")
    f.recv(link2, r2[:12])
    out = f.o.drop_link(link1)
    assert out == [r2[:12]]
    assert list(f.o.fifo) == [b]
    out, _, _ = f.recv(link2, r2[12:])
    assert b"".join(out) == r2[12:]
    assert f.o.idle


def test_drop_link_not_head_releases_nothing():
    f = Feed()
    link1, link2 = object(), object()
    a = forwarded(f.o, link1)
    forwarded(f.o, link2)
    f.recv(link2, m.data_row(["partial"]))
    assert f.o.drop_link(link2) == []
    assert list(f.o.fifo) == [a]
    out, _, _ = f.recv(link1, response("1"))
    assert b"".join(out) == response("1")
    assert f.o.idle


def test_drop_link_forgets_shadows_and_unknown_links():
    o = Ordering()
    link = object()
    shadow(o, link)
    assert o.busy(link)
    assert o.drop_link(link) == []
    assert not o.busy(link)
    assert o.idle
    assert o.drop_link(object()) == []


def test_drop_link_releases_queued_local():
    o = Ordering()
    link = object()
    forwarded(o, link)
    data = m.command_complete("SHOW") + RFQ
    assert o.local(data) == []
    assert o.drop_link(link) == [data]
    assert o.idle


# -- bookkeeping ---------------------------------------------------------------------------------------

def test_fresh_ordering_is_idle():
    o = Ordering()
    link = object()
    assert o.idle
    assert not o.busy(link)
    assert o.open_segment(link) is None
    assert o.tail_open() is None


def test_busy_idle_open_segment_tail_open_lifecycle():
    f = Feed()
    link1, link2 = object(), object()
    a = f.o.segment(link1)
    assert f.o.busy(link1) and not f.o.busy(link2)
    assert not f.o.idle
    assert f.o.open_segment(link1) is a
    assert f.o.open_segment(link2) is None
    assert f.o.tail_open() is a
    f.o.synced(a)
    assert f.o.open_segment(link1) is None
    assert f.o.tail_open() is None
    a2 = f.o.segment(link1)
    assert a2 is not a                     # a closed segment takes no more messages
    assert f.o.tail_open() is a2
    f.o.synced(a2)
    sh = shadow(f.o, link2)
    assert f.o.busy(link2)
    assert f.o.tail_open() is None
    assert f.o.open_segment(link2) is None  # shadows are never "open"
    assert sh not in f.o.fifo
    f.recv(link1, response("1") + response("2"))
    assert not f.o.busy(link1)
    assert not f.o.idle                    # the shadow on link2
    f.recv(link2, response("s"))
    assert f.o.idle


def test_synced_counts_sync_points():
    o = Ordering()
    seg = o.segment(object())
    Ordering.synced(seg)
    assert seg.closed and seg.pending == 1 and not seg.swallow_z
    Ordering.synced(seg, own=True)
    assert seg.pending == 2 and seg.swallow_z
    assert not seg.done


# -- Parses pgtwist puts at the head of a segment (transaction pooling) -------------------------
PARSE_COMPLETE = m.frame(codes.PARSE_COMPLETE)
BIND_COMPLETE = m.frame(codes.BIND_COMPLETE)


def _batch_with_hidden_parses(hidden: int):
    f = Feed()
    seg = f.o.segment("L")
    for _ in range(hidden):
        f.o.parse_sent(seg, hidden=True)
    f.o.parse_sent(seg)  # the client's own Parse follows
    f.o.synced(seg)
    return f, seg


def test_hidden_parse_completes_are_removed_from_the_head_segment():
    f, _seg = _batch_with_hidden_parses(2)
    stream = (PARSE_COMPLETE * 2 + BIND_COMPLETE + m.data_row(["1"])
              + m.command_complete("SELECT 1") + RFQ)
    f.recv("L", stream)
    assert f.client == stream[10:]


def test_hidden_parse_completes_split_across_reads():
    f, _seg = _batch_with_hidden_parses(2)
    client_part = PARSE_COMPLETE + BIND_COMPLETE + m.command_complete("SELECT 0") + RFQ
    stream = PARSE_COMPLETE * 2 + client_part
    for i in range(len(stream)):  # one byte at a time
        f.recv("L", stream[i:i + 1])
    assert f.client == client_part  # the client's own ParseComplete is kept


def test_hidden_parse_completes_while_waiting_for_the_turn():
    f = Feed()
    first = f.o.segment("A")
    f.o.synced(first)
    second = f.o.segment("B")
    f.o.parse_sent(second, hidden=True)
    f.o.synced(second)
    f.recv("B", PARSE_COMPLETE + BIND_COMPLETE + RFQ)   # held: A is first
    assert f.client == b""
    f.recv("A", RFQ)
    assert f.client == RFQ + BIND_COMPLETE + RFQ


def test_an_error_from_a_hidden_parse_reaches_the_client():
    f, seg = _batch_with_hidden_parses(2)
    err = m.error_response("42P01", 'relation "gone" does not exist')
    f.recv("L", PARSE_COMPLETE + err + RFQ)
    assert f.client == err + RFQ
    assert seg.hidden is None


def test_a_hidden_parse_in_the_middle_of_a_batch():
    """Client Parse, then pgtwist's Parse before a Bind, then another client Parse: only
    the second ParseComplete is pgtwist's, whenever the bytes arrive."""
    f = Feed()
    seg = f.o.segment("L")
    f.o.parse_sent(seg)
    f.o.parse_sent(seg, hidden=True)
    f.o.parse_sent(seg)
    f.o.synced(seg)
    stream = (PARSE_COMPLETE + BIND_COMPLETE + m.command_complete("SELECT 0")
              + PARSE_COMPLETE + BIND_COMPLETE + PARSE_COMPLETE + RFQ)
    expect = stream[:5 + 5 + len(m.command_complete("SELECT 0"))] + stream[-(5 + 5 + 6):]
    f.recv("L", stream[:7])
    f.recv("L", stream[7:30])
    f.recv("L", stream[30:])
    assert f.client == expect
