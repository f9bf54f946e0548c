"""The accounts list and an account page in a real Chromium: search, open an account, read its
sections; screenshots."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from browser_support import Dashboard
from playwright.sync_api import Page, expect

pytestmark = pytest.mark.slow


def test_open_an_account_from_the_accounts_list(
    logged_in_page: Callable[..., Page],
    dashboard: Dashboard,
    screenshot: Callable[[Page, str], list[Path]],
) -> None:
    page = logged_in_page("viewer")
    page.goto("/jobs")
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Accounts").click()
    expect(page).to_have_url(f"{dashboard.url}/accounts")
    expect(page.locator(".sub").first).to_contain_text("Accounts 1–50 of 200")
    screenshot(page, "accounts")

    page.get_by_label("Find an account by name, id or domain").fill("acc_00001")
    page.get_by_role("button", name="Search").click()
    expect(page.locator("#table-accounts tbody tr")).to_have_count(10)
    link = page.get_by_role("link", name="acc_000012")
    link.click()
    expect(page).to_have_url(f"{dashboard.url}/accounts/acc_000012")
    heading = page.get_by_role("heading", level=1)
    expect(heading).not_to_be_empty()
    for section in ("Revenue", "Health", "Success plans", "Attributes"):
        expect(page.get_by_role("heading", name=section, exact=True)).to_be_visible()
    expect(page.locator(".facts")).to_contain_text("ARR")
    expect(page.get_by_role("heading", name="Timeline", exact=False).first).to_be_visible()
    twin = page.request.get(f"{dashboard.url}/accounts/acc_000012.json").json()
    expect(heading).to_have_text(twin["account"]["name"] or "acc_000012")
    screenshot(page, "account")
