"""
The layering of DESIGN.md, checked on every test run: imports point down only.

Every module of drd is parsed (nothing is imported) and each ``import`` it makes at run
time (``if TYPE_CHECKING:`` blocks excluded) is checked against the layer table below:
a module may import its own package and any lower layer, and a use case may import
another use case only where DESIGN allows it (drill → restore → snapshot).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

DRD = Path(__file__).resolve().parents[1] / "drd"

# Top first. A module's layer is the first entry whose prefix names it.
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("cli", ("drd.cli", "drd.__main__", "drd.commands")),
    ("daemon", ("drd.daemon",)),
    ("app", ("drd.app", "drd.resources")),
    ("use cases", ("drd.replicate", "drd.snapshot", "drd.restore", "drd.drill", "drd.failover")),
    ("shared", ("drd.selection", "drd.replica", "drd.scrub", "drd.timeline")),
    ("trust", ("drd.trust",)),
    ("seams", ("drd.oci", "drd.registry", "drd.store", "drd.state")),
    (
        "leaves",
        (
            "drd.config",
            "drd.logs",
            "drd.metrics",
            "drd.errors",
            "drd.retry",
            "drd.durations",
            "drd.schedule",
            "drd.files",
            "drd.progress",
            "drd.aio",  # asyncio helpers only: it imports nothing of drd
            "drd.__init__",
            "drd",
        ),
    ),
]
USE_CASES = ("drd.replicate", "drd.snapshot", "drd.restore", "drd.drill", "drd.failover")
# The sideways imports DESIGN allows between use cases.
SIDEWAYS = {
    ("drd.drill", "drd.restore"),
    ("drd.drill", "drd.snapshot"),
    ("drd.restore", "drd.snapshot"),
}
# Upward imports that are known and bounded: the config loader checks the key files it
# names with trust's own parsers, so a bad key is a config error (exit 78) at load time.
UPWARD = {("drd.config", "drd.trust")}
# Below the app layer nothing reads the whole configuration.
APP_ONLY_NAMES = {"Settings", "load_settings"}


def _modules() -> Iterator[tuple[str, Path]]:
    for path in sorted(DRD.rglob("*.py")):
        parts = path.relative_to(DRD.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        yield name, path


def _runtime_imports(tree: ast.AST) -> Iterator[tuple[str, tuple[str, ...], int]]:
    """(module, imported names, line) for every import outside ``if TYPE_CHECKING:``."""
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skip.update(id(n) for child in node.body for n in ast.walk(child))
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module, tuple(a.name for a in node.names), node.lineno
        elif isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, (), node.lineno


def _layer(module: str) -> int:
    for index, (_, prefixes) in enumerate(LAYERS):
        if any(module == p or module.startswith(p + ".") for p in prefixes):
            return index
    raise AssertionError(f"{module} is in no layer: add it to LAYERS")


def _package(module: str) -> str:
    return ".".join(module.split(".")[:2])


def violations() -> list[str]:
    found = []
    for name, path in _modules():
        here = _layer(name)
        for target, names, line in _runtime_imports(ast.parse(path.read_text())):
            if target != "drd" and not target.startswith("drd."):
                continue
            where = f"{path.relative_to(DRD.parent)}:{line}"
            if target == "drd":
                target = f"drd.{names[0]}" if names and names[0] != "__version__" else "drd"
            there = _layer(target)
            same_package = _package(name) == _package(target)
            if there < here and (_package(name), _package(target)) not in UPWARD:
                found.append(f"{where}: {name} ({LAYERS[here][0]}) imports {target} upward")
            elif (
                there == here
                and _package(name) in USE_CASES
                and not same_package
                and (_package(name), _package(target)) not in SIDEWAYS
            ):
                found.append(f"{where}: use case {name} imports {target} sideways")
            if here > 2 and _package(name) != "drd.config" and APP_ONLY_NAMES & set(names):
                found.append(f"{where}: {name} reads the whole configuration ({names})")
    return found


def test_imports_point_down_only() -> None:
    """No module imports a higher layer, or a use case sideways beyond DESIGN's three."""
    assert violations() == []


@pytest.mark.parametrize("module", ["drd.replicate.runner", "drd.drill.runner"])
def test_every_module_has_a_layer(module: str) -> None:
    """The check would see an engine importing the app layer (it knows both layers)."""
    assert _layer(module) > _layer("drd.app.drills") > _layer("drd.commands.drill")
