"""Every page in the navigation of the served simulated project answers: its HTML (no error, no
traceback), its JSON twin, and every table's CSV link. Plain HTTP with an API token (no browser),
against the session's ``dashboard``; a page added to the navigation is swept automatically.
"""

from __future__ import annotations

import re
from html import unescape

import httpx
import pytest
from browser_support import Dashboard

pytestmark = pytest.mark.slow


def _links(html: str, pattern: str) -> list[str]:
    return [unescape(found) for found in re.findall(pattern, html)]


def test_every_navigation_page_its_json_twin_and_its_csv_tables_answer(
    dashboard: Dashboard,
) -> None:
    headers = {"authorization": f"Bearer {dashboard.token}"}
    with httpx.Client(base_url=dashboard.url, headers=headers, timeout=300) as client:
        jobs = client.get("/jobs")
        assert jobs.status_code == 200, jobs.text
        navigation = _links(jobs.text, r'<li><a href="([^"]+)"')
        assert "/jobs" in navigation
        problems = []
        for path in navigation:
            answer = client.get(path, follow_redirects=True)
            if answer.status_code != 200 or "Traceback" in answer.text:
                problems.append(f"{path}: HTTP {answer.status_code}")
                continue
            twin = _links(answer.text, r'<a href="([^"]+)">this page as JSON</a>')
            assert twin, f"{path} has no JSON twin link"
            model = client.get(twin[0])
            if model.status_code != 200 or not isinstance(model.json(), dict):
                problems.append(f"{twin[0]}: HTTP {model.status_code}")
            for csv_link in _links(answer.text, r'<a class="csv" href="([^"]+)"'):
                table = client.get(csv_link)
                if table.status_code != 200 or not table.headers["content-type"].startswith(
                    "text/csv"
                ):
                    problems.append(f"{csv_link}: HTTP {table.status_code}")
        assert not problems, problems
