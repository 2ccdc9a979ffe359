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
    "pgtwist.conn.server",
    # The session layer's state and bookkeeping are sans-IO too; its I/O glue is not.
    "pgtwist.session",
    "pgtwist.session.state",
    "pgtwist.session.ordering",
    "pgtwist.session.outbox",
]

# Every module of the session package (pgtwist/session/), found in the tree.
SESSION_MODULES = sorted(
    f"pgtwist.session.{path.stem}"
    for path in (ROOT / "pgtwist" / "session").glob("*.py")
    if path.stem != "__init__"
)

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


def test_the_session_package_is_what_the_lists_know():
    """The sans-IO list above names session modules that exist; the relay's old mixin
    modules are gone (the session layer is pgtwist.session, composed objects)."""
    sans_io_session = [mod for mod in SANS_IO_MODULES if mod.startswith("pgtwist.session.")]
    assert set(sans_io_session) <= set(SESSION_MODULES)
    assert "pgtwist.session.relay" in SESSION_MODULES
    for gone in ("relay", "handlers", "txhandlers", "linkevents", "startup", "flow"):
        assert not (ROOT / "pgtwist" / f"{gone}.py").exists(), gone
    assert not (ROOT / "pgtwist" / "conn" / "ordering.py").exists()


@pytest.mark.parametrize("module", SESSION_MODULES)
def test_session_module_imports_without_sqlglot(module):
    # The session layer routes through pgtwist.router; only pgtwist.sql.classify
    # imports sqlglot, and only router.py imports that.
    assert "sqlglot" not in {mod.split(".")[0] for mod in loaded_forbidden(module)}


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
