"""Cluster role bookkeeping, driven with a memory reactor (no sockets)."""

from __future__ import annotations

from twisted.internet.testing import MemoryReactorClock

from pgtwist.cluster import Cluster
from pgtwist.config import parse_config


def _cluster(backends, **params):
    config = parse_config({"backends": backends, "sr_check_period": 0, **params},
                          path=None, env={})
    reactor = MemoryReactorClock()
    return Cluster(reactor, config, lambda user: None), reactor


def test_always_primary_fixes_roles_and_makes_the_rest_standbys():
    cluster, _ = _cluster([{"hostname": "10.0.0.1"},
                           {"hostname": "10.0.0.2", "flag": "ALWAYS_PRIMARY"}])
    assert [n.role for n in cluster.nodes] == ["standby", "primary"]
    assert cluster.primary_id == 1


def test_25006_on_the_primary_rechecks_roles_at_once():
    cluster, reactor = _cluster([{"hostname": "10.0.0.1"}, {"hostname": "10.0.0.2"}])
    cluster.nodes[0].role = "primary"
    version = cluster.version
    cluster.suspect_primary(0)
    assert cluster.nodes[0].role == "unknown"
    assert cluster.primary is None
    assert cluster.version > version
    # Both nodes are asked pg_is_in_recovery() again.
    assert sorted(c[0] for c in reactor.tcpClients) == ["10.0.0.1", "10.0.0.2"]


def test_25006_never_demotes_an_always_primary_node():
    cluster, _ = _cluster([{"hostname": "10.0.0.1", "flag": "ALWAYS_PRIMARY"},
                           {"hostname": "10.0.0.2"}])
    cluster.suspect_primary(0)
    assert cluster.nodes[0].role == "primary"


def test_a_down_node_is_retried_after_a_while():
    cluster, reactor = _cluster([{"hostname": "10.0.0.1", "flag": "ALWAYS_PRIMARY"},
                                 {"hostname": "10.0.0.2"}])
    cluster.mark_down(1)
    assert not cluster.usable(1)
    assert cluster.view().nodes[1].status == "down"
    reactor.advance(6)
    assert cluster.usable(1)
    assert cluster.view().nodes[1].status == "up"


def test_a_demoted_primary_takes_its_lower_replay_position():
    """A node's replay LSN is its latest reading, never a maximum: after the platform
    demotes the old primary (or rebuilds a standby) its old, higher WAL position must not
    make read_consistency call it fresh."""
    cluster, _ = _cluster([{"hostname": "10.0.0.1"}, {"hostname": "10.0.0.2"}])
    node = cluster.nodes[0]
    cluster._role_ok([("f", "1/5000")], node)         # primary: pg_current_wal_lsn()
    assert node.replay_lsn == 0x1_0000_5000
    cluster._role_ok([("t", "1/3000")], node)         # now a standby, replayed less
    assert node.replay_lsn == 0x1_0000_3000
