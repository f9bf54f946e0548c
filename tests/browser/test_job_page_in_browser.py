"""The job page in a real Chromium: open the job from the jobs list, read the verdict and the
lift, see the survival chart drawn (an SVG in its container), drill into a segment; screenshots
at 1280 and 390 px."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from browser_support import Dashboard
from playwright.sync_api import Page, expect

pytestmark = pytest.mark.slow


def test_open_the_job_see_verdict_lift_chart_and_drill_into_a_segment(
    logged_in_page: Callable[..., Page],
    dashboard: Dashboard,
    screenshot: Callable[[Page, str], list[Path]],
) -> None:
    page = logged_in_page("viewer")
    page.goto("/jobs")
    page.get_by_role("link", name=dashboard.job).click()
    expect(page.get_by_role("heading", level=1)).to_have_text(dashboard.job)

    twin = page.request.get(page.url + ".json").json()
    report = twin["report"]
    verdict = page.locator(".verdict")
    expect(verdict).to_be_visible()
    expect(verdict.locator(".decision")).to_have_text(report["verdict"]["words"])

    lift = page.locator("#lift-figures")
    expect(lift).to_be_visible()
    expect(lift).to_have_attribute("data-status", report["measurement"]["status"])
    expect(lift.locator(".lift-value")).not_to_be_empty()

    chart = page.locator("#survival-chart")
    expect(chart).to_have_attribute("data-rendered", "yes", timeout=20_000)
    expect(chart.locator("svg")).to_be_visible()
    # One line per arm, each a path in the SVG the browser drew.
    assert chart.locator("svg path").count() >= len(report["measurement"]["arms"])

    health = page.locator(".health-item")
    expect(health).to_have_count(3)
    health.first.locator("summary").click()
    expect(health.first.locator("pre")).to_contain_text("FROM enrollments")
    screenshot(page, "job")

    segments = page.locator("#table-segments tbody tr")
    expect(segments.first).to_be_visible()
    first = segments.first.locator("a")
    name = first.inner_text()
    first.click()
    expect(page.get_by_role("heading", level=1)).to_contain_text(f"segment = {name}")
    detail = page.locator("#segment-detail")
    expect(detail).to_contain_text("adjusted interval")
    expect(detail).to_contain_text("lift")
    screenshot(page, "job-segment")

    page.get_by_role("link", name="plan", exact=True).click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("by plan")
    expect(page.locator("#table-segments tbody tr").first).to_be_visible()
