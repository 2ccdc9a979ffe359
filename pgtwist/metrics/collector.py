"""pgtwist's own metric families (prefix ``pgtwist_``), built from a Snapshot at scrape time.

Pure: a Snapshot in, prometheus-client families out.  The names and labels are listed in
docs/metrics.md.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
)

from .snapshot import Snapshot
from .stats import Histogram

_NODE = ["node", "hostname", "port", "role"]


def own_families(snap: Snapshot) -> Iterator:
    yield from _info(snap)
    yield from _latency(snap)
    yield from _routing(snap)
    yield from _nodes(snap)
    yield from _pool(snap)
    yield from _statements_and_pins(snap)
    auth = CounterMetricFamily(
        "pgtwist_auth_failures", "Client authentications refused, by method (pool_hba: "
        "refused by pool_hba.conf before any exchange; backend: the server refused the "
        "client's own login)", labels=["method"])
    for method, n in sorted(snap.auth_failures.items()):
        auth.add_metric([method], n)
    yield auth


def _info(snap: Snapshot) -> Iterator:
    info = GaugeMetricFamily("pgtwist_info", "pgtwist's version and pool mode (always 1)",
                             labels=["version", "pool_mode"])
    info.add_metric([snap.version, snap.pool_mode], 1)
    yield info
    yield GaugeMetricFamily("pgtwist_ready", "1 while /readyz answers 200", value=int(snap.ready))
    yield GaugeMetricFamily("pgtwist_draining", "1 once shutdown has begun (no new clients)",
                            value=int(snap.draining))
    yield GaugeMetricFamily("pgtwist_sessions", "Client sessions open", value=snap.sessions)
    yield GaugeMetricFamily("pgtwist_client_connections",
                            "Client TCP connections open (with or without a slot)",
                            value=snap.connections)
    yield GaugeMetricFamily("pgtwist_clients", "Clients holding one of the num_init_children "
                            "slots", value=snap.clients)
    yield GaugeMetricFamily("pgtwist_clients_max", "num_init_children", value=snap.clients_max)
    yield GaugeMetricFamily("pgtwist_clients_waiting", "Clients waiting for a slot",
                            value=snap.clients_waiting)
    yield GaugeMetricFamily("pgtwist_clients_saturation", "clients / num_init_children",
                            value=snap.clients / snap.clients_max if snap.clients_max else 0.0)


def _histogram(name: str, doc: str, hist: Histogram | None) -> Iterator:
    if hist is None:
        return
    yield HistogramMetricFamily(name, doc, buckets=hist.cumulative(), sum_value=hist.total)


def _latency(snap: Snapshot) -> Iterator:
    yield from _histogram(
        "pgtwist_query_duration_seconds",
        "From a client sync point (Query, Sync, FunctionCall) sent to a server to its "
        "ReadyForQuery, as the relay sees it", snap.query)
    yield from _histogram(
        "pgtwist_transaction_duration_seconds",
        "Transaction blocks on the primary: from the sync point that opened one to the "
        "ReadyForQuery that ended it", snap.transaction)
    yield from _histogram(
        "pgtwist_pool_checkout_duration_seconds",
        "From a session asking the pool for a server link to getting it (0 when one was idle)",
        snap.checkout)


def _routing(snap: Snapshot) -> Iterator:
    routes = CounterMetricFamily(
        "pgtwist_routing_decisions",
        "Routing decisions carried out, by target, deciding policy, reason (numbers folded "
        "to N) and node; '' node: rejected", labels=["target", "policy", "reason", "node"])
    sticky = CounterMetricFamily(
        "pgtwist_stickiness_decisions",
        "Statements kept on the primary by an earlier write (the stickiness policy, "
        "disable_load_balance_on_write), by reason", labels=["reason"])
    sticky_counts: dict[str, int] = {}
    for (target, policy, reason, node), n in sorted(snap.routes.items(), key=_route_key):
        routes.add_metric([target, policy, reason, "" if node is None else str(node)], n)
        if policy == "stickiness":
            sticky_counts[reason] = sticky_counts.get(reason, 0) + n
    yield routes
    for reason, n in sorted(sticky_counts.items()):
        sticky.add_metric([reason], n)
    yield sticky
    outcomes = CounterMetricFamily(
        "pgtwist_read_consistency_reads",
        "Reads that had to see earlier writes (read_consistency), by outcome",
        labels=["outcome"])
    events = CounterMetricFamily(
        "pgtwist_read_consistency_events",
        "read_consistency bookkeeping: commit LSNs captured, and settled by polling",
        labels=["event"])
    for name, n in sorted(snap.consistency.items()):
        if name in ("replica_fresh", "waited_replica", "primary"):
            outcomes.add_metric([name], n)
        else:
            events.add_metric([name], n)
    yield outcomes
    yield events


def _route_key(item):
    (target, policy, reason, node), _n = item
    return (target, policy, reason, -1 if node is None else node)


def _nodes(snap: Snapshot) -> Iterator:
    up = GaugeMetricFamily("pgtwist_node_up", "1 unless pgtwist holds the node down",
                           labels=_NODE)
    lag_b = GaugeMetricFamily("pgtwist_node_replication_lag_bytes",
                              "WAL bytes the node's replay is behind the primary's current LSN",
                              labels=_NODE)
    lag_s = GaugeMetricFamily("pgtwist_node_replication_lag_seconds",
                              "Replication delay in seconds (delay_threshold_by_time)",
                              labels=_NODE)
    lsn = GaugeMetricFamily("pgtwist_node_lsn_bytes",
                            "The last LSN read: a standby's replay LSN, the primary's "
                            "current LSN", labels=_NODE)
    for n in snap.nodes:
        labels = [str(n.node_id), n.hostname, str(n.port), n.role]
        up.add_metric(labels, 0 if n.status == "down" else 1)
        if n.lag_bytes is not None:
            lag_b.add_metric(labels, n.lag_bytes)
        if n.lag_seconds is not None:
            lag_s.add_metric(labels, n.lag_seconds)
        if n.replay_lsn is not None:
            lsn.add_metric(labels, n.replay_lsn)
    yield from (up, lag_b, lag_s, lsn)


def _pool(snap: Snapshot) -> Iterator:
    links = GaugeMetricFamily("pgtwist_pool_links", "Server links by node and state",
                              labels=["node", "state"])
    waiters = GaugeMetricFamily("pgtwist_pool_waiters", "Sessions queued for a link",
                                labels=["node"])
    saturation = GaugeMetricFamily(
        "pgtwist_pool_saturation", "(busy + connecting) links / the node's limit "
        "(backend_max_connections, or transaction_pool_size per key); only with a limit",
        labels=["node"])
    for node_id, c in sorted(snap.pool_nodes.items()):
        node = str(node_id)
        for state in ("idle", "busy", "connecting"):
            links.add_metric([node, state], c.get(state, 0))
        waiters.add_metric([node], c.get("waiting", 0))
        limit = snap.pool_limits.get(node_id)
        if limit:
            saturation.add_metric([node], (c.get("busy", 0) + c.get("connecting", 0)) / limit)
    yield from (links, waiters, saturation)
    events = CounterMetricFamily("pgtwist_pool_link_events", "Pool events: links created, "
                                 "reused, closed..., checkouts timed out or cancelled",
                                 labels=["event"])
    for name, n in sorted(snap.pool_counters.items()):
        events.add_metric([name], n)
    yield events


def _statements_and_pins(snap: Snapshot) -> Iterator:
    c = snap.pooling_counters
    cache = CounterMetricFamily(
        "pgtwist_prepared_statement_cache", "Transaction pooling: a client's prepared "
        "statement found on the server link (hit) or parsed there (miss), or closed to "
        "keep max_prepared_statements (evicted)", labels=["result"])
    for label, name in (("hit", "statements_reused"), ("miss", "statements_parsed"),
                        ("evicted", "statements_evicted")):
        cache.add_metric([label], c.get(name, 0))
    yield cache
    pins = CounterMetricFamily(
        "pgtwist_pins", "Transaction pooling: sessions pinned to their server link, by the "
        "session feature that needs it", labels=["reason"])
    for name, n in sorted(c.items()):
        if name.startswith("pinned_"):
            pins.add_metric([name[len("pinned_"):]], n)
    yield pins
    yield CounterMetricFamily(
        "pgtwist_standby_read_only_retries",
        "Reads a standby refused as read-only, retried on the primary",
        value=c.get("standby_read_only_retries", 0))
