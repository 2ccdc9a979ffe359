"""Counters and latency histograms the relay fills, read only when /metrics is scraped.

The relay's hot path pays at most a dict increment or a bucket-array increment per
statement: prometheus-client's own metric objects take a lock per call (0.3-1 us against
~0.07 us for a dict increment, docs/metrics.md), so the families are built from these
plain values at scrape time by pgtwist.metrics.collector.  Nothing here imports Twisted
or does I/O; clock reads happen only when latency timing is on (``metrics_port`` set).
"""

from __future__ import annotations

import re
from bisect import bisect_left
from time import perf_counter

# Upper bounds in seconds.  A statement relayed to a local server takes ~100 us, so the
# buckets start well below prometheus-client's default 5 ms.
LATENCY_BOUNDS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                  0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
# Distinct (target, policy, reason, node) label sets kept; later ones count as OTHER.  A
# reason may name a table or a lag, so its numbers are folded (ROUTE_NUMBER) and the
# number of label sets is capped: a scrape's size stays bounded whatever the workload.
ROUTE_LABELS_MAX = 500
OTHER = "other (distinct reasons over the limit)"
ROUTE_NUMBER = re.compile(r"\d+(\.\d+)?")


class Histogram:
    """Counts per bucket (``counts[i]``: observations <= ``bounds[i]``, the last one
    above every bound) and their sum: Prometheus' cumulative form is made at scrape."""

    __slots__ = ("bounds", "counts", "total")

    def __init__(self, bounds=LATENCY_BOUNDS):
        self.bounds = tuple(bounds)
        self.counts = [0] * (len(self.bounds) + 1)
        self.total = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.total += value

    def cumulative(self) -> list[tuple[str, int]]:
        """[(le, observations <= le)...] ending with ("+Inf", count)."""
        out, running = [], 0
        for bound, n in zip(self.bounds, self.counts, strict=False):
            running += n
            out.append((_le(bound), running))
        out.append(("+Inf", running + self.counts[-1]))
        return out

    @property
    def count(self) -> int:
        return sum(self.counts)


def _le(bound: float) -> str:
    return repr(float(bound))


class Stats:
    """The process's metric counters (one per Proxy, kept across reloads).

    ``query`` / ``transaction`` / ``checkout`` are None unless ``timed``: without a
    metrics port nothing reads a clock for them.
    """

    def __init__(self, timed: bool = False, clock=perf_counter):
        self.clock = clock
        self.query = Histogram() if timed else None        # client sync point -> ReadyForQuery
        self.transaction = Histogram() if timed else None  # first statement -> its end
        self.checkout = Histogram() if timed else None     # link asked for -> link given
        # (reason, policy, node) -> [count]; several raw keys may share one cell (numbers
        # folded); ``route_cells`` holds each cell once under its (target, policy, folded
        # reason, node) labels.  A reason names its target ("primary: ...", "standby: ...").
        self.routes: dict[tuple, list[int]] = {}
        self.route_cells: dict[tuple, list[int]] = {}
        self.auth_failures: dict[str, int] = {}

    # -- per statement -------------------------------------------------------------------
    def route(self, decision, node_id) -> None:
        """One routing decision carried out on ``node_id`` (None: rejected)."""
        # Strings and an int only: an Enum member's hash is a Python-level call.
        key = (decision.reason, decision.policy, node_id)
        cell = self.routes.get(key)
        if cell is None:
            cell = self._route_cell(key, decision.target.value)
        cell[0] += 1

    def _route_cell(self, key: tuple, target: str) -> list[int]:
        reason, policy, node_id = key
        folded = (target, policy, ROUTE_NUMBER.sub("N", reason), node_id)
        cells = self.route_cells
        cell = cells.get(folded)
        if cell is None:
            if len(cells) >= ROUTE_LABELS_MAX:
                folded = (target, policy, OTHER, node_id)
                cell = cells.get(folded)
            if cell is None:
                cell = cells[folded] = [0]
        if len(self.routes) < 4 * ROUTE_LABELS_MAX:
            self.routes[key] = cell   # the next time: one dict lookup
        return cell

    # -- per session / per transaction ------------------------------------------------------
    def auth_failed(self, method: str) -> None:
        self.auth_failures[method] = self.auth_failures.get(method, 0) + 1

    def immediate_checkout(self) -> None:
        """A checkout served at once without a Deferred (a cached or parked link)."""
        if self.checkout is not None:
            self.checkout.observe(0.0)

    def timed_checkout(self, d):
        """Observe the time until Deferred ``d`` (a link checkout) fires; returns ``d``."""
        hist = self.checkout
        if hist is None:
            return d
        if d.called:
            hist.observe(0.0)
            return d
        clock = self.clock
        t0 = clock()

        def done(result):
            hist.observe(clock() - t0)
            return result

        return d.addBoth(done)
