"""The stages, signals, health, plans and outcomes pages on the real ``closeloop serve`` app and a
simulated company: each renders, its JSON twin is the API's model for the same parameters, each
table downloads as CSV, bad parameters give the error page (never a 500), the stage's class
filter, and the signal's "create a draft job" form."""

from __future__ import annotations

import csv
import io
import re
import subprocess
import sys
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from urllib.parse import quote

import pytest
from journey_pages_support import Served, csv_links, logged_in, serve

from closeloop.schemas.plans import ObjectiveInput, PlanCreate
from closeloop.services import plans
from closeloop.services.project import open_workspace

pytestmark = pytest.mark.slow  # a simulated company (~20 s) behind a real server

AT = "2025-02-10T00:00:00"  # inside the simulated company's 45 days (its last: 2025-02-19)
WINDOW = "start=2025-01-15&end=2025-02-15"


def _closeloop(project: Path, *args: str) -> None:
    subprocess.run(
        [str(Path(sys.executable).parent / "closeloop"), *args],
        cwd=project,
        check=True,
        capture_output=True,
        text=True,
    )


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    project = tmp_path_factory.mktemp("journey")
    _closeloop(project, "init", ".")
    _closeloop(project, "simulate", "--accounts", "120", "--days", "45", "--run-jobs")
    with open_workspace(project) as workspace:
        account = workspace.warehouse.table("accounts").account_id.min().execute()
        request = PlanCreate(account_id=str(account), title="Rollout", owner="ana")
        objective = ObjectiveInput(
            title="Seats", measure="manual", baseline=5, target=20, target_date=date(2025, 3, 31)
        )
        plans.create_plan(
            workspace, request.model_copy(update={"objectives": [objective]}), actor="ana"
        )
    with serve(project) as found:
        yield found


# (page, its API twin): the same service call, the same parameters
TWINS = [
    (f"/stages/Onboarding?at={AT}", f"/api/stages/Onboarding?at={AT}&accounts=true"),
    (f"/signals?at={AT}", f"/api/signals?at={AT}"),
    (
        "/health/backtest?at=2025-01-20&horizon_days=20",
        "/api/health-scores/backtest?at=2025-01-20T00:00:00&horizon_days=20",
    ),
    (f"/plans?at={AT}", f"/api/plans?at={AT}"),
    (f"/plans/1?at={AT}", f"/api/plans/1?at={AT}"),
    (
        f"/outcomes/revenue?{WINDOW}&period=month",
        f"/api/outcomes/revenue?{WINDOW}&period=month",
    ),
    (
        f"/outcomes/adoption?{WINDOW}",
        "/api/outcomes/adoption?start=2025-01-15T00:00:00&end=2025-02-15T00:00:00",
    ),
    (
        f"/outcomes/voc?{WINDOW}",
        "/api/outcomes/voc?start=2025-01-15T00:00:00&end=2025-02-15T00:00:00",
    ),
    (
        "/outcomes/divergence?end=2025-02-15&periods=3",
        "/api/outcomes/divergence?end=2025-02-15T00:00:00&periods=3",
    ),
    (
        f"/outcomes/team?{WINDOW}",
        "/api/outcomes/team?start=2025-01-15T00:00:00&end=2025-02-15T00:00:00",
    ),
    (
        f"/outcomes/churn-review?{WINDOW}",
        "/api/churn/review?start=2025-01-15T00:00:00&end=2025-02-15T00:00:00",
    ),
    (f"/stages?at={AT}", None),
    (f"/health?at={AT}", None),
    ("/outcomes", None),
]


def _json_path(page: str) -> str:
    path, _, query = page.partition("?")
    return f"{path}.json" + (f"?{query}" if query else "")


@pytest.mark.parametrize(("page", "api"), TWINS, ids=[page for page, _ in TWINS])
def test_each_page_renders_with_its_twin_and_csv_tables(
    served: Served, page: str, api: str | None
) -> None:
    with served.client("viewer") as client:
        html = client.get(page)
        assert html.status_code == 200, html.text[:2000]
        assert html.headers["content-type"].startswith("text/html")
        twin = client.get(_json_path(page))
        assert twin.status_code == 200
        if api is not None:
            answer = client.get(api)
            assert answer.status_code == 200, answer.text
            assert twin.json() == answer.json()
        links = csv_links(html.text)
        assert links, "every page here has at least one table"
        for link in links:
            table = client.get(link)
            assert table.status_code == 200, (link, table.text)
            assert table.headers["content-type"].startswith("text/csv")
            rows = list(csv.reader(io.StringIO(table.text)))
            name = re.search(r"table=([a-z_]+)", link)
            assert name, link
            header = re.search(
                rf'<table id="table-{name.group(1)}">\s*<thead><tr>(.*?)</tr>', html.text, re.S
            )
            assert header, link
            assert len(rows[0]) == header.group(1).count("<th")
        # the page's charts carry their Vega-Lite specs inline (drawn client-side)
        for spec in re.findall(r'id="([\w-]+)-spec">', html.text):
            assert f'data-vega-spec="{spec}-spec"' in html.text


def test_the_stage_page_filters_stuck_accounts_and_links_each_account(served: Served) -> None:
    with served.client("viewer") as client:
        model = client.get(f"/stages/Onboarding?at={AT}", headers={"Accept": "application/json"})
        model = model.json()  # Accept: application/json gives the JSON twin too
        classes = [account["class"] for account in model["accounts"]]
        stuck = client.get(f"/stages/Onboarding?at={AT}&class=stuck")
        table = client.get(f"/stages/Onboarding.csv?at={AT}&class=stuck&table=accounts")
        every = client.get(f"/stages/Onboarding.csv?at={AT}&table=accounts")
    assert model["in_stage"] == len(classes) > 0
    rows = list(csv.DictReader(io.StringIO(table.text)))
    assert len(rows) == classes.count("stuck")
    assert {row["class"] for row in rows} <= {"stuck"}
    assert len(list(csv.DictReader(io.StringIO(every.text)))) == len(classes)
    # the filter is one click: a link per class with its count, the chosen one marked
    assert re.search(
        rf'aria-current="true">stuck<span class="n">{classes.count("stuck")}</span>', stuck.text
    ), stuck.text
    for account in model["accounts"]:
        if account["class"] == "stuck":
            assert f'href="/accounts/{quote(account["account_id"], safe="")}"' in stuck.text


def test_before_and_after_with_since(served: Served) -> None:
    with served.client("viewer") as client:
        page = client.get(f"/stages/Onboarding?at={AT}&since=2025-02-01")
        table = client.get(f"/stages/Onboarding.csv?at={AT}&since=2025-02-01&table=before_after")
        api = client.get(f"/api/stages/Onboarding?at={AT}&since=2025-02-01").json()
    assert page.status_code == 200 and "Before and after" in page.text
    rows = list(csv.DictReader(io.StringIO(table.text)))
    assert [row["objective"] for row in rows] == [o["name"] for o in api["since"]["objectives"]]
    assert (
        f"{api['since']['in_stage_before']} then, {api['since']['in_stage_now']} now" in page.text
    )


def test_numbers_agree_with_the_api(served: Served) -> None:
    with served.client("viewer") as client:
        overview = client.get(f"/stages.json?at={AT}").json()
        onboarding = client.get(f"/api/stages/Onboarding?at={AT}").json()
        health = client.get(f"/health.json?at={AT}").json()
        lowest = health["scores"][0]["lowest"][0]
        explained = client.get(
            f"/api/health-scores/accounts/{lowest['account_id']}?at={AT}"
            f"&score={quote(health['scores'][0]['score_name'])}"
        ).json()
    [first] = [s for s in overview["stages"] if s["name"] == "Onboarding"]
    for key in ("in_stage", "entered", "completed", "exited", "window"):
        assert first[key] == onboarding[key]
    score = health["scores"][0]
    assert sum(score["bands"].values()) == score["scored"] <= score["accounts"]
    assert sum(b["accounts"] for b in score["distribution"]) == score["scored"]
    assert explained["scores"][0]["now"]["score"] == pytest.approx(lowest["score"])
    assert explained["scores"][0]["now"]["band"] == lowest["band"]


BAD = [
    ("/stages/Onboarding?at=yesterday", 422, "parameter 'at'"),
    (f"/stages/Onboarding?at={AT}&class=lost", 422, "parameter 'class'"),
    (f"/stages/Onboarding?at={AT}&window=0", 422, "parameter 'window'"),
    (f"/stages/Onboarding?at={AT}&since=2025-03-01", 422, "parameter 'since'"),
    ("/stages/Nowhere", 404, "no stage named"),
    ("/signals?kind=gossip", 422, "parameter 'kind'"),
    ("/health?score=Vibes", 404, "Vibes"),
    ("/health/backtest?horizon_days=-3", 422, "horizon_days"),
    ("/plans/abc", 422, "not a plan id"),
    ("/plans/99999", 404, "no success plan 99999"),
    ("/plans?status=great", 422, "parameter 'status'"),
    ("/outcomes/revenue?start=2025-03-01&end=2025-02-01", 422, "not before"),
    ("/outcomes/revenue?period=decade", 422, "parameter 'period'"),
    ("/outcomes/divergence?periods=1", 422, "parameter 'periods'"),
    ("/outcomes/churn-review?lookback=0", 422, "parameter 'lookback'"),
    ("/stages/Onboarding.csv?table=nope", 404, "its tables"),
]


@pytest.mark.parametrize(("page", "status", "message"), BAD, ids=[b[0] for b in BAD])
def test_bad_parameters_give_the_error_page(
    served: Served, page: str, status: int, message: str
) -> None:
    with served.client("viewer") as client:
        html = client.get(page)
        assert html.status_code == status, html.text[:1000]
        assert message in html.text.replace("&#39;", "'"), html.text[:2000]
        if ".csv" not in page:
            assert 'class="error-box"' in html.text
            twin = client.get(_json_path(page))
            assert twin.status_code == status
            assert message in twin.json()["error"]["message"]


def test_a_signal_becomes_a_draft_job_from_its_form(served: Served) -> None:
    with served.client("viewer") as client:
        found = client.get(f"/signals.json?at={AT}").json()
    signal = next(s for s in found["signals"] if s["count"] > 0)
    with logged_in(served, "viewer") as (viewer, csrf):
        page = viewer.get(f"/signals?at={AT}")
        assert "Create a draft job" not in page.text  # viewers see no form
        refused = viewer.post("/signals/job", data={"csrf_token": csrf, "signal": signal["id"]})
        assert refused.status_code == 403
    with logged_in(served, "editor") as (editor, csrf):
        page = editor.get(f"/signals?at={AT}")
        assert "Create a draft job" in page.text and 'name="csrf_token"' in page.text
        no_token = editor.post("/signals/job", data={"signal": signal["id"], "at": AT})
        assert no_token.status_code == 403
        unknown = editor.post(
            "/signals/job", data={"csrf_token": csrf, "signal": "nonsense", "at": AT}
        )
        assert unknown.status_code == 404 and "no signal" in unknown.text
        made = editor.post(
            "/signals/job",
            data={"csrf_token": csrf, "signal": signal["id"], "at": AT, "name": "From a signal"},
        )
        assert made.status_code == 303, made.text
        assert made.headers["location"] == "/jobs/From%20a%20signal/edit"
    with served.client("viewer") as client:
        job = client.get("/api/jobs/From%20a%20signal").json()
    assert job["summary"]["status"] == "draft"
    assert job["definition"]["audience"] == signal["rule"]
