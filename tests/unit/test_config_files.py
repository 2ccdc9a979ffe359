"""Config load checks the files it names: secrets private, required files present and readable."""

from __future__ import annotations

import os

import pytest

from pgtwist.config import ConfigError, load_config, parse_config

ONE = {"backends": [{"hostname": "db"}]}
ROOT = os.geteuid() == 0


def errors_of(raw, **kw) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config({**ONE, **raw}, **{"env": {}, **kw})
    return info.value.errors


def make(path, text="x\n", mode=0o600, uid=None):
    path.write_text(text)
    path.chmod(mode)
    if uid is not None:
        os.chown(path, uid, -1)
    return str(path)


def not_root_owned(path):
    """Give the file to an ordinary user when the tests run as root (else it already is)."""
    if ROOT:
        os.chown(path, 65534, -1)
    return str(path)


def test_private_files_pass(tmp_path):
    passwd = make(tmp_path / "pool_passwd")
    key = make(tmp_path / "key", mode=0o400)
    config = parse_config({**ONE, "pool_passwd": passwd, "pool_key_file": key}, env={})
    assert config.pool_passwd == passwd


def test_missing_pool_passwd_and_key_are_fine(tmp_path):
    parse_config({**ONE, "pool_passwd": str(tmp_path / "none"),
                  "pool_key_file": str(tmp_path / "nokey")}, env={})
    parse_config({**ONE, "pool_passwd": ""}, env={})  # disabled


@pytest.mark.parametrize("mode", [0o644, 0o604, 0o640, 0o660])
def test_pool_passwd_readable_by_group_or_others(tmp_path, mode):
    path = tmp_path / "pool_passwd"
    make(path, mode=mode)
    not_root_owned(path)
    assert errors_of({"pool_passwd": str(path)}) == [
        f"pool_passwd: {path} is readable by group or others (mode {mode:04o}; chmod 600)"
    ]


def test_group_write_only_is_reported_too(tmp_path):
    path = tmp_path / "pool_passwd"
    make(path, mode=0o620)
    not_root_owned(path)
    assert errors_of({"pool_passwd": str(path)}) == [
        f"pool_passwd: {path} is writable or executable by group or others (mode 0620; chmod 600)"
    ]


def test_root_owned_secret_may_be_group_readable(tmp_path):
    if not ROOT:
        pytest.skip("needs root to own the file")
    path = make(tmp_path / "pool_passwd", mode=0o640, uid=0)
    parse_config({**ONE, "pool_passwd": path}, env={})
    os.chmod(path, 0o644)
    assert errors_of({"pool_passwd": path}) == [
        f"pool_passwd: {path} is readable by others (mode 0644; chmod 600)"
    ]


def test_key_file_permissions(tmp_path):
    path = tmp_path / ".pgpoolkey"
    make(path, mode=0o644)
    assert errors_of({"pool_key_file": str(path)}) == [
        f"pool_key_file: {path} is readable by {'others' if ROOT else 'group or others'} "
        "(mode 0644; chmod 600)"
    ]


def test_unreadable_files(tmp_path):
    directory = tmp_path / "adir"
    directory.mkdir()
    assert errors_of({"pool_passwd": str(directory), "pool_key_file": str(directory)}) == [
        f"pool_passwd: {directory} is a directory, not a file",
        f"pool_key_file: {directory} is a directory, not a file",
    ]


def test_permission_denied(tmp_path):
    if ROOT:
        pytest.skip("root reads files whatever their mode")
    path = make(tmp_path / "pool_passwd", mode=0o000)
    assert errors_of({"pool_passwd": path}) == [
        f"pool_passwd: {path} cannot be read: Permission denied"
    ]


def test_permission_denied_simulated(tmp_path, monkeypatch):
    import builtins

    import pgtwist.config_files

    path = make(tmp_path / "pool_hba.conf")

    def fake_open(name, *args, **kw):
        if name == path:
            raise PermissionError(13, "Permission denied")
        return builtins.open(name, *args, **kw)

    monkeypatch.setattr(pgtwist.config_files, "open", fake_open, raising=False)
    assert errors_of({"pool_hba_file": path, "enable_pool_hba": True}) == [
        f"pool_hba_file: {path} cannot be read: Permission denied"
    ]


def test_pool_hba_file_required_only_when_enabled(tmp_path):
    hba = tmp_path / "pool_hba.conf"
    parse_config({**ONE, "pool_hba_file": str(hba)}, env={})  # off: not looked at
    assert errors_of({"pool_hba_file": str(hba), "enable_pool_hba": True}) == [
        f"pool_hba_file: {hba} does not exist (enable_pool_hba is on)"
    ]
    make(hba, "host all all all md5\n", mode=0o644)  # not secret: any mode is fine
    parse_config({**ONE, "pool_hba_file": str(hba), "enable_pool_hba": True}, env={})
    assert errors_of({"pool_hba_file": str(tmp_path), "enable_pool_hba": True}) == [
        f"pool_hba_file: {tmp_path} is a directory, not a file"
    ]


def test_ssl_files_when_ssl_is_on(tmp_path):
    key, cert = tmp_path / "server.key", tmp_path / "server.crt"
    raw = {"ssl_key": str(key), "ssl_cert": str(cert)}
    parse_config({**ONE, **raw}, env={})  # ssl off: not looked at
    assert errors_of({**raw, "ssl": True}) == [
        f"ssl_key: {key} does not exist (ssl is on)",
        f"ssl_cert: {cert} does not exist (ssl is on)",
    ]
    make(key, mode=0o644)
    not_root_owned(key)
    make(cert, mode=0o644)
    assert errors_of({**raw, "ssl": True}) == [
        f"ssl_key: {key} is readable by group or others (mode 0644; chmod 600)"
    ]
    key.chmod(0o600)
    parse_config({**ONE, **raw, "ssl": True}, env={})


def test_errors_name_the_setting_source_and_are_collected(tmp_path):
    path = tmp_path / "pool_passwd"
    make(path, mode=0o666)
    not_root_owned(path)
    errors = errors_of({"port": "x"}, overrides={"pool_passwd": str(path)})
    assert errors[0].startswith("port: ")
    assert errors[1] == (f"pool_passwd (from command line): {path} is readable by group or "
                         "others (mode 0666; chmod 600)")
    env_errors = errors_of({}, env={"PGPOOL_PARAMS_POOL_PASSWD": str(path)})
    assert env_errors[0].startswith("pool_passwd (from PGPOOL_PARAMS_POOL_PASSWD): ")


def test_relative_names_resolve_against_the_config_file(tmp_path):
    conf = tmp_path / "pgtwist.yaml"
    conf.write_text("backends: [{hostname: db}]\n")
    passwd = tmp_path / "pool_passwd"  # the default name, next to the config
    make(passwd, mode=0o644)
    not_root_owned(passwd)
    with pytest.raises(ConfigError) as info:
        load_config(str(conf), env={})
    assert info.value.errors == [
        f"pool_passwd: {passwd} is readable by group or others (mode 0644; chmod 600)"
    ]
    assert load_config(str(conf), env={}, check_files=False).pool_passwd == str(passwd)
