"""Errors shared by every layer (bottom layer: imports nothing from pgtwist)."""

from __future__ import annotations


class ConfigError(Exception):
    """Every problem found in a configuration, each as ``"path: message"``."""

    def __init__(self, errors: list[str] | str) -> None:
        self.errors = [errors] if isinstance(errors, str) else list(errors)
        super().__init__("\n".join(self.errors))

    def __str__(self) -> str:
        return "\n".join(self.errors)
