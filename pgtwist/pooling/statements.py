"""Transaction pooling, the sans-IO part: server-side statement names, per-link caches, pins.

In ``pool_mode: transaction`` a client's statements may run on a different backend
link in every transaction, so the names a client gives its prepared statements cannot
be used on the servers: two clients may both call theirs ``s1``.  Every statement is
instead prepared under a pgtwist-owned name that stands for its full text plus its
parameter type OIDs (never a hash of them: a collision would make two statements share
one name).  Each link remembers which of those names it holds, in LRU order, and the
relay prepares a statement on a link the first time that link needs it.

Nothing here does I/O; the session layer (pgtwist.session.txmode) uses these pieces.
"""

from __future__ import annotations

import itertools
import struct
from collections import OrderedDict
from collections.abc import Iterable

from ..sql import state as sql_state
from ..sql.normalize import scan, tokens
from ..wire import codes
from ..wire import messages as m

# A statement name no server ever holds: a Close of it is answered CloseComplete
# ("it is not an error to issue Close against a nonexistent statement").
NO_STATEMENT = b"pgtwist_closed"


class StatementRegistry:
    """Server names by (query text, parameter OIDs): the same statement, the same name.

    Bounded: the least recently named entries are forgotten beyond ``limit``.  That is
    harmless: links keep the old name until their own LRU evicts it, sessions keep the
    name they were given, and a statement seen again simply gets a fresh name.
    """

    def __init__(self, limit: int = 10000) -> None:
        self.limit = limit
        self._names: OrderedDict[bytes, bytes] = OrderedDict()
        self._seq = itertools.count(1)

    def name_for(self, parse_rest: bytes) -> bytes:
        """The server name for a Parse body minus its name (query, NUL, OID count, OIDs)."""
        names = self._names
        name = names.get(parse_rest)
        if name is None:
            name = self.fresh()
            names[parse_rest] = name
            if len(names) > self.limit:
                names.popitem(last=False)
        else:
            names.move_to_end(parse_rest)
        return name

    def retire(self, parse_rest: bytes, name: bytes) -> bool:
        """The server copies named ``name`` are stale (a schema change altered what the
        text returns): the next Parse of the text gets a fresh name, so it is parsed
        anew instead of reusing them.  Statements already given ``name`` keep it and
        fail as a PostgreSQL prepared statement does."""
        if self._names.get(parse_rest) == name:
            del self._names[parse_rest]
            return True
        return False

    def fresh(self) -> bytes:
        """A name used by no other statement (for a second client name of one text)."""
        return b"pgtwist_%d" % next(self._seq)

    def __len__(self) -> int:
        return len(self._names)


# -- frames ---------------------------------------------------------------------------------
def split_parse(body: bytes) -> tuple[bytes, bytes]:
    """(client statement name, the rest: query text NUL, OID count, OIDs) of a Parse body."""
    end = body.index(b"\0")
    return body[:end], body[end + 1:]


def parse_rest(parse_frame: bytes) -> bytes:
    """The body of a Parse frame after its statement name (see split_parse)."""
    return parse_frame[parse_frame.index(b"\0", 5) + 1:]


def parse_frame(server_name: bytes, rest: bytes) -> bytes:
    return m.frame(codes.PARSE, server_name + b"\0" + rest)


def rename_bind(buf: bytes, start: int, end: int, server_name: bytes) -> bytes:
    """The Bind frame whose body is ``buf[start:end]``, naming ``server_name`` instead."""
    portal_end = buf.index(b"\0", start)
    stmt_end = buf.index(b"\0", portal_end + 1)
    size = 4 + (portal_end + 1 - start) + len(server_name) + (end - stmt_end)
    return b"".join((_BIND_HEADER.pack(codes.BIND, size), buf[start:portal_end + 1],
                     server_name, buf[stmt_end:end]))


def describe_statement(server_name: bytes) -> bytes:
    return m.frame(codes.DESCRIBE, b"S" + server_name + b"\0")


def close_statement(server_name: bytes) -> bytes:
    return m.frame(codes.CLOSE, b"S" + server_name + b"\0")


def statement_used(code: int, buf: bytes, start: int, end: int) -> bytes | None:
    """The statement name a Bind or Describe 'S' frame names; None for other frames."""
    if code == codes.BIND:
        portal_end = buf.index(b"\0", start)
        return buf[portal_end + 1:buf.index(b"\0", portal_end + 1)]
    if code == codes.DESCRIBE and buf[start] == 0x53:  # 'S'
        return buf[start + 1:end - 1]
    return None


def batch_needs(frames: Iterable[tuple[int, bytes, int, int]]) -> list[bytes]:
    """Client statement names one batch uses before defining them, in first-use order.

    ``frames`` run from the frame about to be sent to the end of what the client has
    sent; the batch ends at its Sync (or a simple Query, which syncs too).  A statement
    the batch Parses itself is not needed from the link, even if used again later.
    """
    defined: set[bytes] = set()
    needs: list[bytes] = []
    for code, buf, start, end in frames:
        if code == codes.SYNC or code == codes.QUERY:
            break
        if code == codes.PARSE:
            defined.add(buf[start:buf.index(b"\0", start)])
            continue
        name = statement_used(code, buf, start, end)
        if name is not None and name not in defined:
            defined.add(name)
            needs.append(name)
    return needs


# A server's answer when a prepared statement's result columns changed under it (ALTER
# TABLE ...): the statement is unusable from then on, on that server.
_BIND_HEADER = struct.Struct("!BI")
_STALE_PLAN = b"cached plan must not change result type"


def stale_plan(error_body: bytes) -> bool:
    """Whether an ErrorResponse body says a prepared statement's plan went stale."""
    return b"\0C0A000\0" in b"\0" + error_body and _STALE_PLAN in error_body


def execute_sql(sql: str, name: str, server_name: str) -> str | None:
    """The SQL ``EXECUTE name ...`` of a protocol-level statement, naming it as the servers
    know it (``server_name``); None when ``sql`` is not that.

    PostgreSQL lets SQL EXECUTE run a statement prepared with a Parse message.  The name
    token is replaced in the text as sent; text with comments in front of it is first
    reduced to its comment-free statement."""
    toks = tokens(sql)
    if len(toks) < 2 or toks[0].kind != "word" or toks[0].value != "execute":
        statements = scan(sql).statements
        if len(statements) != 1:
            return None
        sql = statements[0].text
        toks = tokens(sql)
        if len(toks) < 2 or toks[0].kind != "word" or toks[0].value != "execute":
            return None
    tok = toks[1]
    if tok.kind not in ("word", "name") or tok.value != name:
        return None
    return sql[:tok.start] + server_name + sql[tok.end:]


# -- pins -------------------------------------------------------------------------------------
PIN_REASONS = ("listen", "advisory_lock", "temp_table", "with_hold_cursor",
               "session_authorization", "set_config", "unparsed_text")
_ADVISORY_SESSION_LOCKS = frozenset({
    "pg_advisory_lock", "pg_advisory_lock_shared",
    "pg_try_advisory_lock", "pg_try_advisory_lock_shared",
})
# Settings the server reports (ParameterStatus): the relay tracks them without a SET.
_REPORTED = frozenset({"application_name", "client_encoding", "datestyle", "intervalstyle",
                       "timezone", "standard_conforming_strings", "search_path"})


def pin_reason(info, sql: str) -> str | None:
    """Why a statement ties its session to the link it runs on, or None.

    These are session features a server keeps and a different link would not have:
    LISTEN registrations, session-level advisory locks, temporary tables, cursors WITH
    HOLD (they outlive the transaction), SET SESSION AUTHORIZATION (RESET ALL keeps it)
    and session-level set_config() calls (not SET statements, so not tracked).
    """
    command = info.command
    if command == "LISTEN":
        return "listen"
    if info.temp_tables_created:
        return "temp_table"
    if command == "DECLARE" and sql_state.with_hold(sql):
        return "with_hold_cursor"
    if command == "SET" and sql_state.sets_session_authorization(sql):
        return "session_authorization"
    for fn in info.functions:
        base = fn.rpartition(".")[2]
        if base in _ADVISORY_SESSION_LOCKS:
            return "advisory_lock"
        if base == "set_config":
            # A session-level set_config() is invisible to SET tracking: keep the link,
            # unless it names a reported setting (tracked through ParameterStatus).
            names = sql_state.session_set_config_names(sql)
            if names is not None and (not names or not names <= _REPORTED):
                return "set_config"
    return None


# -- SQL pgtwist writes for transaction pooling ---------------------------------------------


def _dollar_quoted(text: str, tag: str) -> str:
    """``text`` as a dollar-quoted literal whose tag it cannot close (nor end into), and
    which no session setting (standard_conforming_strings) reinterprets."""
    base, n = tag, 0
    while f"${tag}" in text:
        n += 1
        tag = f"{base}{n}"
    return f"${tag}${text}${tag}$"


def raise_sql(sqlstate: str, message: str) -> str:
    """A statement the server fails with ``sqlstate`` and ``message`` (aborting the
    transaction it runs in, as the error pgtwist stands in for would).  The message
    holds client-chosen names, so it is dollar-quoted, inside a DO body quoted likewise."""
    if len(sqlstate) != 5 or not sqlstate.isalnum():
        raise ValueError(f"not a SQLSTATE: {sqlstate!r}")
    body = (f"BEGIN RAISE EXCEPTION '%', {_dollar_quoted(message, 'm')} "
            f"USING ERRCODE = '{sqlstate}'; END")
    return f"DO {_dollar_quoted(body, 'pgtwist')}"
