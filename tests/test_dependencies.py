"""Every third-party package the gateway imports is declared in pyproject.toml.

A package that only arrives as another's dependency (yarl comes with aiohttp) can disappear
or change under us on any upgrade of that other package; importing it directly means
declaring it.
"""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "gateway"


def top_level_imports(path: Path) -> set[str]:
    """Top-level names of what a module imports when it runs (not under TYPE_CHECKING)."""
    tree = ast.parse(path.read_text())
    typing_only = {id(n) for block in ast.walk(tree) if isinstance(block, ast.If)
                   and isinstance(block.test, ast.Name) and block.test.id == "TYPE_CHECKING"
                   for stmt in block.body for n in ast.walk(stmt)}
    found = set()
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.ImportFrom) and not node.level and node.module:
            found.add(node.module.split(".")[0])
        elif isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
    return found


def declared_distributions() -> set[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    requirements = list(project["dependencies"])
    for extra, items in project.get("optional-dependencies", {}).items():
        if extra != "test":
            requirements.extend(items)
    return {_normal(re.match(r"[A-Za-z0-9._-]+", r)[0]) for r in requirements}


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def test_every_imported_package_is_declared():
    """A module of gateway/ imports only the standard library, gateway itself and the
    distributions pyproject.toml names (dependencies or a non-test extra)."""
    distributions = packages_distributions()
    declared = declared_distributions()
    missing = {}
    for path in PACKAGE.rglob("*.py"):
        for module in top_level_imports(path):
            if module in sys.stdlib_module_names or module == "gateway":
                continue
            owners = {_normal(d) for d in distributions.get(module, [])}
            if not owners & declared:
                missing.setdefault(module, []).append(str(path.relative_to(ROOT)))
    assert not missing, f"imported but not declared in pyproject.toml: {missing}"
