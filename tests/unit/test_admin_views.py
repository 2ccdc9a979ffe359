"""pgtwist.adminview's pure builders with literal values, and the counters that feed them."""

from __future__ import annotations

import time
from types import SimpleNamespace

import pytest

from pgtwist import checks
from pgtwist.adminview import clients, nodes, settings
from pgtwist.adminview.descriptions import DESCRIPTIONS, describe
from pgtwist.cluster import STAT_NAMES, NodeState
from pgtwist.params import PARAMS, PER_NODE, SUFFIX_ONLY
from pgtwist.wire import messages as m


def node(node_id=0, port=5432, weight=1.0, **kw):
    backend = SimpleNamespace(node_id=node_id, hostname="db", port=port, weight=weight,
                              always_primary=False, application_name="")
    n = NodeState(backend)
    for k, v in kw.items():
        setattr(n, k, v)
    return n


# -- counters ------------------------------------------------------------------------------------
@pytest.mark.parametrize("command,column", [
    ("INSERT", "insert_cnt"), ("UPDATE", "update_cnt"), ("DELETE", "delete_cnt"),
    ("CREATE", "ddl_cnt"), ("DROP", "ddl_cnt"), ("ALTER", "ddl_cnt"), ("TRUNCATE", "ddl_cnt"),
    ("COPY", "ddl_cnt"), ("DECLARE", "ddl_cnt"), ("UNKNOWN", "ddl_cnt"), ("VACUUM", "ddl_cnt"),
    ("SET", "other_cnt"), ("RESET", "other_cnt"), ("BEGIN", "other_cnt"),
    ("COMMIT", "other_cnt"), ("ROLLBACK TO", "other_cnt"), ("LOCK", "other_cnt"),
    ("EXPLAIN", "other_cnt"), ("PREPARE TRANSACTION", "other_cnt"), ("NOTIFY", "other_cnt"),
    ("SELECT", "other_cnt"),   # a SELECT that writes (reads count in select_cnt)
])
def test_statements_count_by_pgpools_ddl_rule(command, column):
    n = node()
    n.count(command)
    n.count(command)
    assert dict(zip(STAT_NAMES, n.stats, strict=True)) == {
        c: (2 if c == column else 0) for c in STAT_NAMES}


@pytest.mark.parametrize("severity,column", [
    ("ERROR", "error_cnt"), ("FATAL", "fatal_cnt"), ("PANIC", "panic_cnt")])
def test_backend_errors_count_by_severity(severity, column):
    n = node()
    frame = m.error_response("57P01", "terminating", severity)
    n.backend_error(frame[5:])
    assert n.stats[STAT_NAMES.index(column)] == 1
    assert sum(n.stats) == 1


def test_notices_and_bad_error_bodies_count_nothing():
    n = node()
    n.backend_error(b"SWARNING\0VWARNING\0C01000\0Mx\0\0")
    n.backend_error(b"\0")
    n.backend_error(b"")
    assert sum(n.stats) == 0


def test_health_stats_record_rounds_retries_and_durations():
    h = checks.HealthStats()
    assert (h.average_retry, h.average_ms, h.last) == (0.0, 0.0, "")
    h.checked(True, 0, 0.004)
    h.checked(True, 2, 0.010)
    h.checked(False, 3, 0.200)
    assert (h.total, h.success, h.fail, h.skip, h.retry, h.max_retry) == (3, 2, 1, 0, 5, 3)
    assert (h.min_ms, h.max_ms) == (4, 200)
    assert h.average_ms == pytest.approx((4 + 10 + 200) / 3)
    assert h.average_retry == pytest.approx(5 / 3)
    assert h.last and h.last_success and h.last_fail and h.last_skip == ""


def test_a_health_check_round_records_its_stats():
    from twisted.internet import defer
    from twisted.internet.task import Clock

    clock = Clock()
    n = node()
    cluster = SimpleNamespace(nodes=[n], health_ok=lambda *a: None,
                              health_failed=lambda *a: None)
    answers = [defer.fail(OSError("refused")), defer.succeed([["f"]])]
    o = checks.HealthOptions(period=1, timeout=1, max_retries=2, retry_delay=0.5, user="u",
                             password="", database="postgres")
    check = checks.HealthCheck(clock, cluster, 0, o, None,
                               query=lambda *a: answers.pop(0))
    check.running = True
    check.check()
    clock.advance(0.5)
    h = n.health_stats
    assert (h.total, h.success, h.retry, h.max_retry, h.max_ms) == (1, 1, 1, 1, 500)


# -- nodes ---------------------------------------------------------------------------------------
def test_pool_nodes_rows():
    a = node(0, 5432, 1.0, status="up", role="primary", pg_status="up", pg_role="primary",
             select_cnt=7, last_status_change="2026-01-02 03:04:05")
    b = node(1, 5433, 3.0, status="down", role="standby", replication_delay=1234,
             replication_state="streaming", replication_sync_state="async")
    columns, rows = nodes.pool_nodes([a, b], lb_node=1)
    assert columns[0] == "node_id" and len(columns) == 14
    assert rows[0] == ["0", "db", "5432", "up", "up", "0.250000", "primary", "primary", "7",
                       "false", "0", "", "", "2026-01-02 03:04:05"]
    assert rows[1][3:12] == ["down", "unknown", "0.750000", "standby", "unknown", "0", "true",
                             "1234", "streaming"]


def test_pool_backend_stats_rows():
    a = node(0, status="up", role="primary", select_cnt=3)
    a.count("INSERT")
    a.count("CREATE")
    a.backend_error(m.error_response("22012", "division by zero")[5:])
    columns, rows = nodes.pool_backend_stats([a])
    assert dict(zip(columns, rows[0], strict=True)) == {
        "node_id": "0", "hostname": "db", "port": "5432", "status": "up", "role": "primary",
        "select_cnt": "3", "insert_cnt": "1", "update_cnt": "0", "delete_cnt": "0",
        "ddl_cnt": "1", "other_cnt": "0", "panic_cnt": "0", "fatal_cnt": "0", "error_cnt": "1"}


def test_pool_health_check_stats_rows_print_as_pgpool():
    a = node(0, status="up", role="primary", last_status_change="2026-01-02 03:04:05")
    columns, rows = nodes.pool_health_check_stats([a])
    row = dict(zip(columns, rows[0], strict=True))
    assert row["average_retry_count"] == "0.000000" and row["average_duration"] == "0.000000"
    assert row["last_health_check"] == "" and row["total_count"] == "0"
    a.health_stats.checked(False, 3, 0.0)
    a.health_stats.checked(True, 0, 0.0)
    a.health_stats.checked(True, 0, 0.0)
    a.health_stats.checked(True, 0, 0.0)
    row = dict(zip(columns, nodes.pool_health_check_stats([a])[1][0], strict=True))
    assert row["average_retry_count"] == "0.750000"
    assert row["max_retry_count"] == "3"


# -- clients -------------------------------------------------------------------------------------
T0 = time.mktime((2026, 3, 4, 5, 6, 7, 0, 0, -1))


def client(pid, links=(), status=clients.IDLE, lb_node=0):
    return clients.Client(pid, T0, "alice", "shop", "10.0.0.1", "5555", status, lb_node,
                          tuple(links))


def test_pool_processes_sessions_then_free_slots():
    c = client(77, [clients.Link(0, 900, T0 + 1, 3)])
    waiting = client(78, status=clients.WAITING)
    columns, rows = clients.pool_processes([c, waiting], slots=4, daemon_pid=10,
                                           daemon_started=T0 - 60)
    assert len(columns) == 8 and len(rows) == 4
    assert rows[0] == ["77", "2026-03-04 05:06:07", "0", "shop", "alice",
                       "2026-03-04 05:06:08", "3", "Idle"]
    assert rows[1][0] == "78" and rows[1][5:] == ["", "", "Wait for connection"]
    assert rows[2] == rows[3] == ["10", "2026-03-04 05:05:07", "0", "", "", "", "",
                                  "Wait for connection"]


def test_pool_processes_more_sessions_than_slots_shows_them_all():
    _columns, rows = clients.pool_processes([client(1), client(2)], 1, 10, T0)
    assert [r[0] for r in rows] == ["1", "2"]


def test_pool_pools_rows():
    c = client(77, [clients.Link(0, 900, T0 + 1, 3), clients.Link(1, 901, T0 + 2, 1)],
               status=clients.EXECUTING, lb_node=1)
    idle = [clients.Link(0, 950, T0 - 5, 9, "shop", "bob", T0 - 1),
            clients.Link(0, 951, T0 - 4, 1, "shop", "bob", T0 - 2)]
    columns, rows = clients.pool_pools([c], idle, slots=2, node_count=2, daemon_pid=10,
                                       daemon_started=T0)
    assert len(columns) == 21
    got = [dict(zip(columns, r, strict=True)) for r in rows]
    assert len(got) == 2 + 2 + 2   # the session's, the idle links, one free slot
    assert got[1] == {
        "pool_pid": "77", "start_time": "2026-03-04 05:06:07", "client_connection_count": "0",
        "pool_id": "0", "backend_id": "1", "database": "shop", "username": "alice",
        "backend_connection_time": "2026-03-04 05:06:09",
        "client_connection_time": "2026-03-04 05:06:07", "client_disconnection_time": "",
        "client_idle_duration": "0", "majorversion": "3", "minorversion": "0",
        "pool_counter": "1", "pool_backendpid": "901", "pool_connected": "1",
        "status": "Execute command", "load_balance_node": "1", "client_host": "10.0.0.1",
        "client_port": "5555", "statement": ""}
    assert [(r["pool_pid"], r["pool_id"], r["pool_backendpid"], r["pool_connected"],
             r["username"], r["client_disconnection_time"]) for r in got[2:4]] == [
        ("10", "0", "950", "0", "bob", "2026-03-04 05:06:06"),
        ("10", "1", "951", "0", "bob", "2026-03-04 05:06:05")]
    assert [(r["backend_id"], r["username"], r["status"]) for r in got[4:]] == [
        ("0", "", "Wait for connection"), ("1", "", "Wait for connection")]


def test_pool_pools_a_node_the_session_holds_no_link_to():
    c = client(5, [clients.Link(0, 900, T0, 1)])
    _columns, rows = clients.pool_pools([c], [], 1, 2, 10, T0)
    assert rows[1][:7] == ["5", "2026-03-04 05:06:07", "0", "0", "1", "", ""]
    assert rows[1][14:20] == ["0", "0", "Idle", "0", "10.0.0.1", "5555"]


# -- settings ------------------------------------------------------------------------------------
PARAMS_SAMPLE = {name: p.default for name, p in PARAMS.items()}
PARAMS_SAMPLE.update({
    "port": 9999, "health_check_password": "s3cret", "sr_check_password": "",
    "health_check_period1": 5, "backend_hostname0": "db0", "backend_port0": 5432,
    "backend_weight0": 1.0, "backend_flag0": "ALWAYS_PRIMARY", "backend_data_directory0": "",
    "backend_application_name0": "", "hostname0": "wd0",
    "routing": {"policies": ["x"], "api_token": "t0k"},
})


def test_show_values_print_as_pgpool():
    assert settings.show_value("load_balance_mode", True) == "on"
    assert settings.show_value("connection_cache", False) == "off"
    assert settings.show_value("reset_query_list", ("ABORT", "DISCARD ALL")) == \
        "ABORT;DISCARD ALL"
    assert settings.show_value("write_function_list", ("nextval", "setval")) == \
        "nextval,setval"
    assert settings.show_value("log_file_mode", 0o600) == "0600"
    assert settings.show_value("backend_connect_rate", 200.0) == "200"
    assert settings.show_value("backend_weight0", 0.5) == "0.5"
    assert settings.show_value("pid_file_name", None) == ""
    for secret in ("health_check_password", "sr_check_password", "wd_authkey",
                   "health_check_password1", "recovery_password"):
        assert settings.show_value(secret, "x") == "*****"
        assert settings.show_value(secret, "") == "*****"
    assert "t0k" not in settings.show_value("routing", PARAMS_SAMPLE["routing"])


def test_pgpool_show_one_group_all():
    assert settings.pgpool_show("port", PARAMS_SAMPLE, 1) == (["port"], [["9999"]])
    assert settings.pgpool_show("delegate_IP", PARAMS_SAMPLE, 1)[0] == ["delegate_IP"]
    assert settings.pgpool_show("backend_port0", PARAMS_SAMPLE, 1) == (
        ["backend_port0"], [["5432"]])
    columns, rows = settings.pgpool_show("backend", PARAMS_SAMPLE, 1)
    assert columns == ["item", "value", "description"]
    assert [r[0] for r in rows] == ["backend_hostname0", "backend_port0", "backend_weight0",
                                    "backend_flag0", "backend_data_directory0",
                                    "backend_application_name0"]
    _c, rows = settings.pgpool_show("health_check_period", PARAMS_SAMPLE, 2)
    assert [r[:2] for r in rows] == [["health_check_period", "0"],
                                     ["health_check_period0", "0"],
                                     ["health_check_period1", "5"]]
    _c, rows = settings.pgpool_show("ALL", PARAMS_SAMPLE, 1, {"client_idle_limit": 30})
    items = {r[0]: r[1] for r in rows}
    assert items["client_idle_limit"] == "30" and items["hostname0"] == "wd0"
    assert items["health_check_password"] == items["health_check_password0"] == "*****"
    assert set(PARAMS) <= set(items)
    assert not any("s3cret" in r[1] or "t0k" in r[1] for r in rows)
    with pytest.raises(settings.UnknownParameter) as caught:
        settings.pgpool_show("nosuch", PARAMS_SAMPLE, 1)
    assert caught.value.message == 'config variable "nosuch" not found'


def test_every_parameter_has_a_description():
    assert set(PARAMS) | set(SUFFIX_ONLY) <= set(DESCRIPTIONS)
    assert describe("health_check_period3") == describe("health_check_period")
    assert describe("backend_flag2").startswith("backend flags")
    assert set(settings.HEALTH_CHECK_GROUP) == PER_NODE


def test_pool_version_parses_for_pgpool2_exporter_and_pool_cache_is_zero():
    import re

    (_name,), [[version]] = settings.pool_version()
    found = re.match(r"^(\d+)(\.\d+)(\.\d+)?", version)
    assert found and tuple(int(g.strip(".")) for g in found.groups()) >= (4, 2, 0)
    columns, rows = settings.pool_cache()
    assert len(columns) == 9 and rows == [["0", "0", "0.00", "0", "0", "0", "0", "0", "0"]]


def test_the_pool_counts_each_links_checkouts():
    from tests.unit.test_pool import APP, link_of, make_pool, take

    pool, clock, _connector = make_pool(max_pool=1)
    first = link_of(take(pool.checkout(APP, {}, client="c1")))
    assert pool.link_record(first).uses == 1
    waiting = take(pool.checkout(APP, {}, client="c2"))   # queues: max_pool 1
    pool.checkin(first, reusable=True)                     # handed to the waiter
    assert link_of(waiting) is first and pool.link_record(first).uses == 2
    pool.checkin(first, reusable=True)                     # idle now
    clock.advance(1)
    assert link_of(take(pool.checkout(APP, {}, client="c3"))) is first
    assert pool.link_record(first).uses == 3
    assert pool.link_record(object()) is None
