"""Log in through the form in a real Chromium, see the jobs list, log out; screenshots.

Uses the session's served project (tests/browser/conftest.py); the first test pays for building
it (about a minute), hence slow.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from browser_support import Dashboard, log_in
from playwright.sync_api import Browser, Page, expect

pytestmark = pytest.mark.slow


def test_log_in_see_the_jobs_list_and_log_out(
    browser: Browser, dashboard: Dashboard, screenshot: Callable[[Page, str], list[Path]]
) -> None:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    try:
        page = context.new_page()
        # Not logged in: the jobs list sends the browser to the login form, and back after.
        page.goto(f"{dashboard.url}/jobs")
        expect(page).to_have_url(f"{dashboard.url}/login?next=%2Fjobs")
        screenshot(page, "login")
        name, password = dashboard.users["viewer"]
        page.get_by_label("Name").fill(name)
        page.get_by_label("Password").fill("not the password")
        page.get_by_role("button", name="Log in").click()
        expect(page.get_by_role("alert")).to_have_text("Wrong name or password.")
        page.get_by_label("Password").fill(password)
        page.get_by_role("button", name="Log in").click()
        expect(page).to_have_url(f"{dashboard.url}/jobs")
        expect(page.get_by_role("heading", level=1)).to_have_text("Jobs")
        job_link = page.get_by_role("link", name=dashboard.job)
        expect(job_link).to_have_attribute("href", f"/jobs/{dashboard.job.replace(' ', '%20')}")
        expect(
            page.get_by_role("navigation", name="Main").get_by_role("link", name="Jobs")
        ).to_have_attribute("aria-current", "page")
        expect(page.get_by_text(f"{name} viewer")).to_be_visible()
        # The table's CSV link downloads the same rows.
        with page.expect_download() as download:
            page.get_by_role("link", name="CSV of Every job").click()
        csv_text = Path(download.value.path()).read_text(encoding="utf-8")
        assert (
            csv_text.splitlines()[0]
            == "job,status,version,launched,last tick,enrolled,active,enrolled by arm"
        )
        assert dashboard.job in csv_text
        # The per-arm enrollments add up to the job's, and the page shows each arm's count.
        twin = page.request.get(f"{dashboard.url}/jobs.json").json()
        job = next(j for j in twin["jobs"] if j["name"] == dashboard.job)
        assert sum(job["enrolled_by_arm"].values()) == job["enrolled"] > 0
        row = page.get_by_role("row").filter(has_text=dashboard.job)
        for arm, count in job["enrolled_by_arm"].items():
            expect(row).to_contain_text(f"{arm} {count}")
        screenshot(page, "jobs")
        # At 390 px the table scrolls inside its region instead of widening the page.
        page.set_viewport_size({"width": 390, "height": 900})
        page_width = page.evaluate("document.documentElement.scrollWidth")
        assert page_width <= 390, page_width
        page.set_viewport_size({"width": 1280, "height": 900})
        # Log out: the session ends, the jobs list asks for a login again.
        page.get_by_role("button", name="Log out").click()
        expect(page).to_have_url(f"{dashboard.url}/login")
        page.goto(f"{dashboard.url}/jobs")
        expect(page).to_have_url(f"{dashboard.url}/login?next=%2Fjobs")
    finally:
        context.close()


def test_the_keyboard_reaches_the_content_first(
    logged_in_page: Callable[..., Page], dashboard: Dashboard
) -> None:
    page = logged_in_page("admin")
    page.goto(f"{dashboard.url}/jobs")
    page.keyboard.press("Tab")
    skip = page.get_by_role("link", name="Skip to content")
    expect(skip).to_be_focused()
    expect(skip).to_be_in_viewport()
    page.keyboard.press("Enter")
    expect(page).to_have_url(f"{dashboard.url}/jobs#main")


def test_a_login_keeps_working_across_pages_and_a_second_login_is_separate(
    browser: Browser, dashboard: Dashboard
) -> None:
    first = browser.new_context()
    second = browser.new_context()
    try:
        one, two = first.new_page(), second.new_page()
        log_in(one, dashboard, "editor")
        log_in(two, dashboard, "viewer")
        one.goto(f"{dashboard.url}/jobs")
        two.goto(f"{dashboard.url}/jobs")
        expect(one.get_by_text("editor-user editor")).to_be_visible()
        expect(two.get_by_text("viewer-user viewer")).to_be_visible()
        cookies = {c["name"]: c for c in first.cookies()}
        session = cookies["closeloop_session"]
        assert session["httpOnly"] is True
        assert session["sameSite"] == "Lax"
    finally:
        first.close()
        second.close()
