"""Choosing a load-balance node: weights and redirect preference lists (§1.1).

``choose_lb_node`` is what Pgpool-II does once per session at connect (or per
read with statement_level_load_balance): an optional redirect list match, a
ratio draw, then a weighted draw.  Randomness comes in as two uniform draws in
[0, 1) so that the function is pure and every branch can be tested with
literal values.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from zope.interface import implementer

from ..interfaces import IBalancer
from .options import config_error
from .values import ClusterView, NodeView, SessionView

PRIMARY_TOKEN = "primary"
STANDBY_TOKEN = "standby"

_RIGHT = re.compile(r"\s*([^\s()]+)\s*(?:\(\s*([^()]*?)\s*\))?\s*\Z")


@dataclass(frozen=True)
class Entry:
    """One ``regex:node(ratio)`` entry of a redirect preference list.

    node is an int node id, ``'primary'`` or ``'standby'``; index is 1-based.
    """

    key: str
    index: int
    text: str
    regex: re.Pattern
    node: int | str
    ratio: float = 1.0

    def matches(self, value: str) -> bool:
        return self.regex.fullmatch(value) is not None


def parse_preference_list(value: str | tuple[str, ...] | list[str], key: str,
                          node_count: int | None, *, where: str | None = None
                          ) -> tuple[Entry, ...]:
    """Parse ``"regex:node(ratio),..."`` (or its already split items).

    Raises ConfigError with one message per bad entry, each naming ``where``
    (default: ``key``) and the entry: missing ':', bad regex, node not a number,
    'primary' or 'standby', node id >= node_count, ratio not a number in 0..1.
    """
    if isinstance(value, str):
        items = tuple(i.strip() for i in value.split(",") if i.strip())
    else:
        items = tuple(str(i).strip() for i in value if str(i).strip())
    errors: list[str] = []
    entries = preference_entries(items, key, node_count, where or key, errors)
    if errors:
        raise config_error(errors)
    return entries


def preference_entries(items: tuple[str, ...], key: str, node_count: int | None, label: str,
                       errors: list[str]) -> tuple[Entry, ...]:
    """parse_preference_list over split items, appending errors instead of raising."""
    entries = []
    for i, text in enumerate(items, 1):
        bad = f"{label}: entry {i} {text!r}"
        pattern, sep, right = text.rpartition(":")
        if not sep:
            errors.append(f"{bad}: missing ':' (expected regex:node or regex:node(ratio))")
            continue
        if not pattern:
            errors.append(f"{bad}: empty regular expression before ':'")
            continue
        try:
            regex = re.compile(pattern, re.DOTALL)
        except re.error as exc:
            errors.append(f"{bad}: bad regular expression: {exc}")
            continue
        m = _RIGHT.match(right)
        if not m:
            errors.append(f"{bad}: expected a node id, 'primary' or 'standby' after ':', "
                          f"optionally followed by (ratio)")
            continue
        token, ratio_text = m[1], m[2]
        node: int | str
        if token.lower() in (PRIMARY_TOKEN, STANDBY_TOKEN):
            node = token.lower()
        elif token.isdigit():
            node = int(token)
            if node_count is not None and node >= node_count:
                known = f"0-{node_count - 1}" if node_count else "none"
                errors.append(f"{bad}: unknown node id {node} (configured node ids: {known})")
                continue
        else:
            errors.append(f"{bad}: expected a node id, 'primary' or 'standby' after ':', "
                          f"got {token!r}")
            continue
        ratio = 1.0
        if ratio_text is not None:
            try:
                ratio = float(ratio_text)
            except ValueError:
                errors.append(f"{bad}: ratio {ratio_text!r} is not a number")
                continue
            if not 0.0 <= ratio <= 1.0:
                errors.append(f"{bad}: ratio {ratio_text} is out of range 0..1")
                continue
        entries.append(Entry(key, i, text, regex, node, ratio))
    return tuple(entries)


# --- drawing ------------------------------------------------------------------------------


def weighted_pick(nodes: tuple[NodeView, ...] | list[NodeView], draw: float) -> NodeView | None:
    """The node whose share of the summed weights contains ``draw`` in [0, 1); weight 0 never."""
    candidates = [n for n in nodes if n.weight > 0]
    if not candidates:
        return None
    total = sum(n.weight for n in candidates)
    target = min(max(draw, 0.0), 1.0) * total
    upto = 0.0
    for n in candidates:
        upto += n.weight
        if target < upto:
            return n
    return candidates[-1]  # draw == 1.0 or rounding at the top end


def _share(node: NodeView, pool: list[NodeView]) -> str:
    total = sum(n.weight for n in pool if n.weight > 0)
    return f"weight {node.weight:g} of {total:g}"


def _rescale(draw: float, ratio: float) -> float:
    """A fresh uniform draw from the part of ``draw`` the ratio decision did not use."""
    if draw <= ratio:
        return draw / ratio if ratio > 0 else 0.0
    return (draw - ratio) / (1.0 - ratio) if ratio < 1 else 0.0


_SUBJECTS = (
    ("app_name_redirect_preference_list", "application_name"),
    ("database_redirect_preference_list", "database"),
    ("user_redirect_preference_list", "user"),
)


def choose_lb_node(cluster: ClusterView, draw: float, draw2: float | None = None, *,
                   app_name: str = "", database: str = "", user: str = "",
                   app_list: tuple[Entry, ...] = (), db_list: tuple[Entry, ...] = (),
                   user_list: tuple[Entry, ...] = ()) -> tuple[int | None, str]:
    """Pick the load-balance node: ``(node_id, reason)``; reason starts 'node N: '.

    ``draw`` decides the redirect ratio (r <= ratio: the suggested node);
    ``draw2`` drives the weighted draw.  With ``draw2=None`` one draw serves
    both (the part of ``draw`` the ratio test did not use is rescaled).

    Redirect lists: application_name (only if non-empty) beats database beats
    user; within a list the first matching entry decides.  A match naming a
    node that is down counts as no match in that list.  ``standby`` draws a
    standby by weight (r > ratio: the primary); a node id or ``primary`` with
    r > ratio draws by weight among the *other* usable nodes.  Without a
    match: a weighted draw over all usable nodes with weight > 0.  Nothing
    usable: the primary (None if the cluster has no primary).
    """
    usable = [n for n in cluster.nodes if n.usable]
    primary = cluster.primary_id
    subjects = (app_name, database, user)
    for (key, what), value, entries in zip(_SUBJECTS, subjects, (app_list, db_list, user_list),
                                           strict=True):
        if not entries or (key == _SUBJECTS[0][0] and not value):
            continue
        entry = next((e for e in entries if e.matches(value)), None)
        if entry is None:
            continue
        if entry.node == STANDBY_TOKEN:
            suggested: NodeView | None = None  # resolved below
        else:
            node_id = primary if entry.node == PRIMARY_TOKEN else entry.node
            suggested = cluster.get(node_id) if isinstance(node_id, int) else None
            if suggested is None or not suggested.usable:
                continue  # as Pgpool-II: an invalid suggestion leaves the lower lists in play
        why = f"{what} {value!r} matches {key} entry {entry.index} ({entry.text!r})"
        second = draw2 if draw2 is not None else _rescale(draw, entry.ratio)
        hit = draw <= entry.ratio
        ratio_note = "" if entry.ratio >= 1.0 else (
            f", draw {draw:.3f} <= ratio {entry.ratio:g}" if hit
            else f", draw {draw:.3f} > ratio {entry.ratio:g}")
        if suggested is None:  # 'standby'
            if hit:
                standbys = [n for n in usable if n.node_id != primary]
                chosen = weighted_pick(standbys, second)
                if chosen is not None:
                    return chosen.node_id, (f"node {chosen.node_id}: {why}{ratio_note}; "
                                            f"standby drawn by {_share(chosen, standbys)}")
                return primary, f"node {primary}: {why}; no usable standby with weight > 0, primary"
            return primary, f"node {primary}: {why}{ratio_note}; primary"
        if hit:
            return suggested.node_id, f"node {suggested.node_id}: {why}{ratio_note}"
        others = [n for n in usable if n.node_id != suggested.node_id]
        chosen = weighted_pick(others, second)
        if chosen is not None:
            return chosen.node_id, (f"node {chosen.node_id}: {why}{ratio_note}; drawn by "
                                    f"{_share(chosen, others)} among the other nodes")
        return primary, f"node {primary}: {why}{ratio_note}; no other usable node, primary"
    chosen = weighted_pick(usable, draw if draw2 is None else draw2)
    if chosen is None:
        return primary, f"node {primary}: no usable node with weight > 0, primary"
    return chosen.node_id, f"node {chosen.node_id}: drawn by {_share(chosen, usable)}"


@implementer(IBalancer)
class WeightedBalancer:
    """choose_lb_node with fixed redirect preference lists: the IBalancer of the
    weighted_balancer policy, and (with no lists) the one a chain without it uses."""

    def __init__(self, app_list: tuple[Entry, ...] = (), db_list: tuple[Entry, ...] = (),
                 user_list: tuple[Entry, ...] = ()) -> None:
        self.app_list = app_list
        self.db_list = db_list
        self.user_list = user_list

    def choose(self, cluster: ClusterView, session: SessionView, draw: float,
               draw2: float | None = None) -> tuple[int | None, str]:
        return choose_lb_node(cluster, draw, draw2, app_name=session.application_name,
                              database=session.database, user=session.user,
                              app_list=self.app_list, db_list=self.db_list,
                              user_list=self.user_list)


WEIGHTS_ONLY = WeightedBalancer()
"""The balancer of a chain without an IBalancer: a weighted draw over the usable nodes."""
