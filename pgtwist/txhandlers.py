"""Transaction pooling: the relay's message handling when links change between transactions.

With ``pool_mode: transaction`` a session holds a backend link only while a transaction
(or an autocommit statement) runs on it; at an idle ReadyForQuery the link goes back to
the shared pool (see Relay._events).  What a client expects to survive between its
transactions is carried by the session and put back on whatever link serves it next:

- SET/RESET state: re-applied at checkout when the link's applied state differs
  (Relay._link_opened);
- named prepared statements: prepared under pgtwist-owned names (pgtwist.txpool), on
  each link the first time that link needs them.  Before the first message of a batch
  goes to a link, the rest of the batch is read ahead and the Parses of every statement
  it uses that the link lacks go first; one needed later (not yet received, or parsed
  on another link) is parsed right before its use.  Either way the Parses are part of
  the client's batch (one implicit transaction), their ParseCompletes hidden and an
  error from one shown in place of the message it would break;
- Close of a statement and SQL DEALLOCATE only forget the session's name: the server
  copy stays for other sessions and leaves by the per-link LRU;
- SQL PREPAREd statements: re-PREPAREd on a link that lacks them before EXECUTE.

Features a server keeps per connection and pgtwist cannot move (LISTEN, session
advisory locks, temporary tables, WITH HOLD cursors, SET SESSION AUTHORIZATION) pin
the session to its links until it ends.
"""

from __future__ import annotations

import re
from bisect import bisect_left
from operator import itemgetter

from .handlers import _GO, _SKIP, _WAIT, ClientMessages, _cstr_pair
from .logs import logger
from .routing.values import Target
from .session import Statement
from .txpool import (
    NO_STATEMENT,
    LinkStatements,
    batch_needs,
    close_statement,
    describe_statement,
    parse_frame,
    pin_reason,
    rename_bind,
    split_parse,
)
from .wire import codes
from .wire import messages as m

log = logger(__name__)

_DISCARD_ALL = re.compile(r"\s*DISCARD\s+ALL\s*;?\s*$", re.IGNORECASE)
_START = itemgetter(1)
PARSE_COMPLETE = m.frame(codes.PARSE_COMPLETE)
CLOSE_COMPLETE = m.frame(codes.CLOSE_COMPLETE)
_NOT_ENDED = ("ROLLBACK", "COMMIT", "PREPARE TRANSACTION")
# A text too big to classify (QueryInfo.bounded) that may leave state on its server which
# pin_reason would have seen: the session keeps its links (one C-level search).
_MAY_KEEP_STATE = re.compile(
    r"\b(?:set|reset|discard|listen|temp|temporary|hold|prepare|declare|load|set_config"
    r"|pg_(?:try_)?advisory_lock(?:_shared)?)\b", re.IGNORECASE)


def _dollar_quoted(text: str, tag: str) -> str:
    """``text`` as a dollar-quoted literal whose tag it cannot close (nor end into), and
    which no session setting (standard_conforming_strings) reinterprets."""
    base, n = tag, 0
    while f"${tag}" in text:
        n += 1
        tag = f"{base}{n}"
    return f"${tag}${text}${tag}$"


def _raise_sql(sqlstate: str, message: str) -> str:
    """A statement the server fails with ``sqlstate`` and ``message`` (aborting the
    transaction it runs in, as the error pgtwist stands in for would).  The message
    holds client-chosen names, so it is dollar-quoted, inside a DO body quoted likewise."""
    if len(sqlstate) != 5 or not sqlstate.isalnum():
        raise ValueError(f"not a SQLSTATE: {sqlstate!r}")
    body = (f"BEGIN RAISE EXCEPTION '%', {_dollar_quoted(message, 'm')} "
            f"USING ERRCODE = '{sqlstate}'; END")
    return f"DO {_dollar_quoted(body, 'pgtwist')}"


def _quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


class TxnMessages:
    """Mixin for Relay: the handlers and helpers used in transaction pooling mode."""

    # -- statements on links ------------------------------------------------------------------
    def _tx_cache(self, link) -> LinkStatements:
        stmts = link.statements
        if stmts is None:
            stmts = link.statements = LinkStatements(self.proxy.pooling.max_prepared_statements)
        return stmts

    @staticmethod
    def _tx_holds(link, stmt: Statement) -> bool:
        if stmt.server_name is None:
            return link.unnamed is stmt
        return link.statements is not None and stmt.server_name in link.statements

    def _tx_batch_frames(self, buf: bytes, start: int):
        """The client's frames from the one at ``buf[start]`` on, as far as received."""
        first = True
        for ebuf, frames, _i in self.backlog:
            if first:
                first = False
                if ebuf is not buf:
                    return  # a frame pgtwist rewrote: no look-ahead
                i = bisect_left(frames, start, key=_START)
                for code, s0, e0 in frames[i:]:
                    yield code, ebuf, s0, e0
            else:
                for code, s0, e0 in frames:
                    yield code, ebuf, s0, e0

    def _tx_prepare_batch(self, link, buf: bytes, start: int) -> None:
        """A batch is about to start on ``link``: prepare what it uses that ``link`` lacks,
        at the head of the batch's segment, after closing what the link's LRU bound evicts.
        """
        s = self.session
        if s.route_status == "E":
            return  # an aborted transaction refuses Parse; the client gets 25P02 instead
        stmts = self._tx_cache(link)
        used = [s.statements.get(name) for name in batch_needs(self._tx_batch_frames(buf, start))]
        used = [stmt for stmt in used if stmt is not None]
        counters = self.proxy.pooling.counters
        evicted = stmts.evictions({stmt.server_name for stmt in used if stmt.server_name})
        if evicted:
            # A round of its own: a Close never fails, so the cache stays exact even if a
            # Parse below does.
            counters["statements_evicted"] += len(evicted)
            self._shadow(link, b"".join(map(close_statement, evicted)) + m.SYNC)
        missing = [stmt for stmt in used if not self._tx_holds(link, stmt)]
        if missing:
            self._tx_insert_parses(link, missing)

    def _tx_insert_parses(self, link, stmts: list[Statement]) -> None:
        """Parse ``stmts`` on ``link`` as part of the client's batch, right where they are
        needed: their ParseCompletes are hidden, an error from one is the client's."""
        cache = self._tx_cache(link)
        for stmt in stmts:
            if stmt.server_name is None:
                link.unnamed = stmt
            else:
                cache.use(stmt.server_name)
        self.proxy.pooling.counters["statements_parsed"] += len(stmts)
        self._insert_parses(link, stmts)

    def _tx_sql_prepared_on(self, link, prepared) -> None:
        """SQL EXECUTE on ``link``: PREPARE the session's statement there unless it has it."""
        if prepared is None:
            return
        name = prepared.name
        if not name or link.sql_prepared.get(name) == prepared.sql:
            return
        frames = []
        if name in link.sql_prepared:  # another session's statement of that name
            frames.append(m.query(f"DEALLOCATE {_quote_ident(name)}"))
        frames.append(m.query(prepared.sql))
        link.sql_prepared[name] = prepared.sql
        self._shadow(link, b"".join(frames), syncs=len(frames))

    def _tx_statement_link(self, stmt: Statement | None, buf: bytes, start: int):
        """The link for a Bind / Describe 'S' of ``stmt``, holding it by the time it arrives."""
        s = self.session
        if stmt is None:
            return self._current_or_primary()
        decision, prepared = self._follow(stmt.info, stmt.sql)
        if decision is _WAIT:
            return _WAIT
        if decision.target is Target.BOTH or decision.target is Target.REJECT:
            decision = self.router.PRIMARY
        if stmt.server_name is None and stmt.info.deallocate_name is not None:
            # DEALLOCATE via the extended protocol runs where its unnamed statement is.
            for link in self.links.values():
                if link.unnamed is stmt and not link.closed:
                    return link
        link = self._target_link(decision)
        if link is _WAIT:
            return _WAIT
        if self.ordering.open_segment(link) is None:
            self._tx_prepare_batch(link, buf, start)
        if not self._tx_holds(link, stmt):
            if s.route_status == "E" and not stmt.info.is_transaction_end:
                return _SKIP
            # Not foreseen when the batch began (it arrived later, or was parsed on
            # another link): parsed now, just before its use.
            self._tx_insert_parses(link, [stmt])
        self._tx_sql_prepared_on(link, prepared)
        s.last_statement = stmt
        return link

    def _tx_release_idle(self, link) -> None:
        """Transaction pooling: a link idle with nothing more to do goes back to the pool."""
        if (self.pinned is not None or link.closed or link.inflight or link is self.copy_link
                or link.txn_status != codes.TXN_IDLE or self.ordering.busy(link)
                or self.links.get(link.node_id) is not link or link.pending_parses):
            return
        del self.links[link.node_id]
        if link is self.primary_link:
            self.primary_link = None
            self.ordering.primary = None
        self.ordering.drop_link(link)
        if link.state_owner is self.session:
            link.state = tuple(self.session.replay)
        self.proxy.pooling.release(link, clean=True, reset=False)

    # -- handlers ----------------------------------------------------------------------------
    def _tx_on_parse(self, code, buf, start, end):
        if self.skip_until_sync:
            return self._skip(code)
        s = self.session
        name, rest = split_parse(buf[start:end])
        sql = rest[:rest.index(b"\0")].decode("utf-8", "replace")
        info = self.router.classify_parse(sql)
        if s.failed_elsewhere:
            if info.command not in _NOT_ENDED:
                return self._skip(code)
            # Ending the aborted transaction: COMMIT becomes ROLLBACK, as PostgreSQL does.
            s.failed_elsewhere = False
            if info.command != "ROLLBACK":
                sql, rest = "ROLLBACK", b"ROLLBACK\0\0\0"
                info = self.router.classify_parse(sql)
        if name and name in s.statements:
            return self._tx_fail_extended(
                "42P05", f'prepared statement "{name.decode("utf-8", "replace")}" already exists')
        if name and not self.links and self._tx_lone_parses(buf, start) \
                and self.proxy.pooling.would_wait(s, s.primary_id, self.poolable):
            return self._tx_defer_parse(name, sql, rest, info)
        deallocating = None
        if info.deallocate_name not in (None, "*"):
            # DEALLOCATE of a protocol-level name: the server only knows pgtwist's name.
            target = s.statements.get(info.deallocate_name.encode())
            if target is not None and target.server_name is not None:
                deallocating = target
        decision, prepared = self._follow(info, sql)
        if decision is _WAIT:
            return _WAIT
        if decision.target is Target.BOTH or decision.target is Target.REJECT:
            decision = self.router.PRIMARY
        link = self._target_link(decision)
        if link is _WAIT:
            return _WAIT
        cache = self._tx_cache(link)
        fresh = self.ordering.open_segment(link) is None
        if fresh:
            self._tx_prepare_batch(link, buf, start)
        if deallocating is not None:
            if not self._tx_holds(link, deallocating):
                self._tx_insert_parses(link, [deallocating])
            sql = f"DEALLOCATE {deallocating.server_name.decode()}"
            rest = sql.encode() + b"\0\0\0"
            cache.discard(deallocating.server_name)
            s.statements.pop(info.deallocate_name.encode(), None)
        self._tx_sql_prepared_on(link, prepared)
        stmt = Statement(name, sql, b"", info, set())
        if not name:
            stmt.parse_frame = parse_frame(b"", rest)
            s.statements[name] = stmt
            link.unnamed = stmt
            link.pending_parses.append(stmt)
            self._forward(link, stmt.parse_frame, 0, len(stmt.parse_frame))
            self.ordering.parse_sent(self.ordering.open_segment(link))
            return None
        pooling = self.proxy.pooling
        server = pooling.registry.name_for(rest)
        if server in cache:
            if fresh and self.ordering.tail_open() is None and s.route_status != "E":
                # The link has it already: ParseComplete from pgtwist, nothing to send.
                cache.touch(server)
                stmt.server_name = server
                stmt.parse_frame = parse_frame(server, rest)
                stmt.confirmed = True
                s.statements[name] = stmt
                self._local(PARSE_COMPLETE, ready=False)
                return None
            server = pooling.registry.fresh()  # mid-batch: a second name for the same text
        stmt.server_name = server
        stmt.parse_frame = parse_frame(server, rest)
        s.statements[name] = stmt
        cache.use(server)
        link.pending_parses.append(stmt)
        pooling.counters["statements_parsed"] += 1
        self._forward(link, stmt.parse_frame, 0, len(stmt.parse_frame))
        self.ordering.parse_sent(self.ordering.open_segment(link))
        return None

    def _tx_lone_parses(self, buf: bytes, start: int) -> bool:
        """The batch from this frame on is Parses then a Sync (a driver's "prepare")."""
        for code, _b, _s, _e in self._tx_batch_frames(buf, start):
            if code == codes.SYNC:
                return True
            if code != codes.PARSE and code != codes.FLUSH:
                return False
        return False

    def _tx_defer_parse(self, name: bytes, sql: str, rest: bytes, info):
        """A "prepare" while every link is busy: answered now, parsed on first use.

        A driver that waits for each prepare in turn (pgbench -M prepared, one thread
        for many connections) would otherwise wait for a link its own other connections
        hold, and they for it.  The statement is parsed at the head of the first batch
        that uses it, where an error in it reaches the client instead.
        """
        s = self.session
        server = self.proxy.pooling.registry.name_for(rest)
        stmt = Statement(name, sql, parse_frame(server, rest), info, set())
        stmt.server_name = server
        s.statements[name] = stmt
        log.debug("session {pid}: Parse answered ahead (no free link)", pid=s.pid)
        self._local(PARSE_COMPLETE, ready=False)
        return None

    def _tx_named_link(self, code: int, name: bytes, buf: bytes, start: int):
        """(statement, link) for a Bind / Describe 'S' naming ``name``; or (None, answer)
        when the frame is answered already (_WAIT, an error, a skip)."""
        stmt = self.session.statements.get(name)
        if stmt is None:
            answer = self._tx_unknown_statement(name)
            if answer is not _GO:
                return None, answer
        link = self._tx_statement_link(stmt, buf, start)
        if link is _WAIT:
            return None, _WAIT
        if link is _SKIP:
            return None, self._skip(code)
        return stmt, link

    def _tx_on_bind(self, code, buf, start, end):
        s = self.session
        if s.failed_elsewhere or self.skip_until_sync:
            return self._skip(code)
        portal, name = _cstr_pair(buf, start)
        stmt, link = self._tx_named_link(code, name, buf, start)
        if link is None or link is _WAIT:
            return link
        if stmt is not None and stmt.info.route == "both" and self._both_extended(stmt, buf, start):
            return _WAIT
        if stmt is None:  # a name the session PREPAREd in SQL
            self._tx_sql_prepared_on(link, s.sql_prepared.get(name.decode("utf-8", "replace")))
        s.portals[portal] = link.node_id
        server = stmt.server_name if stmt is not None else None
        if server is not None:
            link.statements.touch(server)
            frame = rename_bind(buf, start, end, server)
            self._forward(link, frame, 0, len(frame))
        else:
            self._forward(link, buf, start - 5, end)
        if stmt is not None:
            self._after_bind(stmt, link, portal)
            self._tx_after(stmt.info, stmt.sql, link)
        return None

    def _tx_on_describe(self, code, buf, start, end):
        s = self.session
        if s.failed_elsewhere or self.skip_until_sync:
            return self._skip(code)
        if buf[start] != 0x53:  # a portal: where it was bound
            return ClientMessages._on_describe(self, code, buf, start, end)
        stmt, link = self._tx_named_link(code, buf[start + 1:end - 1], buf, start)
        if link is None or link is _WAIT:
            return link
        if stmt is not None and stmt.server_name is not None:
            frame = describe_statement(stmt.server_name)
            self._forward(link, frame, 0, len(frame))
        else:
            self._forward(link, buf, start - 5, end)
        return None

    def _tx_on_close(self, code, buf, start, end):
        if self.session.failed_elsewhere or self.skip_until_sync:
            return self._skip(code)
        if buf[start] != 0x53:  # a portal
            return ClientMessages._on_close(self, code, buf, start, end)
        # The session forgets the name; the server copy may serve others and leaves by
        # LRU.  The CloseComplete comes from pgtwist, or, inside a batch already sent to
        # a server, from a Close of a name no server holds, so it arrives in order.
        self.session.statements.pop(buf[start + 1:end - 1], None)
        tail = self.ordering.tail_open()
        if tail is None:
            self._local(CLOSE_COMPLETE, ready=False)
        else:
            frame = close_statement(NO_STATEMENT)
            self._forward(tail.link, frame, 0, len(frame))
        return None

    def _tx_unknown_statement(self, name: bytes):
        """A Bind/Describe of a statement this session has not prepared: the server may
        hold that name for someone else (a previous session's unnamed statement, another
        session's SQL PREPARE), so PostgreSQL's error is answered here (the handler's
        answer is returned).  _GO for a name the session PREPAREd in SQL, which the
        protocol may use too."""
        if name and name.decode("utf-8", "replace") in self.session.sql_prepared:
            return _GO
        what = f'prepared statement "{name.decode("utf-8", "replace")}"' if name \
            else "unnamed prepared statement"
        return self._tx_fail_extended("26000", f"{what} does not exist")

    def _tx_fail_extended(self, sqlstate: str, message: str):
        """An error PostgreSQL would raise for this message; the batch is skipped to Sync.

        Inside an explicit transaction the error must abort it on the server too (or a
        later COMMIT would commit what PostgreSQL rolls back): the server raises it,
        from a Query that ends this part of the batch (its ReadyForQuery is pgtwist's).
        """
        s = self.session
        tail = self.ordering.tail_open()
        if s.route_status == "T":
            link = self.links.get(s.primary_id)
        else:
            # Outside a transaction too: the error must abort the implicit transaction of
            # the batch's messages already sent (PostgreSQL rolls them back), and none is
            # due if the server failed that part of the batch first.
            link = tail.link if tail is not None else None
        if link is not None and tail is not None and tail.link is link:
            # The raising Query would join the client's unsynced batch: first make sure
            # the server is not skipping it already (then this message is skipped too).
            inside = self._inside_batch()
            if inside is not _GO:
                return inside
        self.skip_until_sync = True
        self.skip_status = codes.TXN_IDLE if s.route_status == "I" else codes.TXN_FAILED
        if link is None or link.closed:
            self._local(m.error_response(sqlstate, message), ready=False)
            return None
        tail = self.ordering.tail_open()
        if tail is not None and tail.link is not link:
            self._close_segment(tail)
        seg = self.ordering.segment(link)
        self._send(link, m.query(_raise_sql(sqlstate, message)))
        self.ordering.synced(seg, own=True)
        link.inflight += 1
        return None

    # -- simple Query hooks (called by ClientMessages._on_query) -------------------------------
    def _tx_query_special(self, info, sql: str):
        """DEALLOCATE / DISCARD ALL / duplicate PREPARE, answered from the session's names."""
        s = self.session
        if info.multi_statement or s.route_status == "E":
            return _GO
        name = info.deallocate_name
        if name is not None:
            if name == "*":
                for key in [k for k in s.statements if k]:
                    del s.statements[key]
                s.sql_prepared.clear()
                self._local(m.command_complete("DEALLOCATE ALL"))
                return None
            if s.sql_prepared.pop(name, None) is None \
                    and s.statements.pop(name.encode(), None) is None:
                return self._tx_fail(info, "26000", f'prepared statement "{name}" does not exist')
            self._local(m.command_complete("DEALLOCATE"))
            return None
        if info.execute_name is not None and info.execute_name not in s.sql_prepared:
            # The server may hold that name for another session (or from before this
            # session's DEALLOCATE): only the session's own statements exist for it.
            return self._tx_fail(info, "26000",
                                 f'prepared statement "{info.execute_name}" does not exist')
        if info.prepare_name is not None and info.prepare_name in s.sql_prepared:
            return self._tx_fail(info, "42P05",
                                 f'prepared statement "{info.prepare_name}" already exists')
        if (info.command == "DISCARD" and _DISCARD_ALL.match(sql) and self.pinned is None
                and s.route_status == "I" and not self.links):
            # Nothing of this session is on any server: forgetting is the whole job.
            s.statements.clear()
            s.portals.clear()
            self.router.after_statement(s, info, None, s.primary_id, sql)
            s.implicit_undo = None  # answered here: it cannot fail
            self._local(m.command_complete("DISCARD ALL"))
            return None
        return _GO

    def _tx_fail(self, info, sqlstate: str, message: str):
        """Answer an error; inside a transaction the server must see it too (it aborts)."""
        if self.session.route_status == "I":
            self._local(m.error_response(sqlstate, message))
            return None
        link = self._target_link(self.router.PRIMARY)
        if link is _WAIT:
            return _WAIT
        frame = m.query(_raise_sql(sqlstate, message))
        self._forward(link, frame, 0, len(frame), sync=True)
        return None

    def _tx_before_query(self, link, info) -> None:
        link.unnamed = None  # a simple Query destroys the unnamed statement
        name = info.prepare_name
        if name is not None and name in link.sql_prepared:
            # Another session's PREPARE of that name is still on this server.
            self._shadow(link, m.query(f"DEALLOCATE {_quote_ident(name)}"))
            del link.sql_prepared[name]

    def _tx_after(self, info, sql: str, link) -> None:
        """Bookkeeping once a statement was sent to ``link``: pins, dropped statements."""
        s = self.session
        if info.prepare_name is not None and info.prepared is not None:
            link.sql_prepared[info.prepare_name] = sql
            # If it fails, the name stays free.
            name, prepared = info.prepare_name, s.sql_prepared.get(info.prepare_name)

            def unprepare():
                if s.sql_prepared.get(name) is prepared:
                    del s.sql_prepared[name]
                link.sql_prepared.pop(name, None)

            link.undo.append((link.ready_seen + link.inflight, unprepare))
        command = info.command
        if command == "DISCARD" and _DISCARD_ALL.match(sql) and s.route_status == "I":
            link.forget_statements()
            link.unnamed = None
            s.statements.clear()
            self.pinned = None  # DISCARD ALL ends everything a pin stood for
        elif info.deallocate_name == "*":
            link.forget_statements()
            for key in [k for k in s.statements if k]:
                del s.statements[key]
        if self.pinned is None:
            reason = pin_reason(info, sql)
            if reason is None and info.bounded and _MAY_KEEP_STATE.search(sql):
                reason = "unparsed_text"
            if reason is not None:
                self.pinned = reason
                self.proxy.pooling.pin(reason)
                log.debug("session {pid}: pinned to its links ({why})", pid=s.pid, why=reason)

    _tx_handlers = {
        **ClientMessages._handlers,
        codes.PARSE: _tx_on_parse,
        codes.BIND: _tx_on_bind,
        codes.DESCRIBE: _tx_on_describe,
        codes.CLOSE: _tx_on_close,
    }
