"""The job editor in a real Chromium: type a job with a bad expression, see the caret under it,
fix it, estimate its power, dry-run it, save it, launch it and find it in the jobs list."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from browser_support import Dashboard
from playwright.sync_api import Page, expect

from closeloop.services.job_drafts import NEW_JOB

pytestmark = pytest.mark.slow

# The served company's last simulated day (simulate --days 45): the dry run looks there, where
# accounts signed up in the last 14 days exist.
LATEST = "2025-02-19T23:59"


def test_create_a_job_see_the_caret_fix_it_and_launch_it(
    logged_in_page: Callable[..., Page],
    dashboard: Dashboard,
    screenshot: Callable[[Page, str], list[Path]],
) -> None:
    name = f"Browser editor job {time.time_ns()}"
    good = NEW_JOB.replace("name: New job", f"name: {name}")
    bad = good.replace("signup_date within last 14 days", "plan == ")
    page = logged_in_page("editor")
    page.goto("/jobs/new")
    expect(page.get_by_role("heading", level=1)).to_have_text("New job")
    yaml = page.get_by_label("Job YAML")
    expect(page.locator("#validation .verdict")).to_contain_text("Valid")  # the starter draft

    yaml.fill(bad)
    problem = page.locator("#validation .problem.error")
    expect(problem).to_contain_text("unexpected '='")
    expect(problem.get_by_role("button")).to_have_text("line 4, column 9")
    caret = problem.locator("pre.caret")
    expect(caret).to_have_text("      plan == \n            ^")
    expect(page.locator(".gutter")).to_contain_text("14")  # line numbers beside the YAML
    problem.get_by_role("button").click()  # puts the cursor at the problem
    assert page.evaluate("document.querySelector('#yaml').selectionStart") == bad.index("== ") + 1
    screenshot(page, "editor-caret")

    yaml.fill(good)
    expect(page.locator("#validation .verdict")).to_have_text(
        f"Valid: {name}. The whole project loads with it."
    )
    expect(page.locator("#validation .problem")).to_have_count(0)
    expect(page.get_by_label("Name", exact=True)).to_have_value(name)  # the form follows the YAML

    page.get_by_role("button", name="Estimate power").click()
    power = page.locator("#power")
    expect(power.get_by_role("heading")).to_have_text("Power before launch")
    expect(power).to_contain_text("At its planned 8 weeks")
    expect(power.locator("#table-power tbody tr")).to_have_count(4)

    page.get_by_label("Dry run as of").fill(LATEST)
    page.get_by_role("button", name="Dry run").click()
    dry_run = page.locator("#dry-run-result")
    expect(dry_run).to_contain_text("would enter")
    entering = int(dry_run.locator(".entering").inner_text())
    assert entering > 0
    expect(dry_run.locator("#table-messages tbody tr")).to_have_count(entering)

    page.get_by_role("button", name="Save", exact=True).click()
    expect(page.locator("#saved .verdict")).to_contain_text(f"Saved {name} to jobs.yaml")
    page.get_by_role("button", name=f"Launch {name}").click()
    expect(page.locator("#launched .verdict")).to_have_text(f"{name} is live.")
    screenshot(page, "editor")

    page.get_by_role("link", name="See it in the jobs list").click()
    expect(page).to_have_url(f"{dashboard.url}/jobs")
    expect(page.get_by_role("link", name=name)).to_be_visible()
    assert f"- name: {name}" in (dashboard.project / "jobs.yaml").read_text()


def test_the_form_writes_its_fields_into_the_yaml(logged_in_page: Callable[..., Page]) -> None:
    page = logged_in_page("editor")
    page.goto("/jobs/new")
    page.get_by_label("Name", exact=True).fill("Form-made job")
    page.get_by_label("Holdout fraction").fill("0.25")
    page.get_by_role("button", name="Write into the YAML").click()
    yaml = page.locator("#yaml")
    expect(yaml).to_have_value(re.compile(r"^name: Form-made job$", re.MULTILINE))
    assert "\nholdout: 0.25\n" in yaml.input_value()
    expect(page.locator("#validation .verdict")).to_contain_text("Valid: Form-made job")
