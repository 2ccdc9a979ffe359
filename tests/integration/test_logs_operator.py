"""Operator logs through a real twistd: Pgpool-II's log_connections, log_disconnections,
log_statement, log_per_node_statement, log_client_messages, log_hostname and
log_line_prefix, the JSON option, SIGHUP toggling, and secrets that never reach the log.

Expected lines follow what Pgpool-II 4.3.5 prints for the same client traffic (run
against the test cluster: see docs/logging.md).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import time

import psycopg
import pytest

from pgtwist.dev import devcluster as dc

from .conftest import backends
from .reloadutil import hup_and_wait as _hup
from .reloadutil import rewrite_config as _rewrite

pytestmark = pytest.mark.integration

HOST = "127.0.0.1"
PREFIX = "%a|%p|%P|%u|%d|%l|"
ALL_ON = {"log_connections": True, "log_disconnections": True, "log_statement": True,
          "log_per_node_statement": True, "log_client_messages": True,
          "log_line_prefix": PREFIX}


def wait_for(pg, text: str, timeout: float = 5.0) -> str:
    deadline = time.monotonic() + timeout
    while True:
        log = pg.log_text()
        if text in log or time.monotonic() > deadline:
            return log
        time.sleep(0.05)


def lines_of(log: str, marker: str) -> list[str]:
    """The log lines of the session whose %a is ``marker`` (the application_name)."""
    return [line for line in log.splitlines() if line.startswith(marker + "|")]


def body(line: str) -> str:
    """A prefixed line without its prefix: 'LOG:  ...'."""
    return line.split("|", 6)[6]


def session_lines(log: str, app: str) -> list[str]:
    """Every line of the session whose application_name is ``app``: from its connection on
    (before authentication %p is pgtwist's provisional key, the client port ties them)."""
    lines = log.splitlines()
    final = lines_of(log, app)
    port = re.search(r" port=(\d+)$", final[-1])[1]
    i = next(i for i, line in enumerate(lines)
             if line.endswith(f"DETAIL:  connecting host={HOST} port={port}")) - 1
    first = lines[i].split("|")[1]
    pid = final[0].split("|")[1]
    return [line for line in lines if line.split("|")[1:2] in ([first], [pid])]


def psql(pg, *commands: str, app: str = "psql", user: str = "postgres") -> None:
    args = ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", dc.conninfo(
        host=pg.host, port=pg.port, user=user, dbname="postgres", application_name=app,
        password=dc.TEST_USERS.get(user))]
    for c in commands:
        args += ["-c", c]
    subprocess.run(args, check=True, capture_output=True, timeout=30,
                   env={**os.environ, "PGCONNECT_TIMEOUT": "10"})


def password_of(user: str = "postgres") -> str | None:
    return dc.TEST_USERS.get(user)


def psycopg_session(pg, app: str, work) -> None:
    with psycopg.connect(pg.dsn(password=password_of(), application_name=app)) as conn:
        work(conn)


def test_every_switch_simple_protocol_with_psql(pgtwist_factory):
    pg = pgtwist_factory(extra=ALL_ON)
    psql(pg, "select 1", app="i12simple")
    log = wait_for(pg, "frontend disconnection")
    got = [body(line) for line in lines_of(log, "i12simple")]
    pid = lines_of(log, "i12simple")[0].split("|")[1]
    assert got == [
        "LOG:  connection authorized: user=postgres database=postgres "
        "application_name=i12simple",
        "LOG:  Query message from frontend.",
        'DETAIL:  query: "select 1"',
        "LOG:  statement: select 1",
        f"LOG:  DB node id: 0 backend pid: {pid} statement: select 1",
        "LOG:  Terminate message from frontend.",
        got[-1],
    ]
    assert re.fullmatch(r"LOG:  frontend disconnection: session time: 0:00:\d\d\.\d{3} "
                        r"user=postgres database=postgres host=127\.0\.0\.1 port=\d+", got[-1])
    # The connection lines come before authentication: %a is the process type then.
    whole = session_lines(log, "i12simple")
    assert [body(line).split(" port=")[0] for line in whole[:2]] == [
        "LOG:  new connection received", "DETAIL:  connecting host=127.0.0.1"]
    assert whole[0].startswith("child|") and whole[0].split("|")[2:5] == [
        "CHILD", "[No Connection]", "[No Connection]"]
    # The whole prefix: %a|%p|%P|%u|%d|%l| with each session's own line numbers.
    numbers = [int(line.split("|")[5]) for line in whole]
    assert numbers == list(range(1, len(numbers) + 1)) and len(numbers) == 9
    assert lines_of(log, "i12simple")[1].startswith(f"i12simple|{pid}|CHILD|postgres|postgres|")


def test_every_switch_extended_protocol_with_psycopg(pgtwist_factory):
    # log_min_messages error: the switched-on lines are LOG, which ranks above ERROR.
    pg = pgtwist_factory(extra={**ALL_ON, "log_connections": False,
                                "log_min_messages": "error"})

    def work(conn):
        conn.autocommit = True
        for _ in range(2):
            assert conn.execute("select %s::int", [5], prepare=True).fetchone() == (5,)

    psycopg_session(pg, "i12ext", work)
    log = wait_for(pg, "frontend disconnection")
    lines = lines_of(log, "i12ext")
    pid = lines[0].split("|")[1]
    per_node = f"LOG:  DB node id: 0 backend pid: {pid} statement: "
    bind = ["LOG:  Bind message from frontend.", 'DETAIL:  portal: "", statement: "_pg3_0"',
            "LOG:  Describe message from frontend.", 'DETAIL:  portal: ""',
            "LOG:  Execute message from frontend.", 'DETAIL:  portal: ""',
            "LOG:  statement: select $1::int",
            "LOG:  Sync message from frontend.",
            per_node + "Bind: select $1::int", per_node + "Execute: select $1::int"]
    assert [body(line) for line in lines][:-2] == [
        "LOG:  Parse message from frontend.",
        'DETAIL:  statement: "_pg3_0", query: "select $1::int"',
        "LOG:  Sync message from frontend.",
        per_node + "Parse: select $1::int",
        *bind, *bind,
    ]
    assert body(lines[-2]) == "LOG:  Terminate message from frontend."
    assert "new connection received" not in log  # log_connections off


def test_per_node_lines_name_both_nodes_of_a_statement_sent_to_both(cluster, pgtwist_factory):
    # Reads on the standby only (a 1:1 weighting would pick the primary half the time).
    pg = pgtwist_factory(extra={"log_per_node_statement": True, "log_line_prefix": PREFIX,
                                "read_consistency": "none",
                                "backends": backends(cluster, primary_weight=0,
                                                     replica_weight=1)})

    def work(conn):
        conn.autocommit = True
        conn.execute("select 'on the standby'")  # opens the load-balance link
        conn.execute("SET work_mem = '8MB'")      # primary and standby both need it

    with psycopg.connect(pg.dsn(password=password_of(), application_name="i12both")) as conn:
        work(conn)
        standby_pid = conn.execute("select pg_backend_pid()").fetchone()[0]
    log = wait_for(pg, "statement: select pg_backend_pid()")
    said = [body(line) for line in lines_of(log, "i12both")]
    assert f"LOG:  DB node id: 1 backend pid: {standby_pid} statement: " \
           "select 'on the standby'" in said
    sets = [line for line in said if line.endswith("statement: SET work_mem = '8MB'")]
    assert sorted(line.split()[4] for line in sets) == ["0", "1"], said


SECRETS = ("Xyzzy-role-secret-1", "Plugh-create-secret-2", "Mapping-secret-3",
           "Extended-secret-4")


def test_passwords_never_reach_the_log(cluster, pgtwist_factory):
    pg = pgtwist_factory(extra=ALL_ON)
    psql(pg, "DROP USER MAPPING IF EXISTS FOR postgres SERVER i12_logs_srv",
         "DROP SERVER IF EXISTS i12_logs_srv", "DROP FOREIGN DATA WRAPPER IF EXISTS i12_logs_fdw",
         "DROP ROLE IF EXISTS i12_logs_a", "DROP ROLE IF EXISTS i12_logs_b",
         "CREATE ROLE i12_logs_a LOGIN",
         f"ALTER ROLE i12_logs_a PASSWORD '{SECRETS[0]}'",
         f"CREATE USER i12_logs_b WITH ENCRYPTED PASSWORD '{SECRETS[1]}' VALID UNTIL 'infinity'",
         "CREATE FOREIGN DATA WRAPPER i12_logs_fdw",
         "CREATE SERVER i12_logs_srv FOREIGN DATA WRAPPER i12_logs_fdw",
         f"CREATE USER MAPPING FOR postgres SERVER i12_logs_srv "
         f"OPTIONS (user 'bob', password '{SECRETS[2]}')", app="i12secret")

    def work(conn):  # psycopg sends it with Parse/Bind/Execute
        conn.autocommit = True
        conn.execute(f"ALTER ROLE i12_logs_a PASSWORD '{SECRETS[3]}'")

    psycopg_session(pg, "i12secret2", work)
    # The statements did run: the server has the role's password and the mapping.
    assert cluster.psql("select rolpassword is not null from pg_authid "
                        "where rolname = 'i12_logs_a'") == "t"
    assert cluster.psql("select count(*) from pg_user_mappings "
                        "where srvname = 'i12_logs_srv'") == "1"
    psql(pg, "DROP USER MAPPING FOR postgres SERVER i12_logs_srv", "DROP SERVER i12_logs_srv",
         "DROP FOREIGN DATA WRAPPER i12_logs_fdw", "DROP ROLE i12_logs_a",
         "DROP ROLE i12_logs_b", app="i12cleanup")
    log = wait_for(pg, "application_name=i12cleanup")
    wait_for(pg, "DROP ROLE i12_logs_b")
    log = pg.log_text()
    assert "statement: ALTER ROLE i12_logs_a PASSWORD '***'" in log
    assert ("statement: CREATE USER i12_logs_b WITH ENCRYPTED PASSWORD '***' "
            "VALID UNTIL 'infinity'") in log
    assert "OPTIONS (user 'bob', password '***')" in log
    assert 'query: "ALTER ROLE i12_logs_a PASSWORD \'***\'"' in log  # the Parse detail
    for secret in (*SECRETS, *(p for p in dc.TEST_USERS.values() if p)):
        assert secret not in log




def test_sighup_turns_log_statement_on_and_off_for_a_running_session(pgtwist_factory):
    pg = pgtwist_factory(extra={"log_line_prefix": PREFIX})
    with psycopg.connect(pg.dsn(password=password_of(), application_name="i12hup")) as conn:
        conn.autocommit = True
        conn.execute("select 4101")
        _rewrite(pg, log_statement=True)
        _hup(pg)
        conn.execute("select 4102")
        wait_for(pg, "select 4102")
        _rewrite(pg, log_statement=False)
        _hup(pg)
        conn.execute("select 4103")
    psql(pg, "select 4104", app="i12hup2")
    log = pg.log_text()
    assert "statement: select 4102" in log
    for n in (4101, 4103, 4104):
        assert f"select {n}" not in log


def test_json_lines_parse_and_carry_the_session_fields(pgtwist_factory):
    pg = pgtwist_factory(extra={"log_format": "json", "log_statement": True,
                                "log_per_node_statement": True, "log_connections": True})
    psql(pg, "select 'json'", app="i12json")
    wait_for(pg, "backend pid")
    time.sleep(0.2)
    records = [json.loads(line) for line in pg.log_text().splitlines() if line.strip()]
    assert any(r["message"].startswith("pgtwist listening on") and r["process"] == "main"
               and r["level"] == "LOG" for r in records)
    (stmt,) = [r for r in records if r["message"] == "statement: select 'json'"]
    assert stmt["user"] == "postgres" and stmt["database"] == "postgres"
    assert stmt["application_name"] == "i12json" and stmt["process"] == "child"
    assert stmt["session"] == stmt["pid"] and re.fullmatch(r"127\.0\.0\.1:\d+", stmt["client"])
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}[+-]\d\d:\d\d", stmt["time"])
    (node,) = [r for r in records if r["message"].startswith("DB node id: 0")]
    assert node["node"] == 0 and node["session"] == stmt["session"]
    port = stmt["client"].rsplit(":", 1)[1]
    (conn,) = [r for r in records if r["message"] == "new connection received"
               and r.get("client") == stmt["client"]]
    assert conn["detail"] == f"connecting host=127.0.0.1 port={port}"


def test_log_hostname_names_the_client_host(pgtwist_factory):
    pg = pgtwist_factory(extra={"log_connections": True, "log_disconnections": True,
                                "log_hostname": True, "log_line_prefix": PREFIX})
    psql(pg, "select 1", app="i12host")
    log = wait_for(pg, "frontend disconnection")
    end = body(lines_of(log, "i12host")[-1])
    port = re.search(r"user=postgres database=postgres host=localhost port=(\d+)$", end)[1]
    assert f"|DETAIL:  connecting host=localhost port={port}\n" in log


def test_default_prefix_is_pgpools(pgtwist):
    line = next(line for line in pgtwist.log_text().splitlines() if "pgtwist listening" in line)
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}: main pid \d+: LOG:  "
                        r"pgtwist listening on 127\.0\.0\.1:\d+", line)


def test_pgpool_set_log_statement_is_the_sessions_own(pgtwist_factory):
    """PGPOOL SET log_statement / log_per_node_statement change the issuing session's
    logging only; PGPOOL RESET goes back to the configured value."""
    pg = pgtwist_factory(extra={"log_line_prefix": PREFIX})
    with psycopg.connect(pg.dsn(password=password_of(), application_name="i12set")) as conn, \
            psycopg.connect(pg.dsn(password=password_of(), application_name="i12other")) as other:
        conn.autocommit = other.autocommit = True
        conn.execute("select 4201")
        conn.execute("PGPOOL SET log_statement = on", prepare=False)
        conn.execute("PGPOOL SET log_per_node_statement TO on", prepare=False)
        conn.execute("select 4202")
        other.execute("select 4203")
        wait_for(pg, "select 4202")
        conn.execute("PGPOOL RESET log_statement", prepare=False)
        conn.execute("PGPOOL RESET log_per_node_statement", prepare=False)
        conn.execute("select 4204")
    log = pg.log_text()
    mine = lines_of(log, "i12set")
    assert any(body(line).startswith("LOG:  statement: select 4202") for line in mine), mine
    assert any("statement: Execute: select 4202" in line or "statement: select 4202" in line
               for line in mine if "DB node id:" in line), mine
    for n in (4201, 4203, 4204):
        assert f"select {n}" not in log
