"""StandbyRetry with a real Ordering and Outbox, literal frames, no sockets."""

from __future__ import annotations

from types import SimpleNamespace

from pgtwist.session.ordering import Ordering
from pgtwist.session.outbox import Outbox
from pgtwist.session.retry import HOLD_BYTES, StandbyRetry
from pgtwist.testing import make_query
from pgtwist.wire import codes
from pgtwist.wire import messages as m

READ_ONLY = b"SERROR\0C25006\0Mcannot execute pg_current_xact_id() during recovery\0\0"
DIV_ZERO = b"SERROR\0C22012\0Mdivision by zero\0\0"


class Link:
    def __init__(self, node_id):
        self.node_id = node_id
        self.closed = False
        self.sent: list[bytes] = []

    def write(self, data):
        self.sent.append(data)


def setup():
    primary, standby = Link(0), Link(1)
    session = SimpleNamespace(pid=1, primary_id=0, route_status="I", skip_until_sync=False,
                              copy_link=None)
    ordering = Ordering()
    out = Outbox(ordering, session, lambda data: None)
    links = SimpleNamespace(get=lambda node: {0: primary, 1: standby}.get(node))
    pooling = SimpleNamespace(counters={"standby_read_only_retries": 0})
    retry = StandbyRetry(session, ordering, out, links, pooling)
    return primary, standby, ordering, out, retry, pooling.counters


def send(out, retry, link, sql):
    frame = m.query(sql)
    out.forward(link, frame, 0, len(frame), sync=True)
    retry.offer(link, make_query("SELECT", functions=("f",) if "(" in sql else ()), frame, 0,
                len(frame))
    out.flush()
    return frame


def deliver(ordering, retry, link, items):
    client = []
    for part in retry.split(link, items):
        client.extend(ordering.receive(link, part)[0])
    return b"".join(client)


def test_read_only_refusal_is_resent_to_the_primary_in_its_place():
    primary, standby, ordering, out, retry, counters = setup()
    frame = send(out, retry, standby, "SELECT pg_current_xact_id()")
    send(out, retry, standby, "SELECT 'later'")
    # the standby's RowDescription and error, then its ReadyForQuery in another chunk
    assert deliver(ordering, retry, standby, [b"T-desc+E", (codes.ERROR_RESPONSE, READ_ONLY)]) \
        == b""
    assert primary.sent == [frame] and counters["standby_read_only_retries"] == 1
    # the later query's answer waits behind the retried one
    assert deliver(ordering, retry, standby, [b"Z", (codes.READY_FOR_QUERY, b"I"),
                                              b"later+Z", (codes.READY_FOR_QUERY, b"I")]) == b""
    out_bytes, _, _ = ordering.receive(primary, [b"xid+Z", (codes.READY_FOR_QUERY, b"I")])
    assert b"".join(out_bytes) == b"xid+Zlater+Z"
    assert not retry.records and ordering.idle


def test_other_errors_and_normal_answers_pass_unchanged():
    primary, standby, ordering, out, retry, counters = setup()
    send(out, retry, standby, "SELECT 1/0")
    assert deliver(ordering, retry, standby, [b"E", (codes.ERROR_RESPONSE, DIV_ZERO)]) == b"E"
    assert deliver(ordering, retry, standby, [b"Z", (codes.READY_FOR_QUERY, b"I")]) == b"Z"
    send(out, retry, standby, "SELECT now()")
    assert deliver(ordering, retry, standby, [b"T"]) == b""          # withheld, undecided
    assert deliver(ordering, retry, standby, [b"DC", b"Z", (codes.READY_FOR_QUERY, b"I")]) \
        == b"TDCZ"
    assert primary.sent == [] and counters["standby_read_only_retries"] == 0


def test_a_long_answer_streams_past_the_bound():
    primary, standby, ordering, out, retry, counters = setup()
    send(out, retry, standby, "SELECT big()")
    big = b"D" * (HOLD_BYTES + 1)
    assert deliver(ordering, retry, standby, [b"T", big]) == b"T" + big
    # a 25006 after that reaches the client: something of the answer already did
    assert deliver(ordering, retry, standby, [b"E", (codes.ERROR_RESPONSE, READ_ONLY),
                                              b"Z", (codes.READY_FOR_QUERY, b"I")]) == b"EZ"
    assert primary.sent == [] and counters["standby_read_only_retries"] == 0


def test_no_retry_when_the_primary_is_busy_or_a_transaction_began():
    primary, standby, ordering, out, retry, counters = setup()
    send(out, retry, standby, "SELECT pg_current_xact_id()")
    write = m.query("INSERT INTO t VALUES (1)")
    out.forward(primary, write, 0, len(write), sync=True)   # the client's next statement
    out.flush()
    assert deliver(ordering, retry, standby, [b"E", (codes.ERROR_RESPONSE, READ_ONLY),
                                              b"Z", (codes.READY_FOR_QUERY, b"I")]) == b"EZ"
    assert primary.sent == [write] and counters["standby_read_only_retries"] == 0


def test_a_read_calling_no_function_is_never_withheld():
    primary, standby, ordering, out, retry, counters = setup()
    send(out, retry, standby, "SELECT 1")   # cannot write: not offered
    assert deliver(ordering, retry, standby, [b"T"]) == b"T"
    assert deliver(ordering, retry, standby, [b"DC", b"Z", (codes.READY_FOR_QUERY, b"I")]) \
        == b"DCZ"
    assert not retry.records and counters["standby_read_only_retries"] == 0
