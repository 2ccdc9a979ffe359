"""Composition root: builds the proxy and the twistd service around it."""

from __future__ import annotations

import hmac
import random
import signal
import threading
from collections import deque

from twisted.application import service
from twisted.internet.protocol import ClientFactory as _ClientFactory
from twisted.internet.protocol import Protocol
from twisted.logger import ILogObserver
from twisted.python.components import Componentized

from .admission import Gate, spare_connections
from .auth.hba import HbaError
from .auth.hba_parse import load_hba
from .auth.passwd import PasswdError, load_pool_passwd
from .cluster import Cluster
from .config import load_config
from .config_values import listen_interfaces
from .conn.auth import Secret
from .errors import ConfigError
from .logs import configure, logger, operator_observer
from .metrics.stats import Stats
from .params import unimplemented_warnings
from .pooling.checkout import Pooling
from .protocols.backend import connect_address
from .protocols.frontend import ClientFactory
from .router import Router
from .session import Session
from .session.modes import mode_for
from .session.relay import Relay
from .tls import client_tls, server_tls_from_config
from .wire import messages as m

log = logger(__name__)

_MAX_PID = 2**31 - 1
_CANCEL_WAIT = 5.0  # seconds a server gets to close a cancel connection


class _CancelSender(Protocol):
    """Sends one CancelRequest and waits for the server to hang up: the server closes
    the connection once it has signalled the backend, so the close says "delivered"."""

    def __init__(self, factory):
        self.factory = factory

    def connectionMade(self) -> None:
        self.transport.write(self.factory.packet)
        self.factory.timer = self.factory.reactor.callLater(
            _CANCEL_WAIT, self.transport.abortConnection)

    def connectionLost(self, reason=None) -> None:
        self.factory.finished()


class _CancelFactory(_ClientFactory):
    noisy = False

    def __init__(self, reactor, packet: bytes, address: str, done=None):
        self.reactor = reactor
        self.packet = packet
        self.address = address
        self.done = done
        self.timer = None

    def buildProtocol(self, addr):
        return _CancelSender(self)

    def finished(self) -> None:
        if self.timer is not None and self.timer.active():
            self.timer.cancel()
        done, self.done = self.done, None
        if done is not None:
            done()

    def clientConnectionFailed(self, connector, reason) -> None:
        # The reason's type and first line only: a ConnectError's text embeds a Failure's
        # repr (the word "Traceback" included), which reads like a crash in the log.
        text = str(reason.value).splitlines()[0] if str(reason.value) else ""
        why = reason.type.__name__ + (f": {text}" if "Failure instance" not in text else "")
        log.warn("could not send cancel request to {address}: {why}", address=self.address,
                 why=why)
        self.finished()


class Proxy:
    """Process-wide state shared by all sessions: config, backends, key map."""

    def __init__(self, reactor, config, rng: random.Random | None = None, overrides=None):
        self.reactor = reactor
        self.config = config
        self.overrides = overrides or {}
        self.rng = rng or random.SystemRandom()
        self.passwd = _load_passwd(config)
        self.hba_rules = load_hba(config.pool_hba_file) if config.enable_pool_hba else ()
        self.server_tls = server_tls_from_config(config)
        self._backend_tls: dict = {}
        # Metric counters; latency timing only when a metrics port will read it.
        self.stats = Stats(timed=bool(config.params["metrics_port"]))
        self.draining = False   # stopping: no new clients (readiness fails)
        self.cluster = Cluster(reactor, config, self.secret_for, self.backend_tls)
        self.router = Router(self, config)
        self.pooling = Pooling(self, config)
        # The pool mode is chosen here, once: each session gets an instance of this class.
        self.pool_mode = mode_for(self.pooling.mode)
        self.sessions: dict[int, Relay] = {}
        self.clients = 0        # connections holding a num_init_children slot
        self.connections = 0    # all open client connections
        self._max_connections = (config.num_init_children
                                 + spare_connections(config.num_init_children))
        self._waiting: deque = deque()  # gates waiting for a slot, oldest first
        self.ports: list = []
        self._accept_paused = False

    # -- admission ------------------------------------------------------------------
    def admit(self, transport) -> bool:
        """A new TCP connection: accepted, but holding no client slot until its first
        packet is read (pgtwist.admission).

        Connections open without a slot are bounded: at ``num_init_children`` plus
        ``spare_connections`` open connections pgtwist stops accepting, and the kernel's
        listen queue holds the rest.
        """
        self.connections += 1
        if self.connections >= self._max_connections and not self._accept_paused:
            self._accept_paused = True
            for port in self.ports:
                port.stopReading()
            log.warn("{n} client connections open (num_init_children {limit} and as many "
                     "more reading their first packet or waiting); new ones wait",
                     n=self.connections, limit=self.config.num_init_children)
        return True

    def client_gone(self) -> None:
        self.connections -= 1
        if self._accept_paused and self.connections < self._max_connections:
            self._accept_paused = False
            for port in self.ports:
                port.startReading()

    def take_slot(self, gate) -> str:
        """A client asks for one of the num_init_children slots: admitted, refused or waiting.

        With ``reserved_connections`` > 0 a client beyond ``num_init_children -
        reserved_connections`` is refused (FATAL 53300), as in Pgpool-II; with 0 it waits,
        first come first served, as Pgpool-II's clients wait for a free child.
        """
        limit = self.config.num_init_children
        reserved = self.config.reserved_connections
        if reserved:
            if self.clients >= limit - reserved:
                return "refused"
        elif self.clients >= limit or self._waiting:
            if not self._waiting:
                log.warn("num_init_children ({limit}) clients connected; new ones wait",
                         limit=limit)
            self._waiting.append(gate)
            return "waiting"
        self.clients += 1
        return "admitted"

    def release_slot(self) -> None:
        self.clients -= 1
        while self._waiting and self.clients < self.config.num_init_children:
            gate = self._waiting.popleft()
            self.clients += 1
            gate.admitted()

    def stop_waiting(self, gate) -> None:
        try:
            self._waiting.remove(gate)
        except ValueError:
            pass

    # -- sessions ------------------------------------------------------------------
    def make_relay(self, transport) -> Gate:
        """The client's Relay, behind the gate that admits it (see pgtwist.admission)."""
        return Gate(self, Relay(self, transport))

    def new_session(self, relay: Relay, client_address: str) -> Session:
        while True:
            pid = self.rng.randint(1, _MAX_PID)
            if pid not in self.sessions:
                break
        self.sessions[pid] = relay
        return Session(pid=pid, secret=self.rng.getrandbits(32), client_address=client_address)

    def rekey_session(self, session: Session, pid: int) -> bool:
        """Give ``session`` the key pid ``pid`` (its backend's) if no other session has it;
        the secret stays pgtwist's own, so cancel keys still cannot be guessed."""
        relay = self.sessions.get(session.pid)
        if relay is None or self.sessions.get(pid, relay) is not relay:
            return False
        del self.sessions[session.pid]
        self.sessions[pid] = relay
        session.pid = pid
        return True

    def end_session(self, session: Session) -> None:
        self.sessions.pop(session.pid, None)

    def backend_tls(self, backend):
        """Context factory for TLS to ``backend`` when ``ssl`` is on, else None."""
        o = self.config.tls
        if not o.enabled:
            return None
        key = backend.hostname
        if key not in self._backend_tls:
            self._backend_tls[key] = client_tls(backend.hostname, o.ca_cert, o.ca_cert_dir)
        return self._backend_tls[key]

    def sr_secret(self) -> Secret | None:
        """Credentials of sr_check_user: its own password key, else pool_passwd."""
        if self.config.sr_check_password:
            return Secret(plaintext=self.config.sr_check_password)
        return self.secret_for(self.config.sr_check_user)

    def passwd_entry(self, user: str):
        return self.passwd.get(user)

    def secret_for(self, user: str) -> Secret | None:
        entry = self.passwd.get(user)
        if entry is None:
            return None
        if entry.kind == "md5":
            return Secret(md5=entry.secret)
        text = entry.plaintext()
        return Secret(plaintext=text) if text is not None else None

    # -- cancel requests -----------------------------------------------------------
    def cancel(self, pid: int, secret: int) -> None:
        """A client's CancelRequest: forward it to the backends of that session."""
        relay = self.sessions.get(pid)
        if relay is None or not hmac.compare_digest(
            relay.session.secret.to_bytes(4, "big"), secret.to_bytes(4, "big")
        ):
            log.info("cancel request for unknown session key ignored")
            return
        log.debug("cancel request for session {pid}", pid=pid)
        relay.cancel_backends()

    def send_cancel(self, link) -> None:
        """Cancel whatever ``link``'s backend is running, on a new connection.

        Until that connection has closed, ``link.cancelling`` says a cancel is on its
        way: the link must not serve another client meanwhile, or the cancel could
        land on that client's query.
        """
        if not link.backend_pid:
            return
        host, _, port = link.address.rpartition(":")
        link.cancelling += 1

        def delivered():
            link.cancelling -= 1
            if not link.cancelling and link.after_cancel is not None:
                run, link.after_cancel = link.after_cancel, None
                run()

        connect_address(
            self.reactor, host, int(port),
            _CancelFactory(self.reactor, m.cancel_request(link.backend_pid, link.backend_secret),
                           link.address, delivered),
            self.config.connect_timeout / 1000.0,
        )

    def shutdown(self) -> None:
        for relay in list(self.sessions.values()):
            relay.shutdown()
        self.pooling.shutdown()

    def reload(self) -> None:
        """SIGHUP: re-read the configuration and pool_passwd, forget cached catalog facts.

        As in Pgpool-II, routing lists and weights apply to sessions that start
        afterwards; backends' addresses and INIT-context parameters stay as started.
        """
        log.info("SIGHUP: reloading configuration from {path}", path=self.config.path)
        try:
            config = load_config(self.config.path, overrides=self.overrides)
            router = Router(self, config)
            passwd = _load_passwd(config)
            hba_rules = load_hba(config.pool_hba_file) if config.enable_pool_hba else ()
        except (ConfigError, PasswdError, HbaError) as exc:
            log.error("reload failed, keeping the running configuration:\n{errors}",
                      errors=str(exc))
            return
        for node, backend in zip(self.cluster.nodes, config.backends, strict=False):
            if (node.backend.hostname, node.backend.port) == (backend.hostname, backend.port):
                node.backend = backend  # weight and flags may change
            else:
                log.warn("backend {n} address change needs a restart", n=node.node_id)
        self.cluster.reconfigure(config)
        self.cluster.changed()
        self.router.catalog.clear()
        self.pooling.server_methods.clear()  # pg_hba.conf may have changed too
        self.router = router
        self.passwd = passwd
        self.hba_rules = hba_rules
        configure(config)  # the log_* switches, log_line_prefix, log_format: RELOAD context
        log.info("configuration reloaded")


def _load_passwd(config) -> dict:
    if not config.pool_passwd:
        return {}
    return load_pool_passwd(config.pool_passwd, key_file=config.pool_key_file)


class ProxyService(service.Service):
    name = "pgtwist"

    def __init__(self, config, reactor=None, overrides=None):
        if reactor is None:
            from twisted.internet import reactor as _reactor

            reactor = _reactor
        self.reactor = reactor
        self.config = config
        self.proxy = Proxy(reactor, config, overrides=overrides)
        self.ports: list = []

    def startService(self) -> None:
        super().startService()
        factory = ClientFactory(self.proxy)
        multiplier = self.config.session.listen_backlog_multiplier
        backlog = max(128, multiplier * self.config.num_init_children)
        for interface in listen_interfaces(self.config.listen_addresses):
            port = self.reactor.listenTCP(self.config.port, factory, backlog=backlog, interface=interface)
            self.ports.append(port)
            log.info("pgtwist listening on {iface}:{port}", iface=interface, port=self.config.port)
        self.proxy.ports = self.ports
        self.proxy.cluster.start()
        if hasattr(signal, "SIGHUP") and threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGHUP, lambda *_: self.reactor.callFromThread(self.proxy.reload))

    def stopService(self):
        super().stopService()
        self.proxy.draining = True  # /readyz: 503 from now on
        self.proxy.cluster.stop()
        self.proxy.shutdown()
        ports, self.ports = self.ports, []
        from twisted.internet import defer

        return defer.gatherResults([defer.maybeDeferred(p.stopListening) for p in ports])


class _Top(service.MultiService):
    """The service twistd runs.  Given a log stream, it makes the application log through
    pgtwist's operator observer (log_line_prefix / JSON) instead of twistd's own format."""

    def __init__(self, log_out=None) -> None:
        super().__init__()
        self.log_out = log_out

    def setServiceParent(self, parent) -> None:
        if self.log_out is not None and isinstance(parent, Componentized):
            parent.setComponent(ILogObserver, operator_observer(self.log_out))
        super().setServiceParent(parent)


def make_service(config, reactor=None, overrides=None, log_out=None) -> service.IService:
    configure(config)
    for warning in unimplemented_warnings(config.params):
        log.warn("{warning}", warning=warning)
    top = _Top(log_out)
    proxy_service = ProxyService(config, reactor, overrides)
    if config.params["metrics_port"]:
        from .metrics.http import MetricsService

        # Started first (a port it cannot bind stops the daemon before it takes clients)
        # and so stopped last: /readyz answers 503 while the proxy shuts down.
        MetricsService(proxy_service.proxy, proxy_service.reactor,
                       listen_interfaces(config.params["metrics_listen_addresses"]),
                       ).setServiceParent(top)
    proxy_service.setServiceParent(top)
    from .pcp.service import PcpService

    PcpService(proxy_service.proxy, proxy_service.reactor).setServiceParent(top)
    return top
