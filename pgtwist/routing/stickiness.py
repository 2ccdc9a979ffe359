"""What a session's writes do to its later reads: ``disable_load_balance_on_write`` (§1.4).

The relay keeps one :class:`StickyState` per session and, after each statement
has run (its ReadyForQuery seen), replaces it with ``after_statement(...)``.
The ``stickiness`` policy then reads the state through the SessionView fields
``writing_transaction``, ``written_objects``, ``serializable`` and
``temp_tables`` (see :func:`session_view`).

Pgpool-II's notion of a write (§1.4, ``is_select_query`` in
pool_process_query.c): any statement that is not a read by is_select_query()
— SET, SAVEPOINT, DISCARD, EXECUTE … included — or a read calling a writing
function; BEGIN/COMMIT/ROLLBACK/ROLLBACK TO and SET TRANSACTION READ ONLY are
not writes.  :func:`counts_as_write` computes exactly that.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace

from ..sql.info import QueryInfo
from ..sql.state import discard_all, discard_temp, sets_read_only
from .builtin import FUNCTION_KEYS, parse_function_list, parse_statement, parse_stickiness
from .rules import (
    FunctionOptions,
    bare,
    function_object,
    not_select_reason,
    prepared_body_sql,
    writing_functions,
)
from .values import RouteRequest, SessionView

_TXN_CONTROL = frozenset({"BEGIN", "COMMIT", "ROLLBACK", "ROLLBACK TO"})
_NOT_STATEMENTS = frozenset({"EMPTY", "PGPOOL", "PGTWIST"})


@dataclass(frozen=True)
class StickyState:
    """Per-session write tracking; immutable, replaced after each statement."""

    writing_transaction: bool = False           # Pgpool-II's writing_transaction flag
    written_objects: frozenset[str] = frozenset()   # dml_adaptive: this transaction's writes
    txn_serializable: bool = False              # the current transaction is SERIALIZABLE
    session_serializable: bool = False          # default isolation set to SERIALIZABLE
    temp_tables: frozenset[str] = frozenset()   # check_temp_table=trace: committed temp tables
    pending_temp: frozenset[str] = frozenset()  # created in the open transaction
    pending_drop: frozenset[str] = frozenset()  # dropped in the open transaction
    # The open transaction was begun by a multi-statement Query (or by one pgtwist did not
    # see coming): it runs on the primary alone, no standby is in it.
    txn_on_primary: bool = False

    @property
    def serializable(self) -> bool:
        """SessionView.serializable: only consulted inside a transaction."""
        return self.txn_serializable or self.session_serializable

    @property
    def visible_temp_tables(self) -> frozenset[str]:
        return (self.temp_tables | self.pending_temp) - self.pending_drop


INITIAL = StickyState()


def counts_as_write(query: QueryInfo, writing_functions: tuple[str, ...] = (), *,
                    sql: str = "", allow_sql_comments: bool = False,
                    ignore_leading_white_space: bool = True) -> bool:
    """Pgpool-II's "write" for §1.4: not is_select_query(), or a writing function called.

    BEGIN/COMMIT/ROLLBACK/ROLLBACK TO never count, nor SET TRANSACTION READ ONLY
    (pool_is_transaction_read_only), nor a SET making the transaction SERIALIZABLE
    (remembered separately), nor an empty query or an intercepted
    PGPOOL/PGTWIST command.  ``writing_functions`` is what
    ``rules.writing_functions(query, catalog, options)`` returned.
    """
    if query.command in _TXN_CONTROL or query.command in _NOT_STATEMENTS:
        return False
    if query.command == "PREPARE" and query.prepared is not None:
        query, sql = query.prepared, prepared_body_sql(sql)  # judged like its body (§1.3)
    if writing_functions:
        return True
    if query.command == "SET" and (query.serializable or (sql and sets_read_only(sql))):
        return False  # Pgpool-II remembers a SERIALIZABLE SET instead of flagging a write
    return not_select_reason(query, sql, allow_sql_comments, ignore_leading_white_space) is not None


def after_statement(state: StickyState, mode: str, query: QueryInfo, wrote: bool,
                    in_txn_before: bool, txn_status_after: str | None, *,
                    writing_functions: tuple[str, ...] = (), sql: str = "") -> StickyState:
    """The state after ``query`` ran.

    mode            disable_load_balance_on_write.
    wrote           counts_as_write(...) for this statement, and the statement did
                    not fail (pass False after an ErrorResponse).
    in_txn_before   an explicit transaction was open before it ('T' or 'E').
    txn_status_after  the ReadyForQuery status that followed ('I', 'T', 'E'), or
                    None if not known yet (then in_txn_before stands in).
    writing_functions  the writing functions it called (dml_adaptive records them
                    as 'name()' objects for dml_adaptive_object_relationship_list).
    sql             the statement text, used only to tell DISCARD ALL/TEMP apart.
    """
    command = query.command
    # Pgpool-II checks TSTATE == 'T' after the statement ("inside an explicit transaction").
    in_txn_after = txn_status_after in ("T", "E") if txn_status_after is not None else in_txn_before
    healthy_txn = txn_status_after == "T" if txn_status_after is not None else in_txn_before
    s = state

    if command == "BEGIN" and not in_txn_before:  # BEGIN inside a transaction changes nothing
        # §1.4 transaction (and dml_adaptive, off): the flag is cleared at BEGIN;
        # §1.4 trans_transaction / always: never cleared.
        flag = s.writing_transaction if mode in ("trans_transaction", "always") else False
        # §1.2: the isolation level is forgotten at BEGIN; BEGIN ... SERIALIZABLE sets it.
        # §1.4 dml_adaptive: tables are recorded per transaction, so a new one starts empty.
        return replace(s, writing_transaction=flag, txn_serializable=query.serializable,
                       written_objects=frozenset(), pending_temp=frozenset(),
                       pending_drop=frozenset(), txn_on_primary=query.multi_statement)

    ended = command in ("COMMIT", "ROLLBACK") or (in_txn_before and txn_status_after == "I")
    if ended:
        # §1.4 transaction: cleared at COMMIT/ROLLBACK; trans_transaction / always: never.
        flag = s.writing_transaction if mode in ("trans_transaction", "always") else False
        committed = command != "ROLLBACK"
        temps = ((s.temp_tables | s.pending_temp) - s.pending_drop) if committed else s.temp_tables
        # §1.4 dml_adaptive: written tables are forgotten at transaction end.
        s = replace(s, writing_transaction=flag, written_objects=frozenset(),
                    txn_serializable=False, temp_tables=temps,
                    pending_temp=frozenset(), pending_drop=frozenset(), txn_on_primary=False)
        if command in ("COMMIT", "ROLLBACK"):
            return s

    if wrote:
        if mode == "always":
            # §1.4 always: set by any write, in or out of a transaction.
            s = replace(s, writing_transaction=True)
        elif mode in ("transaction", "trans_transaction") and healthy_txn:
            # §1.4 transaction / trans_transaction: set only by a write inside an explicit
            # transaction (Pgpool-II: TSTATE 'T' after the statement).
            s = replace(s, writing_transaction=True)
        elif mode == "dml_adaptive" and in_txn_after:
            # §1.4 dml_adaptive: never sets the flag; records the written tables (and
            # writing functions) of an explicit transaction.
            objects = set(query.tables_written)
            objects.update(function_object(f) for f in writing_functions)
            if objects:
                s = replace(s, written_objects=s.written_objects | frozenset(objects))
        # §1.4 off: never set.

    if query.serializable and command != "BEGIN":
        # §1.3: SET ... SERIALIZABLE is remembered; in a transaction for that transaction,
        # outside one as the session default (SET SESSION CHARACTERISTICS / default_...).
        if in_txn_before or in_txn_after:
            s = replace(s, txn_serializable=True)
        else:
            s = replace(s, session_serializable=True)

    s = _track_temp_tables(s, query, in_txn_after, sql)
    if command == "DISCARD" and sql and discard_all(sql):
        s = replace(s, session_serializable=False)  # DISCARD ALL includes RESET ALL
    return s


def _track_temp_tables(s: StickyState, query: QueryInfo, in_txn: bool, sql: str) -> StickyState:
    """check_temp_table=trace (§1.1): CREATE/DROP TEMP seen by the proxy, pending until COMMIT."""
    if query.command == "DISCARD" and sql and discard_temp(sql):
        return replace(s, temp_tables=frozenset(), pending_temp=frozenset(),
                       pending_drop=frozenset())
    created = frozenset(bare(t) for t in query.temp_tables_created)
    dropped = frozenset(bare(t) for t in query.tables_dropped) & (s.visible_temp_tables | created)
    if not created and not dropped:
        return s
    if in_txn:
        return replace(s, pending_temp=(s.pending_temp | created) - dropped,
                       pending_drop=(s.pending_drop | dropped) - created)
    return replace(s, temp_tables=(s.temp_tables | created) - dropped)


def session_view(state: StickyState, *, user: str, database: str, application_name: str,
                 lb_node: int | None, txn_status: str) -> SessionView:
    """The SessionView for routing the next statement ('I'/'T'/'E' = last ReadyForQuery)."""
    in_txn = txn_status in ("T", "E")
    return SessionView(
        user=user, database=database, application_name=application_name, lb_node=lb_node,
        in_transaction=in_txn, txn_failed=txn_status == "E",
        serializable=in_txn and state.serializable,
        writing_transaction=state.writing_transaction,
        written_objects=state.written_objects if in_txn else frozenset(),
        temp_tables=state.visible_temp_tables,
        txn_on_primary=in_txn and state.txn_on_primary,
    )


@dataclass(frozen=True)
class WriteRules:
    """The options after_statement needs, so the relay can call one method per statement."""

    mode: str = "transaction"
    functions: FunctionOptions = FunctionOptions()
    allow_sql_comments: bool = False
    ignore_leading_white_space: bool = True

    @classmethod
    def from_params(cls, params: Mapping[str, object]) -> WriteRules:
        """From the flat Pgpool-II parameters (Config.params); raises ConfigError."""
        def pick(keys: tuple[str, ...]) -> dict:
            return {k: params[k] for k in keys if k in params}

        statement = parse_statement(pick(("allow_sql_comments", "ignore_leading_white_space")))
        return cls(parse_stickiness(pick(("disable_load_balance_on_write",))).mode,
                   parse_function_list(pick(FUNCTION_KEYS)),
                   statement.allow_sql_comments, statement.ignore_leading_white_space)

    def after(self, state: StickyState, request: RouteRequest, txn_status_after: str | None,
              *, failed: bool = False) -> StickyState:
        """after_statement for a routed request, once its ReadyForQuery status is known."""
        query = request.query
        body = query.prepared if query.command == "PREPARE" and query.prepared else query
        functions = writing_functions(body, request.catalog, self.functions)
        wrote = not failed and counts_as_write(
            query, functions, sql=request.sql, allow_sql_comments=self.allow_sql_comments,
            ignore_leading_white_space=self.ignore_leading_white_space)
        return after_statement(state, self.mode, query, wrote, request.session.in_transaction,
                               txn_status_after, writing_functions=functions, sql=request.sql)
