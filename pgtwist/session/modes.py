"""Session pooling (``SessionMode``) and the choice of pool mode (``mode_for``).

The hooks every pool mode answers are listed in pgtwist.session.poolmode; the
transaction mode is in pgtwist.session.txmode.
"""

from __future__ import annotations

from ..wire import codes
from ..wire import messages as m
from .placement import GO, WAIT, route_node
from .poolmode import PoolMode
from .state import Statement


class SessionMode(PoolMode):
    """Session pooling: a session keeps its links until it ends (Pgpool-II's model)."""

    def key_pid(self, primary_link) -> int | None:
        """The primary backend's own pid: pg_terminate_backend(backend_pid) and NOTIFY
        sender pids mean the client's own backend, as with PostgreSQL directly."""
        return primary_link.backend_pid or None

    # -- simple Query --------------------------------------------------------------------------
    def before_route(self, info, sql: str):
        return GO

    def prepared_on(self, link, prepared) -> None:
        """Make sure a SQL PREPAREd statement exists on ``link`` before EXECUTE uses it."""
        if prepared is not None and link.node_id not in prepared.nodes:
            self.out.shadow(link, m.query(prepared.sql))
            prepared.nodes.add(link.node_id)

    def before_query(self, link, info) -> None:
        pass

    def after_statement(self, info, sql: str, link) -> None:
        pass

    # -- extended protocol ----------------------------------------------------------------------
    # A Parse (Requests.on_parse), in order: before_parse, parse_decision, batch_starts,
    # prepared_on, send_parse.
    def before_parse(self, name: bytes, sql: str, rest: bytes, info, buf: bytes, start: int):
        return GO  # the server answers for a duplicate name

    def parse_decision(self, name: bytes, info, decision):
        """A Parse of a name the session holds goes where that statement is (the server
        answers 42P05 as PostgreSQL would; elsewhere a second statement of that name would
        begin); a Parse of DEALLOCATE goes where the SQL PREPARE it drops was made first."""
        s = self.session
        held = s.statements.get(name) if name else None
        if held is not None and held.nodes:
            return route_node(min(held.nodes), f'statement "{name.decode("utf-8", "replace")}"')
        if info.deallocate_name not in (None, "*") and info.deallocate_name in s.sql_prepared:
            return route_node(min(s.sql_prepared[info.deallocate_name].nodes))
        return decision

    def send_parse(self, link, name: bytes, sql: str, rest: bytes, info, buf: bytes,
                   start: int, end: int, rewritten: bool) -> None:
        """The client's Parse goes to the link, under the client's own name."""
        if rewritten:
            buf = m.frame(codes.PARSE, name + b"\0" + rest)
            start, end = 5, len(buf)
        stmt = Statement(name, sql, buf[start - 5:end], info, {link.node_id})
        if name:
            stmt.replaces = self.session.statements.get(name)
        self.session.statements[name] = stmt
        link.server.pending_parses.append(stmt)  # confirmed by its ParseComplete
        self.out.forward(link, buf, start - 5, end)
        self.ordering.parse_sent(self.ordering.open_segment(link))

    # Placing a statement for a Bind / Describe 'S' (Requests._statement_link).
    def unknown_statement(self, name: bytes):
        """The server answers for a name the session does not know, but not for the
        unnamed statement (none parsed, or a Query destroyed it): PostgreSQL's error, from
        pgtwist.  A server's unnamed statement may be pgtwist's own (the probe ahead of a
        Query inside a batch): never the client's to use."""
        if not name:
            return self.place.fail_extended("26000", "unnamed prepared statement does not exist")
        return GO

    def _take_placed(self, link) -> bool:
        return self.links.get(link.node_id) is link

    def deallocate_link(self, stmt):
        """A DEALLOCATE runs where its statement was parsed first."""
        if stmt.info.deallocate_name not in (None, "*") and stmt.nodes:
            return self.place.link_ready(min(stmt.nodes))
        return None

    def batch_starts(self, link, buf: bytes, start: int) -> None:
        pass

    def holds(self, link, stmt) -> bool:
        return link.node_id in stmt.nodes

    def add_statement(self, link, stmt) -> None:
        stmt.nodes.add(link.node_id)
        self.out.insert_parses(link, [stmt])

    def bind(self, stmt, link, name: bytes, buf: bytes, start: int, end: int) -> None:
        self.out.forward(link, buf, start - 5, end)

    def describe_statement(self, stmt, link, buf: bytes, start: int, end: int) -> None:
        self.out.forward(link, buf, start - 5, end)

    def close_statement(self, buf: bytes, start: int, end: int):
        """Close 'S': on every node that has the statement, answered by one of them."""
        s = self.session
        place = self.place
        stmt = s.statements.pop(buf[start + 1:end - 1], None)
        nodes = sorted(stmt.nodes) if stmt else []
        link = place.current_or_primary() if not nodes else place.link_ready(nodes[0])
        if link is WAIT:
            return WAIT
        for other in nodes[1:]:
            olink = self.links.get(other)
            if olink is not None and not olink.closed:
                self.out.shadow(olink, buf[start - 5:end] + m.SYNC)
        self.out.forward(link, buf, start - 5, end)
        return None

    # -- replies and links ----------------------------------------------------------------------
    def parameter_reported(self, name: str, value: str) -> None:
        pass

    def release_idle(self, link) -> None:
        pass

    def keeps_link(self, link, busy: bool) -> bool:
        """Whether a link released at the session's end keeps its state (no reset)."""
        return False

    def release_unused(self, link) -> None:
        """A link that arrived after the session ended."""
        self.pooling.release(link, clean=True, reset=True)


def mode_for(pool_mode: str):
    """The mode class for ``pool_mode`` (config ``pool_mode``), picked once per service."""
    if pool_mode == "transaction":
        from .txmode import TransactionMode

        return TransactionMode
    return SessionMode
