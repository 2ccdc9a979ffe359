"""The routing section is checked with the configuration; write rules and catalog options
come from the configuration, not from the built policies."""

import pytest

from pgtwist.config import ConfigError, parse_config
from pgtwist.config_routing import PolicyEntry, RoutingConfig, parse_routing
from pgtwist.registry import build_chain, catalog_options, write_rules
from pgtwist.routing.builtin import DEFAULT_ORDER
from pgtwist.testing import FakeFactory, FakePolicy

BACKENDS = [{"hostname": "p"}, {"hostname": "s1"}]


def _config(routing=None, **params):
    raw = {"backends": BACKENDS, **params}
    if routing is not None:
        raw["routing"] = routing
    return parse_config(raw, path=None, env={})


def _errors(raw):
    with pytest.raises(ConfigError) as info:
        parse_config({"backends": BACKENDS, **raw}, path=None, env={})
    return info.value.errors


def test_parse_routing_entries(tmp_path):
    errors: list[str] = []
    routing = parse_routing({"plugin_paths": "extra", "policies": [
        "statement", {"name": "stickiness", "disable_load_balance_on_write": "always"}]},
        str(tmp_path), errors, check_files=False)
    assert errors == []
    assert routing.plugin_paths == (str(tmp_path / "extra"),)
    assert routing.policies == (
        PolicyEntry("statement", {}, "routing.policies[0]"),
        PolicyEntry("stickiness", {"disable_load_balance_on_write": "always"},
                    "routing.policies[1]"))
    assert routing.entry("stickiness").path == "routing.policies[1]"
    assert routing.entry("weighted_balancer") is None
    with pytest.raises(TypeError):
        routing.entry("stickiness").options["disable_load_balance_on_write"] = "off"
    assert RoutingConfig().policies is None and RoutingConfig().entry("statement") is None


def test_missing_plugin_directory_is_an_error_only_when_files_are_checked(tmp_path):
    errors: list[str] = []
    parse_routing({"plugin_paths": ["nowhere"]}, str(tmp_path), errors)
    assert errors == [f"routing.plugin_paths[0]: {tmp_path / 'nowhere'} is not a directory"]
    errors.clear()
    parse_routing({"plugin_paths": ["nowhere"]}, str(tmp_path), errors, check_files=False)
    assert errors == []


def test_routing_shape_errors_come_with_the_other_config_errors():
    assert _errors({"port": "x", "routing": {"policies": [42], "plugin_paths": 7,
                                             "policy": []}}) == [
        "port: expected an integer 1-65535, got 'x'",
        "routing.policy: unknown setting (expected policies, plugin_paths)",
        "routing.plugin_paths: expected a list of directories",
        "routing.policies[0]: expected a policy name or a mapping with 'name', got 42",
    ]
    assert _errors({"routing": {"plugin_paths": [""], "policies": "statement"}}) == [
        "routing.plugin_paths[0]: expected a directory name, got ''",
        "routing.policies: expected a non-empty list of policy names or {name: ..., options} "
        "mappings",
    ]


def test_config_carries_the_checked_section():
    assert _config().routing == RoutingConfig((), None)
    config = _config({"policies": ["statement", {"name": "weighted_balancer"}]})
    assert [e.name for e in config.routing.policies] == ["statement", "weighted_balancer"]
    assert config.params["routing"]["policies"][0] == "statement"   # the raw section stays


def test_write_rules_come_from_flat_parameters_and_policy_blocks():
    flat = _config(disable_load_balance_on_write="always", allow_sql_comments=True,
                   write_function_list="nextval")
    rules = write_rules(flat)
    assert (rules.mode, rules.allow_sql_comments, rules.ignore_leading_white_space) == (
        "always", True, True)
    assert [p.text for p in rules.functions.write] == ["nextval"]
    blocks = _config({"policies": [
        {"name": "statement", "ignore_leading_white_space": "off", "load_balance_mode": True},
        {"name": "function_list", "read_only_function_list": ["lower"],
         "write_function_list": []},
        {"name": "stickiness", "disable_load_balance_on_write": "dml_adaptive"},
    ]}, disable_load_balance_on_write="always", write_function_list="nextval")
    rules = write_rules(blocks)
    assert (rules.mode, rules.ignore_leading_white_space) == ("dml_adaptive", False)
    assert [p.text for p in rules.functions.read_only] == ["lower"]
    assert rules.functions.write == ()


def test_write_rules_do_not_read_the_policies():
    config = _config({"policies": ["stickiness"]}, disable_load_balance_on_write="off")
    fake = FakePolicy(name="stickiness")
    fake.mode = "always"            # what the old getattr reading would have picked up
    chain = build_chain(config, factories={"stickiness": FakeFactory("stickiness", fake)})
    assert write_rules(config, chain).mode == "off"
    assert write_rules(config) == write_rules(config, chain)


def test_catalog_options_follow_the_temp_tables_policy():
    assert catalog_options(_config()).check_temp_table == "catalog"
    assert catalog_options(_config(check_temp_table="off")).check_temp_table == "none"
    block = {"name": "temp_tables", "check_temp_table": "trace", "check_unlogged_table": False}
    options = catalog_options(_config({"policies": [block]}, check_temp_table="on"))
    assert (options.check_temp_table, options.check_unlogged_table) == ("trace", False)


def test_block_errors_still_name_their_entry():
    config = _config({"policies": ["statement", {"name": "stickiness",
                                                 "disable_load_balance_on_write": "x"}]})
    with pytest.raises(ConfigError) as info:
        build_chain(config)
    assert info.value.errors == [
        "routing.policies[1].disable_load_balance_on_write: expected one of off, transaction, "
        "trans_transaction, always, dml_adaptive, got 'x'"]
    with pytest.raises(ConfigError) as info:
        write_rules(config)
    assert info.value.errors[0].startswith("routing.policies[1].disable_load_balance_on_write")


def test_default_chain_is_the_default_order():
    assert build_chain(_config()).names == DEFAULT_ORDER


def test_router_reads_text_as_its_statement_policy_and_catalog_as_temp_tables():
    from types import SimpleNamespace

    from pgtwist.router import Router

    config = _config({"policies": [
        {"name": "statement", "allow_sql_comments": True},
        {"name": "temp_tables", "check_temp_table": "none", "check_unlogged_table": False},
        "weighted_balancer"]})
    router = Router(SimpleNamespace(), config)
    assert router.classifier.allow_sql_comments is True
    assert (router.catalog.check_temp, router.catalog.check_unlogged) == (False, False)
    flat = Router(SimpleNamespace(), _config())
    assert flat.classifier.allow_sql_comments is False
    assert (flat.catalog.check_temp, flat.catalog.check_unlogged) == (True, True)
