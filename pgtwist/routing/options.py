"""Reading one routing policy's options, with errors that name their path.

Options arrive either from the flat Pgpool-II parameters (already converted by
``pgtwist.config``: tuples, bools, numbers) or from a ``routing.policies[i]``
block of raw YAML (strings, lists, numbers); every reader accepts both.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping

from ..errors import ConfigError

# disable_load_balance_on_write values (§1.4): read by the stickiness policy's options and
# interpreted by routing.stickiness.
MODES = ("off", "transaction", "trans_transaction", "always", "dml_adaptive")

_TRUE = frozenset({"on", "true", "yes", "1"})
_FALSE = frozenset({"off", "false", "no", "0"})
_SEMI_SPLIT = re.compile(r"(?<!\\);")


def config_error(errors: list[str] | str) -> ConfigError:
    """The error a routing option reader raises: every problem, each naming its path."""
    return ConfigError(errors)


class OptionReader:
    """Collects every problem in one options mapping, then raises them together."""

    def __init__(self, raw: object, path: str, known: tuple[str, ...]) -> None:
        self.path = path
        self.errors: list[str] = []
        if raw is None:
            raw = {}
        if not isinstance(raw, Mapping):
            self.errors.append(f"{path or 'routing'}: expected a mapping of options, "
                               f"got {type(raw).__name__}")
            raw = {}
        self.raw = raw
        for key in raw:
            if key not in known:
                close = difflib.get_close_matches(str(key), known, n=1, cutoff=0.6)
                hint = f"; did you mean {close[0]}?" if close else ""
                expected = ", ".join(known) if known else "no options"
                self.errors.append(f"{self.where(str(key))}: unknown option "
                                   f"(expected {expected}){hint}")

    def where(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def error(self, key: str, message: str) -> None:
        self.errors.append(f"{self.where(key)}: {message}")

    def bool(self, key: str, default: bool) -> bool:
        value = self.raw.get(key, default)
        if isinstance(value, bool):
            return value
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
        if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
            return value.strip().lower() in _TRUE
        self.error(key, f"expected on/off, got {value!r}")
        return default

    def choice(self, key: str, default: str, choices: tuple[str, ...],
               aliases: Mapping[str, str] | None = None) -> str:
        value = self.raw.get(key, default)
        if isinstance(value, bool):
            value = "on" if value else "off"
        if isinstance(value, str):
            word = value.strip().lower()
            if aliases and word in aliases:
                return aliases[word]
            if word in choices:
                return word
        accepted = (*choices, *(aliases or {}))
        self.error(key, f"expected one of {', '.join(accepted)}, got {value!r}")
        return default

    def number(self, key: str, default: float, lo: float = 0.0) -> float:
        value = self.raw.get(key, default)
        if not isinstance(value, bool) and isinstance(value, (int, float, str)):
            try:
                number = float(value)
            except ValueError:
                pass
            else:
                if number >= lo and number == number and number != float("inf"):
                    return number
        self.error(key, f"expected a number >= {lo:g}, got {value!r}")
        return default

    def items(self, key: str, sep: str = ",") -> tuple[str, ...]:
        """A comma (or ';') separated string or a list of strings -> stripped non-empty items."""
        value = self.raw.get(key, ())
        if value is None:
            return ()
        if isinstance(value, str):
            parts = _SEMI_SPLIT.split(value) if sep == ";" else value.split(sep)
        elif isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
            parts = list(value)
        else:
            self.error(key, f"expected a '{sep}'-separated string or a list of strings, "
                            f"got {type(value).__name__}")
            return ()
        return tuple(p.strip() for p in parts if p.strip())

    def done(self) -> None:
        if self.errors:
            raise config_error(self.errors)
