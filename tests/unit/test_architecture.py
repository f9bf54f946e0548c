"""Dependencies point downward (DESIGN §8): each package may import only the layers listed here."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "closeloop"

# For each top-level part of closeloop, the parts it may import (besides itself).
ALLOWED: dict[str, set[str]] = {
    "errors": set(),
    "lazy_exports": set(),  # PEP 562 loading of a package's attributes, used by three packages
    "settings": {"errors"},
    "stats": {"lazy_exports"},
    "definitions": {"errors", "channels"},  # each action kind owns its step model
    "data": {"errors", "definitions"},
    "channels": {"errors"},
    "engine": {"errors", "stats", "definitions", "data", "channels"},
    "analysis": {"errors", "stats", "data", "engine"},
    "simulate": {"errors", "data", "lazy_exports"},
    # The public contract: data only (shared vocabulary from definitions), no computation.
    "schemas": {"errors", "definitions", "lazy_exports"},
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
        # A sentence that is part of a result (the verdict's worth in money) and the demo's
        # report page are formatted by present, once, like every surface's numbers.
        "present",
    },
    # Surfaces parse, call a service, render: they never compute and never import each other.
    "api": {"errors", "settings", "services", "schemas", "present"},
    "web": {"errors", "settings", "services", "schemas", "present"},
    "cli": {"errors", "settings", "services", "schemas", "present"},
    # The composition root of `closeloop serve`: the API and the dashboard in one ASGI app.
    "asgi": {"api", "web", "services", "settings", "errors", "schemas"},
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


# Formatting is defined once, in closeloop.present (DESIGN §8): no copy of a colour table or of
# a number formatter may come back anywhere else in the package.
PRESENTATION_NAMES = frozenset(
    {"STATUS_STYLE", "VERDICT_STYLE", "GUARD_STYLE", "pct", "pp", "pval", "money"}
)


def _presentation_definitions(module_path: Path) -> set[tuple[str, int]]:
    """The colour tables assigned and the formatters defined (at any depth) in one module."""
    tree = ast.parse(module_path.read_text(encoding="utf-8"), filename=str(module_path))
    found: set[tuple[str, int]] = set()
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            names = [node.name]
        elif isinstance(node, ast.Assign):
            names = [target.id for target in node.targets if isinstance(target, ast.Name)]
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names = [node.target.id]
        found |= {(name, node.lineno) for name in names if name in PRESENTATION_NAMES}
    return found


OUTSIDE_PRESENT = [p for p in MODULES if _part(p) != "present"]


def test_formatters_and_colour_tables_live_only_in_present() -> None:
    copies = [
        f"{path.relative_to(PACKAGE)}:{line} defines {name}"
        for path in OUTSIDE_PRESENT
        for name, line in sorted(_presentation_definitions(path))
    ]
    assert not copies, "use closeloop.present.format instead: " + "; ".join(copies)


def test_the_formatter_rule_catches_a_copy(tmp_path: Path) -> None:
    module = tmp_path / "copy.py"
    module.write_text(
        'STATUS_STYLE = {"positive": "green"}\n'
        "GUARD_STYLE: dict[str, str] = {}\n"
        "class View:\n"
        "    def pct(self, value: float) -> str:\n"
        "        return f'{value:.1%}'\n"
        "def headline() -> str:\n"
        "    def money(value: float) -> str:\n"
        "        return str(value)\n"
        "    return money(1.0)\n"
    )
    assert _presentation_definitions(module) == {
        ("STATUS_STYLE", 1),
        ("GUARD_STYLE", 2),
        ("pct", 4),
        ("money", 7),
    }
    assert {_part(p) for p in OUTSIDE_PRESENT} >= {"analysis", "cli", "services"}
