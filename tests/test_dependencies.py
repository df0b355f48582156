"""Every third-party package that ``lipverify/`` imports is declared in ``pyproject.toml`` (issue 11, item 13).

The imports are read from the source with :mod:`ast` (top-level and function-level ``import``/``from``
statements, relative imports excluded); the standard library is ``sys.stdlib_module_names``; an import name
is mapped to its distribution with ``importlib.metadata.packages_distributions`` (e.g. ``flint`` ->
``python-flint``).  Packages imported only lazily for optional features must be in an extra.
"""

from __future__ import annotations

import ast
import importlib.metadata
import re
import sys
from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib", reason="tomllib is in the standard library from Python 3.11")

ROOT = Path(__file__).resolve().parents[1]
#: import names allowed to be declared as an optional extra only (imported lazily, for one feature)
OPTIONAL = {"torch", "matplotlib", "hypothesis", "distributed"}


def _dist_name(requirement: str) -> str:
    return re.split(r"[\s\[<>=!~;]", requirement.strip(), maxsplit=1)[0].lower().replace("_", "-")


def _declared() -> tuple[set[str], set[str]]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    runtime = {_dist_name(r) for r in project["dependencies"]}
    extras = {_dist_name(r) for reqs in project.get("optional-dependencies", {}).values() for r in reqs}
    return runtime, extras


def _imported_top_level() -> dict[str, str]:
    """``{top-level module name: first file importing it}`` over every ``.py`` file of ``lipverify/``."""
    found: dict[str, str] = {}
    for path in sorted((ROOT / "lipverify").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                found.setdefault(name.split(".")[0], str(path.relative_to(ROOT)))
    return found


def _distributions(module: str) -> set[str]:
    mapping = importlib.metadata.packages_distributions()
    return {d.lower().replace("_", "-") for d in mapping.get(module, [module])}


def test_every_third_party_import_is_declared():
    runtime, extras = _declared()
    missing = []
    for module, where in _imported_top_level().items():
        if module in sys.stdlib_module_names or module in ("lipverify", "__future__"):
            continue
        dists = _distributions(module)
        allowed = runtime | extras if module in OPTIONAL else runtime
        if not dists & allowed:
            missing.append(f"{module} (distribution {sorted(dists)}, imported in {where})")
    assert not missing, "imported but not declared in pyproject.toml: " + "; ".join(missing)


def test_highspy_is_a_runtime_dependency():
    # ``import lipverify`` imports highspy (lipverify/exact/regions.py); it once arrived only through cvxpy
    runtime, _ = _declared()
    assert "highspy" in runtime


def test_every_sdp_solver_is_declared():
    # the SDP solvers are called by name through cvxpy/cvxopt, so no import statement reveals them
    from lipverify.sdp import SOLVERS

    runtime, _ = _declared()
    assert {s.lower() for s in SOLVERS} <= runtime
