"""pool_passwd parsing: entry kinds, comments, errors that never show the secret."""

from __future__ import annotations

import pytest

from pgtwist.auth.passwd import PasswdEntry, PasswdError, load_pool_passwd, parse_pool_passwd

MD5 = "md5" + "0123456789abcdef" * 2


def write(tmp_path, text: str) -> str:
    path = tmp_path / "pool_passwd"
    path.write_text(text)
    return str(path)


def test_entry_kinds(tmp_path):
    path = write(tmp_path, "\n".join([
        f"alice:{MD5}",
        "bob:AESxOl9MOkTYxA2JD1ZbrmaDQ==",
        "carol:TEXTs3cr:et",
        "dave:SCRAM-SHA-256$4096:c2FsdA==$c3RvcmVk:c2VydmVy",
        "erin:plain words",
        "frank:md5notahash",
    ]) + "\n")
    entries = load_pool_passwd(path)
    assert entries["alice"] == PasswdEntry("alice", "md5", MD5)
    assert entries["bob"] == PasswdEntry("bob", "aes", "xOl9MOkTYxA2JD1ZbrmaDQ==")
    assert entries["carol"] == PasswdEntry("carol", "text", "s3cr:et")
    assert entries["dave"].kind == "scram"
    assert entries["dave"].secret.startswith("SCRAM-SHA-256$4096:")
    assert entries["erin"] == PasswdEntry("erin", "text", "plain words")
    assert entries["frank"] == PasswdEntry("frank", "text", "md5notahash")


def test_plaintext():
    entries = parse_pool_passwd(f"a:TEXTpw\nb:pw2\nc:{MD5}\nd:AESabc=\ne:SCRAM-SHA-256$x\n")
    assert entries["a"].plaintext() == "pw"
    assert entries["b"].plaintext() == "pw2"
    assert entries["c"].plaintext() is None
    assert entries["d"].plaintext() is None  # needs the key file: not decrypted yet
    assert entries["e"].plaintext() is None


def test_md5_needs_exactly_32_hex_digits():
    entries = parse_pool_passwd(f"a:{MD5}0\nb:{MD5[:-1]}g\n")
    assert entries["a"].kind == entries["b"].kind == "text"


def test_comments_blank_lines_and_crlf():
    entries = parse_pool_passwd("# header\n\n   \n  # indented comment\r\nu:TEXTpw\r\n")
    assert list(entries) == ["u"]
    assert entries["u"].secret == "pw"


def test_password_may_contain_colons_first_entry_wins():
    entries = parse_pool_passwd("u:a:b:c\nu:other\n")
    assert entries["u"].secret == "a:b:c"


def test_malformed_line_names_file_and_line_not_secret(tmp_path):
    path = write(tmp_path, "# c\nok:TEXTfine\nhunter2-without-colon\n")
    with pytest.raises(PasswdError) as info:
        load_pool_passwd(path)
    assert str(info.value) == f"{path}:3: expected user:password"
    assert "hunter2" not in str(info.value)


def test_relative_name_in_message():
    with pytest.raises(PasswdError, match=r"^pool_passwd:1: expected user:password$"):
        parse_pool_passwd(":secret\n")
    with pytest.raises(PasswdError, match=r"^pool_passwd:2: empty password for user 'u'$"):
        parse_pool_passwd("a:b\nu:\n")


def test_missing_or_disabled_file(tmp_path):
    assert load_pool_passwd(str(tmp_path / "absent")) == {}
    assert load_pool_passwd("") == {}


def test_unreadable_file_is_an_error(tmp_path):
    with pytest.raises(PasswdError, match="cannot read"):
        load_pool_passwd(str(tmp_path))  # a directory


def test_invalid_utf8_names_line(tmp_path):
    path = tmp_path / "pool_passwd"
    path.write_bytes(b"a:b\nc:\xff\xfe\n")
    with pytest.raises(PasswdError, match=r":2: not valid UTF-8$"):
        load_pool_passwd(str(path))


def test_repr_hides_secret():
    entry = parse_pool_passwd("u:TEXThunter2\n")["u"]
    assert "hunter2" not in repr(entry)
