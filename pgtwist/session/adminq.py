"""A session's admin commands (pgtwist.admin) in the simple and the extended protocol.

Pgpool-II intercepts them in the simple protocol only; pgtwist also answers a Parse of
one, and the Bind / Describe / Execute / Close of what it named, itself: the client sees
ParseComplete, BindComplete, the RowDescription (columns typed text, OID 25: Pgpool-II's
OID 0 is no type a driver can look up; NoData for PGPOOL SET / RESET), the rows and
CommandComplete, all in order with what its servers answer.  No server is asked
anything, so an admin command works while the pool or the primary is full.  Sync goes on
as ever (pgtwist.session.requests): a session holding no link gets its ReadyForQuery
from pgtwist.
"""

from __future__ import annotations

import struct

from .. import admin
from ..wire import codes
from ..wire import messages as m
from .placement import WAIT

PARSE_COMPLETE = m.frame(codes.PARSE_COMPLETE)
BIND_COMPLETE = m.frame(codes.BIND_COMPLETE)
CLOSE_COMPLETE = m.frame(codes.CLOSE_COMPLETE)
NO_DATA = m.frame(codes.NO_DATA)
NO_PARAMETERS = m.frame(ord("t"), struct.pack("!h", 0))   # ParameterDescription, none
PROTOCOL_VIOLATION = "08P01"


class AdminQueries:
    """``statements``: client statement name -> matched command; ``portals``: portal name ->
    (command, result format codes).  Both stay empty unless the client parses one."""

    def __init__(self, session, outbox, proxy, router, placement=None) -> None:
        self.session = session
        self.out = outbox
        self.proxy = proxy
        self.router = router
        self.place = placement
        self.statements: dict[bytes, tuple] = {}
        self.portals: dict[bytes, tuple] = {}

    def _answer(self, special):
        result = admin.answer(special, self.session, self.proxy, self.router)
        if special[0] in ("pgpool_set", "pgpool_reset"):
            self._apply()
        return result

    def _apply(self) -> None:
        """What a PGPOOL SET changes in pgtwist itself: the session's client_idle_limit
        and its logging switches (log_statement, log_per_node_statement,
        log_client_messages: pgtwist.logs.session_settings)."""
        relay = self.proxy.sessions.get(self.session.pid)
        if relay is None:
            return
        limit = float(self.session.pool_settings.get("client_idle_limit"))
        if limit != relay.idle_limit:
            relay.set_idle_limit(limit)
        relay.set_log_settings()

    # -- simple Query ---------------------------------------------------------------------------
    def query(self, special):
        """Answer a simple Query; WAIT while EXPLAIN ROUTE waits for a catalog fact."""
        if special[0] == "explain":
            return self._explain(special[1])
        try:
            self.out.local(admin.simple(self._answer(special)))
        except admin.AdminError as exc:
            self.out.local(admin.error(exc.sqlstate, exc.message))
        return None

    def _explain(self, sql: str):
        router = self.router
        info = router.classify(sql)
        facts = self.place.facts(info)
        if facts is WAIT:
            return WAIT
        explanation = router.explain(info, self.session, facts, sql)
        node = router.node_of(explanation.decision, self.session)
        self.out.local(admin.explain_route(explanation, node))
        return None

    # -- extended protocol ------------------------------------------------------------------------
    def _fail(self, sqlstate: str, message: str) -> None:
        """As PostgreSQL: the error, then every message up to Sync is ignored."""
        s = self.session
        s.skip_until_sync = True
        s.skip_status = ord(s.route_status)
        self.out.local(admin.error(sqlstate, message), ready=False)

    def parse(self, name: bytes, special) -> None:
        if name and (name in self.statements or name in self.session.statements):
            self._fail("42P05", f'prepared statement "{name.decode("utf-8", "replace")}" '
                       "already exists")
            return
        if not name:
            self.session.statements.pop(b"", None)
        self.statements[name] = special
        self.out.local(PARSE_COMPLETE, ready=False)

    def bind(self, portal: bytes, name: bytes, body: bytes) -> None:
        special = self.statements[name]
        try:
            nparams, formats = _bind_shape(body)
        except (struct.error, ValueError):
            self._fail(PROTOCOL_VIOLATION, "invalid Bind message format")
            return
        if nparams:
            stmt = name.decode("utf-8", "replace")
            self._fail(PROTOCOL_VIOLATION, f"bind message supplies {nparams} parameters, but "
                       f'prepared statement "{stmt}" requires 0')
            return
        self.session.portals.pop(portal, None)
        self.portals[portal] = (special, formats)
        self.out.local(BIND_COMPLETE, ready=False)

    def describe(self, kind: int, name: bytes) -> None:
        if kind == 0x53:  # 'S'
            special, formats, head = self.statements[name], (0,), NO_PARAMETERS
        else:
            (special, formats), head = self.portals[name], b""
        if special[0] in ("pgpool_set", "pgpool_reset"):
            # No rows; described without being run (its name is checked at Execute).
            self.out.local(head + NO_DATA, ready=False)
            return
        try:
            result = self._answer(special)
        except admin.AdminError as exc:
            self._fail(exc.sqlstate, exc.message)
            return
        self.out.local(head + m.row_description(result.columns, formats, admin.TEXT_OID),
                       ready=False)

    def execute(self, portal: bytes) -> None:
        special, _formats = self.portals[portal]
        try:
            result = self._answer(special)
        except admin.AdminError as exc:
            self._fail(exc.sqlstate, exc.message)
            return
        self.out.local(admin.data_rows(result), ready=False)

    def claims(self, buf: bytes, start: int, end: int) -> bool:
        """Whether a Describe / Close body names one of these statements or portals."""
        if not (self.statements or self.portals):
            return False
        names = self.statements if buf[start] == 0x53 else self.portals
        return buf[start + 1:end - 1] in names

    def close(self, kind: int, name: bytes) -> None:
        (self.statements if kind == 0x53 else self.portals).pop(name, None)
        self.out.local(CLOSE_COMPLETE, ready=False)

    def forget(self, name: bytes) -> None:
        """A statement of the client's named ``name`` goes to the servers now."""
        self.statements.pop(name, None)


def _bind_shape(body: bytes) -> tuple[int, tuple[int, ...]]:
    """(parameter count, result format codes) of a Bind body."""
    pos = body.index(b"\0") + 1
    pos = body.index(b"\0", pos) + 1
    (nfmt,) = struct.unpack_from("!h", body, pos)
    pos += 2 + 2 * nfmt
    (nparams,) = struct.unpack_from("!h", body, pos)
    pos += 2
    for _ in range(nparams):
        (size,) = struct.unpack_from("!i", body, pos)
        pos += 4 + max(size, 0)
    (nres,) = struct.unpack_from("!h", body, pos)
    formats = struct.unpack_from(f"!{nres}h", body, pos + 2) if nres else (0,)
    if any(f not in (0, 1) for f in formats):
        raise ValueError("format code")
    return nparams, tuple(formats)
