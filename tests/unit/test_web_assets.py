"""The dashboard loads nothing from a CDN: every script and stylesheet a template names is a
vendored file in the package, pinned in assets/package.json and shipped in the wheel."""

from __future__ import annotations

import fnmatch
import json
import re
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "closeloop"
WEB = PACKAGE / "web"
TEMPLATES = sorted(
    [*(WEB / "templates").glob("*.j2"), *(PACKAGE / "present" / "templates").glob("*.j2")]
)
# A script or stylesheet from another host: <script src="https://…">, <link href="//…">, @import.
REMOTE = re.compile(
    r"""<script[^>]*\bsrc\s*=\s*["']?(?:https?:)?//"""
    r"""|<link[^>]*\bhref\s*=\s*["']?(?:https?:)?//"""
    r"""|@import\s+(?:url\()?["']?(?:https?:)?//""",
    re.IGNORECASE,
)


def remote_assets(text: str) -> list[str]:
    return [match.group(0) for match in REMOTE.finditer(text)]


def test_the_check_catches_a_cdn() -> None:
    assert remote_assets('<script src="https://cdn.jsdelivr.net/npm/vega@6"></script>')
    assert remote_assets("<link rel=stylesheet href=//fonts.example/x.css>")
    assert remote_assets("@import url('https://fonts.example/x.css');")
    assert not remote_assets("<script src=\"{{ static('app.js') }}\" defer></script>")
    assert not remote_assets('<a href="https://vega.github.io/">Vega</a>')


@pytest.mark.parametrize("template", TEMPLATES, ids=lambda p: p.name)
def test_no_template_loads_a_remote_script_or_style(template: Path) -> None:
    assert remote_assets(template.read_text(encoding="utf-8")) == []


def test_no_web_module_or_static_file_points_at_a_cdn() -> None:
    own = [*WEB.glob("*.py"), WEB / "static" / "app.js", WEB / "static" / "app.css"]
    for path in own:
        assert remote_assets(path.read_text(encoding="utf-8")) == [], path


def test_every_static_file_the_layout_names_is_vendored() -> None:
    layout = (WEB / "templates" / "base.html.j2").read_text(encoding="utf-8")
    named = re.findall(r"static\('([^']+)'\)", layout)
    assert {"vendor/htmx.min.js", "vendor/vega-embed.min.js", "app.js", "app.css"} <= set(named)
    for name in named:
        path = WEB / "static" / name
        assert path.is_file() and path.stat().st_size > 0, name


def test_npm_versions_are_pinned_and_locked() -> None:
    manifest = json.loads((WEB / "assets" / "package.json").read_text(encoding="utf-8"))
    lock = json.loads((WEB / "assets" / "package-lock.json").read_text(encoding="utf-8"))
    wanted = manifest["dependencies"]
    assert set(wanted) == {"htmx.org", "vega", "vega-lite", "vega-embed"}
    for name, version in wanted.items():
        assert re.fullmatch(r"\d+\.\d+\.\d+", version), f"{name} {version} is not pinned"
        assert lock["packages"][f"node_modules/{name}"]["version"] == version


def test_static_files_and_templates_are_package_data() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    patterns = config["tool"]["setuptools"]["package-data"]["closeloop"]
    shipped = [p for p in WEB.rglob("*") if p.is_file() and "node_modules" not in p.parts]
    needed = [p for p in shipped if p.suffix in {".js", ".css", ".j2"} or "vendor" in p.parts]
    assert needed
    for path in needed:
        relative = path.relative_to(PACKAGE).as_posix()
        assert any(
            fnmatch.fnmatch(relative, pattern)
            or fnmatch.fnmatch(path.name, pattern.removeprefix("**/"))
            for pattern in patterns
        ), f"{relative} is not in [tool.setuptools.package-data]"
