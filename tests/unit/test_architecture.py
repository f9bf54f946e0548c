"""Dependencies point downward (DESIGN §8): each package may import only the layers listed here."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "closeloop"

# For each top-level part of closeloop, the parts it may import (besides itself).
ALLOWED: dict[str, set[str]] = {
    "errors": set(),
    "settings": {"errors"},
    "stats": set(),
    "definitions": {"errors", "channels"},  # each action kind owns its step model
    "data": {"errors", "definitions"},
    "channels": {"errors"},
    "engine": {"errors", "stats", "definitions", "data", "channels"},
    "analysis": {"errors", "stats", "data", "engine"},
    "simulate": {"errors", "data"},
    # The public contract: data only (shared vocabulary from definitions), no computation.
    "schemas": {"errors", "definitions"},
    # Formatting once: numbers, money, statuses, view rows, charts, templates of schema models.
    "present": {"errors", "definitions", "schemas"},
    "services": {
        "errors",
        "settings",
        "stats",
        "definitions",
        "data",
        "channels",
        "engine",
        "analysis",
        "simulate",
        "schemas",
    },
    # Surfaces parse, call a service, render: they never compute and never import each other.
    "api": {"errors", "settings", "services", "schemas", "present"},
    "web": {"errors", "settings", "services", "schemas", "present"},
    "cli": {"errors", "settings", "services", "schemas", "present"},
}


def _part(module_path: Path) -> str:
    relative = module_path.relative_to(PACKAGE)
    return relative.parts[0].removesuffix(".py")


def _imported_parts(module_path: Path) -> set[tuple[str, int]]:
    tree = ast.parse(module_path.read_text(encoding="utf-8"), filename=str(module_path))
    found: set[tuple[str, int]] = set()
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        for name in names:
            parts = name.split(".")
            if parts[0] == "closeloop" and len(parts) > 1:
                found.add((parts[1], node.lineno))
    return found


MODULES = sorted(p for p in PACKAGE.rglob("*.py") if p.parent != PACKAGE or p.name != "__init__.py")


def test_every_part_has_a_rule() -> None:
    parts = {_part(p) for p in MODULES}
    assert parts <= set(ALLOWED), f"add a dependency rule for: {parts - set(ALLOWED)}"


@pytest.mark.parametrize("module_path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_point_downward(module_path: Path) -> None:
    part = _part(module_path)
    allowed = ALLOWED.get(part, set()) | {part}
    wrong = [
        f"{module_path.relative_to(PACKAGE)}:{line} imports closeloop.{target}"
        for target, line in sorted(_imported_parts(module_path))
        if target not in allowed
    ]
    assert not wrong, f"closeloop.{part} may import only {sorted(allowed)}: " + "; ".join(wrong)


def test_the_rule_catches_a_violation(tmp_path: Path) -> None:
    module = tmp_path / "bad.py"
    module.write_text("from closeloop.cli.main import app\nimport closeloop.engine.tick\n")
    assert {target for target, _ in _imported_parts(module)} == {"cli", "engine"}
