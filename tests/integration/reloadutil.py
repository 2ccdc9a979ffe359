"""Reloading a running test daemon: rewrite its YAML config, send SIGHUP, wait for it."""

from __future__ import annotations

import os
import signal
import time

import yaml


def rewrite_config(pg, **changes) -> None:
    """Set top-level keys of ``pg``'s config file (the daemon reads it on SIGHUP)."""
    with open(pg.config_path) as f:
        config = yaml.safe_load(f)
    config.update(changes)
    with open(pg.config_path, "w") as f:
        yaml.safe_dump(config, f)


def hup_and_wait(pg, marker: str = "configuration reloaded") -> None:
    """SIGHUP, then wait until the log shows ``marker`` once more (10 s at most)."""
    before = pg.log_text().count(marker)
    os.kill(pg.proc.pid, signal.SIGHUP)
    deadline = time.monotonic() + 10
    while pg.log_text().count(marker) <= before:
        assert time.monotonic() < deadline, pg.log_text()[-2000:]
        time.sleep(0.05)
