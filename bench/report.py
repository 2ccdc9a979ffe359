"""Which ratios a table shows, and plain-text tables: pure helpers shared by the sections."""

from __future__ import annotations

from .targets import BASE_OF, PGTWISTS


def ratio_pairs(names: list[str]) -> list[tuple[str, str]]:
    """The tps ratios worth printing among the targets that ran, as (numerator, denominator).

    ``pgtwist`` (replica weight 0) against every non-pgtwist target; ``pgtwist-lb``
    against direct PostgreSQL and against ``pgtwist`` (what load balancing adds);
    ``pgtwist-lb-metrics`` against ``pgtwist-lb`` (what the metrics port costs); then
    each pgtwist target against its ``--base-rev`` twin.
    """
    pairs = []
    if "pgtwist" in names:
        pairs += [("pgtwist", other) for other in names if other not in PGTWISTS]
    if "pgtwist-lb" in names:
        pairs += [("pgtwist-lb", other) for other in ("direct", "pgtwist") if other in names]
    if "pgtwist-lb-metrics" in names and "pgtwist-lb" in names:
        pairs.append(("pgtwist-lb-metrics", "pgtwist-lb"))  # what the metrics port costs
    pairs += base_pairs(names)
    return pairs


def base_pairs(names: list[str]) -> list[tuple[str, str]]:
    """(pgtwist target, its base twin) for the twins that ran."""
    return [(cur, base) for cur, base in BASE_OF.items() if cur in names and base in names]


def ratios(values: dict, pairs: list[tuple[str, str]], prefix: str = "") -> dict:
    """``{"a/b": values[a] / values[b]}`` for the pairs where both values are there."""
    return {
        f"{prefix}{a}/{b}": round(values[a] / values[b], 3)
        for a, b in pairs
        if values.get(a) and values.get(b)
    }


def num(value, fmt: str = "{:,.0f}", missing: str = "-") -> str:
    return missing if value is None else fmt.format(value)


def table(head: list[str], body: list[list[str]], left: int = 2) -> str:
    """Columns padded to width; the first ``left`` columns left-aligned, the rest right."""
    widths = [max(len(r[i]) for r in [head, *body]) for i in range(len(head))]
    lines = [
        "  ".join(
            c.rjust(w) if i >= left else c.ljust(w)
            for i, (c, w) in enumerate(zip(r, widths, strict=True))
        ).rstrip()
        for r in [head, *body]
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)
