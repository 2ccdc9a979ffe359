"""Prometheus metrics and Kubernetes probes (docs/metrics.md).

``stats`` is a plain value module the session code may fill (integer counters and bucket
arrays: a dict increment at most per statement); ``collector`` turns those and a snapshot
of the live model into Prometheus families at scrape time; ``http`` serves them with
``/healthz`` and ``/readyz`` on ``metrics_port`` in the daemon's reactor.  Importing this
package imports nothing: the session layer loads ``stats`` alone.
"""
