"""pgtwist.logfmt: log_line_prefix escapes, text and JSON records, masking, message wording."""

from __future__ import annotations

import json
import struct
from datetime import timezone

import pytest

from pgtwist.logfmt import (
    LineFormatter,
    Record,
    client_message,
    compile_prefix,
    json_line,
    mask_secrets,
    session_time,
)

T0 = 1_765_000_000.25  # 2025-12-06 05:46:40.250 UTC


def rec(**kw) -> Record:
    base = {"time": T0, "level": "LOG", "message": "hello", "pid": 4242}
    return Record(**{**base, **kw})


def prefix(fmt: str, r: Record | None = None, line: int = 7) -> str:
    return LineFormatter(fmt, tz=timezone.utc).prefix(r or rec(), line)


# -- log_line_prefix ---------------------------------------------------------------------------

def test_every_escape_outside_a_session():
    assert prefix("%a|%p|%P|%t|%m|%d|%u|%l|%%") == (
        "main|4242|MAIN|2025-12-06 05:46:40|2025-12-06 05:46:40.250|"
        "[No Connection]|[No Connection]|7|%")


def test_every_escape_in_a_session():
    r = rec(process="child", process_name="CHILD", user="alice", database="shop",
            application_name="billing", session=99, pid=99)
    assert prefix("%a|%p|%P|%d|%u", r) == "billing|99|CHILD|shop|alice"
    # no application_name yet: the process type, as Pgpool-II's "child"
    assert prefix("%a", rec(process="child", application_name=None)) == "child"


def test_pgpool_default_prefix():
    assert prefix("%m: %a pid %p: ") == "2025-12-06 05:46:40.250: main pid 4242: "


def test_unknown_escapes_and_a_trailing_percent_are_dropped():
    assert prefix("[%x%q] %") == "[] "
    assert prefix("100%% %") == "100% "
    assert compile_prefix("") == ()
    assert compile_prefix("plain") == ("plain",)


# -- text lines ----------------------------------------------------------------------------------

def numbers(start: int = 0):
    n = [start]

    def next_line():
        n[0] += 1
        return n[0]
    return next_line


def test_text_line_with_detail_numbers_each_line():
    f = LineFormatter("%l: ", tz=timezone.utc)
    counter = numbers()
    text = f.format(rec(message="new connection received",
                        detail="connecting host=10.0.0.1 port=5000"), counter)
    assert text == ("1: LOG:  new connection received\n"
                    "2: DETAIL:  connecting host=10.0.0.1 port=5000\n")
    assert f.format(rec(level="WARNING", message="x"), counter) == "3: WARNING:  x\n"


def test_terse_verbosity_drops_detail_lines():
    f = LineFormatter("", tz=timezone.utc, terse=True)
    assert f.format(rec(message="m", detail="d"), numbers()) == "LOG:  m\n"


def test_a_traceback_follows_its_line():
    f = LineFormatter("> ", tz=timezone.utc)
    text = f.format(rec(level="FATAL", message="boom", traceback="Traceback:\n  x\n"), numbers())
    assert text == "> FATAL:  boom\nTraceback:\n  x\n"


# -- JSON ----------------------------------------------------------------------------------------

def test_json_record_has_time_level_message_and_the_set_fields():
    line = LineFormatter(fmt="json", tz=timezone.utc).format(
        rec(message="statement: select 1", session=99, pid=99, process="child", user="alice",
            database="shop", client="10.0.0.1:5000", node=1, application_name="app",
            namespace="pgtwist.session"), numbers())
    assert line.endswith("\n") and line.count("\n") == 1
    assert json.loads(line) == {
        "time": "2025-12-06T05:46:40.250+00:00", "level": "LOG",
        "message": "statement: select 1", "pid": 99, "process": "child", "session": 99,
        "user": "alice", "database": "shop", "application_name": "app",
        "client": "10.0.0.1:5000", "node": 1, "logger": "pgtwist.session"}


def test_json_record_omits_unset_fields_and_keeps_control_characters_inside_the_string():
    line = json_line(rec(message="a\nb\u2028c", detail="d", traceback="T\nb"), timezone.utc)
    assert line.count("\n") == 1
    obj = json.loads(line)
    assert obj["message"] == "a\nb\u2028c" and obj["detail"] == "d" and obj["traceback"] == "T\nb"
    assert "user" not in obj and "session" not in obj and "node" not in obj
    assert "detail" not in json.loads(json_line(rec(detail="d"), timezone.utc, terse=True))


def test_json_time_without_a_zone_is_local_with_its_offset():
    obj = json.loads(json_line(rec()))
    assert obj["time"][-6] in "+-" and obj["time"][10] == "T"


# -- masking -------------------------------------------------------------------------------------

@pytest.mark.parametrize("sql, masked", [
    ("ALTER ROLE bob PASSWORD 'hunter2'", "ALTER ROLE bob PASSWORD '***'"),
    ("alter user bob with encrypted password 'a''b' valid until 'infinity'",
     "alter user bob with encrypted password '***' valid until 'infinity'"),
    ("CREATE ROLE x LOGIN PASSWORD E'it\\'s' CONNECTION LIMIT 3",
     "CREATE ROLE x LOGIN PASSWORD '***' CONNECTION LIMIT 3"),
    ("CREATE USER x PASSWORD $pw$se'cret$pw$", "CREATE USER x PASSWORD '***'"),
    ("CREATE USER x PASSWORD $$s$$ ; select 1", "CREATE USER x PASSWORD '***' ; select 1"),
    ("ALTER ROLE x PASSWORD U&'d\\0061t'", "ALTER ROLE x PASSWORD '***'"),
    ("ALTER ROLE x PASSWORD 'never ends", "ALTER ROLE x PASSWORD '***'"),
    ("ALTER ROLE x PASSWORD\n\t'multi\nline'", "ALTER ROLE x PASSWORD\n\t'***'"),
    ("CREATE USER MAPPING FOR bob SERVER s OPTIONS (user 'bob', password 'pw')",
     "CREATE USER MAPPING FOR bob SERVER s OPTIONS (user 'bob', password '***')"),
    ("ALTER USER MAPPING FOR bob SERVER s OPTIONS (SET \"password\" 'pw')",
     "ALTER USER MAPPING FOR bob SERVER s OPTIONS (SET \"password\" '***')"),
    ("SELECT dblink_connect('host=h password=pw dbname=d')",
     "SELECT dblink_connect('host=h password=*** dbname=d')"),
    ("CREATE SUBSCRIPTION s CONNECTION 'password=pw' PUBLICATION p",
     "CREATE SUBSCRIPTION s CONNECTION 'password=***' PUBLICATION p"),
    ("UPDATE accounts SET password = 'pw' WHERE id = 1",
     "UPDATE accounts SET password = '***' WHERE id = 1"),
    ("ALTER ROLE a PASSWORD 'one'; ALTER ROLE b PASSWORD 'two'",
     "ALTER ROLE a PASSWORD '***'; ALTER ROLE b PASSWORD '***'"),
])
def test_password_literals_are_masked(sql, masked):
    assert mask_secrets(sql) == masked


@pytest.mark.parametrize("sql", [
    "ALTER ROLE bob PASSWORD NULL",
    "SELECT password_hash FROM users",
    "SELECT 'no secret here'",
    "SHOW password_encryption",
])
def test_texts_without_a_password_value_are_unchanged(sql):
    assert mask_secrets(sql) == sql


def test_unchanged_text_is_the_same_object():
    sql = "select 1"
    assert mask_secrets(sql) is sql


# -- log_client_messages wording (Pgpool-II 4.3) -----------------------------------------------

def cstr(*parts: str) -> bytes:
    return b"".join(p.encode() + b"\0" for p in parts)


@pytest.mark.parametrize("code, body, expected", [
    ("Q", cstr("select 1"), ("Query message from frontend.", 'query: "select 1"')),
    ("Q", cstr("ALTER ROLE a PASSWORD 'x'"),
     ("Query message from frontend.", "query: \"ALTER ROLE a PASSWORD '***'\"")),
    ("P", cstr("s1", "select $1") + b"\0\0",
     ("Parse message from frontend.", 'statement: "s1", query: "select $1"')),
    ("B", cstr("", "s1") + b"\0\0\0\0\0\0",
     ("Bind message from frontend.", 'portal: "", statement: "s1"')),
    ("D", b"S" + cstr("s1"), ("Describe message from frontend.", 'statement: "s1"')),
    ("D", b"P" + cstr(""), ("Describe message from frontend.", 'portal: ""')),
    ("C", b"S" + cstr("s1"), ("Close message from frontend.", 'statement: "s1"')),
    ("C", b"P" + cstr("p1"), ("Close message from frontend.", 'portal: "p1"')),
    ("E", cstr("") + b"\0\0\0\0", ("Execute message from frontend.", 'portal: ""')),
    ("F", struct.pack("!I", 1598) + b"\0\0",
     ("FunctionCall message from frontend.", 'oid: "1598"')),
    ("d", b"1\n", ("CopyData message from frontend.", "count: 3")),
    ("S", b"", ("Sync message from frontend.", None)),
    ("H", b"", ("Flush message from frontend.", None)),
    ("X", b"", ("Terminate message from frontend.", None)),
    ("c", b"", ("CopyDone message from frontend.", None)),
    ("f", cstr("oops"), ("CopyFail message from frontend.", None)),
])
def test_client_message_wording(code, body, expected):
    assert client_message(ord(code), body, copy_count=3) == expected


def test_password_and_sasl_messages_are_never_described():
    assert client_message(ord("p"), cstr("hunter2")) is None
    assert client_message(ord("p"), cstr("SCRAM-SHA-256") + b"\0\0\0\x05n,,n=") is None


def test_session_time():
    assert session_time(0.0084) == "0:00:00.008"
    assert session_time(3723.5) == "1:02:03.500"
    assert session_time(59.9999) == "0:01:00.000"
