"""What a statement's text does to session state that outlives it (no sqlglot here).

The classifier records these facts in QueryInfo (``set_local``, ``reset_all``,
``discard_all``, ``savepoint_name``, ``cursor_name``) once per statement shape.
The functions also serve texts that are not classified one by one: the parts of a
multi-statement Query string, and settings pgtwist writes itself.  Each takes one
statement's text, without leading comments.
"""

from __future__ import annotations

import re

from .idents import fold
from .split import split_statements

_SET_LOCAL = re.compile(r"\s*SET\s+(?:LOCAL|TRANSACTION)\b", re.IGNORECASE)
_RESET_ALL = re.compile(r"\s*(?:RESET\s+ALL|DISCARD\s+ALL)\b", re.IGNORECASE)
_DISCARD_ALL = re.compile(r"\s*DISCARD\s+ALL\b", re.IGNORECASE)
_DISCARD_TEMP = re.compile(r"\s*DISCARD\s+(?:ALL|TEMP|TEMPORARY)\b", re.IGNORECASE)
_READ_ONLY_SET = re.compile(
    r"\s*SET\s+(?:SESSION\s+CHARACTERISTICS\s+AS\s+)?TRANSACTION\b.*\bREAD\s+ONLY\b"
    r"|\s*SET\s+(?:SESSION\s+|LOCAL\s+)?transaction_read_only\s*(?:=|\bTO\b)\s*'?(?:on|true|1|yes)\b",
    re.IGNORECASE | re.DOTALL,
)
_MAY_SET = re.compile(r"\b(?:SET|RESET|DISCARD)\b", re.IGNORECASE)
_SETTING = re.compile(r"(?:SET|RESET|DISCARD\s+ALL)\b", re.IGNORECASE)
_SAVEPOINT_NAME = re.compile(
    r"\s*(?:SAVEPOINT|RELEASE(?:\s+SAVEPOINT)?|ROLLBACK(?:\s+WORK|\s+TRANSACTION)?\s+TO"
    r"(?:\s+SAVEPOINT)?)\s+(\"(?:[^\"]|\"\")+\"|[^\s;]+)", re.IGNORECASE)
_WITH_HOLD = re.compile(r"\bWITH\s+HOLD\b", re.IGNORECASE)
_SESSION_AUTH = re.compile(r"\s*SET\s+(SESSION\s+)?SESSION\s+AUTHORIZATION\b", re.IGNORECASE)
_SET_CONFIG_LOCAL = re.compile(r"set_config\s*\((?:[^;]*?),\s*true\s*\)", re.IGNORECASE)
_SET_CONFIG_NAME = re.compile(r"set_config\s*\(\s*'([^']*)'", re.IGNORECASE)
_MAY_KEEP_STATE = re.compile(
    r"\b(?:set|reset|discard|listen|temp|temporary|hold|prepare|declare|load|set_config"
    r"|pg_(?:try_)?advisory_lock(?:_shared)?)\b", re.IGNORECASE)
_LAST_NAME = re.compile(r'("(?:[^"]|"")+"|[A-Za-z_][\w$]*)\s*;?\s*$')


def set_local(text: str) -> bool:
    """SET LOCAL or SET TRANSACTION: the setting ends with the transaction."""
    return _SET_LOCAL.match(text) is not None


def reset_all(text: str) -> bool:
    """RESET ALL or DISCARD ALL: every run-time setting back to its default."""
    return _RESET_ALL.match(text) is not None


def discard_all(text: str) -> bool:
    """DISCARD ALL: settings, prepared statements, temporary tables, cursors, locks..."""
    return _DISCARD_ALL.match(text) is not None


def discard_temp(text: str) -> bool:
    """DISCARD ALL, TEMP or TEMPORARY: the session's temporary tables are dropped."""
    return _DISCARD_TEMP.match(text) is not None


def sets_read_only(text: str) -> bool:
    """SET [SESSION CHARACTERISTICS AS] TRANSACTION ... READ ONLY, or transaction_read_only
    set on (Pgpool-II does not count these as writes)."""
    return _READ_ONLY_SET.match(text) is not None


def may_change_settings(sql: str) -> bool:
    """A cheap test before :func:`setting_statements`: SET, RESET or DISCARD occurs at all."""
    return _MAY_SET.search(sql) is not None


def setting_statements(sql: str) -> list[str]:
    """The statements of a multi-statement text that start with SET, RESET or DISCARD ALL."""
    return [part for part in split_statements(sql) if _SETTING.match(part)]


def savepoint_name(text: str) -> str | None:
    """The savepoint SAVEPOINT, RELEASE [SAVEPOINT] or ROLLBACK [WORK] TO [SAVEPOINT] names,
    folded as PostgreSQL folds it; None for other statements."""
    found = _SAVEPOINT_NAME.match(text)
    return fold(found.group(1)) if found is not None else None


def last_name(text: str) -> str | None:
    """The statement's last word as a folded identifier (the cursor of FETCH/MOVE/CLOSE)."""
    found = _LAST_NAME.search(text)
    return fold(found.group(1)) if found is not None else None


def with_hold(text: str) -> bool:
    """DECLARE ... WITH HOLD: the cursor outlives its transaction."""
    return _WITH_HOLD.search(text) is not None


def sets_session_authorization(text: str) -> bool:
    """SET [SESSION] SESSION AUTHORIZATION (RESET ALL keeps it)."""
    return _SESSION_AUTH.match(text) is not None


def session_set_config_names(text: str) -> frozenset[str] | None:
    """The settings a session-level set_config() call in ``text`` names (lower case; empty
    when no name is a literal); None when its set_config is transaction-local."""
    if _SET_CONFIG_LOCAL.search(text):
        return None
    return frozenset(n.lower() for n in _SET_CONFIG_NAME.findall(text))


def may_keep_state(text: str) -> bool:
    """A cheap test for a text too big to classify: a word that may leave state on its
    server (SET, LISTEN, TEMP, WITH HOLD, PREPARE, advisory locks...) occurs at all."""
    return _MAY_KEEP_STATE.search(text) is not None
