"""The read_consistency policy with literal LSNs (pgtwist.routing.consistency)."""

from __future__ import annotations

import pytest

from pgtwist.config import ConfigError
from pgtwist.routing.consistency import (
    ConsistencyPolicyOptions,
    ReadConsistencyPolicy,
    format_lsn,
    parse_lsn,
    parse_read_consistency,
)
from pgtwist.routing.values import (
    ClusterView,
    NodeView,
    RouteRequest,
    SessionView,
    Target,
)
from pgtwist.sql.info import EITHER, PRIMARY, QueryInfo

READ = QueryInfo("SELECT", EITHER, is_read=True)
WRITE = QueryInfo("INSERT", PRIMARY, is_write=True)


def _request(required=0, pending=False, lsns=(None, None, None), lb=1, query=READ,
             status=("up", "up", "up")):
    nodes = tuple(NodeView(i, status[i], "primary" if i == 0 else "standby", 1.0)
                  for i in range(3))
    return RouteRequest(query, SessionView("app", "db", "", lb, required_lsn=required,
                                           lsn_pending=pending),
                        ClusterView(nodes, 0, tuple(lsns)))


POLICY = ReadConsistencyPolicy()


def test_no_requirement_no_opinion():
    assert POLICY.route(_request()).target is Target.UNDECIDED


def test_fresh_lb_node_leaves_the_read_to_the_balancer():
    assert POLICY.route(_request(0x3000100, lsns=(None, 0x3000100, 0))).target \
        is Target.UNDECIDED


def test_stale_lb_node_sends_to_another_fresh_standby():
    d = POLICY.route(_request(0x3000100, lsns=(None, 0x30000FF, 0x3000200)))
    assert (d.target, d.node, d.policy) == (Target.NODE, 2, "read_consistency")


def test_no_fresh_standby_sends_to_the_primary():
    d = POLICY.route(_request(0x3000100, lsns=(None, 0x30000FF, None)))
    assert (d.target, d.policy) == (Target.PRIMARY, "read_consistency")


def test_a_down_fresh_standby_is_not_chosen():
    d = POLICY.route(_request(0x3000100, lsns=(None, 0x30000FF, 0x3000200),
                              status=("up", "up", "down")))
    assert d.target is Target.PRIMARY


def test_pending_write_sends_to_the_primary_whatever_the_lsns():
    d = POLICY.route(_request(0, pending=True, lsns=(None, 1 << 40, 1 << 40)))
    assert d.target is Target.PRIMARY and "being learnt" in d.reason


def test_writes_and_primary_lb_node_are_not_judged():
    assert POLICY.route(_request(5, query=WRITE)).target is Target.UNDECIDED
    assert POLICY.route(_request(5, lb=0)).target is Target.UNDECIDED


def test_none_mode_never_decides():
    policy = ReadConsistencyPolicy(ConsistencyPolicyOptions("none"))
    assert policy.route(_request(5, pending=True)).target is Target.UNDECIDED


def test_statement_level_balancing_needs_every_standby_fresh():
    policy = ReadConsistencyPolicy(ConsistencyPolicyOptions("lsn", True))
    assert policy.route(_request(10, lsns=(None, 10, 11))).target is Target.UNDECIDED
    d = policy.route(_request(10, lsns=(None, 10, 9)))
    assert (d.target, d.node) == (Target.NODE, 1)


def test_lsn_text_round_trip_and_bad_values():
    assert parse_lsn("16/B374D848") == (0x16 << 32) | 0xB374D848
    assert format_lsn(parse_lsn("16/B374D848")) == "16/B374D848"
    for bad in (None, "", "12", "x/1", "1/2/3", "123456789/0"):
        assert parse_lsn(bad) is None


def test_options_name_the_key():
    assert parse_read_consistency({"read_consistency": "none"}).mode == "none"
    with pytest.raises(ConfigError) as info:
        parse_read_consistency({"read_consistency": "eventual"}, "routing.policies[5]")
    assert "routing.policies[5].read_consistency" in str(info.value)
