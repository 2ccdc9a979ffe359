"""The sans-IO layers import neither Twisted nor sqlglot (checked in a fresh interpreter)."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

SANS_IO_MODULES = [
    "pgtwist.wire",
    "pgtwist.wire.codes",
    "pgtwist.wire.errors",
    "pgtwist.wire.framing",
    "pgtwist.wire.messages",
    "pgtwist.conn",
    "pgtwist.conn.frontend",
    "pgtwist.conn.backend",
    "pgtwist.conn.auth",
    "pgtwist.errors",
    "pgtwist.options",
]

FORBIDDEN = ("twisted", "sqlglot")

_PROBE = """
import importlib, json, sys
for name in sys.argv[1:]:
    importlib.import_module(name)
print(json.dumps(sorted(
    mod for mod in sys.modules
    if mod.split(".")[0] in {forbidden!r}
)))
"""


def loaded_forbidden(*modules: str) -> list[str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    result = subprocess.run(
        [sys.executable, "-c", _PROBE.format(forbidden=set(FORBIDDEN)), *modules],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_probe_detects_forbidden_imports():
    # Guard against a probe that can never fail.
    assert "twisted.internet" in loaded_forbidden("twisted.internet")


@pytest.mark.parametrize("module", SANS_IO_MODULES)
def test_sans_io_module_does_not_load_twisted_or_sqlglot(module):
    assert loaded_forbidden(module) == []


def test_all_sans_io_modules_together():
    assert loaded_forbidden(*SANS_IO_MODULES) == []


def test_routing_does_not_load_twisted_or_sqlglot():
    if importlib.util.find_spec("pgtwist.routing") is None:
        pytest.skip("pgtwist.routing does not exist yet; nothing to check")
    modules = ["pgtwist.routing"]
    routing_dir = ROOT / "pgtwist" / "routing"
    modules += sorted(
        f"pgtwist.routing.{path.stem}"
        for path in routing_dir.glob("*.py")
        if path.stem != "__init__"
    )
    assert loaded_forbidden(*modules) == []
