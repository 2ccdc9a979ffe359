"""Plugin discovery (twisted.plugin) and building the chain from a Config."""

import sys
import textwrap
from pathlib import Path

import pytest
from twisted.logger import globalLogPublisher
from zope.interface.verify import verifyObject

import plugins
from pgtwist.config import ConfigError, load_config, parse_config
from pgtwist.interfaces import IRoutingPolicy, IRoutingPolicyFactory
from pgtwist.registry import build_chain, load_factories, write_rules
from pgtwist.routing.builtin import DEFAULT_ORDER
from pgtwist.routing.values import RouteDecision, Target
from pgtwist.testing import (
    FakeFactory,
    FakePolicy,
    fake_cluster,
    fake_session,
    make_request,
    reporting_plugin_source,
)

ROOT = Path(__file__).resolve().parents[2]
BUILTINS = ("statement", "pattern_list", "function_list", "temp_tables", "stickiness",
            "read_consistency", "weighted_balancer")

REPORTING_PLUGIN = reporting_plugin_source("reporting_to_node1")

BROKEN_PLUGIN = '''
from twisted.plugin import IPlugin
from zope.interface import implementer

from pgtwist.interfaces import IRoutingPolicyFactory


@implementer(IPlugin, IRoutingPolicyFactory)
class NoBuild:
    name = "no_build"

    def parse_config(self, raw, path):
        return raw


broken = NoBuild()
'''


@pytest.fixture
def clean_plugin_modules():
    before = set(sys.modules)
    yield
    for name in set(sys.modules) - before:
        if name.startswith("plugins."):
            del sys.modules[name]


def _config(routing=None, **params):
    raw = {"backends": [{"hostname": "p"}, {"hostname": "s1"}, {"hostname": "s2"}], **params}
    if routing is not None:
        raw["routing"] = routing
    return parse_config(raw, path=None, env={})


def _errors(routing=None, **params):
    with pytest.raises(ConfigError) as info:
        build_chain(_config(routing, **params))
    return info.value.errors


# --- discovery --------------------------------------------------------------------------------


def test_discovery_finds_the_builtins():
    factories = load_factories()
    assert set(BUILTINS) <= set(factories)
    assert DEFAULT_ORDER == BUILTINS


@pytest.mark.parametrize("name", BUILTINS)
def test_builtin_factory_and_its_policy_provide_the_interfaces(name):
    factory = load_factories()[name]
    assert verifyObject(IRoutingPolicyFactory, factory)
    assert factory.name == name
    policy = factory.build(factory.parse_config({}, "routing.policies[0]"))
    assert verifyObject(IRoutingPolicy, policy)
    assert policy.name == name


def test_custom_policy_from_a_plugin_path(tmp_path, clean_plugin_modules):
    (tmp_path / "pgtwist_test_reporting.py").write_text(textwrap.dedent(REPORTING_PLUGIN))
    path_before = list(plugins.__path__)
    config = _config({"plugin_paths": [str(tmp_path)],
                      "policies": ["statement", "reporting_to_node1", "weighted_balancer"]})
    chain = build_chain(config)
    assert plugins.__path__ == path_before
    assert chain.names == ("statement", "reporting_to_node1", "weighted_balancer")
    cluster = fake_cluster(3)
    reporting = fake_session(application_name="reporting", lb_node=2)
    assert chain.route(make_request("SELECT", session=reporting, cluster=cluster)) == \
        RouteDecision(Target.NODE, 1, "node 1: reporting reads", "reporting_to_node1")
    other = fake_session(application_name="web", lb_node=2)
    assert chain.route(make_request("SELECT", session=other, cluster=cluster)).node == 2
    assert chain.route(make_request("INSERT", session=reporting)).target is Target.PRIMARY


def test_plugin_path_relative_to_config_file(tmp_path, clean_plugin_modules):
    (tmp_path / "policies").mkdir()
    (tmp_path / "policies" / "pgtwist_test_reporting2.py").write_text(
        textwrap.dedent(REPORTING_PLUGIN))
    (tmp_path / "pgtwist.yaml").write_text(textwrap.dedent("""\
        backends: [{hostname: p}, {hostname: s}]
        routing:
          plugin_paths: [policies]
          policies: [statement, {name: reporting_to_node1, node: 0}, weighted_balancer]
        """))
    chain = build_chain(load_config(str(tmp_path / "pgtwist.yaml"), env={}))
    reporting = fake_session(application_name="reporting")
    assert chain.route(make_request("SELECT", session=reporting)).node == 0


def test_plugin_option_error_names_its_path(tmp_path, clean_plugin_modules):
    (tmp_path / "pgtwist_test_reporting3.py").write_text(textwrap.dedent(REPORTING_PLUGIN))
    errors = _errors({"plugin_paths": [str(tmp_path)],
                      "policies": ["statement", {"name": "reporting_to_node1", "node": "x"}]})
    assert errors == ["routing.policies[1].node: expected a node id"]


def test_broken_plugin_is_skipped_with_a_warning(tmp_path, clean_plugin_modules):
    (tmp_path / "pgtwist_test_broken.py").write_text(textwrap.dedent(BROKEN_PLUGIN))
    events = []
    globalLogPublisher.addObserver(events.append)
    try:
        factories = load_factories([str(tmp_path)])
    finally:
        globalLogPublisher.removeObserver(events.append)
    assert "no_build" not in factories and set(BUILTINS) <= set(factories)
    warnings = [e for e in events if "Ignoring routing policy plugin" in e.get("log_format", "")]
    assert len(warnings) == 1 and "build" in warnings[0]["problem"]


# --- building the chain -----------------------------------------------------------------------


def test_default_chain_from_flat_parameters():
    config = _config(app_name_redirect_preference_list="psql:2",
                     disable_load_balance_on_write="always",
                     primary_routing_query_pattern_list="SELECT 42")
    chain = build_chain(config)
    assert chain.names == BUILTINS
    assert chain.policy("stickiness").mode == "always"
    assert [e.text for e in chain.policy("weighted_balancer").options.app_list] == ["psql:2"]
    assert chain.route(make_request("SELECT", sql="select 42")).reason == \
        "primary: matches primary_routing_query_pattern_list entry 1"
    assert write_rules(config, chain).mode == "always"


def test_reference_config_builds_the_default_chain():
    chain = build_chain(load_config(str(ROOT / "etc" / "pgpool.yaml"), env={}))
    assert chain.names == BUILTINS


def test_flat_parameter_errors_name_the_parameter():
    assert _errors(app_name_redirect_preference_list="psql:3,x") == [
        "app_name_redirect_preference_list: entry 1 'psql:3': unknown node id 3 "
        "(configured node ids: 0-2)",
        "app_name_redirect_preference_list: entry 2 'x': missing ':' (expected regex:node or "
        "regex:node(ratio))",
    ]
    assert _errors(primary_routing_query_pattern_list="a;(b") == [
        "primary_routing_query_pattern_list: entry 2 '(b': bad regular expression: missing ), "
        "unterminated subpattern at position 0"]


def test_policies_list_with_option_blocks():
    chain = build_chain(_config({"policies": [
        "statement",
        {"name": "stickiness", "disable_load_balance_on_write": "trans_transaction"},
        {"name": "weighted_balancer", "statement_level_load_balance": True},
    ]}, disable_load_balance_on_write="always"))
    assert chain.names == ("statement", "stickiness", "weighted_balancer")
    assert chain.policy("stickiness").mode == "trans_transaction"
    assert chain.policy("weighted_balancer").options.statement_level_load_balance


def test_block_options_override_flat_ones_and_errors_name_the_block():
    errors = _errors({"policies": [{"name": "weighted_balancer",
                                    "user_redirect_preference_list": ["bob:9"],
                                    "statement_level": True}]})
    assert errors == [
        "routing.policies[0].statement_level: unknown option (expected "
        "statement_level_load_balance, app_name_redirect_preference_list, "
        "database_redirect_preference_list, user_redirect_preference_list, delay_threshold, "
        "delay_threshold_by_time, prefer_lower_delay_standby, node_count); did you mean "
        "statement_level_load_balance?",
        "routing.policies[0].user_redirect_preference_list: entry 1 'bob:9': unknown node id 9 "
        "(configured node ids: 0-2)",
    ]


def test_unknown_policy_names_path_and_known_ones():
    errors = _errors({"policies": ["statement", "round_robin"]})
    assert errors == ["routing.policies[1]: unknown policy 'round_robin' (known: function_list, "
                      "pattern_list, read_consistency, statement, stickiness, temp_tables, "
                      "weighted_balancer)"]


def test_routing_shape_errors(tmp_path):
    assert _errors({"policies": []}) == [
        "routing.policies: expected a non-empty list of policy names or {name: ..., options} "
        "mappings"]
    assert _errors({"policies": [42, {"node": 1}]}) == [
        "routing.policies[0]: expected a policy name or a mapping with 'name', got 42",
        "routing.policies[1]: expected a policy name or a mapping with 'name', got {'node': 1}",
    ]
    missing = tmp_path / "missing"
    assert _errors({"plugin_paths": [str(missing)], "policy": []}) == [
        "routing.policy: unknown setting (expected policies, plugin_paths)",
        f"routing.plugin_paths[0]: {missing} is not a directory",
    ]


def test_given_factories_are_used_as_is():
    policy = FakePolicy(name="mine")
    chain = build_chain(_config({"policies": [{"name": "mine", "x": 1}]}),
                        factories={"mine": FakeFactory("mine", policy)})
    assert chain.policies == (policy,)


def test_default_chain_needs_the_builtins():
    with pytest.raises(ConfigError) as info:
        build_chain(_config(), factories={})
    assert info.value.errors == [
        "routing: built-in policies not found: statement, pattern_list, function_list, "
        "temp_tables, stickiness, read_consistency, weighted_balancer (is the plugins package "
        "installed?)"]
