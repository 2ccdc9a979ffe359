"""pgtwist's layers: every module of the tree has one, and imports only from its own layer or
lower ones; the sans-IO layers import neither Twisted nor sqlglot (checked in a fresh
interpreter), and the SQL engine no Twisted."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from .importgraph import import_graph, modules_in

ROOT = Path(__file__).resolve().parents[2]

# Bottom to top. A module may import modules of its own layer and of the layers below it,
# never of a layer above. Every module in pgtwist/ is named here exactly once: a new module
# fails test_every_module_has_a_layer until it is given its place.
LAYERS: dict[str, tuple[str, ...]] = {
    # Plain values and declarations everything may use.
    "base": (
        "pgtwist", "pgtwist.errors", "pgtwist.timeouts", "pgtwist.options", "pgtwist.params",
        "pgtwist.interfaces", "pgtwist.config_routing", "pgtwist.config_values",
        "pgtwist.config_files", "pgtwist.config_pgpool",
        # the counters the relay fills for /metrics (pgtwist/metrics/)
        "pgtwist.metrics", "pgtwist.metrics.stats",
    ),
    # The PostgreSQL wire format: framing, message builders, codes.
    "wire": (
        "pgtwist.wire", "pgtwist.wire.codes", "pgtwist.wire.decode", "pgtwist.wire.errors",
        "pgtwist.wire.framing",
        "pgtwist.wire.messages",
    ),
    # Sans-IO machines and pure decisions: connection state machines, text-level SQL facts,
    # pure routing, file formats, the session's own bookkeeping, the config reader.
    "sans-io": (
        "pgtwist.conn", "pgtwist.conn.auth", "pgtwist.conn.backend", "pgtwist.conn.client_auth",
        "pgtwist.conn.frontend", "pgtwist.conn.scram", "pgtwist.conn.scram_reader",
        "pgtwist.conn.server",
        "pgtwist.sql", "pgtwist.sql.idents", "pgtwist.sql.info", "pgtwist.sql.normalize",
        "pgtwist.sql.split", "pgtwist.sql.state", "pgtwist.sql.utility",
        "pgtwist.routing", "pgtwist.routing.balancer", "pgtwist.routing.builtin",
        "pgtwist.routing.lbpolicy", "pgtwist.routing.consistency",
        "pgtwist.routing.chain", "pgtwist.routing.options", "pgtwist.routing.rules",
        "pgtwist.routing.stickiness", "pgtwist.routing.values",
        "pgtwist.auth", "pgtwist.auth.addresses", "pgtwist.auth.hba", "pgtwist.auth.hba_parse",
        "pgtwist.auth.passwd",
        "pgtwist.pooling", "pgtwist.pooling.statements", "pgtwist.pooling.reset",
        "pgtwist.pooling.waiting",
        "pgtwist.session", "pgtwist.session.state", "pgtwist.session.ordering",
        "pgtwist.session.outbox",
        "pgtwist.admission", "pgtwist.admin", "pgtwist.config", "pgtwist.logfmt",
        "pgtwist.adminview", "pgtwist.adminview.clients", "pgtwist.adminview.descriptions",
        "pgtwist.adminview.live", "pgtwist.adminview.nodes", "pgtwist.adminview.settings",
        "pgtwist.session.poolsettings",
        "pgtwist.pcp", "pgtwist.pcp.codec", "pgtwist.pcp.conf", "pgtwist.pcp.machine",
    ),
    # The SQL classifier: pure, but the only user of sqlglot.
    "sql-engine": ("pgtwist.sql.classify", "pgtwist.sql.parsed"),
    # Twisted I/O: logging, TLS, the protocols, the pool of links, the catalog and cluster
    # probes.
    "io": (
        "pgtwist.logs", "pgtwist.sessionlog", "pgtwist.tls", "pgtwist.protocols", "pgtwist.protocols.backend",
        "pgtwist.protocols.fastwrite", "pgtwist.protocols.frontend", "pgtwist.pooling.pool",
        "pgtwist.catalog", "pgtwist.cluster", "pgtwist.checks",
    ),
    # Services the sessions are given: checkouts, one session's authentication, the policy
    # registry and the router.
    "services": (
        "pgtwist.pooling.checkout", "pgtwist.auth.session", "pgtwist.registry",
        "pgtwist.router", "pgtwist.lsn",
    ),
    # The session objects that drive one client's traffic.
    "session": (
        "pgtwist.session.flow", "pgtwist.session.links", "pgtwist.session.modes",
        "pgtwist.session.copyin", "pgtwist.session.placement", "pgtwist.session.poolmode", "pgtwist.session.relay", "pgtwist.session.replies", "pgtwist.session.retry",
        "pgtwist.session.requests", "pgtwist.session.startup", "pgtwist.session.txmode",
        "pgtwist.session.txquery",
        "pgtwist.session.consistency", "pgtwist.session.adminq",
    ),
    # Composition root and entry points (and the test fakes, which build a service).
    "root": (
        "pgtwist.service", "pgtwist.tap", "pgtwist.pcp.commands", "pgtwist.pcp.protocol",
        "pgtwist.pcp.service", "pgtwist.cli", "pgtwist.check", "pgtwist.testing",
        # the metrics port: snapshot of the model, Prometheus families, HTTP + probes
        "pgtwist.metrics.snapshot", "pgtwist.metrics.collector", "pgtwist.metrics.http",
        "pgtwist.metrics.pgpool",
    ),
    # Developer tooling, apart from the product: nothing above imports it.
    "dev": ("pgtwist.dev", "pgtwist.dev.devcluster", "pgtwist.dev.demo", "pgtwist.dev.pgserver",
            "pgtwist.dev.localcluster", "pgtwist.dev.dockercluster"),
}

# Layers whose modules may load neither Twisted nor sqlglot.
SANS_IO_LAYERS = ("base", "wire", "sans-io")

LAYER_OF = {module: layer for layer, modules in LAYERS.items() for module in modules}
RANK = {layer: rank for rank, layer in enumerate(LAYERS)}

TREE = modules_in(ROOT / "pgtwist", "pgtwist")

SANS_IO_MODULES = [module for layer in SANS_IO_LAYERS for module in LAYERS[layer]]

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


# --- every module has a layer; imports go downward ---------------------------------------------

def test_the_tree_walk_finds_nested_packages():
    # Guard against a walk that would miss modules: sub-packages, __init__ and deep ones.
    assert {"pgtwist", "pgtwist.auth", "pgtwist.auth.hba", "pgtwist.dev.devcluster",
            "pgtwist.routing.builtin", "pgtwist.session.relay"} <= set(TREE)
    assert len(TREE) >= 70


def test_every_module_has_a_layer():
    assert sorted(set(TREE) - set(LAYER_OF)) == []


def test_every_layer_entry_is_a_module_of_the_tree_named_once():
    named = [module for modules in LAYERS.values() for module in modules]
    assert sorted({m for m in named if named.count(m) > 1}) == []
    assert sorted(set(LAYER_OF) - set(TREE)) == []


def upward_imports(graph: dict[str, set[str]]) -> dict[str, list[str]]:
    """Module -> the modules it imports from a higher layer (or of no layer at all)."""
    found = {}
    for module, targets in graph.items():
        rank = RANK[LAYER_OF[module]]
        bad = sorted(t for t in targets if t not in LAYER_OF or RANK[LAYER_OF[t]] > rank)
        if bad:
            found[module] = bad
    return found


def test_lower_layers_never_import_upper_ones():
    graph = import_graph(ROOT / "pgtwist", "pgtwist")
    assert upward_imports(graph) == {}


def test_upward_import_check_can_fail():
    # Guard: a wire module importing the service, and an import of no known module, are caught.
    graph = {"pgtwist.wire.codes": {"pgtwist.service", "pgtwist.errors"},
             "pgtwist.service": {"pgtwist.wire.codes", "pgtwist.nowhere"}}
    assert upward_imports(graph) == {"pgtwist.wire.codes": ["pgtwist.service"],
                                     "pgtwist.service": ["pgtwist.nowhere"]}


@pytest.mark.parametrize("module", LAYERS["sql-engine"])
def test_sql_engine_does_not_load_twisted(module):
    assert "twisted" not in {mod.split(".")[0] for mod in loaded_forbidden(module)}


def test_old_module_paths_are_gone():
    """The auth and pooling code live in their packages; nothing is left at the old paths."""
    for gone in ("auth", "hba", "passwd", "pool", "pooling", "txpool"):
        assert not (ROOT / "pgtwist" / f"{gone}.py").exists(), gone
    assert (ROOT / "pgtwist" / "auth" / "__init__.py").exists()
    assert (ROOT / "pgtwist" / "pooling" / "__init__.py").exists()
