"""Dependencies flow one way: cli/server -> config/graph -> providers/state (DESIGN.md §6).

Walks every module's imports with ast, so a violation fails here rather than in review.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "gateway"

# A layer may import itself and anything to its right, never to its left.
LAYERS = ["cli", "server", "builtin", "files", "frontdoors", "config", "pluginmanager", "middleware", "hookspecs", "graph",
          "providers", "state", "keys", "vault", "store", "base", "types"]
BASE = {"errors", "logs", "events", "units", "pricing", "datadir", "request_record", "request_stats",
        "json_depth", "__init__"}


def layer_of(module: str) -> str:
    parts = module.split(".")
    top = parts[1] if len(parts) > 1 else "__init__"
    if top in BASE:
        return "base"
    return "cli" if top == "__main__" else top


def _type_checking_only(tree: ast.AST) -> set[ast.AST]:
    """Nodes inside `if TYPE_CHECKING:` blocks: imports for annotations, never run."""
    inside: set[ast.AST] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for statement in node.body:
                inside.update(ast.walk(statement))
    return inside


def imports(path: Path) -> set[str]:
    """The gateway modules ``path`` imports at run time."""
    tree = ast.parse(path.read_text())
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    package = list(rel.parts[:-1])
    found = set()
    skipped = _type_checking_only(tree)
    for node in ast.walk(tree):
        if node in skipped:
            continue
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            if module.startswith("gateway"):
                found.add(module)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("gateway"))
    return found


def test_imports_flow_one_way():
    """No module imports from a layer above its own."""
    violations = []
    for path in PACKAGE.rglob("*.py"):
        module = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        own = LAYERS.index(layer_of(module)) if layer_of(module) in LAYERS else None
        assert own is not None, f"{module} is in no layer; add it to LAYERS"
        for imported in imports(path):
            layer = layer_of(imported)
            if layer in LAYERS and LAYERS.index(layer) < own:
                violations.append(f"{module} imports {imported}")
    assert violations == []


def test_server_knows_no_builtin_feature():
    """server/ imports no built-in feature (gateway.builtin, .middleware, .keys): built-ins
    reach it through the hooks, like any plugin (admin routes, readiness, metrics, identify)."""
    features = ("gateway.builtin", "gateway.middleware", "gateway.keys")
    found = [f"{path.name} imports {imported}"
             for path in (PACKAGE / "server").rglob("*.py") for imported in imports(path)
             if imported.startswith(features)]
    assert found == []


def test_annotation_only_imports_do_not_count():
    """An import under `if TYPE_CHECKING:` adds no run-time dependency; one beside it does."""
    module = PACKAGE / "types.py"
    found = imports(module)
    assert found == set(), "gateway.types must import no gateway module at run time"
    source = ast.parse(module.read_text())
    guarded = [n for n in ast.walk(source) if n in _type_checking_only(source)
               and isinstance(n, ast.ImportFrom)]
    assert guarded, "types.py is expected to import its annotation types under TYPE_CHECKING"


def test_modules_stay_small():
    """No module grows past 800 lines."""
    big = [f"{p}: {n}" for p in PACKAGE.rglob("*.py") if (n := len(p.read_text().splitlines())) > 800]
    assert big == []
