"""Per-client session state, kept apart from the I/O that changes it.

Every object of a session (pgtwist.session.relay and the objects it composes) reads
and writes the session's state here; what a server connection holds is in
pgtwist.conn.server, what the client is owed in pgtwist.session.ordering.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from ..conn.server import UndoReplay
from ..sql import state as sql_state
from ..sql.idents import quote_literal
from ..sql.info import BOTH, QueryInfo
from ..wire import codes

# Session-state commands a link opened later must replay.
_REPLAYED = frozenset({"SET", "RESET", "DISCARD"})
_MAX_REPLAY = 256
# Settings the server reports with ParameterStatus that a client may change.
_REPORTED_SETTABLE = frozenset({"application_name", "client_encoding", "DateStyle",
                                "IntervalStyle", "TimeZone", "standard_conforming_strings",
                                "search_path"})


@dataclass
class Statement:
    """A named (or the unnamed) extended-protocol statement and where it is parsed."""

    name: bytes
    sql: str
    parse_frame: bytes           # the client's own Parse, replayed on a node that lacks it
    info: QueryInfo
    nodes: set[int]
    # (state key, link, sticky state) of its last placement: reused while nothing changed.
    placed: tuple | None = None
    # Transaction pooling: the pgtwist-owned name it has on the servers (None: unnamed).
    server_name: bytes | None = None
    # A server said ParseComplete for it (or pgtwist did, for a text the link held).
    confirmed: bool = False
    # The statement of the same name this Parse was sent over: the server refuses a
    # named Parse of a name it holds (42P05), and that statement stays.
    replaces: Statement | None = None
    # Transaction pooling: running it changes nothing pgtwist tracks (no pin, PREPARE,
    # DISCARD or DEALLOCATE ALL): its Binds skip that bookkeeping.  None: not known yet.
    inert: bool | None = None


@dataclass
class SqlPrepared:
    """A SQL-level PREPARE: its text, what it runs, and the nodes that have it."""

    sql: str
    info: QueryInfo
    nodes: set[int]
    name: str = ""


@dataclass
class Session:
    """What pgtwist knows about one client's session.

    ``pid``/``secret`` are the BackendKeyData the client gets: a CancelRequest
    carrying them is mapped to the backend links that serve this session.  In
    session pooling ``pid`` becomes the primary backend's own pid once logged in
    (SessionMode.key_pid), in transaction pooling it stays pgtwist's; ``secret``
    is always pgtwist's own random one.
    """

    pid: int
    secret: int
    client_address: str = ""
    client_ip: str | None = None     # None for a Unix-socket client
    ssl: bool = False
    user: str = ""
    database: str = ""
    startup_params: dict[str, str] = field(default_factory=dict)
    # Server-reported parameters (ParameterStatus from the primary), latest value wins.
    parameters: dict[str, str] = field(default_factory=dict)
    txn_status: int = codes.TXN_IDLE
    primary_id: int | None = None
    lb_node: int | None = None
    # Extended protocol: statements and portals by client name.
    statements: dict[bytes, Statement] = field(default_factory=dict)
    portals: dict[bytes, int] = field(default_factory=dict)
    last_statement: Statement | None = None
    # SQL PREPARE name -> where it exists.
    sql_prepared: dict[str, SqlPrepared] = field(default_factory=dict)
    # Session-state statements (SET, RESET...) a link opened later must replay first.
    replay: list[str] = field(default_factory=list)
    # ``replay`` as it was at BEGIN: a rolled-back transaction's SETs never happened.
    replay_before_txn: list[str] | None = None
    # ... and at each open SAVEPOINT, oldest first: [(name, replay then)].
    savepoints: list[tuple[str, list[str]]] = field(default_factory=list)
    # ``replay`` before a SET outside an explicit transaction, until the relay files it
    # with the link: an error in that statement's implicit transaction undoes the SET.
    implicit_undo: list[str] | None = None
    # The BEGIN a standby link joining mid-transaction must run first.
    txn_begin_for_standby: str | None = None
    # Routing state (pgtwist.routing.stickiness), replaced on every statement.
    sticky: object = None
    # Transaction state as routing predicts it ('I'/'T'/'E'): statements may be routed
    # before the answers to earlier ones arrive.
    route_status: str = "I"
    # The client saw a standby fail inside its transaction (the primary's is still open).
    failed_elsewhere: bool = False
    temp_tables: set[str] = field(default_factory=set)
    # -- the session's protocol state (pgtwist.session.requests / replies) --
    closed: bool = False
    # Extended protocol after an error: pgtwist ignores the client's messages up to Sync,
    # whose ReadyForQuery then says ``skip_status``.
    skip_until_sync: bool = False
    skip_status: int = codes.TXN_FAILED
    skipping_link: object = None     # a link whose server skips to Sync as well
    probe: object = None             # a hidden Parse asking whether the server skips
    copy_link: object = None         # the link in copy-in (or copy-both) mode
    # Transaction pooling: why the session keeps its links (pgtwist.pooling.statements.PIN_REASONS).
    pinned: str | None = None
    # read_consistency: this session's writes (pgtwist.lsn.SessionLsn), made on first write.
    consistency: object = None
    # Admin views: when the client connected (wall clock); its PGPOOL SET values
    # (pgtwist.session.poolsettings.PoolSettings), made on the first PGPOOL SET.
    started: float = field(default_factory=time.time)
    pool_settings: object = None

    @property
    def ready_status(self) -> int:
        """The status a ReadyForQuery pgtwist makes itself reports."""
        return codes.TXN_FAILED if self.failed_elsewhere else self.txn_status

    def undo(self, records) -> None:
        """An error voided what these records filed (pgtwist.conn.server), newest first."""
        for record in records:
            if type(record) is UndoReplay:
                self.replay[:] = record.snapshot
            elif self.sql_prepared.get(record.name) is record.prepared:
                del self.sql_prepared[record.name]

    @property
    def application_name(self) -> str:
        return self.startup_params.get("application_name", "")

    @property
    def in_transaction(self) -> bool:
        return self.txn_status != codes.TXN_IDLE

    @property
    def txn_failed(self) -> bool:
        return self.txn_status == codes.TXN_FAILED

    # -- what the session's statements do to it (once sent; an error undoes: UNDO) --------------
    def statement_sent(self, info: QueryInfo, node_id: int | None, sql: str) -> None:
        """Bookkeeping once ``info`` was sent to ``node_id``: the predicted transaction
        state, the SETs later links must replay (and what a savepoint or a rollback undoes
        of them), and the SQL-level prepared statements."""
        command = info.command
        if command == "BEGIN":
            self.route_status = "T"
            # A standby joins the transaction with its BEGIN, never with the rest of a
            # multi-statement Query (that transaction stays on the primary: txn_on_primary).
            self.txn_begin_for_standby = (None if info.multi_statement
                                          else (info.standby_text or sql))
            self.replay_before_txn = list(self.replay)
        elif info.is_transaction_end:
            if self.replay_before_txn is not None and (command == "ROLLBACK"
                                                       or self.route_status == "E"):
                self.replay[:] = self.replay_before_txn  # its SETs were rolled back too
            self.replay_before_txn = None
            self.savepoints.clear()
            self.route_status = "I"
            self.txn_begin_for_standby = None
        elif command in ("SAVEPOINT", "ROLLBACK TO", "RELEASE") and self.route_status != "I":
            if info.savepoint_name is not None:
                self._savepoint(command, info.savepoint_name)
        implicit = self.route_status == "I" and command != "BEGIN"
        if command in _REPLAYED and info.route == BOTH:
            if implicit and self.implicit_undo is None:
                self.implicit_undo = list(self.replay)
            self._remember_state(sql, info)
        elif info.multi_statement and sql_state.may_change_settings(sql):
            if implicit and self.implicit_undo is None:
                self.implicit_undo = list(self.replay)
            parts = sql_state.setting_statements(sql)
            if len(parts) > _MAX_REPLAY:
                parts = _last_states(parts)
            for part in parts:
                self._remember_state(part)
        if info.prepare_name is not None and info.prepared is not None:
            self.sql_prepared[info.prepare_name] = SqlPrepared(sql, info.prepared, {node_id},
                                                               info.prepare_name)
        elif info.deallocate_name is not None:
            if info.deallocate_name == "*":
                self.sql_prepared.clear()
            else:
                self.sql_prepared.pop(info.deallocate_name, None)
        if info.discard_all and self.route_status == "I":
            self.sql_prepared.clear()  # (DISCARD ALL fails inside a transaction block)

    def remember_parameter(self, name: str, value: str) -> None:
        """A reported setting changed in the client's view: keep it for later links."""
        if name in _REPORTED_SETTABLE:
            self._remember_state(f"SET {name} TO {quote_literal(value)}")

    def _savepoint(self, command: str, name: str) -> None:
        """SAVEPOINT / ROLLBACK TO / RELEASE ``name``: the SETs made after a savepoint
        rolled back to never happened (PostgreSQL undoes them too)."""
        savepoints = self.savepoints
        if command == "SAVEPOINT":
            savepoints.append((name, list(self.replay)))
            return
        for i in range(len(savepoints) - 1, -1, -1):
            if savepoints[i][0] == name:
                if command == "ROLLBACK TO":
                    self.replay[:] = savepoints[i][1]
                    del savepoints[i + 1:]  # the savepoint itself stays
                else:
                    del savepoints[i:]
                return

    def _remember_state(self, sql: str, info: QueryInfo | None = None) -> None:
        """Record a session-state statement for links the session uses later (in order; a
        repeated one moves to the end, so setting a value back is kept).  ``info``: its
        QueryInfo, if classified; else the facts are read from ``sql``."""
        if info is not None:
            local, reset = info.set_local, info.reset_all
        else:
            local, reset = sql_state.set_local(sql), sql_state.reset_all(sql)
        if local:
            return
        replay = self.replay
        if reset:
            replay.clear()
            return
        if sql in replay:
            replay.remove(sql)
        replay.append(sql)
        del replay[:-_MAX_REPLAY]


def _last_states(parts: list[str]) -> list[str]:
    """The parts whose _remember_state calls decide the record (a long multi-statement
    text): from the last RESET ALL on, each distinct text's last occurrence, at most
    _MAX_REPLAY of them; the same record, without one list scan per part."""
    keep: list[str] = []
    seen: set[str] = set()
    for part in reversed(parts):
        if part in seen or sql_state.set_local(part):
            continue
        seen.add(part)
        keep.append(part)
        if sql_state.reset_all(part) or len(keep) > _MAX_REPLAY:
            break
    keep.reverse()
    return keep
