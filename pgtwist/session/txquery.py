"""Transaction pooling, simple Query: statements answered from the session's own names,
SQL EXECUTE of protocol-level statements, and the bookkeeping around a Query sent to a
link (PREPAREs, DISCARD ALL, DEALLOCATE ALL, pins).

TransactionMode (pgtwist.session.txmode) builds on this; the rules it follows are that
module's docstring.
"""

from __future__ import annotations

from ..conn.server import LinkStatements, UndoPrepare, UndoReplay
from ..logs import logger
from ..pooling.statements import execute_sql, pin_reason, raise_sql
from ..routing.values import Target
from ..sql import state as sql_state
from ..sql.idents import quote_ident
from ..wire import messages as m
from .placement import GO, WAIT
from .poolmode import PoolMode

log = logger(__name__)


class TxQueries(PoolMode):
    """The simple-Query hooks of TransactionMode."""

    def _cache(self, link) -> LinkStatements:
        return link.server.cache(self.pooling.max_prepared_statements)

    def holds(self, link, stmt) -> bool:
        return link.server.holds(stmt)

    def before_route(self, info, sql: str):
        """DEALLOCATE / DISCARD ALL / duplicate PREPARE, answered from the session's names."""
        s = self.session
        if info.multi_statement or s.route_status == "E":
            return GO
        name = info.deallocate_name
        if name is not None:
            if name == "*":
                for key in [k for k in s.statements if k]:
                    del s.statements[key]
                s.sql_prepared.clear()
                self.out.local(m.command_complete("DEALLOCATE ALL"))
                return None
            if s.sql_prepared.pop(name, None) is None \
                    and s.statements.pop(name.encode(), None) is None:
                return self._fail(info, "26000", f'prepared statement "{name}" does not exist')
            self.out.local(m.command_complete("DEALLOCATE"))
            return None
        if info.execute_name is not None and info.execute_name not in s.sql_prepared:
            stmt = s.statements.get(info.execute_name.encode())
            if stmt is not None and stmt.server_name is not None:
                return self._execute_protocol(info, sql, stmt)
            # The server may hold that name for another session (or from before this
            # session's DEALLOCATE): only the session's own statements exist for it.
            return self._fail(info, "26000",
                                 f'prepared statement "{info.execute_name}" does not exist')
        if info.prepare_name is not None and info.prepare_name in s.sql_prepared:
            return self._fail(info, "42P05",
                                 f'prepared statement "{info.prepare_name}" already exists')
        if (info.discard_all and not info.multi_statement and self.session.pinned is None
                and s.route_status == "I" and not self.links):
            # Nothing of this session is on any server: forgetting is the whole job.
            s.statements.clear()
            s.portals.clear()
            self.router.after_statement(s, info, None, s.primary_id, sql)
            s.implicit_undo = None  # answered here: it cannot fail
            self.out.local(m.command_complete("DISCARD ALL"))
            return None
        return GO

    def _execute_protocol(self, info, sql: str, stmt):
        """SQL EXECUTE of a statement the session prepared with Parse: it runs where its
        text would, under the name the servers know it by (parsed there first if the
        link lacks it)."""
        text = execute_sql(sql, info.execute_name, stmt.server_name.decode())
        if text is None:
            return self._fail(info, "26000",
                              f'prepared statement "{info.execute_name}" does not exist')
        decision = self.place.decide(stmt.info, stmt.sql)
        if decision is WAIT:
            return WAIT
        if decision.target is Target.REJECT:
            self.out.local(m.error_response("42501", decision.reason))
            return None
        if decision.target is Target.BOTH:
            decision = self.router.PRIMARY
        link = self.place.target_link(decision)
        if link is WAIT:
            return WAIT
        s = self.session
        if not self.holds(link, stmt):
            # A round of its own: a Parse failing in front of a Query would make the
            # server skip that Query.
            self._cache(link).use(stmt.server_name)
            link.server.pending_parses.append(stmt)
            self.pooling.counters["statements_parsed"] += 1
            self.out.shadow(link, stmt.parse_frame + m.SYNC)
        self.before_query(link, info)
        frame = m.query(text)
        self.out.forward(link, frame, 0, len(frame), sync=True)
        self.router.after_statement(s, stmt.info, decision, link.node_id, stmt.sql)
        if s.implicit_undo is not None:
            snapshot, s.implicit_undo = s.implicit_undo, None
            self.ordering.file_undo(link, UndoReplay(snapshot))
        self.after_statement(info, sql, link)
        return None

    def _fail(self, info, sqlstate: str, message: str):
        """Answer an error; inside a transaction the server must see it too (it aborts)."""
        if self.session.route_status == "I":
            self.out.local(m.error_response(sqlstate, message))
            return None
        link = self.place.target_link(self.router.PRIMARY)
        if link is WAIT:
            return WAIT
        frame = m.query(raise_sql(sqlstate, message))
        self.out.forward(link, frame, 0, len(frame), sync=True)
        return None

    def before_query(self, link, info) -> None:
        server = link.server
        server.unnamed = None  # a simple Query destroys the unnamed statement
        name = info.prepare_name
        if name is not None and name in server.sql_prepared:
            # Another session's PREPARE of that name is still on this server.
            self.out.shadow(link, m.query(f"DEALLOCATE {quote_ident(name)}"))
            del server.sql_prepared[name]

    def after_bind(self, stmt, link) -> None:
        if stmt.inert:
            return
        self.after_statement(stmt.info, stmt.sql, link)
        if stmt.inert is None:
            info, sql = stmt.info, stmt.sql
            stmt.inert = (info.prepare_name is None and not info.discard_all
                          and info.deallocate_name != "*" and pin_reason(info, sql) is None
                          and not (info.bounded and sql_state.may_keep_state(sql)))

    def after_statement(self, info, sql: str, link) -> None:
        """Bookkeeping once a statement was sent to ``link``: pins, dropped statements."""
        s = self.session
        server = link.server
        if info.prepare_name is not None and info.prepared is not None:
            server.sql_prepared[info.prepare_name] = sql
            # If it fails, the name stays free.
            name = info.prepare_name
            self.ordering.file_undo(link, UndoPrepare(name, s.sql_prepared.get(name)))
        if info.discard_all and not info.multi_statement and s.route_status == "I":
            server.forget_statements()
            server.unnamed = None
            s.statements.clear()
            self.session.pinned = None  # DISCARD ALL ends everything a pin stood for
        elif info.deallocate_name == "*":
            server.forget_statements()
            for key in [k for k in s.statements if k]:
                del s.statements[key]
        if self.session.pinned is None:
            reason = pin_reason(info, sql)
            if reason is None and info.bounded and sql_state.may_keep_state(sql):
                reason = "unparsed_text"
            if reason is not None:
                self.session.pinned = reason
                self.pooling.pin(reason)
                log.debug("session {pid}: pinned to its links ({why})", pid=s.pid, why=reason)
