"""Log lines cannot be forged by client-chosen text (security review S6)."""

from __future__ import annotations

from twisted.logger import formatEvent

from pgtwist import logs


def test_escape_controls_keeps_one_line():
    assert logs.escape_controls("a\r\nb\x1b[2K\tc\u2028d\x85e\x7f") == (
        "a\\r\\nb\\x1b[2K\\tc\\u2028d\\x85e\\x7f")
    text = "plain text, ünïcode"
    assert logs.escape_controls(text) is text


def test_observer_escapes_fields_but_not_the_failure_or_format():
    seen = []
    observer = logs._EscapingObserver(seen.append)
    event = {"log_format": "login as {user} failed", "user": "x\r2026 [pgtwist] FORGED",
             "log_failure_text": "Traceback\n  line", "pid": 7}
    observer(event)
    (got,) = seen
    assert formatEvent(got) == "login as x\\r2026 [pgtwist] FORGED failed"
    assert got["log_failure_text"] == "Traceback\n  line"
    assert got["pid"] == 7
    assert event["user"] == "x\r2026 [pgtwist] FORGED"  # other observers get the original


def test_observer_passes_clean_events_unchanged():
    seen = []
    event = {"log_format": "{a}", "a": "clean"}
    logs._EscapingObserver(seen.append)(event)
    assert seen == [event] and seen[0] is event
