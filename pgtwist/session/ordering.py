"""Keep responses in the client's order when a session uses several backends.

Every group of client messages sent to one backend link is a *segment*; a
segment ends with at most one sync point (Query, Sync or FunctionCall), whose
ReadyForQuery completes it.  Forwarded segments form one FIFO in the order the
client sent them: a link's bytes go to the client only while its segment is at
the head, otherwise they are held (and the caller pauses that link).  Shadow
segments (a BOTH statement's copy on the standby, a replayed SET, a re-Parse)
are consumed silently and never block the client.

Sans-IO: links are any hashable objects; this module never touches sockets.
"""

from __future__ import annotations

from collections import deque
from time import perf_counter

from ..wire import codes

# Event code of a ParameterStatus the client does not see (from pgtwist's own traffic).
SHADOW_PARAMETER_STATUS = 0x100 | codes.PARAMETER_STATUS
# Event "code" after an ErrorResponse whose segment had bookkeeping filed to undo: its
# "body" is that list of records, newest first.
UNDO = 0x200
# Event "code" when a segment carrying a COPY FROM STDIN got its answer without copy-in:
# an ErrorResponse in it (the COPY, or a statement before it, failed), or its
# ReadyForQuery.  Its "body" is empty.
COPY_SETTLED = 0x300

# Held bytes above which the caller should stop reading that link.
HOLD_LIMIT = 1 << 20


class Segment:
    __slots__ = ("link", "forward", "pending", "closed", "held", "held_bytes", "swallow_z",
                 "local", "on_done", "parses", "parses_seen", "hidden", "capture", "undo", "copy",
                 "error", "t0")

    def __init__(self, link, forward: bool):
        self.link = link
        self.forward = forward
        self.pending = 0          # sync points sent, ReadyForQuery not yet seen
        self.closed = False       # no more client messages join this segment
        self.held: list[bytes] = []
        self.held_bytes = 0
        self.swallow_z = False    # the sync point was pgtwist's own: hide its ReadyForQuery
        self.local = False        # a response pgtwist made itself (SHOW pool_nodes...)
        self.on_done = None       # callable run when the segment completes
        # Parse messages sent in this segment, ParseCompletes received, and the ordinals
        # of those that answer pgtwist's own Parses: hidden from the client (an error from
        # one is the client's: it ends the batch like one of its own would).
        self.parses = 0
        self.parses_seen = 0
        self.hidden: set[int] | None = None
        self.capture: list[bytes] | None = None  # a shadow whose bytes pgtwist reads itself
        self.undo: list | None = None  # records an error in this segment voids (see UNDO)
        self.copy = False         # a COPY FROM STDIN went in it (see COPY_SETTLED)
        self.error = False        # an ErrorResponse came in this segment
        self.t0 = 0.0             # when its client sync point was sent (latency timing on)

    @property
    def done(self) -> bool:
        return self.closed and self.pending == 0

    def __repr__(self) -> str:  # pragma: no cover - debugging aid
        return (f"<Segment link={self.link!r} fwd={self.forward} pending={self.pending} "
                f"closed={self.closed} held={self.held_bytes}>")


class Ordering:
    def __init__(self) -> None:
        self.fifo: deque[Segment] = deque()        # forwarded segments, client order
        self.by_link: dict[object, deque[Segment]] = {}
        self.primary = None                        # link whose unsolicited messages are forwarded
        self.held_by_link: dict[object, int] = {}  # bytes each link has waiting for its turn
        # Unsolicited primary messages wait for a frame boundary in the client stream.
        self.async_held: list[bytes] = []
        # Links whose last client-visible answer ended in a failed transaction ('E').
        self.failed: set = set()
        # Per link, for each ErrorResponse event not yet taken (error_of): the segment it
        # came in (None: unsolicited) and how many Parses of that segment were unanswered.
        # The server skips those, and only those: a Parse sent after the segment's sync
        # point (pgtwist's own Sync, when it split a batch) is still answered.
        self.errors: dict[object, deque] = {}
        # pgtwist.metrics.stats.Histogram of client sync point -> ReadyForQuery, or None;
        # ``done_t0``: the send time of the last timed segment completed.
        self.latency = None   # set by the session; Outbox.forward stamps Segment.t0
        self.done_t0 = 0.0

    def error_of(self, link) -> tuple:
        """(segment or None, unanswered Parses) of ``link``'s oldest ErrorResponse event."""
        q = self.errors.get(link)
        return q.popleft() if q else (None, 0)

    # -- sending side -------------------------------------------------------------
    def open_segment(self, link) -> Segment | None:
        """The link's segment still accepting messages, if it is the newest one."""
        if self.fifo:
            tail = self.fifo[-1]
            if tail.link is link and not tail.closed:
                return tail
        return None

    def tail_open(self) -> Segment | None:
        """The newest forwarded segment if it is still open (a batch without Sync yet)."""
        if self.fifo and not self.fifo[-1].closed and not self.fifo[-1].local:
            return self.fifo[-1]
        return None

    def segment(self, link, forward: bool = True) -> Segment:
        """The open forwarded segment of ``link``, or a new one (shadow if not forward)."""
        if forward:
            seg = self.open_segment(link)
            if seg is not None:
                return seg
        seg = Segment(link, forward)
        if forward:
            self.fifo.append(seg)
        self.by_link.setdefault(link, deque()).append(seg)
        return seg

    @staticmethod
    def parse_sent(seg: Segment, hidden: bool = False) -> None:
        """A Parse joined ``seg``; ``hidden``: pgtwist's own, its ParseComplete not shown."""
        seg.parses += 1
        if hidden:
            if seg.hidden is None:
                seg.hidden = set()
            seg.hidden.add(seg.parses)

    @staticmethod
    def synced(seg: Segment, own: bool = False) -> None:
        """A sync point was sent in ``seg``; it completes with the next ReadyForQuery."""
        seg.pending += 1
        seg.closed = True
        if own:
            seg.swallow_z = True

    def shadow(self, link, syncs: int = 1, on_done=None, capture: list | None = None) -> Segment:
        """A closed shadow segment of ``syncs`` sync points: messages whose answers the
        client must not see; ``on_done`` runs at its last ReadyForQuery, ``capture``
        collects its bytes for pgtwist itself."""
        seg = self.segment(link, forward=False)
        seg.pending = syncs
        seg.closed = True
        seg.on_done = on_done
        seg.capture = capture
        return seg

    def file_undo(self, link, record) -> None:
        """``record`` is void if an error ends ``link``'s newest segment (the statement
        just sent there: its sync point, or the next one if not synced yet)."""
        seg = self.by_link[link][-1]
        if seg.undo is None:
            seg.undo = [record]
        else:
            seg.undo.append(record)

    def copy_sent(self, link) -> None:
        """A COPY FROM STDIN just went in ``link``'s newest segment."""
        self.by_link[link][-1].copy = True

    def inflight(self, link) -> int:
        """Sync points sent to ``link`` whose ReadyForQuery has not arrived."""
        q = self.by_link.get(link)
        if not q:
            return 0
        return sum(seg.pending for seg in q)

    def local(self, data: bytes, on_done=None) -> list[bytes]:
        """Queue a response made by pgtwist; returns what can be written now."""
        seg = Segment(None, True)
        seg.local = True
        seg.closed = True
        seg.held.append(data)
        seg.held_bytes = len(data)
        seg.on_done = on_done
        self.fifo.append(seg)
        if len(self.fifo) == 1:
            out: list[bytes] = []
            self._advance(out)
            return out
        return []

    def redirect(self, seg: Segment, new: Segment) -> None:
        """``new`` (just sent, on another link) answers in ``seg``'s place in the client's
        order; ``seg``, whose bytes the client has not seen, is consumed silently."""
        fifo = self.fifo
        fifo.remove(new)
        fifo[fifo.index(seg)] = new
        seg.forward = False

    def busy(self, link) -> bool:
        q = self.by_link.get(link)
        return bool(q)

    @property
    def idle(self) -> bool:
        return not self.fifo and not any(self.by_link.values())

    def drop_link(self, link) -> list[bytes]:
        """Forget a lost link's segments; returns bytes now releasable to the client."""
        q = self.by_link.pop(link, None)
        self.held_by_link.pop(link, None)
        self.errors.pop(link, None)
        if not q:
            return []
        dead = set(map(id, q))
        head_dead = bool(self.fifo) and id(self.fifo[0]) in dead
        self.fifo = deque(s for s in self.fifo if id(s) not in dead)
        out: list[bytes] = []
        if head_dead:
            self._advance(out)
        return out

    # -- receiving side -------------------------------------------------------------
    def receive(self, link, items: list) -> tuple[list[bytes], list[tuple[int, bytes]], bool]:
        """Route one scanned chunk from ``link``.

        Returns (bytes to write to the client, events seen, whether ``link``
        holds more than HOLD_LIMIT and should be paused).
        """
        out: list[bytes] = []
        events: list[tuple[int, bytes]] = []
        q = self.by_link.get(link)
        fifo = self.fifo
        errors = self.errors.get(link)
        if errors is None:
            errors = self.errors[link] = deque()
        for item in items:
            seg = q[0] if q else None
            if type(item) is bytes:
                if seg is None:
                    if link is self.primary:
                        # Unsolicited (NotificationResponse, NoticeResponse...): only between
                        # whole messages of whatever the client is receiving now.
                        if fifo:
                            self.async_held.append(item)
                        else:
                            out.append(item)
                elif seg.forward:
                    if fifo[0] is seg:
                        out.append(item)
                    else:
                        seg.held.append(item)
                        seg.held_bytes += len(item)
                        self.held_by_link[link] = self.held_by_link.get(link, 0) + len(item)
                elif seg.capture is not None:
                    seg.capture.append(item)
                continue
            code, body = item
            if code == codes.PARAMETER_STATUS and seg is not None and not seg.forward:
                events.append((SHADOW_PARAMETER_STATUS, body))
            else:
                events.append(item)
            if seg is None:
                if code == codes.ERROR_RESPONSE:
                    errors.append((None, 0))
                continue
            if code == codes.PARSE_COMPLETE:
                seg.parses_seen += 1
                if seg.hidden and seg.parses_seen in seg.hidden:
                    seg.hidden.discard(seg.parses_seen)
                    self._trim(seg, out, 5)
                    continue
            elif code == codes.ERROR_RESPONSE:
                seg.error = True
                if seg.hidden:
                    seg.hidden = None  # the server skips the rest up to the Sync
                errors.append((seg, seg.parses - seg.parses_seen))
                seg.parses_seen = seg.parses
                if seg.undo:
                    events.append((UNDO, seg.undo[::-1]))
                    seg.undo = None
                if seg.copy:
                    events.append((COPY_SETTLED, b""))
                    seg.copy = False
            if code != codes.READY_FOR_QUERY:
                if code == codes.NOTIFICATION_RESPONSE and not seg.forward and link is self.primary:
                    # A notification arriving during pgtwist's own traffic is still the client's.
                    note = bytes((code,)) + (len(body) + 4).to_bytes(4, "big") + body
                    if fifo:
                        self.async_held.append(note)
                    else:
                        out.append(note)
                continue
            seg.pending -= 1
            if seg.copy and seg.pending == 0:
                events.append((COPY_SETTLED, b""))
                seg.copy = False
            if seg.forward and not seg.swallow_z:
                if body[:1] == b"E":
                    self.failed.add(link)
                else:
                    self.failed.discard(link)
            if seg.pending > 0:
                continue
            if seg.t0:
                self.latency.observe(perf_counter() - seg.t0)
            self.done_t0 = seg.t0
            if seg.swallow_z:
                self._trim_z(seg, out, fifo)
            if seg.closed:
                q.popleft()
                if not seg.forward:
                    if seg.on_done is not None:
                        seg.on_done()
                elif fifo[0] is seg:
                    fifo.popleft()
                    if seg.on_done is not None:
                        seg.on_done()
                    self._advance(out)
                # else: completed while waiting its turn; released when it reaches the head
        hold = self.held_by_link.get(link, 0) > HOLD_LIMIT
        return out, events, hold

    def _trim(self, seg: Segment, out: list[bytes], size: int) -> None:
        """Remove the ``size``-byte frame that ends the bytes just routed for ``seg``."""
        if not seg.forward:
            return
        target = out if (self.fifo and self.fifo[0] is seg) else seg.held
        if not target:
            return
        last = target[-1]
        if len(last) == size:
            target.pop()
        else:
            target[-1] = last[:-size]
        if target is seg.held:
            seg.held_bytes -= size
            self.held_by_link[seg.link] = self.held_by_link.get(seg.link, 0) - size

    def _trim_z(self, seg: Segment, out: list[bytes], fifo) -> None:
        """Remove our own ReadyForQuery: it ends the last chunk just produced."""
        z_len = 6
        target = out if (seg.forward and fifo and fifo[0] is seg) else seg.held
        if not seg.forward:
            return
        if target and len(target[-1]) >= z_len:
            last = target[-1]
            target[-1] = last[:-z_len]
            if target is seg.held:
                seg.held_bytes -= z_len
                self.held_by_link[seg.link] = self.held_by_link.get(seg.link, 0) - z_len

    def _advance(self, out: list[bytes]) -> None:
        """The head changed: release held bytes of the new head(s)."""
        fifo = self.fifo
        if self.async_held:  # a segment just ended: the client stream is between messages
            out.extend(self.async_held)
            self.async_held = []
        while fifo:
            head = fifo[0]
            if head.held:
                out.extend(head.held)
                head.held = []
                if head.link is not None:
                    left = self.held_by_link.get(head.link, 0) - head.held_bytes
                    if left > 0:
                        self.held_by_link[head.link] = left
                    else:
                        self.held_by_link.pop(head.link, None)
                head.held_bytes = 0
            if head.local or head.done:
                fifo.popleft()
                if head.local:
                    pass
                elif self.by_link.get(head.link) and self.by_link[head.link][0] is head:
                    self.by_link[head.link].popleft()
                if head.on_done is not None:
                    head.on_done()
                if self.async_held:
                    out.extend(self.async_held)
                    self.async_held = []
                continue
            break
