"""The real pcp_* tools of Pgpool-II 4.3.5 (Debian's pgpool2) against a real pgtwist.

Expected output is what those tools print against a real Pgpool-II 4.3.5 (captured with
the same tools; docs/pcp.md), with pgtwist's own values read back through SHOW pool_*.
"""

from __future__ import annotations

import re
import subprocess
import time
import urllib.error
import urllib.request

import psycopg
import pytest

from pgtwist.dev import devcluster as dc

from .conftest import backends
from .pcputil import PASSWORD, USER, Pcp, ensure_pcp_tools, fatal, pcp_conf, raw

pytestmark = pytest.mark.integration

TIMESTAMP = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d"
STATUS_DIGIT = {"waiting": "1", "up": "2", "down": "3"}


@pytest.fixture(scope="module", autouse=True)
def _tools():
    ensure_pcp_tools()


@pytest.fixture
def daemon(cluster, pgtwist_factory, tmp_path):
    """``daemon(**extra)`` -> (Pgtwist, Pcp): PCP on a free port, reads on the replica
    (node 1, which may be detached), the primary node 0."""

    def start(conf=True, primary_flag=None, **extra):
        nodes = backends(cluster, primary_weight=0, replica_weight=1)
        nodes[1]["flag"] = "ALLOW_TO_FAILOVER"
        if primary_flag is not None:
            nodes[0]["flag"] = primary_flag
        port = dc.free_port()
        workdir = tmp_path / f"pcp{port}"
        workdir.mkdir(parents=True)
        conf_path = pcp_conf(workdir, {USER: PASSWORD}) if conf else workdir / "none"
        config = {"backends": nodes, "read_consistency": "none", "pcp_port": port,
                  "pcp_listen_addresses": dc.HOST, "pcp_conf_file": str(conf_path), **extra}
        pg = pgtwist_factory(extra=config)
        assert dc.wait_listening(port, timeout=10)
        return pg, Pcp(port, workdir)

    return start


def ok(result, tool: str) -> None:
    assert (result.returncode, result.stderr, result.stdout) == (
        0, "", f"{tool} -- Command Successful\n")


def show(pg, what: str):
    with psycopg.connect(pg.dsn(), autocommit=True) as conn:
        return conn.execute(f"show {what}").fetchall()


def answering_node(pg) -> bool:
    """Whether a new session's read ran on a server in recovery (the replica)."""
    with psycopg.connect(pg.dsn(), autocommit=True) as conn:
        port = conn.execute("select inet_server_port()").fetchone()[0]
    with psycopg.connect(dc.conninfo(host=dc.HOST, port=port, user="postgres",
                                     dbname="postgres"), autocommit=True) as direct:
        return direct.execute("select pg_is_in_recovery()").fetchone()[0]


def node_line(row) -> str:
    """pcp_node_info's line for a SHOW pool_nodes row, as Pgpool-II 4.3.5 prints it."""
    (_id, host, port, status, pg_status, weight, role, pg_role, _sel, _lb, delay, state,
     sync, changed) = row
    return (f"{host} {port} {STATUS_DIGIT[status]} {weight} {status} {pg_status} {role} "
            f"{pg_role} {delay} {state or 'none'} {sync or 'none'} {changed}")


def test_node_count_and_node_info(cluster, daemon):
    pg, pcp = daemon(sr_check_period=0)
    r = pcp("pcp_node_count")
    assert (r.returncode, r.stdout, r.stderr) == (0, "2\n", "")
    rows = show(pg, "pool_nodes")
    lines = [node_line(row) for row in rows]
    r = pcp("pcp_node_info", "-a")
    assert (r.returncode, r.stderr) == (0, "")
    assert r.stdout == "".join(line + "\n" for line in lines)
    assert re.fullmatch(rf"{dc.HOST} {cluster.primary_port} [12] 0.000000 \w+ \w+ primary "
                        rf"\w+ 0 none none {TIMESTAMP}", lines[0])
    assert re.fullmatch(rf"{dc.HOST} {cluster.replica_ports[0]} [12] 1.000000 \w+ \w+ standby"
                        rf" \w+ 0 none none {TIMESTAMP}", lines[1])
    r = pcp("pcp_node_info", "-n", "1")
    assert (r.returncode, r.stdout, r.stderr) == (0, lines[1] + "\n", "")
    r = pcp("pcp_node_info", "-v", "-n", "0")
    assert r.stdout.splitlines()[:3] == [
        f"Hostname               : {dc.HOST}", f"Port                   : {cluster.primary_port}",
        f"Status                 : {lines[0].split()[2]}"]


def test_node_info_and_health_stats_of_a_missing_node(daemon):
    _pg, pcp = daemon()
    r = pcp("pcp_node_info", "-n", "5")
    # Pgpool-II 4.3.5's tools exit 0 after an ERROR here; pgtwist's answer is the same.
    assert (r.returncode, r.stdout, r.stderr) == (
        0, "", "ERROR:  informing node info failed\nDETAIL:  invalid node ID : 5\n\n")
    r = pcp("pcp_health_check_stats", "-n", "7")
    assert (r.returncode, r.stdout, r.stderr) == (
        0, "", "ERROR:  informing health check stats info failed\nDETAIL:  invalid node ID 7"
               "\n\n")


def test_detach_moves_reads_off_a_node_and_attach_brings_them_back(daemon):
    pg, pcp = daemon()
    assert answering_node(pg) is True
    ok(pcp("pcp_detach_node", "-n", "1"), "pcp_detach_node")
    assert [row[3] for row in show(pg, "pool_nodes")] == ["up", "down"]
    assert pcp("pcp_node_info", "-n", "1").stdout.split()[2:5] == ["3", "1.000000", "down"]
    for _ in range(5):
        assert answering_node(pg) is False
    ok(pcp("pcp_attach_node", "-n", "1"), "pcp_attach_node")
    assert [row[3] for row in show(pg, "pool_nodes")] == ["up", "up"]
    assert answering_node(pg) is True
    assert "node 1 marked up: pcp_attach_node" in pg.log_text()


def test_detach_of_a_node_that_may_not_fail_over(daemon):
    pg, pcp = daemon()
    r = pcp("pcp_detach_node", "-n", "0")   # the primary: ALWAYS_PRIMARY|DISALLOW_TO_FAILOVER
    assert (r.returncode, r.stdout, r.stderr) == (
        0, "", "ERROR:  detach node failed\nDETAIL:  node 0 is flagged DISALLOW_TO_FAILOVER\n\n")
    assert [row[3] for row in show(pg, "pool_nodes")] == ["up", "up"]


def test_graceful_detach_waits_for_clients(daemon):
    pg, pcp = daemon()
    conn = psycopg.connect(pg.dsn(), autocommit=True)
    try:
        conn.execute("select 1")
        proc = pcp.popen("pcp_detach_node", "-g", "-n", "1")
        time.sleep(1.0)
        assert proc.poll() is None            # waiting for the client
    finally:
        conn.close()
    out, err = proc.communicate(timeout=20)
    assert (proc.returncode, out, err) == (0, "pcp_detach_node -- Command Successful\n", "")
    assert [row[3] for row in show(pg, "pool_nodes")] == ["up", "down"]


def test_promote_refused_while_a_node_is_always_primary(daemon):
    pg, pcp = daemon()
    r = pcp("pcp_promote_node", "-n", "1")
    assert (r.returncode, r.stdout, r.stderr) == (
        0, "", "ERROR:  invalid promote request\nDETAIL:  node 0 is flagged ALWAYS_PRIMARY: the "
               "primary is set in the configuration\n\n")
    assert [row[6] for row in show(pg, "pool_nodes")] == ["primary", "standby"]


def test_promote_changes_only_pgtwists_view(cluster, daemon):
    # No ALWAYS_PRIMARY: the primary is found by one role check at start (period 0).
    pg, pcp = daemon(primary_flag="DISALLOW_TO_FAILOVER", sr_check_period=0)
    assert [row[6] for row in show(pg, "pool_nodes")] == ["primary", "standby"]
    r = pcp("pcp_promote_node", "-n", "0")
    assert (r.returncode, r.stdout, r.stderr) == (
        0, "", "ERROR:  invalid promote request\nDETAIL:  specified node is already primary "
               "node, can't promote node id 0\n\n")
    ok(pcp("pcp_promote_node", "-n", "1"), "pcp_promote_node")
    assert [row[6] for row in show(pg, "pool_nodes")] == ["standby", "primary"]
    # Nothing ran on a server: the replica is still in recovery.
    assert cluster.psql("select pg_is_in_recovery()", port=cluster.replica_ports[0]) == "t"


# pcp_proc_info -v's labels (4.3.5) and the pool_pools column each shows.
PROC_LABELS = [("Database", 5), ("Username", 6), ("Start time", 1),
               ("Client connection count", 2), ("Major", 11), ("Minor", 12),
               ("Backend connection time", 7), ("Client connection time", 8),
               ("Client idle duration", 10), ("Client disconnection time", 9),
               ("Pool Counter", 13), ("Backend PID", 14), ("Connected", 15), ("PID", 0),
               ("Backend ID", 4), ("Status", 16)]


def test_proc_count_and_proc_info(daemon):
    pg, pcp = daemon(num_init_children=3)
    with psycopg.connect(pg.dsn(), autocommit=True) as conn:
        conn.execute("select 1")
        session_pid = str(conn.info.backend_pid)    # the session's pid, pgtwist's key
        r = pcp("pcp_proc_count")
        assert (r.returncode, r.stdout, r.stderr) == (0, f"{session_pid} {pg.proc.pid} \n", "")
        rows = [row for row in show(pg, "pool_pools") if row[0] == session_pid]
        assert len(rows) == 2 and rows[0][5:7] == ("postgres", "postgres")
        r = pcp("pcp_proc_info", "-a", "-v", "-P", session_pid)
        assert (r.returncode, r.stderr) == (0, "")
        assert r.stdout == "".join(
            "".join(f"{label:<26}: {row[i] or ''}\n" for label, i in PROC_LABELS) + "\n"
            for row in rows)
        r = pcp("pcp_proc_info", "-P", "1")
        assert (r.returncode, r.stdout, r.stderr) == (
            0, "", "ERROR:  informing process info failed\nDETAIL:  invalid process ID : 1\n\n")


def test_pool_status_lists_every_parameter(daemon):
    pg, pcp = daemon()
    r = pcp("pcp_pool_status")
    assert (r.returncode, r.stderr) == (0, "")
    rows = show(pg, "pool_status")
    expected = "".join(f"name : {item}\nvalue: {value}\ndesc : {desc}\n\n"
                       for item, value, desc in rows)
    assert r.stdout == expected
    assert "name : pcp_port\n" in r.stdout


def test_health_check_stats(daemon):
    # One check at start, the next 60 s later: the counters hold still while compared.
    pg, pcp = daemon(health_check_period=60, health_check_user="postgres")
    deadline = time.monotonic() + 20
    while True:
        row = show(pg, "pool_health_check_stats")[1]
        if row[7] == "1" or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert row[6:9] == ("1", "1", "0")      # total, success, fail
    r = pcp("pcp_health_check_stats", "-n", "1")
    assert (r.returncode, r.stdout, r.stderr) == (0, " ".join(row) + "\n", "")


def test_reload_config_takes_the_sighup_path(daemon):
    import yaml

    pg, pcp = daemon()
    assert answering_node(pg) is True
    config = yaml.safe_load(open(pg.config_path))
    config["backends"][1]["weight"] = 0
    config["backends"][0]["weight"] = 1
    with open(pg.config_path, "w") as f:
        yaml.safe_dump(config, f)
    ok(pcp("pcp_reload_config"), "pcp_reload_config")
    assert "configuration reloaded" in pg.log_text()
    assert answering_node(pg) is False


def _readyz(port: int) -> int:
    try:
        with urllib.request.urlopen(f"http://{dc.HOST}:{port}/readyz", timeout=5) as r:
            return r.status
    except urllib.error.HTTPError as exc:
        return exc.code


def test_stop_smart_waits_for_clients(daemon):
    metrics = dc.free_port()
    pg, pcp = daemon(metrics_port=metrics, metrics_listen_addresses=dc.HOST)
    assert dc.wait_listening(metrics, timeout=10)
    assert _readyz(metrics) == 200
    conn = psycopg.connect(pg.dsn(), autocommit=True)
    ok(pcp("pcp_stop_pgpool", "-m", "s"), "pcp_stop_pgpool")
    time.sleep(0.5)
    assert pg.proc.poll() is None
    assert conn.execute("select 1").fetchone() == (1,)      # the open session carries on
    assert _readyz(metrics) == 503                          # Kubernetes: no new clients here
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(pg.dsn(), connect_timeout=3)           # no new clients
    conn.close()
    assert pg.proc.wait(10) == 0


def test_stop_fast_closes_clients(daemon):
    pg, pcp = daemon()
    conn = psycopg.connect(pg.dsn(), autocommit=True)
    ok(pcp("pcp_stop_pgpool", "-m", "f"), "pcp_stop_pgpool")
    assert pg.proc.wait(10) == 0
    with pytest.raises(psycopg.OperationalError):
        conn.execute("select 1")
    conn.close()


# -- refusals: the same bytes and messages as Pgpool-II 4.3.5 -------------------------------

AUTH_FAILED = 'FATAL:  authentication failed for user "{}"\nDETAIL:  username and/or ' \
              'password does not match\n\n'


@pytest.mark.parametrize("user", ["wrongpw", "nobody"])
def test_bad_credentials(daemon, user):
    pg, pcp = daemon()
    if user == "wrongpw":   # a known user with the wrong password
        pcp_conf(pcp.passfile.parent, {USER: PASSWORD, "wrongpw": "the-real-one"})
    r = pcp("pcp_node_count", user=user)
    assert (r.returncode, r.stdout, r.stderr) == (1, "", AUTH_FAILED.format(user))
    assert f"PCP login as '{user}' from {dc.HOST} refused" in pg.log_text()


def test_missing_pcp_conf_refuses_everyone(daemon):
    pg, pcp = daemon(conf=False)
    r = pcp("pcp_node_count")
    assert (r.returncode, r.stdout, r.stderr) == (1, "", AUTH_FAILED.format(USER))
    assert "does not exist (PCP logins need it): every PCP login is refused" in pg.log_text()


def test_bad_packets_and_unknown_commands(daemon):
    pg, pcp = daemon()
    port = pcp.port
    assert raw(port, b"hello world\n") == fatal(
        "invalid PCP packet", "incorrect packet length (1701604463)")
    assert raw(port, b"M\x00\x00\x00\x00") == fatal("invalid PCP packet",
                                                    "incorrect packet length (0)")
    assert raw(port, b"L\x00\x00\x01\x2c" + b"a" * 296, login=True) == fatal(
        "invalid PCP packet", "incorrect packet length (300)")
    assert raw(port, b"L\x00\x00\x00\x04") == fatal(
        "authentication failed for new PCP connection", "connection not authorized")
    assert raw(port, b"Q\x00\x00\x00\x04", login=True) == fatal(
        "PCP processing request", 'unknown PCP packet type "Q"')
    # The daemon is unharmed.
    r = pcp("pcp_node_count")
    assert (r.returncode, r.stdout) == (0, "2\n")
    assert answering_node(pg) is True


def test_unix_socket_when_pcp_socket_dir_is_set(daemon, tmp_path):
    sockdir = tmp_path / "sock"
    sockdir.mkdir()
    pg, pcp = daemon(pcp_socket_dir=str(sockdir))
    pcp.passfile.write_text(f"*:{pcp.port}:{USER}:{PASSWORD}\n")
    argv = pcp.argv("pcp_node_count")
    argv[argv.index(dc.HOST)] = str(sockdir)
    r = subprocess.run(argv, capture_output=True, text=True, env=pcp.env(), timeout=30)
    assert (r.returncode, r.stdout, r.stderr) == (0, "2\n", "")
    assert (sockdir / f".s.PGSQL.{pcp.port}").exists()
    pg.stop()
    assert not (sockdir / f".s.PGSQL.{pcp.port}").exists()
