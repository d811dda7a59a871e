"""The import graph stays acyclic and layered (docs/design.md): a module imports only its
own layer or lower ones, and the packages of one layer never import each other in a cycle.
Imports inside functions count: a lazy import is still a dependency."""

from __future__ import annotations

import ast
from pathlib import Path

LIC = Path(__file__).resolve().parents[1] / "lic"
LAYERS = [
    {"lic", "lic.errors", "lic.weights", "lic.lazy", "lic.devices", "lic.startup"},
    {"lic.data"},
    {"lic.codecs", "lic.metrics", "lic.tasks"},
    {"lic.losses", "lic.iqa", "lic.pcmp"},
    {"lic.evaluation", "lic.training"},
    {"lic.cli", "lic.cli_data", "lic.__main__", "lic.sweep"},
]


def unit(module: str) -> str:
    """The layer unit of a module: its package under lic (lic.tasks.vqa -> lic.tasks)."""
    parts = module.split(".")
    return ".".join(parts[:2])


def layer(module: str) -> int:
    for i, units in enumerate(LAYERS):
        if unit(module) in units:
            return i
    raise AssertionError(f"{module}: not in any layer of docs/design.md; add it to LAYERS")


def imports() -> dict[str, set[str]]:
    graph = {}
    for path in LIC.rglob("*.py"):
        name = ".".join(path.relative_to(LIC.parent).with_suffix("").parts)
        name = name.removesuffix(".__init__")
        targets = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets |= {a.name for a in node.names if a.name.startswith("lic")}
            elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("lic"):
                targets.add(node.module)
        graph[name] = targets
    return graph


def test_every_import_goes_down_or_sideways():
    upward = [
        f"{source} (layer {layer(source)}) imports {target} (layer {layer(target)})"
        for source, targets in imports().items()
        for target in targets
        if layer(target) > layer(source)
    ]
    assert upward == []


def test_packages_of_one_layer_form_no_cycle():
    edges: dict[str, set[str]] = {}
    for source, targets in imports().items():
        for target in targets:
            if unit(source) != unit(target) and layer(source) == layer(target):
                edges.setdefault(unit(source), set()).add(unit(target))

    def reaches(start: str, goal: str, seen: set[str]) -> bool:
        return any(
            nxt == goal or (nxt not in seen and reaches(nxt, goal, seen | {nxt}))
            for nxt in edges.get(start, ())
        )

    cycles = sorted(u for u in edges if reaches(u, u, {u}))
    assert cycles == [], f"packages in an import cycle: {cycles}; edges: {edges}"
