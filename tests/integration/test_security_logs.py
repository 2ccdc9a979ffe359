"""Security review 2026-12, suspected S6 (log forging), through a real twistd.

Names an unauthenticated client chooses (user, database) reach pgtwist's log lines, in
its own words and inside the server's error messages.  A newline or another control
character in them must not start a line of its own: a reader of the log, or a shipper
that splits it on newlines, would take the forged text for an entry pgtwist wrote.
"""

from __future__ import annotations

import time

import pytest

from .rawpg import RawClient, startup_packet

pytestmark = pytest.mark.integration

FORGED = "2026-12-06T00:00:00+0000 [pgtwist#info] FORGED"  # fits NAMEDATALEN


@pytest.mark.parametrize("field", ["user", "database"])
@pytest.mark.parametrize("sep", ["\n", "\r\n", "\r", "\x1b[2K\r"])
def test_control_characters_in_client_names_cannot_forge_log_lines(pgtwist, field, sep):
    params = {"user": "postgres", "database": "postgres"}
    params[field] = f"s6_{field}{sep}{FORGED}"
    with RawClient(pgtwist.port) as c:
        c.send(startup_packet(params))
        code, _ = c.read_msg()
        assert code == "E"  # no such role / database: refused, and the name is logged
    deadline = time.monotonic() + 5
    while "FORGED" not in pgtwist.log_text() and time.monotonic() < deadline:
        time.sleep(0.05)
    text = pgtwist.log_text()
    assert "FORGED" in text, "the name must reach the log for this test to prove anything"
    for line in text.splitlines():  # str.splitlines splits on \r, \x1c..\x1e, \x85 too
        assert not line.startswith(FORGED), f"a client-chosen name started a log line: {line!r}"
    assert "\x1b" not in text and "\r" not in text
