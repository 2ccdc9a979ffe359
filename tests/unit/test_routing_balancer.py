"""Load-balance node choice: weights, down nodes, redirect preference lists and ratios (§1.1)."""

import random

import pytest

from pgtwist.config import ConfigError
from pgtwist.routing.balancer import choose_lb_node, parse_preference_list, weighted_pick
from pgtwist.testing import fake_cluster

APP = "app_name_redirect_preference_list"
DB = "database_redirect_preference_list"
USER = "user_redirect_preference_list"


# --- parsing --------------------------------------------------------------------------------


def test_parse_good_entries():
    entries = parse_preference_list("psql:primary, rep.*:standby(0.25) ,bi:2(0),x:1(1.0)", APP, 3)
    assert [(e.index, e.text, e.node, e.ratio) for e in entries] == [
        (1, "psql:primary", "primary", 1.0),
        (2, "rep.*:standby(0.25)", "standby", 0.25),
        (3, "bi:2(0)", 2, 0.0),
        (4, "x:1(1.0)", 1, 1.0),
    ]
    assert all(e.key == APP for e in entries)
    assert entries[1].matches("report") and not entries[1].matches("xreport")  # anchored


def test_parse_accepts_split_tuple_and_empty():
    assert parse_preference_list((), DB, 2) == ()
    assert parse_preference_list("", DB, 2) == ()
    (entry,) = parse_preference_list(("postgres:PRIMARY",), DB, 2)
    assert entry.node == "primary"


def test_parse_regex_may_contain_colon():
    (entry,) = parse_preference_list(("a:b:1",), USER, 2)
    assert entry.matches("a:b") and entry.node == 1


@pytest.mark.parametrize("text, message", [
    ("nocolon", f"{APP}: entry 1 'nocolon': missing ':' (expected regex:node or regex:node(ratio))"),
    ("bad(:1", f"{APP}: entry 1 'bad(:1': bad regular expression: missing ), unterminated "
               f"subpattern at position 3"),
    ("a:3", f"{APP}: entry 1 'a:3': unknown node id 3 (configured node ids: 0-2)"),
    ("a:1(1.5)", f"{APP}: entry 1 'a:1(1.5)': ratio 1.5 is out of range 0..1"),
    ("a:1(-0.1)", f"{APP}: entry 1 'a:1(-0.1)': ratio -0.1 is out of range 0..1"),
    ("a:1(half)", f"{APP}: entry 1 'a:1(half)': ratio 'half' is not a number"),
    ("a:leader", f"{APP}: entry 1 'a:leader': expected a node id, 'primary' or 'standby' "
                 f"after ':', got 'leader'"),
    ("a:-1", f"{APP}: entry 1 'a:-1': expected a node id, 'primary' or 'standby' after ':', "
             f"got '-1'"),
    (":1", f"{APP}: entry 1 ':1': empty regular expression before ':'"),
    ("a:1(0.5", f"{APP}: entry 1 'a:1(0.5': expected a node id, 'primary' or 'standby' after "
                f"':', optionally followed by (ratio)"),
])
def test_parse_errors_name_key_and_entry(text, message):
    with pytest.raises(ConfigError) as info:
        parse_preference_list(text, APP, 3)
    assert info.value.errors == [message]


def test_parse_collects_every_bad_entry_and_uses_where():
    with pytest.raises(ConfigError) as info:
        parse_preference_list("ok:1,x,y:9", USER, 2, where="routing.policies[5].user_list")
    assert info.value.errors == [
        "routing.policies[5].user_list: entry 2 'x': missing ':' (expected regex:node or "
        "regex:node(ratio))",
        "routing.policies[5].user_list: entry 3 'y:9': unknown node id 9 (configured node ids: 0-1)",
    ]


def test_parse_without_node_count_skips_range_check():
    (entry,) = parse_preference_list("a:7", USER, None)
    assert entry.node == 7


# --- weighted draw ---------------------------------------------------------------------------


def test_weights_one_to_three_split_over_many_draws():
    cluster = fake_cluster(2, weights=(1, 3))
    rng = random.Random(20240607)
    counts = {0: 0, 1: 0}
    for _ in range(20000):
        node_id, _ = choose_lb_node(cluster, rng.random(), rng.random())
        counts[node_id] += 1
    assert abs(counts[1] / 20000 - 0.75) < 0.015


def test_weight_boundaries_use_draw2():
    cluster = fake_cluster(2, weights=(1, 3))
    assert choose_lb_node(cluster, 0.9, 0.0) == (0, "node 0: drawn by weight 1 of 4")
    assert choose_lb_node(cluster, 0.9, 0.2499) == (0, "node 0: drawn by weight 1 of 4")
    assert choose_lb_node(cluster, 0.0, 0.25) == (1, "node 1: drawn by weight 3 of 4")
    assert choose_lb_node(cluster, 0.0, 0.9999) == (1, "node 1: drawn by weight 3 of 4")
    assert choose_lb_node(cluster, 0.0, 1.0)[0] == 1


def test_single_draw_serves_when_draw2_is_none():
    cluster = fake_cluster(2, weights=(1, 3))
    assert choose_lb_node(cluster, 0.1)[0] == 0
    assert choose_lb_node(cluster, 0.3)[0] == 1


def test_weight_zero_never_chosen():
    cluster = fake_cluster(3, weights=(0, 1, 0))
    rng = random.Random(7)
    assert {choose_lb_node(cluster, rng.random(), rng.random())[0] for _ in range(2000)} == {1}


def test_down_nodes_excluded():
    cluster = fake_cluster(3, weights=(1, 1, 1), down=(1,))
    rng = random.Random(11)
    assert {choose_lb_node(cluster, rng.random(), rng.random())[0] for _ in range(2000)} == {0, 2}


def test_no_usable_node_gives_the_primary():
    cluster = fake_cluster(2, weights=(0, 0))
    assert choose_lb_node(cluster, 0.5, 0.5) == (0, "node 0: no usable node with weight > 0, primary")
    cluster = fake_cluster(2, primary=0, weights=(0, 1), down=(1,))
    assert choose_lb_node(cluster, 0.5, 0.5)[0] == 0


def test_weighted_pick_empty():
    assert weighted_pick([], 0.5) is None


# --- redirect lists and ratios ---------------------------------------------------------------


def _lists(app="", db="", user=""):
    return {"app_list": parse_preference_list(app, APP, 3),
            "db_list": parse_preference_list(db, DB, 3),
            "user_list": parse_preference_list(user, USER, 3)}


def test_numeric_node_ratio_boundary():
    cluster = fake_cluster(3, weights=(1, 1, 2))
    lists = _lists(app="psql:2(0.3)")
    hit = choose_lb_node(cluster, 0.3, 0.99, app_name="psql", **lists)
    assert hit == (2, "node 2: application_name 'psql' matches app_name_redirect_preference_list "
                      "entry 1 ('psql:2(0.3)'), draw 0.300 <= ratio 0.3")
    # r > ratio: weighted among the OTHER nodes (0 and 1, weights 1:1)
    miss = choose_lb_node(cluster, 0.3001, 0.0, app_name="psql", **lists)
    assert miss == (0, "node 0: application_name 'psql' matches app_name_redirect_preference_list "
                       "entry 1 ('psql:2(0.3)'), draw 0.300 > ratio 0.3; drawn by weight 1 of 2 "
                       "among the other nodes")
    assert choose_lb_node(cluster, 0.9, 0.5, app_name="psql", **lists)[0] == 1


def test_default_ratio_always_hits():
    cluster = fake_cluster(3)
    lists = _lists(db="sales:1")
    assert choose_lb_node(cluster, 1.0, 0.0, database="sales", **lists) == (
        1, "node 1: database 'sales' matches database_redirect_preference_list entry 1 ('sales:1')")


def test_ratio_zero_hits_only_at_draw_zero():
    cluster = fake_cluster(3)
    lists = _lists(user="bob:2(0)")
    assert choose_lb_node(cluster, 0.0, 0.0, user="bob", **lists)[0] == 2
    assert choose_lb_node(cluster, 0.000001, 0.0, user="bob", **lists)[0] == 0


def test_standby_token():
    cluster = fake_cluster(3, weights=(5, 1, 3))
    lists = _lists(app="rep.*:standby(0.5)")
    within = choose_lb_node(cluster, 0.5, 0.25, app_name="reporting", **lists)
    assert within == (2, "node 2: application_name 'reporting' matches "
                         "app_name_redirect_preference_list entry 1 ('rep.*:standby(0.5)'), "
                         "draw 0.500 <= ratio 0.5; standby drawn by weight 3 of 4")
    assert choose_lb_node(cluster, 0.5, 0.2, app_name="reporting", **lists)[0] == 1
    beyond = choose_lb_node(cluster, 0.51, 0.25, app_name="reporting", **lists)
    assert beyond == (0, "node 0: application_name 'reporting' matches "
                         "app_name_redirect_preference_list entry 1 ('rep.*:standby(0.5)'), "
                         "draw 0.510 > ratio 0.5; primary")


def test_standby_token_without_usable_standby():
    cluster = fake_cluster(3, down=(1, 2))
    lists = _lists(app="r:standby")
    assert choose_lb_node(cluster, 0.1, 0.1, app_name="r", **lists) == (
        0, "node 0: application_name 'r' matches app_name_redirect_preference_list entry 1 "
           "('r:standby'); no usable standby with weight > 0, primary")


def test_primary_token_ratio_miss_draws_among_others():
    cluster = fake_cluster(3, primary=1, weights=(1, 1, 1))
    lists = _lists(db="db:primary(0.2)")
    assert choose_lb_node(cluster, 0.1, 0.0, database="db", **lists)[0] == 1
    assert choose_lb_node(cluster, 0.5, 0.0, database="db", **lists)[0] == 0
    assert choose_lb_node(cluster, 0.5, 0.9, database="db", **lists)[0] == 2


def test_precedence_app_over_database_over_user():
    cluster = fake_cluster(3, weights=(0, 0, 0))
    lists = _lists(app="psql:1", db="sales:2", user="bob:0")
    both = dict(database="sales", user="bob", **lists)
    assert choose_lb_node(cluster, 0.5, 0.5, app_name="psql", **both)[0] == 1
    assert choose_lb_node(cluster, 0.5, 0.5, app_name="other", **both)[0] == 2
    assert choose_lb_node(cluster, 0.5, 0.5, app_name="", database="x", user="bob",
                          **lists)[0] == 0


def test_empty_application_name_is_not_matched():
    cluster = fake_cluster(3)
    lists = _lists(app=".*:2")
    assert choose_lb_node(cluster, 0.0, 0.0, app_name="", **lists)[0] == 0
    assert choose_lb_node(cluster, 0.0, 0.0, app_name="x", **lists)[0] == 2


def test_first_matching_entry_wins_within_a_list():
    cluster = fake_cluster(3)
    lists = _lists(user="b.*:1,bob:2")
    assert choose_lb_node(cluster, 0.5, 0.5, user="bob", **lists)[0] == 1


def test_suggested_node_down_falls_through():
    cluster = fake_cluster(3, weights=(0, 0, 1), down=(1,))
    lists = _lists(app="psql:1", db="sales:0")
    # the app list names a down node: the database list still applies
    assert choose_lb_node(cluster, 0.5, 0.5, app_name="psql", database="sales",
                          **lists)[0] == 0
    # nothing else matches: plain weighted draw
    assert choose_lb_node(cluster, 0.5, 0.5, app_name="psql", database="x", **lists) == (
        2, "node 2: drawn by weight 1 of 1")
