"""Passwords never leak: not into the daemon log (even at debug1), not into admin command
output, not into ``--check`` output.  And a pool_passwd others can read is refused.

Two daemons log at debug1 while every test password (right and wrong) goes through them
with psycopg and asyncpg: one authenticates clients itself (pool_hba.conf with password,
md5 and scram-sha-256 lines; scram_user by SCRAM pass-through via ``auth_user``), the other
passes clients' clear-text passwords on to the servers (``allow_clear_text_frontend_auth``).
Besides the passwords, the secrets derived from them (md5 hashes, SCRAM keys) are looked for.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import subprocess

import psycopg
import pytest
import yaml

from pgtwist.dev import devcluster as dc

from .conftest import assert_log_clean
from .rawpg import RawClient, data_row
from .test_auth_hba import (
    DRIVERS,
    GOOD,
    login,
    run_check,
    start_daemon,
    twistd_argv,
    write_hba,
)

pytestmark = pytest.mark.integration

AUTH_USER = "pgtwist_hyg_auth"
AUTH_PASSWORD = "hygiene auth secret 8"
SR_CHECK_PASSWORD = "sr check secret 9"
STATEMENT_PASSWORD = "statement secret 10"
WRONG = {user: f"wrong {user} guess 7" for user in dc.TEST_USERS}

HBA = """\
host    all     pw_user         127.0.0.1/32    password
host    all     md5_user        127.0.0.1/32    md5
host    all     scram_user      127.0.0.1/32    scram-sha-256
host    all     all             127.0.0.1/32    trust
"""


def _scram_keys(verifier: str, password: str) -> dict[str, bytes]:
    """StoredKey, ServerKey and ClientKey of a SCRAM-SHA-256 verifier."""
    _, rest = verifier.split("$", 1)
    iter_salt, keys = rest.split("$")
    iterations, salt = iter_salt.split(":")
    stored, server = keys.split(":")
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), base64.b64decode(salt),
                                 int(iterations))
    client_key = hmac.new(salted, b"Client Key", "sha256").digest()
    return {"StoredKey": base64.b64decode(stored), "ServerKey": base64.b64decode(server),
            "ClientKey": client_key}


def _secrets(cluster) -> dict[str, str]:
    """Every string that must not appear: passwords, md5 hashes, SCRAM keys (base64, hex)."""
    out = {f"{user}'s password": pw for user, pw in dc.TEST_USERS.items()}
    out.update({f"wrong password tried for {user}": pw for user, pw in WRONG.items()})
    out["auth_user's password"] = AUTH_PASSWORD
    out["sr_check_password"] = SR_CHECK_PASSWORD
    for user, pw in dc.TEST_USERS.items():
        out[f"{user}'s md5 hash"] = hashlib.md5((pw + user).encode()).hexdigest()
    verifier = cluster.psql("SELECT rolpassword FROM pg_authid WHERE rolname = 'scram_user'")
    for name, key in _scram_keys(verifier, dc.TEST_USERS["scram_user"]).items():
        out[f"scram_user's {name} (base64)"] = base64.b64encode(key).decode()
        out[f"scram_user's {name} (hex)"] = key.hex()
    return out


def _leaks(text: str, secrets: dict[str, str]) -> list[str]:
    return [what for what, secret in secrets.items() if secret in text]


@pytest.fixture(scope="module")
def auth_role(cluster):
    role = AUTH_USER
    cluster.psql(f"DROP ROLE IF EXISTS {role}")
    cluster.psql(f"SET password_encryption = 'scram-sha-256'; "
                 f"CREATE ROLE {role} LOGIN SUPERUSER PASSWORD '{AUTH_PASSWORD}'")
    yield role
    cluster.psql(f"DROP ROLE IF EXISTS {role}")


@pytest.fixture(scope="module")
def daemons(cluster, auth_role, tmp_path_factory):
    """(hba daemon, clear-text daemon), both logging at debug1; stopped by the test."""
    started = []
    try:
        workdir = tmp_path_factory.mktemp("hygiene_hba")
        started.append(start_daemon(cluster, workdir, {
            "log_min_messages": "debug1",
            "enable_pool_hba": True,
            "pool_hba_file": write_hba(workdir / "pool_hba.conf", HBA),
            "auth_user": auth_role,  # pgtwist's default auth_query (reads pg_authid)
            "sr_check_password": SR_CHECK_PASSWORD,
        }, passwd={"pw_user": dc.TEST_USERS["pw_user"],
                   "md5_user": dc.TEST_USERS["md5_user"], auth_role: AUTH_PASSWORD}))
        workdir = tmp_path_factory.mktemp("hygiene_cleartext")
        started.append(start_daemon(cluster, workdir, {
            "log_min_messages": "debug1",
            "allow_clear_text_frontend_auth": True,
            "sr_check_password": SR_CHECK_PASSWORD,
        }, passwd={}))
        yield started
    finally:
        for pg in started:
            pg.stop()


def _admin_output(pg) -> str:
    """SHOW pool_nodes and PGTWIST EXPLAIN ROUTE, as text (simple protocol, raw socket)."""
    texts = []
    with RawClient(pg.port) as raw:
        raw.startup({"user": "postgres", "database": "postgres"})
        for sql in ("SHOW pool_nodes", "SHOW pool_version",
                    "PGTWIST EXPLAIN ROUTE SELECT 1",
                    "PGTWIST EXPLAIN ROUTE SELECT * FROM pg_authid"):
            msgs = raw.simple(sql)
            assert not [c for c, _ in msgs if c == "E"], (sql, msgs)
            texts += [repr(data_row(body)) for code, body in msgs if code == "D"]
    return "\n".join(texts)


def test_no_secret_in_logs_or_admin_output(cluster, daemons):
    hba_pg, cleartext_pg = daemons
    secrets = _secrets(cluster)
    for pg in daemons:
        for driver in DRIVERS:
            for user, password in dc.TEST_USERS.items():
                assert login(driver, pg, user, password) is GOOD, (pg, driver, user)
                result = login(driver, pg, user, WRONG[user])
                assert result is not GOOD and result[0] in (None, "28P01"), result
                assert not _leaks(result[1], secrets), result  # the client's error text

    admin = _admin_output(hba_pg) + _admin_output(cleartext_pg)
    assert not _leaks(admin, secrets), _leaks(admin, secrets)

    # A password in a statement's text: the routing debug line shows the statement masked.
    secrets["a password in a statement"] = STATEMENT_PASSWORD
    with psycopg.connect(hba_pg.dsn(user="postgres"), autocommit=True) as conn:
        conn.execute(f"CREATE ROLE hygiene_stmt_role PASSWORD '{STATEMENT_PASSWORD}'")
        conn.execute("DROP ROLE hygiene_stmt_role")

    for pg in daemons:
        pg.stop()  # flush and close the log
        text = pg.log_text()
        assert "DEBUG:  " in text, "the daemon did not log at debug level"
        assert_log_clean(text)
        assert not _leaks(text, secrets), f"{pg.log_path}: {_leaks(text, secrets)}"


# -- --check --------------------------------------------------------------------------------------


def _config(cluster, tmp_path, **extra):
    config = dc.pgtwist_config(cluster, dc.free_port(), extra)
    return dc.write_pgtwist_files(tmp_path, config, dc.TEST_USERS)


def test_check_does_not_print_sr_check_password(cluster, tmp_path):
    good = run_check(_config(cluster, tmp_path / "good", sr_check_password=SR_CHECK_PASSWORD),
                     tmp_path)
    assert good.returncode == 0, good.stderr
    assert SR_CHECK_PASSWORD not in good.stdout + good.stderr

    # Invalid configurations: errors elsewhere, the password itself of the wrong type, a
    # misspelled key holding it, and the password through the environment.
    cases = {
        "other error": {"sr_check_password": SR_CHECK_PASSWORD, "port": 70000},
        "bad type": {"sr_check_password": [SR_CHECK_PASSWORD]},
        "misspelled key": {"sr_check_pasword": SR_CHECK_PASSWORD},
        "nested": {"sr_check_password": {"value": SR_CHECK_PASSWORD}},
    }
    for name, extra in cases.items():
        path = _config(cluster, tmp_path / name.replace(" ", "_"), **extra)
        proc = run_check(path, tmp_path)
        out = proc.stdout + proc.stderr
        assert proc.returncode != 0, (name, out)
        assert SR_CHECK_PASSWORD not in out, f"{name}: {out}"
        assert "Traceback" not in out, out


def test_check_does_not_print_secrets_from_the_environment(cluster, tmp_path):
    path = _config(cluster, tmp_path, port=70000)
    env = dict(os.environ, PGPOOL_PARAMS_SR_CHECK_PASSWORD=SR_CHECK_PASSWORD,
               PGPOOL_PARAMS_WD_AUTHKEY=AUTH_PASSWORD)
    proc = subprocess.run([*twistd_argv(), "pgtwist", "-c", str(path), "--check"],
                          cwd=tmp_path, env=dc.pgtwist_env(env), capture_output=True,
                          text=True, timeout=30, stdin=subprocess.DEVNULL, check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, out
    assert SR_CHECK_PASSWORD not in out and AUTH_PASSWORD not in out, out


def test_check_refuses_a_world_readable_pool_passwd(cluster, tmp_path):
    path = _config(cluster, tmp_path)
    pool_passwd = tmp_path / "pool_passwd"
    pool_passwd.chmod(0o644)
    proc = run_check(path, tmp_path)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, out
    assert str(pool_passwd) in out, out
    for password in dc.TEST_USERS.values():
        assert password not in out
    # chmod 600 and it is accepted again
    pool_passwd.chmod(0o600)
    assert run_check(path, tmp_path).returncode == 0


def test_config_file_written_for_check_holds_the_password(cluster, tmp_path):
    """Guard: the --check cases above really put the password in the file they check."""
    path = _config(cluster, tmp_path, sr_check_password=SR_CHECK_PASSWORD)
    assert yaml.safe_load(path.read_text())["sr_check_password"] == SR_CHECK_PASSWORD

