"""pgtwist's loggers, filtered by ``log_min_messages``.

Every pgtwist module logs through :func:`logger`, whose observer drops events
below the configured level before they reach twistd's log file.  Pgpool-II's
LOG/INFO/NOTICE/WARNING levels all map to Twisted's ``info`` here: lifecycle
messages (listening, node roles) stay visible at the default setting.
"""

from __future__ import annotations

from twisted.logger import (
    FilteringLogObserver,
    Logger,
    LogLevel,
    LogLevelFilterPredicate,
    globalLogPublisher,
)

_LEVELS = {
    "debug5": LogLevel.debug, "debug4": LogLevel.debug, "debug3": LogLevel.debug,
    "debug2": LogLevel.debug, "debug1": LogLevel.debug, "debug": LogLevel.debug,
    "info": LogLevel.info, "notice": LogLevel.info, "log": LogLevel.info,
    "warning": LogLevel.info, "error": LogLevel.error, "fatal": LogLevel.critical,
    "panic": LogLevel.critical,
}

_predicate = LogLevelFilterPredicate(defaultLogLevel=LogLevel.info)
_observer = FilteringLogObserver(globalLogPublisher, [_predicate])

# Cheap guard for hot paths: build debug events only when they will be kept.
DEBUG = False


def logger(namespace: str) -> Logger:
    return Logger(namespace=namespace, observer=_observer)


def set_level(pgpool_level: str) -> None:
    global DEBUG
    level = _LEVELS.get(pgpool_level.lower(), LogLevel.info)
    _predicate.setLogLevelForNamespace("", level)
    DEBUG = level is LogLevel.debug
