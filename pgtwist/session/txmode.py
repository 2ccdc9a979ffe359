"""Transaction pooling: what a session does when its links change between transactions.

With ``pool_mode: transaction`` a session holds a backend link only while a transaction
(or an autocommit statement) runs on it; at an idle ReadyForQuery the link goes back to
the shared pool (TransactionMode.release_idle).  What a client expects to survive
between its transactions is carried by the session and put back on whatever link
serves it next:

- SET/RESET state: re-applied at checkout when the link's applied state differs
  (pgtwist.session.links);
- named prepared statements: prepared under pgtwist-owned names (pgtwist.pooling.statements), on
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

from bisect import bisect_left
from operator import itemgetter

from ..logs import logger
from ..pooling.statements import (
    NO_STATEMENT,
    batch_needs,
    close_statement,
    describe_statement,
    parse_frame,
    parse_rest,
    rename_bind,
    stale_plan,
)
from ..sql.idents import quote_ident
from ..wire import codes
from ..wire import messages as m
from .placement import GO
from .state import Statement
from .txquery import TxQueries

log = logger(__name__)

_START = itemgetter(1)
_BOUND_KEPT = 64
PARSE_COMPLETE = m.frame(codes.PARSE_COMPLETE)
CLOSE_COMPLETE = m.frame(codes.CLOSE_COMPLETE)


class TransactionMode(TxQueries):
    """Transaction pooling: links go back to the pool between transactions unless a
    session feature pins them (``session.pinned``)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        # link -> the statements Bound on it since it was last quiet: one of them failed
        # when a stale-plan error arrives (the error does not say which).
        self._bound: dict = {}

    # -- statements on links ------------------------------------------------------------------
    def _batch_frames(self, buf: bytes, start: int):
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

    def _prepare_batch(self, link, buf: bytes, start: int) -> None:
        """A batch is about to start on ``link``: prepare what it uses that ``link`` lacks,
        at the head of the batch's segment, after closing what the link's LRU bound evicts.
        """
        s = self.session
        if s.route_status == "E":
            return  # an aborted transaction refuses Parse; the client gets 25P02 instead
        stmts = self._cache(link)
        used = [s.statements.get(name) for name in batch_needs(self._batch_frames(buf, start))]
        used = [stmt for stmt in used if stmt is not None]
        counters = self.pooling.counters
        evicted = stmts.evictions({stmt.server_name for stmt in used if stmt.server_name})
        if evicted:
            # A round of its own: a Close never fails, so the cache stays exact even if a
            # Parse below does.
            counters["statements_evicted"] += len(evicted)
            self.out.shadow(link, b"".join(map(close_statement, evicted)) + m.SYNC)
        missing = [stmt for stmt in used if not self.holds(link, stmt)]
        counters["statements_reused"] += len(used) - len(missing)
        if missing:
            self._insert_parses(link, missing)

    def _insert_parses(self, link, stmts: list[Statement]) -> None:
        """Parse ``stmts`` on ``link`` as part of the client's batch, right where they are
        needed: their ParseCompletes are hidden, an error from one is the client's."""
        cache = self._cache(link)
        for stmt in stmts:
            if stmt.server_name is None:
                link.server.unnamed = stmt
            else:
                cache.use(stmt.server_name)
        self.pooling.counters["statements_parsed"] += len(stmts)
        self.out.insert_parses(link, stmts)

    def prepared_on(self, link, prepared) -> None:
        """SQL EXECUTE on ``link``: PREPARE the session's statement there unless it has it."""
        if prepared is None:
            return
        name = prepared.name
        held = link.server.sql_prepared
        if not name or held.get(name) == prepared.sql:
            return
        frames = []
        if name in held:  # another session's statement of that name
            frames.append(m.query(f"DEALLOCATE {quote_ident(name)}"))
        frames.append(m.query(prepared.sql))
        held[name] = prepared.sql
        self.out.shadow(link, b"".join(frames), syncs=len(frames))

    # Placing a statement for a Bind / Describe 'S' (Requests._statement_link).
    def _take_placed(self, link) -> bool:
        """Where the statement went last time, if the session holds that link or takes it
        back from the pool untouched (parked); not when the link's statement cache is full
        (the look-ahead at a batch's start closes what it evicts)."""
        stmts = link.server.statements
        if stmts is not None and len(stmts.names) >= stmts.capacity:
            return False
        if self.links.get(link.node_id) is link:
            return True
        return self.links.parked.get(link.node_id) is link and self.links.unpark(link)

    def deallocate_link(self, stmt):
        """DEALLOCATE via the extended protocol runs where its unnamed statement is."""
        if stmt.server_name is None and stmt.info.deallocate_name is not None:
            for link in self.links.values():
                if link.server.unnamed is stmt and not link.closed:
                    return link
        return None

    def batch_starts(self, link, buf: bytes, start: int) -> None:
        if self.ordering.open_segment(link) is None:
            self._prepare_batch(link, buf, start)

    def add_statement(self, link, stmt) -> None:
        self._insert_parses(link, [stmt])


    # -- links ------------------------------------------------------------------------------
    def release_idle(self, link) -> None:
        """A link idle with nothing more to do goes back to the pool."""
        if self.ordering.by_link.get(link):
            return  # answers still to come
        if self._bound:
            self._bound.pop(link, None)
        server = link.server
        s = self.session
        if (s.pinned is not None or server.txn_status != codes.TXN_IDLE or link.closed
                or link is s.copy_link or self.links.get(link.node_id) is not link
                or server.pending_parses):
            return
        self.links.park(link)

    def keeps_link(self, link, busy: bool) -> bool:
        """An idle link keeps its statements and state for the next session; a pinned or
        unfinished one is reset like a session-pooled link."""
        return (self.session.pinned is None and not busy
                and link.server.txn_status == codes.TXN_IDLE)

    def release_unused(self, link) -> None:
        self.pooling.release(link, clean=True, reset=False)

    def server_error(self, link, body: bytes) -> None:
        """"cached plan must not change result type": the server copies of the statements
        just bound there are stale, on every link that holds them.  Their texts get fresh
        names, so a client that prepares again (asyncpg does, by itself) is parsed anew
        instead of being handed the stale copy; a statement already prepared fails on,
        as in PostgreSQL."""
        bound = self._bound.pop(link, None)
        if not bound or not stale_plan(body):
            return
        registry = self.pooling.registry
        for stmt in bound:
            if registry.retire(parse_rest(stmt.parse_frame), stmt.server_name):
                self.pooling.counters["statements_retired"] += 1

    def key_pid(self, primary_link) -> int | None:
        """pgtwist's own pid: the backend changes with every transaction."""
        return None

    def parameter_reported(self, name: str, value: str) -> None:
        # set_config() and the like change reported settings without a SET statement;
        # the report is kept to be re-applied like one.
        self.session.remember_parameter(name, value)

    # -- extended protocol ---------------------------------------------------------------------
    def before_parse(self, name: bytes, sql: str, rest: bytes, info, buf: bytes, start: int):
        """A duplicate name is refused here (the server may hold it for another session);
        a driver's lone "prepare" while every link is busy is answered ahead."""
        s = self.session
        if name and name in s.statements:
            return self.place.fail_extended(
                "42P05", f'prepared statement "{name.decode("utf-8", "replace")}" already exists')
        if name and not self.links and self._lone_parses(buf, start) \
                and self.pooling.would_wait(s, s.primary_id, self.links.poolable):
            return self._defer_parse(name, sql, rest, info)
        return GO

    def parse_decision(self, name: bytes, info, decision):
        return decision

    def send_parse(self, link, name: bytes, sql: str, rest: bytes, info, buf: bytes,
                   start: int, end: int, rewritten: bool) -> None:
        """The client's Parse, prepared under a pgtwist name the link may hold already."""
        s = self.session
        cache = self._cache(link)
        if info.deallocate_name not in (None, "*"):
            # DEALLOCATE of a protocol-level name: the server only knows pgtwist's name.
            target = s.statements.get(info.deallocate_name.encode())
            if target is not None and target.server_name is not None:
                if not self.holds(link, target):
                    self._insert_parses(link, [target])
                sql = f"DEALLOCATE {target.server_name.decode()}"
                rest = sql.encode() + b"\0\0\0"
                cache.discard(target.server_name)
                s.statements.pop(info.deallocate_name.encode(), None)
        stmt = Statement(name, sql, b"", info, set())
        if not name:
            stmt.parse_frame = parse_frame(b"", rest)
            s.statements[name] = stmt
            link.server.unnamed = stmt
            link.server.pending_parses.append(stmt)
            self.out.forward(link, stmt.parse_frame, 0, len(stmt.parse_frame))
            self.ordering.parse_sent(self.ordering.open_segment(link))
            return
        pooling = self.pooling
        server = pooling.registry.name_for(rest)
        if server in cache:
            if (self.ordering.open_segment(link) is None and self.ordering.tail_open() is None
                    and s.route_status != "E"):
                # The link has it already: ParseComplete from pgtwist, nothing to send.
                cache.touch(server)
                pooling.counters["statements_reused"] += 1
                stmt.server_name = server
                stmt.parse_frame = parse_frame(server, rest)
                stmt.confirmed = True
                s.statements[name] = stmt
                self.out.local(PARSE_COMPLETE, ready=False)
                return
            server = pooling.registry.fresh()  # mid-batch: a second name for the same text
        stmt.server_name = server
        stmt.parse_frame = parse_frame(server, rest)
        s.statements[name] = stmt
        cache.use(server)
        link.server.pending_parses.append(stmt)
        pooling.counters["statements_parsed"] += 1
        self.out.forward(link, stmt.parse_frame, 0, len(stmt.parse_frame))
        self.ordering.parse_sent(self.ordering.open_segment(link))

    def _lone_parses(self, buf: bytes, start: int) -> bool:
        """The batch from this frame on is Parses then a Sync (a driver's "prepare")."""
        for code, _b, _s, _e in self._batch_frames(buf, start):
            if code == codes.SYNC:
                return True
            if code != codes.PARSE and code != codes.FLUSH:
                return False
        return False

    def _defer_parse(self, name: bytes, sql: str, rest: bytes, info):
        """A "prepare" while every link is busy: answered now, parsed on first use.

        A driver that waits for each prepare in turn (pgbench -M prepared, one thread
        for many connections) would otherwise wait for a link its own other connections
        hold, and they for it.  The statement is parsed at the head of the first batch
        that uses it, where an error in it reaches the client instead.
        """
        s = self.session
        server = self.pooling.registry.name_for(rest)
        stmt = Statement(name, sql, parse_frame(server, rest), info, set())
        stmt.server_name = server
        s.statements[name] = stmt
        log.debug("session {pid}: Parse answered ahead (no free link)", pid=s.pid)
        self.out.local(PARSE_COMPLETE, ready=False)
        return None

    def bind(self, stmt, link, name: bytes, buf: bytes, start: int, end: int) -> None:
        """Bind, naming the statement as the server knows it."""
        if stmt is None:  # a name the session PREPAREd in SQL
            self.prepared_on(link, self.session.sql_prepared.get(name.decode("utf-8", "replace")))
        server = stmt.server_name if stmt is not None else None
        if server is not None:
            link.server.statements.touch(server)
            bound = self._bound.get(link)
            if bound is None:
                self._bound[link] = [stmt]
            else:
                bound.append(stmt)
                if len(bound) > _BOUND_KEPT:
                    del bound[0]  # the latest ones
            frame = rename_bind(buf, start, end, server)
            self.out.forward(link, frame, 0, len(frame))
        else:
            self.out.forward(link, buf, start - 5, end)

    def describe_statement(self, stmt, link, buf: bytes, start: int, end: int) -> None:
        if stmt is not None and stmt.server_name is not None:
            frame = describe_statement(stmt.server_name)
            self.out.forward(link, frame, 0, len(frame))
        else:
            self.out.forward(link, buf, start - 5, end)

    def close_statement(self, buf: bytes, start: int, end: int):
        """Close 'S': the session forgets the name; the server copy may serve others and
        leaves by LRU.  The CloseComplete comes from pgtwist, or, inside a batch already
        sent to a server, from a Close of a name no server holds, so it arrives in order."""
        self.session.statements.pop(buf[start + 1:end - 1], None)
        tail = self.ordering.tail_open()
        if tail is None:
            self.out.local(CLOSE_COMPLETE, ready=False)
        else:
            frame = close_statement(NO_STATEMENT)
            self.out.forward(tail.link, frame, 0, len(frame))
        return None

    def unknown_statement(self, name: bytes):
        """A Bind/Describe of a statement this session has not prepared: the server may
        hold that name for someone else (a previous session's unnamed statement, another
        session's SQL PREPARE), so PostgreSQL's error is answered here (the handler's
        answer is returned).  GO for a name the session PREPAREd in SQL, which the
        protocol may use too."""
        if name and name.decode("utf-8", "replace") in self.session.sql_prepared:
            return GO
        what = f'prepared statement "{name.decode("utf-8", "replace")}"' if name \
            else "unnamed prepared statement"
        return self.place.fail_extended("26000", f"{what} does not exist")
