"""How a session routes each client message (the relay's message handlers).

Every handler gets one validated frame as offsets into a buffer and either
forwards it (possibly preceded by pgtwist's own shadow messages), answers it
locally, or returns ``_WAIT`` to be called again once a catalog fact or a link
is ready.  Kept apart from relay.py, which owns the I/O these handlers use.
"""

from __future__ import annotations

import re

from twisted.internet import defer

from . import admin
from .logs import logger
from .protocols.backend import BackendLink
from .routing.rules import prepared_body_sql
from .routing.values import Target
from .session import Statement
from .wire import codes
from .wire import messages as m
from .wire.errors import ProtocolViolation

log = logger(__name__)

_FATAL_MARKERS = (b"SFATAL\0", b"SPANIC\0")
_WAIT = object()  # a frame handler's answer: retry this frame after the wait
_SKIP = object()  # answer the client 25P02 and ignore the batch up to Sync
_GO = object()    # a transaction-pooling hook has nothing special to do: route as usual
_ABORTED = m.error_response(
    "25P02", "current transaction is aborted, commands ignored until end of transaction block")
_PROBE_FRAMES = m.frame(codes.PARSE, b"\0\0\0\0") + m.FLUSH  # unnamed, empty text; Flush


class _SkipProbe:
    """A hidden unnamed Parse sent ahead of a Query (or FunctionCall) that arrives inside an
    extended-protocol batch not yet synced.  PostgreSQL runs such a Query unless a message
    before it failed; then it discards it with everything up to Sync.  The probe's
    ParseComplete, or an error before it, says which.  An unnamed Parse changes nothing
    there: the Query destroys the unnamed statement anyway."""

    name = None
    server_name = None
    confirmed = False

    def __init__(self, segment) -> None:
        self.nodes: set[int] = set()
        self.segment = segment  # the batch part it was sent in: its answer is about that only
        self.settled = defer.Deferred()  # fired by LinkEvents at its ParseComplete or error


_CURSOR_NAME = re.compile(r'("(?:[^"]|"")+"|[A-Za-z_][\w$]*)\s*;?\s*$')


def _cursor_name(sql: str) -> str | None:
    """The cursor a FETCH/MOVE/CLOSE names (its last word), as PostgreSQL folds it."""
    found = _CURSOR_NAME.search(sql)
    if found is None:
        return None
    name = found.group(1)
    if name.startswith('"'):
        return name[1:-1].replace('""', '"')
    return name.lower()


def _route_node(node_id: int):
    from .routing.values import node

    return node(node_id, f"node {node_id}: holds the cursor").by("relay")


def info_sql(buf: bytes, start: int, end: int) -> str:
    return buf[start:end - 1].decode("utf-8", "replace")



def _cstr_pair(buf: bytes, start: int) -> tuple[bytes, bytes]:
    """The first two NUL-terminated strings of a (validated) body."""
    a = buf.find(b"\0", start)
    b = buf.find(b"\0", a + 1)
    return buf[start:a], buf[a + 1:b]




class ClientMessages:
    """Mixin for Relay: routing of Query, Parse, Bind, Describe, Execute, Sync..."""

    # -- routing -------------------------------------------------------------------------------
    def _facts(self, info):
        """Catalog facts for ``info``, or _WAIT while they are looked up."""
        s = self.session
        looked = self._looked_up
        if looked is not None and looked[0] is info:
            self._looked_up = None
            return looked[1]
        facts = self.router.facts(s.database, info, s)
        if facts is not None:
            return facts
        d = self.router.lookup(s.database, info, self._catalog_query)

        def keep(facts):
            self._looked_up = (info, facts)  # used by the retry of this same frame

        return self._wait(d.addCallback(keep))

    def _decide(self, info, sql: str):
        """RouteDecision for ``info`` now, or _WAIT while catalog facts load."""
        facts = self._facts(info)
        if facts is _WAIT:
            return _WAIT
        return self.router.decide(info, self.session, facts, sql)

    def _follow(self, info, sql: str):
        """Decision for a statement that uses another: SQL EXECUTE runs where (and as) its
        PREPARE does; FETCH/MOVE/CLOSE of a protocol-level portal go to that portal's node.

        Returns (decision or _WAIT, the SqlPrepared being executed or None).
        """
        s = self.session
        if info.execute_name is not None:
            prepared = s.sql_prepared.get(info.execute_name)
            if prepared is not None:
                # Routed like its body: the text the policies see is the body too.
                return self._decide(prepared.info, prepared_body_sql(prepared.sql)), prepared
        elif info.command in ("FETCH", "MOVE", "CLOSE") and s.portals:
            name = _cursor_name(sql)
            node_id = s.portals.get(name.encode()) if name else None
            if node_id is not None:
                return _route_node(node_id), None
        return self._decide(info, sql), None

    def _prepared_on(self, link, prepared) -> None:
        """Make sure a SQL PREPAREd statement exists on ``link`` before EXECUTE uses it."""
        if self.txn_pooling:
            self._tx_sql_prepared_on(link, prepared)
        elif prepared is not None and link.node_id not in prepared.nodes:
            self._shadow(link, m.query(prepared.sql))
            prepared.nodes.add(link.node_id)

    def _target_link(self, decision):
        """The link for a single-node decision (PRIMARY / EITHER / NODE), or a wait."""
        target = decision.target
        if target is Target.NODE:
            node_id = decision.node
        elif target is Target.EITHER:
            node_id = self.session.lb_node
        else:
            node_id = self.session.primary_id
        if node_id is None or not self.proxy.cluster.usable(node_id):
            node_id = self.session.primary_id
        link = self._link(node_id)
        if isinstance(link, defer.Deferred):
            return self._wait(link)
        return link

    def _lb_link_if_open(self) -> BackendLink | None:
        s = self.session
        if s.lb_node is None or s.lb_node == s.primary_id:
            return None
        link = self.links.get(s.lb_node)
        return link if link is not None and not link.closed else None

    _probe: _SkipProbe | None = None
    _skipping_link: BackendLink | None = None  # its server skips messages up to a Sync

    def _inside_batch(self):
        """Whether a Query/FunctionCall may run now: _GO, None when discarded (the batch
        failed: the server skips to Sync, as does pgtwist), or _WAIT for the probe."""
        if self.skip_until_sync:
            return None  # PostgreSQL ignores a Query while skipping to Sync
        tail = self.ordering.tail_open()
        probe = self._probe
        if tail is None or self.session.route_status == "E":
            self._probe = None
            return _GO
        if probe is not None and probe.segment is not tail:
            # Left from an earlier batch (its message was skipped another way): it says
            # nothing about this one.
            probe = self._probe = None
        link = tail.link
        if self._skipping_link is not link and (probe is None or not probe.settled.called):
            if probe is None:
                probe = self._probe = _SkipProbe(tail)
                link.pending_parses.append(probe)
                self.ordering.parse_sent(tail, hidden=True)
                self._send(link, _PROBE_FRAMES)
            return self._wait(probe.settled)
        self._probe = None
        if self._skipping_link is link or (probe is not None and probe.segment.error):
            log.debug("session {pid}: a Query inside a failed batch is discarded",
                      pid=self.session.pid)
            self.skip_until_sync = True
            return None
        # The probe replaced the server's unnamed statement: never bind the wrong one.
        link.unnamed = None
        unnamed = self.session.statements.get(b"")
        if unnamed is not None:
            unnamed.nodes.discard(link.node_id)
        return _GO

    # -- client message handlers -----------------------------------------------------------------
    def _on_query(self, code, buf, start, end):
        inside = self._inside_batch()
        if inside is not _GO:
            return inside
        # PostgreSQL: "a simple Query message also destroys the unnamed statement".
        self.session.statements.pop(b"", None)
        raw = buf[start:end - 1]
        sql = raw.decode("utf-8", "replace")
        special = admin.match(sql)
        if special is not None:
            return self._admin(special)
        info = self.router.classify(sql)
        s = self.session
        if s.failed_elsewhere:
            return self._in_failed_transaction(info, buf, start, end)
        if self.txn_pooling:
            special = self._tx_query_special(info, sql)
            if special is not _GO:
                return special
        decision, prepared = self._follow(info, sql)
        if decision is _WAIT:
            return _WAIT
        if info.deallocate_name not in (None, "*"):
            prepared = s.sql_prepared.get(info.deallocate_name)
        if decision.target is Target.REJECT:
            self._local(m.error_response("42501", decision.reason))
            return None
        if prepared is not None and info.deallocate_name is not None:
            return self._deallocate(info, prepared, sql, buf, start, end)
        if decision.target is Target.BOTH:
            return self._both(info, sql, buf, start, end)
        link = self._target_link(decision)
        if link is _WAIT:
            return _WAIT
        self._prepared_on(link, prepared)
        if self.txn_pooling:
            self._tx_before_query(link, info)
        self._forward(link, buf, start - 5, end, sync=True)
        if info.copy_from_stdin:
            # Syncs the client sends while the server may be in copy-in are ignored
            # there, as after an extended COPY's Execute (see _copy_sync).
            link.copy_started(synced=True)
        self.router.after_statement(s, info, decision, link.node_id, sql)
        if s.implicit_undo is not None:
            self._file_undo(link, synced=True)
        if self.txn_pooling:
            self._tx_after(info, sql, link)
        return None

    def _in_failed_transaction(self, info, buf, start, end):
        """The transaction failed on a standby: only its end may pass, as ROLLBACK."""
        s = self.session
        if info.command == "ROLLBACK TO":
            return self._both(info, info_sql(buf, start, end), buf, start, end)
        if info.command not in ("ROLLBACK", "COMMIT", "PREPARE TRANSACTION"):
            self._local(_ABORTED)
            return None
        # PostgreSQL answers COMMIT of an aborted transaction by rolling back ("ROLLBACK").
        primary = self._link(s.primary_id)
        if isinstance(primary, defer.Deferred):
            return self._wait(primary)
        for link in self.links.values():
            if link is not primary and not link.closed and (
                    link.txn_status != codes.TXN_IDLE or link.inflight):
                self._shadow(link, m.query("ROLLBACK"))
        frame = buf if info.command == "ROLLBACK" else m.query("ROLLBACK")
        if frame is buf:
            self._forward(primary, buf, start - 5, end, sync=True)
        else:
            self._forward(primary, frame, 0, len(frame), sync=True)
        s.failed_elsewhere = False
        self.router.after_statement(s, self.router.classify("ROLLBACK"), None,
                                    primary.node_id, "ROLLBACK")
        return None

    def _deallocate(self, info, prepared, sql: str, buf, start, end):
        """SQL DEALLOCATE: answered by one node holding the statement, shadowed to the rest."""
        nodes = sorted(prepared.nodes)
        link = self._link(nodes[0])
        if isinstance(link, defer.Deferred):
            return self._wait(link)
        for other in nodes[1:]:
            olink = self.links.get(other)
            if olink is not None and not olink.closed:
                self._shadow(olink, m.query(sql))
        self._forward(link, buf, start - 5, end, sync=True)
        self.router.after_statement(self.session, info, None, link.node_id, sql)
        return None

    def _both(self, info, sql: str, buf, start, end):
        """A BOTH statement: the primary answers the client; the LB node gets a shadow copy."""
        s = self.session
        primary = self._link(s.primary_id)
        if isinstance(primary, defer.Deferred):
            return self._wait(primary)
        standby = self._lb_link_if_open()
        key = (id(buf), start)
        if standby is not None and self._shadow_sent != key:
            text = info.standby_text or sql
            # The standby's status is known only once its answers are in: a BEGIN (or a
            # failed statement) still in flight there needs this end too.
            in_txn = standby.txn_status != codes.TXN_IDLE or standby.inflight
            if info.is_transaction_end and in_txn:
                # Pgpool-II's order: COMMIT/ROLLBACK on the standby first, the primary last.
                self._shadow_sent = key
                done = defer.Deferred()
                self._shadow(standby, m.query(text), on_done=lambda: done.callback(None))
                self._flush_out()
                return self._wait(done)
            if not info.is_transaction_end or in_txn:
                self._shadow(standby, m.query(text))
        self._shadow_sent = None
        if self.txn_pooling:
            self._tx_before_query(primary, info)
        self._forward(primary, buf, start - 5, end, sync=True)
        self.router.after_statement(s, info, None, primary.node_id, sql)
        if s.implicit_undo is not None:
            self._file_undo(primary, synced=True)
        if self.txn_pooling:
            self._tx_after(info, sql, primary)
        return None

    def _on_parse(self, code, buf, start, end):
        name, sql_raw, _oids = m.decode_parse(buf[start:end])
        s = self.session
        sql = sql_raw.decode("utf-8", "replace")
        info = self.router.classify_parse(sql)
        if self.skip_until_sync:
            return self._skip(code)
        if s.failed_elsewhere:
            if info.command not in ("ROLLBACK", "COMMIT", "PREPARE TRANSACTION"):
                return self._skip(code)
            # Ending the aborted transaction: COMMIT becomes ROLLBACK, as PostgreSQL does.
            s.failed_elsewhere = False
            if info.command != "ROLLBACK":
                sql = "ROLLBACK"
                info = self.router.classify_parse(sql)
                buf = m.frame(codes.PARSE, m.cstr(name) + m.cstr(sql) + b"\0\0")
                start, end = 5, len(buf)
        decision, prepared = self._follow(info, sql)
        if decision is _WAIT:
            return _WAIT
        if info.deallocate_name not in (None, "*") and info.deallocate_name in s.sql_prepared:
            home = min(s.sql_prepared[info.deallocate_name].nodes)
            decision = _route_node(home)
        if decision.target is Target.BOTH or decision.target is Target.REJECT:
            link = self._target_link(self.router.PRIMARY)
        else:
            link = self._target_link(decision)
        if link is _WAIT:
            return _WAIT
        self._prepared_on(link, prepared)
        stmt = Statement(name, sql, buf[start - 5:end], info, {link.node_id})
        s.statements[name] = stmt
        link.pending_parses.append(stmt)  # confirmed by its ParseComplete
        self._forward(link, buf, start - 5, end)
        self.ordering.parse_sent(self.ordering.open_segment(link))
        return None

    def _insert_parses(self, link, stmts: list[Statement]) -> None:
        """Parse ``stmts`` on ``link`` as part of the client's batch, right where they are
        needed: their ParseCompletes are hidden (Ordering counts Parses per segment), an
        error from one reaches the client in place of the message it breaks."""
        tail = self.ordering.tail_open()
        if tail is not None and tail.link is not link:
            self._close_segment(tail)
        seg = self.ordering.segment(link)
        for stmt in stmts:
            link.pending_parses.append(stmt)  # ParseComplete or an error settles it
            self.ordering.parse_sent(seg, hidden=True)
        self._send(link, b"".join(stmt.parse_frame for stmt in stmts))

    def _statement_link(self, stmt: Statement | None):
        """Where a statement's next use goes: re-routed now, re-parsed there if missing."""
        s = self.session
        if stmt is None:
            return self._current_or_primary()
        # Hot path of prepared workloads: the same statement, the same session state and
        # cluster as last time go to the same link (no re-routing per Bind/Describe).
        placed = stmt.placed
        if placed is not None:
            key, link, sticky = placed
            if (sticky is s.sticky and key == (s.route_status, s.lb_node,
                                               self.proxy.cluster.version)
                    and not link.closed and link.node_id in stmt.nodes
                    and self.links.get(link.node_id) is link):
                return link
        decision, prepared = self._follow(stmt.info, stmt.sql)
        if decision is _WAIT:
            return _WAIT
        if stmt.info.deallocate_name not in (None, "*") and stmt.nodes:
            return self._link_ready(min(stmt.nodes))
        if decision.target is Target.BOTH or decision.target is Target.REJECT:
            decision = self.router.PRIMARY
        link = self._target_link(decision)
        if link is _WAIT:
            return _WAIT
        if link.node_id not in stmt.nodes:
            if s.route_status == "E" and not stmt.info.is_transaction_end:
                # An aborted transaction refuses the Parse; the client must see what
                # PostgreSQL would say of the statement itself: 25P02.
                return _SKIP
            # Parse it there first, inside the client's batch; its ParseComplete is not the
            # client's business, an error from it is.
            stmt.nodes.add(link.node_id)
            self._insert_parses(link, [stmt])
        self._prepared_on(link, prepared)
        s.last_statement = stmt
        info = stmt.info
        if (self.router.cacheable and prepared is None and info.execute_name is None
                and info.deallocate_name is None and info.command not in ("FETCH", "MOVE", "CLOSE")):
            stmt.placed = ((s.route_status, s.lb_node, self.proxy.cluster.version), link,
                           s.sticky)
        return link

    def _link_ready(self, node_id: int):
        link = self._link(node_id)
        return self._wait(link) if isinstance(link, defer.Deferred) else link

    def _current_or_primary(self):
        tail = self.ordering.tail_open()
        if tail is not None:
            return tail.link
        link = self._link(self.session.primary_id)
        return self._wait(link) if isinstance(link, defer.Deferred) else link

    def _on_bind(self, code, buf, start, end):
        if self.session.failed_elsewhere or self.skip_until_sync:
            return self._skip(code)
        portal, name = _cstr_pair(buf, start)
        s = self.session
        stmt = s.statements.get(name)
        if stmt is None and not name:
            return self._no_unnamed_statement()
        link = self._statement_link(stmt)
        if link is _WAIT:
            return _WAIT
        if link is _SKIP:
            return self._skip(code)
        if stmt is not None and stmt.info.route == "both" and self._both_extended(stmt, buf, start):
            return _WAIT
        s.portals[portal] = link.node_id
        self._forward(link, buf, start - 5, end)
        if stmt is not None:
            self._after_bind(stmt, link, portal)
        return None

    def _after_bind(self, stmt: Statement, link, portal: bytes) -> None:
        """Bookkeeping once ``stmt`` is bound on ``link`` (it runs there at Execute)."""
        s = self.session
        if stmt.info.copy_from_stdin:
            link.copy_portals.add(portal)
        else:
            link.copy_portals.discard(portal)
        self.router.after_statement(s, stmt.info, None, link.node_id, stmt.sql)
        if s.implicit_undo is not None:
            self._file_undo(link, synced=False)

    def _both_extended(self, stmt: Statement, buf: bytes, start: int) -> bool:
        """A BOTH statement's Bind: copy it to the open LB link; True while that must finish
        first (a transaction end: the standby ends its transaction before the primary)."""
        standby = self._lb_link_if_open()
        key = (id(buf), start)
        if standby is not None and self._shadow_sent != key:
            if stmt.info.is_transaction_end:
                if standby.txn_status != codes.TXN_IDLE:
                    self._shadow_sent = key
                    done = defer.Deferred()
                    self._shadow(standby, m.query(stmt.sql), on_done=lambda: done.callback(None))
                    self._flush_out()
                    self._wait(done)
                    return True
            else:
                self._shadow(standby, m.query(stmt.info.standby_text or stmt.sql))
        self._shadow_sent = None
        return False

    def _portal_link(self, name: bytes):
        node_id = self.session.portals.get(name)
        if node_id is not None:
            link = self.links.get(node_id)
            if link is not None and not link.closed:
                return link
        return self._current_or_primary()

    def _on_describe(self, code, buf, start, end):
        if self.session.failed_elsewhere or self.skip_until_sync:
            return self._skip(code)
        kind = buf[start]
        name = buf[start + 1:end - 1]
        if kind == 0x53:  # 'S'
            stmt = self.session.statements.get(name)
            if stmt is None and not name:
                return self._no_unnamed_statement()
            link = self._statement_link(stmt)
        else:
            link = self._portal_link(name)
        if link is _WAIT:
            return _WAIT
        if link is _SKIP:
            return self._skip(code)
        self._forward(link, buf, start - 5, end)
        return None

    def _on_execute(self, code, buf, start, end):
        if self.session.failed_elsewhere or self.skip_until_sync:
            return self._skip(code)
        name = buf[start:buf.find(b"\0", start)]
        link = self._portal_link(name)
        if link is _WAIT:
            return _WAIT
        self._forward(link, buf, start - 5, end)
        if name in link.copy_portals:
            link.copy_started(synced=False)
        return None

    def _on_close(self, code, buf, start, end):
        if self.session.failed_elsewhere or self.skip_until_sync:
            return self._skip(code)
        kind = buf[start]
        name = buf[start + 1:end - 1]
        s = self.session
        if kind == 0x53:
            stmt = s.statements.pop(name, None)
            nodes = sorted(stmt.nodes) if stmt else []
            link = self._current_or_primary() if not nodes else self._link(nodes[0])
            if isinstance(link, defer.Deferred):
                return self._wait(link)
            if link is _WAIT:
                return _WAIT
            for other in nodes[1:]:
                olink = self.links.get(other)
                if olink is not None and not olink.closed:
                    self._shadow(olink, buf[start - 5:end] + m.SYNC)
        else:
            node_id = s.portals.pop(name, None)
            link = self.links.get(node_id) if node_id is not None else None
            if link is None or link.closed:
                link = self._current_or_primary()
                if link is _WAIT:
                    return _WAIT
        self._forward(link, buf, start - 5, end)
        return None

    def _no_unnamed_statement(self):
        """The session has no unnamed statement (none parsed, or a Query destroyed it):
        PostgreSQL's error, from pgtwist.  A server's unnamed statement may be pgtwist's
        own (the probe ahead of a Query inside a batch): never the client's to use."""
        return self._tx_fail_extended("26000", "unnamed prepared statement does not exist")

    def _skip(self, code):
        """Extended protocol in an aborted transaction: one error, then nothing until Sync."""
        if not self.skip_until_sync:
            log.debug("session {pid}: aborted transaction, {msg} answered 25P02",
                      pid=self.session.pid, msg=codes.FRONTEND_NAMES.get(code, code))
            self.skip_until_sync = True
            self._local(_ABORTED, ready=False)
        return None

    def _on_sync(self, code, buf, start, end):
        skipping = self._skipping_link
        tail = self.ordering.tail_open()
        if self.skip_until_sync and skipping is not None and tail is not None \
                and tail.link is skipping and not skipping.closed:
            # The server skips to this Sync too: its ReadyForQuery ends the batch.
            self.skip_until_sync = False
            self._forward(skipping, buf, start - 5, end, sync=True)
            return None
        if self.skip_until_sync:
            self.skip_until_sync = False
            status, self.skip_status = self.skip_status, codes.TXN_FAILED
            self._local(b"", status=status)
            return None
        if self.txn_pooling and not self.links and self.ordering.tail_open() is None:
            # Transaction pooling, no link held: nothing of this batch went to a server
            # (all answered by pgtwist) and no transaction is open.
            self._local(b"", status=codes.TXN_IDLE)
            return None
        link = self._current_or_primary()
        if link is _WAIT:
            return _WAIT
        if link.copy_execute and not link.copy_client_done:
            placed = self._copy_sync(link, buf, start, end)
            if placed is not None:
                return placed
        self._forward(link, buf, start - 5, end, sync=True)
        return None

    def _copy_sync(self, link, buf, start, end):
        """A Sync sent after a COPY FROM STDIN (simple or extended) and before the
        client's CopyDone / CopyFail.  The server ignores a Sync that reaches it in
        copy-in (libpq sends one right after the Execute) and answers one otherwise, so
        it waits until the server has answered the COPY.  None: an ordinary Sync.
        (A server that fails the copy on a row before reading such a Sync would answer
        it; pgtwist, which cannot know, keeps to copy-in: one ReadyForQuery fewer.)"""
        if self.copy_link is link:
            # In copy-in the server ignores it, so it is not sent: the server may have
            # failed the copy on a row already (then it would answer this Sync with a
            # ReadyForQuery nobody waits for, or end its skip-to-Sync on it).
            return True
        if link.closed:
            return None
        if link.copy_waiter is None:
            link.copy_waiter = defer.Deferred()
        return self._wait(link.copy_waiter)

    def _on_flush(self, code, buf, start, end):
        tail = self.ordering.tail_open()
        if tail is not None:
            self._send_frame(tail.link, buf, start - 5, end)
        return None

    def _on_function_call(self, code, buf, start, end):
        inside = self._inside_batch()
        if inside is not _GO:
            return inside
        link = self._link(self.session.primary_id)
        if isinstance(link, defer.Deferred):
            return self._wait(link)
        self._forward(link, buf, start - 5, end, sync=True)
        return None

    def _on_copy(self, code, buf, start, end):
        link = self.copy_link or self.primary_link
        if link is not None and not link.closed:
            if code != codes.COPY_DATA:
                link.copy_client_done = True  # CopyDone / CopyFail: copy-in ends
            self._send_frame(link, buf, start - 5, end)
        return None

    def _on_password(self, code, buf, start, end):
        if self.auth is None:
            raise ProtocolViolation("unexpected password message")
        self.auth.receive(buf[start:end])
        return None

    def _on_terminate(self, code, buf, start, end):
        self._flush_out()
        self.close()
        return None

    _handlers = {
        codes.QUERY: _on_query,
        codes.PARSE: _on_parse,
        codes.BIND: _on_bind,
        codes.DESCRIBE: _on_describe,
        codes.EXECUTE: _on_execute,
        codes.CLOSE: _on_close,
        codes.SYNC: _on_sync,
        codes.FLUSH: _on_flush,
        codes.FUNCTION_CALL: _on_function_call,
        codes.COPY_DATA: _on_copy,
        codes.COPY_DONE: _on_copy,
        codes.COPY_FAIL: _on_copy,
        codes.TERMINATE: _on_terminate,
        codes.PASSWORD: _on_password,
    }

    # -- commands answered by pgtwist ----------------------------------------------------------
    def _admin(self, special):
        kind, arg = special
        s = self.session
        if kind == "show" and arg == "pool_nodes":
            self._local(admin.pool_nodes(self.proxy.cluster, s.lb_node))
        elif kind == "show" and arg == "pgtwist_pool":
            self._local(admin.pgtwist_pool(self.proxy.pooling))
        elif kind == "show":
            self._local(admin.pool_version())
        elif kind == "explain":
            info = self.router.classify(arg)
            facts = self._facts(info)
            if facts is _WAIT:
                return _WAIT
            explanation = self.router.explain(info, s, facts, arg)
            node = self.router.node_of(explanation.decision, s)
            self._local(admin.explain_route(explanation, node))
        else:
            self._local(admin.error("42601", f"unknown pgtwist command: {arg[:60]}"))
        return None
