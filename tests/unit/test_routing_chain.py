"""The routing chain: first decision wins, broken policies are skipped, explain()."""

from zope.interface.verify import verifyObject

from pgtwist.interfaces import IRoutingPolicy, IRoutingPolicyFactory
from pgtwist.routing.builtin import StatementPolicy, WeightedBalancerPolicy
from pgtwist.routing.chain import Chain, Explanation
from pgtwist.routing.values import UNDECIDED, RouteDecision, Target, both, node, primary
from pgtwist.testing import (
    FakeFactory,
    FakePolicy,
    RaisingPolicy,
    fake_session,
    make_query,
    make_request,
)


def test_fakes_provide_their_interfaces():
    assert verifyObject(IRoutingPolicy, FakePolicy())
    assert verifyObject(IRoutingPolicy, RaisingPolicy())
    assert verifyObject(IRoutingPolicyFactory, FakeFactory())


def test_first_decision_wins_and_is_credited():
    late = FakePolicy(primary("primary: late"), name="late")
    chain = Chain([FakePolicy(name="quiet"), FakePolicy(node(2, "node 2: mine"), name="mine"),
                   late])
    assert chain.route(make_request()) == RouteDecision(Target.NODE, 2, "node 2: mine", "mine")
    assert late.requests == []


def test_all_undecided_falls_back_to_primary():
    chain = Chain([FakePolicy(), FakePolicy()])
    assert chain.route(make_request()) == RouteDecision(Target.PRIMARY, None,
                                                        "primary: no policy decided", "chain")
    assert Chain([]).route(make_request()).reason == "primary: no policy decided"


def test_raising_policy_is_skipped_and_recorded():
    seen = []
    broken = RaisingPolicy(ValueError("bad"), name="broken")
    chain = Chain([broken, FakePolicy(both("both: ok"), name="ok")],
                  on_error=lambda name, exc: seen.append((name, str(exc))))
    assert chain.route(make_request()) == RouteDecision(Target.BOTH, None, "both: ok", "ok")
    assert chain.route(make_request()).policy == "ok"
    assert chain.error_count == 2 and broken.calls == 2
    assert [(n, str(e)) for n, e in chain.errors] == [("broken", "bad"), ("broken", "bad")]
    assert seen == [("broken", "bad"), ("broken", "bad")]


def test_policy_returning_garbage_is_skipped():
    chain = Chain([FakePolicy(None, name="none"), FakePolicy(primary("primary: x"), name="x")])
    assert chain.route(make_request()).policy == "x"
    assert chain.error_count == 1 and isinstance(chain.errors[0][1], AttributeError)


def test_failing_error_callback_does_not_break_routing():
    def on_error(name, exc):
        raise RuntimeError("logger down")
    chain = Chain([RaisingPolicy()], on_error=on_error)
    assert chain.route(make_request()).reason == "primary: no policy decided"


def test_errors_are_bounded():
    chain = Chain([RaisingPolicy()])
    for _ in range(250):
        chain.route(make_request())
    assert chain.error_count == 250 and len(chain.errors) == 100


def test_explain_lists_each_policy_asked():
    chain = Chain([StatementPolicy(), RaisingPolicy(KeyError("k"), name="broken"),
                   WeightedBalancerPolicy(), FakePolicy(primary("primary: never"), name="never")])
    result = chain.explain(make_request("SELECT", session=fake_session(lb_node=1)))
    assert isinstance(result, Explanation)
    assert result.decision == RouteDecision(Target.NODE, 1, "standby: read, session LB node 1",
                                            "weighted_balancer")
    assert result.steps == (
        ("statement", UNDECIDED.by("statement")),
        ("broken", RouteDecision(Target.UNDECIDED, None, "error: KeyError: 'k'", "broken")),
        ("weighted_balancer", result.decision),
    )
    assert result.lines() == [
        "statement: undecided",
        "broken: undecided - error: KeyError: 'k'",
        "weighted_balancer: node 1 - standby: read, session LB node 1",
        "=> node 1: standby: read, session LB node 1 (by weighted_balancer)",
    ]
    assert chain.error_count == 1


def test_explain_when_nobody_decides():
    result = Chain([FakePolicy(name="a")]).explain(make_request())
    assert result.decision.reason == "primary: no policy decided"
    assert result.steps == (("a", UNDECIDED.by("a")),)


def test_sql_prepare_is_routed_like_its_body():
    chain = Chain([StatementPolicy(), WeightedBalancerPolicy()])
    q = make_query("PREPARE", prepared=make_query("SELECT"))
    d = chain.route(make_request(q, sql="PREPARE p AS SELECT 1"))
    assert (d.target, d.node) == (Target.NODE, 1)
    q = make_query("PREPARE", prepared=make_query("UPDATE"))
    assert chain.route(make_request(q, sql="PREPARE p AS UPDATE t SET a = 1")) == RouteDecision(
        Target.PRIMARY, None, "primary: UPDATE is a write", "statement")


def test_policy_lookup_by_name():
    statement = StatementPolicy()
    chain = Chain([statement, FakePolicy(name="fake")])
    assert chain.policy("statement") is statement
    assert chain.policy("nope") is None
    assert chain.names == ("statement", "fake")
