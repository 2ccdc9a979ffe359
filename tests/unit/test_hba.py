"""pool_hba.conf: every field form, errors with line numbers, first-match semantics."""

from __future__ import annotations

import ipaddress

import pytest

from pgtwist.auth.addresses import default_local_addresses, default_local_networks
from pgtwist.auth.hba import (
    ALL,
    SAMEHOST,
    SAMENET,
    SAMEUSER,
    HbaError,
    HbaRule,
    Keyword,
    match,
)
from pgtwist.auth.hba_parse import load_hba, parse_hba

net = ipaddress.ip_network


def one(text: str) -> HbaRule:
    (rule,) = parse_hba(text)
    return rule


def errors_of(text: str, path: str = "pool_hba.conf") -> list[str]:
    with pytest.raises(HbaError) as info:
        parse_hba(text, path)
    assert str(info.value) == "\n".join(info.value.errors)
    return info.value.errors


def first(rules, **kw):
    kw.setdefault("conn_type", "host")
    kw.setdefault("ssl", False)
    kw.setdefault("database", "app")
    kw.setdefault("user", "alice")
    kw.setdefault("client_ip", "10.0.0.1")
    return match(rules, **kw)


# --- parsing: record types and fields --------------------------------------------------------


def test_local_record():
    rule = one("local all all trust\n")
    assert rule == HbaRule(1, "local", ("all",), ("all",), None, "trust", {})
    assert isinstance(rule.databases[0], Keyword) and isinstance(rule.users[0], Keyword)


@pytest.mark.parametrize("conn_type", ["host", "hostssl", "hostnossl"])
def test_host_record_types(conn_type):
    rule = one(f"{conn_type} app bob 10.0.0.0/8 md5")
    assert (rule.conn_type, rule.databases, rule.users) == (conn_type, ("app",), ("bob",))
    assert rule.address == net("10.0.0.0/8")
    assert rule.method == "md5"


def test_comma_lists_with_and_without_spaces_after_commas():
    rule = one("host db1,db2, db3 u1,u2 all scram-sha-256")
    assert rule.databases == ("db1", "db2", "db3")
    assert rule.users == ("u1", "u2")
    assert rule.address is ALL


def test_address_forms():
    assert one("host all all 192.168.1.7/32 md5").address == net("192.168.1.7/32")
    assert one("host all all 192.168.1.7/24 md5").address == net("192.168.1.0/24")  # host bits
    assert one("host all all ::1/128 md5").address == net("::1/128")
    assert one("host all all fd00::/8 md5").address == net("fd00::/8")
    assert one("host all all 0.0.0.0/0 md5").address == net("0.0.0.0/0")
    assert one("host all all 10.1.0.0 255.255.0.0 md5").address == net("10.1.0.0/16")
    assert one("host all all 10.1.2.3 255.255.255.255 md5").address == net("10.1.2.3/32")
    assert one("host all all fe80:: ffff:ffff:ffff:ffff:: md5").address == net("fe80::/64")
    assert one("host all all all md5").address is ALL
    assert one("host all all samehost md5").address is SAMEHOST
    assert one("host all all samenet md5").address is SAMENET


def test_methods_and_options():
    for method in ("trust", "reject", "password", "md5", "scram-sha-256"):
        assert one(f"host all all all {method}").method == method
    rule = one("hostssl all all all cert clientname=CN map=x,extra=a=b")
    assert rule.method == "cert"
    assert dict(rule.options) == {"clientname": "CN", "map": "x", "extra": "a=b"}
    assert dict(one("local all all md5 a=1 a=2").options) == {"a": "2"}  # the last one wins


def test_comments_blank_lines_and_crlf():
    rules = parse_hba(
        "# TYPE DATABASE USER ADDRESS METHOD\n\n   \t\r\n"
        "local all all trust # trailing comment\r\n"
        "host all all 10.0.0.0/8 md5#glued comment\n"
    )
    assert [(r.line, r.method) for r in rules] == [(4, "trust"), (5, "md5")]


def test_line_continuation_keeps_the_first_line_number():
    rules = parse_hba("# c\nhost app,\\\n  other alice \\\n 10.0.0.0/8 \\\nmd5\nlocal all all reject\n")
    assert [(r.line, r.databases, r.address) for r in rules] == [
        (2, ("app", "other"), net("10.0.0.0/8")),
        (6, ("all",), None),
    ]


def test_continued_comment_swallows_the_next_line():
    (rule,) = parse_hba("# a comment \\\nhost all all all trust\nlocal all all md5\n")
    assert (rule.line, rule.method) == (3, "md5")


# --- quoting ---------------------------------------------------------------------------------


def test_quoted_keywords_are_plain_names():
    rule = one('host "all" "all" all md5')
    assert rule.databases == ("all",) and rule.users == ("all",)
    assert not isinstance(rule.databases[0], Keyword)
    assert not isinstance(rule.users[0], Keyword)
    assert first([rule], database="app", user="alice") is None
    assert first([rule], database="all", user="all") is rule
    assert one('host "sameuser" all all md5').databases == ("sameuser",)


def test_quotes_protect_blanks_commas_and_hashes():
    rule = one('host "my db","a,b" "o""brien",x all md5 # c')
    assert rule.databases == ("my db", "a,b")
    assert rule.users == ('o"brien', "x")
    rule = one('local "db # not a comment" all trust')
    assert rule.databases == ("db # not a comment",)
    assert one('local ""  all trust').databases == ("",)
    assert one('local a"b c"d all trust').databases == ("ab cd",)


def test_quoted_address_keyword_is_an_error():
    assert errors_of('host all all "all" md5') == [
        "pool_hba.conf:1: host name 'all': host names are not supported by pgtwist (they need "
        "DNS look-ups for every connection); use an address in CIDR form, all, samehost or "
        "samenet"
    ]


# --- errors ----------------------------------------------------------------------------------


BAD = {
    "hosts all all all md5":
        "invalid connection type 'hosts' (expected local, host, hostssl or hostnossl)",
    "host,local all all all md5": "multiple values given for the connection type",
    "local": "end of line before the database field",
    "local all": "end of line before the user field",
    "local all all": "end of line before the authentication method",
    "host all all": "end of line before the address field",
    "host all all 10.0.0.0/8": "end of line before the authentication method",
    "host all all 10.0.0.0/8,::1/128 md5": "multiple values given for the address",
    "host all all 10.0.0.0/33 md5": "invalid CIDR mask in address '10.0.0.0/33'",
    "host all all 10.0.0.0/x md5": "invalid CIDR mask in address '10.0.0.0/x'",
    "host all all ::1/129 md5": "invalid CIDR mask in address '::1/129'",
    "host all all db.example.com/24 md5":
        "invalid IP address in 'db.example.com/24' (host names are not supported)",
    "host all all 10.0.0.1 md5":
        "address 10.0.0.1 needs a CIDR mask (10.0.0.1/32) or a netmask field, got 'md5'",
    "host all all 10.0.0.1":
        "address 10.0.0.1 needs a CIDR mask (10.0.0.1/32) or a netmask field",
    "host all all 10.0.0.0 255.0.255.0 md5":
        "invalid netmask 255.0.255.0 (its one bits must be contiguous)",
    "host all all 10.0.0.0 ffff:: md5":
        "IP address 10.0.0.0 and netmask ffff:: are not of the same family",
    "host all all 10.0.0.0 255.0.0.0": "end of line before the authentication method",
    "local all all md5,trust": "multiple values given for the authentication method",
    "local all all MD5": "unknown authentication method 'MD5' (expected cert, md5, password, "
                         "reject, scram-sha-256, trust)",
    "local all all peer": "method peer is not supported by pgtwist",
    "host all all all ldap ldapserver=x": "method ldap is not supported by pgtwist",
    "host all all all pam": "method pam is not supported by pgtwist",
    "host all all all gss": "method gss is not supported by pgtwist",
    "host all all all ident": "method ident is not supported by pgtwist",
    "host all all all cert": "method cert is only available on hostssl records",
    "local all all md5 novalue": "authentication option 'novalue' is not in name=value form",
    "local all all md5 =x": "authentication option '=x' is not in name=value form",
    "local all +admins md5": "group membership '+admins' is not supported by Pgpool-II or "
                             "pgtwist (list the users, or quote a name that starts with +)",
    "local samerole all md5": "database keyword samerole is not supported by Pgpool-II or pgtwist",
    "local samegroup all md5":
        "database keyword samegroup is not supported by Pgpool-II or pgtwist",
    "local /^app all md5": "regular expression '/^app' is not supported by Pgpool-II or pgtwist "
                           "(quote the name if it really starts with /)",
    "local all /^a md5": "regular expression '/^a' is not supported by Pgpool-II or pgtwist "
                         "(quote the name if it really starts with /)",
    'local "all all trust': "unterminated quoted string",
    "local a,,b all trust": "empty item in a comma-separated list",
    "local a, all,": "comma-separated list ends with a comma",
}


@pytest.mark.parametrize("line", list(BAD))
def test_bad_records(line):
    assert errors_of(f"# header\n{line}\n") == [f"pool_hba.conf:2: {BAD[line]}"]


def test_host_names_are_rejected_clearly():
    for address in ("db.example.com", ".example.com", "localhost"):
        (error,) = errors_of(f"host all all {address} md5", "/etc/pgpool/pool_hba.conf")
        assert error.startswith(f"/etc/pgpool/pool_hba.conf:1: host name {address!r}: host "
                                "names are not supported by pgtwist")


def test_every_bad_line_is_reported_with_its_number():
    errors = errors_of(
        "local all all trust\n"
        "host all all 10.0.0.0/8 peer\n"
        "# fine\n"
        "host all all nowhere.example md5\n"
        "hostssl all all all md5\n"
        "bogus\n",
        "/x/pool_hba.conf",
    )
    assert [e.split(": ", 1)[0] for e in errors] == [
        "/x/pool_hba.conf:2", "/x/pool_hba.conf:4", "/x/pool_hba.conf:6",
    ]


def test_plus_and_slash_are_fine_when_quoted_and_plus_in_database_is_a_name():
    rule = one('local +db "+admins","/x" md5')
    assert rule.databases == ("+db",)
    assert rule.users == ("+admins", "/x")


def test_empty_file_is_an_error():
    assert errors_of("# only comments\n\n") == [
        "pool_hba.conf: contains no records, so every connection would be rejected"
    ]


# --- @file includes --------------------------------------------------------------------------


def test_include_files(tmp_path):
    (tmp_path / "dbs").write_text("# databases\nsales, \"all\"\nhr\n")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "users").write_text("alice @more\n")
    (tmp_path / "sub" / "more").write_text("bob\n")  # relative to sub/users
    hba = tmp_path / "pool_hba.conf"
    hba.write_text("host @dbs,extra @sub/users all md5\nlocal \"@dbs\" all trust\n")
    rule, literal = load_hba(str(hba))
    assert rule.databases == ("sales", "all", "hr", "extra")
    assert not isinstance(rule.databases[1], Keyword)
    assert rule.users == ("alice", "bob")
    assert literal.databases == ("@dbs",)


def test_missing_include_and_include_loop(tmp_path):
    hba = tmp_path / "pool_hba.conf"
    (tmp_path / "loop").write_text("x @loop\n")
    hba.write_text("local @absent all md5\nlocal @loop all md5\n")
    with pytest.raises(HbaError) as info:
        load_hba(str(hba))
    first_error, second_error = info.value.errors
    assert first_error.startswith(f"{hba}:1: cannot read included file @absent "
                                  f"({tmp_path / 'absent'}): ")
    assert second_error == f"{hba}:2: @loop: includes nested too deeply (a loop?)"


def test_load_hba_unreadable(tmp_path):
    with pytest.raises(HbaError, match=r"absent: cannot read: No such file"):
        load_hba(str(tmp_path / "absent"))
    with pytest.raises(HbaError, match=r": cannot read: Is a directory"):
        load_hba(str(tmp_path))


# --- matching --------------------------------------------------------------------------------


def test_first_matching_rule_wins_and_no_match_is_none():
    rules = parse_hba(
        "host app alice 10.0.0.0/8 reject\n"
        "host app all 10.0.0.0/8 md5\n"
        "host all all 10.0.0.0/8 scram-sha-256\n"
    )
    assert first(rules, client_ip="10.1.2.3").line == 1
    assert first(rules, client_ip="10.1.2.3", user="bob").line == 2
    assert first(rules, client_ip="10.1.2.3", database="other").line == 3
    assert first(rules, client_ip="192.168.0.1") is None
    assert first((), client_ip="10.1.2.3") is None


def test_local_versus_host():
    rules = parse_hba("local all all trust\nhost all all all md5\n")
    assert first(rules, conn_type="local", client_ip=None).method == "trust"
    assert first(rules, conn_type="host", client_ip="127.0.0.1").method == "md5"
    assert first(parse_hba("local all all trust"), client_ip="127.0.0.1") is None
    assert first(parse_hba("host all all all md5"), conn_type="local", client_ip=None) is None
    with pytest.raises(ValueError):
        first(rules, conn_type="hostssl", client_ip="127.0.0.1")


def test_hostssl_and_hostnossl_follow_the_ssl_flag():
    rules = parse_hba("hostssl all all all scram-sha-256\nhostnossl all all all reject\n")
    assert first(rules, client_ip="10.0.0.1", ssl=True).method == "scram-sha-256"
    assert first(rules, client_ip="10.0.0.1", ssl=False).method == "reject"
    assert first(parse_hba("host all all all md5"), client_ip="10.0.0.1", ssl=True).method == "md5"
    assert first(parse_hba("hostssl all all all md5"), client_ip="10.0.0.1") is None
    assert first(parse_hba("hostnossl all all all md5"), client_ip="10.0.0.1", ssl=True) is None


def test_database_and_user_lists_sameuser():
    rules = parse_hba("host sameuser all all trust\nhost a,b x,y all md5\n")
    assert first(rules, client_ip="1.2.3.4", database="alice", user="alice").method == "trust"
    assert first(rules, client_ip="1.2.3.4", database="b", user="y").method == "md5"
    assert first(rules, client_ip="1.2.3.4", database="b", user="alice") is None
    assert first(rules, client_ip="1.2.3.4", database="c", user="x") is None
    assert one("local sameuser all md5").databases == (SAMEUSER,)


def test_names_match_case_sensitively():
    rules = parse_hba("host App Alice all md5")
    assert first(rules, client_ip="1.1.1.1", database="App", user="Alice") is not None
    assert first(rules, client_ip="1.1.1.1", database="app", user="Alice") is None
    assert first(rules, client_ip="1.1.1.1", database="App", user="alice") is None


def test_ipv4_ipv6_and_mapped_addresses():
    rules = parse_hba("host all all 10.0.0.0/8 md5\nhost all all fd00::/8 scram-sha-256\n")
    assert first(rules, client_ip="10.9.9.9").line == 1
    assert first(rules, client_ip="::ffff:10.9.9.9").line == 1  # IPv4-mapped IPv6
    assert first(rules, client_ip="fd12::5").line == 2
    assert first(rules, client_ip="fe80::1%eth0") is None  # zone dropped; no rule
    assert first(rules, client_ip="11.0.0.1") is None
    assert first(parse_hba("host all all ::1/128 md5"), client_ip="127.0.0.1") is None
    assert first(parse_hba("host all all 127.0.0.1/32 md5"), client_ip="::1") is None
    assert first(parse_hba("host all all fe80::/10 md5"), client_ip="fe80::1%eth0").line == 1


def test_address_rule_needs_a_client_address_but_all_does_not():
    rules = parse_hba("host all all 10.0.0.0/8 md5\nhost all all all trust\n")
    assert first(rules, client_ip=None).method == "trust"


def test_samehost_with_injected_addresses():
    rules = parse_hba("host all all samehost trust")
    local = {"192.0.2.10", "2001:db8::10"}
    assert first(rules, client_ip="192.0.2.10", local_addresses=local) is not None
    assert first(rules, client_ip="::ffff:192.0.2.10", local_addresses=local) is not None
    assert first(rules, client_ip="2001:db8::10", local_addresses=local) is not None
    assert first(rules, client_ip="192.0.2.11", local_addresses=local) is None
    assert first(rules, client_ip="192.0.2.10", local_addresses=set()) is None


def test_samenet_with_injected_networks():
    rules = parse_hba("host all all samenet trust")
    nets = ["192.0.2.0/24", ipaddress.ip_network("2001:db8::/64")]
    assert first(rules, client_ip="192.0.2.200", local_networks=nets) is not None
    assert first(rules, client_ip="::ffff:192.0.2.1", local_networks=nets) is not None
    assert first(rules, client_ip="2001:db8::abcd", local_networks=nets) is not None
    assert first(rules, client_ip="192.0.3.1", local_networks=nets) is None
    assert first(rules, client_ip="2001:db9::1", local_networks=nets) is None


def test_default_local_addresses_include_loopback():
    assert ipaddress.ip_address("127.0.0.1") in default_local_addresses()
    assert ipaddress.ip_address("::1") in default_local_addresses()
    nets = default_local_networks()
    assert ipaddress.ip_network("127.0.0.0/8") in nets
    for addr in default_local_addresses():
        assert any(addr.version == n.version and addr in n for n in nets)
    rules = parse_hba("host all all samehost trust\nhost all all samenet md5\n")
    assert first(rules, client_ip="127.0.0.1").method == "trust"
    assert first(rules, client_ip="::1").method == "trust"
    assert first(rules, client_ip="203.0.113.77") is None  # TEST-NET-3: not ours


def test_rule_repr_and_keyword_repr():
    rule = one("local all all trust")
    assert "Keyword('all')" in repr(rule)
    assert ALL == "all" and isinstance(ALL, str)
