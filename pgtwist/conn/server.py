"""What pgtwist knows about one server connection, fed from the frames it reads.

A :class:`ServerState` belongs to one backend link and outlives the sessions that
use it (transaction pooling hands links between sessions): the statements the
server holds, the settings applied there, the Parses still unanswered, its
transaction status, the ReadyForQuery count and the extended-protocol COPY
accounting.  The session layer feeds it the frames the scanner watches and reads
the facts back; nothing here does I/O, so tests drive it with bytes.

Bookkeeping an error must void (a SET outside a transaction block, a SQL PREPARE)
is data, :class:`UndoReplay` / :class:`UndoPrepare`, filed with the response segment
that settles it (pgtwist.session.ordering); :meth:`ServerState.undone` applies the
server's part of one, the session state the rest.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Iterable
from typing import NamedTuple

from ..wire import codes
from ..wire.decode import decode_parameter_status


class LinkStatements:
    """The pgtwist statements one server holds, least recently used first."""

    __slots__ = ("names", "capacity")

    def __init__(self, capacity: int) -> None:
        self.names: OrderedDict[bytes, None] = OrderedDict()
        self.capacity = max(1, capacity)

    def __contains__(self, name: bytes) -> bool:
        return name in self.names

    def __len__(self) -> int:
        return len(self.names)

    def use(self, name: bytes) -> None:
        """Mark ``name`` held (just prepared) and most recently used."""
        self.names[name] = None
        self.names.move_to_end(name)

    def touch(self, name: bytes) -> None:
        if name in self.names:
            self.names.move_to_end(name)

    def discard(self, name: bytes) -> None:
        self.names.pop(name, None)

    def clear(self) -> None:
        self.names.clear()

    def evictions(self, keep: Iterable[bytes] = ()) -> list[bytes]:
        """Names to close so the link is back within capacity; removed from the cache."""
        over = len(self.names) - self.capacity
        if over <= 0:
            return []
        keep = set(keep)
        out = []
        for name in self.names:
            if over <= 0:
                break
            if name not in keep:
                out.append(name)
                over -= 1
        for name in out:
            del self.names[name]
        return out


class UndoReplay(NamedTuple):
    """Restore the session's replay list (its SETs) to ``snapshot``."""

    snapshot: list


class UndoPrepare(NamedTuple):
    """A SQL PREPARE of ``name`` failed: neither the session nor the server has it."""

    name: str
    prepared: object  # the session's SqlPrepared it made, if any


class ServerState:
    """Per-server facts, sans-IO; see the module docstring."""

    __slots__ = ("txn_status", "parameters", "fatal_seen", "pending_parses", "ready_seen",
                 "applied", "applied_by", "last_session", "statements",
                 "sql_prepared", "unnamed", "copy_execute", "copy_waiter", "copy_portals",
                 "copy_client_done", "copy_simple", "copy_ins", "copy_ends")

    def __init__(self, txn_status: int = codes.TXN_IDLE,
                 parameters: dict[str, str] | None = None) -> None:
        self.txn_status = txn_status
        self.parameters: dict[str, str] = dict(parameters or {})
        self.fatal_seen = False    # the server sent FATAL/PANIC: it is about to hang up
        self.pending_parses: deque = deque()  # statements whose ParseComplete is awaited
        self.ready_seen = 0        # ReadyForQuery messages received
        # Session state applied here: the SET/RESET statements, in order.
        self.applied: tuple = ()
        self.applied_by = None     # the session that keeps ``applied`` up to date, if any
        self.last_session = None   # the last session that ran statements here since a reset
        # Transaction pooling: pgtwist statements held (LRU), SQL PREPAREd names -> their
        # PREPARE text, and whose unnamed statement the server has.
        self.statements: LinkStatements | None = None
        self.sql_prepared: dict[str, str] = {}
        self.unnamed = None
        # COPY FROM STDIN sent here, simple or extended (pgtwist.session.requests).
        self.copy_execute = False  # such a statement went here; copy-in may start
        self.copy_waiter = None    # fired once it is known whether copy-in began (opaque here)
        self.copy_portals: set[bytes] = set()  # portals bound to a COPY FROM STDIN
        self.copy_client_done = False
        self.copy_simple = False   # that COPY came in a simple Query (which may hold more)
        self.copy_ins = 0          # its CopyInResponses so far (one per COPY FROM STDIN)
        self.copy_ends = 0         # the client's CopyDone / CopyFail sent for them

    # -- frames --------------------------------------------------------------------------
    def receive(self, code: int, body: bytes):
        """Feed one watched frame; returns what the matching method returns."""
        if code == codes.READY_FOR_QUERY:
            return self.ready(body[0])
        if code == codes.PARSE_COMPLETE:
            return self.parse_complete()
        if code == codes.ERROR_RESPONSE:
            return self.failed(body)
        if code == codes.PARAMETER_STATUS:
            return self.parameter_status(body)
        if code == codes.COPY_IN_RESPONSE or code == codes.COPY_BOTH_RESPONSE:
            return self.copy_in()
        return None

    def ready(self, status: int) -> None:
        self.ready_seen += 1
        self.txn_status = status

    def parse_complete(self):
        """ParseComplete: the oldest Parse awaited is confirmed; returns its statement."""
        if self.pending_parses:
            stmt = self.pending_parses.popleft()
            stmt.confirmed = True
            return stmt
        return None

    def failed(self, body: bytes, unanswered: int | None = None) -> list:
        """ErrorResponse ``body``: the server skips to the next Sync.

        ``unanswered``: how many of the Parses awaited are in the failed batch part (the
        oldest ones; Ordering.error_of counts them); the others, sent after its Sync,
        are still answered.  None: all of them.  Returns the statements whose Parses
        never happened (forgotten here; the caller settles a skip probe among them).
        """
        if body.startswith((b"SFATAL\0", b"SPANIC\0")) or b"\0SFATAL\0" in body \
                or b"\0SPANIC\0" in body:
            self.fatal_seen = True
        pending = self.pending_parses
        n = len(pending) if unanswered is None else min(unanswered, len(pending))
        lost = [pending.popleft() for _ in range(n)]
        for stmt in lost:
            self.forget(stmt)
        return lost

    def undone(self, records) -> None:
        """An error voided ``records``: the server's part (a PREPAREd name) goes."""
        for record in records:
            if type(record) is UndoPrepare:
                self.sql_prepared.pop(record.name, None)

    def parameter_status(self, body: bytes) -> tuple[str, str]:
        name, value = decode_parameter_status(body)
        self.parameters[name] = value
        return name, value

    def copy_in(self):
        """CopyInResponse: the COPY is answered; returns the waiter to fire, if any."""
        self.copy_ins += 1
        return self.copy_resolved()

    # -- what pgtwist sent ----------------------------------------------------------------
    def copy_started(self, simple: bool = False) -> None:
        """A COPY FROM STDIN was just sent (``simple``: in a Query, which may hold more
        of them).  Until the server answers it with CopyInResponse or an error, a Sync
        from the client cannot be placed: in copy-in the server ignores it (the segment
        it went in says when: Ordering.copy_sent)."""
        self.copy_execute = True
        self.copy_client_done = False
        self.copy_simple = simple
        self.copy_ins = 0
        self.copy_ends = 0

    def copy_ended(self) -> None:
        """The client's CopyDone / CopyFail went here: its copy-in ends."""
        self.copy_client_done = True
        self.copy_ends += 1

    def copy_in_unended(self) -> bool:
        """Whether the server is in a copy-in of this Query the client has not ended."""
        return self.copy_ins > self.copy_ends

    def copy_resolved(self):
        """The server answered the COPY (copy-in began, or the statement failed): returns
        the waiter a Sync left (for the caller to fire), if any."""
        waiter, self.copy_waiter = self.copy_waiter, None
        return waiter

    def cache(self, capacity: int) -> LinkStatements:
        """The statement LRU, made on first use with ``capacity``."""
        stmts = self.statements
        if stmts is None:
            stmts = self.statements = LinkStatements(capacity)
        return stmts

    def holds(self, stmt) -> bool:
        """Whether the server has ``stmt`` under its pgtwist name (or as its unnamed one)."""
        if stmt.server_name is None:
            return self.unnamed is stmt
        return self.statements is not None and stmt.server_name in self.statements

    def forget(self, stmt) -> None:
        """A Parse of ``stmt`` sent here failed (or was skipped): the server lacks it."""
        server_name = getattr(stmt, "server_name", None)
        if server_name is not None and self.statements is not None:
            self.statements.discard(server_name)
        if self.unnamed is stmt:
            self.unnamed = None

    def forget_statements(self) -> None:
        """DISCARD ALL / DEALLOCATE ALL ran here: no prepared statement is left."""
        if self.statements is not None:
            self.statements.clear()
        self.sql_prepared.clear()

    def reset(self) -> None:
        """reset_query_list (DISCARD ALL) is about to run: nothing of any session is left."""
        self.pending_parses.clear()
        self.forget_statements()
        self.applied = ()
        self.last_session = None
        self.unnamed = None
