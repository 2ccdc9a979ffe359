"""COPY FROM STDIN as a session sees it: the client's copy messages, and the messages
and Syncs it sends while a COPY may hold its server in copy-in.

PostgreSQL ignores a Sync that reaches it in copy-in and answers one otherwise; it ends
the connection when any other message arrives in copy-in.  pgtwist cannot see the
server's state before the server answers, so it waits for that answer where it matters
(CopyInResponse, or the COPY's error or end: ``ServerState.copy_*``).
"""

from __future__ import annotations

from twisted.internet import defer

from ..wire import codes
from ..wire import messages as m
from ..wire.errors import PROTOCOL_VIOLATION, ProtocolViolation


class CopyIn:
    def __init__(self, session, outbox, links, ordering, placement) -> None:
        self.session = session
        self.out = outbox
        self.links = links
        self.ordering = ordering
        self.place = placement
        self._copying: set = set()   # links a COPY FROM STDIN went to (pruned as they end)

    def started(self, link, simple: bool = False) -> None:
        """A COPY FROM STDIN was just sent to ``link``."""
        link.server.copy_started(simple)
        self.ordering.copy_sent(link)
        self._copying.add(link)

    def guarded(self, handler):
        """``handler``, first checking for a COPY FROM STDIN that may hold its server in
        copy-in (see _during)."""
        copying = self._copying
        links = self.links

        def guarded(code, buf, start, end):
            if copying:  # (empty but for a COPY in flight: the hot path is this test)
                for link in list(copying):
                    if (link.server.copy_execute and not link.closed
                            and links.get(link.node_id) is link):
                        return self._during(link, handler, code, buf, start, end)
                    copying.discard(link)  # ended, or no longer the session's link
            return handler(code, buf, start, end)

        return guarded

    def _during(self, link, handler, code, buf, start, end):
        """A message that is not a COPY one (nor Sync / Flush) while a COPY FROM STDIN sent
        to ``link`` is unanswered or in copy-in.  PostgreSQL in copy-in answers such a
        message with "unexpected message type during COPY from stdin" and, the protocol
        being out of step, ends the connection; pgtwist does the same, without sending it
        (a server that failed the copy on a row meanwhile would run it instead, with
        answers pgtwist would not expect).  It waits until the server says whether it is
        in copy-in (CopyInResponse, or the COPY's error or end), and routes the message
        as usual once it is not.  Routed elsewhere at once, its answers (and those of the
        messages after it) waited behind the COPY's, which only the client's copy
        messages end, sent after them: the session hung."""
        s = self.session
        server = link.server
        if s.copy_link is link and server.copy_in_unended():
            self.out.write(m.error_response(
                PROTOCOL_VIOLATION, f"unexpected message type 0x{code:02X} during COPY from stdin"))
            raise ProtocolViolation("terminating connection because protocol synchronization "
                                    "was lost")
        if not server.copy_client_done or server.copy_simple:
            # Not answered yet, or (a simple Query) it may go on into another COPY.
            if server.copy_waiter is None:
                server.copy_waiter = defer.Deferred()
            # Looked at again after the rest of the server's chunk (the copy may have
            # failed on a row already: an ErrorResponse right after the CopyInResponse).
            later = defer.Deferred()
            server.copy_waiter.addCallback(
                lambda result: (self.place.call_soon(later.callback, None), result)[1])
            return self.place.wait(later)
        return handler(code, buf, start, end)

    def sync(self, link):
        """A client Sync about to go to ``link``: None to send it as usual, else the
        handler's answer (True: not sent; a wait for the server's answer to a COPY)."""
        server = link.server
        if server.copy_client_done and server.copy_execute and server.copy_simple:
            # After the client's CopyDone, a simple Query may go on into another COPY
            # FROM STDIN, in whose copy-in the server ignores this Sync.
            if server.copy_in_unended():
                return True  # it is in a copy-in the client has not ended: not sent
            # Wait for the server to say: a new CopyInResponse, or the Query's end.
            if server.copy_waiter is None:
                server.copy_waiter = defer.Deferred()
            return self.place.wait(server.copy_waiter)
        if server.copy_execute and not server.copy_client_done:
            return self._sync_in_copy(link)
        return None

    def _sync_in_copy(self, link):
        """A Sync sent after a COPY FROM STDIN (simple or extended) and before the
        client's CopyDone / CopyFail.  The server ignores a Sync that reaches it in
        copy-in (libpq sends one right after the Execute) and answers one otherwise, so
        it waits until the server has answered the COPY.  None: an ordinary Sync.
        (A server that fails the copy on a row before reading such a Sync would answer
        it; pgtwist, which cannot know, keeps to copy-in: one ReadyForQuery fewer.)"""
        if self.session.copy_link is link:
            # In copy-in the server ignores it, so it is not sent: the server may have
            # failed the copy on a row already (then it would answer this Sync with a
            # ReadyForQuery nobody waits for, or end its skip-to-Sync on it).
            return True
        if link.closed:
            return None
        server = link.server
        if server.copy_waiter is None:
            server.copy_waiter = defer.Deferred()
        return self.place.wait(server.copy_waiter)

    def on_copy(self, code, buf, start, end):
        link = self.session.copy_link or self.links.primary
        if link is not None and not link.closed:
            if code != codes.COPY_DATA:
                link.server.copy_ended()  # CopyDone / CopyFail: copy-in ends
            self.out.send_frame(link, buf, start - 5, end)
        return None
