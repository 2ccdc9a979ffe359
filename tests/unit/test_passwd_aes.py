"""pool_passwd AES entries and writers: EVP_BytesToKey, known vectors, pg_enc/pg_md5 parity."""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
import subprocess

import pytest

from pgtwist.auth.passwd import (
    PasswdEntry,
    PasswdError,
    aes_decrypt,
    aes_encrypt,
    encode_entry,
    evp_bytes_to_key,
    find_key_file,
    load_pool_passwd,
    parse_pool_passwd,
    read_key_file,
    write_entry,
)

# Computed with: printf hello | openssl enc -aes-256-cbc -md sha1 -nosalt -k secretkey -a
# (and equal to `pg_enc -K secretkey hello` from pgpool2 4.3.5).
VECTOR = ("secretkey", "hello", "TVTe6Y89KiLaE0PWkPIhgw==")


def test_evp_bytes_to_key_matches_openssl_known_answer():
    # `openssl enc -aes-256-cbc -md sha1 -nosalt -k secretkey -P` prints this key and IV.
    key, iv = evp_bytes_to_key(b"secretkey")
    assert key.hex().upper() == "9885F8AF04289135DF259E34BD22D17FE45EA81E583EE942A47F29465CC2D830"
    assert iv.hex().upper() == "BB9ADF977936DFCF58D9383D866EEBBF"


def test_evp_bytes_to_key_against_the_openssl_cli():
    if not shutil.which("openssl"):
        pytest.skip("the openssl command is not installed")
    out = subprocess.run(
        ["openssl", "enc", "-aes-256-cbc", "-md", "sha1", "-nosalt", "-k", "k3y", "-P"],
        capture_output=True, text=True, check=True,
    ).stdout
    fields = {k.strip(): v.strip() for k, _, v in (line.partition("=") for line in out.splitlines())}
    key, iv = evp_bytes_to_key(b"k3y")
    assert fields["key"] == key.hex().upper()
    assert fields["iv"] == iv.hex().upper()


def test_known_vector_both_ways():
    key, password, text = VECTOR
    assert aes_encrypt(password, key) == text
    assert aes_decrypt(text, key) == password
    assert encode_entry("anyone", password, "aes", key) == "AES" + text


@pytest.mark.parametrize("password", ["x", "exactly16bytes!!", "p@ss wörd:$HOME", "a" * 100])
def test_openssl_cli_ciphertext_decrypts(password):
    if not shutil.which("openssl"):
        pytest.skip("the openssl command is not installed")
    out = subprocess.run(
        ["openssl", "enc", "-aes-256-cbc", "-md", "sha1", "-nosalt", "-k", "my key", "-a", "-A"],
        input=password.encode(), capture_output=True, check=True,
    ).stdout.decode().strip()
    assert aes_decrypt(out, "my key") == password
    assert aes_encrypt(password, "my key") == out


def test_round_trip_unicode_and_long_keys():
    for key in ("", "k", "ключ", "x" * 255):
        for password in ("a", "päss wörd", "1234567890abcdef" * 3):
            assert aes_decrypt(aes_encrypt(password, key), key) == password


def test_wrong_key_or_corrupt_data_never_shows_the_secret():
    text = aes_encrypt("hunter2", "Zq9-right")
    for bad_key in ("Zq9-other", "Zq9-righ", "Zq9-right "):
        with pytest.raises(ValueError) as info:
            aes_decrypt(text, bad_key)
        assert "hunter2" not in str(info.value) and bad_key not in str(info.value)
    with pytest.raises(ValueError, match="not valid base64"):
        aes_decrypt("!!!!", "k")
    with pytest.raises(ValueError, match="wrong length"):
        aes_decrypt("AAAA", "k")


def test_pool_passwd_with_key_decrypts_and_wrong_key_names_file_and_line(tmp_path):
    path = tmp_path / "pool_passwd"
    path.write_text(f"# c\nalice:AES{aes_encrypt('s3cret', 'k1')}\nbob:TEXTpw\n")
    entries = load_pool_passwd(str(path), key="k1")
    assert entries["alice"].plaintext() == "s3cret"
    assert entries["alice"] == PasswdEntry("alice", "aes", aes_encrypt("s3cret", "k1"))
    assert "s3cret" not in repr(entries["alice"])
    assert entries["bob"].plaintext() == "pw"
    with pytest.raises(PasswdError) as info:
        load_pool_passwd(str(path), key="k2")
    assert str(info.value) == (f"{path}:2: user 'alice': cannot decrypt AES password "
                               "(wrong key or corrupt entry)")
    assert load_pool_passwd(str(path))["alice"].plaintext() is None  # no key: stays locked


def test_every_bad_line_is_reported():
    text = f"a:AES{aes_encrypt('x', 'other')}\nnocolon\nb:AESbad\n"
    with pytest.raises(PasswdError) as info:
        parse_pool_passwd(text, key="k")
    assert [line.split(": ")[0] for line in str(info.value).splitlines()] == [
        "pool_passwd:1", "pool_passwd:2", "pool_passwd:3",
    ]


def test_key_file_first_line_without_newline_cut_at_255_bytes(tmp_path):
    k = tmp_path / "key"
    k.write_bytes(b"first line\nsecond\n")
    assert read_key_file(str(k)) == "first line"
    k.write_bytes(b"no newline")
    assert read_key_file(str(k)) == "no newline"
    k.write_bytes(b"with cr\r\n")
    assert read_key_file(str(k)) == "with cr\r"  # pg_enc keeps the \r too
    k.write_bytes(b"\nsecond\n")
    assert read_key_file(str(k)) == ""  # pg_enc uses the empty first line
    k.write_bytes(b"a" * 300 + b"\n")
    assert read_key_file(str(k)) == "a" * 255
    k.write_bytes(b"")
    with pytest.raises(PasswdError, match=r"key: key file is empty$"):
        read_key_file(str(k))
    with pytest.raises(PasswdError, match=r"absent: cannot read key file: No such file"):
        read_key_file(str(tmp_path / "absent"))


def test_key_file_resolution(tmp_path):
    configured, env_file, home = tmp_path / "conf_key", tmp_path / "env_key", tmp_path / "home"
    home.mkdir()
    env = {"PGPOOLKEYFILE": str(env_file)}
    assert find_key_file(str(configured), env, str(home)) is None
    (home / ".pgpoolkey").write_text("h\n")
    assert find_key_file(str(configured), env, str(home)) == str(home / ".pgpoolkey")
    env_file.write_text("e\n")
    assert find_key_file(str(configured), env, str(home)) == str(env_file)
    configured.write_text("c\n")
    assert find_key_file(str(configured), env, str(home)) == str(configured)
    assert find_key_file(None, {}, str(home)) == str(home / ".pgpoolkey")


def test_load_with_key_file_falls_back_to_environment(tmp_path, monkeypatch):
    keyfile = tmp_path / "envkey"
    keyfile.write_text("env key\n")
    monkeypatch.setenv("PGPOOLKEYFILE", str(keyfile))
    path = tmp_path / "pool_passwd"
    path.write_text(f"u:AES{aes_encrypt('pw', 'env key')}\n")
    entries = load_pool_passwd(str(path), key_file=str(tmp_path / "missing"))
    assert entries["u"].plaintext() == "pw"


def test_key_file_is_not_read_without_aes_entries(tmp_path):
    path = tmp_path / "pool_passwd"
    path.write_text("u:TEXTpw\n")
    directory = tmp_path / "keydir"
    directory.mkdir()  # unreadable as a key file, but never needed
    assert load_pool_passwd(str(path), key_file=str(directory))["u"].plaintext() == "pw"


# --- writers ---------------------------------------------------------------------------------


def test_encode_entry_kinds():
    assert encode_entry("bob", "bobpw", "md5") == "md5" + hashlib.md5(b"bobpwbob").hexdigest()
    assert encode_entry("bob", "bobpw", "md5") == "md50f3f71a3dd77afe47f64231994dfd347"  # pg_md5
    assert encode_entry("bob", "pw", "text") == "TEXTpw"
    assert encode_entry("bob", "pw", "plain") == "pw"
    for kind in ("md5", "aes", "text", "plain"):
        secret = encode_entry("bob", "pass:word", kind, "k")
        entry = parse_pool_passwd(f"bob:{secret}\n", key="k")["bob"]
        assert entry.kind == {"plain": "text"}.get(kind, kind)
        if kind != "md5":
            assert entry.plaintext() == "pass:word"


def test_encode_entry_errors():
    with pytest.raises(ValueError, match="need a key"):
        encode_entry("u", "pw", "aes")
    with pytest.raises(ValueError, match="unknown entry kind 'sha'"):
        encode_entry("u", "pw", "sha")
    for user in ("", "a:b", "a\nb"):
        with pytest.raises(ValueError, match="user name"):
            encode_entry(user, "pw", "md5")
    for password in ("", "a\nb"):
        with pytest.raises(ValueError, match="password must be"):
            encode_entry("u", password, "text")
    for password in ("TEXTx", "AESabc", "md5" + "0" * 32, "SCRAM-SHA-256$x"):
        with pytest.raises(ValueError, match="use 'text'"):
            encode_entry("u", password, "plain")
    assert encode_entry("u", "md5short", "plain") == "md5short"


def test_write_entry_creates_0600_and_replaces_in_place(tmp_path):
    path = tmp_path / "pool_passwd"
    write_entry(str(path), "alice", "TEXTa")
    assert path.read_text() == "alice:TEXTa\n"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    path.write_text("# keep me\nalice:old\nbob:TEXTb\nalice:dead duplicate\ncarol:c")
    path.chmod(0o644)
    write_entry(str(path), "alice", "TEXTnew")
    assert path.read_text() == "# keep me\nalice:TEXTnew\nbob:TEXTb\ncarol:c\n"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    write_entry(str(path), "dave", "md5" + "1" * 32)
    assert path.read_text().endswith("carol:c\ndave:md5" + "1" * 32 + "\n")
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".pool_passwd")]


def test_write_entry_through_a_symlink_keeps_the_link(tmp_path):
    target = tmp_path / "real_passwd"
    target.write_text("a:b\n")
    link = tmp_path / "pool_passwd"
    link.symlink_to(target)
    write_entry(str(link), "c", "d")
    assert link.is_symlink()
    assert target.read_text() == "a:b\nc:d\n"


def test_write_entry_keeps_the_owner(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("only root can give a file to another user")
    path = tmp_path / "pool_passwd"
    path.write_text("a:b\n")
    os.chown(path, 65534, 65534)
    write_entry(str(path), "a", "c")
    assert (path.stat().st_uid, path.stat().st_gid) == (65534, 65534)


# --- compatibility with Pgpool-II's own tools ------------------------------------------------


def _pgpool_tool(name: str) -> str:
    found = shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/local/sbin")
    if not found:
        pytest.skip(f"{name} (Debian package pgpool2) is not installed: Pgpool-II parity unchecked")
    return found


@pytest.fixture
def pgpool_dir(tmp_path):
    (tmp_path / "pgpool.conf").write_text("pool_passwd = 'pool_passwd'\n")
    key = tmp_path / "pgpoolkey"
    key.write_text("a key with spaces and $ymbols\n")
    key.chmod(0o600)
    return tmp_path


PASSWORDS = {"alice": "s3cret", "bob": "pass word:with colon", "carol": "ünïcode-16bytes!"}


def test_pg_md5_entries_match(pgpool_dir):
    pg_md5 = _pgpool_tool("pg_md5")
    conf = str(pgpool_dir / "pgpool.conf")
    for user, password in PASSWORDS.items():
        subprocess.run([pg_md5, "-m", "-f", conf, "-u", user, password], check=True,
                       capture_output=True)
    entries = load_pool_passwd(str(pgpool_dir / "pool_passwd"))
    for user, password in PASSWORDS.items():
        assert entries[user].kind == "md5"
        assert entries[user].secret == encode_entry(user, password, "md5")


def test_pg_enc_entries_decrypt(pgpool_dir):
    pg_enc = _pgpool_tool("pg_enc")
    conf, key = str(pgpool_dir / "pgpool.conf"), str(pgpool_dir / "pgpoolkey")
    for user, password in PASSWORDS.items():
        subprocess.run([pg_enc, "-m", "-k", key, "-f", conf, "-u", user, password], check=True,
                       capture_output=True)
    entries = load_pool_passwd(str(pgpool_dir / "pool_passwd"), key_file=key)
    for user, password in PASSWORDS.items():
        assert entries[user].kind == "aes"
        assert entries[user].plaintext() == password
        assert "AES" + entries[user].secret == encode_entry(user, password, "aes",
                                                            read_key_file(key))


@pytest.mark.parametrize("password", ["hello", "exactly16bytes!!", "ü", "x" * 70])
def test_pg_enc_output_equals_encode_entry(pgpool_dir, password):
    pg_enc = _pgpool_tool("pg_enc")
    key = str(pgpool_dir / "pgpoolkey")
    out = subprocess.run([pg_enc, "-k", key, password], check=True, capture_output=True,
                         text=True).stdout
    (printed,) = [line.split(": ", 1)[1] for line in out.splitlines()
                  if line.startswith("pool_passwd string: ")]
    assert printed == encode_entry("ignored", password, "aes", read_key_file(key))


def test_pg_enc_key_file_quirks(tmp_path):
    pg_enc = _pgpool_tool("pg_enc")
    key = tmp_path / "k"
    for content in (b"\nsecond\n", b"crlf\r\n", b"b" * 300 + b"\n"):
        key.write_bytes(content)
        key.chmod(0o600)
        out = subprocess.run([pg_enc, "-k", str(key), "pw"], check=True, capture_output=True,
                             text=True).stdout
        printed = out.rsplit("pool_passwd string: ", 1)[1].split()[0]
        assert printed == encode_entry("u", "pw", "aes", read_key_file(str(key)))
