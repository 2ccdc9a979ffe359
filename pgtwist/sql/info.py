"""Plain result values of SQL classification (no sqlglot here).

A :class:`QueryInfo` says what one client statement (or multi-statement Query
string) does, in the terms Pgpool-II's routing rules need.  It is frozen and
cached by literal-normalised text, so it must not hold per-session facts.
"""

from __future__ import annotations

from dataclasses import dataclass

# Static destinations from the statement alone (Pgpool-II's send_to_where).
PRIMARY = "primary"   # only the primary
BOTH = "both"         # the primary and the session's load-balance node
EITHER = "either"     # a read: candidate for load balancing


@dataclass(frozen=True)
class QueryInfo:
    """What a statement does.

    command     upper-case command word(s): 'SELECT', 'INSERT', 'WITH' is reported as
                'SELECT' or the writing command, 'BEGIN', 'START TRANSACTION' -> 'BEGIN',
                'COMMIT' (also END), 'ROLLBACK' (also ABORT), 'SAVEPOINT', 'RELEASE',
                'ROLLBACK TO', 'SET', 'RESET', 'SHOW', 'DISCARD', 'DEALLOCATE', 'PREPARE',
                'EXECUTE', 'COPY', 'LOCK', 'DECLARE', 'FETCH', 'MOVE', 'CLOSE', 'LISTEN',
                'UNLISTEN', 'NOTIFY', 'EXPLAIN', 'VALUES', 'TABLE', 'CREATE', 'DROP', 'ALTER',
                'TRUNCATE', 'VACUUM', 'ANALYZE', 'GRANT', 'REVOKE', 'COMMENT', 'CALL', 'DO',
                'PREPARE TRANSACTION', 'COMMIT PREPARED', 'ROLLBACK PREPARED', 'CHECKPOINT',
                'PGPOOL', 'PGTWIST', 'EMPTY' (no statement), 'UNKNOWN' (could not parse).
    route       PRIMARY, BOTH or EITHER, from the statement alone (catalog facts,
                session state and config lists are applied later by the routing chain).
    is_read     Pgpool-II's is_select_query(): True for SELECT/WITH-of-SELECTs/TABLE/
                VALUES/SHOW/COPY TO STDOUT/EXPLAIN without ANALYZE of a write.
    is_write    counts as a write for disable_load_balance_on_write (DML, DDL,
                SELECT INTO, FOR UPDATE..., writing CTEs, COPY FROM, LOCK >= ROW EXCLUSIVE...).
                Transaction control, SET/RESET/SHOW/DISCARD and DEALLOCATE are neither.
                A SELECT calling a writing function becomes a write later, in routing.
    tables_read / tables_written
                relation names as referenced, lower-cased unless quoted, schema-qualified
                when the SQL qualifies them ('public.t', 't'); CTE names excluded.
    functions   function names called anywhere (lower-cased, schema-qualified when
                written so), excluding aggregates/builtins known to be immutable is NOT
                done here: every called function is listed; routing decides.
    touches_catalog   references a pg_catalog / information_schema relation, or a
                relation named pg_* (Pgpool-II: system catalogs go to the primary).
    multi_statement   more than one statement in a Query string.
    has_leading_comment  the text starts (after whitespace) with a comment.
    hints       upper-cased contents of /* ... */ comments, e.g. 'NO LOAD BALANCE'.
    parse_error sqlglot could not parse it (route is PRIMARY).
    serializable    BEGIN/START TRANSACTION ... ISOLATION LEVEL SERIALIZABLE, or a SET that
                makes the transaction/session SERIALIZABLE.
    read_write      BEGIN READ WRITE / SET TRANSACTION READ WRITE / transaction_read_only=off.
    standby_text    for BEGIN variants that must reach a standby as plain 'BEGIN': that text;
                else None (send the original).
    temp_tables_created  names created by CREATE TEMP[ORARY] TABLE / SELECT INTO TEMP.
    tables_dropped  names dropped by DROP TABLE.
    prepare_name    SQL PREPARE name (lower-cased unless quoted); prepared = info of its body.
    execute_name    SQL EXECUTE name; deallocate_name: SQL DEALLOCATE name ('*' for ALL).
    lock_strong     LOCK in ROW EXCLUSIVE mode or stronger (the default ACCESS EXCLUSIVE too).
    copy_to_stdout / copy_from_stdin
    bounded         too long or too many statements to parse on the event loop: routed
                    like a parse error; only the first statement's command, tables and
                    transaction modes are known (when it is short; else its DML target).
    set_local       SET LOCAL or SET TRANSACTION: the setting ends with the transaction.
    reset_all       RESET ALL or DISCARD ALL: every setting back to its default.
    discard_all     DISCARD ALL (also drops prepared statements, temp tables, cursors).
    savepoint_name  the savepoint SAVEPOINT / RELEASE / ROLLBACK TO names (folded).
    cursor_name     the cursor DECLARE / FETCH / MOVE / CLOSE names (folded; None for
                    CLOSE ALL).
    reads_txn_setting  reads a transaction-scoped setting (transaction_isolation,
                    transaction_read_only, transaction_deferrable): SHOW of one of them,
                    SHOW ALL / SHOW TRANSACTION ISOLATION LEVEL, current_setting() of one
                    (or of a name not written as a literal).  Only the node the transaction
                    runs on knows them (a standby always says read only).
    exclusive_database  the database (folded) that DROP DATABASE, ALTER DATABASE ...
                    RENAME / SET TABLESPACE, or CREATE DATABASE ... TEMPLATE needs no other
                    session connected to; else None.
    For a multi-statement text the last five describe its first statement, as command does;
    pgtwist.sql.state gives them for any one statement's text.
    """

    command: str
    route: str
    is_read: bool = False
    is_write: bool = False
    tables_read: tuple[str, ...] = ()
    tables_written: tuple[str, ...] = ()
    functions: tuple[str, ...] = ()
    touches_catalog: bool = False
    multi_statement: bool = False
    has_leading_comment: bool = False
    hints: frozenset[str] = frozenset()
    parse_error: bool = False
    serializable: bool = False
    read_write: bool = False
    standby_text: str | None = None
    temp_tables_created: tuple[str, ...] = ()
    tables_dropped: tuple[str, ...] = ()
    prepare_name: str | None = None
    prepared: QueryInfo | None = None
    execute_name: str | None = None
    deallocate_name: str | None = None
    lock_strong: bool = False
    copy_to_stdout: bool = False
    copy_from_stdin: bool = False
    bounded: bool = False
    set_local: bool = False
    reset_all: bool = False
    discard_all: bool = False
    savepoint_name: str | None = None
    cursor_name: str | None = None
    reads_txn_setting: bool = False
    exclusive_database: str | None = None

    @property
    def tables(self) -> tuple[str, ...]:
        return self.tables_read + tuple(t for t in self.tables_written if t not in self.tables_read)

    @property
    def is_transaction_start(self) -> bool:
        return self.command == "BEGIN"

    @property
    def is_transaction_end(self) -> bool:
        return self.command in ("COMMIT", "ROLLBACK", "PREPARE TRANSACTION")
