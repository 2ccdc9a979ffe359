"""pgtwist.routing (and the test fakes) import neither Twisted nor sqlglot."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

CHECK = """
import importlib, pkgutil, sys
import pgtwist.routing
names = ["pgtwist.routing", "pgtwist.testing"] + [
    m.name for m in pkgutil.walk_packages(pgtwist.routing.__path__, "pgtwist.routing.")]
for name in names:
    importlib.import_module(name)
bad = sorted(m for m in sys.modules if m.split(".")[0] in ("twisted", "sqlglot", "sqlglotc"))
print(len(names), bad)
"""


def test_routing_imports_neither_twisted_nor_sqlglot():
    out = subprocess.run([sys.executable, "-c", CHECK], cwd=ROOT, capture_output=True,
                         text=True, check=True).stdout.split(maxsplit=1)
    assert int(out[0]) >= 9, out  # routing + its modules + testing were all imported
    assert out[1].strip() == "[]"
