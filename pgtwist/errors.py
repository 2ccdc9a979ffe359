"""Errors every layer may raise, with no imports of their own (the bottom layer)."""

from __future__ import annotations


class ConfigError(Exception):
    """Every problem found in a configuration, each as ``"path: message"``."""

    def __init__(self, errors: list[str] | str) -> None:
        self.errors = [errors] if isinstance(errors, str) else list(errors)
        super().__init__("\n".join(self.errors))

    def __str__(self) -> str:
        return "\n".join(self.errors)
