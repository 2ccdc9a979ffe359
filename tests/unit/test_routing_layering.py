"""pgtwist.routing (and the test fakes) import neither Twisted nor sqlglot."""

import subprocess
import sys
from pathlib import Path

from .importgraph import _imports

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


# --- static import graph of pgtwist.routing -----------------------------------------------------

# What routing may import from pgtwist: itself, plain SQL result values and the sans-IO text
# facts (no sqlglot), interfaces, errors.
ROUTING_MAY_IMPORT = ("pgtwist.routing", "pgtwist.sql.info", "pgtwist.sql.state",
                      "pgtwist.interfaces", "pgtwist.errors")


def _routing_graph() -> dict[str, set[str]]:
    graph = {}
    for path in sorted((ROOT / "pgtwist" / "routing").glob("*.py")):
        module = f"pgtwist.routing.{path.stem}"
        graph[module] = _imports(path, module)
    return graph


def test_routing_imports_only_downward():
    graph = _routing_graph()
    assert "pgtwist.routing.builtin" in graph and len(graph) >= 8
    upward = {m: sorted(t for t in targets if not t.startswith(ROUTING_MAY_IMPORT))
              for m, targets in graph.items()}
    assert {m: t for m, t in upward.items() if t} == {}


def test_routing_has_no_import_cycle():
    full = _routing_graph()
    graph = {m: {t for t in targets if t in full} for m, targets in full.items()}
    assert "pgtwist.routing.builtin" in graph["pgtwist.routing.stickiness"]
    visiting: list[str] = []
    done: set[str] = set()

    def visit(module: str) -> None:
        assert module not in visiting, " -> ".join([*visiting, module])
        if module in done:
            return
        visiting.append(module)
        for target in sorted(graph.get(module, ())):
            visit(target)
        visiting.pop()
        done.add(module)

    for module in sorted(graph):
        visit(module)


def test_import_graph_sees_local_imports(tmp_path):
    # Guard against a graph that could never find the old cycle: a function-level import.
    source = tmp_path / "m.py"
    source.write_text("def f():\n    from .stickiness import MODES\n"
                      "    from pgtwist import config\n    from .. import errors\n")
    assert _imports(source, "pgtwist.routing.m") == {
        "pgtwist.routing.stickiness", "pgtwist", "pgtwist.config", "pgtwist.errors"}


def test_option_errors_are_the_configs_error_class():
    from pgtwist import config, errors
    from pgtwist.routing.options import MODES, OptionReader, config_error

    assert config.ConfigError is errors.ConfigError
    assert isinstance(config_error("x: bad"), config.ConfigError)
    key = "disable_load_balance_on_write"
    reader = OptionReader({key: "sometimes"}, "p", (key,))
    assert reader.choice(key, "transaction", MODES) == "transaction"
    assert reader.errors == ["p.disable_load_balance_on_write: expected one of off, transaction, "
                             "trans_transaction, always, dml_adaptive, got 'sometimes'"]
