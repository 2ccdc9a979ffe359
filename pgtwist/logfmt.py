"""Operator log lines: Pgpool-II's ``log_line_prefix``, JSON records, the wording of
``log_client_messages``, and secrets masked out of statement texts.

Pure (no Twisted): pgtwist.logs turns each log event into a :class:`Record` and asks a
:class:`LineFormatter` for its text.  What ``%p`` means in one process: a session's lines
carry the session's id (the pid its client got in BackendKeyData, so a client's
``pg_backend_pid()`` in session pooling and ``SHOW pool_processes`` name the same
number); every other line carries the operating system's pid of pgtwist.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime, timezone, tzinfo

NO_CONNECTION = "[No Connection]"  # Pgpool-II's %u / %d outside a session

# Twisted's level names -> the PostgreSQL / Pgpool-II severity words.
LEVEL_NAMES = {"debug": "DEBUG", "info": "LOG", "warn": "WARNING", "error": "ERROR",
               "critical": "FATAL"}


@dataclass
class Record:
    """One log event, as the formatter needs it."""

    time: float
    level: str                       # LOG, WARNING, ...
    message: str
    detail: str | None = None
    pid: int = 0                     # %p: the session id, or the OS pid
    process: str = "main"            # %a outside a session: Pgpool-II's process type
    process_name: str = "MAIN"       # %P
    user: str | None = None
    database: str | None = None
    application_name: str | None = None
    session: int | None = None
    client: str | None = None
    node: int | None = None
    namespace: str = ""
    traceback: str | None = None


def _stamp(t: float, tz: tzinfo | None, ms: bool) -> str:
    when = datetime.fromtimestamp(t, tz)
    text = when.strftime("%Y-%m-%d %H:%M:%S")
    return f"{text}.{when.microsecond // 1000:03d}" if ms else text


_ESCAPES = {
    "a": lambda r, n, tz: r.application_name or r.process,
    "p": lambda r, n, tz: str(r.pid),
    "P": lambda r, n, tz: r.process_name,
    "t": lambda r, n, tz: _stamp(r.time, tz, False),
    "m": lambda r, n, tz: _stamp(r.time, tz, True),
    "d": lambda r, n, tz: r.database or NO_CONNECTION,
    "u": lambda r, n, tz: r.user or NO_CONNECTION,
    "l": lambda r, n, tz: str(n),
    "%": lambda r, n, tz: "%",
}


def compile_prefix(fmt: str) -> tuple:
    """``log_line_prefix`` as literal strings and escape functions; unknown escapes (and a
    trailing ``%``) are dropped, as Pgpool-II and PostgreSQL do."""
    parts: list = []
    i, n = 0, len(fmt)
    while i < n:
        j = fmt.find("%", i)
        if j < 0:
            parts.append(fmt[i:])
            break
        if j > i:
            parts.append(fmt[i:j])
        if j + 1 < n and fmt[j + 1] in _ESCAPES:
            parts.append(_ESCAPES[fmt[j + 1]])
        i = j + 2
    return tuple(parts)


class LineFormatter:
    """Renders records as ``log_line_prefix`` text lines or as JSON objects, one a line."""

    def __init__(self, prefix: str = "%m: %a pid %p: ", fmt: str = "text",
                 tz: tzinfo | None = None, terse: bool = False) -> None:
        self.parts = compile_prefix(prefix)
        self.json = fmt == "json"
        self.tz = tz
        self.terse = terse  # log_error_verbosity = terse: no DETAIL lines

    def prefix(self, rec: Record, line: int) -> str:
        tz = self.tz
        return "".join(p if type(p) is str else p(rec, line, tz) for p in self.parts)

    def format(self, rec: Record, next_line) -> str:
        """The record's text, newline-terminated; ``next_line()`` numbers each line (%l)."""
        if self.json:
            return json_line(rec, self.tz, self.terse)
        text = f"{self.prefix(rec, next_line())}{rec.level}:  {rec.message}\n"
        if rec.detail and not self.terse:
            text += f"{self.prefix(rec, next_line())}DETAIL:  {rec.detail}\n"
        if rec.traceback:
            text += rec.traceback.rstrip("\n") + "\n"
        return text


def json_line(rec: Record, tz: tzinfo | None = None, terse: bool = False) -> str:
    """One JSON object: time (ISO 8601, ms), level, message and the fields that are set."""
    when = datetime.fromtimestamp(rec.time, tz or timezone.utc)
    if tz is None:
        when = when.astimezone()
    obj: dict = {"time": when.isoformat(timespec="milliseconds"), "level": rec.level,
                 "message": rec.message}
    if rec.detail and not terse:
        obj["detail"] = rec.detail
    obj["pid"] = rec.pid
    obj["process"] = rec.process
    for key in ("session", "user", "database", "application_name", "client", "node"):
        value = getattr(rec, key)
        if value is not None:
            obj[key] = value
    if rec.namespace:
        obj["logger"] = rec.namespace
    if rec.traceback:
        obj["traceback"] = rec.traceback
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")) + "\n"


# -- secrets in statement texts ------------------------------------------------------------

MASK = "'***'"
_WORD = re.compile(r"\bpassword\b", re.IGNORECASE)
_DOLLAR = re.compile(r"\$([A-Za-z_][A-Za-z0-9_]*)?\$")


def _literal_end(sql: str, i: int) -> int | None:
    """End (exclusive) of the string literal starting at ``i``, ``len(sql)`` if it never
    ends (fail closed: the rest is masked), None if no literal starts there."""
    n = len(sql)
    backslash = False
    if sql[i:i + 2].lower() == "e'":
        backslash, i = True, i + 1
    elif sql[i:i + 3].lower() == "u&'":
        i += 2
    if i < n and sql[i] == "'":
        j = i + 1
        while j < n:
            c = sql[j]
            if backslash and c == "\\":
                j += 2
                continue
            if c == "'":
                if j + 1 < n and sql[j + 1] == "'":
                    j += 2
                    continue
                return j + 1
            j += 1
        return n
    m = _DOLLAR.match(sql, i)
    if m is not None:
        end = sql.find(m.group(0), m.end())
        return n if end < 0 else end + len(m.group(0))
    return None


def mask_secrets(sql: str) -> str:
    """``sql`` with the value after each word PASSWORD masked.

    ``ALTER ROLE ... PASSWORD '...'``, ``CREATE ROLE/USER ... PASSWORD``, a USER MAPPING's
    ``password '...'`` option and ``password = '...'`` become ``PASSWORD '***'``; a
    ``password=...`` inside a connection string (dblink, CREATE SUBSCRIPTION) loses its
    value.  A literal that never ends is masked to the end of the text.
    """
    if "password" not in sql.lower():
        return sql
    out: list[str] = []
    pos = 0
    n = len(sql)
    for m in _WORD.finditer(sql):
        if m.start() < pos:
            continue
        i = m.end()
        if i < n and sql[i] == '"':        # a quoted option name: "password" '...'
            i += 1
        while i < n and sql[i] in " \t\r\n":
            i += 1
        equals = i < n and sql[i] in "=:"
        if equals:
            i += 1
            while i < n and sql[i] in " \t\r\n":
                i += 1
        end = _literal_end(sql, i) if i < n else None
        if end is not None:
            out.append(sql[pos:i])
            out.append(MASK)
            pos = end
        elif equals:                       # conninfo: password=value up to a space or quote
            j = i
            while j < n and sql[j] not in " \t\r\n'\"":
                j += 1
            out.append(sql[pos:i])
            out.append("***")
            pos = j
    if not out:
        return sql
    out.append(sql[pos:])
    return "".join(out)


# -- log_client_messages: Pgpool-II's wording per message type ------------------------------

def _cstr(body: bytes, i: int = 0) -> tuple[str, int]:
    end = body.find(b"\0", i)
    if end < 0:
        end = len(body)
    return body[i:end].decode("utf-8", "replace"), end + 1


def client_message(code: int, body: bytes, copy_count: int = 0) -> tuple[str, str | None] | None:
    """(message, detail) for a frontend message, or None for one never logged
    (PasswordMessage / SASL responses: their content is a secret)."""
    kind = chr(code)
    if kind == "Q":
        return "Query message from frontend.", f'query: "{mask_secrets(_cstr(body)[0])}"'
    if kind == "P":
        name, i = _cstr(body)
        query = _cstr(body, i)[0]
        return ("Parse message from frontend.",
                f'statement: "{name}", query: "{mask_secrets(query)}"')
    if kind == "B":
        portal, i = _cstr(body)
        return "Bind message from frontend.", f'portal: "{portal}", statement: "{_cstr(body, i)[0]}"'
    if kind in "DC":
        what = "statement" if body[:1] == b"S" else "portal"
        word = "Describe" if kind == "D" else "Close"
        return f"{word} message from frontend.", f'{what}: "{_cstr(body, 1)[0]}"'
    if kind == "E":
        return "Execute message from frontend.", f'portal: "{_cstr(body)[0]}"'
    if kind == "F":
        oid = int.from_bytes(body[:4], "big") if len(body) >= 4 else 0
        return "FunctionCall message from frontend.", f'oid: "{oid}"'
    if kind == "d":
        return "CopyData message from frontend.", f"count: {copy_count}"
    simple = {"S": "Sync", "H": "Flush", "X": "Terminate", "c": "CopyDone", "f": "CopyFail"}
    if kind in simple:
        return f"{simple[kind]} message from frontend.", None
    return None


def session_time(seconds: float) -> str:
    """PostgreSQL's and Pgpool-II's ``H:MM:SS.mmm``."""
    ms = int(round(seconds * 1000))
    secs, ms = divmod(ms, 1000)
    minutes, secs = divmod(secs, 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}.{ms:03d}"
