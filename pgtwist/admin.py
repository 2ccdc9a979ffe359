"""Commands pgtwist answers itself: SHOW pool_* and PGPOOL SHOW/SET/RESET (Pgpool-II §4.1),
SHOW pgtwist_pool / pgtwist_consistency and PGTWIST EXPLAIN ROUTE.

This module recognises them (``match``) and answers them (``answer``) from
pgtwist.adminview's rows; pgtwist.session.adminq sends the answers in the simple and the
extended protocol.  All columns are text with type OID 0, as Pgpool-II sends them, so
pgpool2_exporter and other tools read them unchanged.  A text that only looks like one
(``PGPOOL FROB``, ``SHOW pool_nosuch``) goes to the server, as with Pgpool-II.
"""

from __future__ import annotations

import re
from typing import NamedTuple

from . import adminview
from .routing.consistency import format_lsn
from .session.poolsettings import PoolSettings, SettingError, not_applied_notice
from .wire import messages as m

_TAIL = r"\s*;?\s*\Z"
_IDENT = r'("(?:[^"]|"")+"|[A-Za-z_][A-Za-z0-9_$]*)'
_SHOW = re.compile(r"\s*show\s+(pool_nodes|pool_processes|pool_pools|pool_backend_stats|"
                   r"pool_health_check_stats|pool_status|pool_version|pool_cache|"
                   r"pgtwist_pool|pgtwist_consistency)" + _TAIL, re.IGNORECASE)
_PGPOOL_SHOW = re.compile(r"\s*pgpool\s+show\s+" + _IDENT + _TAIL, re.IGNORECASE)
_PGPOOL_SET = re.compile(r"\s*pgpool\s+set\s+" + _IDENT + r"\s*(?:\s+to\s+|=)\s*"
                         r"('(?:[^']|'')*'|[^\s;']+)" + _TAIL, re.IGNORECASE)
_PGPOOL_RESET = re.compile(r"\s*pgpool\s+reset\s+" + _IDENT + _TAIL, re.IGNORECASE)
_EXPLAIN = re.compile(r"\s*pgtwist\s+explain\s+route\s+(.+?)" + _TAIL,
                      re.IGNORECASE | re.DOTALL)
_PGTWIST = re.compile(r"\s*pgtwist\b", re.IGNORECASE)


_FIRST = frozenset("sSpP")
_SECOND = frozenset("hHgG")


def _ident(text: str) -> str:
    """A PGPOOL name: folded to lower case unless double-quoted (Pgpool-II's rule)."""
    if text.startswith('"'):
        return text[1:-1].replace('""', '"')
    return text.lower()


def match(sql: str):
    """What an admin text asks, or None (then it is SQL for the server):
    ('show', name) / ('pgpool_show', name) / ('pgpool_set', name, value or None for
    DEFAULT) / ('pgpool_reset', name or None for ALL) / ('explain', inner_sql) /
    ('pgtwist', text)."""
    first = sql[:1]
    if first in _FIRST:
        if sql[1:2] not in _SECOND:   # SELECT, SET, PREPARE...: the common case, quickly
            return None
    elif not first.isspace():
        return None
    head = sql.lstrip()[:8].lower()
    if head.startswith("show"):
        found = _SHOW.match(sql)
        return ("show", found.group(1).lower()) if found else None
    if head.startswith("pgpool"):
        found = _PGPOOL_SHOW.match(sql)
        if found:
            return ("pgpool_show", _ident(found.group(1)))
        found = _PGPOOL_SET.match(sql)
        if found:
            raw = found.group(2)
            if raw.startswith("'"):
                value = raw[1:-1].replace("''", "'")
            else:
                value = None if raw.lower() == "default" else raw
            return ("pgpool_set", _ident(found.group(1)), value)
        found = _PGPOOL_RESET.match(sql)
        if found:
            name = found.group(1)
            return ("pgpool_reset", None if name.lower() == "all" else _ident(name))
        return None
    if head.startswith("pgtwist"):
        found = _EXPLAIN.match(sql)
        if found:
            return ("explain", found.group(1))
        if _PGTWIST.match(sql):
            return ("pgtwist", sql.strip())
    return None


class Answer(NamedTuple):
    """Rows (``columns`` None: a command without rows) and the CommandComplete tag."""

    columns: list[str] | None
    rows: list
    tag: str
    notices: tuple = ()   # NoticeResponse frames sent ahead of the rows


class AdminError(Exception):
    def __init__(self, sqlstate: str, message: str):
        super().__init__(message)
        self.sqlstate = sqlstate
        self.message = message


def answer(special, session, proxy, router) -> Answer:
    """The answer to a matched command other than EXPLAIN ROUTE; AdminError if it fails."""
    kind = special[0]
    if kind == "show":
        name = special[1]
        if name == "pgtwist_pool":
            columns, rows = pgtwist_pool(proxy.pooling)
        elif name == "pgtwist_consistency":
            columns, rows = pgtwist_consistency(router.consistency, proxy.cluster,
                                                router.lsn_on)
        else:
            columns, rows = adminview.view(name, proxy, session)
        return Answer(columns, rows, f"SELECT {len(rows)}")
    if kind == "pgpool_show":
        try:
            columns, rows = adminview.pgpool_show(special[1], proxy, session)
        except adminview.UnknownParameter as exc:
            raise AdminError("42704", exc.message) from None
        return Answer(columns, rows, f"SELECT {len(rows)}")
    if kind == "pgpool_set" or kind == "pgpool_reset":
        settings = session.pool_settings
        if settings is None:
            settings = PoolSettings(proxy.config.params)
        try:
            if kind == "pgpool_set":
                settings.set(special[1], special[2])
            elif special[1] is None:
                settings.reset_all()
            else:
                settings.reset(special[1])
        except SettingError as exc:
            raise AdminError(exc.sqlstate, exc.message) from None
        session.pool_settings = settings
        notices = ()
        if kind == "pgpool_set":
            text = not_applied_notice(special[1])
            if text is not None:
                notices = (m.notice_response(text),)
        # Pgpool-II's tags: RESET ALL says RESET, a single RESET says SET.
        return Answer(None, [], "RESET" if kind == "pgpool_reset" and special[1] is None
                      else "SET", notices)
    raise AdminError("42601", f"unknown pgtwist command: {special[1][:60]}")


# -- encoding ------------------------------------------------------------------------------------
TEXT_OID = 25


def data_rows(result: Answer) -> bytes:
    return (b"".join(result.notices) + b"".join(m.data_row(r) for r in result.rows)
            + m.command_complete(result.tag))


def simple(result: Answer) -> bytes:
    """The answer to a simple Query (its ReadyForQuery follows)."""
    head = m.row_description(result.columns) if result.columns is not None else b""
    return head + data_rows(result)


def result(columns: list[str], rows: list[list[str | None]], tag: str) -> bytes:
    return simple(Answer(columns, rows, tag))


# -- pgtwist's own views -----------------------------------------------------------------------
def pgtwist_pool(pooling):
    """SHOW pgtwist_pool: the shared pool's event counters and current link counts."""
    stats = pooling.pool.stats()
    totals = stats["totals"]
    rows = [[name, str(value)] for name, value in stats["counters"].items()]
    rows.extend([name, str(value)] for name, value in pooling.counters.items())
    rows.append(["links", str(totals["idle"] + totals["busy"] + totals["connecting"])])
    rows.append(["links_idle", str(totals["idle"])])
    rows.append(["links_busy", str(totals["busy"])])
    rows.append(["waiting", str(totals["waiting"])])
    rows.append(["pool_mode", pooling.mode])
    return ["name", "value"], rows


def pgtwist_consistency(tracker, cluster, active: bool):
    """SHOW pgtwist_consistency: read_consistency's settings, what it knows (LSNs) and
    the counted outcomes of reads that had to see earlier writes."""
    o = tracker.options
    rows = [["read_consistency", o.mode if active or not o.on else "lsn (inactive: no "
             "load balancing over replicas)"],
            ["scope", o.scope], ["wait_ms", str(int(o.wait * 1000))],
            ["poll_interval_ms", str(int(o.poll_interval * 1000))],
            ["commit_lsn", format_lsn(tracker.lsn)], ["writes_pending", str(tracker.pending)]]
    rows.extend([name, str(value)] for name, value in tracker.counts.items())
    rows.extend([f"node{n.node_id}_replay_lsn", format_lsn(n.replay_lsn)] for n in cluster.nodes)
    return ["name", "value"], rows


def explain_route(explanation, node_label: str) -> bytes:
    """One row: the node chosen, the deciding policy and its reason, then the chain."""
    decision = explanation.decision
    chain = "; ".join(f"{name}: {d.target.value}" + (f" ({d.reason})" if d.reason else "")
                      for name, d in explanation.steps)
    return result(
        ["node", "target", "policy", "reason", "chain"],
        [[node_label, decision.target.value, decision.policy, decision.reason, chain]],
        "PGTWIST EXPLAIN ROUTE",
    )


def error(sqlstate: str, message: str) -> bytes:
    return m.error_response(sqlstate, message)
