"""The job page over HTTP on a real ``closeloop serve``: its sections, the segment drill-down,
the CSV of every table, errors (unknown job, bad parameter, no login) and the report cache, which
a new import or tick invalidates."""

from __future__ import annotations

import csv
import io
import shutil
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
from job_page_support import Served, closeloop, serve, simulated_project, viewer_token

from closeloop.services import job_page as service
from closeloop.services.project import open_workspace

pytestmark = pytest.mark.slow

TABLES = {
    "arms": "arm",
    "funnel": "arm",
    "comparisons": "scope",
    "segments": "segment",
    "deliveries": "arm",
    "completed": "account",
    "not_completed": "account",
    "delivery_log": "id",
}


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return simulated_project(tmp_path_factory.mktemp("job-page") / "project")


@pytest.fixture(scope="module")
def served(project: Path) -> Iterator[Served]:
    with serve(project, viewer_token(project)) as running:
        yield running


def _get(served: Served, path: str, **headers: str) -> httpx.Response:
    return httpx.get(
        served.url + path,
        headers={"Authorization": f"Bearer {served.token}", **headers},
        timeout=120,
    )


def _path(served: Served) -> str:
    return f"/jobs/{quote(served.job, safe='')}"


def test_the_page_has_its_sections_for_a_viewer(served: Served) -> None:
    response = _get(served, _path(served))
    assert response.status_code == 200, response.text[:500]
    html = response.text
    for section in (
        'id="verdict"',
        'id="definition"',
        'id="health"',
        'id="lift-figures"',
        'id="table-funnel"',
        'id="survival-chart"',
        'id="table-segments"',
        'id="table-completed"',
        'id="table-not_completed"',
        'id="table-delivery_log"',
    ):
        assert section in html, section
    # Verdict first: the banner comes before every other section.
    assert html.index('class="verdict') < html.index('id="definition"') < html.index('id="health"')
    # The health strip shows the queries that produced it.
    assert html.count("<details><summary>Query</summary>") == 3
    assert "FROM enrollments" in html and "FROM outbox" in html and "FROM ticks" in html
    assert "MAX(" in html and "events" in html
    # The chart's spec is embedded for vega-embed, with one curve per arm.
    assert 'data-vega-spec="survival-chart-spec"' in html

    model = _get(served, _path(served) + ".json").json()
    assert model["job_name"] == served.job
    assert model["definition"]["goal"] and model["definition"]["edited_after_launch"] is False
    funnel = {step["arm"]: step for step in model["funnel"]}
    assert set(funnel) == set(model["report"]["arms"])
    for arm, step in funnel.items():
        assert step["entered"] == model["report"]["arms"][arm]["entered"]
        assert step["entered"] >= step["messaged"] >= step["delivered"]
    assert funnel["holdout"]["messaged"] == 0 and funnel["treatment"]["delivered"] > 0
    assert model["completed"]["total"] == sum(
        a["completed"] for a in model["report"]["arms"].values()
    )
    first = model["completed"]["items"][0]
    assert first["enrollment"]["status"] == "completed"
    assert first["account"]["account_id"] == first["enrollment"]["account_id"]
    assert first["account"]["segment"]  # the account's attributes are there
    assert model["deliveries"]["total"] == sum(model["deliveries"]["counts"].values())
    assert model["health"]["deliveries"]["sent"] == model["deliveries"]["counts"].get("sent", 0)

    as_json = _get(served, _path(served), Accept="application/json")
    assert as_json.json()["report"] == model["report"]


def test_pages_of_accounts_move_with_their_offset(served: Served) -> None:
    first = _get(served, _path(served) + ".json").json()["completed"]
    second = _get(served, _path(served) + ".json?completed_offset=25").json()["completed"]
    assert first["total"] == second["total"] > 25
    assert second["offset"] == 25
    first_ids = {item["enrollment"]["enrollment_id"] for item in first["items"]}
    assert not first_ids & {item["enrollment"]["enrollment_id"] for item in second["items"]}
    html = _get(served, _path(served)).text
    assert "completed_offset=25" in html and 'rel="next"' in html


def test_every_table_downloads_as_csv(served: Served) -> None:
    model = _get(served, _path(served) + ".json").json()
    for name, first_column in TABLES.items():
        response = _get(served, f"{_path(served)}.csv?table={name}")
        assert response.status_code == 200, (name, response.text[:300])
        assert response.headers["content-type"].startswith("text/csv")
        rows = list(csv.reader(io.StringIO(response.text)))
        assert rows[0][0] == first_column, name
        assert len(rows) > 1, name  # the simulated job fills every table
    accounts = list(
        csv.reader(io.StringIO(_get(served, f"{_path(served)}.csv?table=completed").text))
    )
    assert [row[0] for row in accounts[1:]] == [
        item["enrollment"]["account_id"] for item in model["completed"]["items"]
    ]
    unknown = _get(served, f"{_path(served)}.csv?table=nope")
    assert unknown.status_code == 404 and "delivery_log" in unknown.text


def test_segment_drill_down(served: Served) -> None:
    model = _get(served, _path(served) + ".json").json()
    segments = model["report"]["measurement"]["segments"]
    chosen = segments[0]
    html = _get(served, _path(served)).text
    link = f"{_path(served)}/segments/segment?segment={quote(chosen['segment'])}"
    assert link.replace("%20", "+") in html or link in html

    page = _get(served, f"{_path(served)}/segments/segment?segment={quote(chosen['segment'])}")
    assert page.status_code == 200
    assert 'id="segment-detail"' in page.text and "adjusted interval" in page.text
    twin = _get(served, f"{_path(served)}/segments/segment.json?segment={quote(chosen['segment'])}")
    body = twin.json()
    assert body["selected"] == chosen["segment"] and body["column"] == "segment"
    assert body["segments"] == [s for s in segments if s["column"] == "segment"]

    by_plan = _get(served, f"{_path(served)}/segments/plan.json").json()
    assert by_plan["segments"] and {s["column"] for s in by_plan["segments"]} == {"plan"}
    assert _get(served, f"{_path(served)}/segments/plan.csv?table=segments").status_code == 200

    missing = _get(served, f"{_path(served)}/segments/segment.json?segment=nope")
    assert missing.status_code == 404 and "nope" in missing.json()["error"]["message"]
    column = _get(served, f"{_path(served)}/segments/account_id.json")
    assert column.status_code == 404 and "one of" in column.json()["error"]["message"]


def test_unknown_job_bad_parameter_and_no_login(served: Served) -> None:
    page = _get(served, "/jobs/No%20such%20job")
    assert page.status_code == 404
    assert page.headers["content-type"].startswith("text/html")
    assert "No such job" in page.text and "Traceback" not in page.text
    twin = _get(served, "/jobs/No%20such%20job.json")
    assert twin.status_code == 404
    assert twin.json()["error"]["code"] == "not_found"
    assert "Integration nudge" in twin.json()["error"]["message"]  # names the known jobs

    bad = _get(served, _path(served) + ".json?completed_offset=-3")
    assert bad.status_code == 422 and "completed_offset" in bad.json()["error"]["message"]

    anonymous = httpx.get(served.url + _path(served) + ".json", timeout=30)
    assert anonymous.status_code == 401
    redirect = httpx.get(served.url + _path(served), timeout=30)
    assert redirect.status_code == 303 and "/login" in redirect.headers["location"]


def test_a_new_import_or_tick_invalidates_the_cached_report(
    project: Path, tmp_path: Path, served: Served
) -> None:
    # A copy, so the served project stays as the other tests see it.
    copy = tmp_path / "copy"
    shutil.copytree(project, copy)
    cache = service.ReportCache()
    with open_workspace(copy, write=False) as workspace:
        cold = service.cached_job_report(workspace, served.job, cache=cache)
        warm = service.cached_job_report(workspace, served.job, cache=cache)
        last_tick = workspace.store.last_tick(served.job)
        account = workspace.warehouse.table("accounts").account_id.min().execute()
    assert last_tick is not None
    assert not cold.hit and warm.hit
    assert warm.reported.model == cold.reported.model

    events = tmp_path / "events.csv"
    events.write_text(
        "event_id,account_id,name,timestamp\n"
        f"late-1,{account},login,{(last_tick - timedelta(hours=1)).isoformat()}\n",
        encoding="utf-8",
    )
    closeloop("import", "events", str(events), project=copy)
    with open_workspace(copy, write=False) as workspace:
        after_import = service.cached_job_report(workspace, served.job, cache=cache)
    assert not after_import.hit

    later = last_tick + timedelta(days=1)
    closeloop("tick", "--at", later.isoformat(), project=copy)
    with open_workspace(copy, write=False) as workspace:
        after_tick = service.cached_job_report(workspace, served.job, cache=cache)
        again = service.cached_job_report(workspace, served.job, cache=cache)
    assert not after_tick.hit and again.hit
    assert after_tick.reported.model.as_of != cold.reported.model.as_of


def test_library_filters_by_goal_segment_message_and_timing(served: Served) -> None:
    everything = _get(served, "/library.json").json()
    assert everything["count"] == 1 and everything["jobs"][0]["name"] == served.job
    entry = everything["jobs"][0]
    subject = entry["variants"][0]["sends"][0]["subject"]
    word = next(part for part in subject.split() if part.isalpha() and len(part) > 3)
    first_day = min(send["day"] for send in entry["variants"][0]["sends"])

    def count(query: str) -> int:
        response = _get(served, f"/library.json?{query}")
        assert response.status_code == 200, (query, response.text[:300])
        return int(response.json()["count"])

    assert count("goal=integration_connected") == 1
    assert count("goal=no_such_event") == 0
    assert count(f"message={quote(word.upper())}") == 1  # case-insensitive
    assert count("message=no+such+words") == 0
    assert count(f"within_days={int(first_day)}") == 1
    segment = entry["segments"][0]["segment"]
    assert count(f"segment={quote(segment)}") == 1
    assert count("segment=no_such_segment") == 0

    html = _get(served, f"/library?segment={quote(segment)}").text
    assert f'href="{_path(served)}"' in html
    assert 'name="message"' in html and 'name="within_days"' in html
    rows = list(csv.reader(io.StringIO(_get(served, "/library.csv?table=jobs").text)))
    assert rows[0][0] == "job" and rows[1][0] == served.job
    bad = _get(served, "/library.json?status=bogus")
    assert bad.status_code == 422 and "status" in bad.json()["error"]["message"]
    bad_days = _get(served, "/library.json?within_days=soon")
    assert bad_days.status_code == 422 and "within_days" in bad_days.json()["error"]["message"]


def test_the_report_downloads_as_pdf_and_html(served: Served) -> None:
    """The page's download links: the report as HTML (what `report --html` writes) and as a PDF
    whose first page has ink; a browser without a login goes to the form; an unknown job is 404."""
    import pypdfium2  # a dev dependency, as in the board's PDF test

    page = _get(served, _path(served)).text
    for link in ("/report.pdf", "/report.html"):
        assert f'href="{_path(served)}{link}"' in page
    document = _get(served, _path(served) + "/report.pdf")
    assert document.status_code == 200, document.text[:300]
    assert document.headers["content-type"] == "application/pdf"
    assert document.content.startswith(b"%PDF")
    pdf = pypdfium2.PdfDocument(document.content)
    try:
        pixels = pdf[0].render(scale=0.5).to_numpy()
    finally:
        pdf.close()
    ink = (pixels[..., :3].min(axis=-1) < 200).mean()
    assert ink > 0.01, f"the first page is blank ({ink:.3%} ink)"
    standalone = _get(served, _path(served) + "/report.html")
    assert standalone.status_code == 200 and served.job in standalone.text
    assert "text/html" in standalone.headers["content-type"]
    anonymous = httpx.get(served.url + _path(served) + "/report.pdf", timeout=60)
    assert anonymous.status_code == 303 and anonymous.headers["location"].startswith("/login?next=")
    missing = _get(served, "/jobs/no-such-job/report.pdf")
    assert missing.status_code == 404 and "no-such-job" in missing.text
