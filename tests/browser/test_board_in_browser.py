"""The home page is the board report, in a real Chromium: NRR and the initiatives, the period
picker, the charts drawn, a table's CSV, and the PDF download; screenshots."""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path

import pypdfium2
import pytest
from browser_support import Dashboard
from playwright.sync_api import Page, expect

pytestmark = pytest.mark.slow


def test_the_home_page_is_the_board_report_and_its_pdf_downloads(
    logged_in_page: Callable[..., Page],
    dashboard: Dashboard,
    screenshot: Callable[[Page, str], list[Path]],
    tmp_path: Path,
) -> None:
    page = logged_in_page("viewer")
    page.goto("/")
    expect(page.get_by_role("heading", level=1)).to_contain_text("Board report")
    twin = page.request.get(f"{dashboard.url}/index.json").json()
    layers = page.locator("section.layer > h2")
    expect(layers).to_have_text(
        ["1. Outcomes", "2. Leading indicators", "Initiatives", "3. Activity"]
    )
    if twin["outcomes"]["status"] == "ok":
        nrr = page.locator('.kpi[data-measure="NRR"]')
        expect(nrr).to_be_visible()
        value = twin["outcomes"]["period"]["nrr"]  # null without revenue at the start
        expect(nrr.locator(".value")).to_have_text("—" if value is None else f"{value:.1%}")
        if any(row["nrr"] is not None for row in twin["outcomes"]["trend"]):
            expect(page.locator("#board-trend")).to_have_attribute("data-rendered", "yes")
    else:
        expect(page.locator("#outcomes")).to_contain_text("Outcomes unavailable")
    initiatives = page.locator("#table-initiatives")
    expect(initiatives).to_contain_text(dashboard.job)
    job = next(j for j in twin["initiatives"]["jobs"] if j["name"] == dashboard.job)
    if job["decision_words"]:
        expect(initiatives.locator(".badge").first).to_have_text(job["decision_words"])
    screenshot(page, "board")

    # The period picker: the month before, then back with the form.
    start, end = twin["start"], twin["end"]
    page.get_by_role("link", name="← previous period").click()
    expect(page.get_by_label("To (exclusive)")).to_have_value(start)
    page.get_by_label("From").fill(start)
    page.get_by_label("To (exclusive)").fill(end)
    page.get_by_role("button", name="Show").click()
    expect(page).to_have_url(f"{dashboard.url}/?start={start}&end={end}")

    csv = page.request.get(f"{dashboard.url}/index.csv?table=initiatives&start={start}&end={end}")
    assert csv.ok and csv.text().splitlines()[0].startswith("job,verdict,lift")

    with page.expect_download() as waiting:
        page.get_by_role("link", name="PDF", exact=True).click()
    download = waiting.value
    assert download.suggested_filename == f"board-{start}-{end}.pdf"
    saved = tmp_path / download.suggested_filename
    download.save_as(saved)
    content = saved.read_bytes()
    assert content.startswith(b"%PDF")
    document = pypdfium2.PdfDocument(io.BytesIO(content))
    assert 2 <= len(document) <= 8
    assert "1. Outcomes" in document[0].get_textpage().get_text_range()


def test_the_downloads_need_a_login(
    logged_in_page: Callable[..., Page], dashboard: Dashboard
) -> None:
    page = logged_in_page("viewer")
    anonymous = page.context.browser.new_context() if page.context.browser else None
    assert anonymous is not None
    try:
        response = anonymous.request.get(f"{dashboard.url}/board.pdf", max_redirects=0)
        assert response.status == 303 and "/login" in response.headers["location"]
    finally:
        anonymous.close()
    token = {"Authorization": f"Bearer {dashboard.viewer_token}"}
    page_html = page.request.get(f"{dashboard.url}/board.html", headers=token)
    assert page_html.ok and page_html.headers["content-type"].startswith("text/html")
    assert "<h2>1. Outcomes</h2>" in page_html.text()
