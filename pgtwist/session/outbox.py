"""What a session sends: client frames forwarded to links, pgtwist's own messages to
links (shadows), and pgtwist's own answers to the client, all in the client's order.

Frames for links are queued while one client chunk is routed and written once per
link at the end (:meth:`Outbox.flush`); neighbouring frames of one client buffer
merge without copying.  Every sync point sent is registered with the session's
:class:`~pgtwist.session.ordering.Ordering`, the only counter of them.
"""

from __future__ import annotations

from time import perf_counter

from ..wire import messages as m


class Outbox:
    def __init__(self, ordering, session, write) -> None:
        self.ordering = ordering
        self.session = session
        self.write = write    # to the client; replaced when TLS starts
        self._out: dict = {}
        self._run: list | None = None   # [link, buf, start, end]: contiguous frames to one link

    # -- queueing --------------------------------------------------------------------------
    def send(self, link, data: bytes) -> None:
        if self._run is not None:
            self._end_run()
        out = self._out.get(link)
        if out is None:
            self._out[link] = [data]
        else:
            out.append(data)

    def send_frame(self, link, buf: bytes, start: int, end: int) -> None:
        """Queue ``buf[start:end]`` for ``link``; neighbouring frames merge without copying."""
        run = self._run
        if run is not None:
            if run[0] is link and run[1] is buf and run[3] == start:
                run[3] = end
                return
            self._end_run()
        self._run = [link, buf, start, end]

    def _end_run(self) -> None:
        link, buf, start, end = self._run
        self._run = None
        data = buf if (start == 0 and end == len(buf)) else buf[start:end]
        out = self._out.get(link)
        if out is None:
            self._out[link] = [data]
        else:
            out.append(data)

    def flush(self) -> None:
        if self._run is not None:
            self._end_run()
        if not self._out:
            return
        outs, self._out = self._out, {}
        for link, parts in outs.items():
            if not link.closed:
                link.write(parts[0] if len(parts) == 1 else b"".join(parts))

    # -- in the client's order ----------------------------------------------------------------
    def forward(self, link, buf: bytes, start: int, end: int, sync: bool = False) -> None:
        """Send the client's frame ``buf[start:end]`` as part of the visible response stream."""
        ordering = self.ordering
        tail = ordering.tail_open()
        if tail is not None and tail.link is not link:
            self.close_segment(tail)
        seg = ordering.segment(link)
        self.send_frame(link, buf, start, end)
        if sync:
            ordering.synced(seg)
            if ordering.latency is not None:   # metrics: query latency timing
                seg.t0 = perf_counter()

    def close_segment(self, seg) -> None:
        """End a batch pgtwist is splitting: our own Sync, whose ReadyForQuery is hidden."""
        self.send(seg.link, m.SYNC)
        self.ordering.synced(seg, own=True)

    def own_sync(self, link, frames: bytes) -> None:
        """Send ``frames``, ending with pgtwist's own sync point, in the client's batch on
        ``link``: their answers are the client's, their ReadyForQuery is not."""
        ordering = self.ordering
        tail = ordering.tail_open()
        if tail is not None and tail.link is not link:
            self.close_segment(tail)
        seg = ordering.segment(link)
        self.send(link, frames)
        ordering.synced(seg, own=True)

    def insert_parses(self, link, stmts: list) -> None:
        """Parse ``stmts`` on ``link`` as part of the client's batch, right where they are
        needed: their ParseCompletes are hidden (Ordering counts Parses per segment), an
        error from one reaches the client in place of the message it breaks."""
        ordering = self.ordering
        tail = ordering.tail_open()
        if tail is not None and tail.link is not link:
            self.close_segment(tail)
        seg = ordering.segment(link)
        pending = link.server.pending_parses
        for stmt in stmts:
            pending.append(stmt)  # ParseComplete or an error settles it
            ordering.parse_sent(seg, hidden=True)
        self.send(link, b"".join(stmt.parse_frame for stmt in stmts))

    def shadow(self, link, frames: bytes, syncs: int = 1, on_done=None,
               capture: list | None = None) -> None:
        """Send messages whose responses the client must not see (BOTH copies, replays);
        ``capture`` collects those responses' bytes for pgtwist itself."""
        seg = self.ordering.open_segment(link)
        if seg is not None:
            self.close_segment(seg)
        self.ordering.shadow(link, syncs, on_done, capture)
        self.send(link, frames)

    def local(self, data: bytes, status: int | None = None, ready: bool = True) -> None:
        """Answer from pgtwist itself, in order with backend responses."""
        tail = self.ordering.tail_open()
        if tail is not None:
            self.close_segment(tail)
        self.flush()
        if ready:
            if status is None:
                status = self.session.ready_status
            data += m.ready_for_query(status)
        out = self.ordering.local(data)
        if out:
            self.write(b"".join(out))
