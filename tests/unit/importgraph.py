"""The static import graph of pgtwist, read from the source with ast (nothing is imported).

Shared by the layering tests (test_layering.py, test_routing_layering.py)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _imports(path: Path, module: str) -> set[str]:
    """Every pgtwist module ``path`` imports, at module level or inside functions."""
    package = module.rsplit(".", 1)[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module
            found.add(target)
            # "from . import m" imports the module m too.
            found.update(f"{target}.{a.name}" for a in node.names
                         if _is_module(f"{target}.{a.name}"))
    return {name for name in found if name.split(".")[0] == "pgtwist"}


def _is_module(name: str) -> bool:
    parts = name.split(".")
    return (ROOT.joinpath(*parts).with_suffix(".py").exists()
            or ROOT.joinpath(*parts, "__init__.py").exists())


def modules_in(package_dir: Path, package: str) -> dict[str, Path]:
    """Every module under ``package_dir`` (recursively), by dotted name; a package's name
    stands for its ``__init__.py``."""
    found = {}
    for path in sorted(package_dir.rglob("*.py")):
        parts = list(path.relative_to(package_dir).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join([package, *parts])] = path
    return found


def import_graph(package_dir: Path, package: str) -> dict[str, set[str]]:
    """Module -> the pgtwist modules it imports, for every module under ``package_dir``."""
    graph = {}
    for module, path in modules_in(package_dir, package).items():
        # For an __init__.py, relative imports resolve against the package itself.
        name = f"{module}.__init__" if path.name == "__init__.py" else module
        graph[module] = _imports(path, name)
    return graph
