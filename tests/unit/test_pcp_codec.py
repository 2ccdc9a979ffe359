"""PCP packets, pcp.conf and one connection's login, bytes in and bytes out.

The expected bytes were captured between the Debian pcp_* 4.3.5 tools and a real
Pgpool-II 4.3.5 (docs/pcp.md), less the F/L (source file and line) fields pgtwist omits.
"""

from __future__ import annotations

import struct

import pytest

from pgtwist.pcp import codec
from pgtwist.pcp.conf import PcpConfError, parse_pcp_conf, read_pcp_conf
from pgtwist.pcp.machine import Close, Command, LoginRefused, PcpMachine, Write

SALT = b"$ed\xca"
ADMIN_MD5 = "5ebe2294ecd0e0f08eab7690d2a6ee69"   # pg_md5 secret


def test_packet_and_reply_layout():
    assert codec.packet("m", SALT) == b"m\x00\x00\x00\x08$ed\xca"
    assert codec.reply("r", "AuthenticationOK") == b"r\x00\x00\x00\x15AuthenticationOK\x00"
    assert codec.reply("l", "CommandComplete", 2) == b"l\x00\x00\x00\x16CommandComplete\x002\x00"
    assert codec.array_size_binary("b", 152) == b"b\x00\x00\x00\x12ArraySize\x00\x00\x00\x00\x98"


def test_error_packet_is_an_error_response_body():
    assert codec.error("ERROR", "informing node info failed", "invalid node ID : 5") == (
        b"E\x00\x00\x00\x44SERROR\x00CXX000\x00Minforming node info failed\x00"
        b"Dinvalid node ID : 5\x00\x00")
    assert codec.error("FATAL", "m") == b"E\x00\x00\x00\x16SFATAL\x00CXX000\x00Mm\x00\x00"


def test_hash_matches_the_real_client():
    # Captured: pcp_node_count -U admin with password "secret" answered salt $ed\xca so.
    assert codec.client_hash("secret", "admin", SALT) == "b4c09704d30312392ada1a7c6cdbd236"
    assert codec.expected_hash(ADMIN_MD5, "admin", SALT) == "b4c09704d30312392ada1a7c6cdbd236"


def test_reader_splits_and_joins_packets():
    r = codec.PacketReader()
    assert r.feed(b"M\x00\x00") == []
    assert r.feed(b"\x00\x04I\x00\x00\x00\x060") == [("M", b"")]
    assert r.feed(b"\x00X\x00\x00\x00\x04") == [("I", b"0\x00"), ("X", b"")]


@pytest.mark.parametrize("header, length", [
    (b"M\x00\x00\x00\x00", 0), (b"M\xff\xff\xff\xff", -1), (b"hello", 1701604463),
    (b"L\x00\x00\x01\x04", 260), (b"L\x00\x00\x00\x03", 3),
])
def test_reader_refuses_bad_lengths_from_the_header(header, length):
    reader = codec.PacketReader()
    assert reader.feed(b"M\x00\x00\x00\x04" + header + b"rest") == [("M", b"")]
    assert (reader.error.message, reader.error.detail) == (
        "invalid PCP packet", f"incorrect packet length ({length})")
    assert reader.feed(b"M\x00\x00\x00\x04") == []


def test_reader_takes_the_longest_allowed_packet():
    body = b"a" * 255
    assert codec.PacketReader().feed(b"L" + struct.pack("!i", 259) + body) == [("L", body)]


def test_split_strings():
    assert codec.split_strings(b"admin\x00abc\x00") == ["admin", "abc"]
    assert codec.split_strings(b"0") == ["0"]
    assert codec.split_strings(b"") == []


# -- pcp.conf ------------------------------------------------------------------------------

def test_pcp_conf_lines_comments_and_blanks():
    text = f"# users\n\nadmin:{ADMIN_MD5}\n  ops:{ADMIN_MD5.upper()}  \n"
    assert parse_pcp_conf(text) == {"admin": ADMIN_MD5, "ops": ADMIN_MD5}


@pytest.mark.parametrize("line", ["admin", f":{ADMIN_MD5}", "admin:secret", "a" * 129 + ":" + ADMIN_MD5])
def test_pcp_conf_malformed_line_names_its_number(line):
    with pytest.raises(PcpConfError, match=r"pcp.conf:2: expected username:md5hex"):
        parse_pcp_conf(f"# x\n{line}\n")


def test_pcp_conf_missing_or_unset(tmp_path):
    with pytest.raises(PcpConfError, match="pcp.conf does not exist"):
        read_pcp_conf(str(tmp_path / "pcp.conf"))
    with pytest.raises(PcpConfError, match="disabled"):
        read_pcp_conf("")


def test_pcp_conf_must_be_closed_to_others(tmp_path):
    path = tmp_path / "pcp.conf"
    path.write_text(f"admin:{ADMIN_MD5}\n")
    path.chmod(0o600)
    assert read_pcp_conf(str(path)) == {"admin": ADMIN_MD5}
    path.chmod(0o644)
    with pytest.raises(PcpConfError, match=r"pcp.conf is readable by (group or )?others"):
        read_pcp_conf(str(path))


# -- the connection machine -----------------------------------------------------------------

def machine(conf=None, failures=None):
    conf = {"admin": ADMIN_MD5} if conf is None else conf

    def credentials(user):
        if isinstance(conf, Exception):
            raise conf
        return conf.get(user)

    return PcpMachine(credentials, lambda: SALT,
                      lambda user, why: failures.append((user, why)) if failures is not None
                      else None)


def login(m, user="admin", password="secret"):
    assert m.receive(b"M\x00\x00\x00\x04") == [Write(b"m\x00\x00\x00\x08" + SALT)]
    body = user.encode() + b"\0" + codec.client_hash(password, user, SALT).encode() + b"\0"
    return m.receive(b"R" + struct.pack("!i", len(body) + 4) + body)


def fatal(message, detail):
    return [Write(codec.error("FATAL", message, detail)), Close()]


def test_login_then_command_then_x():
    m = machine()
    assert login(m) == [Write(b"r\x00\x00\x00\x15AuthenticationOK\x00")]
    assert m.receive(b"L\x00\x00\x00\x04I\x00\x00\x00\x07-1\x00") == [
        Command("L", b""), Command("I", b"-1\x00")]
    assert m.receive(b"X\x00\x00\x00\x04L\x00\x00\x00\x04") == [Close()]
    assert m.receive(b"L\x00\x00\x00\x04") == []


@pytest.mark.parametrize("user, password", [("admin", "wrong"), ("ghost", "secret")])
def test_bad_credentials_are_fatal_with_pgpools_words(user, password):
    failures = []
    m = machine(failures=failures)
    assert login(m, user, password) == fatal(f'authentication failed for user "{user}"',
                                             "username and/or password does not match")
    assert m.closed and failures[0][0] == user
    assert m.receive(b"L\x00\x00\x00\x04") == []


def test_unusable_pcp_conf_refuses_and_says_why_only_in_the_log():
    failures = []
    m = machine(LoginRefused("/etc/pcp.conf: No such file or directory"), failures)
    assert login(m) == fatal('authentication failed for user "admin"',
                             "username and/or password does not match")
    assert failures == [("admin", "/etc/pcp.conf: No such file or directory")]


def test_password_without_salt_is_refused():
    m = machine()
    assert m.receive(b"R\x00\x00\x00\x0eadmin\x00abcde\x00") == fatal(
        "authentication failed", "username and/or password does not match")


def test_a_salt_serves_one_try():
    m = machine()
    login(m, password="wrong")
    m2 = machine()
    m2.receive(b"M\x00\x00\x00\x04")
    body = b"admin\x00" + codec.client_hash("secret", "admin", SALT).encode() + b"\x00"
    packet = b"R" + struct.pack("!i", len(body) + 4) + body
    assert m2.receive(packet)[0] == Write(codec.reply("r", "AuthenticationOK"))
    assert m2.receive(packet) == fatal("authentication failed",
                                       "username and/or password does not match")


def test_command_before_login_is_fatal():
    assert machine().receive(b"L\x00\x00\x00\x04") == fatal(
        "authentication failed for new PCP connection", "connection not authorized")


@pytest.mark.parametrize("letter", ["Q", "l", "A", "W"])
def test_unknown_letter_after_login_is_fatal(letter):
    m = machine()
    login(m)
    assert m.receive(letter.encode() + b"\x00\x00\x00\x04L\x00\x00\x00\x04") == fatal(
        "PCP processing request", f'unknown PCP packet type "{letter}"')


def test_bad_length_after_good_packets_answers_those_first():
    m = machine()
    login(m)
    assert m.receive(b"L\x00\x00\x00\x04L\x00\x00\x01\x2c") == [
        Command("L", b""), *fatal("invalid PCP packet", "incorrect packet length (300)")]


def test_garbage_is_a_bad_length():
    assert machine().receive(b"hello world\n") == fatal(
        "invalid PCP packet", "incorrect packet length (1701604463)")
