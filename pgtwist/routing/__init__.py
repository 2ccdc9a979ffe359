"""Routing: pure policies, the chain and the balancer.  No I/O, no Twisted, no sqlglot."""
