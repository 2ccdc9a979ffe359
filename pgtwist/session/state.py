"""Per-client session state, kept apart from the I/O that changes it.

Every object of a session (pgtwist.session.relay and the objects it composes) reads
and writes the session's state here; what a server connection holds is in
pgtwist.conn.server, what the client is owed in pgtwist.session.ordering.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..conn.server import UndoReplay
from ..sql.info import QueryInfo
from ..wire import codes


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

    ``pid``/``secret`` are pgtwist's own BackendKeyData for the client (not a
    backend's): a CancelRequest carrying them is mapped to the backend links
    that serve this session.  The client therefore sees pgtwist's key as its
    "backend pid", while ``pg_backend_pid()`` answers with the real server
    process of whichever node ran it.
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
