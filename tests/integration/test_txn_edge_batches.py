"""Transaction pooling edge cases: an extended-protocol batch meeting a link change
(split writes, pipelined batches, Describe and Bind apart, more statements than a link
holds).  Raw-socket tests pin down exact message sequences.
"""

from __future__ import annotations

import time

import pytest

from .conftest import assert_log_clean
from .rawpg import (
    SYNC,
    bind,
    codes_of,
    describe,
    errors_of,
    execute,
    parse,
    rows_of,
)
from .txnedge_util import (
    _client,
    _daemon,
    _sqlstates,
    _truncate,
    pooldb,  # noqa: F401  (a fixture)
)

pytestmark = pytest.mark.integration


# -- batches that meet a link lacking their statements -----------------------------------------


def test_batch_split_across_writes_stays_one_transaction(pooldb, pgtwist_factory, cluster):
    _truncate(cluster, "txr_items")
    pg = _daemon(pgtwist_factory, links=1)
    with _client(pg) as a, _client(pg) as b:
        b.rows("begin")
        b.rows("select 1")  # b holds the only link: a's prepares are answered ahead
        a.send(parse("insert into txr_items values ($1::int)", "ins"),
               parse("select 1 / $1::int", "div"), SYNC)
        assert codes_of(a.read_until()) == "11Z"
        b.rows("commit")
        # One batch (one implicit transaction) in two TCP writes.
        a.send(bind([b"1"], statement="ins"), execute())
        time.sleep(0.3)
        a.send(bind([b"0"], statement="div"), execute(), SYNC)
        msgs = a.read_until()
        assert codes_of(msgs) == "2CEZ", msgs
        assert _sqlstates(msgs) == ["22012"]
        # PostgreSQL rolls the whole batch back at the error.
        assert a.rows("select count(*) from txr_items") == [["0"]]
    assert_log_clean(pg)


def test_pipelined_batches_with_parses_and_binds_across_syncs(pooldb, pgtwist_factory):
    """Several Syncs in one write, statements defined in one batch and used in later ones,
    on a link that lacks the earlier ones (prepared ahead while the only link was busy)."""
    pg = _daemon(pgtwist_factory, links=1)
    with _client(pg) as a, _client(pg) as b:
        b.rows("begin")
        b.rows("select 1")
        a.send(parse("select 'early'::text", "e1"), SYNC)
        assert codes_of(a.read_until()) == "1Z"  # answered ahead, not parsed anywhere
        b.rows("commit")
        a.send(parse("select $1::int * 2", "dbl"), SYNC,
               bind([b"21"], statement="dbl"), execute(), bind(statement="e1"), execute(), SYNC,
               parse("select 'late'::text", "l1"), bind(statement="l1"), execute(),
               bind([b"5"], statement="dbl"), execute(), SYNC,
               describe(b"S", "e1"), bind(statement="e1"), execute(), SYNC)
        msgs = a.read_until(count=4)
        assert codes_of(msgs) == "1Z" "2DC2DCZ" "12DC2DCZ" "tT2DCZ", errors_of(msgs)
        assert rows_of(msgs) == [["42"], ["early"], ["late"], ["10"], ["early"]]
        assert [s for c, s in msgs if c == "Z"] == [b"I"] * 4
    assert_log_clean(pg)


def test_describe_and_bind_in_separate_batches_on_different_links(pooldb, pgtwist_factory):
    pg = _daemon(pgtwist_factory, links=2)
    with _client(pg) as a, _client(pg) as h1, _client(pg) as h2:
        a.send(parse("select $1::int + 100 as plus", "p"), SYNC)
        assert codes_of(a.read_until()) == "1Z"
        for holder in (h1, h2, h1):
            # the holder sits on the link a used last: a moves to the other one
            holder.rows("begin")
            holder.rows("select 1")
            a.send(describe(b"S", "p"), SYNC)
            msgs = a.read_until()
            assert codes_of(msgs) == "tTZ", errors_of(msgs)
            holder.rows("commit")
            a.send(bind([b"1"], statement="p"), execute(), SYNC)
            msgs = a.read_until()
            assert rows_of(msgs) == [["101"]], errors_of(msgs)


def test_more_statements_in_one_batch_than_the_link_bound(pooldb, pgtwist_factory):
    pg = _daemon(pgtwist_factory, links=2, max_prepared_statements=2)
    with _client(pg) as a, _client(pg) as h:
        a.send(*(parse(f"select {i}::int", f"m{i}") for i in range(6)), SYNC)
        assert codes_of(a.read_until()) == "1" * 6 + "Z"
        for round_ in range(3):
            if round_ == 1:  # once on the other link
                h.rows("begin")
                h.rows("select 1")
            a.send(*(b for i in range(6) for b in (bind(statement=f"m{i}"), execute())), SYNC)
            msgs = a.read_until()
            assert rows_of(msgs) == [[str(i)] for i in range(6)], errors_of(msgs)
            if round_ == 1:
                h.rows("commit")
        held = int(a.rows("select count(*) from pg_prepared_statements")[0][0])
        assert held <= 6 + 1

