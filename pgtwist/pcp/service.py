"""The PCP port as a twistd service: listens on ``pcp_listen_addresses:pcp_port`` (and
``pcp_socket_dir/.s.PGSQL.<pcp_port>`` when that is set), and stops the daemon when
pcp_stop_pgpool asks."""

from __future__ import annotations

import os

from twisted.application import service
from twisted.internet import task

from ..config_values import listen_interfaces
from ..logs import logger
from .commands import POLL, Commands
from .conf import PcpConfError, read_pcp_conf
from .protocol import PcpFactory

log = logger(__name__)




class PcpService(service.Service):
    name = "pcp"

    def __init__(self, proxy, reactor):
        self.proxy = proxy
        self.reactor = reactor
        params = proxy.config.params
        self.port_number = int(params["pcp_port"])
        self.addresses = str(params["pcp_listen_addresses"])
        self.socket_dir = str(params["pcp_socket_dir"])
        self.factory = PcpFactory(reactor, Commands(proxy, reactor, self.stop_daemon),
                                  str(params["pcp_conf_file"]))
        self.ports: list = []
        self._draining: task.LoopingCall | None = None

    def startService(self) -> None:
        super().startService()
        if not self.port_number:
            return
        for interface in listen_interfaces(self.addresses):
            self.ports.append(self.reactor.listenTCP(self.port_number, self.factory,
                                                     interface=interface))
            log.info("PCP listening on {iface}:{port}", iface=interface, port=self.port_number)
        if self.socket_dir:
            path = os.path.join(self.socket_dir, f".s.PGSQL.{self.port_number}")
            # wantPID: a lock file tells a stale socket (removed) from a live one (refused).
            self.ports.append(self.reactor.listenUNIX(path, self.factory, mode=0o777,
                                                      wantPID=True))
            log.info("PCP listening on {path}", path=path)
        try:
            read_pcp_conf(self.factory.conf_path)
        except PcpConfError as exc:
            log.warn("{why}: every PCP login is refused", why=str(exc))

    def stopService(self):
        super().stopService()
        if self._draining is not None and self._draining.running:
            self._draining.stop()
        self.factory.close_all()
        ports, self.ports = self.ports, []
        from twisted.internet import defer

        return defer.gatherResults([defer.maybeDeferred(p.stopListening) for p in ports])

    # -- pcp_stop_pgpool ------------------------------------------------------------------
    def stop_daemon(self, mode: str) -> None:
        """'s' (smart): stop accepting clients, exit once every session has ended; 'f'
        (fast) and 'i' (immediate, the same here as in Pgpool-II): close them now."""
        if mode != "s":
            self.reactor.stop()
            return
        if self._draining is not None:
            return
        self.proxy.draining = True  # /readyz: 503 from now on (Kubernetes stops routing here)
        ports, self.proxy.ports = list(self.proxy.ports), []
        for port in ports:
            port.stopListening()
        log.warn("smart shutdown: no new clients; exiting when the {n} open session(s) end",
                 n=len(self.proxy.sessions))

        def check():
            if not any(not relay.closed for relay in self.proxy.sessions.values()):
                self._draining.stop()
                self.reactor.stop()

        self._draining = task.LoopingCall(check)
        self._draining.clock = self.reactor
        self._draining.start(POLL, now=True)
