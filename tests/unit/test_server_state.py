"""ServerState (pgtwist.conn.server), fed the frames a BackendScanner finds in bytes."""

from __future__ import annotations

from types import SimpleNamespace

from pgtwist.conn.server import LinkStatements, ServerState, UndoPrepare, UndoReplay
from pgtwist.wire import codes
from pgtwist.wire import messages as m
from pgtwist.wire.framing import BackendScanner


def feed(state: ServerState, data: bytes) -> list:
    """Scan ``data`` as a server stream; returns what each watched frame returned."""
    return [state.receive(*item) for item in BackendScanner().feed(data)
            if type(item) is tuple]


def stmt(name=b"s", server_name=None):
    return SimpleNamespace(name=name, server_name=server_name, confirmed=False)


def test_ready_for_query_counts_and_sets_the_status():
    state = ServerState()
    feed(state, m.command_complete("BEGIN") + m.ready_for_query(codes.TXN_BLOCK))
    assert (state.ready_seen, state.txn_status) == (1, codes.TXN_BLOCK)
    feed(state, m.ready_for_query(codes.TXN_FAILED) + m.ready_for_query(codes.TXN_IDLE))
    assert (state.ready_seen, state.txn_status) == (3, codes.TXN_IDLE)


def test_parse_complete_confirms_the_oldest_parse():
    state = ServerState()
    first, second = stmt(b"a"), stmt(b"b")
    state.pending_parses.extend([first, second])
    assert feed(state, m.frame(codes.PARSE_COMPLETE)) == [first]
    assert first.confirmed and not second.confirmed
    assert list(state.pending_parses) == [second]


def test_an_error_voids_the_parses_still_unanswered():
    state = ServerState()
    named, unnamed = stmt(b"a", b"pgtwist_1"), stmt(b"")
    state.cache(10).use(b"pgtwist_1")
    state.unnamed = unnamed
    state.pending_parses.extend([named, unnamed])
    [lost] = feed(state, m.error_response("42601", "syntax error"))
    assert lost == [named, unnamed]
    assert b"pgtwist_1" not in state.statements and state.unnamed is None
    assert not state.pending_parses and not state.fatal_seen


def test_a_fatal_error_is_noticed():
    state = ServerState()
    feed(state, m.error_response("57P01", "terminating connection", "FATAL"))
    assert state.fatal_seen


def test_parameter_status_is_kept():
    state = ServerState(parameters={"TimeZone": "UTC"})
    assert feed(state, m.parameter_status("TimeZone", "Europe/Paris")) == [
        ("TimeZone", "Europe/Paris")]
    assert state.parameters == {"TimeZone": "Europe/Paris"}


def test_copy_in_hands_back_the_waiting_sync():
    state = ServerState()
    state.copy_started()
    waiter = state.copy_waiter = object()
    assert feed(state, m.frame(codes.COPY_IN_RESPONSE, b"\0\0\0")) == [waiter]
    assert state.copy_waiter is None and state.copy_execute


def test_copy_in_with_no_sync_waiting():
    state = ServerState()
    state.copy_started()
    assert feed(state, m.frame(codes.COPY_IN_RESPONSE, b"\0\0\0")) == [None]


def test_holds_by_server_name_or_as_the_unnamed_statement():
    state = ServerState()
    named, unnamed = stmt(b"a", b"pgtwist_7"), stmt(b"")
    assert not state.holds(named) and not state.holds(unnamed)
    state.cache(5).use(b"pgtwist_7")
    state.unnamed = unnamed
    assert state.holds(named) and state.holds(unnamed)
    state.forget_statements()
    assert not state.holds(named) and state.holds(unnamed)


def test_undone_prepare_forgets_the_servers_name_only():
    state = ServerState()
    state.sql_prepared.update({"q": "PREPARE q AS SELECT 1", "r": "PREPARE r AS SELECT 2"})
    state.undone([UndoPrepare("q", None), UndoReplay(["SET a TO 1"])])
    assert state.sql_prepared == {"r": "PREPARE r AS SELECT 2"}


def test_reset_forgets_everything_a_session_left():
    state = ServerState()
    state.cache(3).use(b"pgtwist_1")
    state.sql_prepared["q"] = "PREPARE q AS SELECT 1"
    state.applied = ("SET a TO 1",)
    state.last_session = object()
    state.pending_parses.append(stmt())
    state.reset()
    assert not state.statements and not state.sql_prepared and state.applied == ()
    assert state.last_session is None and not state.pending_parses


def test_the_statement_cache_is_made_once_with_its_capacity():
    state = ServerState()
    cache = state.cache(2)
    assert isinstance(cache, LinkStatements) and cache.capacity == 2
    assert state.cache(99) is cache
