"""SQL classification: Pgpool-II's routing rules on real ORM and driver output."""

from __future__ import annotations

import random

import pytest

from pgtwist.sql.classify import Classifier
from pgtwist.sql.info import BOTH, EITHER, PRIMARY, QueryInfo

from .classify_cases import ALL, COMMENT_RULES

RW = {"r": (True, False), "w": (False, True), "-": (False, False)}


def _id(row) -> str:
    return " ".join(row[0].split())[:60] or "<empty>"


@pytest.fixture
def clf() -> Classifier:
    return Classifier()


@pytest.mark.parametrize("sql,command,route,rw,extra", ALL, ids=[_id(r) for r in ALL])
def test_statement(clf, sql, command, route, rw, extra):
    info = clf.classify(sql)
    assert (info.command, info.route) == (command, route)
    assert (info.is_read, info.is_write) == RW[rw]
    for field, expected in extra.items():
        assert getattr(info, field) == expected, field
    # The extended protocol classifies the same text the same way.
    assert Classifier().classify_parse(sql) == info


def test_table_has_enough_real_statements():
    assert len(ALL) >= 150
    assert len({row[0] for row in ALL}) == len(ALL)


@pytest.mark.parametrize("sql,allow_comments,ignore_ws,route,is_read,is_write,extra",
                         COMMENT_RULES, ids=[f"{_id(r)}-{r[1]}-{r[2]}" for r in COMMENT_RULES])
def test_comment_and_whitespace_rules(sql, allow_comments, ignore_ws, route, is_read,
                                      is_write, extra):
    clf = Classifier(allow_sql_comments=allow_comments, ignore_leading_white_space=ignore_ws)
    info = clf.classify(sql)
    assert (info.route, info.is_read, info.is_write) == (route, is_read, is_write)
    for field, expected in extra.items():
        assert getattr(info, field) == expected, field


def test_hint_is_reported_and_disables_balancing_without_allow_sql_comments(clf):
    info = clf.classify("/*NO LOAD BALANCE*/ SELECT 1")
    assert info.hints == frozenset({"NO LOAD BALANCE"})
    assert info.has_leading_comment
    assert info.route == PRIMARY
    spaced = clf.classify("/*   no   load\n balance */ select * from t")
    assert spaced.hints == frozenset({"NO LOAD BALANCE"})


def test_parse_errors_are_counted_and_routed_to_primary(clf):
    for sql in ("SELECT * FROM", "SELEC 1", "INSERT INTO", "SELECT * FROM t WHERE"):
        info = clf.classify(sql)
        assert info.parse_error and info.route == PRIMARY and info.is_write, sql
        assert info.command == "UNKNOWN"
    assert clf.stats.parse_errors == 4
    clf.classify("SELECT * FROM")             # cached: not parsed again
    assert clf.stats.parse_errors == 4


def test_multi_statement_unions_parts(clf):
    info = clf.classify("SELECT * FROM a; UPDATE b SET x = nextval('s'); SELECT * FROM c")
    assert info.multi_statement and info.route == PRIMARY
    assert info.command == "SELECT"
    assert info.is_write and not info.is_read
    assert info.tables_read == ("a", "c")
    assert info.tables_written == ("b",)
    assert info.functions == ("nextval",)
    assert info.tables == ("a", "c", "b")


def test_multi_statement_of_reads_is_not_a_write(clf):
    info = clf.classify("select 1; select * from t")
    assert info.multi_statement and info.route == PRIMARY
    assert info.is_read and not info.is_write


def test_multi_statement_flags(clf):
    info = clf.classify("COPY t FROM STDIN; SELECT 1")
    assert info.copy_from_stdin and info.multi_statement
    info = clf.classify("CREATE TEMP TABLE a (x int); DROP TABLE b; SELECT * INTO TEMP c FROM d")
    assert info.temp_tables_created == ("a", "c")
    assert info.tables_dropped == ("b",)
    info = clf.classify("SET TRANSACTION ISOLATION LEVEL SERIALIZABLE; SELECT 1")
    assert info.serializable


def test_prepare_carries_the_body(clf):
    info = clf.classify("PREPARE fooplan (int, text, bool, numeric) AS "
                        "INSERT INTO foo VALUES($1, $2, $3, $4)")
    assert info.prepare_name == "fooplan"
    assert info.prepared is not None and info.prepared.command == "INSERT"
    assert info.route == PRIMARY and info.is_write
    sel = clf.classify('PREPARE "Sel" AS SELECT * FROM users WHERE id = $1')
    assert sel.prepare_name == "Sel"
    assert sel.prepared == QueryInfo("SELECT", EITHER, is_read=True, tables_read=("users",))
    assert sel.route == EITHER


def test_execute_and_deallocate_names(clf):
    assert clf.classify("EXECUTE fooplan(1, 'Hunter Valley', 't', 200.00)").execute_name == \
        "fooplan"
    assert clf.classify("DEALLOCATE fooplan").deallocate_name == "fooplan"
    assert clf.classify("DEALLOCATE PREPARE ALL").deallocate_name == "*"
    assert clf.classify("DEALLOCATE PREPARE ALL").route == BOTH


def test_classify_parse_with_placeholders():
    clf = Classifier()
    info = clf.classify_parse('SELECT "users".* FROM "users" WHERE "users"."id" = $1 LIMIT $2')
    assert (info.command, info.route, info.is_read) == ("SELECT", EITHER, True)
    assert info.tables_read == ("users",)
    info = clf.classify_parse("INSERT INTO t (a, b) VALUES ($1, $2) RETURNING id")
    assert info.route == PRIMARY and info.tables_written == ("t",)
    info = clf.classify_parse("SELECT $1::int + $2, nextval($3)")
    assert info.functions == ("nextval",) and not info.parse_error


def test_asyncpg_introspection_is_a_catalog_read():
    introspection = pytest.importorskip("asyncpg.introspection")
    clf = Classifier()
    for name in ("INTRO_LOOKUP_TYPES", "INTRO_LOOKUP_TYPES_13", "TYPE_BY_NAME"):
        sql = getattr(introspection, name, None)
        if sql is None:
            continue
        info = clf.classify_parse(sql)
        assert info.command == "SELECT", name
        assert info.touches_catalog and info.route == EITHER, name
        assert info.is_read and not info.parse_error, name


def test_large_literal_lists_are_cheap_and_correct(clf):
    # Above classify_max_length (8 KiB by default) a text is not parsed at all (it goes
    # to the primary, tests/unit/test_classify_bounds.py); raised, literal lists fold.
    ids = ", ".join(str(i) for i in range(20000))
    sql = f"SELECT * FROM t WHERE id IN ({ids}) AND nextval('s') > 0"
    assert clf.classify(sql).route == PRIMARY and clf.classify(sql).bounded
    clf = Classifier(max_length=1 << 20)
    info = clf.classify(sql)
    assert info.route == EITHER and info.tables_read == ("t",)
    assert info.functions == ("nextval",)
    rows = ", ".join(f"({i}, 'n{i}')" for i in range(5000))
    info = clf.classify(f"INSERT INTO t (a, b) VALUES {rows}")
    assert info.command == "INSERT" and info.tables_written == ("t",)


def test_oversized_text_is_not_parsed(clf):
    info = clf.classify("SELECT '" + "x" * (1 << 20) + "'")
    assert info.route == PRIMARY and info.parse_error


def test_names_keep_quoted_case_and_lower_unquoted(clf):
    info = clf.classify('SELECT * FROM "CamelCase" c, Lower_Me l, "sch"."T", SCH2.T2')
    assert info.tables_read == ("CamelCase", "lower_me", "sch.T", "sch2.t2")


def test_unicode_before_functions(clf):
    info = clf.classify("SELECT 'é日本', \"ñame\", now(), été(1) FROM \"tablé\"")
    assert info.functions == ("now", "été")
    assert info.tables_read == ("tablé",)


def test_garbage_never_raises():
    clf = Classifier(cache_size=64)
    rng = random.Random(7)
    alphabet = "select from where'\"$;()/*-\\\n 0123456789 abc E$$ $1 ::[]"
    samples = ["(" * 5000 + "select 1" + ")" * 5000, "'unterminated", '"unterminated',
               "$$unterminated", "/* unterminated", "E'\\'", "select $1$", "\x00", "--"]
    samples += ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 80)))
                for _ in range(300)]
    samples += ["EXPLAIN " * 3000 + "SELECT 1"]
    for sql in samples:
        info = clf.classify(sql)
        assert isinstance(info, QueryInfo)
        assert info.route in (PRIMARY, BOTH, EITHER)
