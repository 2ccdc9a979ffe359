"""disable_load_balance_on_write state transitions (§1.4), one test per table row."""

import pytest

from pgtwist.routing import builtin
from pgtwist.routing.chain import Chain
from pgtwist.routing.stickiness import (
    INITIAL,
    StickyState,
    WriteRules,
    after_statement,
    counts_as_write,
    session_view,
)
from pgtwist.routing.values import CatalogFacts, Target
from pgtwist.testing import fake_cluster, make_query, make_request

INSERT = make_query("INSERT", tables_written=("t1",))
SELECT = make_query("SELECT", tables_read=("t1",))
BEGIN = make_query("BEGIN")
COMMIT = make_query("COMMIT")
ROLLBACK = make_query("ROLLBACK")


def run(mode, steps, state=INITIAL):
    """steps: (query, wrote, status_before, status_after)."""
    for query, wrote, before, after in steps:
        state = after_statement(state, mode, query, wrote, before != "I", after)
    return state


# --- the writing_transaction flag, per mode -----------------------------------------------


@pytest.mark.parametrize("mode", ["transaction", "trans_transaction"])
def test_write_inside_explicit_transaction_sets_flag(mode):
    s = run(mode, [(BEGIN, False, "I", "T"), (INSERT, True, "T", "T")])
    assert s.writing_transaction


@pytest.mark.parametrize("mode", ["off", "transaction", "trans_transaction", "dml_adaptive"])
def test_autocommit_write_does_not_set_flag(mode):
    assert not run(mode, [(INSERT, True, "I", "I")]).writing_transaction


def test_off_never_sets_flag():
    s = run("off", [(BEGIN, False, "I", "T"), (INSERT, True, "T", "T")])
    assert s == StickyState()


def test_transaction_cleared_at_commit():
    s = run("transaction", [(BEGIN, False, "I", "T"), (INSERT, True, "T", "T"),
                            (COMMIT, False, "T", "I")])
    assert not s.writing_transaction


def test_transaction_cleared_at_rollback():
    s = run("transaction", [(BEGIN, False, "I", "T"), (INSERT, True, "T", "T"),
                            (ROLLBACK, False, "T", "I")])
    assert not s.writing_transaction


def test_transaction_cleared_at_begin():
    stale = StickyState(writing_transaction=True)
    assert not run("transaction", [(BEGIN, False, "I", "T")], stale).writing_transaction


def test_begin_inside_a_transaction_keeps_the_state():
    # PostgreSQL only warns; Pgpool-II forgets the flag here (an XXX in its code), we do not
    s = run("transaction", [(BEGIN, False, "I", "T"), (INSERT, True, "T", "T"),
                            (BEGIN, False, "T", "T")])
    assert s.writing_transaction


def test_transaction_cleared_when_transaction_ends_implicitly():
    s = run("transaction", [(BEGIN, False, "I", "T"), (INSERT, True, "T", "T"),
                            (make_query("PREPARE TRANSACTION"), False, "T", "I")])
    assert not s.writing_transaction


def test_transaction_not_cleared_by_rollback_to_savepoint():
    s = run("transaction", [(BEGIN, False, "I", "T"), (INSERT, True, "T", "T"),
                            (make_query("ROLLBACK TO"), False, "T", "T")])
    assert s.writing_transaction


def test_failed_write_does_not_set_flag():
    s = run("transaction", [(BEGIN, False, "I", "T"), (INSERT, True, "T", "E")])
    assert not s.writing_transaction


def test_status_unknown_uses_state_before():
    s = after_statement(INITIAL, "transaction", INSERT, True, True, None)
    assert s.writing_transaction
    assert not after_statement(INITIAL, "transaction", INSERT, True, False, None).writing_transaction


@pytest.mark.parametrize("end", [COMMIT, ROLLBACK, BEGIN])
def test_trans_transaction_never_cleared(end):
    s = run("trans_transaction", [(BEGIN, False, "I", "T"), (INSERT, True, "T", "T"),
                                  (COMMIT, False, "T", "I"), (end, False, "I", "T")])
    assert s.writing_transaction


def test_always_set_by_autocommit_write():
    assert run("always", [(INSERT, True, "I", "I")]).writing_transaction


def test_always_set_inside_transaction_and_never_cleared():
    s = run("always", [(BEGIN, False, "I", "T"), (INSERT, True, "T", "T"),
                       (ROLLBACK, False, "T", "I"), (BEGIN, False, "I", "T"),
                       (COMMIT, False, "T", "I")])
    assert s.writing_transaction


def test_reads_never_set_flag():
    s = run("always", [(SELECT, False, "I", "I"), (BEGIN, False, "I", "T"),
                       (SELECT, False, "T", "T")])
    assert not s.writing_transaction


# --- dml_adaptive -----------------------------------------------------------------------------


def test_dml_adaptive_records_tables_in_transaction_only():
    s = run("dml_adaptive", [(BEGIN, False, "I", "T"), (INSERT, True, "T", "T")])
    assert s.written_objects == frozenset({"t1"}) and not s.writing_transaction
    assert run("dml_adaptive", [(INSERT, True, "I", "I")]).written_objects == frozenset()


def test_dml_adaptive_records_writing_functions():
    q = make_query("SELECT", functions=("f1",))
    s = after_statement(StickyState(), "dml_adaptive", q, True, True, "T",
                        writing_functions=("public.f1",))
    assert s.written_objects == frozenset({"f1()"})


@pytest.mark.parametrize("end", [COMMIT, ROLLBACK])
def test_dml_adaptive_cleared_at_transaction_end(end):
    s = run("dml_adaptive", [(BEGIN, False, "I", "T"), (INSERT, True, "T", "T"),
                             (end, False, "T", "I")])
    assert s.written_objects == frozenset()


def test_dml_adaptive_new_transaction_starts_empty():
    s = StickyState(written_objects=frozenset({"t1"}))
    assert run("dml_adaptive", [(BEGIN, False, "I", "T")], s).written_objects == frozenset()


# --- what counts as a write -----------------------------------------------------------------


@pytest.mark.parametrize("query, sql, expected", [
    (make_query("INSERT"), "", True),
    (make_query("SELECT"), "SELECT 1", False),
    (make_query("SHOW"), "SHOW x", False),
    (make_query("SET"), "SET search_path = a", True),
    (make_query("SET"), "SET TRANSACTION READ ONLY", False),
    (make_query("SET"), "set session characteristics as transaction isolation level "
                        "repeatable read, read only", False),
    (make_query("SET"), "SET transaction_read_only = on", False),
    (make_query("SET"), "SET TRANSACTION READ WRITE", True),
    (make_query("SET", serializable=True), "SET TRANSACTION ISOLATION LEVEL SERIALIZABLE", False),
    (make_query("SAVEPOINT"), "SAVEPOINT a", True),
    (make_query("DISCARD"), "DISCARD ALL", True),
    (make_query("BEGIN"), "BEGIN", False),
    (make_query("COMMIT"), "COMMIT", False),
    (make_query("ROLLBACK"), "ROLLBACK", False),
    (make_query("ROLLBACK TO"), "ROLLBACK TO a", False),
    (make_query("EMPTY"), "", False),
    (make_query("SELECT", has_leading_comment=True), "/* x */ SELECT 1", True),
    (make_query("VALUES"), "VALUES (1)", True),
    (make_query("PREPARE", prepared=make_query("SELECT")), "PREPARE p AS SELECT 1", False),
    (make_query("PREPARE", prepared=make_query("UPDATE")), "PREPARE p AS UPDATE t SET a=1", True),
    (make_query("EXECUTE"), "EXECUTE p", True),
])
def test_counts_as_write(query, sql, expected):
    assert counts_as_write(query, sql=sql) is expected


def test_select_with_writing_function_is_a_write():
    assert counts_as_write(make_query("SELECT", functions=("nextval",)), ("nextval",))


def test_leading_comment_read_with_allow_sql_comments_on():
    q = make_query("SELECT", has_leading_comment=True)
    assert not counts_as_write(q, sql="/* x */ SELECT 1", allow_sql_comments=True)


# --- SERIALIZABLE -----------------------------------------------------------------------------


def test_begin_serializable_marks_the_transaction_until_its_end():
    s = run("transaction", [(make_query("BEGIN", serializable=True), False, "I", "T")])
    assert s.txn_serializable and s.serializable
    assert not run("transaction", [(COMMIT, False, "T", "I")], s).serializable
    assert not run("transaction", [(BEGIN, False, "I", "T")], s).serializable


def test_set_serializable_inside_transaction():
    set_ser = make_query("SET", serializable=True)
    s = run("transaction", [(BEGIN, False, "I", "T"), (set_ser, False, "T", "T")])
    assert s.txn_serializable and not s.session_serializable
    assert not run("transaction", [(ROLLBACK, False, "T", "I")], s).serializable


def test_set_serializable_outside_transaction_is_the_session_default():
    set_ser = make_query("SET", serializable=True)
    s = run("transaction", [(set_ser, False, "I", "I"), (BEGIN, False, "I", "T"),
                            (COMMIT, False, "T", "I"), (BEGIN, False, "I", "T")])
    assert s.serializable
    discard = after_statement(s, "transaction", make_query("DISCARD"), False, False, "I",
                              sql="DISCARD ALL")
    assert not discard.serializable


# --- temp tables (check_temp_table=trace) ---------------------------------------------------

CREATE_TMP = make_query("CREATE", temp_tables_created=("tmp1",))
DROP_TMP = make_query("DROP", tables_dropped=("tmp1",))


def test_temp_table_outside_transaction():
    s = run("transaction", [(CREATE_TMP, True, "I", "I")])
    assert s.visible_temp_tables == frozenset({"tmp1"})
    assert run("transaction", [(DROP_TMP, True, "I", "I")], s).visible_temp_tables == frozenset()


def test_temp_table_created_in_transaction_commit_and_rollback():
    s = run("transaction", [(BEGIN, False, "I", "T"), (CREATE_TMP, True, "T", "T")])
    assert s.visible_temp_tables == frozenset({"tmp1"}) and s.temp_tables == frozenset()
    assert run("transaction", [(COMMIT, False, "T", "I")], s).temp_tables == frozenset({"tmp1"})
    assert run("transaction", [(ROLLBACK, False, "T", "I")], s).visible_temp_tables == frozenset()


def test_temp_table_dropped_in_rolled_back_transaction_survives():
    s = StickyState(temp_tables=frozenset({"tmp1"}))
    s = run("transaction", [(BEGIN, False, "I", "T"), (DROP_TMP, True, "T", "T")], s)
    assert s.visible_temp_tables == frozenset()
    assert run("transaction", [(ROLLBACK, False, "T", "I")], s).visible_temp_tables == \
        frozenset({"tmp1"})


def test_discard_temp_and_all_forget_temp_tables_but_plans_do_not():
    s = StickyState(temp_tables=frozenset({"tmp1"}))
    discard = make_query("DISCARD")
    for sql, left in (("DISCARD PLANS", {"tmp1"}), ("discard temp", set()), ("DISCARD ALL", set())):
        after = after_statement(s, "transaction", discard, True, False, "I", sql=sql)
        assert after.visible_temp_tables == frozenset(left)


# --- the view the relay builds ---------------------------------------------------------------


def test_session_view():
    s = StickyState(writing_transaction=True, written_objects=frozenset({"t"}),
                    session_serializable=True, temp_tables=frozenset({"x"}))
    in_txn = session_view(s, user="u", database="d", application_name="a", lb_node=1,
                          txn_status="E")
    assert (in_txn.in_transaction, in_txn.txn_failed, in_txn.serializable,
            in_txn.writing_transaction, in_txn.written_objects, in_txn.temp_tables) == (
        True, True, True, True, frozenset({"t"}), frozenset({"x"}))
    idle = session_view(s, user="u", database="d", application_name="a", lb_node=1,
                        txn_status="I")
    assert (idle.in_transaction, idle.serializable, idle.written_objects) == (
        False, False, frozenset())


# --- end to end: chain + state, as the relay drives them -------------------------------------


def _drive(chain, rules, script, catalog=None):
    """script: (query, status after); returns where each statement went."""
    state, status, out = INITIAL, "I", []
    cluster = fake_cluster(2, weights=(0, 1))
    for query, after in script:
        view = session_view(state, user="u", database="d", application_name="", lb_node=1,
                            txn_status=status)
        request = make_request(query, session=view, cluster=cluster,
                               catalog=catalog or CatalogFacts())
        out.append(chain.route(request).target)
        state = rules.after(state, request, after)
        status = after
    return out


def test_dml_adaptive_like_pgpool_regression_test():
    """Pgpool-II's dml_adaptive regression scenario (write list f1, 't1:t2,f1():tF')."""
    params = {"disable_load_balance_on_write": "dml_adaptive",
              "write_function_list": ("currval", "lastval", "nextval", "setval", "f1"),
              "dml_adaptive_object_relationship_list": ("t1:t2", "f1():tF")}
    chain = Chain(cls(parse({k: v for k, v in params.items() if k in keys}))
                  for keys, parse, cls in builtin.POLICIES.values())
    rules = WriteRules.from_params(params)

    def sel(table):
        return make_query("SELECT", tables_read=(table,))
    lb, primary = Target.NODE, Target.PRIMARY
    first = _drive(chain, rules, [
        (BEGIN, "T"), (sel("t2"), "T"), (make_query("INSERT", tables_written=("t1",)), "T"),
        (sel("t1"), "T"), (sel("t3"), "T"), (sel("t2"), "T"), (COMMIT, "I")])
    assert first == [Target.BOTH, lb, primary, primary, lb, primary, Target.BOTH]
    second = _drive(chain, rules, [
        (BEGIN, "T"), (sel("tf"), "T"), (make_query("SELECT", functions=("f1",)), "T"),
        (sel("tf"), "T"), (sel("t1"), "T"), (sel("t3"), "T"), (COMMIT, "I")])
    assert second == [Target.BOTH, lb, primary, primary, lb, lb, Target.BOTH]


def test_transaction_mode_end_to_end_with_volatile_function():
    chain = Chain(cls(parse({})) for _keys, parse, cls in builtin.POLICIES.values())
    rules = WriteRules.from_params({})
    catalog = CatalogFacts(volatile_functions=frozenset({"nextval"}))
    got = _drive(chain, rules, [
        (make_query("SELECT"), "I"),
        (BEGIN, "T"), (make_query("SELECT"), "T"),
        (make_query("SELECT", functions=("nextval",)), "T"),   # a write: writing function
        (make_query("SELECT"), "T"), (COMMIT, "I"),
        (make_query("SELECT"), "I")], catalog=catalog)
    lb, primary = Target.NODE, Target.PRIMARY
    assert got == [lb, Target.BOTH, lb, primary, primary, Target.BOTH, lb]


def test_write_rules_failed_statement_is_not_a_write():
    rules = WriteRules.from_params({"disable_load_balance_on_write": "always"})
    request = make_request("INSERT")
    assert not rules.after(INITIAL, request, "I", failed=True).writing_transaction
    assert rules.after(INITIAL, request, "I").writing_transaction


# --- a transaction begun by a multi-statement Query --------------------------------------------


def test_multi_statement_begin_keeps_its_transaction_on_the_primary():
    """"BEGIN; SELECT 1" runs on the primary alone: no standby is in that transaction, so
    its reads and savepoints stay on the primary until it ends; a plain BEGIN is balanced."""
    chain = Chain(cls(parse({})) for _keys, parse, cls in builtin.POLICIES.values())
    rules = WriteRules.from_params({})
    multi_begin = make_query("BEGIN", multi_statement=True)
    got = _drive(chain, rules, [
        (multi_begin, "T"), (make_query("SELECT"), "T"), (make_query("SAVEPOINT"), "T"),
        (make_query("SELECT"), "T"), (COMMIT, "I"),
        (make_query("SELECT"), "I"),
        (BEGIN, "T"), (make_query("SELECT"), "T"), (make_query("SAVEPOINT"), "T"),
        (ROLLBACK, "I")])
    lb, primary, both = Target.NODE, Target.PRIMARY, Target.BOTH
    assert got == [primary, primary, primary, primary, both, lb, both, lb, both, both]


def test_txn_on_primary_is_seen_inside_a_transaction_only():
    s = after_statement(INITIAL, "transaction", make_query("BEGIN", multi_statement=True),
                        False, False, None)
    assert s.txn_on_primary
    view = {status: session_view(s, user="u", database="d", application_name="", lb_node=1,
                                 txn_status=status).txn_on_primary for status in "ITE"}
    assert view == {"I": False, "T": True, "E": True}
    assert not run("transaction", [(COMMIT, False, "T", "I")], s).txn_on_primary
    assert not run("transaction", [(BEGIN, False, "I", "T")], s).txn_on_primary
