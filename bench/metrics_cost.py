"""What metrics cost, measured in-process (no servers): the per-statement instrumentation
against prometheus-client's own metric objects, and one /metrics scrape with many sessions.

    .venv/bin/python -m bench.metrics_cost [--sessions 1000]

A scrape runs in the reactor thread, so its time is time the relay does not run: it must
stay small next to a scrape interval.  The sessions are real Relays of a real Proxy over
scripted servers (pgtwist.testing.ScriptedCluster), each logged in and holding a link.
"""

from __future__ import annotations

import argparse
import time
import timeit

from prometheus_client import Counter, Histogram, generate_latest
from prometheus_client.core import CollectorRegistry

from pgtwist.metrics import stats as st
from pgtwist.metrics.http import make_site
from pgtwist.routing.values import node
from pgtwist.testing import ScriptedCluster
from pgtwist.wire import codes
from pgtwist.wire import messages as m


def _ns(f, n: int = 300_000) -> float:
    return min(timeit.repeat(f, number=n, repeat=3)) / n * 1e9


def per_call() -> list[tuple[str, float]]:
    registry = CollectorRegistry()
    counter = Counter("x", "x", ["node", "reason"], registry=registry)
    child = counter.labels("1", "standby: read")
    hist = Histogram("h_seconds", "h", registry=registry)
    counts: dict = {("standby: read", "weighted_balancer", 1): 0}
    key = ("standby: read", "weighted_balancer", 1)
    ours = st.Histogram()
    stats = st.Stats()
    decision = node(1, "standby: read, session LB node 1").by("weighted_balancer")

    def dict_inc():
        counts[key] += 1

    return [
        ("dict increment", _ns(dict_inc)),
        ("pgtwist Stats.route (dict lookup + cell increment, method call)",
         _ns(lambda: stats.route(decision, 1))),
        ("pgtwist Histogram.observe (bisect + 2 increments)", _ns(lambda: ours.observe(0.0003))),
        ("prometheus-client Counter child .inc()", _ns(child.inc)),
        ("prometheus-client Counter .labels(...).inc()",
         _ns(lambda: counter.labels("1", "standby: read").inc())),
        ("prometheus-client Histogram .observe()", _ns(lambda: hist.observe(0.0003))),
        ("time.perf_counter()", _ns(time.perf_counter)),
    ]


def scrape(sessions: int) -> tuple[float, int]:
    """(milliseconds per scrape, page bytes) with ``sessions`` sessions open."""
    cluster = ScriptedCluster(nodes=2, metrics_port=9187, num_init_children=max(sessions, 1))
    relays = []
    for i in range(sessions):
        relay, client = cluster.client()
        relay.client_data(m.startup_message({"user": f"app{i % 10}", "database": "app"}))
        relay.client_data(m.query("SELECT 1"))
        server = cluster.servers[relay.session.lb_node or 0][-1]
        server.reply(m.command_complete("SELECT 1"), m.ready_for_query(codes.TXN_IDLE))
        relays.append(relay)
    resource = make_site(cluster.proxy).resource.children[b"metrics"]
    registry = resource.registry
    generate_latest(registry)
    n = 20
    t0 = time.perf_counter()
    for _ in range(n):
        page = generate_latest(registry)
    return (time.perf_counter() - t0) / n * 1000, len(page)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sessions", default="0,100,1000",
                    help="comma-separated session counts for the scrape timing")
    args = ap.parse_args()
    print("per call:")
    for name, ns in per_call():
        print(f"  {ns:7.0f} ns  {name}")
    print("one /metrics scrape (built in the reactor thread):")
    for count in (int(c) for c in args.sessions.split(",")):
        ms, size = scrape(count)
        print(f"  {count:6d} sessions: {ms:7.2f} ms, {size:,} bytes")


if __name__ == "__main__":
    main()
