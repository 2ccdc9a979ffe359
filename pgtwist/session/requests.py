"""How a session routes each client message.

Every handler gets one validated frame as offsets into a buffer and either forwards
it (possibly preceded by pgtwist's own shadow messages), answers it locally, or
returns ``WAIT`` to be called again once a catalog fact or a link is ready.  One
path serves both pool modes; the session's mode (pgtwist.session.modes) is asked
where they differ.  Decisions become links in pgtwist.session.placement, bytes go
out through pgtwist.session.outbox.
"""

from __future__ import annotations

from .. import admin
from ..conn.server import UndoReplay
from ..logs import SETTINGS, logger
from ..pooling.statements import split_parse
from ..routing.values import Target
from ..wire import codes
from ..wire import messages as m
from .adminq import AdminQueries
from .consistency import after_sync
from .placement import ABORTED, GO, WAIT, cstr_pair, info_sql

_ENDS_ABORTED = ("ROLLBACK", "COMMIT", "PREPARE TRANSACTION")

log = logger(__name__)


class Requests:
    logset = SETTINGS   # the session's logging switches and SessionLog (set by the relay)
    slog = None

    def __init__(self, session, outbox, links, ordering, placement, mode, router, cluster,
                 pooling, copy, retry=None) -> None:
        self.session = session
        self.out = outbox
        self.links = links
        self.ordering = ordering
        self.place = placement
        self.mode = mode
        self.router = router
        self.cluster = cluster
        self.pooling = pooling
        self.copy = copy      # COPY FROM STDIN: CopyIn
        self.retry = retry    # StandbyRetry: reads a standby may refuse as read-only
        self.admin = AdminQueries(session, outbox, pooling.proxy, router, placement)

    def handlers(self) -> dict:
        """Frame code -> handler(code, buf, start, end), bound once per session."""
        guarded = self.copy.guarded
        return {
            codes.QUERY: guarded(self.on_query),
            codes.PARSE: guarded(self.on_parse),
            codes.BIND: guarded(self.on_bind),
            codes.DESCRIBE: guarded(self.on_describe),
            codes.EXECUTE: guarded(self.on_execute),
            codes.CLOSE: guarded(self.on_close),
            codes.SYNC: self.on_sync,
            codes.FLUSH: self.on_flush,
            codes.FUNCTION_CALL: guarded(self.on_function_call),
            codes.COPY_DATA: self.copy.on_copy,
            codes.COPY_DONE: self.copy.on_copy,
            codes.COPY_FAIL: self.copy.on_copy,
        }

    # -- simple Query ---------------------------------------------------------------------------
    def on_query(self, code, buf, start, end):
        place = self.place
        inside = place.inside_batch()
        if inside is not GO:
            return inside
        # PostgreSQL: "a simple Query message also destroys the unnamed statement".
        self.session.statements.pop(b"", None)
        if self.admin.statements:
            self.admin.forget(b"")
        raw = buf[start:end - 1]
        sql = raw.decode("utf-8", "replace")
        special = admin.match(sql)
        if special is not None:
            return self.admin.query(special)
        info = self.router.classify(sql)
        if info.exclusive_database is not None:
            self._free_database(info.exclusive_database)
        s = self.session
        if s.failed_elsewhere:
            return self._in_failed_transaction(info, buf, start, end)
        mode = self.mode
        special = mode.before_route(info, sql)
        if special is not GO:
            return special
        decision, prepared = place.follow(info, sql)
        if decision is WAIT:
            return WAIT
        if info.deallocate_name not in (None, "*"):
            prepared = s.sql_prepared.get(info.deallocate_name)
        if decision.target is Target.REJECT:
            if place.stats is not None:
                place.stats.route(decision, None)
            self.out.local(m.error_response("42501", decision.reason))
            return None
        if prepared is not None and info.deallocate_name is not None:
            return self._deallocate(info, prepared, sql, buf, start, end)
        if decision.target is Target.BOTH:
            return self._both(info, sql, buf, start, end, decision)
        link = place.target_link(decision)
        if link is WAIT:
            return WAIT
        mode.prepared_on(link, prepared)
        self._send_statement(link, info, decision, sql, buf, start, end)
        return None

    def _send_statement(self, link, info, decision, sql: str, buf, start, end) -> None:
        """A simple Query goes to ``link``, with its bookkeeping."""
        s = self.session
        mode = self.mode
        mode.before_query(link, info)
        self.out.forward(link, buf, start - 5, end, sync=True)
        if self.logset.per_node_statement:
            self.slog.per_node(link, "", sql)
        if self.retry is not None and link.node_id != s.primary_id:
            self.retry.offer(link, info, buf, start - 5, end)
        if info.copy_from_stdin:
            # Syncs the client sends while the server may be in copy-in are ignored
            # there, as after an extended COPY's Execute (see _copy_sync).
            self.copy.started(link, simple=True)
        self.router.after_statement(s, info, decision, link.node_id, sql)
        if s.implicit_undo is not None:
            self._file_undo(link)
        mode.after_statement(info, sql, link)
        if s.consistency is not None:
            after_sync(s, link, self.out, self.ordering, self.router.consistency)

    def _free_database(self, database: str) -> None:
        """DROP DATABASE and the like fail while other sessions use the database: pgtwist's
        own idle links to it must not be those sessions."""
        closed = self.pooling.pool.close_idle_database(database)
        if closed:
            log.info("session {pid}: closed {n} idle link(s) to database {db} for {why}",
                     pid=self.session.pid, n=closed, db=database, why="its exclusive use")

    def _file_undo(self, link) -> None:
        """After a statement went to ``link``: a SET it made outside an explicit
        transaction is undone if an error ends its implicit transaction."""
        s = self.session
        snapshot, s.implicit_undo = s.implicit_undo, None
        self.ordering.file_undo(link, UndoReplay(snapshot))

    def _in_failed_transaction(self, info, buf, start, end):
        """The transaction failed on a standby: only its end may pass, as ROLLBACK."""
        s = self.session
        if info.command == "ROLLBACK TO":
            return self._both(info, info_sql(buf, start, end), buf, start, end)
        if info.command not in _ENDS_ABORTED:
            self.out.local(ABORTED)
            return None
        # PostgreSQL answers COMMIT of an aborted transaction by rolling back ("ROLLBACK").
        primary = self.place.link_ready(s.primary_id)
        if primary is WAIT:
            return WAIT
        for link in self.links.values():
            if link is not primary and not link.closed and (
                    link.server.txn_status != codes.TXN_IDLE or self.ordering.inflight(link)):
                self.out.shadow(link, m.query("ROLLBACK"))
        if info.command == "ROLLBACK":
            self.out.forward(primary, buf, start - 5, end, sync=True)
        else:
            frame = m.query("ROLLBACK")
            self.out.forward(primary, frame, 0, len(frame), sync=True)
        s.failed_elsewhere = False
        self.router.after_statement(s, self.router.classify("ROLLBACK"), None,
                                    primary.node_id, "ROLLBACK")
        return None

    def _deallocate(self, info, prepared, sql: str, buf, start, end):
        """SQL DEALLOCATE: answered by one node holding the statement, shadowed to the rest."""
        nodes = sorted(prepared.nodes)
        link = self.place.link_ready(nodes[0])
        if link is WAIT:
            return WAIT
        for other in nodes[1:]:
            olink = self.links.get(other)
            if olink is not None and not olink.closed:
                self.out.shadow(olink, m.query(sql))
        self.out.forward(link, buf, start - 5, end, sync=True)
        self.router.after_statement(self.session, info, None, link.node_id, sql)
        return None

    def _both(self, info, sql: str, buf, start, end, decision=None):
        """A BOTH statement: the primary answers the client; the LB node gets a shadow copy."""
        primary = self.place.link_ready(self.session.primary_id)
        if primary is WAIT:
            return WAIT
        text = info.standby_text or sql
        if self.place.copy_to_standby(info.is_transaction_end, text, text, buf, start):
            return WAIT
        if decision is not None and self.place.stats is not None:
            self.place.stats.route(decision, primary.node_id)
        self._send_statement(primary, info, None, sql, buf, start, end)
        return None

    # -- extended protocol ------------------------------------------------------------------------
    def on_parse(self, code, buf, start, end):
        s = self.session
        if s.skip_until_sync:
            return self.place.skip(code)
        name, rest = split_parse(buf[start:end])
        sql = rest[:rest.index(b"\0")].decode("utf-8", "replace")
        special = admin.match(sql)
        if special is not None and special[0] not in ("explain", "pgtwist"):
            return self.admin.parse(name, special)
        if self.admin.statements:
            self.admin.forget(name)
        info = self.router.classify_parse(sql)
        if info.exclusive_database is not None:
            self._free_database(info.exclusive_database)
        rewritten = False
        if s.failed_elsewhere:
            if info.command not in _ENDS_ABORTED:
                return self.place.skip(code)
            # Ending the aborted transaction: COMMIT becomes ROLLBACK, as PostgreSQL does.
            s.failed_elsewhere = False
            if info.command != "ROLLBACK":
                sql, rest, rewritten = "ROLLBACK", b"ROLLBACK\0\0\0", True
                info = self.router.classify_parse(sql)
        mode = self.mode
        answer = mode.before_parse(name, sql, rest, info, buf, start)
        if answer is not GO:
            return answer
        place = self.place
        decision, prepared = place.follow(info, sql)
        if decision is WAIT:
            return WAIT
        decision = mode.parse_decision(name, info, decision)
        if decision.target is Target.BOTH or decision.target is Target.REJECT:
            decision = self.router.PRIMARY
        link = place.target_link(decision)
        if link is WAIT:
            return WAIT
        mode.batch_starts(link, buf, start)
        mode.prepared_on(link, prepared)
        mode.send_parse(link, name, sql, rest, info, buf, start, end, rewritten)
        if self.logset.per_node_statement:
            self.slog.per_node(link, "Parse: ", sql)
        return None

    def on_bind(self, code, buf, start, end):
        s = self.session
        if s.failed_elsewhere or s.skip_until_sync:
            return self.place.skip(code)
        portal, name = cstr_pair(buf, start)
        adm = self.admin
        if adm.statements and name in adm.statements:
            return adm.bind(portal, name, buf[start:end])
        if adm.portals:
            adm.portals.pop(portal, None)
        stmt, link = self._statement_link(code, name, buf, start)
        if link is None or link is WAIT:
            return link
        if stmt is not None and stmt.info.route == "both":
            text = stmt.info.standby_text or stmt.sql
            if self.place.copy_to_standby(stmt.info.is_transaction_end, stmt.sql, text,
                                          buf, start):
                return WAIT
        s.portals[portal] = link.node_id
        self.mode.bind(stmt, link, name, buf, start, end)
        if self.logset.per_node_statement:
            self.slog.per_node(link, "Bind: ", stmt.sql if stmt is not None else "")
        if stmt is not None:
            if stmt.info.copy_from_stdin:
                link.server.copy_portals.add(portal)
            else:
                link.server.copy_portals.discard(portal)
            self.router.after_statement(s, stmt.info, None, link.node_id, stmt.sql)
            if s.implicit_undo is not None:
                self._file_undo(link)
            self.mode.after_bind(stmt, link)
        return None

    def _statement_link(self, code: int, name: bytes, buf: bytes, start: int):
        """(statement, link) for a Bind / Describe 'S' naming ``name``: re-routed now, and
        the statement parsed on that link first if it lacks it; or (None, the frame's
        answer) when the frame is answered already (WAIT, an error, a skip)."""
        s = self.session
        place = self.place
        mode = self.mode
        stmt = s.statements.get(name)
        if stmt is None:
            answer = mode.unknown_statement(name)
            if answer is not GO:
                return None, answer
            return None, place.current_or_primary()
        # Hot path of prepared workloads: placed where it was last time (session mode).
        link = mode.placed(stmt)
        if link is not None:
            return stmt, link
        decision, prepared = place.follow(stmt.info, stmt.sql)
        if decision is WAIT:
            return None, WAIT
        link = mode.deallocate_link(stmt)
        if link is not None:
            return stmt, link
        if decision.target is Target.BOTH or decision.target is Target.REJECT:
            decision = self.router.PRIMARY
        link = place.target_link(decision)
        if link is WAIT:
            return None, WAIT
        mode.batch_starts(link, buf, start)
        if not mode.holds(link, stmt):
            if s.route_status == "E" and not stmt.info.is_transaction_end:
                # An aborted transaction refuses the Parse; the client must see what
                # PostgreSQL would say of the statement itself: 25P02.
                return None, place.skip(code)
            # Parse it there first, inside the client's batch (not foreseen when the batch
            # began, or parsed on another link); its ParseComplete is not the client's
            # business, an error from it is.
            mode.add_statement(link, stmt)
        mode.prepared_on(link, prepared)
        s.last_statement = stmt
        mode.placed_now(stmt, link, prepared)
        return stmt, link

    def on_describe(self, code, buf, start, end):
        s = self.session
        if s.failed_elsewhere or s.skip_until_sync:
            return self.place.skip(code)
        adm = self.admin
        if (adm.statements or adm.portals) and adm.claims(buf, start, end):
            return adm.describe(buf[start], buf[start + 1:end - 1])
        if buf[start] == 0x53:  # 'S'
            stmt, link = self._statement_link(code, buf[start + 1:end - 1], buf, start)
            if link is None or link is WAIT:
                return link
            self.mode.describe_statement(stmt, link, buf, start, end)
            return None
        link = self.place.portal_link(buf[start + 1:end - 1])
        if link is WAIT:
            return WAIT
        self.out.forward(link, buf, start - 5, end)
        return None

    def on_execute(self, code, buf, start, end):
        s = self.session
        if s.failed_elsewhere or s.skip_until_sync:
            return self.place.skip(code)
        name = buf[start:buf.find(b"\0", start)]
        if self.admin.portals and name in self.admin.portals:
            return self.admin.execute(name)
        link = self.place.portal_link(name)
        if link is WAIT:
            return WAIT
        self.out.forward(link, buf, start - 5, end)
        if self.logset.per_node_statement:
            self.slog.per_node(link, "Execute: ",
                               self.slog.portal_text(bytes(name).decode("utf-8", "replace")))
        if name in link.server.copy_portals:
            self.copy.started(link)
        return None

    def on_close(self, code, buf, start, end):
        s = self.session
        if s.failed_elsewhere or s.skip_until_sync:
            return self.place.skip(code)
        adm = self.admin
        if (adm.statements or adm.portals) and adm.claims(buf, start, end):
            return adm.close(buf[start], buf[start + 1:end - 1])
        if buf[start] == 0x53:  # 'S'
            return self.mode.close_statement(buf, start, end)
        node_id = s.portals.pop(buf[start + 1:end - 1], None)
        link = self.links.get(node_id) if node_id is not None else None
        if link is None or link.closed:
            link = self.place.current_or_primary()
            if link is WAIT:
                return WAIT
        self.out.forward(link, buf, start - 5, end)
        return None

    def on_sync(self, code, buf, start, end):
        s = self.session
        skipping = s.skipping_link
        tail = self.ordering.tail_open()
        if s.skip_until_sync and skipping is not None and tail is not None \
                and tail.link is skipping and not skipping.closed:
            # The server skips to this Sync too: its ReadyForQuery ends the batch.
            s.skip_until_sync = False
            self.out.forward(skipping, buf, start - 5, end, sync=True)
            return None
        if s.skip_until_sync:
            s.skip_until_sync = False
            status, s.skip_status = s.skip_status, codes.TXN_FAILED
            self.out.local(b"", status=status)
            return None
        if not self.links and tail is None:
            # No link held (transaction pooling between transactions): nothing of this
            # batch went to a server (all answered by pgtwist) and no transaction is open.
            self.out.local(b"", status=codes.TXN_IDLE)
            return None
        link = self.place.current_or_primary()
        if link is WAIT:
            return WAIT
        if link.server.copy_execute:
            held = self.copy.sync(link)
            if held is not None:
                return held
        self.out.forward(link, buf, start - 5, end, sync=True)
        if s.consistency is not None:
            after_sync(s, link, self.out, self.ordering, self.router.consistency)
        return None

    def on_flush(self, code, buf, start, end):
        tail = self.ordering.tail_open()
        if tail is not None:
            self.out.send_frame(tail.link, buf, start - 5, end)
        return None

    def on_function_call(self, code, buf, start, end):
        inside = self.place.inside_batch()
        if inside is not GO:
            return inside
        link = self.place.link_ready(self.session.primary_id)
        if link is WAIT:
            return WAIT
        self.out.forward(link, buf, start - 5, end, sync=True)
        return None
