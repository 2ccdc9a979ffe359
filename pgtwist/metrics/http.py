"""The metrics port: ``/metrics`` (Prometheus), ``/healthz`` and ``/readyz`` (Kubernetes).

Served by twisted.web in the daemon's own reactor.  A scrape builds its page from a
snapshot of in-memory state in one reactor turn (no server round trip, no thread, no
lock on the relay's path); every other path answers 404, every method but GET/HEAD 405.
"""

from __future__ import annotations

import time

from prometheus_client import generate_latest
from prometheus_client.core import CollectorRegistry, CounterMetricFamily, GaugeMetricFamily
from twisted.application import service
from twisted.internet.error import CannotListenError
from twisted.web import resource, server

from ..adminview import view
from ..errors import ConfigError
from ..logs import logger
from .collector import own_families
from .pgpool import VIEWS, exporter_families
from .snapshot import readiness, take

log = logger(__name__)
# The classic text format every Prometheus (and pgpool2_exporter's scrapers) reads;
# pgtwist's names need none of format 1.0.0's escaping.
CONTENT_TYPE = b"text/plain; version=0.0.4; charset=utf-8"


class ProxyCollector:
    """A prometheus-client collector over a live Proxy: pgtwist's own families, then the
    pgpool2_exporter-compatible ones, then the scrape's own bookkeeping."""

    def __init__(self, proxy, clock=time.perf_counter):
        self.proxy = proxy
        self.clock = clock
        self.scrapes = 0
        self.last_duration = 0.0
        self.last_error = 0

    def collect(self):
        t0 = self.clock()
        self.scrapes += 1
        families = []
        error = 0
        for build in (self._own_families, self._pgpool_families):
            try:
                families.extend(build())
            except Exception:  # noqa: BLE001 - a broken family must not break the page
                log.failure("building metrics failed ({what})", what=build.__name__)
                error = 1
        self.last_error = error
        self.last_duration = self.clock() - t0
        yield from families
        yield GaugeMetricFamily("pgpool2_up", "Whether the admin model answered (in-process: "
                                "1 unless building its rows failed)", value=1 - error)
        yield GaugeMetricFamily("pgpool2_last_scrape_duration_seconds",
                                "Seconds the last scrape took to build", value=self.last_duration)
        yield CounterMetricFamily("pgpool2_scrapes", "Scrapes served", value=self.scrapes)
        yield GaugeMetricFamily("pgpool2_last_scrape_error",
                                "1 if the last scrape failed to build some metrics",
                                value=self.last_error)

    def _own_families(self) -> list:
        return list(own_families(take(self.proxy)))

    def _pgpool_families(self) -> list:
        """The exporter's families from the rows SHOW answers with (as no session)."""
        return list(exporter_families({name: view(name, self.proxy) for name in VIEWS}))


class _Metrics(resource.Resource):
    isLeaf = True

    def __init__(self, proxy):
        super().__init__()
        self.registry = CollectorRegistry(auto_describe=False)
        self.collector = ProxyCollector(proxy)
        self.registry.register(self.collector)

    def render_GET(self, request):
        if request.postpath not in ([], [b""]):
            return _not_found(request)
        body = generate_latest(self.registry)
        request.setHeader(b"content-type", CONTENT_TYPE)
        return body


class _Health(resource.Resource):
    isLeaf = True

    def render_GET(self, request):
        if request.postpath not in ([], [b""]):
            return _not_found(request)
        request.setHeader(b"content-type", b"text/plain; charset=utf-8")
        return b"ok\n"  # the reactor is turning: it is answering this


class _Ready(resource.Resource):
    isLeaf = True

    def __init__(self, proxy):
        super().__init__()
        self.proxy = proxy

    def render_GET(self, request):
        if request.postpath not in ([], [b""]):
            return _not_found(request)
        ready, why = readiness(self.proxy)
        request.setResponseCode(200 if ready else 503)
        request.setHeader(b"content-type", b"text/plain; charset=utf-8")
        return why.encode() + b"\n"


def _not_found(request) -> bytes:
    request.setResponseCode(404)
    request.setHeader(b"content-type", b"text/plain; charset=utf-8")
    return b"not found: /metrics, /healthz and /readyz are served here\n"


class _Root(resource.Resource):
    def getChild(self, path, request):
        return _NotFound()

    def render_GET(self, request):
        return _not_found(request)


class _NotFound(resource.Resource):
    isLeaf = True

    def render_GET(self, request):
        return _not_found(request)


class _Site(server.Site):
    noisy = False

    def log(self, request) -> None:
        """No access log: probes and scrapes come every few seconds."""


def make_site(proxy) -> server.Site:
    root = _Root()
    root.putChild(b"metrics", _Metrics(proxy))
    root.putChild(b"healthz", _Health())
    root.putChild(b"readyz", _Ready(proxy))
    site = _Site(root, timeout=60)
    site.displayTracebacks = False
    return site


class MetricsService(service.Service):
    """Listens on ``metrics_port`` at ``metrics_listen_addresses`` while the daemon runs."""

    name = "pgtwist-metrics"

    def __init__(self, proxy, reactor, interfaces: list[str]):
        self.proxy = proxy
        self.reactor = reactor
        self.interfaces = interfaces
        self.site = make_site(proxy)
        self.ports: list = []

    def startService(self) -> None:
        super().startService()
        port = self.proxy.config.params["metrics_port"]
        for interface in self.interfaces:
            try:
                self.ports.append(self.reactor.listenTCP(port, self.site, interface=interface))
            except CannotListenError as exc:
                raise ConfigError(f"metrics_port: cannot listen on {interface}:{port}: "
                                  f"{exc.socketError}") from None
            log.info("pgtwist metrics on http://{iface}:{port}/metrics", iface=interface,
                     port=port)

    def stopService(self):
        super().stopService()
        from twisted.internet import defer

        ports, self.ports = self.ports, []
        return defer.gatherResults([defer.maybeDeferred(p.stopListening) for p in ports])
