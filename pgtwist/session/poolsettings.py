"""PGPOOL SET / PGPOOL RESET: a session's own values of Pgpool-II's session-context parameters.

Made on a session's first PGPOOL SET (``Session.pool_settings``); what others read
through :meth:`PoolSettings.get` is that value, else the configured one.  Errors are
worded as Pgpool-II words them (its SQLSTATE is XX000; pgtwist sends the one PostgreSQL
sends for the same mistake in its own SET).
"""

from __future__ import annotations

from collections.abc import Mapping

from ..config_values import convert as config_convert
from ..params import ALIASES, PARAMS, PER_NODE, SUFFIX_ONLY

# Pgpool-II's SESSION-context parameters (reference §4.1): the only ones PGPOOL SET changes.
SESSION_PARAMS = frozenset("""
    log_statement log_per_node_statement notice_per_node_statement log_client_messages
    check_unlogged_table allow_sql_comments client_idle_limit client_idle_limit_in_recovery
    log_error_verbosity client_min_messages log_min_messages log_backend_messages
""".split())
# The ones pgtwist applies to the session (the others are stored and shown, and the client
# is told so: see not_applied_notice).
APPLIED = frozenset({"log_statement", "log_per_node_statement", "log_client_messages",
                     "client_idle_limit"})
UNDEFINED_OBJECT = "42704"
INVALID_PARAMETER_VALUE = "22023"
CANT_CHANGE_NOW = "55P02"


class SettingError(ValueError):
    def __init__(self, sqlstate: str, message: str):
        super().__init__(message)
        self.sqlstate = sqlstate
        self.message = message


def _known(name: str) -> bool:
    return name in PARAMS or name in SUFFIX_ONLY or (
        name.rstrip("0123456789") in PER_NODE | set(SUFFIX_ONLY) and name[-1:].isdigit())


def settable(name: str) -> str:
    """The parameter PGPOOL SET/RESET ``name`` changes; SettingError if none may be."""
    key = ALIASES.get(name, name)
    if not _known(key):
        raise SettingError(UNDEFINED_OBJECT, f'unrecognized configuration parameter "{name}"')
    if key not in SESSION_PARAMS:
        raise SettingError(CANT_CHANGE_NOW,
                           f'invalid Context, value for parameter "{name}" cannot be changed')
    return key


def convert(name: str, text: str) -> object:
    """``text`` as a value of parameter ``name``, read exactly as the configuration reader
    reads it (pgtwist.config_values: the same booleans, ranges, units, enumerations)."""
    errors: list[str] = []
    value = config_convert(PARAMS[name], text.strip(), name, "", errors)
    if errors:
        raise SettingError(INVALID_PARAMETER_VALUE,
                           f'invalid value for parameter "{name}": "{text}"')
    return value


class PoolSettings:
    """A session's PGPOOL SET values over the configured ``params``."""

    __slots__ = ("params", "overrides")

    def __init__(self, params: Mapping[str, object]):
        self.params = params
        self.overrides: dict[str, object] = {}

    def get(self, name: str) -> object:
        found = self.overrides.get(name, self)
        return self.params[name] if found is self else found

    def set(self, name: str, text: str | None) -> None:
        """PGPOOL SET ``name`` TO ``text`` (None: DEFAULT, the value before any SET)."""
        key = settable(name)
        if text is None:
            self.overrides.pop(key, None)
            return
        self.overrides[key] = convert(key, text)

    def reset(self, name: str) -> None:
        self.overrides.pop(settable(name), None)

    def reset_all(self) -> None:
        self.overrides.clear()


def not_applied_notice(name: str) -> str | None:
    """What a client is told after PGPOOL SET of a parameter pgtwist does not apply per
    session (None for the ones it does): accepted for Pgpool-II compatibility, but it must
    not look like it changed anything."""
    key = ALIASES.get(name, name)
    if key in APPLIED:
        return None
    return (f'pgtwist stores "{key}" for this session (PGPOOL SHOW shows it) but does not '
            "apply it; the configured value stays in effect")
