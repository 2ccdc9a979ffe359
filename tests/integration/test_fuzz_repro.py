"""Regression tests for what the protocol fuzzer (tests/fuzz) found, through a real twistd.

Each test sends the bytes of a minimised fuzz input over a raw socket and checks what
PostgreSQL itself answers for them (the same bytes, sent to the primary, give the same
codes); a read that times out is the hang the fuzzer reported.
"""

from __future__ import annotations

import pytest

from .conftest import TRUST_HBA, assert_log_clean
from .rawpg import (
    COPY_DONE,
    FLUSH,
    SYNC,
    RawClient,
    bind,
    codes_of,
    copy_data,
    copy_fail,
    describe,
    execute,
    msg,
    parse,
    query,
    rows_of,
)

pytestmark = pytest.mark.integration

DB = "pooldb"


@pytest.fixture(scope="module")
def copy_table(cluster, pool_database):
    import psycopg

    with psycopg.connect(cluster.dsn(dbname=pool_database), autocommit=True) as conn:
        conn.execute("create table if not exists fuzz_repro_copy(a int, b text)")
    return "fuzz_repro_copy"


@pytest.fixture(params=["session", "transaction"])
def daemon(request, pgtwist_factory, copy_table):
    pg = pgtwist_factory({"pool_mode": request.param, "max_pool": 2,
                          "backend_max_connections": 4}, hba=TRUST_HBA, replica_weight=1)
    yield pg
    assert_log_clean(pg)


def _client(port: int) -> RawClient:
    c = RawClient(port, timeout=5)
    c.startup({"database": DB})
    return c


def _answer(c: RawClient, data: bytes) -> str:
    """Send ``data`` then a Sync and a probe Query; the codes up to the probe's answer."""
    c.send(data, SYNC, query("select 'probe'"))
    msgs = []
    while True:
        msgs += c.read_until("Z")
        if any(code == "D" and b"probe" in body for code, body in msgs):
            return codes_of([m for m in msgs if m[0] not in "SNK"])


COPY_CASES = {
    # a Sync inside a simple-protocol COPY, then data the server refuses
    "simple_sync_then_bad_row": (
        query("copy fuzz_repro_copy(a) from stdin with (format csv)") + SYNC
        + copy_data(b"6\tw\n") + COPY_DONE, "GEZZTDCZ"),
    "simple_sync_between_rows": (
        query("copy fuzz_repro_copy(a) from stdin with (format csv)") + copy_data(b"6\n")
        + SYNC + COPY_DONE, "GCZZTDCZ"),
    "extended_libpq_shape": (
        parse("copy fuzz_repro_copy from stdin") + bind() + execute() + SYNC
        + copy_data(b"1\tx\n") + COPY_DONE + SYNC, "12GCZZTDCZ"),
    "extended_copy_fails_to_start": (
        parse("copy fuzz_repro_missing from stdin") + bind() + execute() + SYNC
        + copy_data(b"1\tx\n") + COPY_DONE + SYNC, "12EZZZTDCZ"),
    "extended_copyfail": (
        parse("copy fuzz_repro_copy from stdin") + bind() + execute() + copy_fail("x"),
        "12GEZTDCZ"),
    "extended_bound_never_executed": (
        parse("copy fuzz_repro_copy from stdin") + bind() + SYNC, "12ZZTDCZ"),
    "extended_named_portal_executed_later": (
        parse("copy fuzz_repro_copy from stdin", "fz1") + bind(portal="fz1", statement="fz1")
        + SYNC + execute("fz1") + SYNC + COPY_DONE, "12ZEZZTDCZ"),
}


@pytest.mark.parametrize("case", sorted(COPY_CASES))
def test_sync_around_copy_from_stdin(daemon, cluster, case):
    """Fuzz finding: a Sync the client sends while the server is in copy-in is ignored
    by PostgreSQL; pgtwist waited for its ReadyForQuery and the session hung."""
    data, expected = COPY_CASES[case]
    with _client(cluster.primary_port) as direct:
        assert _answer(direct, data) == expected  # PostgreSQL's own answer
    with _client(daemon.port) as c:
        assert _answer(c, data) == expected
        assert c.rows("select 1") == [["1"]]  # and the session goes on


@pytest.fixture
def tx_daemon(pgtwist_factory, copy_table):
    pg = pgtwist_factory({"pool_mode": "transaction", "max_pool": 2,
                          "backend_max_connections": 4}, hba=TRUST_HBA, replica_weight=1)
    yield pg
    assert_log_clean(pg)


def test_tx_own_error_mid_batch_rolls_back_what_the_batch_did(tx_daemon, cluster):
    """Fuzz finding (transaction pooling): when pgtwist itself fails a message (a Bind of
    a statement the session never prepared) after earlier messages of the batch went to
    a server, PostgreSQL's error aborts the batch's implicit transaction; pgtwist closed
    that part with its own Sync, so the INSERT before the failing Bind was committed."""
    data = (parse("insert into fuzz_repro_copy values (99, 'fz-own-error')") + bind()
            + execute() + bind(statement="fz_never_prepared"))
    with _client(cluster.primary_port) as direct:
        assert _answer(direct, data) == "12CEZTDCZ"
    with _client(cluster.primary_port) as direct:
        assert direct.rows("select count(*) from fuzz_repro_copy where b = 'fz-own-error'") \
            == [["0"]]
    with _client(tx_daemon.port) as c:
        assert _answer(c, data) == "12CEZTDCZ"
        assert c.rows("select count(*) from fuzz_repro_copy where b = 'fz-own-error'") == [["0"]]


def test_tx_no_second_error_after_the_server_failed_the_batch(tx_daemon, cluster):
    """Fuzz finding (transaction pooling): a server error earlier in the batch (Execute of
    a portal that does not exist) already makes PostgreSQL skip to Sync; pgtwist added
    its own error for a later Bind of an unknown statement (two ErrorResponses)."""
    data = execute("fz_no_portal") + bind(statement="fz_never_prepared")
    with _client(cluster.primary_port) as direct:
        assert _answer(direct, data) == "EZTDCZ"
    with _client(tx_daemon.port) as c:
        c.send(parse("select 1") + bind() + execute() + SYNC)  # a link with history
        c.read_until("Z")
        assert _answer(c, data) == "EZTDCZ"


UNNAMED_CASES = {
    # crash (session mode): the unnamed DEALLOCATE statement lost its node to the probe
    # pgtwist sends ahead of a Query inside a batch; a Describe of it hit min(())
    "describe_after_query_in_batch": (
        parse("deallocate fz_p") + msg(b"H") + query("select 1") + describe(b"S", ""),
        "1TDCZEZTDCZ"),
    "bind_after_query_in_batch": (
        parse("deallocate fz_p") + query("select 1") + bind() + execute(), "1TDCZEZTDCZ"),
    # a Query destroys the unnamed statement; pgtwist still ran it
    "query_destroys_unnamed": (
        parse("select 'old'") + query("select 2") + bind() + execute(), "1TDCZEZTDCZ"),
}


@pytest.mark.parametrize("case", sorted(UNNAMED_CASES))
def test_simple_query_destroys_the_unnamed_statement(daemon, cluster, case):
    data, expected = UNNAMED_CASES[case]
    with _client(cluster.primary_port) as direct:
        assert _answer(direct, data) == expected
    with _client(daemon.port) as c:
        assert _answer(c, data) == expected
        c.send(parse("select 'new'") + SYNC, query("select 3"), bind() + execute() + SYNC)
        assert codes_of(c.read_until("Z", 3)) == "1ZTDCZEZ"


def test_rollback_pipelined_behind_a_failed_transaction_reaches_the_standby(
        pgtwist_factory, cluster, pool_database):
    """Fuzz finding (session mode, load balancing): a multi-statement Query opening a
    transaction fails; the client pipelines ROLLBACK and a read.  pgtwist sent the
    ROLLBACK to the standby only if it already knew the standby was in a transaction,
    and the standby's answer to the BEGIN was still in flight: the read then went to a
    standby whose transaction was still aborted (25P02 after a successful ROLLBACK)."""
    from .conftest import backends

    pg = pgtwist_factory({"backends": backends(cluster, primary_weight=0, replica_weight=1)},
                         hba=TRUST_HBA)
    for _ in range(12):
        with _client(pg.port) as c:
            c.send(query("begin; select 1; rollback to fz_sp") + SYNC + query("select 'p'"))
            assert codes_of(c.read_until("Z")) == "CTDCEZ"
            c.send(query("rollback") + query("select 'q'"))  # before the rest is answered
            msgs = c.read_until("Z", 4)
            assert codes_of(msgs) == "ZEZCZTDCZ", msgs
            assert [b for code, b in msgs if code == "D"] == [b"\x00\x01\x00\x00\x00\x01q"]
    assert_log_clean(pg)


@pytest.mark.parametrize("pool_mode", ["session", "transaction"])
def test_sync_inside_copy_after_a_row_the_server_refused(pgtwist_factory, cluster, copy_table,
                                                         pool_mode):
    """Fuzz finding: a Sync sent inside COPY FROM STDIN after a row the server refuses
    reaches a server no longer in copy-in, which answers it.  pgtwist forwarded it as one
    the server ignores: the extra ReadyForQuery threw its accounting off by one, so in
    transaction pooling the link went back to the pool early and the next session on it
    got this one's answers (a reset's CommandCompletes) or hung.  Now such a Sync is not
    sent at all (PostgreSQL answers it with one ReadyForQuery more: a known deviation)."""
    pg = pgtwist_factory({"pool_mode": pool_mode, "max_pool": 1, "backend_max_connections": 1},
                         hba=TRUST_HBA)
    for data, postgresql, pgtwist in (
        (query("copy fuzz_repro_copy from stdin") + copy_data(b"3\ty\n") + copy_data(b"bad\n")
         + SYNC + copy_data(b"6\tw\n") + copy_fail(""), "GEZZZTDCZ", "GEZZTDCZ"),
        (parse("copy fuzz_repro_copy from stdin") + bind() + execute() + SYNC
         + copy_data(b"bad\n") + SYNC + copy_data(b"6\tw\n") + COPY_DONE + SYNC,
         "12GEZZZTDCZ", "12GEZZTDCZ"),
    ):
        with _client(cluster.primary_port) as direct:
            assert _answer(direct, data) == postgresql
        with _client(pg.port) as a:
            assert _answer(a, data) == pgtwist  # the Sync inside the copy is not sent
            assert a.rows("select 'a'") == [["a"]]
        with _client(pg.port) as b:  # the same server link in transaction pooling
            for i in range(3):
                assert codes_of(b.simple(f"select {i}")) == "TDCZ"
    assert_log_clean(pg)


def test_unnamed_probe_statement_never_reaches_the_client(pgtwist_factory, cluster,
                                                          pool_database):
    """Fuzz finding (session mode, reads on the standby): before a Query inside a batch
    pgtwist parses its own empty unnamed statement on the batch's server; the Query ran
    on the standby, and a Describe of the unnamed statement then described pgtwist's
    probe ('t n') where PostgreSQL answers 26000."""
    from .conftest import backends

    pg = pgtwist_factory({"backends": backends(cluster, primary_weight=0, replica_weight=1)},
                         hba=TRUST_HBA)
    data = parse("deallocate fz_p") + msg(b"H") + query("select 1") + describe(b"S", "")
    for _ in range(3):
        with _client(pg.port) as c:
            assert _answer(c, data) == "1TDCZEZTDCZ"
            c.send(bind() + execute() + SYNC)
            assert codes_of(c.read_until("Z")) == "EZ"


@pytest.mark.parametrize("pool_mode", ["session", "transaction"])
def test_stale_skip_probe_is_not_reused_by_a_later_batch(pgtwist_factory, cluster,
                                                         pool_database, pool_mode):
    """Fuzz finding (a hang in both pool modes, reads on the standby): pgtwist's probe for
    "is the server skipping to Sync?" settled in one batch and was taken as the answer
    for the next batch on another server, which was skipping: pgtwist's own error Query
    there was discarded and its ReadyForQuery awaited for ever."""
    from .conftest import backends

    pg = pgtwist_factory({"pool_mode": pool_mode,
                          "backends": backends(cluster, primary_weight=0, replica_weight=1)},
                         hba=TRUST_HBA)
    data = (execute() + bind(portal="fz2") + parse("reset role; show search_path", "fz1") + SYNC
            + parse("select count(*) from fz_repro_missing", "fz1", (23,))
            + bind(portal="fz1") + SYNC)
    with _client(cluster.primary_port) as direct:
        assert _answer(direct, data) == "EZEZZTDCZ"
    with _client(pg.port) as c:
        assert _answer(c, data) == "EZEZZTDCZ"


@pytest.mark.parametrize("pool_mode", ["session", "transaction"])
def test_skip_probe_is_not_settled_by_an_earlier_parts_error(pgtwist_factory, cluster,
                                                             pool_database, pool_mode):
    """Fuzz finding (a hang, mostly in transaction pooling): the error of an earlier part
    of the stream, already closed by its Sync, settled the probe pgtwist sent to learn
    whether the server skips the current part; it concluded "not skipping", sent its own
    error Query into a part the server was skipping, and waited for ever.  (Timing:
    the first error must arrive on its own; so the shape is repeated.)"""
    pg = pgtwist_factory({"pool_mode": pool_mode}, hba=TRUST_HBA, replica_weight=1)
    data = (execute("fz1") + SYNC + describe(b"P", "fz1")
            + bind(portal="fz2", statement="fz_never_prepared") + SYNC)
    with _client(cluster.primary_port) as direct:
        assert _answer(direct, data) == "EZEZZTDCZ"
    for _ in range(12):
        with _client(pg.port) as c:
            assert _answer(c, data) == "EZEZZTDCZ"


@pytest.mark.parametrize("pool_mode", ["session", "transaction"])
def test_a_lost_server_link_frees_its_slot(pgtwist_factory, cluster, pool_database, pool_mode):
    """Fuzz finding (every session hung, the sentinel too, after some thousand inputs in
    transaction pooling): a server link that closed while a session owned it was dropped
    from the session but never given back to the pool, so its slot under
    backend_max_connections stayed taken; once all were, every session waited."""
    pg = pgtwist_factory({"pool_mode": pool_mode, "max_pool": 1, "backend_max_connections": 1},
                         hba=TRUST_HBA)
    for _ in range(2):
        with _client(pg.port) as a:
            (pid,) = a.rows("begin; select pg_backend_pid()")[0]
            with _client(cluster.primary_port) as direct:
                assert direct.rows(f"select pg_terminate_backend({pid})") == [["t"]]
            a.send(query("select 1"))
            try:
                msgs = a.read_until("Z")
            except EOFError:
                msgs = []
            assert "D" not in codes_of(msgs)
        with _client(pg.port) as b:  # needs the one slot
            assert b.rows("select 'b'") == [["b"]]


@pytest.mark.parametrize("pool_mode", ["session", "transaction"])
def test_an_error_voids_only_the_parses_of_its_own_batch_part(pgtwist_factory, cluster,
                                                              copy_table, pool_mode):
    """Fuzz finding (13 hangs in transaction pooling, reads on the standby): an error
    from the primary in the first part of a batch pgtwist split (already closed by its
    own Sync) made it forget every Parse still pending on that link, those of the next
    part too, and hand the skip probe it had sent to the standby to the primary's
    pending Parses: a ParseComplete from the primary "settled" it, pgtwist concluded the
    standby was not skipping, sent a message into the part the standby was skipping, and
    waited for its answer for ever.  (Every frame is routed before any answer comes back:
    the links and the catalog facts are warm.)"""
    from .conftest import backends

    pg = pgtwist_factory({"pool_mode": pool_mode,
                          "backends": backends(cluster, primary_weight=0, replica_weight=1)},
                         hba=TRUST_HBA)
    later = query("select 'fz-later'") if pool_mode == "session" \
        else bind(portal="fz1", statement="fz_never_prepared")
    data = (describe(b"P", "fz_no_portal") + parse("show search_path", "fz1") + FLUSH
            + parse("delete from fuzz_repro_copy where a = -1")
            + bind([b"1", b"x"], statement="fz1") + later)
    with _client(cluster.primary_port) as direct:
        assert _answer(direct, data) == "EZTDCZ"
    with _client(pg.port) as c:
        for _ in range(6):
            # the primary's error, then (until batches stop being split) the parts after it
            codes = _answer(c, data)
            assert codes.startswith("E") and codes.endswith("ZTDCZ")


def test_a_closed_session_stops_its_catalog_lookup(pgtwist_factory, cluster, pool_database):
    """Fuzz finding ("maximum recursion depth exceeded" in a catalog lookup, under load):
    a session closed (here by a malformed frame) while its catalog lookup waited for a
    link kept retrying the lookup: each retry checked a link out for the closed session,
    which gave it straight back, and retried again, recursively, until Python's
    recursion limit; while the pool was exhausted it kept queueing for links instead."""
    pg = pgtwist_factory({"pool_mode": "transaction", "max_pool": 1,
                          "backend_max_connections": 1}, hba=TRUST_HBA)
    with _client(pg.port) as a, _client(pg.port) as b:
        assert a.rows("begin; select 'a'") == [["a"]]  # holds the only link
        # a function never looked up: the Query waits for a link to run the lookup on;
        # the malformed Sync after it closes the session meanwhile
        b.send(query("select lower('fz-closed')"), msg(b"S", b"xx"))
        assert "E" in codes_of(b.read_until("E"))
        assert a.rows("commit; select 'a2'") == [["a2"]]
        assert a.rows("select 'a3'") == [["a3"]]
    assert "maximum recursion depth" not in pg.log_text()
    assert_log_clean(pg)


def test_sync_after_copydone_while_the_query_starts_another_copy(daemon, cluster):
    """Fuzz finding (a hang in session pooling, seed 2): after the client's CopyDone, the
    same multi-statement Query went on into a second COPY FROM STDIN; the Sync the client
    sent after the CopyDone reached the server in that copy-in, where it is ignored, but
    pgtwist had counted it as one more ReadyForQuery to come and the session hung."""
    copy = "copy fuzz_repro_copy(a) from stdin with (format csv)"
    data = (query(f"{copy}; select 1; {copy}") + copy_data(b"1\n") + COPY_DONE + SYNC
            + copy_data(b"2\n") + COPY_DONE)
    with _client(cluster.primary_port) as direct:
        expected = _answer(direct, data)
    assert expected == "GCTDCGCZZTDCZ"
    with _client(daemon.port) as c:
        assert _answer(c, data) == expected
        assert c.rows("select 'after'") == [["after"]]


@pytest.mark.parametrize("pool_mode", ["session", "transaction"])
def test_nothing_of_a_split_batch_runs_after_its_first_error(pgtwist_factory, cluster,
                                                             copy_table, pool_mode):
    """Fuzz deviations (both pool modes, reads on the standby): in a batch pgtwist split
    between the standby and the primary, the part after a failed one still ran: the
    client got ParseComplete/BindComplete (or a second ErrorResponse) after the error,
    and an INSERT after a failed read was committed.  PostgreSQL skips everything after
    the first error up to Sync, whatever node pgtwist would send it to."""
    from .conftest import backends

    pg = pgtwist_factory({"pool_mode": pool_mode,
                          "backends": backends(cluster, primary_weight=0, replica_weight=1)},
                         hba=TRUST_HBA)
    tag = f"fz-after-error-{pool_mode}"
    count = f"select count(*) from fuzz_repro_copy where b = '{tag}'"
    cases = [
        # a read failing on the standby, then a write for the primary
        (parse("select 1/0") + bind() + execute()
         + parse(f"insert into fuzz_repro_copy values (77, '{tag}')") + bind() + execute(),
         "1EZTDCZ"),
        # an error from the primary, then a read for the standby, then an unknown statement
        (describe(b"P", "fz_no_portal") + parse("select 1", "fz1") + bind(statement="fz1")
         + execute() + bind(statement="fz_never_prepared"), "EZTDCZ"),
    ]
    for data, expected in cases:
        with _client(cluster.primary_port) as direct:
            assert _answer(direct, data) == expected
        with _client(pg.port) as c:
            for _ in range(3):
                assert _answer(c, data) == expected
            assert c.rows(count) == [["0"]]


@pytest.mark.parametrize("pool_mode", ["session", "transaction"])
def test_own_error_in_an_aborted_transaction_after_a_server_error(pgtwist_factory, cluster,
                                                                  pool_database, pool_mode):
    """Fuzz finding (a hang in both pool modes): in an aborted transaction, pgtwist's own
    error for a Bind of the unnamed statement the session lacks was raised by a Query
    sent into the batch, which the server was already skipping for an earlier error
    (Execute of a portal that does not exist): it never answered that Query and the
    session waited for ever.  PostgreSQL skips the Bind: one error, then ReadyForQuery."""
    pg = pgtwist_factory({"pool_mode": pool_mode}, hba=TRUST_HBA, replica_weight=1)
    data = (execute() + parse("select 1", "fz1") + bind(statement="") + SYNC
            + query("rollback"))

    def run(c: RawClient) -> str:
        c.send(query("begin; select 1/0"))
        assert codes_of(c.read_until("Z")) == "CEZ"  # pgtwist knows it is aborted
        return _answer(c, data)

    with _client(cluster.primary_port) as direct:
        assert run(direct) == "EZCZZTDCZ"
    for _ in range(3):
        with _client(pg.port) as c:
            assert run(c) == "EZCZZTDCZ"


def _until_closed(c: RawClient, data: bytes) -> list[str]:
    """Send ``data``; the codes (errors with their SQLSTATE) until the peer closes."""
    from .rawpg import error_fields

    c.send(data)
    seen = []
    while True:
        try:
            code, body = c.read_msg()
        except (EOFError, ConnectionResetError):
            return seen
        if code in "SNK":
            continue
        seen.append(code + error_fields(body).get("C", "") if code == "E" else code)


@pytest.mark.parametrize("pool_mode", ["session", "transaction"])
def test_a_message_sent_in_copy_in_ends_the_session_as_postgresql_does(pgtwist_factory, cluster,
                                                           copy_table, pool_mode):
    """Fuzz finding (a hang in transaction pooling under load, seed 2 input 6544, reads on
    the standby): a Query sent behind a simple-protocol COPY FROM STDIN, before any copy
    message, is what ends the copy-in on the primary ("unexpected message type during
    COPY from stdin").  pgtwist routed it to the standby like any read; its answer, and
    a batch split after it (waiting for its part on the standby), waited behind the
    COPY's, which nothing would end: the client saw CopyInResponse, then nothing.  Now
    pgtwist answers as PostgreSQL does: the error, then FATAL, and the session ends."""
    from .conftest import backends

    pg = pgtwist_factory({"pool_mode": pool_mode,
                          "backends": backends(cluster, primary_weight=0, replica_weight=1)},
                         hba=TRUST_HBA)
    data = (query("copy fuzz_repro_copy(a) from stdin with (format csv)")
            + query("select 1") + parse("select 2") + parse("release fz_sp", "fz1")
            + SYNC + query("select 'probe'"))
    with _client(cluster.primary_port) as direct:
        expected = _until_closed(direct, data)
    assert expected[:2] == ["G", "E08P01"]
    for _ in range(3):
        with _client(pg.port) as c:
            assert _until_closed(c, data) == expected


@pytest.mark.parametrize("pool_mode", ["session", "transaction"])
def test_query_inside_a_skipped_batch_of_an_aborted_transaction(pgtwist_factory, cluster,
                                                                pool_database, pool_mode):
    """Fuzz finding (seed 2 inputs 21175 and 24130, hangs in both pool modes): in an
    aborted transaction an Execute of a portal that does not exist fails and the server
    skips to Sync, discarding a Query sent behind it with no answer at all.  pgtwist
    forwarded that Query (it sent no skip probe in an aborted transaction, since the
    probe's Parse fails there either way) and waited for its ReadyForQuery for ever.  Now
    it ends the batch part and awaits its answers first, as PostgreSQL's skip decides."""
    pg = pgtwist_factory({"pool_mode": pool_mode}, hba=TRUST_HBA, replica_weight=1)
    data = (execute("fz_no_portal") + query("select 1") + copy_data(b"1\n") + SYNC
            + query("rollback") + query("select 'after'"))

    def run(c: RawClient) -> str:
        c.send(query("begin; select 1/0"))
        assert codes_of(c.read_until("Z")) == "CEZ"  # aborted
        c.send(data)
        msgs = c.read_until("Z", 3)
        assert rows_of(msgs) == [["after"]]
        return codes_of(msgs)

    with _client(cluster.primary_port) as direct:
        assert run(direct) == "EZCZTDCZ"
    for _ in range(3):
        with _client(pg.port) as c:
            assert run(c) == "EZCZTDCZ"
    assert_log_clean(pg)


@pytest.mark.parametrize("pool_mode", ["session", "transaction"])
def test_a_catalog_lookup_inside_a_failed_batch_skips_the_rest(pgtwist_factory, cluster,
                                                               copy_table, pool_mode):
    """Fuzz deviation (seed 2 input 21175, reads on the primary): a statement needing a
    catalog lookup (a function's volatility) came after a failed Parse in the same
    batch.  The lookup's Query ended the batch part with pgtwist's own Sync, where the
    server stopped skipping, and the rest of the batch then ran: the client got its
    answers after the error, and an INSERT behind it was committed.  PostgreSQL skips
    everything after the first error up to the client's Sync."""
    from .conftest import backends

    tag = f"fz-lookup-{pool_mode}"
    data = (parse("select * from fz_repro_missing") + parse("select upper('a')", "fz2")
            + bind(statement="fz2") + execute()
            + parse(f"insert into fuzz_repro_copy values (78, '{tag}')") + bind() + execute())
    with _client(cluster.primary_port) as direct:
        assert _answer(direct, data) == "EZTDCZ"
    # A fresh daemon per round: the function's volatility is looked up once, then cached.
    for _ in range(2):
        pg = pgtwist_factory({"pool_mode": pool_mode,
                              "backends": backends(cluster, primary_weight=1, replica_weight=0)},
                             hba=TRUST_HBA)
        with _client(pg.port) as c:
            assert _answer(c, data) == "EZTDCZ"
            assert c.rows(f"select count(*) from fuzz_repro_copy where b = '{tag}'") == [["0"]]
        assert_log_clean(pg)
        pg.stop()


@pytest.mark.parametrize("begin", ["begin; select 1", "select 1; begin",
                                   "; start transaction isolation level read committed; select 2"])
def test_a_transaction_begun_in_a_multi_statement_query_stays_on_the_primary(
        pgtwist_factory, cluster, pool_database, begin):
    """Fuzz deviation (seed 2 input 21175, reads on the standby): a multi-statement Query
    opening a transaction runs on the primary alone, yet the session's reads in that
    transaction went to its standby link, already open and in no transaction: a read
    failing there left the primary's transaction open (the next statement ran where
    PostgreSQL answers 25P02), and reads saw no transaction snapshot.  Such a transaction
    now keeps its statements on the primary (Pgpool-II does so for its SAVEPOINTs)."""
    from .conftest import backends

    pg = pgtwist_factory({"backends": backends(cluster, primary_weight=0, replica_weight=1)},
                         hba=TRUST_HBA)

    def run(c: RawClient, proxied: bool) -> str:
        assert c.rows("select 1") == [["1"]]  # the standby link is open now (pgtwist)
        c.send(query(begin))
        assert c.read_until("Z")[-1] == ("Z", b"T")
        if proxied:
            assert c.rows("select inet_server_port()") == [[str(cluster.primary_port)]]
            c.send(query("savepoint fz_sp"))
            assert codes_of(c.read_until("Z")) == "CZ"
        c.send(parse("select * from fz_repro_missing") + bind() + execute() + SYNC
               + query("select 'x'") + query("rollback") + query("select 'y'"))
        msgs = c.read_until("Z", 4)
        assert rows_of(msgs) == [["y"]]
        return codes_of(msgs)

    with _client(cluster.primary_port) as direct:
        assert run(direct, False) == "EZEZCZTDCZ"
    for _ in range(3):
        with _client(pg.port) as c:
            assert run(c, True) == "EZEZCZTDCZ"
    assert_log_clean(pg)


@pytest.mark.parametrize("pool_mode", ["session", "transaction"])
def test_a_second_parse_of_a_held_name_is_refused_where_the_name_is(pgtwist_factory, cluster,
                                                                    pool_database, pool_mode):
    """Fuzz deviation (seed 1 input 20672, session pooling, reads on the standby): a named
    Parse of a read went to the standby, a second Parse of the same name (a volatile
    call) to the primary, which had no such name and accepted it: two statements of one
    name, a Bind then reaching the wrong one.  PostgreSQL refuses the second Parse
    (42P05) and keeps the first; so does pgtwist, also after the refusal."""
    from .conftest import backends

    pg = pgtwist_factory({"pool_mode": pool_mode,
                          "backends": backends(cluster, primary_weight=0, replica_weight=1)},
                         hba=TRUST_HBA)
    data = parse("select upper('a')", "fz1") + parse("select random()", "fz1")

    def run(c: RawClient) -> list[str]:
        assert _answer(c, data) == "1EZTDCZ"
        c.send(bind(statement="fz1") + execute() + SYNC)
        msgs = c.read_until("Z")
        assert codes_of(msgs) == "2DCZ"
        return rows_of(msgs)

    with _client(cluster.primary_port) as direct:
        assert run(direct) == [["A"]]
    for _ in range(3):
        with _client(pg.port) as c:
            assert run(c) == [["A"]]
    assert_log_clean(pg)
