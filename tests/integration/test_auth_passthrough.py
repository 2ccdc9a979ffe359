"""SCRAM pass-through: pgtwist stores no user passwords at all.

``auth_user`` (the only pool_passwd entry) runs ``auth_query`` on the primary to fetch a
user's SCRAM verifier; the client's SCRAM proof against it gives pgtwist the ClientKey,
which then logs in to the primary and to the replica.  The auth user is not a superuser: it
may only call a SECURITY DEFINER function in its own schema, and ``auth_query`` calls it
schema-qualified.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import asyncpg
import psycopg
import pytest

from pgtwist.dev import devcluster as dc

from .secauth import lookup_function_sql
from .test_auth_hba import (
    DRIVERS,
    GOOD,
    assert_refused,
    login,
    password_failed,
    psycopg_login,
    start_daemon,
    stop_daemon,
    write_hba,
)

pytestmark = pytest.mark.integration

AUTH_USER = "pgtwist_auth"
AUTH_PASSWORD = "auth user secret 6"
EXPIRED_USER, EXPIRED_PASSWORD = "pt_expired", "expired secret 4"
QUOTED_USER, QUOTED_PASSWORD = "o'brien", "quote secret 5"
AUTH_QUERY = f"SELECT rolname, rolpassword FROM {AUTH_USER}.lookup($1)"
# Pasted into AUTH_QUERY between single quotes without escaping, this name makes the lookup
# return scram_user's verifier (see test_injection_name_would_work_if_pasted).
INJECTION_USER = f"x') UNION ALL SELECT * FROM {AUTH_USER}.lookup('scram_user"


def _lit(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _ident(text: str) -> str:
    return '"' + text.replace('"', '""') + '"'


SETUP_SQL = f"""
SET password_encryption = 'scram-sha-256';
CREATE ROLE {AUTH_USER} LOGIN PASSWORD {_lit(AUTH_PASSWORD)};
""" + lookup_function_sql(AUTH_USER) + f"""
CREATE ROLE {EXPIRED_USER} LOGIN PASSWORD {_lit(EXPIRED_PASSWORD)} VALID UNTIL '2000-01-01';
CREATE ROLE {_ident(QUOTED_USER)} LOGIN PASSWORD {_lit(QUOTED_PASSWORD)};
RESET password_encryption;
"""

TEARDOWN_SQL = f"""
DROP FUNCTION IF EXISTS {AUTH_USER}.lookup(text);
DROP SCHEMA IF EXISTS {AUTH_USER};
DROP ROLE IF EXISTS {AUTH_USER};
DROP ROLE IF EXISTS {EXPIRED_USER};
DROP ROLE IF EXISTS {_ident(QUOTED_USER)};
"""


def _run_sql(cluster, sql: str) -> None:
    cluster._psql([], sql, None, "postgres")


@pytest.fixture(scope="module")
def passthrough_pg(cluster, tmp_path_factory):
    _run_sql(cluster, TEARDOWN_SQL)  # a previous run that was killed
    _run_sql(cluster, SETUP_SQL)
    cluster.wait_replayed()
    workdir = tmp_path_factory.mktemp("passthrough")
    backends = dc.pgtwist_config(cluster, 1, replica_weight=1)["backends"]
    backends[0]["weight"] = 0  # every read goes to the replica
    pg = start_daemon(cluster, workdir, {
        "backends": backends,
        "enable_pool_hba": True,
        "pool_hba_file": write_hba(workdir / "pool_hba.conf",
                                   "host all all 127.0.0.1/32 scram-sha-256\n"),
        "auth_user": AUTH_USER,
        "auth_query": AUTH_QUERY,
    }, passwd={AUTH_USER: AUTH_PASSWORD})
    try:
        yield pg
    finally:
        stop_daemon(pg)
        _run_sql(cluster, TEARDOWN_SQL)


def _sessions(cluster, port: int, app: str) -> int:
    return int(cluster.psql(
        f"SELECT count(*) FROM pg_stat_activity WHERE application_name = {_lit(app)}",
        port=port,
    ))


def test_auth_user_is_not_a_superuser(cluster, passthrough_pg):
    assert cluster.psql(f"SELECT rolsuper FROM pg_roles WHERE rolname = {_lit(AUTH_USER)}") == "f"
    assert Path(passthrough_pg.workdir, "pool_passwd").read_text().splitlines() == [
        f"{AUTH_USER}:TEXT{AUTH_PASSWORD}"
    ]


@pytest.mark.parametrize("driver", DRIVERS)
def test_scram_user_reaches_primary_and_replica(cluster, passthrough_pg, driver):
    app = f"passthrough_{driver}"
    password = dc.TEST_USERS["scram_user"]
    if driver == "psycopg":
        with psycopg.connect(passthrough_pg.dsn(user="scram_user", password=password,
                                                sslmode="disable", application_name=app),
                             connect_timeout=10) as conn:
            conn.autocommit = True
            read_port = conn.execute("SELECT inet_server_port()").fetchone()[0]
            counts = [_sessions(cluster, p, app) for p in cluster.ports]
    else:
        async def run():
            conn = await asyncpg.connect(
                host=passthrough_pg.host, port=passthrough_pg.port, user="scram_user",
                password=password, database="postgres", ssl=False, timeout=10,
                server_settings={"application_name": app},
            )
            try:
                port = await conn.fetchval("SELECT inet_server_port()")
                return port, [_sessions(cluster, p, app) for p in cluster.ports]
            finally:
                await conn.close()

        read_port, counts = asyncio.run(run())
    assert read_port == cluster.replica_ports[0]
    # One backend session of this client on the primary and one on the replica, both
    # opened with the ClientKey from the client's SCRAM proof (pg_hba: scram-sha-256).
    assert counts == [1, 1], counts


@pytest.mark.parametrize("driver", DRIVERS)
def test_wrong_password_is_refused(passthrough_pg, driver):
    assert_refused(driver, login(driver, passthrough_pg, "scram_user", "not the password"),
                   "28P01", password_failed("scram_user"))


@pytest.mark.parametrize("driver", DRIVERS)
def test_expired_role_is_refused_with_the_right_password(passthrough_pg, driver):
    assert_refused(driver, login(driver, passthrough_pg, EXPIRED_USER, EXPIRED_PASSWORD),
                   "28P01", password_failed(EXPIRED_USER))


@pytest.mark.parametrize("driver", DRIVERS)
def test_user_name_with_a_quote(passthrough_pg, driver):
    assert login(driver, passthrough_pg, QUOTED_USER, QUOTED_PASSWORD) is GOOD
    assert_refused(driver, login(driver, passthrough_pg, QUOTED_USER, "nope"),
                   "28P01", password_failed(QUOTED_USER))


def test_injection_name_would_work_if_pasted(cluster, passthrough_pg):
    """The check below is meaningful: naive quoting would hand out scram_user's verifier."""
    naive = AUTH_QUERY.replace("$1", f"'{INJECTION_USER}'")
    out = cluster.psql(f"SET ROLE {AUTH_USER}; {naive}")
    assert out.startswith("scram_user|SCRAM-SHA-256$"), out


@pytest.mark.parametrize("driver", DRIVERS)
def test_lookup_is_not_injectable(passthrough_pg, driver):
    # Injected, the lookup would return scram_user's verifier: pgtwist would accept the
    # proof and the server would then refuse the unknown role (28000).  Not injected,
    # pgtwist finds no such user and refuses the password itself (28P01).
    result = login(driver, passthrough_pg, INJECTION_USER, dc.TEST_USERS["scram_user"])
    assert_refused(driver, result, "28P01", password_failed(INJECTION_USER))


def test_no_user_password_in_pgtwist_files(cluster, passthrough_pg):
    # Log in first, so that anything written at login time is in the files too.
    assert psycopg_login(passthrough_pg, "scram_user", dc.TEST_USERS["scram_user"]) is GOOD
    secrets = {
        "scram_user's password": dc.TEST_USERS["scram_user"],
        f"{QUOTED_USER}'s password": QUOTED_PASSWORD,
        "scram_user's verifier": cluster.psql(
            "SELECT rolpassword FROM pg_authid WHERE rolname = 'scram_user'"),
    }
    files = [p for p in Path(passthrough_pg.workdir).rglob("*") if p.is_file()]
    assert {p.name for p in files} >= {"pgtwist.yaml", "pool_passwd", "pool_hba.conf"}
    for path in files:
        data = path.read_bytes()
        for what, secret in secrets.items():
            assert secret.encode() not in data, f"{what} found in {path}"
