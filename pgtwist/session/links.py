"""The backend links one session holds, keyed by node id.

The primary's link is opened at startup, a load-balance node's when first needed;
in transaction mode links also go back to the pool between transactions and are
taken again (see pgtwist.session.txmode).  A link joining the session first gets
the session's state: its SETs, and the BEGIN of a transaction already open.

Flow control lives here too: a slow client pauses every link (``pause_all``), a
link whose answers wait for their turn is paused until it is (``resume_held``).
"""

from __future__ import annotations

from twisted.internet import defer
from twisted.python.failure import Failure

from ..conn.backend import LoginFailed
from ..logs import logger
from ..pooling.pool import PoolExhausted
from ..wire import codes
from ..wire import messages as m
from ..wire.errors import CONNECTION_FAILURE
from .flow import ValveHandle

log = logger(__name__)

# RESET ALL leaves the role and the session user alone (GUC_NO_RESET_ALL).  A SET SESSION
# AUTHORIZATION the session sent itself pins it; one run inside a function is undone here.
_RESET_ALL = m.query("SET SESSION AUTHORIZATION DEFAULT; RESET ROLE; RESET ALL")


class LinkUnavailable(Exception):
    def __init__(self, error: bytes):
        super().__init__("no backend link")
        self.error = error


class LinkSet(dict):
    """node id -> BackendLink, with what opening, releasing and pausing them takes.

    ``owner`` (an ILinkOwner: the session's relay) receives each link's stream once it
    joins; ``mode`` (the pool-mode strategy) decides what releasing keeps.
    """

    def __init__(self, session, ordering, outbox, pooling, cluster, send_cancel,
                 client_valve, owner, mode=None) -> None:
        super().__init__()
        self.session = session
        self.ordering = ordering
        self.out = outbox
        self.pooling = pooling
        self.cluster = cluster
        self.send_cancel = send_cancel
        self.client_valve = client_valve
        self.owner = owner
        self.mode = mode
        self.primary = None          # the link to the session's primary, while held
        self.opening: dict[int, defer.Deferred] = {}
        self.errors: dict[int, bytes] = {}  # node -> error for the frame that waited
        self.secret = None           # what backend logins use once the client is in
        self.poolable = True         # False when the servers checked the client's password
        self.paused = False          # the client's send buffer is full
        self.held: set = set()       # paused until their answers' turn comes
        self.holding = False         # some link is in ``held``
        self.keys: dict = {}         # node id -> the session's pool key there
        # node id -> a link parked in the pool between transactions (transaction mode):
        # idle there for anyone, but taken back cheaply while no one else took it.
        self.parked: dict = {}

    # -- getting one ------------------------------------------------------------------------
    def link(self, node_id: int):
        """The ready link to ``node_id``, or a Deferred while it opens.

        Raises LinkUnavailable when the last attempt to get one failed (pool exhausted,
        server down): the frame that waited for it gets that error instead of waiting again.
        """
        if self.errors:
            error = self.errors.pop(node_id, None)
            if error is not None:
                raise LinkUnavailable(error)
        link = self.get(node_id)
        if link is not None and not link.closed:
            return link
        d = self.opening.get(node_id)
        if d is None:
            if self.parked:
                link = self.parked.get(node_id)
                if link is not None and self.unpark(link):
                    return link
            node = self.cluster.nodes[node_id]
            if self.poolable:
                # A cached link at once (transaction mode takes one per transaction): no
                # Deferred round.
                key = self.keys.get(node_id)
                if key is None:
                    key = self.keys[node_id] = self.pooling.key_for(self.session, node_id)
                link = self.pooling.take_idle(key, self.session)
                if link is not None:
                    if self.adopt(link, node) is None:
                        return defer.Deferred()  # the session closed: nothing waits
                    return self._opened(link, node_id)
            d = self.open(node, self.secret)
            self.opening[node_id] = d
            d.addCallback(self._opened, node_id)
            d.addErrback(self._failed, node_id)
            if node_id not in self.opening:  # a pooled link, handed over at once
                link = self.get(node_id)
                if link is not None and not link.closed:
                    return link
        waiter = defer.Deferred()
        d.addBoth(lambda r: (waiter.callback(None), r)[1])
        return waiter

    def lb_if_open(self):
        """The load-balance node's link if the session holds one (and it is not the primary)."""
        s = self.session
        if s.lb_node is None or s.lb_node == s.primary_id:
            return None
        link = self.get(s.lb_node)
        return link if link is not None and not link.closed else None

    def open(self, node, secret, fresh: bool = False):
        d = self.pooling.checkout(self.session, node, secret, pooled=self.poolable, fresh=fresh)
        return d.addCallbacks(self.adopt, self._open_failed, callbackArgs=(node,),
                              errbackArgs=(node,))

    def adopt(self, link, node):
        """A link checked out for this session becomes one of its links."""
        self.cluster.mark_up(node.node_id)
        if self.session.closed:
            self.mode.release_unused(link)
            return None
        self[node.node_id] = link
        link.transport.registerProducer(ValveHandle(self.client_valve), True)
        if self.paused:
            link.transport.pauseProducing()
        link.attach(self.owner)
        return link

    def _opened(self, link, node_id: int):
        self.opening.pop(node_id, None)
        if link is None:
            return None
        s = self.session
        # Put the session's state on this link: its SETs (after a RESET ALL if the link
        # carries another session's), then the open transaction.
        want = tuple(s.replay)
        replay = []
        server = link.server
        if server.last_session is not None and server.last_session is not s:
            # Another session ran statements here since the last reset.  What they
            # changed is not all visible to pgtwist (DO blocks, functions with SET
            # clauses, set_config inside functions): put everything back first.
            replay.append(_RESET_ALL)
            replay.extend(m.query(sql) for sql in want)
        elif server.applied != want:
            if server.applied:
                replay.append(_RESET_ALL)
            replay.extend(m.query(sql) for sql in want)
        server.applied = want
        server.applied_by = s
        server.last_session = s
        if node_id == s.primary_id:
            # (Only transaction mode gets here: a session-mode session keeps its primary
            # link from startup to its end.)
            self.primary = link
            self.ordering.primary = link
        if s.txn_begin_for_standby:
            replay.append(m.query(s.txn_begin_for_standby))
        if replay:
            self.out.shadow(link, b"".join(replay), syncs=len(replay))
            if not getattr(self.owner, "_draining", False):
                # Opened while no client frame is being routed: nothing else will flush.
                # (While one is, the frame that needed the link follows in the same write.)
                self.out.flush()
        return link

    def _failed(self, failure: Failure, node_id: int):
        self.opening.pop(node_id, None)
        s = self.session
        if s.closed:
            return None  # e.g. the checkout cancelled by close()
        exc = failure.value
        if failure.check(PoolExhausted):
            why = exc.message
            error = m.error_response(exc.sqlstate, exc.message)
        elif failure.check(LoginFailed):
            why = exc.fields.get("M", "login failed")
            error = m.error_response(exc.fields.get("C", CONNECTION_FAILURE),
                                     f"could not connect to node {node_id}: {why}")
        else:
            why = failure.getErrorMessage()
            error = m.error_response(CONNECTION_FAILURE,
                                     f"could not connect to node {node_id}: {why}")
        log.warn("session {pid}: could not open a link to node {node}: {why}",
                 pid=s.pid, node=node_id, why=why)
        if s.lb_node == node_id and node_id != s.primary_id:
            # Reads fall back to the primary without bothering the client.
            s.lb_node = self.cluster.primary_id
        else:
            self.errors[node_id] = error
        return None

    def _open_failed(self, failure: Failure, node):
        if failure.check(LoginFailed):
            self.login_failed(node, failure.value)
        return failure

    def login_failed(self, node, exc: LoginFailed) -> None:
        if exc.sqlstate == CONNECTION_FAILURE:
            self.cluster.mark_down(node.node_id)

    # -- giving them back ------------------------------------------------------------------
    def release(self, link) -> None:
        """Give a link back to the pool; one still busy is cancelled and closed instead."""
        s = self.session
        server = link.server
        busy = link is s.copy_link or self.ordering.busy(link)
        log.debug("session {pid}: releasing node {node} link (inflight {n}, copy {c}, "
                  "segments {seg}, fatal {f})", pid=s.pid, node=link.node_id,
                  n=self.ordering.inflight(link), c=link is s.copy_link,
                  seg=self.ordering.busy(link), f=server.fatal_seen)
        if busy and not link.closed:
            self.send_cancel(link)
            if link is s.copy_link:
                link.write(m.frame(codes.COPY_FAIL, m.cstr("client disconnected")))
        link.owner = None
        self.held.discard(link)
        keep = self.mode.keeps_link(link, busy)
        if keep and server.applied_by is s:
            server.applied = tuple(s.replay)
        self.pooling.release(link, clean=not busy and not server.fatal_seen, reset=not keep)

    def give_back(self, link) -> None:
        """An idle link leaves the session between transactions, keeping its state."""
        del self[link.node_id]
        if link is self.primary:
            self.primary = None
            self.ordering.primary = None
        self.ordering.drop_link(link)
        self.held.discard(link)
        server = link.server
        if server.applied_by is self.session:
            server.applied = tuple(self.session.replay)
        self.pooling.release(link, clean=True, reset=False)

    def park(self, link) -> None:
        """An idle link leaves the session between transactions (as :meth:`give_back`),
        but stays ready for it: while no one else takes it from the pool, taking it back
        costs no checkout, no flow-control set-up and no statement look-ahead."""
        if link.cancelling or link.unpooled:
            self.give_back(link)
            return
        if not self.pooling.pool.park(link, self._taken):
            self.give_back(link)
            return
        del self[link.node_id]
        if link is self.primary:
            self.primary = None
            self.ordering.primary = None
        self.ordering.drop_link(link)
        server = link.server
        if link in self.held or self.paused:
            self.held.discard(link)
            link.transport.resumeProducing()  # an idle link in the pool reads its socket
        if server.applied_by is self.session:
            server.applied = tuple(self.session.replay)
        server.applied_by = None
        self.parked[link.node_id] = link

    def unpark(self, link) -> bool:
        """Take a parked link back; False if someone else has it now."""
        if not self.pooling.unpark(link, self._taken):
            return False
        node_id = link.node_id
        del self.parked[node_id]
        self[node_id] = link
        if self.paused:
            link.transport.pauseProducing()
        link.attach(self.owner)
        self._opened(link, node_id)
        return True

    def _taken(self, link) -> None:
        """The pool gave our parked link to someone else (or closed it)."""
        if self.parked.get(link.node_id) is link:
            del self.parked[link.node_id]
        transport = link.transport
        if transport is not None and not link.closed:
            if getattr(transport, "producer", None) is not None:
                transport.unregisterProducer()

    def forget(self, link) -> None:
        """``link`` was lost."""
        if self.get(link.node_id) is link:
            del self[link.node_id]
            # Its slot under backend_max_connections is free again: close() releases
            # only the links still held.
            link.owner = None
            self.pooling.release(link, clean=False)

    def close(self) -> None:
        for d in list(self.opening.values()):
            d.cancel()  # leave the pool's queue: nobody will use that link now
        for link in list(self.values()):
            self.release(link)
        self.clear()
        for link in list(self.parked.values()):
            if self.pooling.pool.unpark(link, self._taken):  # given back just below
                del self.parked[link.node_id]
                self.pooling.release(link, clean=True, reset=False)
        self.parked.clear()

    def cancel_all(self) -> None:
        """The client's CancelRequest: cancel what each busy link's server runs."""
        for link in list(self.values()):
            if self.ordering.busy(link):
                log.debug("session {pid}: cancelling node {node} (inflight {n})",
                          pid=self.session.pid, node=link.node_id,
                          n=self.ordering.inflight(link))
                self.send_cancel(link)

    # -- flow control -----------------------------------------------------------------------
    def hold(self, link) -> None:
        """``link`` holds too much for a client busy with another link's answers."""
        link.transport.pauseProducing()
        self.held.add(link)
        self.holding = True

    def resume_held(self) -> None:
        """Resume links paused for holding too much, once their turn has come."""
        fifo = self.ordering.fifo
        head = fifo[0].link if fifo else None
        still = False
        held = self.held
        for other in self.values():
            if other in held and not other.closed:
                if other is head or head is None:
                    held.discard(other)
                    if not self.paused:
                        other.transport.resumeProducing()
                else:
                    still = True
        self.holding = still

    def pause_all(self) -> None:
        self.paused = True
        for link in self.values():
            if not link.closed:
                link.transport.pauseProducing()

    def resume_all(self) -> None:
        self.paused = False
        for link in self.values():
            if not link.closed and link not in self.held:
                link.transport.resumeProducing()
