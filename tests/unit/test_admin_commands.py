"""Admin command recognition (pgtwist.admin.match), PGPOOL SET/RESET values
(pgtwist.session.poolsettings) and the extended-protocol answers (pgtwist.session.adminq),
with literal values."""

from __future__ import annotations

import struct
from types import SimpleNamespace

import pytest

from pgtwist import admin
from pgtwist.logs import session_settings
from pgtwist.params import PARAMS
from pgtwist.session import adminq
from pgtwist.session.poolsettings import PoolSettings, SettingError
from pgtwist.session.state import Session
from pgtwist.wire import codes


@pytest.mark.parametrize("sql,expected", [
    ("SHOW pool_nodes", ("show", "pool_nodes")),
    ("  show POOL_PROCESSES ;  ", ("show", "pool_processes")),
    ("SHOW pool_pools;", ("show", "pool_pools")),
    ("SHOW pool_backend_stats", ("show", "pool_backend_stats")),
    ("SHOW pool_health_check_stats", ("show", "pool_health_check_stats")),
    ("SHOW pool_status", ("show", "pool_status")),
    ("SHOW POOL_VERSION;", ("show", "pool_version")),
    ("SHOW pool_cache", ("show", "pool_cache")),
    ("SHOW pgtwist_pool", ("show", "pgtwist_pool")),
    ("PGPOOL SHOW port", ("pgpool_show", "port")),
    ("pgpool show PORT;", ("pgpool_show", "port")),
    ('PGPOOL SHOW "delegate_IP"', ("pgpool_show", "delegate_IP")),
    ("PGPOOL SHOW ALL", ("pgpool_show", "all")),
    ("PGPOOL SET client_idle_limit = 350", ("pgpool_set", "client_idle_limit", "350")),
    ("PGPOOL SET client_idle_limit=350;", ("pgpool_set", "client_idle_limit", "350")),
    ("pgpool set log_min_messages to INFO", ("pgpool_set", "log_min_messages", "INFO")),
    ("PGPOOL SET log_line_prefix TO 'it''s'", ("pgpool_set", "log_line_prefix", "it's")),
    ("PGPOOL SET client_idle_limit TO DEFAULT", ("pgpool_set", "client_idle_limit", None)),
    ("PGPOOL SET client_idle_limit TO 'DEFAULT'",
     ("pgpool_set", "client_idle_limit", "DEFAULT")),
    ("PGPOOL RESET client_idle_limit", ("pgpool_reset", "client_idle_limit")),
    ("PGPOOL RESET ALL;", ("pgpool_reset", None)),
    ("PGTWIST EXPLAIN ROUTE select 1", ("explain", "select 1")),
    ("PGTWIST FROB", ("pgtwist", "PGTWIST FROB")),
])
def test_admin_commands_are_recognised(sql, expected):
    assert admin.match(sql) == expected


@pytest.mark.parametrize("sql", [
    "SHOW search_path", "SHOW pool_nosuch", "SHOW pool_nodes x", "PGPOOL FROB", "PGPOOL SHOW",
    "PGPOOL SET x", "PGPOOL SET x TO", "PGPOOL SHOW a b", "PGPOOL RESET", "SELECT 1",
    "pgtwistx", "PGPOOLSHOW port", "PGPOOL SET a TO b c",
])
def test_other_texts_go_to_the_server(sql):
    assert admin.match(sql) is None


def test_pool_settings_set_reset_default():
    params = {name: p.default for name, p in PARAMS.items()}
    ps = PoolSettings(params)
    ps.set("client_idle_limit", "350")
    ps.set("log_statement", "ON")
    ps.set("client_min_messages", "WARNING")
    ps.set("log_error_verbosity", "verbose")
    assert (ps.get("client_idle_limit"), ps.get("log_statement"),
            ps.get("client_min_messages")) == (350, True, "warning")
    assert ps.get("port") == params["port"]
    ps.set("client_idle_limit", None)
    assert ps.get("client_idle_limit") == 0
    ps.reset("log_statement")
    assert ps.get("log_statement") is False
    ps.reset_all()
    assert ps.overrides == {}


def test_pool_settings_read_values_as_the_configuration_does():
    """PGPOOL SET takes what the config file takes (units included), nothing else."""
    ps = PoolSettings({n: p.default for n, p in PARAMS.items()})
    ps.set("client_idle_limit", "5min")
    assert ps.get("client_idle_limit") == 300
    ps.set("log_statement", "yes")
    assert ps.get("log_statement") is True


@pytest.mark.parametrize("name,value,sqlstate,message", [
    ("nosuch", "1", "42704", 'unrecognized configuration parameter "nosuch"'),
    ("port", "1", "55P02", 'invalid Context, value for parameter "port" cannot be changed'),
    ("health_check_period1", "1", "55P02",
     'invalid Context, value for parameter "health_check_period1" cannot be changed'),
    ("client_idle_limit", "abc", "22023",
     'invalid value for parameter "client_idle_limit": "abc"'),
    ("client_idle_limit", "-5", "22023",
     'invalid value for parameter "client_idle_limit": "-5"'),
    ("log_statement", "maybe", "22023", 'invalid value for parameter "log_statement": "maybe"'),
    ("log_backend_messages", "loud", "22023",
     'invalid value for parameter "log_backend_messages": "loud"'),
])
def test_pool_settings_errors(name, value, sqlstate, message):
    ps = PoolSettings({n: p.default for n, p in PARAMS.items()})
    with pytest.raises(SettingError) as caught:
        ps.set(name, value)
    assert (caught.value.sqlstate, caught.value.message) == (sqlstate, message)
    assert ps.overrides == {}


# -- the extended protocol ------------------------------------------------------------------------
class FakeOutbox:
    def __init__(self):
        self.sent = []

    def local(self, data, status=None, ready=True):
        self.sent.append((data, ready))


def frames(data: bytes) -> list[tuple[str, bytes]]:
    out, pos = [], 0
    while pos < len(data):
        (size,) = struct.unpack_from("!i", data, pos + 1)
        out.append((chr(data[pos]), data[pos + 5:pos + 1 + size]))
        pos += 1 + size
    return out


def bind_body(portal=b"", stmt=b"", params=(), result_formats=()):
    body = portal + b"\0" + stmt + b"\0" + struct.pack("!h", 0)
    body += struct.pack("!h", len(params))
    for p in params:
        body += struct.pack("!i", len(p)) + p
    body += struct.pack("!h", len(result_formats))
    body += b"".join(struct.pack("!h", f) for f in result_formats)
    return body


def make(session=None):
    proxy = SimpleNamespace(config=SimpleNamespace(params={n: p.default for n, p in
                                                            PARAMS.items()}),
                            cluster=SimpleNamespace(nodes=[]), sessions={})
    s = session or Session(pid=1, secret=2)
    out = FakeOutbox()
    return adminq.AdminQueries(s, out, proxy, router=None), out, s


def test_extended_pgpool_set_parse_bind_describe_execute_close():
    q, out, s = make()
    q.parse(b"st", ("pgpool_set", "client_idle_limit", "7"))
    q.bind(b"", b"st", bind_body())
    q.describe(ord("S"), b"st")
    q.describe(ord("P"), b"")
    q.execute(b"")
    q.close(ord("S"), b"st")
    codes_sent = [c for data, ready in out.sent for c, _ in frames(data)]
    assert codes_sent == ["1", "2", "t", "n", "n", "C", "3"]
    assert all(ready is False for _, ready in out.sent)
    assert s.pool_settings.get("client_idle_limit") == 7
    assert q.statements == {}


def test_extended_pgpool_show_describes_text_columns_in_the_bind_formats():
    q, out, s = make()
    q.parse(b"", ("pgpool_show", "client_idle_limit"))
    q.bind(b"p", b"", bind_body(b"p", result_formats=(1,)))
    q.describe(ord("P"), b"p")
    q.execute(b"p")
    msgs = [f for data, _ in out.sent for f in frames(data)]
    assert [c for c, _ in msgs] == ["1", "2", "T", "D", "C"]
    head = msgs[2][1]
    assert head[2:20] == b"client_idle_limit\0"
    assert struct.unpack_from("!IhIhih", head, 20) == (0, 0, 25, -1, -1, 1)
    assert msgs[3][1] == struct.pack("!hi", 1, 1) + b"0"
    assert msgs[4][1] == b"SELECT 1\0"


def test_extended_errors_skip_to_sync():
    q, out, s = make()
    q.parse(b"", ("pgpool_show", "nosuch"))
    q.bind(b"", b"", bind_body())
    q.execute(b"")
    (_code, body), = frames(out.sent[-1][0])
    assert b"C42704\0" in body and b'config variable "nosuch" not found' in body
    assert s.skip_until_sync and s.skip_status == codes.TXN_IDLE


def test_extended_bind_with_parameters_is_refused():
    q, out, s = make()
    q.parse(b"x", ("show", "pool_cache"))
    q.bind(b"", b"x", bind_body(params=[b"1"]))
    (_code, body), = frames(out.sent[-1][0])
    assert b"C08P01\0" in body
    assert b'bind message supplies 1 parameters, but prepared statement "x" requires 0' in body
    assert s.skip_until_sync and q.portals == {}


def test_extended_bad_bind_and_duplicate_names():
    q, out, s = make()
    q.parse(b"x", ("show", "pool_cache"))
    q.bind(b"", b"x", b"\0x\0\0")
    assert b"C08P01\0" in out.sent[-1][0] and s.skip_until_sync
    s.skip_until_sync = False
    q.parse(b"x", ("show", "pool_version"))
    assert b"C42P05\0" in out.sent[-1][0]
    assert q.statements == {b"x": ("show", "pool_cache")}
    q.bind(b"", b"x", bind_body(b"", b"x", result_formats=(7,)))
    assert b"C08P01\0" in out.sent[-1][0]


def test_unnamed_admin_statement_replaces_the_sessions_and_is_forgotten():
    q, out, s = make()
    s.statements[b""] = object()
    q.parse(b"", ("show", "pool_cache"))
    assert b"" not in s.statements and b"" in q.statements
    assert q.claims(b"S\0", 0, 2) and not q.claims(b"P\0", 0, 2)
    q.forget(b"")
    assert not q.claims(b"S\0", 0, 2)


def test_pgpool_set_client_idle_limit_reaches_the_sessions_relay():
    q, out, s = make()
    limits = []
    relay = SimpleNamespace(idle_limit=0.0)

    def set_idle_limit(seconds):
        limits.append(seconds)
        relay.idle_limit = seconds

    relay.set_idle_limit = set_idle_limit
    logsets = []
    relay.set_log_settings = lambda: logsets.append(session_settings(s).statement)
    q.proxy.sessions[s.pid] = relay
    q.query(("pgpool_set", "client_idle_limit", "5"))
    q.query(("pgpool_set", "log_statement", "on"))          # no change to the limit
    q.query(("pgpool_reset", None))
    assert limits == [5.0, 0.0]
    assert logsets == [False, True, False]  # the session's own log_statement, then reset
    assert [c for data, _ in out.sent for c, _ in frames(data)] == ["C", "C", "C"]
    assert all(ready for _, ready in out.sent)   # the outbox adds their ReadyForQuery


def test_pgpool_set_of_a_parameter_pgtwist_does_not_apply_says_so():
    """Accepted (Pgpool-II compatibility) and shown by PGPOOL SHOW, but the client is told
    it changes nothing; the ones pgtwist applies get no notice."""
    q, out, s = make()
    q.query(("pgpool_set", "check_unlogged_table", "off"))
    q.query(("pgpool_set", "client_min_messages", "warning"))
    q.query(("pgpool_set", "log_statement", "on"))
    sent = [[c for c, _ in frames(data)] for data, _ in out.sent]
    assert sent == [["N", "C"], ["N", "C"], ["C"]]
    first = out.sent[0][0]
    assert b'"check_unlogged_table"' in first and b"does not apply it" in first
    assert s.pool_settings.get("check_unlogged_table") is False
