"""PGPOOL SHOW / SET / RESET through a real twistd (Pgpool-II §4.1): column shapes, values
from the configuration, session-local SETs, and errors worded as Pgpool-II words them."""

from __future__ import annotations

import time

import psycopg
import pytest
from psycopg import errors as pgerr

from pgtwist.dev import devcluster as dc

from .adminutil import connect, show

pytestmark = pytest.mark.integration

# Pgpool-II 4.3.5's order (PGPOOL SHOW health_check against a real Pgpool-II)
HEALTH_NAMES = ["health_check_period", "health_check_timeout", "health_check_user",
                "health_check_password", "health_check_database", "health_check_max_retries",
                "health_check_retry_delay", "connect_timeout"]


@pytest.fixture
def pg(pgtwist_factory):
    return pgtwist_factory(extra={"health_check_password": "pw-Never-Shown",
                                  "health_check_period1": 0, "write_function_list": ["nextval",
                                                                                      "setval"]})


def test_pgpool_show_one_parameter_is_one_column_named_after_it(pg):
    with connect(pg) as conn, connect(pg, prepare_threshold=0) as named:
        assert show(conn, "PGPOOL SHOW port") == (["port"], [(str(pg.port),)])
        for client in (conn, named):
            cur = client.execute("pgpool show PORT;")
            assert ([c.name for c in cur.description], cur.fetchall()) == (
                ["port"], [(str(pg.port),)])
            cur = client.execute("PGPOOL SHOW write_function_list")
            assert cur.fetchall() == [("nextval,setval",)]
            cur = client.execute("PGPOOL SHOW reset_query_list")
            assert cur.fetchall() == [("ABORT;DISCARD ALL",)]
            cur = client.execute("PGPOOL SHOW load_balance_mode")
            assert cur.fetchall() == [("on",)]
        # a quoted name keeps its case (Pgpool-II's delegate_IP is pgtwist's delegate_ip)
        cur = conn.execute('PGPOOL SHOW "delegate_IP"')
        assert ([c.name for c in cur.description], cur.fetchall()) == (["delegate_IP"], [("",)])
        cur = conn.execute("PGPOOL SHOW delegate_IP")
        assert [c.name for c in cur.description] == ["delegate_ip"]
        with pytest.raises(pgerr.UndefinedObject, match='config variable "Port" not found'):
            conn.execute('PGPOOL SHOW "Port"')


def test_pgpool_show_groups_and_all(pg, cluster):
    with connect(pg) as conn:
        names, rows = show(conn, "PGPOOL SHOW backend")
        assert names == ["item", "value", "description"]
        items = {r[0]: r[1] for r in rows}
        assert items["backend_hostname0"] == cluster.host
        assert items["backend_port1"] == str(cluster.replica_ports[0])
        assert items["backend_flag0"] == "ALWAYS_PRIMARY|DISALLOW_TO_FAILOVER"
        assert len(rows) == 2 * 6

        names, rows = show(conn, "PGPOOL SHOW health_check")
        assert [r[0] for r in rows] == HEALTH_NAMES + [f"{n}{i}" for i in (0, 1)
                                                       for n in HEALTH_NAMES]
        items = {r[0]: r[1] for r in rows}
        assert items["health_check_password"] == items["health_check_password0"] == "*****"
        assert items["health_check_period1"] == "0"

        # a per-node parameter shows as its group: the setting and each node's
        names, rows = show(conn, "PGPOOL SHOW health_check_password")
        assert names == ["item", "value", "description"]
        assert [r[:2] for r in rows] == [
            ("health_check_password", "*****"), ("health_check_password0", "*****"),
            ("health_check_password1", "*****")]

        names, rows = show(conn, "PGPOOL SHOW ALL")
        assert names == ["item", "value", "description"]
        assert [r[0] for r in rows[:12]] == [r[0] for r in show(conn, "PGPOOL SHOW backend")[1]]
        assert {"port", "max_pool", "pool_mode", "sr_check_password"} <= {r[0] for r in rows}
        assert not any("pw-Never-Shown" in (v or "") for r in rows for v in r)


def test_pgpool_set_and_reset_are_session_local(pg):
    with connect(pg) as conn, connect(pg) as other:
        notices = []
        conn.add_notice_handler(lambda d: notices.append(d.message_primary))
        assert conn.execute("PGPOOL SHOW client_idle_limit").fetchall() == [("0",)]
        cur = conn.execute("PGPOOL SET client_idle_limit = 350")
        assert cur.statusmessage == "SET"
        conn.execute("PGPOOL SET log_statement TO on")
        assert notices == []  # both applied to this session
        conn.execute("pgpool set client_min_messages to 'WARNING';")
        # stored and shown, not applied: the client is told so
        assert notices == ['pgtwist stores "client_min_messages" for this session (PGPOOL '
                           'SHOW shows it) but does not apply it; the configured value '
                           'stays in effect']
        conn.execute("PGPOOL SET log_error_verbosity TO verbose")
        assert conn.execute("PGPOOL SHOW client_idle_limit").fetchall() == [("350",)]
        assert conn.execute("PGPOOL SHOW log_statement").fetchall() == [("on",)]
        assert conn.execute("PGPOOL SHOW client_min_messages").fetchall() == [("warning",)]
        items = {r[0]: r[1] for r in show(conn, "PGPOOL SHOW ALL")[1]}
        assert items["client_idle_limit"] == "350" and items["log_statement"] == "on"
        # another session sees the configured values
        assert other.execute("PGPOOL SHOW client_idle_limit").fetchall() == [("0",)]
        assert other.execute("PGPOOL SHOW log_statement").fetchall() == [("off",)]

        cur = conn.execute("PGPOOL RESET client_idle_limit")
        assert cur.statusmessage == "SET"
        assert conn.execute("PGPOOL SHOW client_idle_limit").fetchall() == [("0",)]
        conn.execute("PGPOOL SET log_statement TO DEFAULT")
        assert conn.execute("PGPOOL SHOW log_statement").fetchall() == [("off",)]
        cur = conn.execute("PGPOOL RESET ALL")
        assert cur.statusmessage == "RESET"
        assert conn.execute("PGPOOL SHOW client_min_messages").fetchall() == [("notice",)]
        assert conn.execute("PGPOOL SHOW log_error_verbosity").fetchall() == [("default",)]


def test_pgpool_set_client_idle_limit_applies_to_the_session_only(pg):
    with connect(pg) as idle, connect(pg) as other, connect(pg) as reset:
        idle.execute("PGPOOL SET client_idle_limit = 1")
        reset.execute("PGPOOL SET client_idle_limit = 1")
        reset.execute("PGPOOL RESET client_idle_limit")
        time.sleep(2.5)
        with pytest.raises(psycopg.OperationalError, match="client_idle_limit"):
            idle.execute("SELECT 1")
        assert other.execute("SELECT 1").fetchone() == (1,)
        assert reset.execute("SELECT 1").fetchone() == (1,)


def test_pgpool_set_over_the_extended_protocol(pg):
    with connect(pg, prepare_threshold=0) as conn:
        cur = conn.execute("PGPOOL SET client_idle_limit = 12")
        assert cur.statusmessage == "SET" and cur.description is None
        assert conn.execute("PGPOOL SHOW client_idle_limit").fetchall() == [("12",)]
        with pytest.raises(pgerr.InvalidParameterValue):
            conn.execute("PGPOOL SET client_idle_limit = 'soon'")
        assert conn.execute("PGPOOL SHOW client_idle_limit").fetchall() == [("12",)]
        assert conn.execute("SELECT %s::int", [7]).fetchone() == (7,)


@pytest.mark.parametrize("sql,error,message", [
    ("PGPOOL SHOW nosuch", pgerr.UndefinedObject, 'config variable "nosuch" not found'),
    ("PGPOOL SET nosuch = 1", pgerr.UndefinedObject,
     'unrecognized configuration parameter "nosuch"'),
    ("PGPOOL RESET nosuch", pgerr.UndefinedObject,
     'unrecognized configuration parameter "nosuch"'),
    ("PGPOOL SET port = 1", pgerr.CantChangeRuntimeParam,
     'invalid Context, value for parameter "port" cannot be changed'),
    ("PGPOOL RESET port", pgerr.CantChangeRuntimeParam,
     'invalid Context, value for parameter "port" cannot be changed'),
    ("PGPOOL SET client_idle_limit = 'abc'", pgerr.InvalidParameterValue,
     'invalid value for parameter "client_idle_limit": "abc"'),
    ("PGPOOL SET log_statement TO maybe", pgerr.InvalidParameterValue,
     'invalid value for parameter "log_statement": "maybe"'),
    ("PGPOOL SET client_min_messages TO loud", pgerr.InvalidParameterValue,
     'invalid value for parameter "client_min_messages": "loud"'),
    ("PGPOOL SET client_idle_limit = -1", pgerr.InvalidParameterValue,
     'invalid value for parameter "client_idle_limit": "-1"'),
])
def test_pgpool_errors_are_worded_as_pgpool_words_them(pg, sql, error, message):
    for kw in ({}, {"prepare_threshold": 0}):
        with connect(pg, **kw) as conn:
            with pytest.raises(error) as caught:
                conn.execute(sql)
            assert str(caught.value) == message
            assert caught.value.diag.severity == "ERROR"
            assert conn.execute("SELECT 1").fetchone() == (1,)   # the session goes on


def test_a_failed_pgpool_set_in_a_transaction_leaves_it_open(pg):
    with connect(pg, autocommit=False) as conn:
        conn.execute("SELECT 1")
        with pytest.raises(pgerr.UndefinedObject):
            conn.execute("PGPOOL SET nosuch TO 1")
        # Pgpool-II answers it without the server: the transaction is not aborted
        assert conn.execute("SELECT 2").fetchone() == (2,)
        conn.rollback()


def test_what_only_looks_like_a_pgpool_command_goes_to_the_server(pg):
    with connect(pg) as conn:
        for sql in ("PGPOOL FROB", "PGPOOL SHOW", "PGPOOL SET x"):
            with pytest.raises(pgerr.SyntaxError, match='syntax error at or near "PGPOOL"'):
                conn.execute(sql)
        with pytest.raises(pgerr.UndefinedObject,
                           match='unrecognized configuration parameter "pool_nosuch"'):
            conn.execute("SHOW pool_nosuch")
        assert conn.execute("SELECT 1").fetchone() == (1,)


def test_admin_commands_pass_pool_hba_and_authentication(cluster, pgtwist_factory):
    """An admin command runs inside a session like any other: pool_hba.conf and the
    client's authentication come first."""
    hba = ("host all scram_user 127.0.0.1/32 scram-sha-256\n"
           "host all md5_user 127.0.0.1/32 reject\n")
    pg = pgtwist_factory(hba=hba)
    password = dc.TEST_USERS["scram_user"]
    with psycopg.connect(pg.dsn(user="scram_user", password=password), connect_timeout=5,
                         autocommit=True) as conn:
        assert conn.execute("SHOW pool_version").fetchone()[0].startswith("4.")
        assert conn.execute("PGPOOL SHOW port").fetchone() == (str(pg.port),)
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(pg.dsn(user="scram_user", password="wrong"), connect_timeout=5)
    with pytest.raises(psycopg.OperationalError, match="pool_hba.conf rejects"):
        psycopg.connect(pg.dsn(user="md5_user", password=dc.TEST_USERS["md5_user"]),
                        connect_timeout=5)
    with pytest.raises(psycopg.OperationalError, match="no pool_hba.conf entry|pool_hba"):
        psycopg.connect(pg.dsn(user="postgres"), connect_timeout=5)
