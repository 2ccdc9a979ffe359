"""Ordering as the only counter of sync points: shadows, in-flight counts, undo records."""

from __future__ import annotations

from pgtwist.session.ordering import COPY_SETTLED, UNDO, Ordering
from pgtwist.wire import codes
from pgtwist.wire import messages as m
from pgtwist.wire.framing import BackendScanner

Z = m.ready_for_query(codes.TXN_IDLE)


def receive(ordering, link, data: bytes):
    return ordering.receive(link, BackendScanner().feed(data))


def test_a_shadow_counts_its_sync_points_and_hides_its_answers():
    o = Ordering()
    done = []
    o.shadow("a", syncs=2, on_done=lambda: done.append(True))
    assert o.inflight("a") == 2 and o.busy("a")
    out, _events, _hold = receive(o, "a", m.command_complete("SET") + Z)
    assert out == [] and o.inflight("a") == 1 and not done
    receive(o, "a", m.command_complete("SET") + Z)
    assert o.inflight("a") == 0 and done == [True] and o.idle


def test_a_shadow_captures_its_bytes_for_pgtwist():
    o = Ordering()
    captured: list[bytes] = []
    o.shadow("a", capture=captured)
    rows = m.row_description(["x"]) + m.data_row(["1"]) + m.command_complete("SELECT 1")
    receive(o, "a", rows + Z)
    assert b"".join(captured).startswith(rows)


def test_in_flight_counts_each_links_segments():
    o = Ordering()
    o.synced(o.segment("a"))
    o.synced(o.segment("b"))
    o.synced(o.segment("a"))
    assert (o.inflight("a"), o.inflight("b"), o.inflight("c")) == (2, 1, 0)


def test_an_error_in_a_segment_hands_back_what_was_filed_newest_first():
    o = Ordering()
    o.synced(o.segment("a"))
    o.file_undo("a", "older")
    o.file_undo("a", "newer")
    error = m.error_response("22023", "invalid value")
    _out, events, _hold = receive(o, "a", error + Z)
    assert (UNDO, ["newer", "older"]) in events
    assert events.index((UNDO, ["newer", "older"])) == 1  # right after the ErrorResponse


def test_what_was_filed_is_dropped_when_its_segment_succeeds():
    o = Ordering()
    o.synced(o.segment("a"))
    o.file_undo("a", "first")
    receive(o, "a", m.command_complete("SET") + Z)
    o.synced(o.segment("a"))
    _out, events, _hold = receive(o, "a", m.error_response("22023", "x") + Z)
    assert not [e for e in events if e[0] == UNDO]


def test_undo_filed_before_the_sync_belongs_to_the_open_segment():
    o = Ordering()
    seg = o.segment("a")          # a Bind went out; its Sync has not
    o.file_undo("a", "bound")
    o.synced(seg)
    _out, events, _hold = receive(o, "a", m.error_response("22023", "x") + Z)
    assert (UNDO, ["bound"]) in events


def test_a_copy_segment_settles_at_its_error_or_its_ready_for_query():
    o = Ordering()
    o.synced(o.segment("a"))
    o.copy_sent("a")
    _out, events, _hold = receive(o, "a", m.error_response("42P01", "no table"))
    assert events[-1] == (COPY_SETTLED, b"")
    _out, events, _hold = receive(o, "a", Z)
    assert (COPY_SETTLED, b"") not in events  # once
    o.synced(o.segment("a"))
    o.copy_sent("a")
    _out, events, _hold = receive(o, "a", m.command_complete("COPY 0") + Z)
    assert events[-1] == (COPY_SETTLED, b"")
