"""pgtwist's loggers, filtered by ``log_min_messages``.

Every pgtwist module logs through :func:`logger`, whose observer drops events
below the configured level before they reach twistd's log file.  Pgpool-II's
LOG/INFO/NOTICE/WARNING levels all map to Twisted's ``info`` here: lifecycle
messages (listening, node roles) stay visible at the default setting.
"""

from __future__ import annotations

from twisted.logger import (
    FilteringLogObserver,
    ILogObserver,
    Logger,
    LogLevel,
    LogLevelFilterPredicate,
    globalLogPublisher,
)
from zope.interface import implementer

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

# Cheap guard for hot paths: build debug events only when they will be kept.
DEBUG = False


def logger(namespace: str) -> Logger:
    return Logger(namespace=namespace, observer=_observer)


def set_level(pgpool_level: str) -> None:
    global DEBUG
    level = _LEVELS.get(pgpool_level.lower(), LogLevel.info)
    _predicate.setLogLevelForNamespace("", level)
    DEBUG = level is LogLevel.debug
