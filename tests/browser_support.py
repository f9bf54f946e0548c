"""What browser tests import besides their fixtures (tests/browser/conftest.py): the served
project's description and logging a page in through the form."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from playwright.sync_api import Page


@dataclass(frozen=True)
class Dashboard:
    """A served simulated project: ``url`` (no trailing slash), its folder, the users by role
    (name, password), an admin and a viewer API token, and the simulated job's name."""

    url: str
    project: Path
    users: dict[str, tuple[str, str]]
    token: str
    viewer_token: str
    job: str
    log: Path
    environ: dict[str, str] = field(repr=False)


def log_in(page: Page, dashboard: Dashboard, role: str) -> None:
    """Log ``page`` in through the form as the user of ``role``."""
    name, password = dashboard.users[role]
    page.goto(f"{dashboard.url}/login")
    page.get_by_label("Name").fill(name)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(lambda url: "/login" not in url)
