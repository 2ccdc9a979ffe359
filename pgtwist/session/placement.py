"""Where a client message goes: routing decisions turned into links.

Shared by the client-message handlers (pgtwist.session.requests) and the pool modes
(pgtwist.session.modes, txmode).  Every method answers with a value, a link, or
``WAIT`` after arranging for the same frame to be routed again once what it needs (a
catalog fact, a link still opening, a standby's COMMIT) is at hand.
"""

from __future__ import annotations

from twisted.internet import defer

from ..logs import SETTINGS, logger
from ..pooling.statements import raise_sql
from ..routing.rules import prepared_body_sql
from ..routing.values import Target, node
from ..wire import codes
from ..wire import messages as m
from .consistency import read_decided
from .links import LinkUnavailable

log = logger(__name__)

WAIT = object()  # a frame handler's answer: retry this frame after the wait
SKIP = object()  # answer the client 25P02 and ignore the batch up to Sync
GO = object()    # a mode hook has nothing special to do: route as usual
ABORTED = m.error_response(
    "25P02", "current transaction is aborted, commands ignored until end of transaction block")
_PROBE_FRAMES = m.frame(codes.PARSE, b"\0\0\0\0") + m.FLUSH  # unnamed, empty text; Flush


class CatalogUnavailable(Exception):
    pass


class SkipProbe:
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
        self.settled = defer.Deferred()  # fired by Replies at its ParseComplete or error


def route_node(node_id: int, holds: str = "the cursor"):
    return node(node_id, f"node {node_id}: holds {holds}").by("relay")


def info_sql(buf: bytes, start: int, end: int) -> str:
    return buf[start:end - 1].decode("utf-8", "replace")


def cstr_pair(buf: bytes, start: int) -> tuple[bytes, bytes]:
    """The first two NUL-terminated strings of a (validated) body."""
    a = buf.find(b"\0", start)
    b = buf.find(b"\0", a + 1)
    return buf[start:a], buf[a + 1:b]


class Placement:
    logset = SETTINGS   # the session's logging switches and SessionLog (set by the relay)
    slog = None
    stats = None  # pgtwist.metrics.stats.Stats: routing decisions carried out are counted

    def __init__(self, session, outbox, links, ordering, router, cluster, wait,
                 call_soon) -> None:
        self.session = session
        self.out = outbox
        self.links = links
        self.ordering = ordering
        self.router = router
        self.cluster = cluster
        self.wait = wait               # wait(deferred) -> WAIT: retry the frame when it fires
        self.call_soon = call_soon     # call_soon(f, *args): run f in a later reactor turn
        self._looked_up = None         # (info, facts) fetched for the frame being retried
        self._shadow_sent = None       # (buffer id, offset) of a BOTH frame whose copy went

    # -- decisions -------------------------------------------------------------------------
    def facts(self, info):
        """Catalog facts for ``info``, or WAIT while they are looked up."""
        s = self.session
        looked = self._looked_up
        if looked is not None and looked[0] is info:
            self._looked_up = None
            return looked[1]
        facts = self.router.facts(s.database, info, s)
        if facts is not None:
            return facts
        d = self.router.lookup(s.database, info, self.catalog_query)

        def keep(facts):
            self._looked_up = (info, facts)  # used by the retry of this same frame

        return self.wait(d.addCallback(keep))

    def decide(self, info, sql: str):
        """RouteDecision for ``info`` now, or WAIT while catalog facts load."""
        facts = self.facts(info)
        if facts is WAIT:
            return WAIT
        decision = self.router.decide(info, self.session, facts, sql)
        if self.router.lsn_on:
            return read_decided(self, info, decision)
        return decision

    def follow(self, info, sql: str):
        """Decision for a statement that uses another: SQL EXECUTE runs where (and as) its
        PREPARE does; FETCH/MOVE/CLOSE of a protocol-level portal go to that portal's node.

        Returns (decision or WAIT, the SqlPrepared being executed or None).
        """
        s = self.session
        if info.execute_name is not None:
            prepared = s.sql_prepared.get(info.execute_name)
            if prepared is not None:
                # Routed like its body: the text the policies see is the body too.
                return self.decide(prepared.info, prepared_body_sql(prepared.sql)), prepared
        elif info.command in ("FETCH", "MOVE", "CLOSE") and s.portals:
            name = info.cursor_name
            node_id = s.portals.get(name.encode()) if name else None
            if node_id is not None:
                return route_node(node_id), None
        return self.decide(info, sql), None

    def catalog_query(self, sql: str) -> defer.Deferred:
        """Rows of ``sql`` run on the session's own primary link, unseen by the client.

        Catalog lookups go where the session's statements go, so they need no
        connection of their own and count against the same limits (Pgpool-II also runs
        them on the session's backend connection, inside its transaction if one is open).
        """
        s = self.session
        if s.closed:
            # The retry below, after the session closed while waiting for its link: a
            # link checked out now would be handed straight back, and the lookup retried
            # again, recursively (or queued for a link nobody will use).
            return defer.fail(CatalogUnavailable("the session is closed"))
        if s.route_status == "E" or s.failed_elsewhere or s.skip_until_sync:
            return defer.fail(CatalogUnavailable("the session's transaction is aborted"))
        tail = self.ordering.tail_open()
        if tail is not None and not tail.link.closed:
            # The lookup's Query would end the client's unsynced batch part: end it with
            # pgtwist's own Sync and wait for its answers first (end_part), so that an
            # error in it makes pgtwist skip the rest of the batch, as the server would.
            wait = self.end_part(None)
            if wait is not None:
                return wait.addCallback(lambda _: self.catalog_query(sql))
        try:
            link = self.links.link(s.primary_id)
        except LinkUnavailable as exc:
            # The frame waiting for these facts needs that link too: it gets the error.
            self.links.errors[s.primary_id] = exc.error
            return defer.fail(CatalogUnavailable("no link to the primary"))
        if isinstance(link, defer.Deferred):
            return link.addCallback(lambda _: self.catalog_query(sql))
        captured: list[bytes] = []
        done = defer.Deferred()
        self.out.shadow(link, m.query(sql), capture=captured,
                        on_done=lambda: done.callback(None))
        self.out.flush()
        return done.addCallback(lambda _: m.query_rows(b"".join(captured)))

    # -- links -------------------------------------------------------------------------------
    def target_link(self, decision):
        """The link for a single-node decision (PRIMARY / EITHER / NODE), or a wait."""
        target = decision.target
        s = self.session
        if target is Target.NODE:
            node_id = decision.node
        elif target is Target.EITHER:
            node_id = s.lb_node
        else:
            node_id = s.primary_id
        if node_id is None or not self.cluster.usable(node_id):
            node_id = s.primary_id
        link = self.link_ready(node_id)
        if link is not WAIT and self.stats is not None:
            self.stats.route(decision, node_id)
        return link

    def link_ready(self, node_id: int):
        """The ready link to ``node_id`` for the client's frame being routed, or WAIT (while
        it opens, or while the batch's open part on another node is answered: end_part).
        Catalog lookups, not part of the batch, take links.link directly."""
        wait = self.end_part(node_id)
        if wait is not None:
            return self.wait(wait)
        link = self.links.link(node_id)
        return self.wait(link) if isinstance(link, defer.Deferred) else link

    def current_or_primary(self):
        tail = self.ordering.tail_open()
        if tail is not None:
            return tail.link
        return self.link_ready(self.session.primary_id)

    def portal_link(self, name: bytes):
        node_id = self.session.portals.get(name)
        if node_id is not None:
            link = self.links.get(node_id)
            if link is not None and not link.closed:
                tail = self.ordering.tail_open()
                if tail is None or tail.link is link:
                    return link  # the batch goes on where it is (the common case)
                wait = self.end_part(node_id)
                return link if wait is None else self.wait(wait)
        return self.current_or_primary()

    def copy_to_standby(self, is_end: bool, end_text: str, text: str, buf: bytes,
                        start: int) -> bool:
        """A BOTH statement: a shadow copy goes to the open LB link.  True while it must
        finish first (a transaction end: Pgpool-II ends the standby's transaction first,
        the primary's last); the frame is then routed again, without a second copy."""
        standby = self.links.lb_if_open()
        key = (id(buf), start)
        if standby is not None and self._shadow_sent != key:
            # The standby's status is known only once its answers are in: a BEGIN (or a
            # failed statement) still in flight there needs this end too.
            in_txn = (standby.server.txn_status != codes.TXN_IDLE
                      or self.ordering.inflight(standby) > 0)
            if is_end and in_txn:
                self._shadow_sent = key
                done = defer.Deferred()
                self.out.shadow(standby, m.query(end_text), on_done=lambda: done.callback(None))
                if self.logset.per_node_statement:
                    self.slog.per_node(standby, "", end_text)
                self.out.flush()
                self.wait(done)
                return True
            if not is_end or in_txn:
                self.out.shadow(standby, m.query(text))
                if self.logset.per_node_statement:
                    self.slog.per_node(standby, "", text)
        self._shadow_sent = None
        return False

    # -- batches the server may be skipping ---------------------------------------------------
    def end_part(self, node_id):
        """A message of the client's batch goes to ``node_id`` while the batch's open part
        is on another node: pgtwist ends that part with its own Sync and waits for its
        answers before sending anything more (a Deferred; None: nothing to wait for).
        If the part failed, PostgreSQL would skip every message after the error up to the
        client's Sync, on whatever node pgtwist would send it: nothing more of the batch
        runs, nor reaches the client (no second error, no ParseComplete after the error).
        """
        tail = self.ordering.tail_open()
        if tail is None or tail.link.node_id == node_id or tail.link.closed:
            return None
        self.out.close_segment(tail)
        done = defer.Deferred()
        before = tail.on_done
        s = self.session

        def ended():
            if before is not None:
                before()
            if tail.error and not s.skip_until_sync:
                s.skip_until_sync = True
                s.skip_status = codes.TXN_IDLE if s.route_status == "I" else codes.TXN_FAILED
            # After the answers being relayed now are written: they come first.
            self.call_soon(done.callback, None)

        tail.on_done = ended
        return done

    def inside_batch(self):
        """Whether a Query/FunctionCall may run now: GO, None when discarded (the batch
        failed: the server skips to Sync, as does pgtwist), or WAIT for the probe."""
        s = self.session
        if s.skip_until_sync:
            return None  # PostgreSQL ignores a Query while skipping to Sync
        tail = self.ordering.tail_open()
        probe = s.probe
        if tail is None:
            s.probe = None
            return GO
        if s.route_status == "E":
            # An aborted transaction refuses the probe's Parse whether or not the server
            # skips already, so the part is ended instead and its answers awaited: after an
            # error in it the Query is skipped (no answer at all from the server), else it
            # runs and gets its 25P02.
            s.probe = None
            wait = self.end_part(None)
            return GO if wait is None else self.wait(wait)
        if probe is not None and probe.segment is not tail:
            # Left from an earlier batch (its message was skipped another way): it says
            # nothing about this one.
            probe = s.probe = None
        link = tail.link
        if s.skipping_link is not link and (probe is None or not probe.settled.called):
            if probe is None:
                probe = s.probe = SkipProbe(tail)
                link.server.pending_parses.append(probe)
                self.ordering.parse_sent(tail, hidden=True)
                self.out.send(link, _PROBE_FRAMES)
            return self.wait(probe.settled)
        s.probe = None
        if s.skipping_link is link or (probe is not None and probe.segment.error):
            log.debug("session {pid}: a Query inside a failed batch is discarded", pid=s.pid)
            s.skip_until_sync = True
            return None
        # The probe replaced the server's unnamed statement: never bind the wrong one.
        link.server.unnamed = None
        unnamed = s.statements.get(b"")
        if unnamed is not None:
            unnamed.nodes.discard(link.node_id)
        return GO

    def skip(self, code):
        """Extended protocol in an aborted transaction: one error, then nothing until Sync."""
        s = self.session
        if not s.skip_until_sync:
            log.debug("session {pid}: aborted transaction, {msg} answered 25P02",
                      pid=s.pid, msg=codes.FRONTEND_NAMES.get(code, code))
            s.skip_until_sync = True
            self.out.local(ABORTED, ready=False)
        return None

    def fail_extended(self, sqlstate: str, message: str):
        """An error PostgreSQL would raise for this message; the batch is skipped to Sync.

        The error must abort the transaction the server runs, explicit (or a later COMMIT
        would commit what PostgreSQL rolls back) or the implicit one of the batch's
        messages already sent: the server raises it, from a Query that ends this part of
        the batch (its ReadyForQuery is pgtwist's), unless it failed that part first.
        """
        s = self.session
        tail = self.ordering.tail_open()
        if s.route_status == "E" and tail is not None:
            # An aborted transaction: the server need not raise it (nothing is left to
            # abort), and the skip probe cannot tell whether it skips this part already
            # (it would refuse the probe's Parse either way).  The part is ended and its
            # answers awaited: after its error, this message is skipped like the rest.
            wait = self.end_part(None)
            if wait is not None:
                return self.wait(wait)
        if s.route_status == "T":
            link = self.links.get(s.primary_id)
        else:
            link = tail.link if tail is not None else None
        if link is not None and tail is not None and tail.link is link:
            # The raising Query would join the client's unsynced batch: first make sure
            # the server is not skipping it already (then this message is skipped too).
            inside = self.inside_batch()
            if inside is not GO:
                return inside
        s.skip_until_sync = True
        s.skip_status = codes.TXN_IDLE if s.route_status == "I" else codes.TXN_FAILED
        if link is None or link.closed:
            self.out.local(m.error_response(sqlstate, message), ready=False)
            return None
        self.out.own_sync(link, m.query(raise_sql(sqlstate, message)))
        return None

    def unavailable(self, code: int, error: bytes) -> None:
        """The frame being routed needed a link that could not be had: it fails alone."""
        s = self.session
        if code in (codes.QUERY, codes.FUNCTION_CALL, codes.SYNC):
            self.out.local(error, status=ord(s.route_status))
        else:  # the extended protocol: this error, then nothing until Sync
            s.skip_until_sync = True
            s.skip_status = ord(s.route_status)
            self.out.local(error, ready=False)
