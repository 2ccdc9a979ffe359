"""``pgtwist passwd`` and ``pgtwist check``, run in-process with temporary files."""

from __future__ import annotations

import io
import stat

import pytest

from pgtwist.auth.passwd import aes_encrypt, encode_entry, load_pool_passwd, read_key_file
from pgtwist.cli import main

SECRET = "Hunter2-not-shown"


@pytest.fixture
def conf(tmp_path):
    """A config whose pool_passwd and key file live next to it."""
    path = tmp_path / "pgtwist.yaml"
    path.write_text("backends: [{hostname: db}]\npool_passwd: pool_passwd\n"
                    "pool_key_file: pgpoolkey\n")
    return path


def run(capsys, *argv) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    assert SECRET not in out + err
    return code, out, err


def mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.parametrize("kind", ["md5", "text", "plain"])
def test_writes_each_format_to_the_file_given(tmp_path, capsys, kind):
    path = tmp_path / "pool_passwd"
    code, out, _ = run(capsys, "passwd", "-f", str(path), "-m", kind, "alice", SECRET)
    assert code == 0
    assert out == f"pgtwist: wrote {kind} entry for alice to {path}\n"
    assert path.read_text() == f"alice:{encode_entry('alice', SECRET, kind)}\n"
    assert mode(path) == 0o600


def test_default_format_is_md5(tmp_path, capsys):
    path = tmp_path / "pool_passwd"
    assert run(capsys, "passwd", "-f", str(path), "bob", SECRET)[0] == 0
    assert load_pool_passwd(str(path))["bob"].kind == "md5"


def test_aes_with_key_file_option(tmp_path, capsys):
    path, key = tmp_path / "pool_passwd", tmp_path / "key"
    key.write_text("the key\n")
    code, _, _ = run(capsys, "passwd", "-f", str(path), "-k", str(key), "-m", "aes", "u", SECRET)
    assert code == 0
    assert path.read_text() == f"u:AES{aes_encrypt(SECRET, 'the key')}\n"
    assert load_pool_passwd(str(path), key="the key")["u"].plaintext() == SECRET


def test_aes_uses_the_configured_key_file_and_pool_passwd(conf, capsys):
    (conf.parent / "pgpoolkey").write_text("configured key\n")
    (conf.parent / "pgpoolkey").chmod(0o600)
    assert run(capsys, "passwd", "-c", str(conf), "-m", "aes", "u", SECRET)[0] == 0
    entries = load_pool_passwd(str(conf.parent / "pool_passwd"), key="configured key")
    assert entries["u"].plaintext() == SECRET
    assert mode(conf.parent / "pool_passwd") == 0o600


def test_aes_without_any_key_file_is_an_error(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("PGPOOLKEYFILE", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    path = tmp_path / "pool_passwd"
    code, _, err = run(capsys, "passwd", "-f", str(path), "-m", "aes", "u", SECRET)
    assert code == 1
    assert err.startswith("pgtwist: aes entries need a key file: give -k KEYFILE")
    assert not path.exists()


def test_replaces_an_existing_line(tmp_path, capsys):
    path = tmp_path / "pool_passwd"
    path.write_text("a:TEXTold\nb:TEXTkeep\n")
    assert run(capsys, "passwd", "-f", str(path), "-m", "text", "a", SECRET)[0] == 0
    assert path.read_text() == f"a:TEXT{SECRET}\nb:TEXTkeep\n"


def test_stdin_reads_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("sys.stdin", io.StringIO(f"{SECRET}\nignored\n"))
    path = tmp_path / "pool_passwd"
    assert run(capsys, "passwd", "-f", str(path), "--stdin", "-m", "text", "u")[0] == 0
    assert path.read_text() == f"u:TEXT{SECRET}\n"
    monkeypatch.setattr("sys.stdin", io.StringIO(""))
    code, _, err = run(capsys, "passwd", "-f", str(path), "--stdin", "u")
    assert (code, err) == (1, "pgtwist: no password on standard input\n")


def test_prompt_asks_twice(tmp_path, capsys, monkeypatch):
    answers = iter([SECRET, SECRET])
    prompts = []
    monkeypatch.setattr("getpass.getpass", lambda prompt: prompts.append(prompt) or next(answers))
    path = tmp_path / "pool_passwd"
    assert run(capsys, "passwd", "-f", str(path), "-p", "-m", "text", "u")[0] == 0
    assert prompts == ["Password for u: ", "Again: "]
    assert path.read_text() == f"u:TEXT{SECRET}\n"


def test_prompt_mismatch_writes_nothing(tmp_path, capsys, monkeypatch):
    answers = iter([SECRET, "other"])
    monkeypatch.setattr("getpass.getpass", lambda prompt: next(answers))
    path = tmp_path / "pool_passwd"
    code, _, err = run(capsys, "passwd", "-f", str(path), "u")  # no password: prompts
    assert (code, err) == (1, "pgtwist: the passwords do not match\n")
    assert not path.exists()


def test_usage_errors(tmp_path, capsys):
    path = str(tmp_path / "pool_passwd")
    assert run(capsys, "passwd", "-f", path)[0] == 1
    code, _, err = run(capsys, "passwd", "-f", path, "-p", "u", SECRET)
    assert (code, err) == (1, "pgtwist: give the password as an argument, or with -p / --stdin, "
                              "not both\n")
    code, _, err = run(capsys, "passwd", "-f", path, "-m", "plain", "u", "TEXT" + SECRET)
    assert code == 1 and "use 'text'" in err
    code, _, err = run(capsys, "passwd", "-f", path, "a:b", SECRET)
    assert code == 1 and "user name" in err
    with pytest.raises(SystemExit):
        main(["passwd", "-f", path, "-c", "x.yaml", "u", SECRET])  # exclusive options
    capsys.readouterr()


def test_disabled_pool_passwd_in_config(tmp_path, capsys):
    conf = tmp_path / "c.yaml"
    conf.write_text("backends: [{hostname: db}]\npool_passwd: ''\n")
    code, _, err = run(capsys, "passwd", "-c", str(conf), "u", SECRET)
    assert (code, err) == (1, f"pgtwist: {conf}: pool_passwd is empty (disabled); "
                              "give -f POOL_PASSWD\n")


def test_loose_permissions_do_not_block_rewriting(conf, capsys):
    path = conf.parent / "pool_passwd"
    path.write_text("u:TEXTold\n")
    path.chmod(0o644)
    assert run(capsys, "passwd", "-c", str(conf), "-m", "text", "u", SECRET)[0] == 0
    assert mode(path) == 0o600
    assert run(capsys, "check", "-c", str(conf))[0] == 0


def test_genkey(tmp_path, capsys):
    key = tmp_path / "newkey"
    code, out, _ = run(capsys, "passwd", "--genkey", str(key))
    assert (code, out) == (0, f"pgtwist: wrote a new key to {key}\n")
    assert mode(key) == 0o600
    text = read_key_file(str(key))
    assert len(text) >= 40 and "\n" not in text
    code, _, err = run(capsys, "passwd", "--genkey", str(key))
    assert code == 1 and "exists; not replacing it" in err
    assert read_key_file(str(key)) == text
    assert run(capsys, "passwd", "--genkey", str(tmp_path / "k2"), "user")[0] == 1
    path = tmp_path / "pool_passwd"
    assert run(capsys, "passwd", "-f", str(path), "-k", str(key), "-m", "aes", "u", SECRET)[0] == 0
    assert load_pool_passwd(str(path), key_file=str(key))["u"].plaintext() == SECRET


def test_check_still_works_and_validates_hba_and_passwd(conf, capsys):
    assert run(capsys, "check", "-c", str(conf))[0] == 0
    hba = conf.parent / "pool_hba.conf"
    hba.write_text("host all all all md5\nhost all all somehost md5\n")
    conf.write_text(conf.read_text() + "enable_pool_hba: on\n")
    code, _, err = run(capsys, "check", "-c", str(conf))
    assert code == 1 and f"{hba}:2: host name 'somehost'" in err
    hba.write_text("host all all all md5\n")
    assert run(capsys, "check", "-c", str(conf))[0] == 0
    passwd = conf.parent / "pool_passwd"
    passwd.write_text(f"u:AES{aes_encrypt(SECRET, 'k1')}\n")
    passwd.chmod(0o600)
    (conf.parent / "pgpoolkey").write_text("k2\n")
    (conf.parent / "pgpoolkey").chmod(0o600)
    code, _, err = run(capsys, "check", "-c", str(conf))
    assert code == 1 and f"{passwd}:1: user 'u': cannot decrypt" in err


def test_check_warns_about_aes_entries_without_a_key(conf, capsys, monkeypatch, tmp_path):
    monkeypatch.delenv("PGPOOLKEYFILE", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    passwd = conf.parent / "pool_passwd"
    passwd.write_text(f"u:AES{aes_encrypt(SECRET, 'k1')}\n")
    passwd.chmod(0o600)
    code, _, err = run(capsys, "check", "-c", str(conf))
    assert code == 0
    assert "no AES key file found, so the pool_passwd entries of u cannot be used" in err


def test_check_names_settings_that_have_no_effect(conf, capsys):
    conf.write_text(conf.read_text() + "memory_cache_enabled: on\n")
    code, _, err = run(capsys, "check", "-c", str(conf))
    assert code == 0
    assert "pgtwist: warning: memory_cache_enabled: " in err and "has no effect" in err
