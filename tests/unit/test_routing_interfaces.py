"""The routing plugin point's declared parts: IRoutingPolicy.cacheable and IBalancer."""

from types import SimpleNamespace

import pytest
from zope.interface.verify import verifyObject

from pgtwist.config import parse_config
from pgtwist.interfaces import IBalancer, IRoutingPolicy
from pgtwist.router import Router
from pgtwist.routing import builtin
from pgtwist.routing.balancer import WEIGHTS_ONLY, WeightedBalancer, parse_preference_list
from pgtwist.routing.chain import Chain
from pgtwist.testing import FakePolicy, RaisingPolicy, fake_cluster, fake_session

APP = "app_name_redirect_preference_list"


def _policy(name, **options):
    keys, parse, cls = builtin.POLICIES[name]
    return cls(parse({"node_count": 3, **options} if "node_count" in keys else options))


# --- cacheable --------------------------------------------------------------------------------


@pytest.mark.parametrize("name", builtin.DEFAULT_ORDER)
def test_builtins_with_default_options_are_cacheable(name):
    policy = _policy(name)
    assert verifyObject(IRoutingPolicy, policy)
    assert policy.cacheable is True


def test_text_patterns_and_statement_draws_are_not_cacheable():
    assert _policy("pattern_list", primary_routing_query_pattern_list="SELECT 42").cacheable is False
    assert _policy("weighted_balancer", statement_level_load_balance=True).cacheable is False
    assert _policy("weighted_balancer", **{APP: "psql:1"}).cacheable is True


def test_chain_is_cacheable_only_if_every_policy_says_so():
    default = Chain(_policy(n) for n in builtin.DEFAULT_ORDER)
    assert default.cacheable is True
    assert Chain([_policy("statement"), _policy("weighted_balancer")]).cacheable is True
    assert Chain([_policy("statement"), FakePolicy(cacheable=True)]).cacheable is True
    assert Chain([_policy("statement"), FakePolicy()]).cacheable is False
    assert Chain([_policy("statement"), RaisingPolicy()]).cacheable is False
    undeclared = SimpleNamespace(name="old", route=lambda request: None)
    assert Chain([_policy("statement"), undeclared]).cacheable is False
    truthy = SimpleNamespace(name="vague", cacheable="yes", route=lambda request: None)
    assert Chain([truthy]).cacheable is False
    assert Chain([]).cacheable is True


# --- IBalancer --------------------------------------------------------------------------------


def test_balancers_provide_ibalancer():
    assert verifyObject(IBalancer, WEIGHTS_ONLY)
    assert verifyObject(IBalancer, WeightedBalancer())
    policy = _policy("weighted_balancer")
    assert verifyObject(IBalancer, policy) and verifyObject(IRoutingPolicy, policy)


def test_weighted_balancer_choose_uses_its_lists():
    lists = parse_preference_list("psql:2", APP, 3)
    chooser = WeightedBalancer(app_list=lists)
    cluster = fake_cluster(3)
    psql = fake_session(application_name="psql")
    assert chooser.choose(cluster, psql, 0.5, 0.5) == (
        2, "node 2: application_name 'psql' matches app_name_redirect_preference_list entry 1 "
           "('psql:2')")
    assert WEIGHTS_ONLY.choose(cluster, psql, 0.5, 0.5) == (1, "node 1: drawn by weight 1 of 3")
    assert WEIGHTS_ONLY.choose(cluster, psql, 0.99) == (2, "node 2: drawn by weight 1 of 3")


def test_chain_balancer_is_the_first_ibalancer_else_weights_only():
    lb = _policy("weighted_balancer", **{APP: "psql:0"})
    assert Chain([_policy("statement"), lb]).balancer is lb
    assert Chain([_policy("statement"), FakePolicy()]).balancer is WEIGHTS_ONLY
    second = _policy("weighted_balancer")
    assert Chain([lb, second]).balancer is lb
    psql = fake_session(application_name="psql")
    assert lb.choose(fake_cluster(3), psql, 0.9, 0.9)[0] == 0


# --- the router uses them -----------------------------------------------------------------------


def _router(routing=None, **params):
    raw = {"backends": [{"hostname": "p"}, {"hostname": "s1"}, {"hostname": "s2"}], **params}
    if routing is not None:
        raw["routing"] = routing
    proxy = SimpleNamespace(cluster=SimpleNamespace(view=lambda: fake_cluster(3)))
    return Router(proxy, parse_config(raw, path=None, env={}))


def test_router_cacheability_follows_the_policies():
    assert _router().cacheable is True
    assert _router(primary_routing_query_pattern_list="SELECT 1").cacheable is False
    assert _router(statement_level_load_balance=True).cacheable is False
    # A pattern list given in a policy block (not as the flat parameter) is seen too.
    block = {"name": "pattern_list", "primary_routing_query_pattern_list": ["SELECT 1"]}
    order = [block if n == "pattern_list" else n for n in builtin.DEFAULT_ORDER]
    assert _router({"policies": order}).cacheable is False
    assert _router({"policies": ["statement", "weighted_balancer"]}).cacheable is True


def test_router_chooses_the_lb_node_through_the_chains_balancer():
    session = SimpleNamespace(user="u", database="d", application_name="psql", primary_id=0)
    router = _router(app_name_redirect_preference_list="psql:2")
    assert router.choose_lb_node(session)[0] == 2
    block = {"name": "weighted_balancer", APP: ["psql:1"]}
    assert _router({"policies": ["statement", block]}).choose_lb_node(session)[0] == 1
    off = _router(app_name_redirect_preference_list="psql:2", load_balance_mode=False)
    assert off.choose_lb_node(session) == (0, "load_balance_mode is off")
