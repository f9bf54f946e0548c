"""The job page's numbers, its JSON twin, the API and ``closeloop report --format json`` agree.

One simulated project with a measured job, served by a real ``closeloop serve``: the arms'
entered / completed / matured / completion rate and the lift with its interval, p-value and
status are read from the HTML page's data attributes (written with ``json.dumps``, so exact),
and compared with the report inside ``/jobs/{name}.json``, ``GET /api/jobs/{name}/report`` and
the CLI's JSON, which must be identical.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from html.parser import HTMLParser
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from job_page_support import Served, closeloop, serve, simulated_project, viewer_token

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    project = simulated_project(tmp_path_factory.mktemp("numbers") / "project")
    with serve(project, viewer_token(project)) as running:
        yield running


class Figures(HTMLParser):
    """The data attributes of the lift panel and of each arm's panel."""

    def __init__(self) -> None:
        super().__init__()
        self.lift: dict[str, str | None] = {}
        self.arms: dict[str, dict[str, str | None]] = {}
        self.verdict: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        classes = (found.get("class") or "").split()
        if found.get("id") == "lift-figures":
            self.lift = found
        elif "arm" in classes and "panel" in classes and found.get("data-arm"):
            self.arms[str(found["data-arm"])] = found
        elif "verdict" in classes:
            self.verdict = found.get("data-decision")


def _number(text: str | None) -> Any:
    assert text is not None
    return json.loads(text)


def test_page_twin_api_and_cli_show_the_same_numbers(served: Served) -> None:
    headers = {"Authorization": f"Bearer {served.token}"}
    path = f"/jobs/{quote(served.job, safe='')}"
    html = httpx.get(served.url + path, headers=headers, timeout=120)
    assert html.status_code == 200, html.text[:500]
    twin = httpx.get(f"{served.url}{path}.json", headers=headers, timeout=120)
    api = httpx.get(f"{served.url}/api{path}/report", headers=headers, timeout=120)
    cli = json.loads(closeloop("report", served.job, "--format", "json", project=served.project))
    assert twin.status_code == 200 and api.status_code == 200

    page_report = twin.json()["report"]
    # The same model, field for field (warnings included: freshness is worded to the day).
    assert page_report == api.json() == cli

    figures = Figures()
    figures.feed(html.text)
    report = page_report
    control = report["measurement"]["control"]
    treated = next(name for name in report["measurement"]["arms"] if name != control)
    assert set(figures.arms) == set(report["measurement"]["arms"]) == {control, treated}
    for name, arm in report["measurement"]["arms"].items():
        shown = figures.arms[name]
        assert _number(shown["data-entered"]) == report["arms"][name]["entered"]
        assert _number(shown["data-completed"]) == report["arms"][name]["completed"]
        assert _number(shown["data-matured"]) == arm["matured"]
        assert _number(shown["data-matured-completed"]) == arm["completed"]
        assert _number(shown["data-completion-rate"]) == arm["completion_rate"]

    comparison = next(
        c
        for c in report["measurement"]["comparisons"]
        if c["metric"] == "completion_rate" and c["arm"] == treated
    )
    decisive = comparison["decisive"]
    assert figures.lift["data-arm"] == treated and figures.lift["data-control"] == control
    assert _number(figures.lift["data-estimate"]) == decisive["estimate"]
    assert _number(figures.lift["data-lower"]) == decisive["ci"][0]
    assert _number(figures.lift["data-upper"]) == decisive["ci"][1]
    assert _number(figures.lift["data-p-value"]) == decisive["p_value"]
    assert figures.lift["data-status"] == comparison["status"]
    # The simulated job measures something: the numbers compared are real ones.
    assert decisive["estimate"] is not None and report["arms"][treated]["entered"] > 0
    assert figures.verdict == (report["verdict"] or {}).get("decision")
