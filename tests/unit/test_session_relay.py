"""The session layer, driven byte for byte: a real Proxy and Relay, scripted servers.

The client's bytes go into ``Relay.client_data``; what each server receives is read
from its transport, its answers are fed to its BackendLink, and what the client gets
is read from the client's transport.  No sockets, no reactor running.
"""

from __future__ import annotations

from zope.interface.verify import verifyObject

from pgtwist.interfaces import ILinkOwner
from pgtwist.session.modes import SessionMode
from pgtwist.session.txmode import TransactionMode
from pgtwist.testing import ScriptedCluster
from pgtwist.wire import codes
from pgtwist.wire import messages as m

IDLE, BLOCK = codes.TXN_IDLE, codes.TXN_BLOCK


def _parse(name: bytes, sql: bytes) -> bytes:
    return m.frame(codes.PARSE, name + b"\0" + sql + b"\0\0\0")


def _bind(name: bytes, portal: bytes = b"") -> bytes:
    return m.frame(codes.BIND, portal + b"\0" + name + b"\0" + b"\0\0\0\0\0\0")


def _execute(portal: bytes = b"") -> bytes:
    return m.frame(codes.EXECUTE, portal + b"\0\0\0\0\0")


def _describe_statement(name: bytes) -> bytes:
    return m.frame(codes.DESCRIBE, b"S" + name + b"\0")


PARSE_COMPLETE = m.frame(codes.PARSE_COMPLETE)
BIND_COMPLETE = m.frame(codes.BIND_COMPLETE)


def _session(pool_mode: str = "session", nodes: int = 2, **config):
    cluster = ScriptedCluster(nodes=nodes, pool_mode=pool_mode, **config)
    relay, client = cluster.client()
    relay.client_data(m.startup_message({"user": "app", "database": "app"}))
    assert client.value().endswith(m.ready_for_query(IDLE))
    client.clear()
    return cluster, relay, client


def _read(transport) -> bytes:
    data = transport.value()
    transport.clear()
    return data


def test_the_pool_mode_is_chosen_once_per_service():
    assert ScriptedCluster(pool_mode="session").proxy.pool_mode is SessionMode
    assert ScriptedCluster(pool_mode="transaction").proxy.pool_mode is TransactionMode


def test_the_relay_is_its_links_owner():
    cluster, relay, _client = _session()
    assert verifyObject(ILinkOwner, relay)
    assert cluster.server(0).link.owner is relay


def test_a_write_goes_to_the_primary_and_its_answer_back_unchanged():
    # (read_consistency: lsn adds a hidden capture behind it: test_read_consistency_session)
    cluster, relay, client = _session(read_consistency="none")
    query = m.query("INSERT INTO t VALUES (1)")
    relay.client_data(query)
    primary = cluster.server(0)
    assert primary.received() == query
    answer = m.command_complete("INSERT 0 1") + m.ready_for_query(IDLE)
    primary.reply(answer)
    assert _read(client) == answer


def test_a_pipelined_extended_batch_is_one_write_and_its_answers_stream_back():
    cluster, relay, client = _session(load_balance_mode=False)
    batch = (_parse(b"s1", b"SELECT 1") + _bind(b"s1") + _execute() + m.SYNC)
    relay.client_data(batch)
    primary = cluster.server(0)
    assert primary.received() == batch
    rows = m.data_row(["1"]) + m.command_complete("SELECT 1")
    primary.reply(PARSE_COMPLETE + BIND_COMPLETE)
    assert _read(client) == PARSE_COMPLETE + BIND_COMPLETE
    primary.reply(rows, m.ready_for_query(IDLE))
    assert _read(client) == rows + m.ready_for_query(IDLE)
    assert relay.session.statements[b"s1"].confirmed
    assert relay.ordering.idle


def test_a_failed_parse_leaves_no_statement_and_the_batch_is_skipped_to_sync():
    cluster, relay, client = _session(load_balance_mode=False)
    relay.client_data(_parse(b"bad", b"SELEC 1") + _bind(b"bad"))
    primary = cluster.server(0)
    error = m.error_response("42601", "syntax error")
    primary.reply(error)
    assert b"bad" not in relay.session.statements
    assert relay.session.skip_until_sync and relay.session.skipping_link is primary.link
    relay.client_data(_execute() + m.SYNC)
    sent = primary.received()
    assert sent.endswith(m.SYNC) and _execute() not in sent  # skipped, Sync forwarded
    primary.reply(m.ready_for_query(IDLE))
    assert _read(client) == error + m.ready_for_query(IDLE)
    assert not relay.session.skip_until_sync


def test_a_set_outside_a_transaction_is_forgotten_when_its_statement_fails():
    cluster, relay, client = _session(load_balance_mode=False)
    relay.client_data(m.query("SET search_path TO nowhere"))
    primary = cluster.server(0)
    assert primary.received() == m.query("SET search_path TO nowhere")
    assert relay.session.replay == ["SET search_path TO nowhere"]
    primary.reply(m.error_response("22023", "invalid value"), m.ready_for_query(IDLE))
    assert relay.session.replay == []
    relay.client_data(m.query("SET work_mem TO '8MB'"))
    primary.reply(m.command_complete("SET"), m.ready_for_query(IDLE))
    assert relay.session.replay == ["SET work_mem TO '8MB'"]


def test_server_state_follows_the_link_the_session_uses():
    cluster, relay, client = _session(load_balance_mode=False)
    relay.client_data(m.query("BEGIN"))
    primary = cluster.server(0)
    primary.received()
    primary.reply(m.command_complete("BEGIN"), m.parameter_status("TimeZone", "UTC"),
                  m.ready_for_query(BLOCK))
    server = primary.link.server
    assert server.txn_status == BLOCK and server.ready_seen == 1
    assert server.parameters["TimeZone"] == "UTC"
    assert relay.session.parameters["TimeZone"] == "UTC"
    assert relay.session.txn_status == BLOCK


def test_the_ordering_counts_the_sync_points_in_flight():
    cluster, relay, client = _session(load_balance_mode=False)
    primary = cluster.server(0)
    relay.client_data(m.query("SELECT 1") + m.query("SELECT 2"))
    assert relay.ordering.inflight(primary.link) == 2
    primary.reply(m.command_complete("SELECT 1"), m.ready_for_query(IDLE))
    assert relay.ordering.inflight(primary.link) == 1
    primary.reply(m.command_complete("SELECT 1"), m.ready_for_query(IDLE))
    assert relay.ordering.inflight(primary.link) == 0 and relay.ordering.idle


def test_a_slow_client_pauses_every_link():
    cluster, relay, client = _session(load_balance_mode=False)
    link = cluster.server(0).link
    client.producer.pauseProducing()
    assert link.transport.producerState == "paused"
    client.producer.resumeProducing()
    assert link.transport.producerState == "producing"


def test_transaction_mode_gives_an_idle_link_back_and_takes_it_again():
    cluster, relay, client = _session("transaction", load_balance_mode=False)
    assert not relay.links  # logged in: the link waits in the pool until a query
    relay.client_data(m.query("INSERT INTO t VALUES (1)"))
    primary = cluster.server(0)
    assert relay.links[0] is primary.link
    assert primary.received() == m.query("INSERT INTO t VALUES (1)")
    primary.reply(m.command_complete("INSERT 0 1"), m.ready_for_query(IDLE))
    assert not relay.links and primary.link.owner is not relay
    relay.client_data(m.query("INSERT INTO t VALUES (2)"))
    assert relay.links[0] is primary.link and len(cluster.servers[0]) == 1


def test_transaction_mode_names_statements_for_the_server():
    cluster, relay, client = _session("transaction", load_balance_mode=False)
    relay.client_data(_parse(b"mine", b"SELECT 1") + _bind(b"mine") + _execute() + m.SYNC)
    primary = cluster.server(0)
    server_name = relay.session.statements[b"mine"].server_name
    assert server_name.startswith(b"pgtwist_")
    assert primary.received() == (_parse(server_name, b"SELECT 1") + _bind(server_name)
                                  + _execute() + m.SYNC)
    primary.reply(PARSE_COMPLETE, BIND_COMPLETE, m.command_complete("SELECT 1"),
                  m.ready_for_query(IDLE))
    assert _read(client) == (PARSE_COMPLETE + BIND_COMPLETE + m.command_complete("SELECT 1")
                             + m.ready_for_query(IDLE))
    assert server_name in primary.link.server.statements
    # Described on the next link use under the server's name, without a new Parse.
    relay.client_data(_describe_statement(b"mine") + m.SYNC)
    assert primary.received() == _describe_statement(server_name) + m.SYNC


def test_a_failed_sql_prepare_frees_its_name_on_session_and_server():
    cluster, relay, client = _session("transaction", load_balance_mode=False)
    relay.client_data(m.query("PREPARE q AS SELECT 1"))
    primary = cluster.server(0)
    primary.received()
    assert "q" in relay.session.sql_prepared and "q" in primary.link.server.sql_prepared
    primary.reply(m.error_response("42P01", "no such table"), m.ready_for_query(IDLE))
    assert "q" not in relay.session.sql_prepared
    assert "q" not in primary.link.server.sql_prepared


def test_a_lost_primary_link_ends_the_session_with_an_error():
    cluster, relay, client = _session(load_balance_mode=False)
    relay.client_data(m.query("SELECT pg_sleep(10)"))
    primary = cluster.server(0)
    primary.link.connectionLost(None)
    sent = _read(client)
    assert b"08006" in sent and b"FATAL" in sent
    assert relay.closed and relay.session.closed


def test_both_modes_answer_every_hook():
    def hooks(cls):  # what the class and its bases up to PoolMode define
        return {name for klass in cls.__mro__ if klass is not object
                for name in vars(klass) if not name.startswith("_")}

    assert hooks(SessionMode) == hooks(TransactionMode)


def test_a_transaction_read_on_the_standby_and_its_commit_there_first():
    cluster, relay, client = _session(weights=[0, 1])
    assert relay.session.lb_node == 1
    primary = cluster.server(0)
    relay.client_data(m.query("BEGIN"))
    assert primary.received() == m.query("BEGIN")
    primary.reply(m.command_complete("BEGIN"), m.ready_for_query(BLOCK))
    assert _read(client) == m.command_complete("BEGIN") + m.ready_for_query(BLOCK)
    relay.client_data(m.query("SELECT 1"))
    standby = cluster.server(1)
    # The standby's new link joins the transaction first (hidden), then the read.
    assert standby.received() == m.query("BEGIN") + m.query("SELECT 1")
    standby.reply(m.command_complete("BEGIN"), m.ready_for_query(BLOCK))
    assert _read(client) == b""
    rows = m.data_row(["1"]) + m.command_complete("SELECT 1")
    standby.reply(rows, m.ready_for_query(BLOCK))
    assert _read(client) == rows + m.ready_for_query(BLOCK)
    # COMMIT: on the standby first, unseen; the primary's answers the client.
    relay.client_data(m.query("COMMIT"))
    assert standby.received() == m.query("COMMIT") and primary.received() == b""
    standby.reply(m.command_complete("COMMIT"), m.ready_for_query(IDLE))
    assert primary.received() == m.query("COMMIT")
    primary.reply(m.command_complete("COMMIT"), m.ready_for_query(IDLE))
    assert _read(client) == m.command_complete("COMMIT") + m.ready_for_query(IDLE)
    assert relay.session.txn_status == IDLE and relay.ordering.idle
