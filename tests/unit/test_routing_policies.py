"""Each built-in policy's decisions and reasons, with literal values."""

import pytest
from zope.interface.verify import verifyObject

from pgtwist.config import ConfigError
from pgtwist.interfaces import IRoutingPolicy
from pgtwist.routing import builtin
from pgtwist.routing.rules import FunctionOptions, writing_functions
from pgtwist.routing.values import UNDECIDED, CatalogFacts, RouteDecision, Target
from pgtwist.testing import fake_cluster, fake_session, make_query, make_request


def _primary(reason):
    return RouteDecision(Target.PRIMARY, None, reason)


class _Uncredited:
    """A built-in policy whose decisions are compared without their ``policy`` field."""

    def __init__(self, policy):
        self.policy = policy

    def __getattr__(self, name):
        return getattr(self.policy, name)

    def route(self, request):
        d = self.policy.route(request)
        assert d.policy in ("", self.policy.name)
        return d if d is UNDECIDED else RouteDecision(d.target, d.node, d.reason)


def _policy(name, **options):
    _keys, parse, cls = builtin.POLICIES[name]
    return _Uncredited(cls(parse(options, "")))


@pytest.mark.parametrize("name", list(builtin.POLICIES))
def test_every_builtin_policy_provides_the_interface(name):
    policy = _policy(name).policy
    assert verifyObject(IRoutingPolicy, policy)
    assert policy.name == name


# --- statement ------------------------------------------------------------------------------


def test_statement_read_is_undecided():
    assert _policy("statement").route(make_request("SELECT")) is UNDECIDED


@pytest.mark.parametrize("query, reason", [
    (make_query("INSERT"), "primary: INSERT is a write"),
    (make_query("EXPLAIN"), "primary: EXPLAIN is not load balanced"),
    (make_query("SELECT", multi_statement=True), "primary: multi-statement query"),
    (make_query("UNKNOWN", parse_error=True), "primary: could not parse"),
    (make_query("SELECT", touches_catalog=True), "primary: references system catalog"),
    (make_query("SELECT", hints=frozenset({"NO LOAD BALANCE"})),
     "primary: /*NO LOAD BALANCE*/ comment"),
    (make_query("SELECT", has_leading_comment=True),
     "primary: starts with a comment (allow_sql_comments=off)"),
])
def test_statement_primary(query, reason):
    assert _policy("statement").route(make_request(query)) == _primary(reason)


def test_statement_both():
    d = _policy("statement").route(make_request("SET"))
    assert d == RouteDecision(Target.BOTH, None, "both: SET goes to the primary and the "
                                                 "load-balance node")


def test_load_balance_mode_off_sends_everything_to_primary():
    policy = _policy("statement", load_balance_mode="off")
    for command in ("SELECT", "BEGIN", "SET", "INSERT"):
        assert policy.route(make_request(command)) == _primary("primary: load_balance_mode is off")


def test_statement_text_rules_with_allow_sql_comments_off():
    policy = _policy("statement")
    assert policy.route(make_request("SELECT", sql="  select 1")) is UNDECIDED
    assert policy.route(make_request("SELECT", sql="(select 1)")) is UNDECIDED
    assert policy.route(make_request("SELECT", sql="WITH x AS (SELECT 1) TABLE x")) is UNDECIDED
    assert policy.route(make_request("SELECT", sql="/*x*/ SELECT 1")) == _primary(
        "primary: starts with a comment (allow_sql_comments=off)")
    assert policy.route(make_request("SELECT", sql="-- c\nSELECT 1")) == _primary(
        "primary: starts with a comment (allow_sql_comments=off)")
    assert policy.route(make_request("VALUES", sql="VALUES (1)")) == _primary(
        "primary: VALUES does not start with SELECT, WITH or TABLE (allow_sql_comments=off)")
    # SHOW is a read whatever its text looks like
    assert policy.route(make_request("SHOW", sql="/*x*/ SHOW work_mem")) is UNDECIDED


def test_statement_leading_white_space_off():
    policy = _policy("statement", ignore_leading_white_space=False)
    assert policy.route(make_request("SELECT", sql="  SELECT 1")) == _primary(
        "primary: starts with white space (ignore_leading_white_space=off)")


def test_statement_allow_sql_comments_on():
    policy = _policy("statement", allow_sql_comments=True)
    assert policy.route(make_request("SELECT", sql="/*x*/ SELECT 1")) is UNDECIDED
    assert policy.route(make_request("VALUES", sql="VALUES (1)")) is UNDECIDED
    # the hint works either way
    q = make_query("SELECT", hints=frozenset({"NO LOAD BALANCE"}))
    assert policy.route(make_request(q, sql="/*NO LOAD BALANCE*/ SELECT 1")).target is Target.PRIMARY


def test_statement_transaction_state():
    policy = _policy("statement")
    aborted = fake_session(in_transaction=True, txn_failed=True)
    assert policy.route(make_request("SELECT", session=aborted)) == _primary(
        "primary: read in an aborted transaction")
    serial = fake_session(in_transaction=True, serializable=True)
    assert policy.route(make_request("SELECT", session=serial)) == _primary(
        "primary: read in a SERIALIZABLE transaction")
    # outside a transaction the isolation level does not matter
    idle = fake_session(serializable=True)
    assert policy.route(make_request("SELECT", session=idle)) is UNDECIDED


# --- pattern_list ---------------------------------------------------------------------------


def test_pattern_list_anchored_case_insensitive():
    policy = _policy("pattern_list", primary_routing_query_pattern_list=(
        r"SELECT \* FROM t1\;", r".*for share.*"))
    assert policy.route(make_request("SELECT", sql="select * from T1;")) == _primary(
        "primary: matches primary_routing_query_pattern_list entry 1")
    assert policy.route(make_request("SELECT", sql="SELECT * FROM t1; ")) is UNDECIDED
    assert policy.route(make_request("SELECT", sql="SELECT a\nFROM t FOR SHARE")) == _primary(
        "primary: matches primary_routing_query_pattern_list entry 2")
    assert policy.route(make_request("SELECT", sql="SELECT 1")) is UNDECIDED
    # only reads are judged
    assert policy.route(make_request("SET", sql="select * from t1;")) is UNDECIDED


def test_pattern_list_from_semicolon_string():
    policy = _policy("pattern_list", primary_routing_query_pattern_list=r"a\;b;c")
    assert [p.text for p in policy.patterns] == [r"a\;b", "c"]
    assert policy.route(make_request("SELECT", sql="a;b")).target is Target.PRIMARY


def test_pattern_list_bad_regex():
    with pytest.raises(ConfigError) as info:
        builtin.parse_pattern_list({"primary_routing_query_pattern_list": ("ok", "x[")},
                                   "routing.policies[1]")
    assert info.value.errors == [
        "routing.policies[1].primary_routing_query_pattern_list: entry 2 'x[': bad regular "
        "expression: unterminated character set at position 1"]


# --- function_list --------------------------------------------------------------------------


def test_function_list_write_list():
    policy = _policy("function_list", write_function_list="nextval,set.*")
    q = make_query("SELECT", functions=("count", "setval"))
    assert policy.route(make_request(q)) == _primary(
        "primary: function setval matches write_function_list")
    assert policy.route(make_request("SELECT", functions=("nextvalue",))) is UNDECIDED
    assert policy.route(make_request("SELECT", functions=("public.nextval",))).target is \
        Target.PRIMARY


def test_function_list_read_only_list():
    policy = _policy("function_list", read_only_function_list=("count", "max"))
    assert policy.route(make_request("SELECT", functions=("count", "max"))) is UNDECIDED
    assert policy.route(make_request("SELECT", functions=("count", "f"))) == _primary(
        "primary: function f is not in read_only_function_list")


def test_function_list_volatility_when_both_lists_empty():
    policy = _policy("function_list")
    catalog = CatalogFacts(volatile_functions=frozenset({"nextval"}))
    q = make_query("SELECT", functions=("now", "nextval"))
    assert policy.route(make_request(q, catalog=catalog)) == _primary(
        "primary: function nextval is volatile")
    assert policy.route(make_request(q)) is UNDECIDED
    assert policy.route(make_request("SELECT")) is UNDECIDED


@pytest.mark.parametrize("options", [{}, {"read_only_function_list": "pg_current_xact_id"},
                                     {"write_function_list": "nextval"}])
def test_functions_a_standby_refuses_go_to_the_primary(options):
    """Catalog-STABLE but xid-assigning (or WAL-position) functions fail on a hot standby:
    they go to the primary whatever the lists and the catalog say."""
    policy = _policy("function_list", **options)
    for name in ("pg_current_xact_id", "pg_catalog.txid_current", "PG_CURRENT_WAL_LSN"):
        q = make_query("SELECT", functions=("count", name))
        assert policy.route(make_request(q)) == _primary(
            f"primary: function {name} cannot run on a standby")
    # ... and only those: the _if_assigned variant runs on a standby (the lists still apply).
    other = policy.route(make_request("SELECT", functions=("pg_current_xact_id_if_assigned",)))
    if "read_only_function_list" in options:
        assert other.target is Target.PRIMARY and "read_only_function_list" in other.reason
    else:
        assert other is UNDECIDED


def test_function_list_lists_are_exclusive():
    with pytest.raises(ConfigError) as info:
        builtin.parse_function_list({"write_function_list": "a", "read_only_function_list": "b"})
    assert info.value.errors == ["write_function_list: cannot be combined with "
                                 "read_only_function_list (set only one of them)"]


def test_function_list_bad_regex_and_unknown_option():
    with pytest.raises(ConfigError) as info:
        builtin.parse_function_list({"write_function_list": "a,(b", "write_functions": "x"}, "p")
    assert info.value.errors == [
        "p.write_functions: unknown option (expected write_function_list, "
        "read_only_function_list); did you mean write_function_list?",
        "p.write_function_list: entry 2 '(b': bad regular expression: missing ), unterminated "
        "subpattern at position 0",
    ]


def test_writing_functions_helper():
    write = builtin.parse_function_list({"write_function_list": ("nextval",)})
    q = make_query("SELECT", functions=("nextval", "abs", "nextval"))
    assert writing_functions(q, CatalogFacts(), write) == ("nextval",)
    read_only = builtin.parse_function_list({"read_only_function_list": ("abs",)})
    assert writing_functions(q, CatalogFacts(), read_only) == ("nextval",)
    catalog = CatalogFacts(volatile_functions=frozenset({"abs"}))
    assert writing_functions(q, catalog, FunctionOptions()) == ("abs",)


# --- temp_tables ----------------------------------------------------------------------------


def test_temp_tables_catalog_mode():
    policy = _policy("temp_tables")
    catalog = CatalogFacts(temp_tables=frozenset({"tmp1"}))
    q = make_query("SELECT", tables_read=("t", "tmp1"))
    assert policy.route(make_request(q, catalog=catalog)) == _primary(
        "primary: tmp1 is a temporary table")
    session = fake_session(temp_tables=frozenset({"t"}))
    assert policy.route(make_request(q, session=session)) is UNDECIDED


def test_temp_tables_trace_mode():
    policy = _policy("temp_tables", check_temp_table="trace")
    session = fake_session(temp_tables=frozenset({"tmp1"}))
    q = make_query("SELECT", tables_read=("pg_temp.tmp1",))
    assert policy.route(make_request(q, session=session)) == _primary(
        "primary: pg_temp.tmp1 is a temporary table")
    catalog = CatalogFacts(temp_tables=frozenset({"pg_temp.tmp1"}))
    assert policy.route(make_request(q, catalog=catalog)) is UNDECIDED


@pytest.mark.parametrize("value", ["none", "off", False])
def test_temp_tables_none(value):
    policy = _policy("temp_tables", check_temp_table=value)
    catalog = CatalogFacts(temp_tables=frozenset({"tmp1"}))
    assert policy.route(make_request("SELECT", tables_read=("tmp1",), catalog=catalog)) is UNDECIDED


def test_check_temp_table_on_means_catalog():
    assert builtin.parse_temp_tables({"check_temp_table": "on"}).check_temp_table == "catalog"
    assert builtin.parse_temp_tables({"check_temp_table": True}).check_temp_table == "catalog"


def test_unlogged_tables():
    catalog = CatalogFacts(unlogged_tables=frozenset({"u"}))
    q = make_query("SELECT", tables_read=("public.u",))
    assert _policy("temp_tables").route(make_request(q, catalog=catalog)) == _primary(
        "primary: public.u is an unlogged table")
    off = _policy("temp_tables", check_unlogged_table="off")
    assert off.route(make_request(q, catalog=catalog)) is UNDECIDED


def test_temp_tables_bad_value():
    with pytest.raises(ConfigError) as info:
        builtin.parse_temp_tables({"check_temp_table": "sometimes"})
    assert info.value.errors == ["check_temp_table: expected one of catalog, trace, none, on, "
                                 "off, got 'sometimes'"]


# --- stickiness -----------------------------------------------------------------------------


def _in_txn(**kw):
    return fake_session(in_transaction=True, **kw)


def test_stickiness_transaction_mode():
    policy = _policy("stickiness")
    assert policy.route(make_request("SELECT", session=_in_txn(writing_transaction=True))) == \
        _primary("primary: write earlier in this transaction "
                 "(disable_load_balance_on_write=transaction)")
    assert policy.route(make_request("SELECT", session=_in_txn())) is UNDECIDED
    # outside an explicit transaction reads stay balanced
    idle = fake_session(writing_transaction=True)
    assert policy.route(make_request("SELECT", session=idle)) is UNDECIDED


def test_stickiness_trans_transaction_mode():
    policy = _policy("stickiness", disable_load_balance_on_write="trans_transaction")
    assert policy.route(make_request("SELECT", session=_in_txn(writing_transaction=True))) == \
        _primary("primary: write earlier in this or an earlier transaction "
                 "(disable_load_balance_on_write=trans_transaction)")
    assert policy.route(make_request("SELECT", session=fake_session(
        writing_transaction=True))) is UNDECIDED


def test_stickiness_always_mode():
    policy = _policy("stickiness", disable_load_balance_on_write="always")
    expected = _primary("primary: write earlier in this session "
                        "(disable_load_balance_on_write=always)")
    assert policy.route(make_request("SELECT", session=fake_session(
        writing_transaction=True))) == expected
    assert policy.route(make_request("SELECT", session=_in_txn(writing_transaction=True))) == \
        expected
    assert policy.route(make_request("SELECT")) is UNDECIDED


def test_stickiness_off_mode():
    policy = _policy("stickiness", disable_load_balance_on_write="off")
    assert policy.route(make_request("SELECT", session=_in_txn(writing_transaction=True))) is \
        UNDECIDED


def test_stickiness_dml_adaptive():
    policy = _policy("stickiness", disable_load_balance_on_write="dml_adaptive",
                     dml_adaptive_object_relationship_list="t1:t2,f1():tF, tb_v:my_view")
    session = _in_txn(written_objects=frozenset({"t1"}))
    assert policy.route(make_request("SELECT", tables_read=("t1",), session=session)) == \
        _primary("primary: t1 was written in this transaction "
                 "(disable_load_balance_on_write=dml_adaptive)")
    assert policy.route(make_request("SELECT", tables_read=("public.t2",), session=session)) == \
        _primary("primary: public.t2 was written in this transaction "
                 "(disable_load_balance_on_write=dml_adaptive)")
    assert policy.route(make_request("SELECT", tables_read=("t3",), session=session)) is UNDECIDED
    by_function = _in_txn(written_objects=frozenset({"f1()"}))
    assert policy.route(make_request("SELECT", tables_read=("tf",),
                                     session=by_function)).target is Target.PRIMARY
    assert policy.route(make_request("SELECT", tables_read=("t1",),
                                     session=by_function)) is UNDECIDED
    # no effect outside explicit transactions
    idle = fake_session(written_objects=frozenset({"t1"}))
    assert policy.route(make_request("SELECT", tables_read=("t1",), session=idle)) is UNDECIDED


def test_stickiness_bad_options():
    with pytest.raises(ConfigError) as info:
        builtin.parse_stickiness({"disable_load_balance_on_write": "sometimes",
                                  "dml_adaptive_object_relationship_list": "a:b,c,d:"},
                                 "routing.policies[4]")
    assert info.value.errors == [
        "routing.policies[4].disable_load_balance_on_write: expected one of off, transaction, "
        "trans_transaction, always, dml_adaptive, got 'sometimes'",
        "routing.policies[4].dml_adaptive_object_relationship_list: entry 2 'c': expected "
        "object:dependent_object",
        "routing.policies[4].dml_adaptive_object_relationship_list: entry 3 'd:': expected "
        "object:dependent_object",
    ]


# --- weighted_balancer ----------------------------------------------------------------------


def test_balancer_session_lb_node():
    policy = _policy("weighted_balancer")
    d = policy.route(make_request("SELECT", session=fake_session(lb_node=1)))
    assert d == RouteDecision(Target.NODE, 1, "standby: read, session LB node 1")
    assert policy.route(make_request("SELECT", session=fake_session(lb_node=0))) == _primary(
        "primary: read, session LB node is the primary")
    assert policy.route(make_request("INSERT")) is UNDECIDED


def test_balancer_lb_node_down_or_unknown():
    policy = _policy("weighted_balancer")
    cluster = fake_cluster(3, down=(2,))
    assert policy.route(make_request("SELECT", cluster=cluster,
                                     session=fake_session(lb_node=2))) == _primary(
        "primary: load-balance node 2 is down")
    assert policy.route(make_request("SELECT", session=fake_session(lb_node=7))) == _primary(
        "primary: load-balance node 7 is down")
    assert policy.route(make_request("SELECT", session=fake_session(lb_node=None))) == _primary(
        "primary: no load-balance node")


def test_balancer_statement_level():
    policy = _policy("weighted_balancer", statement_level_load_balance="on")
    cluster = fake_cluster(3, weights=(1, 1, 2))
    session = fake_session(lb_node=1)
    assert policy.route(make_request("SELECT", cluster=cluster, session=session, draw=0.9)) == \
        RouteDecision(Target.NODE, 2, "standby: read, statement-level draw, node 2: drawn by "
                                      "weight 2 of 4")
    assert policy.route(make_request("SELECT", cluster=cluster, session=session, draw=0.1)) == \
        _primary("primary: read, statement-level draw chose the primary (node 0: drawn by "
                 "weight 1 of 4)")


def test_balancer_statement_level_with_redirect_list():
    policy = _policy("weighted_balancer", statement_level_load_balance=True,
                     app_name_redirect_preference_list="bi:2(0.5)", node_count=3)
    cluster = fake_cluster(3)
    session = fake_session(application_name="bi", lb_node=1)
    assert policy.route(make_request("SELECT", cluster=cluster, session=session,
                                     draw=0.4)).node == 2
    # r > ratio: the rescaled draw picks among nodes 0 and 1
    assert policy.route(make_request("SELECT", cluster=cluster, session=session,
                                     draw=0.99)).node == 1
    assert policy.route(make_request("SELECT", cluster=cluster, session=session,
                                     draw=0.6)).target is Target.PRIMARY


def test_balancer_delay_threshold_bytes():
    policy = _policy("weighted_balancer", delay_threshold=1000)
    cluster = fake_cluster(3, delays={1: 5000.0, 2: 10.0})
    assert policy.route(make_request("SELECT", cluster=cluster,
                                     session=fake_session(lb_node=1))) == _primary(
        "primary: node 1 lags 5000 bytes, over the delay threshold")
    assert policy.route(make_request("SELECT", cluster=cluster,
                                     session=fake_session(lb_node=2))).node == 2


def test_balancer_delay_by_time_prefers_lower_delay_standby():
    policy = _policy("weighted_balancer", delay_threshold_by_time=500,
                     prefer_lower_delay_standby=True, delay_threshold=1)
    cluster = fake_cluster(4, delays={1: 2.0, 2: 0.4, 3: 0.1})
    assert policy.route(make_request("SELECT", cluster=cluster,
                                     session=fake_session(lb_node=1))) == RouteDecision(
        Target.NODE, 3, "standby: node 1 lags 2s, over the delay threshold; node 3 lags least "
                        "(prefer_lower_delay_standby)")
    all_late = fake_cluster(3, delays={1: 2.0, 2: 0.6})
    assert policy.route(make_request("SELECT", cluster=all_late,
                                     session=fake_session(lb_node=2))) == _primary(
        "primary: node 2 lags 0.6s, over the delay threshold")


def test_balancer_bad_options():
    with pytest.raises(ConfigError) as info:
        builtin.parse_weighted_balancer({"app_name_redirect_preference_list": "x:5",
                                         "statement_level_load_balance": "maybe",
                                         "delay_threshold": -1, "node_count": 2})
    assert info.value.errors == [
        "app_name_redirect_preference_list: entry 1 'x:5': unknown node id 5 "
        "(configured node ids: 0-1)",
        "statement_level_load_balance: expected on/off, got 'maybe'",
        "delay_threshold: expected a number >= 0, got -1",
    ]


def test_options_must_be_a_mapping():
    with pytest.raises(ConfigError) as info:
        builtin.parse_statement(["load_balance_mode"], "routing.policies[0]")
    assert info.value.errors == ["routing.policies[0]: expected a mapping of options, got list"]
