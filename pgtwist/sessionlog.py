"""One session's operator log: log_connections, log_disconnections, log_statement,
log_per_node_statement and log_client_messages, in Pgpool-II's words.

The relay calls in only when a switch is on (one attribute test of
pgtwist.logs.LogSettings); everything here runs per message only while logging is
wanted.  Its lines carry the session's fields (``%u %d %a %p``, the JSON fields) because
each event's ``log_source`` is this object (see pgtwist.logs.event_record).
"""

from __future__ import annotations

from twisted.logger import Logger

from . import logs
from .logfmt import client_message, mask_secrets, session_time
from .logs import escape_controls

_MAX_NAMES = 1000  # statement / portal texts remembered for "statement:" at Execute


class SessionLog:
    is_session_log = True

    def __init__(self, session, settings, reactor) -> None:
        self.session = session
        self.settings = settings
        self.reactor = reactor
        self.started = reactor.seconds()
        address = session.client_address
        host, _, port = address.rpartition(":")
        self.host = host or address
        self.port = port
        self.lines = 0
        self.copy_count = 0
        self.parsed: dict[str, str] = {}   # statement name -> text (frames seen so far)
        self.portals: dict[str, str] = {}  # portal name -> text
        self._resolving = None
        self.log = Logger(namespace="pgtwist.session", source=self, observer=logs.switched_observer)

    # -- fields of every line ----------------------------------------------------------------
    def next_line(self) -> int:
        self.lines += 1
        return self.lines

    def describe(self, rec) -> None:
        s = self.session
        rec.pid = rec.session = s.pid
        rec.process, rec.process_name = "child", "CHILD"
        rec.user = escape_controls(s.user) or None
        rec.database = escape_controls(s.database) or None
        app = s.parameters.get("application_name") or s.startup_params.get("application_name")
        rec.application_name = escape_controls(app) if app else None
        rec.client = escape_controls(self.client)

    @property
    def client(self) -> str:
        return f"{self.host}:{self.port}" if self.port else self.host

    # -- log_connections / log_disconnections ------------------------------------------------------
    def connected(self) -> None:
        """A client connected; with log_hostname its host name is looked up first."""
        st = self.settings
        if st.hostname and (st.connections or st.disconnections) and self.session.client_ip:
            d = logs.resolve_host(self.reactor, self.session.client_ip)
            self._resolving = d

            def resolved(name):
                self.host = name
                self._resolving = None
                if self.settings.connections:
                    self._connection_line()
            d.addCallback(resolved)
        elif st.connections:
            self._connection_line()

    def _connection_line(self) -> None:
        self.log.info("new connection received", detail=self._where("connecting "))

    def _where(self, lead: str) -> str:
        return f"{lead}host={self.host}" + (f" port={self.port}" if self.port else "")

    def authorized(self) -> None:
        if not self.settings.connections:
            return
        if self._resolving is not None:
            self._resolving.addCallback(lambda _: self.authorized())
            return
        s = self.session
        app = s.startup_params.get("application_name")
        self.log.info("connection authorized: user={user} database={database}"
                      + (" application_name={app}" if app else ""),
                      user=s.user, database=s.database, app=app or "")

    def disconnected(self) -> None:
        s = self.session
        if not self.settings.disconnections or not s.user:
            return
        elapsed = session_time(self.reactor.seconds() - self.started)
        self.log.info("frontend disconnection: session time: {elapsed} user={user} "
                      "database={database} {where}", elapsed=elapsed, user=s.user,
                      database=s.database, where=self._where(""))

    # -- what the client sends -----------------------------------------------------------------
    def frames(self, buf, frames) -> None:
        """A batch of client frames, as they arrive (each is seen once here)."""
        st = self.settings
        for code, start, end in frames:
            body = bytes(buf[start:end])
            if code == 0x64:  # CopyData
                self.copy_count += 1
            if st.client_messages:
                said = client_message(code, body, self.copy_count)
                if said is not None:
                    self.log.info("{what}", what=said[0], detail=said[1])
            if st.statement and code == 0x51:  # Query
                self.statement(body[:-1].decode("utf-8", "replace"))
            elif code in (0x50, 0x42, 0x45, 0x43):  # Parse, Bind, Execute, Close
                self._extended(code, body)

    def _extended(self, code: int, body: bytes) -> None:
        name, _, rest = body.partition(b"\0")
        if code == 0x50:
            if len(self.parsed) >= _MAX_NAMES:
                self.parsed.clear()
            self.parsed[name.decode("utf-8", "replace")] = rest.partition(b"\0")[0].decode(
                "utf-8", "replace")
        elif code == 0x42:
            stmt = rest.partition(b"\0")[0].decode("utf-8", "replace")
            if len(self.portals) >= _MAX_NAMES:
                self.portals.clear()
            self.portals[name.decode("utf-8", "replace")] = self._statement_text(stmt)
        elif code == 0x45:
            if self.settings.statement:
                self.statement(self.portal_text(name.decode("utf-8", "replace")))
        elif body[:1] == b"S":
            self.parsed.pop(body[1:-1].decode("utf-8", "replace"), None)
        else:
            self.portals.pop(body[1:-1].decode("utf-8", "replace"), None)

    def _statement_text(self, name: str) -> str:
        text = self.parsed.get(name)
        if text is None:  # parsed before the switch went on: the session knows it
            stmt = self.session.statements.get(name.encode())
            text = stmt.sql if stmt is not None else ""
        return text

    def portal_text(self, portal: str) -> str:
        return self.portals.get(portal, "")

    def cancel(self, pid: int) -> None:
        self.log.info("Cancel message from frontend.", detail=f"process id: {pid}")

    def statement(self, sql: str) -> None:
        self.log.info("statement: {sql}", sql=mask_secrets(sql))

    def per_node(self, link, what: str, sql: str | None = None) -> None:
        """log_per_node_statement: one line per statement a backend node is sent."""
        if not self.settings.per_node_statement:
            return
        text = what if sql is None else f"{what}{mask_secrets(sql)}"
        self.log.info("DB node id: {node} backend pid: {backend_pid} statement: {text}",
                      node=link.node_id, backend_pid=link.backend_pid, text=text)
