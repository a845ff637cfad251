"""Dependencies point one way, the way data flows: runtime -> wire format <- streams <- agents.

Every ``.py`` file of the library packages is parsed (not imported) and each import is resolved to
an absolute ``agentflux.*`` name (relative imports included), so a rule breaks the moment a file
imports across it, whether or not that code path runs in a test. The package names come from the
``package-dir`` mapping in pyproject.toml, the one place the folders are mapped to packages.
"""

from __future__ import annotations

import ast
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE_DIRS = {pkg: ROOT / d for pkg, d in tomllib.loads(
    (ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-dir"].items()}

BENCH = "agentflux.bench"
#: package -> the packages it must never import (the library never imports the benchmarks)
RULES: dict[str, tuple[str, ...]] = {
    "agentflux.schemas": (BENCH,),
    "agentflux.streams": ("agentflux.agents", BENCH),
    "agentflux.sinks": (BENCH,),
    "agentflux.agents": (BENCH,),
    "agentflux.runtime": ("agentflux.streams", "agentflux.agents", "agentflux.sinks", BENCH),
}


def imported_names(source: str, module: str, is_package: bool) -> list[tuple[int, list[str]]]:
    """(line, candidate absolute names) for every import in ``source`` of module ``module``.

    ``from a.b import c`` yields ``a.b`` and ``a.b.c`` (``c`` may be a submodule); relative
    imports are resolved against the module's package; ``importlib.import_module("x")`` with a
    literal name counts as importing ``x``."""
    package = module.split(".") if is_package else module.split(".")[:-1]
    out = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            out += [(node.lineno, [alias.name]) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package[:len(package) - node.level + 1] if node.level else []
            name = ".".join(base + ([node.module] if node.module else []))
            out.append((node.lineno, [name] + [f"{name}.{a.name}" for a in node.names
                                               if a.name != "*"]))
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
              and node.func.attr == "import_module" and node.args
              and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)):
            out.append((node.lineno, [node.args[0].value]))
    return sorted(out)


def violations(package: str, forbidden: tuple[str, ...]) -> list[str]:
    """``"file:line imports X"`` for every import in ``package`` of something in ``forbidden``."""
    root = PACKAGE_DIRS[package]
    found = []
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root).with_suffix("").parts
        is_package = rel[-1] == "__init__"
        module = ".".join((package, *(rel[:-1] if is_package else rel)))
        for line, names in imported_names(path.read_text(), module, is_package):
            hit = next((n for n in names if any(n == f or n.startswith(f + ".")
                                                for f in forbidden)), None)
            if hit is not None:
                found.append(f"{path.relative_to(ROOT)}:{line} imports {hit}")
    return found


def test_the_checker_resolves_absolute_relative_and_dynamic_imports():
    src = ("import agentflux.agents.timing\nfrom ..agents import timing\nfrom .. import bench\n"
           "from . import codec\nimportlib.import_module('agentflux.sinks.duckdb')\n")
    names = imported_names(src, "agentflux.streams.app", is_package=False)
    assert names == [(1, ["agentflux.agents.timing"]),
                     (2, ["agentflux.agents", "agentflux.agents.timing"]),
                     (3, ["agentflux", "agentflux.bench"]),
                     (4, ["agentflux.streams", "agentflux.streams.codec"]),
                     (5, ["agentflux.sinks.duckdb"])]
    assert imported_names("from . import x", "agentflux.streams", is_package=True) \
        == [(1, ["agentflux.streams", "agentflux.streams.x"])]


def test_every_rule_names_a_package_with_sources():
    for package, forbidden in RULES.items():
        assert any(PACKAGE_DIRS[package].glob("*.py")), package
        assert all(f in PACKAGE_DIRS for f in forbidden), forbidden


@pytest.mark.parametrize("package", RULES)
def test_package_imports_nothing_it_must_not(package):
    assert violations(package, RULES[package]) == []
