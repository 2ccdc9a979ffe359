"""Configuration loading: YAML, flat pgpool keys, environment, overrides, errors."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import pytest

from pgtwist.config import (
    Backend,
    Config,
    ConfigError,
    load_config,
    parse_config,
    parse_pgpool_conf,
)
from pgtwist.params import PARAMS

REPO = Path(__file__).resolve().parents[2]
REFERENCE = REPO / "etc" / "pgpool.yaml"
ONE = {"backends": [{"hostname": "db"}]}


def parse(raw=None, env=None, **kw) -> Config:
    return parse_config(ONE if raw is None else raw, env={} if env is None else env, **kw)


def errors_of(raw, env=None, **kw) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(raw, env={} if env is None else env, **kw)
    assert str(info.value) == "\n".join(info.value.errors)
    return info.value.errors


# --- the reference file ----------------------------------------------------------------------


def test_reference_yaml_parses():
    config = load_config(str(REFERENCE), env={})
    assert config.path == str(REFERENCE)
    assert config.base_dir == str(REFERENCE.parent)
    assert config.listen_addresses == "127.0.0.1"
    assert config.port == 9999
    primary, replica = config.backends
    assert (primary.hostname, primary.port) == ("127.0.0.1", 5432)
    assert primary.flags == {"ALWAYS_PRIMARY", "DISALLOW_TO_FAILOVER"}
    assert primary.always_primary and not primary.failover_allowed
    assert (replica.hostname, replica.port, replica.node_id) == ("127.0.0.1", 5433, 1)
    assert not replica.always_primary
    assert config.params["failover_on_backend_error"] is False
    assert config.max_message_length == 256 * 1024 * 1024
    assert config.params["routing"] == {}


def test_reference_yaml_documents_every_key_it_sets():
    lines = REFERENCE.read_text().splitlines()
    for i, line in enumerate(lines):
        if line and not line.startswith((" ", "#", "-")):
            j = i - 1  # skip the keys of a commented group and a key's nested lines
            while lines[j] and not lines[j].startswith("#"):
                j -= 1
            assert lines[j].startswith("#"), f"undocumented key: {line}"


# --- defaults --------------------------------------------------------------------------------


def test_defaults(tmp_path):
    config = parse(path=str(tmp_path / "p.yaml"))
    assert config.listen_addresses == "localhost"
    assert config.port == 9999
    assert config.load_balance_mode is True
    assert config.connection_cache is True
    assert config.reset_query_list == ("ABORT", "DISCARD ALL")
    assert config.authentication_timeout == 60
    assert config.connect_timeout == 10000
    assert config.num_init_children == 1000
    assert config.max_pool == 4
    assert config.reserved_connections == 0
    assert config.pool_passwd == str(tmp_path / "pool_passwd")
    assert config.pool_hba_file == str(tmp_path / "pool_hba.conf")
    assert config.pool_key_file == str(tmp_path / ".pgpoolkey")
    assert config.enable_pool_hba is False
    assert config.sr_check_period == 10
    assert config.sr_check_user == "nobody"
    assert config.sr_check_password == ""
    assert config.sr_check_database == "postgres"
    assert config.health_check_period == 0
    assert config.max_message_length == 268435456
    assert config.log_min_messages == "warning"
    assert config.pid_file_name == ""
    p = config.params
    assert p["disable_load_balance_on_write"] == "transaction"
    assert p["check_temp_table"] == "catalog"
    assert p["backend_clustering_mode"] == "streaming_replication"
    assert p["pool_mode"] == "session"
    assert p["checkout_timeout"] == 30
    assert p["backend_max_connections"] == 0
    assert p["metrics_port"] == 0
    assert p["write_function_list"] == ()
    assert p["primary_routing_query_pattern_list"] == ()
    assert p["memqcache_total_size"] == 64 * 1024 * 1024
    assert p["unix_socket_permissions"] == 0o777


def test_backend_defaults_and_params_view():
    (backend,) = parse().backends
    assert backend == Backend(0, "db", 5432, 1.0, frozenset({"ALLOW_TO_FAILOVER"}), "", "")
    config = parse()
    assert config.params["backend_hostname0"] == "db"
    assert config.params["backend_port0"] == 5432
    assert config.params["backend_flag0"] == "ALLOW_TO_FAILOVER"


def test_every_parameter_is_in_params():
    config = parse()
    assert set(PARAMS) <= set(config.params)


def test_no_path_uses_cwd(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    config = load_config(None, env={"PGPOOL_PARAMS_BACKEND_HOSTNAME0": "db"})
    assert config.path is None
    assert config.base_dir == str(tmp_path)
    assert config.pool_passwd == str(tmp_path / "pool_passwd")


def test_env_defaults_to_os_environ(monkeypatch):
    monkeypatch.setenv("PGPOOL_PARAMS_PORT", "6543")
    assert parse_config(ONE).port == 6543


# --- flat keys, structured backends ---------------------------------------------------------


def test_flat_backend_keys():
    config = parse({
        "backend_hostname0": "primary", "backend_port0": 5432, "backend_weight0": 0,
        "backend_flag0": "ALWAYS_PRIMARY|DISALLOW_TO_FAILOVER",
        "backend_data_directory0": "/data", "backend_application_name0": "p",
        "backend_hostname1": "replica", "backend_port1": "5433", "backend_weight1": "2.5",
    })
    primary, replica = config.backends
    assert primary == Backend(0, "primary", 5432, 0.0,
                              frozenset({"ALWAYS_PRIMARY", "DISALLOW_TO_FAILOVER"}), "/data", "p")
    assert (replica.hostname, replica.port, replica.weight) == ("replica", 5433, 2.5)


def test_flat_keys_override_structured_whatever_the_order():
    config = parse({"backend_port0": 6000, "backend_hostname2": "third",
                    "backends": [{"hostname": "a", "port": 1}, {"hostname": "b"}]})
    assert [(b.hostname, b.port) for b in config.backends] == [
        ("a", 6000), ("b", 5432), ("third", 5432)]


def test_missing_node_is_named():
    assert errors_of({"backend_hostname0": "a", "backend_hostname2": "c"}) == [
        "backends[1]: missing (node ids must be contiguous from 0; configured: 0, 2)"]


def test_backend_without_hostname():
    assert errors_of({"backends": [{"hostname": "a"}, {"port": 5433}]}) == [
        "backends[1].hostname: required"]
    assert errors_of({"backend_hostname0": "a", "backend_port1": 5433}) == [
        "backends[1].hostname: required"]


def test_no_backends():
    assert errors_of({}) == ["backends: at least one backend is required"]


def test_unknown_backend_setting_hint():
    assert errors_of({"backends": [{"hostname": "a", "wieght": 1}]}) == [
        "backends[0].wieght: unknown backend setting; did you mean weight?"]


@pytest.mark.parametrize("flag,expected", [
    ("ALWAYS_PRIMARY|DISALLOW_TO_FAILOVER", {"ALWAYS_PRIMARY", "DISALLOW_TO_FAILOVER"}),
    (" ALWAYS_PRIMARY | DISALLOW_TO_FAILOVER ", {"ALWAYS_PRIMARY", "DISALLOW_TO_FAILOVER"}),
    ("ALWAYS_PRIMARY", {"ALWAYS_PRIMARY", "ALLOW_TO_FAILOVER"}),
    ("DISALLOW_TO_FAILOVER", {"DISALLOW_TO_FAILOVER"}),
    ("", {"ALLOW_TO_FAILOVER"}),
    (["ALWAYS_PRIMARY", "DISALLOW_TO_FAILOVER"], {"ALWAYS_PRIMARY", "DISALLOW_TO_FAILOVER"}),
])
def test_flags(flag, expected):
    (backend,) = parse({"backends": [{"hostname": "a", "flag": flag}]}).backends
    assert backend.flags == frozenset(expected)
    assert backend.always_primary == ("ALWAYS_PRIMARY" in expected)


def test_bad_flags():
    assert errors_of({"backends": [{"hostname": "a", "flag": "ALWAYS_MASTR"}],
                      "backend_flag1": "ALWAYS_MASTER", "backend_hostname1": "b",
                      "backend_flag2": "ALLOW_TO_FAILOVER|DISALLOW_TO_FAILOVER",
                      "backend_hostname2": "c"}) == [
        "backends[0].flag: unknown flag 'ALWAYS_MASTR' "
        "(expected ALWAYS_PRIMARY, DISALLOW_TO_FAILOVER, ALLOW_TO_FAILOVER)",
        "backend_flag1: flag 'ALWAYS_MASTER' was renamed to ALWAYS_PRIMARY",
        "backend_flag2: ALLOW_TO_FAILOVER and DISALLOW_TO_FAILOVER exclude each other",
    ]


# --- environment and overrides ---------------------------------------------------------------


def test_env_overrides_file():
    env = {
        "PGPOOL_PARAMS_BACKEND_HOSTNAME1": "hippo-replica",
        "PGPOOL_PARAMS_PORT": "'5555'",
        "PGPOOL_PARAMS_LOAD_BALANCE_MODE": "off",
        "PGPOOL_PARAMS_CONNECTION_CACHE": "0",
        "PGPOOL_PARAMS_BACKEND_WEIGHT0": "0.5",
        "PGPOOL_PARAMS_LISTEN_ADDRESSES": "*",
        "OTHER": "ignored",
    }
    config = parse({"port": 7000, "backends": [{"hostname": "a"}, {"hostname": "b"}]}, env=env)
    assert config.port == 5555
    assert config.load_balance_mode is False
    assert config.connection_cache is False
    assert config.backends[0].weight == 0.5
    assert config.backends[1].hostname == "hippo-replica"
    assert config.listen_addresses == "*"


def test_env_values_survive_intact():
    env = {
        "PGPOOL_PARAMS_SR_CHECK_PASSWORD": "a=b==c",
        "PGPOOL_PARAMS_HEALTH_CHECK_PASSWORD": "'quoted = with spaces'",
        "PGPOOL_PARAMS_FAILOVER_COMMAND": "/bin/failover.sh %d 'x y' \"z\"",
        "PGPOOL_PARAMS_LOG_LINE_PREFIX": " %m: ",
        "PGPOOL_PARAMS_APP_NAME_REDIRECT_PREFERENCE_LIST": "'psql:primary,myapp:1(0.5)'",
        "PGPOOL_PARAMS_RESET_QUERY_LIST": "ABORT; SET a = 'b'; DISCARD ALL",
    }
    config = parse(env=env)
    assert config.sr_check_password == "a=b==c"
    assert config.params["health_check_password"] == "quoted = with spaces"
    assert config.params["failover_command"] == "/bin/failover.sh %d 'x y' \"z\""
    assert config.params["log_line_prefix"] == " %m: "
    assert config.params["app_name_redirect_preference_list"] == ("psql:primary", "myapp:1(0.5)")
    assert config.reset_query_list == ("ABORT", "SET a = 'b'", "DISCARD ALL")


def test_env_only_backend(monkeypatch):
    config = load_config(None, env={"PGPOOL_PARAMS_BACKEND_HOSTNAME0": "mypostgres",
                                    "PGPOOL_PARAMS_BACKEND_FLAG0": "'ALWAYS_PRIMARY'"})
    assert config.backends[0].hostname == "mypostgres"
    assert config.backends[0].always_primary


def test_env_errors_say_where_they_came_from():
    env = {"PGPOOL_PARAMS_BACKEND_PORT1": "x", "PGPOOL_PARAMS_BACKEND_HOSTNAME1": "b",
           "PGPOOL_PARAMS_NO_SUCH_THING": "1"}
    assert errors_of(ONE, env=env) == [
        "no_such_thing (from PGPOOL_PARAMS_NO_SUCH_THING): unknown parameter",
        "backend_port1 (from PGPOOL_PARAMS_BACKEND_PORT1): expected an integer 1-65535, got 'x'",
    ]


def test_k8s_image_defaults_are_accepted():
    env = {"PGPOOL_PARAMS_" + k: v for k, v in {
        "PORT": "9999", "BACKEND_HOSTNAME0": "mypostgres", "BACKEND_PORT0": "5432",
        "BACKEND_WEIGHT0": "1", "BACKEND_FLAG0": "ALLOW_TO_FAILOVER",
        "LISTEN_ADDRESSES": "*", "SR_CHECK_PERIOD": "0", "HEALTH_CHECK_PERIOD": "0",
        "FAILOVER_ON_BACKEND_ERROR": "off", "SOCKET_DIR": "/var/run/pgpool",
        "PCP_SOCKET_DIR": "/var/run/pgpool", "WD_IPC_SOCKET_DIR": "/var/run/pgpool"}.items()}
    config = load_config(None, env=env)
    assert config.sr_check_period == 0
    assert config.params["socket_dir"] == "/var/run/pgpool"


def test_overrides_apply_last():
    config = parse({**ONE, "port": 1000}, env={"PGPOOL_PARAMS_PORT": "2000"},
                   overrides={"port": 3000, "listen_addresses": None, "backend_hostname0": "o"})
    assert config.port == 3000
    assert config.listen_addresses == "localhost"
    assert config.backends[0].hostname == "o"
    assert errors_of(ONE, overrides={"port": "x"}) == [
        "port (from command line): expected an integer 1-65535, got 'x'"]


# --- types -----------------------------------------------------------------------------------


@pytest.mark.parametrize("value,expected", [
    (True, True), (False, False), ("on", True), ("OFF", False), ("true", True),
    ("false", False), ("yes", True), ("no", False), ("1", True), ("0", False), (1, True),
])
def test_bools(value, expected):
    assert parse({**ONE, "load_balance_mode": value}).load_balance_mode is expected


def test_units():
    config = parse({**ONE, "connect_timeout": "2s", "authentication_timeout": "1min",
                    "memqcache_total_size": "1GB", "max_message_length": "1MB",
                    "log_rotation_age": "1d", "log_rotation_size": "10MB",
                    "delay_threshold_by_time": 1500})
    p = config.params
    assert (config.connect_timeout, config.authentication_timeout) == (2000, 60)
    assert (p["memqcache_total_size"], config.max_message_length) == (1 << 30, 1 << 20)
    assert (p["log_rotation_age"], p["log_rotation_size"]) == (1440, 10240)
    assert p["delay_threshold_by_time"] == 1500


def test_enums_from_yaml_bools_and_case():
    config = parse({**ONE, "disable_load_balance_on_write": False, "check_temp_table": True,
                    "log_min_messages": "DEBUG1", "syslog_facility": "local3"})
    assert config.params["disable_load_balance_on_write"] == "off"
    assert config.params["check_temp_table"] == "on"
    assert config.log_min_messages == "debug1"
    assert config.params["syslog_facility"] == "LOCAL3"


def test_lists():
    config = parse({**ONE, "write_function_list": "nextval, setval,",
                    "database_redirect_preference_list": ["postgres:primary", "mydb:1"],
                    "primary_routing_query_pattern_list": r"SELECT \* FROM t1\;;SELECT 1"})
    p = config.params
    assert p["write_function_list"] == ("nextval", "setval")
    assert p["database_redirect_preference_list"] == ("postgres:primary", "mydb:1")
    assert p["primary_routing_query_pattern_list"] == (r"SELECT \* FROM t1\;", "SELECT 1")


def test_per_node_and_watchdog_suffix_params():
    config = parse({**ONE, "health_check_period0": 5, "health_check_user1": "hc",
                    "hostname0": "pgpool-a", "wd_port0": 9000, "heartbeat_port0": 9694})
    assert config.params["health_check_period0"] == 5
    assert config.params["health_check_user1"] == "hc"
    assert config.params["hostname0"] == "pgpool-a"


def test_opaque_subtrees():
    routing = {"policies": [{"name": "anything", "weird": {"x": [1, 2]}}]}
    config = parse({**ONE, "routing": routing, "pgtwist": {"whatever": True}})
    assert config.params["routing"] == routing
    assert config.params["pgtwist"] == {"whatever": True}
    with pytest.raises(TypeError):
        config.params["routing"]["policies"] = []
    assert errors_of({**ONE, "routing": "nope"}) == ["routing: expected a mapping, got 'nope'"]


def test_clustering_mode():
    assert parse({**ONE, "backend_clustering_mode": "raw"}).params[
        "backend_clustering_mode"] == "raw"
    assert errors_of({**ONE, "backend_clustering_mode": "native_replication"}) == [
        "backend_clustering_mode: pgtwist supports streaming replication only "
        "(streaming_replication or raw), got 'native_replication'"]


def test_enum_errors():
    assert errors_of({**ONE, "disable_load_balance_on_write": "sometimes",
                      "check_temp_table": "maybe"}) == [
        "disable_load_balance_on_write: expected one of off, transaction, trans_transaction, "
        "always, dml_adaptive, got 'sometimes'",
        "check_temp_table: expected one of catalog, trace, none, on, off, got 'maybe'",
    ]


# --- errors ----------------------------------------------------------------------------------


def test_all_errors_collected_with_exact_messages():
    raw = {
        "port": 70000,
        "load_balance_mode": "maybe",
        "max_message_length": 10,
        "num_init_children": "lots",
        "backends": [{"hostname": "a"}, {"hostname": "b", "port": "abc", "weight": -1}],
    }
    assert errors_of(raw) == [
        "port: expected an integer 1-65535, got 70000",
        "num_init_children: expected an integer >= 1, got 'lots'",
        "load_balance_mode: expected on/off, got 'maybe'",
        "max_message_length: expected an integer >= 1024 (default unit B), got 10",
        "backends[1].port: expected an integer 1-65535, got 'abc'",
        "backends[1].weight: expected a number >= 0, got -1",
    ]


def test_unknown_key_with_hint():
    assert errors_of({**ONE, "foo_bar": 1, "lod_balance_mode": 1, "backend_hostnam1": "x"}) == [
        "foo_bar: unknown parameter",
        "lod_balance_mode: unknown parameter; did you mean load_balance_mode?",
        "backend_hostnam1: unknown parameter; did you mean backend_hostname1?",
    ]


@pytest.mark.parametrize("old,new", [
    ("black_function_list", "write_function_list"),
    ("white_function_list", "read_only_function_list"),
    ("black_query_pattern_list", "primary_routing_query_pattern_list"),
    ("follow_master_command", "follow_primary_command"),
    ("master_slave_mode", "backend_clustering_mode"),
    ("other_pgpool_hostname0", "hostname0"),
])
def test_renamed_keys(old, new):
    assert errors_of({**ONE, old: "x"}) == [f"{old}: replaced by {new} in Pgpool-II 4.2"]


def test_old_spellings_pgpool_still_accepts():
    config = parse({**ONE, "fail_over_on_backend_error": "off", "delegate_IP": "10.0.0.1"})
    assert config.params["failover_on_backend_error"] is False
    assert config.params["delegate_ip"] == "10.0.0.1"


def test_cross_checks():
    assert errors_of({**ONE, "write_function_list": "a", "read_only_function_list": "b",
                      "num_init_children": 5, "reserved_connections": 5,
                      "metrics_port": 9999}) == [
        "reserved_connections: must be less than num_init_children (5)",
        "write_function_list: cannot be combined with read_only_function_list "
        "(set only one of them)",
        "metrics_port: must differ from port (9999)",
    ]


def test_top_level_must_be_mapping():
    assert errors_of(["a"]) == ["<config>: expected a mapping of parameter names, got a list"]


# --- files -----------------------------------------------------------------------------------


def test_relative_paths_resolve_against_config_dir(tmp_path, monkeypatch):
    monkeypatch.chdir("/")
    conf = tmp_path / "conf" / "pgpool.yaml"
    conf.parent.mkdir()
    conf.write_text("backends: [{hostname: db}]\npool_passwd: secrets/pool_passwd\n"
                    "pool_hba_file: /etc/abs_hba.conf\nssl_key: ../tls/key.pem\n"
                    "pid_file_name: run/pgtwist.pid\n")
    config = load_config(os.path.relpath(conf, "/"), env={})
    assert config.path == str(conf)
    assert config.pool_passwd == str(tmp_path / "conf" / "secrets" / "pool_passwd")
    assert config.pool_hba_file == "/etc/abs_hba.conf"
    assert config.params["ssl_key"] == str(tmp_path / "tls" / "key.pem")
    assert config.pid_file_name == str(tmp_path / "conf" / "run" / "pgtwist.pid")
    assert config.pool_key_file == str(tmp_path / "conf" / ".pgpoolkey")


def test_command_line_paths_are_cwd_relative(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = parse(path="/etc/pgtwist/pgpool.yaml",
                   overrides={"pool_hba_file": "hba.conf", "pool_key_file": "/k/.pgpoolkey"})
    assert config.pool_hba_file == str(tmp_path / "hba.conf")
    assert config.pool_key_file == "/k/.pgpoolkey"
    assert config.pool_passwd == "/etc/pgtwist/pool_passwd"


def test_empty_pool_passwd_disables(tmp_path):
    assert parse({**ONE, "pool_passwd": ""}, path=str(tmp_path / "x.yaml")).pool_passwd == ""


def test_yaml_syntax_error_names_file_and_line(tmp_path):
    conf = tmp_path / "bad.yaml"
    conf.write_text("port: 9999\nbackends:\n  - hostname: a\n sr_check_password: 'hunter2\n")
    with pytest.raises(ConfigError) as info:
        load_config(str(conf), env={})
    message = str(info.value)
    assert message.startswith(f"{conf}:")
    assert "invalid YAML" in message
    assert "hunter2" not in message
    line = int(message.split(":")[1])
    assert 3 <= line <= 5


def test_missing_file(tmp_path):
    missing = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError) as info:
        load_config(str(missing), env={})
    assert info.value.errors == [f"{missing}: cannot read config file: No such file or directory"]


def test_empty_file_means_no_backends(tmp_path):
    conf = tmp_path / "empty.yaml"
    conf.write_text("# nothing\n")
    with pytest.raises(ConfigError, match="at least one backend"):
        load_config(str(conf), env={})


def test_pgpool_conf(tmp_path):
    conf = tmp_path / "pgpool.conf"
    conf.write_text(
        "# a comment\n"
        "listen_addresses = '*'\n"
        "port = 9999            # trailing comment\n"
        "backend_hostname0 = 'mypostgres'\n"
        "backend_flag0 = 'ALWAYS_PRIMARY|DISALLOW_TO_FAILOVER'\n"
        "backend_hostname1 = 'mypostgres-replica'\n"
        "backend_weight1 = 2\n"
        "load_balance_mode = on\n"
        "primary_routing_query_pattern_list = 'SELECT \\* FROM t1\\;;SELECT 2'\n"
        "sr_check_period = 0\n"
        "port = 7777\n"
    )
    config = load_config(str(conf), env={})
    assert config.listen_addresses == "*"
    assert config.port == 7777
    assert [b.hostname for b in config.backends] == ["mypostgres", "mypostgres-replica"]
    assert config.backends[0].always_primary
    assert config.backends[1].weight == 2.0
    assert config.params["primary_routing_query_pattern_list"] == (r"SELECT \* FROM t1\;",
                                                                   "SELECT 2")


def test_pgpool_conf_syntax_error():
    with pytest.raises(ConfigError) as info:
        parse_pgpool_conf("port = 1\nthis is wrong\nssl = 'unterminated\n", "/x/pgpool.conf")
    assert info.value.errors == ["/x/pgpool.conf:2: syntax error (expected name = value)",
                                 "/x/pgpool.conf:3: syntax error (expected name = value)"]


# --- secrets and immutability ----------------------------------------------------------------


def test_secrets_not_in_errors_or_repr():
    raw = {**ONE, "sr_check_password": ["hunter2"], "wd_authkey": {"k": "hunter3"},
           "health_check_password1": ["hunter4"]}
    errors = errors_of(raw)
    assert errors == [
        "sr_check_password: expected a string, got <hidden>",
        "wd_authkey: expected a string, got <hidden>",
        "health_check_password1: expected a string, got <hidden>",
    ]
    assert not any("hunter" in e for e in errors)
    config = parse({**ONE, "sr_check_password": "hunter2"})
    assert "hunter2" not in repr(config)


def test_secrets_redacted():
    config = parse({**ONE, "sr_check_password": "hunter2", "wd_authkey": "hunter3",
                    "health_check_password0": "hunter4", "recovery_password": "",
                    "pgtwist": {"api_key": "hunter5", "nested": {"password": "hunter6"}}})
    shown = config.secrets_redacted()
    assert "hunter" not in repr(shown)
    assert shown["sr_check_password"] == "********"
    assert shown["health_check_password0"] == "********"
    assert shown["pgtwist"]["nested"]["password"] == "********"
    assert shown["recovery_password"] == ""
    assert shown["pool_key_file"] == config.pool_key_file  # a path, not a secret
    assert shown["port"] == 9999
    assert config.sr_check_password == "hunter2"


def test_config_is_frozen():
    config = parse()
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.port = 1  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.backends[0].port = 1  # type: ignore[misc]
    with pytest.raises(TypeError):
        config.params["port"] = 1  # type: ignore[index]
    assert isinstance(config.backends, tuple)


def test_config_error_accepts_one_message():
    exc = ConfigError("routing.policies[0]: bad")
    assert exc.errors == ["routing.policies[0]: bad"]
    assert str(exc) == "routing.policies[0]: bad"


# --- 0 disables authentication_timeout and connect_timeout (as in Pgpool-II) -----------------


def test_zero_timeouts_are_accepted():
    config = parse({**ONE, "authentication_timeout": 0, "connect_timeout": "0ms"})
    assert (config.authentication_timeout, config.connect_timeout) == (0, 0)
    assert errors_of({**ONE, "connect_timeout": -1}) == [
        "connect_timeout: expected an integer >= 0 (default unit ms), got -1"]


def test_zero_timeout_schedules_no_timer():
    from twisted.internet.testing import MemoryReactorClock

    from pgtwist.timeouts import NO_TIMER, call_later

    clock = MemoryReactorClock()
    fired = []
    assert call_later(clock, 0, fired.append, 1) is NO_TIMER
    assert clock.getDelayedCalls() == []
    assert not NO_TIMER.active()
    NO_TIMER.cancel()
    NO_TIMER.reset(5)
    timer = call_later(clock, 2, fired.append, 2)
    clock.advance(2)
    assert fired == [2] and not timer.active()


def test_zero_connect_timeout_means_no_connect_or_login_timeout():
    from twisted.internet.testing import MemoryReactorClock

    from pgtwist.protocols.backend import connect_backend

    clock = MemoryReactorClock()
    d = connect_backend(clock, 0, "127.0.0.1", 5432, "u", {"database": "d"}, None, 0.0)
    assert clock.tcpClients[0][3] is None  # connectTCP(timeout=None): no timeout
    assert clock.getDelayedCalls() == []  # and no login timer
    clock.advance(3600)
    assert not d.called
    connect_backend(clock, 0, "127.0.0.1", 5432, "u", {"database": "d"}, None, 2.5)
    assert clock.tcpClients[1][3] == 2.5
    assert [c.getTime() for c in clock.getDelayedCalls()] == [3600 + 2.5]


def test_zero_connect_timeout_keeps_a_bounded_reset():
    from types import SimpleNamespace

    from twisted.internet.testing import MemoryReactorClock

    from pgtwist.pooling.checkout import Pooling
    from pgtwist.timeouts import RESET_TIMEOUT_WHEN_DISABLED

    proxy = SimpleNamespace(reactor=MemoryReactorClock())
    assert Pooling(proxy, parse({**ONE, "connect_timeout": 0})).reset_timeout == \
        RESET_TIMEOUT_WHEN_DISABLED
    assert Pooling(proxy, parse({**ONE, "connect_timeout": 2500})).reset_timeout == 2.5
