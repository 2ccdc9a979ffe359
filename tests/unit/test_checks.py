"""Health and replication checks (pgtwist.checks) and what the cluster makes of them,
driven with a memory reactor and literal query answers (no sockets)."""

from __future__ import annotations

from twisted.internet import defer
from twisted.internet.testing import MemoryReactorClock

from pgtwist import checks
from pgtwist.cluster import Cluster
from pgtwist.config import parse_config
from pgtwist.conn.backend import LoginFailed

PRIMARY = {"hostname": "10.0.0.1", "flag": "ALWAYS_PRIMARY|DISALLOW_TO_FAILOVER"}
REPLICA = {"hostname": "10.0.0.2", "application_name": "walrcv2"}


def _cluster(backends=(PRIMARY, REPLICA), **params):
    config = parse_config({"backends": list(backends), "sr_check_period": 0, **params},
                          path=None, env={})
    reactor = MemoryReactorClock()
    return Cluster(reactor, config, lambda user: None), reactor


class FakeQuery:
    """Answers queries from a list: a list of rows, or an exception to raise."""

    def __init__(self, *answers):
        self.answers = list(answers)
        self.calls = []

    def __call__(self, reactor, *args, **kw):
        self.calls.append(args)
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            return defer.fail(answer)
        return defer.succeed(answer)


DOWN = LoginFailed({"S": "FATAL", "C": "08006", "M": "connection refused"})


# -- options -------------------------------------------------------------------------------

def test_per_node_health_settings_fall_back_to_the_plain_ones():
    config = parse_config({"backends": [PRIMARY, REPLICA], "health_check_period": 3,
                           "health_check_period1": 1, "health_check_user1": "hc",
                           "health_check_max_retries": 2, "health_check_database": ""},
                          path=None, env={})
    zero, one = (checks.health_options(config.params, i) for i in (0, 1))
    assert (zero.period, zero.user, zero.max_retries) == (3, "nobody", 2)
    assert (one.period, one.user, one.max_retries) == (1, "hc", 2)
    assert one.database == "postgres"  # '' means postgres, as Pgpool-II's code
    assert (one.timeout, one.retry_delay) == (20, 1)


def test_health_checks_only_for_nodes_with_a_period():
    cluster, _ = _cluster(health_check_period1=2)
    assert [h.node_id for h in cluster.health] == [1]
    cluster, _ = _cluster()
    assert cluster.health == []


def test_health_password_beats_pool_passwd():
    config = parse_config({"backends": [PRIMARY, REPLICA], "health_check_period": 1,
                           "health_check_user": "hc", "health_check_password": "pw"},
                          path=None, env={})
    asked = []
    cluster = Cluster(MemoryReactorClock(), config, lambda u: asked.append(u))
    assert cluster.health[0].secret.plaintext == "pw" and asked == []
    config = parse_config({"backends": [PRIMARY], "health_check_period": 1,
                           "health_check_user": "hc"}, path=None, env={})
    Cluster(MemoryReactorClock(), config, lambda u: asked.append(u))
    assert asked == ["hc"]


# -- the loop ------------------------------------------------------------------------------

def _health(cluster, reactor, node_id, query, **kw):
    o = checks.HealthOptions(period=1, timeout=kw.get("timeout", 1),
                             max_retries=kw.get("retries", 0),
                             retry_delay=kw.get("retry_delay", 1), user="hc", password="",
                             database="postgres")
    check = checks.HealthCheck(reactor, cluster, node_id, o, None, query=query)
    check.running = True
    return check


def test_retries_then_success_keeps_the_node_up():
    cluster, reactor = _cluster(health_check_period=1)
    query = FakeQuery(DOWN, DOWN, [["t"]])
    check = _health(cluster, reactor, 1, query, retries=2, retry_delay=2)
    d = check.check()
    assert len(query.calls) == 1
    reactor.advance(2)
    assert len(query.calls) == 2
    reactor.advance(2)
    assert d.called and len(query.calls) == 3
    assert cluster.nodes[1].status == "up" and cluster.nodes[1].pg_status == "up"
    assert cluster.nodes[1].pg_role == "standby"


def test_spent_retries_mark_the_node_down_until_it_fails_back():
    cluster, reactor = _cluster(health_check_period=1)
    check = _health(cluster, reactor, 1, FakeQuery(DOWN, DOWN), retries=1)
    version = cluster.version
    check.check()
    assert cluster.nodes[1].status != "down"   # one retry still to come
    reactor.advance(1)
    node = cluster.nodes[1]
    assert (node.status, node.pg_status, node.detached) == ("down", "down", True)
    assert cluster.version > version
    reactor.advance(60)  # detached: not retried by sessions after a while
    assert not cluster.usable(1)
    assert cluster.view().nodes[1].status == "down"
    cluster.mark_up(1)   # a session reaching it does not end a detachment either
    assert not cluster.usable(1)
    # Without auto_failback it stays down even when it answers.
    _health(cluster, reactor, 1, FakeQuery([["t"]])).check()
    assert node.status == "down" and node.pg_status == "up"


def test_auto_failback_marks_an_answering_node_up_again():
    cluster, reactor = _cluster(health_check_period=1, auto_failback=True,
                                auto_failback_interval=30)
    _health(cluster, reactor, 1, FakeQuery(DOWN)).check()
    assert not cluster.usable(1)
    _health(cluster, reactor, 1, FakeQuery([["t"]])).check()
    assert cluster.usable(1) and cluster.view().nodes[1].status == "up"
    # auto_failback_interval: no second failback within 30 s of the first.
    _health(cluster, reactor, 1, FakeQuery(DOWN)).check()
    reactor.advance(10)
    _health(cluster, reactor, 1, FakeQuery([["t"]])).check()
    assert not cluster.usable(1)
    reactor.advance(21)
    _health(cluster, reactor, 1, FakeQuery([["t"]])).check()
    assert cluster.usable(1)


def test_auto_failback_waits_for_streaming_when_the_sr_check_can_see_it():
    cluster, reactor = _cluster(health_check_period=1, auto_failback=True, sr_check_period=1)
    _health(cluster, reactor, 1, FakeQuery(DOWN)).check()
    cluster.nodes[1].replication_state = ""
    _health(cluster, reactor, 1, FakeQuery([["t"]])).check()
    assert not cluster.usable(1)
    cluster.nodes[1].replication_state = "streaming"
    _health(cluster, reactor, 1, FakeQuery([["t"]])).check()
    assert cluster.usable(1)


def test_disallow_to_failover_is_never_marked_down():
    replica = {**REPLICA, "flag": "DISALLOW_TO_FAILOVER"}
    cluster, reactor = _cluster((PRIMARY, replica), health_check_period=1)
    _health(cluster, reactor, 1, FakeQuery(DOWN)).check()
    assert cluster.nodes[1].pg_status == "down"
    assert cluster.nodes[1].status != "down" and cluster.usable(1)
    cluster.mark_down(1)  # failover_on_backend_error is on by default
    assert cluster.usable(1)


def test_failover_on_backend_error_detaches_at_once_when_health_checks_run():
    cluster, reactor = _cluster(health_check_period=1)
    cluster.mark_down(1)
    assert cluster.nodes[1].detached
    reactor.advance(60)
    assert not cluster.usable(1)


def test_without_failover_on_backend_error_the_health_check_decides():
    cluster, reactor = _cluster(health_check_period=1, failover_on_backend_error=False)
    cluster.mark_down(1)
    assert cluster.usable(1) and cluster.nodes[1].status != "down"


def test_without_health_checks_a_lost_node_is_set_aside_and_retried():
    cluster, reactor = _cluster()
    cluster.mark_down(1)
    assert not cluster.usable(1) and not cluster.nodes[1].detached
    reactor.advance(6)
    assert cluster.usable(1)


def test_a_promoted_replica_triggers_primary_detection():
    cluster, reactor = _cluster(({"hostname": "10.0.0.1"}, {"hostname": "10.0.0.2"}),
                                health_check_period=1)
    cluster.nodes[0].role, cluster.nodes[1].role = "primary", "standby"
    _health(cluster, reactor, 1, FakeQuery([["f"]])).check()
    # Both nodes are asked pg_is_in_recovery() (the role check), nobody is promoted by us.
    assert sorted(c[0] for c in reactor.tcpClients) == ["10.0.0.1", "10.0.0.2"]
    assert cluster.nodes[1].role == "standby" and cluster.nodes[1].pg_role == "primary"


def test_a_failed_primary_triggers_primary_detection():
    cluster, reactor = _cluster(({"hostname": "10.0.0.1"}, {"hostname": "10.0.0.2"}),
                                health_check_period=1)
    cluster.nodes[0].role, cluster.nodes[1].role = "primary", "standby"
    _health(cluster, reactor, 0, FakeQuery(DOWN)).check()
    assert cluster.nodes[0].detached
    assert len(reactor.tcpClients) == 2


def test_always_primary_answers_do_not_trigger_detection():
    cluster, reactor = _cluster(health_check_period=1)
    _health(cluster, reactor, 1, FakeQuery([["f"]])).check()
    assert reactor.tcpClients == []


def test_probe_gives_up_after_the_timeout():
    from pgtwist.config import Backend

    reactor = MemoryReactorClock()
    d = checks.probe(reactor, Backend(0, "10.0.0.9", 5432, 1, frozenset()), "hc", "postgres",
                     None, checks.HEALTH_QUERY, 2.0)
    failures = []
    d.addErrback(failures.append)
    reactor.advance(1.9)
    assert not failures
    reactor.advance(0.2)
    assert failures and "timeout" in checks._why(failures[0])


def test_loop_start_and_stop():
    cluster, reactor = _cluster(health_check_period=1)
    query = FakeQuery([["t"]], [["t"]], [["t"]])
    check = cluster.health[0]
    check.query = query
    check.start()
    reactor.advance(1)
    assert len(query.calls) == 2
    check.stop()
    reactor.advance(5)
    assert len(query.calls) == 2


# -- replication ---------------------------------------------------------------------------

def test_pg_stat_replication_rows_fill_state_and_time_delays():
    cluster, _ = _cluster(delay_threshold_by_time=100)
    options = cluster.replication.options
    assert options.by_time and options.delay_threshold_by_time == 0.1
    rows = [["walrcv2", "streaming", "async", "250000"], ["other", "catchup", "sync", None]]
    assert checks.apply_stat_replication(cluster.nodes, cluster.nodes[0], rows, options)
    node = cluster.nodes[1]
    assert (node.replication_state, node.replication_sync_state) == ("streaming", "async")
    assert node.replication_delay == 0.25 and node.replication_delay_text == "0.250000"
    assert options.over(node.replication_delay)
    assert not checks.apply_stat_replication(cluster.nodes, cluster.nodes[0], rows, options)
    checks.apply_stat_replication(cluster.nodes, cluster.nodes[0], [], options)
    assert node.replication_state == "" and node.replication_delay is None


def test_byte_delays_from_the_lsns():
    cluster, _ = _cluster(delay_threshold=1000)
    primary, replica = cluster.nodes
    primary.replay_lsn, replica.replay_lsn = 0x1_0000_2000, 0x1_0000_0000
    assert checks.byte_delays(cluster.nodes, primary)
    assert replica.replication_delay == 0x2000 and replica.replication_delay_text == "8192"
    assert cluster.replication.options.over(8192)
    assert not checks.byte_delays(cluster.nodes, primary)
    assert not checks.byte_delays(cluster.nodes, primary, by_time=True)
    replica.replay_lsn = 0x1_0000_3000  # a standby ahead of a stale primary reading: 0
    checks.byte_delays(cluster.nodes, primary)
    assert replica.replication_delay == 0


def test_aurora_lag_is_matched_by_instance_id():
    cluster, _ = _cluster(({"hostname": "writer.cluster-x.rds.amazonaws.com",
                            "flag": "ALWAYS_PRIMARY"},
                           {"hostname": "reader-1.abc.rds.amazonaws.com"},
                           {"hostname": "10.0.0.3", "application_name": "reader-2"}))
    rows = [["writer", "MASTER_SESSION_ID", None], ["reader-1", "s1", "12"],
            ["reader-2", "s2", "1500.5"]]
    assert checks.apply_aurora(cluster.nodes, cluster.nodes[0], rows)
    assert [n.replication_delay for n in cluster.nodes] == [None, 0.012, 1.5005]
    assert cluster.nodes[2].replication_delay_text == "1.500500"


def test_replication_check_asks_aurora_once_then_its_function():
    cluster, _ = _cluster(delay_threshold_by_time=10, log_standby_delay="always")
    query = FakeQuery([["t"]], [["walrcv2", "s1", "20"]], [["walrcv2", "s1", "20"]])
    cluster.replication.query = query
    version = cluster.version
    cluster.replication.check()
    cluster.replication.check()
    sent = [args[-2] for args in query.calls]
    assert sent == [checks.AURORA_PROBE, checks.AURORA_QUERY, checks.AURORA_QUERY]
    assert cluster.nodes[1].replication_delay == 0.02
    assert cluster.version == version + 1  # changed once, then the same


def test_replication_check_reads_pg_stat_replication_and_bumps_the_view():
    cluster, _ = _cluster(delay_threshold_by_time=10)
    cluster.replication.query = FakeQuery([["f"]], [["walrcv2", "streaming", "async", "5000"]])
    cluster.replication.check()
    assert cluster.view().nodes[1].replication_delay == 0.005
    assert cluster.nodes[1].replication_state == "streaming"


def test_replication_check_skips_a_detached_primary():
    cluster, _ = _cluster(({"hostname": "10.0.0.1", "flag": "ALWAYS_PRIMARY"}, REPLICA),
                          health_check_period=1)
    cluster.detach(0, "test")
    cluster.replication.query = FakeQuery()
    cluster.replication.check()   # would pop from an empty list if it asked


def test_log_standby_delay(capsys):
    from twisted.logger import globalLogPublisher

    seen = []
    globalLogPublisher.addObserver(seen.append)
    try:
        for mode, delay, expect in (("always", 5, 1), ("if_over_threshold", 5, 0),
                                    ("if_over_threshold", 50, 1), ("none", 50, 0)):
            cluster, _ = _cluster(delay_threshold=10, log_standby_delay=mode)
            cluster.nodes[1].replication_delay = delay
            seen.clear()
            cluster.replication.log_delays(cluster.nodes[0])
            logged = [e for e in seen if "is behind" in e.get("log_format", "")]
            assert len(logged) == expect, mode
    finally:
        globalLogPublisher.removeObserver(seen.append)
