"""pgtwist logs in to the backends with every method the server may ask for.

The test cluster's pg_hba gives pw_user `password`, md5_user `md5` and
scram_user `scram-sha-256`; pgtwist takes their passwords from pool_passwd.
With enable_pool_hba off (the default, as in Pgpool-II) the client is asked for
the same kind of credentials the primary asked pgtwist for.
"""

from __future__ import annotations

import asyncio
import hashlib

import asyncpg
import psycopg
import pytest

from pgtwist.dev.devcluster import TEST_USERS

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("user", sorted(TEST_USERS))
def test_login_with_each_backend_method(shared_pgtwist, user):
    dsn = shared_pgtwist.dsn(user=user, password=TEST_USERS[user])
    with psycopg.connect(dsn, connect_timeout=10) as conn:
        row = conn.execute("select current_user, pg_is_in_recovery()").fetchone()
    assert row == (user, False)


@pytest.mark.parametrize("user", sorted(TEST_USERS))
def test_client_is_asked_for_the_primary_method(shared_pgtwist, user):
    with pytest.raises(psycopg.OperationalError, match="no password supplied"):
        psycopg.connect(shared_pgtwist.dsn(user=user), connect_timeout=10)
    sqlstate, message = _login_sqlstate(shared_pgtwist, user, password="wrong")
    assert (sqlstate, message) == ("28P01", f'password authentication failed for user "{user}"')


def test_trust_user_needs_no_pool_passwd_entry(shared_pgtwist):
    with psycopg.connect(shared_pgtwist.dsn(user="postgres"), connect_timeout=10) as conn:
        assert conn.execute("select current_user").fetchone() == ("postgres",)


def _login_sqlstate(pg, user: str, password: str | None = None) -> tuple[str, str]:
    """(SQLSTATE, message) of a refused login; psycopg hides the code of startup errors."""

    async def attempt():
        try:
            conn = await asyncpg.connect(
                host="127.0.0.1", port=pg.port, user=user, database="postgres", timeout=10,
                password=password,
            )
        except asyncpg.PostgresError as exc:
            return exc.sqlstate, str(exc)
        await conn.close()
        raise AssertionError(f"login as {user} unexpectedly succeeded")

    return asyncio.run(attempt())


def _write_passwd(tmp_path, lines):
    path = tmp_path / "custom_passwd"
    path.write_text("".join(line + "\n" for line in lines))
    path.chmod(0o600)
    return str(path)


def test_md5_hash_entry_drives_md5_login(pgtwist_factory, tmp_path):
    digest = "md5" + hashlib.md5(b"md5 secret 2md5_user").hexdigest()
    pg = pgtwist_factory(extra={"pool_passwd": _write_passwd(tmp_path, [f"md5_user:{digest}"])})
    dsn = pg.dsn(user="md5_user", password="md5 secret 2")
    with psycopg.connect(dsn, connect_timeout=10) as conn:
        assert conn.execute("select current_user").fetchone() == ("md5_user",)


def test_md5_hash_cannot_drive_scram_and_the_log_says_so(pgtwist_factory, tmp_path):
    """The client sees only 28P01 (finding 13: no hint about pool_passwd); the log says why."""
    digest = "md5" + hashlib.md5(b"scram secret 3scram_user").hexdigest()
    pg = pgtwist_factory(extra={"pool_passwd": _write_passwd(tmp_path, [f"scram_user:{digest}"])})
    with pytest.raises(psycopg.OperationalError) as info:
        psycopg.connect(pg.dsn(user="scram_user", password="scram secret 3"), connect_timeout=10)
    text = str(info.value)
    assert 'password authentication failed for user "scram_user"' in text
    assert "pool_passwd" not in text and "md5" not in text
    log = pg.log_text()
    assert "md5 hash" in log and "SCRAM" in log
    assert digest not in text and digest not in log


@pytest.mark.parametrize("user", ["pw_user", "md5_user", "scram_user"])
def test_missing_password_is_a_clear_error(pgtwist_factory, user):
    pg = pgtwist_factory(passwd={})
    sqlstate, message = _login_sqlstate(pg, user)
    assert sqlstate == "28P01"
    # The same answer as for a wrong password: pool_passwd membership is not revealed.
    assert message == f'password authentication failed for user "{user}"'
    assert "pool_passwd has no password" in pg.log_text()


@pytest.mark.parametrize("user", ["pw_user", "md5_user", "scram_user"])
def test_wrong_password_is_refused_by_the_server(pgtwist_factory, user):
    pg = pgtwist_factory(passwd={user: "not the password"})
    sqlstate, _message = _login_sqlstate(pg, user)
    assert sqlstate == "28P01"
    assert "not the password" not in pg.log_text()
    # The daemon keeps serving others.
    with psycopg.connect(pg.dsn(user="postgres"), connect_timeout=10) as conn:
        assert conn.execute("select 1").fetchone() == (1,)


def test_server_errors_at_login_reach_the_client(shared_pgtwist):
    async def attempt():
        with pytest.raises(asyncpg.InvalidCatalogNameError) as info:
            await asyncpg.connect(
                host="127.0.0.1", port=shared_pgtwist.port, user="postgres",
                database="no_such_db", timeout=10,
            )
        return str(info.value)

    assert "no_such_db" in asyncio.run(attempt())
