"""pgtwist's loggers, filtered by ``log_min_messages``, and the operator's log lines.

Every pgtwist module logs through :func:`logger`, whose observer drops events
below the configured level before they reach the log file.  Pgpool-II's
LOG/INFO/NOTICE/WARNING levels all map to Twisted's ``info`` here: lifecycle
messages (listening, node roles) stay visible at the default setting.

:class:`OperatorObserver` writes each event as a ``log_line_prefix`` line (or a JSON
object, ``log_format: json``), pgtwist.logfmt does the formatting; the session's own
lines (``log_connections`` ... ``log_client_messages``) come from its
:class:`pgtwist.sessionlog.SessionLog`.
"""

from __future__ import annotations

import os
import socket
import time

from twisted.internet import defer, threads
from twisted.logger import (
    FileLogObserver,
    FilteringLogObserver,
    ILogObserver,
    Logger,
    LogLevel,
    LogLevelFilterPredicate,
    formatEvent,
    globalLogPublisher,
)
from zope.interface import implementer

from .logfmt import LEVEL_NAMES, LineFormatter, Record

_LEVELS = {
    "debug5": LogLevel.debug, "debug4": LogLevel.debug, "debug3": LogLevel.debug,
    "debug2": LogLevel.debug, "debug1": LogLevel.debug, "debug": LogLevel.debug,
    "info": LogLevel.info, "notice": LogLevel.info, "log": LogLevel.info,
    "warning": LogLevel.info, "error": LogLevel.error, "fatal": LogLevel.critical,
    "panic": LogLevel.critical,
}

# Characters that end or rewrite a line for a log reader: C0 controls (\r, \n, ESC...), DEL,
# and what str.splitlines also splits on.  Client-chosen names (user, database, server
# messages quoting them) reach log lines; escaped, they cannot forge an entry (review S6).
_ESCAPES = {c: f"\\x{c:02x}" for c in [*range(0x20), 0x7F, 0x85]}
_ESCAPES.update({0x0A: "\\n", 0x0D: "\\r", 0x09: "\\t", 0x2028: "\\u2028",
                 0x2029: "\\u2029"})
_UNSAFE = frozenset(map(chr, _ESCAPES))


def escape_controls(text: str) -> str:
    """``text`` on one line: control characters shown as backslash escapes."""
    return text.translate(_ESCAPES) if not _UNSAFE.isdisjoint(text) else text


@implementer(ILogObserver)
class _EscapingObserver:
    """Escapes control characters in an event's string fields (not in ``log_*`` keys,
    so a logged failure keeps its multi-line traceback) before passing it on."""

    def __init__(self, observer):
        self._observer = observer

    def __call__(self, event: dict) -> None:
        unsafe = [k for k, v in event.items()
                  if type(v) is str and not k.startswith("log_") and not _UNSAFE.isdisjoint(v)]
        if unsafe:
            event = dict(event)
            for k in unsafe:
                event[k] = event[k].translate(_ESCAPES)
        self._observer(event)


_predicate = LogLevelFilterPredicate(defaultLogLevel=LogLevel.info)
_observer = _EscapingObserver(FilteringLogObserver(globalLogPublisher, [_predicate]))
# The lines an operator switched on (log_statement ...) are LOG, which ranks above ERROR in
# log_min_messages (as in PostgreSQL and Pgpool-II): they bypass the level filter.
switched_observer = _EscapingObserver(globalLogPublisher)

# Cheap guard for hot paths: build debug events only when they will be kept.
DEBUG = False


def logger(namespace: str) -> Logger:
    return Logger(namespace=namespace, observer=_observer)


def set_level(pgpool_level: str) -> None:
    global DEBUG
    level = _LEVELS.get(pgpool_level.lower(), LogLevel.info)
    _predicate.setLogLevelForNamespace("", level)
    DEBUG = level is LogLevel.debug


# -- the RELOAD-context switches --------------------------------------------------------------

class LogSettings:
    """The logging switches sessions read.  One object, updated in place by
    :func:`configure` (start and SIGHUP), so running sessions follow a reload; the
    relay tests one attribute of it when a switch is off."""

    __slots__ = ("connections", "disconnections", "hostname", "statement",
                 "per_node_statement", "client_messages", "frames")

    def __init__(self) -> None:
        self.update({})

    def update(self, params) -> None:
        get = params.get
        self.connections = bool(get("log_connections", False))
        self.disconnections = bool(get("log_disconnections", False))
        self.hostname = bool(get("log_hostname", False))
        self.statement = bool(get("log_statement", False))
        self.per_node_statement = bool(get("log_per_node_statement", False))
        self.client_messages = bool(get("log_client_messages", False))
        # The one test per batch of client frames: does any log want to see them?
        self.frames = self.statement or self.per_node_statement or self.client_messages


SETTINGS = LogSettings()


# PGPOOL SET parameter -> LogSettings attribute, for the switches a session may set itself.
SESSION_SWITCHES = {"log_statement": "statement", "log_per_node_statement": "per_node_statement",
                    "log_client_messages": "client_messages"}


class SessionLogSettings:
    """A session's switches once it used PGPOOL SET on one of SESSION_SWITCHES: its own
    values for those, the process-wide ones (which follow a reload) for the rest."""

    __slots__ = ("base", "own")

    def __init__(self, base: LogSettings, own: dict) -> None:
        self.base = base
        self.own = own   # LogSettings attribute -> bool

    def __getattr__(self, name: str):
        if name == "frames":
            return self.statement or self.per_node_statement or self.client_messages
        own = self.own
        return own[name] if name in own else getattr(self.base, name)


def session_settings(session) -> LogSettings | SessionLogSettings:
    """The switches ``session`` reads.  log_statement, log_per_node_statement and
    log_client_messages are session-settable by PGPOOL SET (``session.pool_settings``):
    this is where a session's own values take over from the process-wide ones."""
    settings = getattr(session, "pool_settings", None)
    overrides = getattr(settings, "overrides", None)
    if not overrides:
        return SETTINGS
    own = {attr: bool(overrides[name]) for name, attr in SESSION_SWITCHES.items()
           if name in overrides}
    return SessionLogSettings(SETTINGS, own) if own else SETTINGS


# -- the operator's log lines ----------------------------------------------------------------

_FORMATTER = LineFormatter()
_PROCESS_TYPES = {"pgtwist.checks": ("health_check", "WORKER"),
                  "pgtwist.cluster": ("sr_check_worker", "WORKER"),
                  "pgtwist.pcp": ("pcp_child", "PCP CHILD")}


class _Counter:
    """%l of lines that belong to no session."""

    def __init__(self) -> None:
        self.n = 0

    def __call__(self) -> int:
        self.n += 1
        return self.n


_MAIN_LINES = _Counter()


def event_record(event: dict, formatter_pid: int | None = None) -> tuple[Record, object]:
    """(Record, line counter) of one Twisted log event."""
    level = event.get("log_level")
    failure = event.get("log_failure")
    rec = Record(
        time=event.get("log_time") or time.time(),
        level=LEVEL_NAMES.get(getattr(level, "name", ""), "LOG"),
        message=formatEvent(event),
        detail=event.get("detail") if type(event.get("detail")) is str else None,
        namespace=event.get("log_namespace", "") or "",
        traceback=failure.getTraceback() if failure is not None else None,
    )
    node = event.get("node")
    if type(node) is int:
        rec.node = node
    source = event.get("log_source")
    describe = getattr(source, "describe", None)
    if describe is not None and getattr(source, "is_session_log", False):
        describe(rec)
        return rec, source.next_line
    rec.pid = formatter_pid if formatter_pid is not None else os.getpid()
    for prefix, (process, name) in _PROCESS_TYPES.items():
        if rec.namespace.startswith(prefix):
            rec.process, rec.process_name = process, name
            break
    return rec, _MAIN_LINES


def format_event(event: dict) -> str:
    rec, counter = event_record(event)
    return _FORMATTER.format(rec, counter)


def operator_observer(out) -> FileLogObserver:
    """An observer writing every event to ``out`` in the configured shape."""
    return FileLogObserver(out, format_event)


def configure(config) -> None:
    """Apply the logging parameters: at start and on every SIGHUP."""
    global _FORMATTER
    params = config.params
    set_level(config.log_min_messages)
    SETTINGS.update(params)
    _FORMATTER = LineFormatter(params.get("log_line_prefix", "%m: %a pid %p: "),
                               params.get("log_format", "text"),
                               terse=params.get("log_error_verbosity") == "terse")


# -- log_hostname ------------------------------------------------------------------------------

RESOLVE_TIMEOUT = 5.0  # seconds a reverse lookup may take before the address is logged


def resolve_host(reactor, address: str, lookup=socket.gethostbyaddr,
                 timeout: float = RESOLVE_TIMEOUT) -> defer.Deferred:
    """The host name of ``address``, looked up in a thread (never blocking the reactor);
    fires with ``address`` itself when the lookup fails or takes over ``timeout``."""
    d = threads.deferToThreadPool(reactor, reactor.getThreadPool(), lookup, address)
    d.addCallbacks(lambda result: result[0] or address, lambda _f: address)
    d.addTimeout(timeout, reactor, onTimeoutCancel=lambda _r, _t: address)
    return d
