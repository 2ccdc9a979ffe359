"""pgtwist.logs' operator observer and settings, and a session's own lines
(pgtwist.sessionlog), from literal frames; no sockets."""

from __future__ import annotations

import io
import json
import os
import socket
from types import SimpleNamespace

from twisted.internet import defer
from twisted.internet.task import Clock
from twisted.logger import Logger, LogLevel

from pgtwist import logs
from pgtwist.session.state import Session
from pgtwist.sessionlog import SessionLog


class FakeReactor(Clock):
    """A clock whose thread pool runs a call at once, or never (``hang``)."""

    def __init__(self, hang: bool = False):
        super().__init__()
        self.hang = hang

    def getThreadPool(self):
        reactor = self

        class Pool:
            def callInThreadWithCallback(self, on_result, f, *args):
                if reactor.hang:
                    return
                try:
                    result = f(*args)
                except Exception as exc:  # noqa: BLE001 - as a thread pool reports it
                    on_result(False, defer.Failure(exc))
                else:
                    on_result(True, result)
        return Pool()

    def callFromThread(self, f, *args, **kw):
        f(*args, **kw)


def settings(**on) -> logs.LogSettings:
    s = logs.LogSettings()
    s.update({f"log_{k}": v for k, v in on.items()})
    return s


def session_log(reactor=None, user="alice", **on):
    s = Session(pid=77, secret=1, client_address="10.1.2.3:5000", client_ip="10.1.2.3")
    s.user, s.database = user, "shop"
    events: list[dict] = []
    slog = SessionLog(s, settings(**on), reactor or FakeReactor())
    slog.log = Logger(namespace="pgtwist.session", source=slog, observer=events.append)
    return slog, events


def said(events) -> list[tuple[str, str | None]]:
    return [(logs.format_event(e).split("  ", 1)[1].rstrip("\n").split("\n")[0],
             e.get("detail")) for e in events]


def frame(code: str, body: bytes):
    return ord(code), body


def feed(slog, *frames) -> None:
    buf = b""
    offsets = []
    for code, body in frames:
        buf += bytes([code]) + (len(body) + 4).to_bytes(4, "big")
        offsets.append((code, len(buf), len(buf) + len(body)))
        buf += body
    slog.frames(buf, offsets)


# -- settings -----------------------------------------------------------------------------------

def test_settings_follow_the_parameters_and_one_flag_says_whether_frames_are_wanted():
    s = logs.LogSettings()
    assert not s.frames and not s.connections
    s.update({"log_per_node_statement": True})
    assert s.frames and not s.statement
    s.update({"log_client_messages": True})
    assert s.frames and s.client_messages and not s.per_node_statement
    s.update({})
    assert not s.frames


def test_configure_updates_the_shared_settings_in_place():
    shared = logs.SETTINGS
    config = SimpleNamespace(log_min_messages="warning",
                             params={"log_statement": True, "log_line_prefix": "%p> "})
    try:
        logs.configure(config)
        assert logs.session_settings(object()) is shared and shared.statement
    finally:
        logs.configure(SimpleNamespace(log_min_messages="warning", params={}))
    assert not shared.statement


# -- the observer ---------------------------------------------------------------------------------

def test_process_events_carry_the_os_pid_and_process_type():
    out = io.StringIO()
    observer = logs.operator_observer(out)
    config = SimpleNamespace(log_min_messages="warning",
                             params={"log_line_prefix": "%a/%P/%p/%u: "})
    logs.configure(config)
    try:
        observer({"log_format": "node {node} marked down", "node": 1,
                  "log_level": LogLevel.warn, "log_namespace": "pgtwist.cluster",
                  "log_time": 0.0})
        observer({"log_format": "listening", "log_level": LogLevel.info,
                  "log_namespace": "pgtwist.service", "log_time": 0.0})
    finally:
        logs.configure(SimpleNamespace(log_min_messages="warning", params={}))
    pid = os.getpid()
    assert out.getvalue() == (
        f"sr_check_worker/WORKER/{pid}/[No Connection]: WARNING:  node 1 marked down\n"
        f"main/MAIN/{pid}/[No Connection]: LOG:  listening\n")


def test_session_events_carry_the_session_fields_escaped():
    slog, events = session_log(user="al\nice")
    slog.session.startup_params["application_name"] = "app\r1"
    slog.log.info("statement: {sql}", sql="select 1")
    rec, counter = logs.event_record(events[0])
    assert (rec.user, rec.database, rec.application_name) == ("al\\nice", "shop", "app\\r1")
    assert (rec.pid, rec.session, rec.process, rec.client) == (77, 77, "child", "10.1.2.3:5000")
    assert counter() == 1 and counter() == 2  # the session's own %l
    # the server-reported application_name (SET application_name) wins
    slog.session.parameters["application_name"] = "later"
    assert logs.event_record(events[0])[0].application_name == "later"


def test_json_observer_writes_one_object_per_event():
    out = io.StringIO()
    logs.configure(SimpleNamespace(log_min_messages="warning", params={"log_format": "json"}))
    try:
        slog, events = session_log()
        slog.log.info("statement: {sql}", sql="select 1")
        logs.operator_observer(out)(events[0])
    finally:
        logs.configure(SimpleNamespace(log_min_messages="warning", params={}))
    obj = json.loads(out.getvalue())
    assert obj["message"] == "statement: select 1" and obj["user"] == "alice"
    assert obj["session"] == 77 and obj["client"] == "10.1.2.3:5000"


# -- a session's lines ------------------------------------------------------------------------------

def test_client_messages_statements_and_never_a_password():
    slog, events = session_log(client_messages=True, statement=True)
    feed(slog, frame("p", b"hunter2\0"),
         frame("Q", b"ALTER ROLE a PASSWORD 'hunter2'\0"),
         frame("P", b"s1\0select $1\0\0\0"), frame("B", b"\0s1\0\0\0\0\0\0\0"),
         frame("E", b"\0\0\0\0\0"), frame("S", b""))
    assert said(events) == [
        ("Query message from frontend.", "query: \"ALTER ROLE a PASSWORD '***'\""),
        ("statement: ALTER ROLE a PASSWORD '***'", None),
        ("Parse message from frontend.", 'statement: "s1", query: "select $1"'),
        ("Bind message from frontend.", 'portal: "", statement: "s1"'),
        ("Execute message from frontend.", 'portal: ""'),
        ("statement: select $1", None),
        ("Sync message from frontend.", None),
    ]
    assert not any("hunter2" in logs.format_event(e) for e in events)


def test_execute_of_a_statement_parsed_before_logging_began_uses_the_sessions_text():
    slog, events = session_log(statement=True)
    slog.session.statements[b"old"] = SimpleNamespace(sql="select 'old'")
    feed(slog, frame("B", b"p1\0old\0\0\0\0\0\0\0"), frame("E", b"p1\0\0\0\0\0"))
    assert said(events) == [("statement: select 'old'", None)]
    feed(slog, frame("C", b"Pp1\0"), frame("E", b"p1\0\0\0\0\0"))
    assert said(events)[-1] == ("statement: ", None)


def test_copy_data_is_counted():
    slog, events = session_log(client_messages=True)
    feed(slog, frame("d", b"1\n"), frame("d", b"2\n"), frame("c", b""))
    assert [d for _, d in said(events)] == ["count: 1", "count: 2", None]


def test_per_node_line_and_its_switch():
    slog, events = session_log(per_node_statement=True)
    link = SimpleNamespace(node_id=1, backend_pid=4321)
    slog.per_node(link, "Parse: ", "ALTER ROLE a PASSWORD 'x'")
    assert said(events) == [
        ("DB node id: 1 backend pid: 4321 statement: Parse: ALTER ROLE a PASSWORD '***'", None)]
    assert events[0]["node"] == 1
    slog.settings.update({})
    slog.per_node(link, "", "select 1")
    assert len(events) == 1


def test_connection_authorized_and_disconnection_lines():
    reactor = FakeReactor()
    slog, events = session_log(reactor, connections=True, disconnections=True)
    slog.connected()
    slog.session.startup_params["application_name"] = "psql"
    slog.authorized()
    reactor.advance(3723.5)
    slog.disconnected()
    assert said(events) == [
        ("new connection received", "connecting host=10.1.2.3 port=5000"),
        ("connection authorized: user=alice database=shop application_name=psql", None),
        ("frontend disconnection: session time: 1:02:03.500 user=alice database=shop "
         "host=10.1.2.3 port=5000", None),
    ]


def test_no_lines_when_the_switches_are_off_or_no_startup_came():
    slog, events = session_log()
    slog.connected()
    slog.authorized()
    slog.disconnected()
    assert events == []
    slog, events = session_log(user="", disconnections=True)
    slog.disconnected()  # an SSL probe or a cancel request: no session to end
    assert events == []


def test_log_hostname_waits_for_the_lookup_and_falls_back_to_the_address(monkeypatch):
    names = {"10.1.2.3": ("db-client.example", [], ["10.1.2.3"])}

    def lookup(address):
        if address not in names:
            raise socket.herror("unknown host")
        return names[address]
    monkeypatch.setattr(logs.resolve_host, "__defaults__",
                        (lookup, logs.RESOLVE_TIMEOUT))
    slog, events = session_log(connections=True, disconnections=True, hostname=True)
    slog.connected()
    slog.disconnected()
    assert said(events)[0] == ("new connection received",
                               "connecting host=db-client.example port=5000")
    assert said(events)[1][0].endswith("host=db-client.example port=5000")
    del names["10.1.2.3"]
    slog, events = session_log(connections=True, hostname=True)
    slog.connected()
    assert said(events)[0][1] == "connecting host=10.1.2.3 port=5000"


def test_a_hung_lookup_times_out_to_the_address_and_authorized_waits_for_it():
    reactor = FakeReactor(hang=True)
    slog, events = session_log(reactor, connections=True, hostname=True)
    slog.connected()
    slog.authorized()
    assert events == []  # the connection line comes first, once the name is known
    reactor.advance(logs.RESOLVE_TIMEOUT)
    assert [m for m, _ in said(events)] == [
        "new connection received", "connection authorized: user=alice database=shop"]
    assert events[0]["detail"] == "connecting host=10.1.2.3 port=5000"
