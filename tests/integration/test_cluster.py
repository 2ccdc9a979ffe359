"""The dev cluster fixture itself: roles, replication, auth methods."""

import psycopg
import pytest

from pgtwist.dev.devcluster import TEST_USER_METHODS, TEST_USERS, ClusterError, conninfo

pytestmark = pytest.mark.integration


def test_primary_is_not_in_recovery(cluster):
    assert cluster.psql("SELECT pg_is_in_recovery()") == "f"
    with psycopg.connect(cluster.dsn()) as conn:
        row = conn.execute("SELECT pg_is_in_recovery(), inet_server_port()").fetchone()
    assert row == (False, cluster.primary_port)


def test_replicas_are_in_recovery_and_streaming(cluster):
    assert cluster.replica_ports
    for port in cluster.replica_ports:
        assert cluster.psql("SELECT pg_is_in_recovery()", port=port) == "t"
        with psycopg.connect(cluster.dsn(port=port)) as conn:
            row = conn.execute("SELECT pg_is_in_recovery(), inet_server_port()").fetchone()
        assert row == (True, port)
        assert cluster.psql("SELECT status FROM pg_stat_wal_receiver", port=port) == "streaming"
    states = cluster.psql("SELECT state FROM pg_stat_replication").split()
    assert states == ["streaming"] * len(cluster.replica_ports)


def test_writes_reach_the_replica(cluster):
    cluster.psql(
        "DROP TABLE IF EXISTS devcluster_probe; "
        "CREATE TABLE devcluster_probe (v text); "
        "INSERT INTO devcluster_probe VALUES ('written on primary')"
    )
    try:
        cluster.wait_replayed()
        for port in cluster.replica_ports:
            got = cluster.psql("SELECT v FROM devcluster_probe", port=port)
            assert got == "written on primary"
            with pytest.raises(ClusterError, match="read-only"):
                cluster.psql("INSERT INTO devcluster_probe VALUES ('x')", port=port)
    finally:
        cluster.psql("DROP TABLE IF EXISTS devcluster_probe")


@pytest.mark.parametrize("user", sorted(TEST_USERS))
def test_role_logs_in_with_its_method(cluster, user):
    for port in cluster.ports:
        with psycopg.connect(cluster.dsn(port=port, user=user, password=TEST_USERS[user])) as c:
            assert c.execute("SELECT current_user").fetchone() == (user,)
            assert c.info.port == port


@pytest.mark.parametrize("user", sorted(TEST_USERS))
def test_role_password_method_matches_pg_hba(cluster, user):
    rules = cluster.psql(
        f"SELECT auth_method FROM pg_hba_file_rules WHERE '{user}' = ANY(user_name)"
    )
    assert rules == TEST_USER_METHODS[user]
    stored = cluster.psql(f"SELECT left(rolpassword, 3) FROM pg_authid WHERE rolname = '{user}'")
    assert stored == ("md5" if TEST_USER_METHODS[user] == "md5" else "SCR")


@pytest.mark.parametrize("user", sorted(TEST_USERS))
def test_wrong_password_fails(cluster, user):
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(cluster.dsn(user=user, password="not " + TEST_USERS[user]))


@pytest.mark.parametrize("user", sorted(TEST_USERS))
def test_missing_password_fails(cluster, user):
    with pytest.raises(psycopg.OperationalError, match="no password supplied"):
        psycopg.connect(cluster.dsn(user=user) + " passfile=/dev/null")


def test_superuser_trusted_over_tcp(cluster):
    with psycopg.connect(cluster.dsn()) as conn:
        assert conn.execute("SELECT current_user").fetchone() == ("postgres",)


def test_psql_raises_on_error(cluster):
    with pytest.raises(ClusterError, match="does_not_exist"):
        cluster.psql("SELECT * FROM does_not_exist")


def test_conninfo_quotes_values():
    assert conninfo(host="h", password="a b'c\\", port=None) == "host=h password='a b\\'c\\\\'"
    assert conninfo(user="") == "user=''"
