"""Twisted glue for pgtwist's connections to PostgreSQL servers.

``BackendLink`` logs in with a :class:`~pgtwist.conn.backend.BackendLogin` and
then hands every scanned chunk of the server's stream to its owner (a relay).
``connect_backend`` and ``run_query`` are the two ways to get one.
"""

from __future__ import annotations

from twisted.internet import defer, error
from twisted.internet.protocol import ClientFactory, Protocol
from twisted.python.failure import Failure
from zope.interface import implementer

from ..conn.auth import Secret
from ..conn.backend import BackendLogin, LoginFailed, LoginState
from ..conn.server import ServerState
from ..interfaces import ILinkOwner
from ..logs import logger
from ..timeouts import call_later
from ..wire import codes
from ..wire import messages as m
from ..wire.decode import decode_fields
from ..wire.errors import CONNECTION_FAILURE, ProtocolViolation
from ..wire.framing import BackendScanner
from .fastwrite import make_writer

log = logger(__name__)


class BackendUnavailable(LoginFailed):
    """The server could not be reached or dropped the connection during login."""


class BackendLink(Protocol):
    """One connection to one PostgreSQL server: transport, login, scanner and owner.

    What the server holds (statements, settings, transaction status) is its
    :class:`~pgtwist.conn.server.ServerState`, ``server``; the frames themselves go
    to ``owner``, an :class:`~pgtwist.interfaces.ILinkOwner`.
    """

    owner = None  # an ILinkOwner: set once the login is complete
    unpooled = False  # True: a login on the client's own password, never cached

    def __init__(self, node_id: int, login: BackendLogin, address: str, tls=None):
        self.node_id = node_id
        self.tls = tls             # context factory: ask the server for TLS first
        self.login = login
        self.address = address
        self.ready: defer.Deferred = defer.Deferred()
        self.scanner = BackendScanner()
        # What the server holds and says, fed by its owner (pgtwist.conn.server).
        self.server = ServerState()
        self.backend_pid = 0
        self.backend_secret = 0
        self.closed = False
        self.cancelling = 0        # cancel requests for this backend still being delivered
        self.after_cancel = None   # run once they are: a release that had to wait
        self.write = None
        self._leftover: list = []

    @property
    def txn_status(self) -> int:
        """The server's transaction status as of its last ReadyForQuery (for the pool)."""
        return self.server.txn_status

    # -- Twisted callbacks -----------------------------------------------------
    def connectionMade(self) -> None:
        self.write = make_writer(self.transport)
        if hasattr(self.transport, "setTcpNoDelay"):
            self.transport.setTcpNoDelay(True)
        if self.tls is not None:
            self._awaiting_ssl = True
            self.write(m.ssl_request())
        else:
            self.write(self.login.startup())

    _awaiting_ssl = False

    def _ssl_answer(self, data: bytes) -> bytes:
        """The server's one-byte answer to SSLRequest; returns the bytes after it."""
        self._awaiting_ssl = False
        answer, rest = data[:1], data[1:]
        if answer == b"S":
            if rest:  # a server must not send anything before the handshake (CVE-2021-23214)
                self._fail_login("server sent data before the TLS handshake")
                return b""
            self.transport.startTLS(self.tls)
            self.write = self.transport.write
        elif answer != b"N":
            self._fail_login("server does not support SSL negotiation")
            return b""
        self.write(self.login.startup())
        return rest

    def _fail_login(self, why: str) -> None:
        if not self.ready.called:
            self.ready.errback(BackendUnavailable(
                {"S": "FATAL", "C": CONNECTION_FAILURE, "M": f"server at {self.address}: {why}"}))
        self.transport.abortConnection()

    def dataReceived(self, data: bytes) -> None:
        if self._awaiting_ssl:
            data = self._ssl_answer(data)
            if not data:
                return
        try:
            items = self.scanner.feed(data)
        except ProtocolViolation as exc:
            self._fail_stream(exc)
            return
        owner = self.owner
        if owner is not None:
            owner.backend_items(self, items)
            return
        self._login_items(items)

    def connectionLost(self, reason: Failure = None) -> None:
        self.closed = True
        if not self.ready.called:
            self.ready.errback(
                BackendUnavailable(
                    {
                        "S": "FATAL",
                        "C": CONNECTION_FAILURE,
                        "M": f"server at {self.address} closed the connection during login",
                    }
                )
            )
            return
        owner = self.owner
        if owner is not None:
            owner.link_lost(self, reason)

    # -- helpers -----------------------------------------------------------------
    def _login_items(self, items: list) -> None:
        login = self.login
        for index, item in enumerate(items):
            if login.state is LoginState.READY:
                self._leftover.extend(items[index:])
                break
            if type(item) is not tuple:
                continue  # notices during login are not forwarded
            try:
                reply = login.receive(item[0], item[1])
            except LoginFailed as exc:
                self.transport.loseConnection()
                if not self.ready.called:
                    self.ready.errback(exc)
                return
            if reply:
                self.write(reply)
        if login.state is LoginState.READY and not self.ready.called:
            self.server = ServerState(login.txn_status, login.parameters)
            self.backend_pid = login.backend_pid
            self.backend_secret = login.backend_secret
            self.ready.callback(self)

    def attach(self, owner) -> None:
        """Hand the stream to ``owner``; replay anything that arrived early."""
        self.owner = owner
        if self._leftover:
            items, self._leftover = self._leftover, []
            owner.backend_items(self, items)

    def _fail_stream(self, exc: ProtocolViolation) -> None:
        log.error("backend {address} broke the protocol: {msg}", address=self.address, msg=exc.message)
        self.transport.abortConnection()

    def terminate(self) -> None:
        """Say goodbye politely and close."""
        if not self.closed:
            self.write(m.TERMINATE)
            self.transport.loseConnection()


class _LinkFactory(ClientFactory):
    noisy = False

    def __init__(self, link: BackendLink):
        self.link = link

    def buildProtocol(self, addr):
        return self.link

    def clientConnectionFailed(self, connector, reason: Failure) -> None:
        if not self.link.ready.called:
            why = reason.getErrorMessage()
            if reason.check(error.TimeoutError):
                why = "timeout expired"
            self.link.ready.errback(
                BackendUnavailable(
                    {
                        "S": "FATAL",
                        "C": CONNECTION_FAILURE,
                        "M": f"could not connect to server at {self.link.address}: {why}",
                    }
                )
            )


def connect_address(reactor, hostname: str, port: int, factory, timeout: float):
    """TCP, or a Unix socket when the hostname is a directory (as in libpq).

    ``timeout`` 0 means none (``connect_timeout = 0`` disables it, as in Pgpool-II).
    """
    timeout = timeout if timeout > 0 else None
    if hostname.startswith("/"):
        return reactor.connectUNIX(f"{hostname}/.s.PGSQL.{port}", factory, timeout=timeout)
    return reactor.connectTCP(hostname, port, factory, timeout=timeout)


def connect_backend(
    reactor,
    node_id: int,
    hostname: str,
    port: int,
    user: str,
    params: dict[str, str],
    secret: Secret | None,
    timeout: float,
    tls=None,
) -> defer.Deferred:
    """Deferred firing with a logged-in :class:`BackendLink`, or LoginFailed."""
    address = f"{hostname}:{port}"
    if hostname.startswith("/"):
        tls = None  # no TLS over Unix sockets, as libpq
    link = BackendLink(node_id, BackendLogin(user, params, secret), address, tls)
    connect_address(reactor, hostname, port, _LinkFactory(link), timeout)
    # The whole login, not just the TCP connect, is bounded by connect_timeout (0: not).
    timer = call_later(reactor, timeout, _login_timeout, link)
    link.ready.addBoth(_cancel_timer, timer)
    return link.ready


def _login_timeout(link: BackendLink) -> None:
    if not link.ready.called:
        link.ready.errback(
            BackendUnavailable(
                {
                    "S": "FATAL",
                    "C": CONNECTION_FAILURE,
                    "M": f"timeout expired while logging in to server at {link.address}",
                }
            )
        )
        if link.transport is not None:
            link.transport.abortConnection()


def _cancel_timer(result, timer):
    if timer.active():
        timer.cancel()
    return result


@implementer(ILinkOwner)
class _QueryCollector:
    """Owner of a short-lived link that runs one simple query and keeps the rows."""

    def __init__(self, link: BackendLink):
        self.link = link
        self.rows: list[list[str | None]] = []
        self.error: dict[str, str] | None = None
        self.done: defer.Deferred = defer.Deferred()
        self._scanner_rows = b""

    def backend_items(self, link, items) -> None:
        for item in items:
            if type(item) is tuple:
                code, body = item
                if code == codes.ERROR_RESPONSE:
                    self.error = decode_fields(body)
                elif code == codes.READY_FOR_QUERY:
                    self._parse_rows()
                    link.terminate()
                    if self.error:
                        self.done.errback(LoginFailed(self.error))
                    else:
                        self.done.callback(self.rows)
            else:
                self._scanner_rows += item

    def _parse_rows(self) -> None:
        try:
            self.rows.extend(m.query_rows(self._scanner_rows))
        except m.QueryError as exc:
            self.error = self.error or exc.fields

    def link_lost(self, link, reason) -> None:
        if not self.done.called:
            self.done.errback(
                BackendUnavailable(
                    {"S": "FATAL", "C": CONNECTION_FAILURE, "M": f"server at {link.address} closed the connection"}
                )
            )


@defer.inlineCallbacks
def run_query(reactor, hostname, port, user, database, secret, sql, timeout, options=None,
              tls=None, application_name: str = "pgtwist"):
    """Run one simple-protocol query on a fresh connection; rows of text values.  The
    login and then the query are each bounded by ``timeout`` (a hung server's connection
    is aborted, not left behind, and the Deferred fails)."""
    params = {"database": database, "application_name": application_name}
    if options:
        params["options"] = options
    link = yield connect_backend(reactor, -1, hostname, port, user, params, secret, timeout, tls)
    collector = _QueryCollector(link)
    link.attach(collector)
    link.write(m.query(sql))
    timer = call_later(reactor, timeout, _abort, link)
    try:
        rows = yield collector.done
    finally:
        if timer.active():
            timer.cancel()
    return rows


def _abort(link) -> None:
    if link.transport is not None:
        link.transport.abortConnection()
