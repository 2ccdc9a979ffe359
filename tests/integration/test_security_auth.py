"""Authentication attacks from the December 2026 security review, through a real twistd.

Each test performs one reproduction of ../shared/reviews/security-2026-12.md against the
dev cluster and states what a correct pgtwist answers.  The roles sa_alice, sa_bob,
sa_authuser and sa_s2 authenticate with scram-sha-256 over TCP on every node (a pg_hba.conf
line put in front of the dev cluster's trust line, restored at the end).  sa_authuser is
not a superuser: ``auth_query`` calls a SECURITY DEFINER lookup that honours VALID UNTIL,
as the default query does, so that a role CONNECTION LIMIT can stand in for a primary at
max_connections (finding 1, reproduction C).  Logins go through a raw client
(secauth.login) so every attempt sends exactly the same startup parameters as the victim's,
which is what the attack needs to hit the victim's pool key.
"""

from __future__ import annotations

import time
from pathlib import Path

import psycopg
import pytest

from .rawpg import RawClient, startup_packet
from .secauth import (
    ServerHba,
    assert_refused,
    close_all,
    direct_login_works,
    first_reply,
    hup_and_wait,
    login,
    lookup_function_sql,
    open_startups,
    run_sql,
    wait_direct_login,
    wait_link_idle,
    write_hba,
    write_passwd,
)

pytestmark = pytest.mark.integration

ALICE, ALICE_PW = "sa_alice", "alice secret 11"
BOB, BOB_PW = "sa_bob", "bob secret 12"
AUTHUSER, AUTH_PW = "sa_authuser", "auth secret 13"
S2USER, S2_PW = "sa_s2", "s2 secret 14"
TENANT, TENANT_SCHEMA = "sa_tenant_a", "sa_tenant_a_schema"
SCRAM_LINE = f"host all {ALICE},{BOB},{AUTHUSER},{S2USER} 127.0.0.1/32 scram-sha-256"
LOOKUP = f"SELECT rolname, rolpassword FROM {AUTHUSER}.lookup($1)"
WRONG = "not the password"
#: what an auth_query failure may be refused with (the client learns nothing more)
AUTH_QUERY_FAILED = ("28P01", "08006")

ROLES_SQL = f"""
SET password_encryption = 'scram-sha-256';
CREATE ROLE {ALICE} LOGIN PASSWORD '{ALICE_PW}';
CREATE ROLE {BOB} LOGIN PASSWORD '{BOB_PW}';
CREATE ROLE {AUTHUSER} LOGIN PASSWORD '{AUTH_PW}';
CREATE ROLE {S2USER} LOGIN PASSWORD '{S2_PW}';
ALTER ROLE {S2USER} SET log_statement = 'all';
CREATE ROLE {TENANT} NOLOGIN;
GRANT {TENANT} TO {ALICE};
"""
POOLDB_SQL = lookup_function_sql(AUTHUSER) + f"""
CREATE SCHEMA {TENANT_SCHEMA};
GRANT USAGE ON SCHEMA {TENANT_SCHEMA} TO {TENANT};
CREATE FUNCTION public.sa_definer_path() RETURNS text LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog AS $$
    BEGIN PERFORM pg_catalog.set_config('search_path', '{TENANT_SCHEMA}', false);
          RETURN 'ok'; END $$;
CREATE FUNCTION public.sa_set_tenant() RETURNS text LANGUAGE plpgsql AS $$
    BEGIN PERFORM set_config('role', '{TENANT}', false);
          PERFORM set_config('search_path', '{TENANT_SCHEMA}', false);
          RETURN 'ok'; END $$;
"""
POOLDB_TEARDOWN = f"""
DROP FUNCTION IF EXISTS public.sa_definer_path();
DROP FUNCTION IF EXISTS public.sa_set_tenant();
DROP SCHEMA IF EXISTS {TENANT_SCHEMA} CASCADE;
DROP SCHEMA IF EXISTS {AUTHUSER} CASCADE;
"""
ROLES_TEARDOWN = f"""
DROP ROLE IF EXISTS {ALICE};
DROP ROLE IF EXISTS {BOB};
DROP ROLE IF EXISTS {AUTHUSER};
DROP ROLE IF EXISTS {S2USER};
DROP ROLE IF EXISTS {TENANT};
"""


def _teardown(cluster, pool_database) -> None:
    run_sql(cluster, POOLDB_TEARDOWN, pool_database)
    run_sql(cluster, f"DROP DATABASE IF EXISTS {ALICE} WITH (FORCE)")
    run_sql(cluster, ROLES_TEARDOWN)


@pytest.fixture(scope="module")
def hba(cluster, pool_database):
    """The roles, lookup function and databases of this module; scram for them on every node.

    Yields the ServerHba editor (tests may change the lines in front, and put SCRAM_LINE
    back when done).
    """
    if not Path(cluster.psql("SHOW hba_file")).exists():
        pytest.skip("the cluster's pg_hba.conf is not reachable from here (docker)")
    _teardown(cluster, pool_database)  # a killed earlier run
    editor = ServerHba(cluster)
    try:
        run_sql(cluster, ROLES_SQL)
        run_sql(cluster, POOLDB_SQL, pool_database)
        run_sql(cluster, f"CREATE DATABASE {ALICE}")  # the database named after the user
        editor.put_first([SCRAM_LINE])
        wait_direct_login(cluster, ALICE, None, works=False)
        cluster.wait_replayed()
        yield editor
    finally:
        editor.restore()
        _teardown(cluster, pool_database)


def _victim(cluster, port: int, db: str, keep: bool = False):
    """alice logs in with her password; returns her Outcome once her link is pooled."""
    out = login(port, ALICE, ALICE_PW, db, keep=keep)
    assert out.admitted and out.user == ALICE, out
    if not keep:
        wait_link_idle(cluster, out.pid)
    return out


def _auth_query_daemon(pgtwist_factory, **extra):
    return pgtwist_factory(passwd={AUTHUSER: AUTH_PW},
                           extra={"auth_user": AUTHUSER, "auth_query": LOOKUP, **extra})


# -- finding 1: no secret must never mean "no challenge" ------------------------------------------


def test_f1a_user_removed_from_pool_passwd_is_not_admitted(cluster, hba, pool_database,
                                                           pgtwist_factory):
    """Finding 1, reproduction A: alice's pooled link outlives her pool_passwd entry."""
    pg = pgtwist_factory(passwd={ALICE: ALICE_PW})
    assert_refused(login(pg.port, ALICE, WRONG, pool_database))
    assert_refused(login(pg.port, ALICE, None, pool_database), stopped_at_challenge_ok=True)
    victim = _victim(cluster, pg.port, pool_database)
    write_passwd(pg, {BOB: BOB_PW})
    hup_and_wait(pg)
    assert_refused(login(pg.port, ALICE, None, pool_database), victim_pid=victim.pid,
                   stopped_at_challenge_ok=True)
    assert_refused(login(pg.port, ALICE, WRONG, pool_database), victim_pid=victim.pid)
    assert login(pg.port, BOB, BOB_PW, pool_database).admitted  # the reload took effect


@pytest.mark.parametrize("condition", ["authuser_nologin", "alice_expired", "alice_no_password"])
def test_f1b_no_secret_from_auth_query_is_not_admitted(cluster, hba, pool_database,
                                                       pgtwist_factory, condition):
    """Finding 1, reproduction B: auth_query fails or finds no password, and a client
    claiming alice without (or with a wrong, or an expired) password gets her cached link."""
    pg = _auth_query_daemon(pgtwist_factory)
    victim = _victim(cluster, pg.port, pool_database)
    # While auth_query works, no password is refused (the control of reproduction B, step 4).
    assert_refused(login(pg.port, ALICE, None, pool_database), stopped_at_challenge_ok=True)
    change, undo, states = {
        "authuser_nologin": (f"ALTER ROLE {AUTHUSER} NOLOGIN", f"ALTER ROLE {AUTHUSER} LOGIN",
                             AUTH_QUERY_FAILED),
        "alice_expired": (f"ALTER ROLE {ALICE} VALID UNTIL '2000-01-01'",
                          f"ALTER ROLE {ALICE} VALID UNTIL 'infinity'", ("28P01",)),
        "alice_no_password": (f"ALTER ROLE {ALICE} PASSWORD NULL",
                              "SET password_encryption = 'scram-sha-256'; "
                              f"ALTER ROLE {ALICE} PASSWORD '{ALICE_PW}'", ("28P01",)),
    }[condition]
    run_sql(cluster, change)
    try:
        assert_refused(login(pg.port, ALICE, None, pool_database), states,
                       victim_pid=victim.pid, stopped_at_challenge_ok=True, hidden=(AUTHUSER,))
        assert_refused(login(pg.port, ALICE, WRONG, pool_database), states,
                       victim_pid=victim.pid, hidden=(AUTHUSER,))
        if condition == "alice_expired":
            # PostgreSQL refuses an expired password even when it is the right one.
            assert_refused(login(pg.port, ALICE, ALICE_PW, pool_database),
                           victim_pid=victim.pid)
    finally:
        run_sql(cluster, undo)
    assert login(pg.port, ALICE, ALICE_PW, pool_database).admitted


def test_f1b_transaction_mode_idle_victim_link_is_not_handed_over(cluster, hba, pool_database,
                                                                  pgtwist_factory):
    """Finding 1, reproduction B in pool_mode transaction: alice stays connected, idle
    between transactions; a client claiming alice during an auth_query failure must not
    get her link."""
    pg = _auth_query_daemon(pgtwist_factory, pool_mode="transaction")
    victim = _victim(cluster, pg.port, pool_database, keep=True)
    try:
        wait_link_idle(cluster, victim.pid, reset=False)
        run_sql(cluster, f"ALTER ROLE {AUTHUSER} NOLOGIN")
        try:
            assert_refused(login(pg.port, ALICE, None, pool_database), AUTH_QUERY_FAILED,
                           victim_pid=victim.pid, stopped_at_challenge_ok=True,
                           hidden=(AUTHUSER,))
            assert_refused(login(pg.port, ALICE, WRONG, pool_database), AUTH_QUERY_FAILED,
                           victim_pid=victim.pid, hidden=(AUTHUSER,))
        finally:
            run_sql(cluster, f"ALTER ROLE {AUTHUSER} LOGIN")
        assert victim.client.rows("SELECT current_user") == [[ALICE]]  # undisturbed
    finally:
        victim.client.close()


def test_f1_clear_text_frontend_auth_judges_the_password_on_a_fresh_login(
        cluster, hba, pool_database, pgtwist_factory):
    """Finding 1: with allow_clear_text_frontend_auth and no secret, the client's own
    clear-text password is judged by a fresh backend login, never by a cached link."""
    pg = pgtwist_factory(passwd={ALICE: ALICE_PW},
                         extra={"allow_clear_text_frontend_auth": True})
    victim = _victim(cluster, pg.port, pool_database)  # cached while alice had an entry
    write_passwd(pg, {BOB: BOB_PW})
    hup_and_wait(pg)
    assert_refused(login(pg.port, ALICE, None, pool_database), victim_pid=victim.pid,
                   stopped_at_challenge_ok=True)
    assert_refused(login(pg.port, ALICE, WRONG, pool_database), victim_pid=victim.pid)
    right = login(pg.port, ALICE, ALICE_PW, pool_database)
    assert right.admitted and right.user == ALICE, right
    assert right.challenge == 3, f"expected a clear-text password request: {right}"
    assert right.pid != victim.pid, "the right password was answered with the cached link"
    log = pg.log_text()
    assert ALICE_PW not in log and WRONG not in log, "a client's password reached the log"


def test_f1c_unauthenticated_startups_do_not_unlock_a_cached_link(cluster, hba, pool_database,
                                                                  pgtwist_factory):
    """Finding 1, reproduction C: sockets that only send StartupMessage{user=auth_user} use
    up the auth user's server connections (a role CONNECTION LIMIT stands in for the
    primary's max_connections), auth_query fails, and alice's link is handed out."""
    pg = _auth_query_daemon(pgtwist_factory)
    victim = _victim(cluster, pg.port, pool_database)
    socks = []
    run_sql(cluster, f"ALTER ROLE {AUTHUSER} CONNECTION LIMIT 20")
    try:
        socks, _ = open_startups(pg.port, {"user": AUTHUSER, "database": pool_database}, 25)
        assert_refused(login(pg.port, ALICE, None, pool_database), AUTH_QUERY_FAILED,
                       victim_pid=victim.pid, stopped_at_challenge_ok=True, hidden=(AUTHUSER,))
        assert_refused(login(pg.port, ALICE, WRONG, pool_database), AUTH_QUERY_FAILED,
                       victim_pid=victim.pid, hidden=(AUTHUSER,))
    finally:
        close_all(socks)
        run_sql(cluster, f"ALTER ROLE {AUTHUSER} CONNECTION LIMIT -1")


def _server_sessions(cluster, users: tuple[str, ...]) -> int:
    names = ", ".join(f"'{u}'" for u in users)
    return int(cluster.psql("SELECT count(*) FROM pg_stat_activity "
                            f"WHERE backend_type = 'client backend' AND usename IN ({names})"))


@pytest.mark.parametrize("claimed", [AUTHUSER, ALICE], ids=["auth_user", "auth_query_user"])
def test_f1c_unauthenticated_clients_hold_few_server_connections(cluster, hba, pool_database,
                                                                 pgtwist_factory, claimed):
    """Finding 1, reproduction C / S2: 30 clients that never authenticate hold at most a
    small number of server connections (as the claimed user or as auth_user)."""
    pg = _auth_query_daemon(pgtwist_factory)
    socks = []
    try:
        socks, _ = open_startups(pg.port, {"user": claimed, "database": pool_database}, 30)
        peak = 0
        for _ in range(10):
            peak = max(peak, _server_sessions(cluster, (claimed, AUTHUSER)))
        assert peak <= 5, f"{peak} server sessions held for 30 unauthenticated clients"
        assert direct_login_works(cluster, "postgres", None)
    finally:
        close_all(socks)
    assert login(pg.port, ALICE, ALICE_PW, pool_database).admitted


# -- S3: a link cached under trust --------------------------------------------------------------


def test_s3_link_cached_under_trust_needs_a_password_after_pg_hba_tightening(
        cluster, hba, pool_database, pgtwist_factory):
    """Suspected S3: alice's link was cached while the primary trusted her; once pg_hba.conf
    asks for scram, alice without a password must be refused."""
    pg = pgtwist_factory(passwd={ALICE: ALICE_PW})
    try:
        hba.put_first([f"host all {ALICE} 127.0.0.1/32 trust", SCRAM_LINE])
        wait_direct_login(cluster, ALICE, None, works=True)
        # pgtwist's link logs in under trust (alice need not prove anything, but answers
        # if asked): that link is cached.
        trusted = login(pg.port, ALICE, ALICE_PW, pool_database)
        assert trusted.admitted, trusted
        wait_link_idle(cluster, trusted.pid)
        hba.put_first([SCRAM_LINE])
        wait_direct_login(cluster, ALICE, None, works=False)
        assert_refused(login(pg.port, ALICE, None, pool_database), victim_pid=trusted.pid,
                       stopped_at_challenge_ok=True)
        assert login(pg.port, ALICE, ALICE_PW, pool_database).admitted
    finally:
        hba.put_first([SCRAM_LINE])
        wait_direct_login(cluster, ALICE, None, works=False)


# -- S2: the role check and the claimed user's secret -------------------------------------------


def test_s2_role_check_never_logs_in_as_the_claimed_user(cluster, hba, pool_database,
                                                         pgtwist_factory):
    """Suspected S2 (second half): no backend is ALWAYS_PRIMARY and sr_check_user cannot log
    in; an unauthenticated client claiming sa_s2 must not make pgtwist check roles with
    sa_s2's pool_passwd secret.  sa_s2 has log_statement=all, so any statement run as sa_s2
    shows in the primary's log."""
    log_path = Path(cluster.base_dir, "primary.log")
    if not log_path.exists():
        pytest.skip("the primary's log file is not reachable from here")
    nodes = [{"hostname": cluster.host, "port": p, "weight": 1 if p == cluster.primary_port
              else 0, "flag": "DISALLOW_TO_FAILOVER"} for p in cluster.ports]
    pg = pgtwist_factory(passwd={S2USER: S2_PW},
                         extra={"backends": nodes, "sr_check_user": "sa_no_such_role",
                                "sr_check_period": 0})
    start = log_path.stat().st_size
    reply = first_reply(pg.port, S2USER, pool_database)
    assert reply[0] in ("R", "E"), reply
    assert reply != ("R", 0), "admitted without a password"
    logged = log_path.read_bytes()[start:].decode(errors="replace")
    assert "pg_is_in_recovery" not in logged, (
        "pgtwist checked the backends' roles as the unauthenticated client's user:\n"
        + "\n".join(line for line in logged.splitlines() if "statement:" in line))


# -- finding 13: pool_passwd membership must not show ---------------------------------------------


def test_f13_pool_passwd_members_look_like_other_users(hba, pool_database, pgtwist_factory):
    """Finding 13: alice is in pool_passwd, bob is not (no auth_user); both exist on the
    server with scram.  A client must not tell them apart."""
    pg = pgtwist_factory(passwd={ALICE: ALICE_PW})
    first = {u: first_reply(pg.port, u, pool_database) for u in (ALICE, BOB)}
    assert "pool_passwd" not in repr(first), first
    same = {u: tuple(str(x).replace(u, "U") for x in reply) for u, reply in first.items()}
    assert same[ALICE] == same[BOB], first
    wrong = {u: login(pg.port, u, WRONG, pool_database) for u in (ALICE, BOB)}
    for u, out in wrong.items():
        assert_refused(out)
        assert out.challenge == wrong[ALICE].challenge, wrong
        assert out.error["M"].replace(u, "U") == wrong[ALICE].error["M"].replace(ALICE, "U"), \
            wrong


# -- finding 4: an empty database name is the user's name ----------------------------------------


def _hba_daemon(pgtwist_factory, tmp_path, text: str):
    return pgtwist_factory(passwd={ALICE: ALICE_PW}, extra={
        "enable_pool_hba": True, "pool_hba_file": write_hba(tmp_path / "pool_hba.conf", text)})


def test_f4_empty_database_matches_pool_hba_as_the_user_name(hba, pool_database,
                                                             pgtwist_factory, tmp_path):
    """Finding 4: a reject line for database sa_alice must also stop database=''."""
    pg = _hba_daemon(pgtwist_factory, tmp_path, f"host {ALICE} all 127.0.0.1/32 reject\n"
                     "host all all 127.0.0.1/32 scram-sha-256\n")
    rejected = (f'pool_hba.conf rejects connection for host "127.0.0.1", user "{ALICE}", '
                f'database "{ALICE}", SSL off')
    for database in (ALICE, "", None):
        out = login(pg.port, ALICE, ALICE_PW, database)
        assert not out.admitted, f"database={database!r}: admitted to {out.database!r}"
        assert (out.error or {}).get("C") == "28000", (database, out)
        assert out.error["M"] == rejected, (database, out)
    other = login(pg.port, ALICE, ALICE_PW, pool_database)
    assert (other.admitted, other.challenge, other.database) == (True, 10, pool_database)


def test_f4_sameuser_matches_an_empty_database(hba, pool_database, pgtwist_factory, tmp_path):
    """Finding 4: `sameuser` must match database='' (it is the user's own database)."""
    pg = _hba_daemon(pgtwist_factory, tmp_path, "host sameuser all 127.0.0.1/32 scram-sha-256\n")
    for database in ("", None):
        out = login(pg.port, ALICE, ALICE_PW, database)
        assert out.admitted and out.database == ALICE, (database, out)
    other = login(pg.port, ALICE, ALICE_PW, pool_database)
    assert (other.error or {}).get("M") == (
        f'no pool_hba.conf entry for host "127.0.0.1", user "{ALICE}", '
        f'database "{pool_database}", SSL off'), other


# -- finding 5: untracked session state in transaction pooling ------------------------------------

CHANGES = {
    "do_block": f"DO $$BEGIN EXECUTE 'SET ROLE {TENANT}'; "
                f"EXECUTE 'SET search_path TO {TENANT_SCHEMA}'; END$$",
    "definer_function_set_config": "SELECT public.sa_definer_path()",
    "plpgsql_set_config": "SELECT public.sa_set_tenant()",
}


@pytest.mark.parametrize("change", sorted(CHANGES))
def test_f5_untracked_session_state_does_not_reach_the_next_session(
        cluster, hba, pool_database, pgtwist_factory, change):
    """Finding 5: state changed by a DO block or inside a function (SET ROLE, search_path)
    on a transaction-pooled link must not reach the next session that gets the link.
    max_pool 1 forces B onto A's link (checked by the server pid), whether pgtwist resets
    the link when it changes hands or keeps it pinned to A until A leaves."""
    pg = pgtwist_factory(passwd={ALICE: ALICE_PW},
                         extra={"pool_mode": "transaction", "max_pool": 1})
    default_path = cluster.psql("SHOW search_path")
    dsn = pg.dsn(user=ALICE, dbname=pool_database, password=ALICE_PW, sslmode="disable")
    probe = "SELECT current_user, current_setting('search_path'), pg_backend_pid()"
    with psycopg.connect(dsn, autocommit=True, connect_timeout=10) as a:
        user, path, pid = a.execute(probe).fetchone()
        assert (user, path) == (ALICE, default_path)
        a.execute(CHANGES[change])
        assert a.execute(probe).fetchone()[1] == TENANT_SCHEMA  # the change happened
    # A has left; max_pool 1 makes B wait for A's link if it is not back in the pool yet.
    with psycopg.connect(dsn, autocommit=True, connect_timeout=10) as b:
        b_user, b_path, b_pid = b.execute(probe).fetchone()
    assert b_pid == pid, "B did not get A's link: the test proves nothing"
    assert (b_user, b_path) == (ALICE, default_path), f"B inherited A's state ({change})"


# -- finding 10: auth_query and client-only encodings ---------------------------------------------

SJISDB = "sa_sjisdb"
PWNED = "sa_pwned"
# UTF-8 C3 81 5C 27 ...: read as SJIS, 81 5C is one character, which swallows the first of the
# two backslashes an escape literal makes of one, so the quote closes the literal.
INJECTED_USER = f"\u00c1\\'; CREATE ROLE {PWNED} SUPERUSER LOGIN PASSWORD $$x$$; --"


@pytest.fixture
def sjisdb(cluster):
    """A database whose sessions default to client_encoding SJIS and backslash_quote on."""
    run_sql(cluster, f"DROP DATABASE IF EXISTS {SJISDB} WITH (FORCE)")
    run_sql(cluster, f"DROP ROLE IF EXISTS {PWNED}")
    run_sql(cluster, f"CREATE DATABASE {SJISDB}")
    try:
        run_sql(cluster, f"ALTER DATABASE {SJISDB} SET client_encoding = 'SJIS'")
        run_sql(cluster, f"ALTER DATABASE {SJISDB} SET backslash_quote = on")
        yield SJISDB
    finally:
        run_sql(cluster, f"DROP DATABASE IF EXISTS {SJISDB} WITH (FORCE)")
        run_sql(cluster, f"DROP ROLE IF EXISTS {PWNED}")


def _pwned(cluster) -> bool:
    return cluster.psql(f"SELECT count(*) FROM pg_roles WHERE rolname = '{PWNED}'") != "0"


def test_f10_auth_query_user_name_cannot_inject_sql(cluster, pgtwist_factory, sjisdb):
    """Finding 10: an unauthenticated StartupMessage naming a crafted user and the SJIS
    database must not run SQL as auth_user (here postgres, with the default auth_query)."""
    # The attack string is real: escaped as an E'' literal and sent to this database, it
    # creates the role.
    quoted = "E'" + INJECTED_USER.replace("\\", "\\\\").replace("'", "''") + "'"
    with RawClient(cluster.primary_port) as raw:
        raw.startup({"user": "postgres", "database": sjisdb})
        raw.simple(f"SELECT 1 WHERE '' = {quoted}")
    assert _pwned(cluster), "the SJIS + backslash_quote premise no longer holds"
    run_sql(cluster, f"DROP ROLE {PWNED}")

    pg = pgtwist_factory(passwd={"postgres": "unused under trust"},
                         extra={"auth_user": "postgres"})
    with RawClient(pg.port) as raw:
        raw.send(startup_packet({"user": INJECTED_USER, "database": sjisdb}))
        code, _ = raw.read_msg()  # answered once auth_query has run
    assert code in ("R", "E"), code
    time.sleep(0.3)  # the reply may be an error that came before the query finished
    assert not _pwned(cluster), f"auth_query ran the injected CREATE ROLE {PWNED}"
