"""The board report on a small simulated company with a job run in lockstep.

Known answers: every figure of the report is the underlying service's result for the same
period (revenue outcomes, adoption, voice of the customer, signals, each job's report, the
outbox, the enrollments). ``closeloop board --format json``, ``GET /api/board`` and the service's
model are the same JSON; the HTML leads with outcomes and keeps the layers in order; the PDF's
first page rendered to pixels is not blank; bad periods are clear errors on every surface.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime, time
from pathlib import Path
from typing import Any

import pypdfium2
import pytest
import sqlalchemy as sa
from api_support import Api, api_for
from typer.testing import CliRunner

from closeloop.cli.main import app
from closeloop.engine import schema
from closeloop.present.board import board_html, board_pdf
from closeloop.schemas import dump_json
from closeloop.schemas.board import BoardReport
from closeloop.services import board as service
from closeloop.services.journey import signals
from closeloop.services.outcomes_adoption import adoption
from closeloop.services.outcomes_revenue import revenue
from closeloop.services.outcomes_voc import voc
from closeloop.services.project import open_workspace
from closeloop.services.reports import report_job
from closeloop.services.simulation import simulate_into, simulation_config
from support import VARIANT_JOB, embedded_backends, project_with_jobs

pytestmark = pytest.mark.slow  # one simulated company (~30 s) shared by the module


@dataclass(frozen=True)
class Simulated:
    folder: Path
    environ: dict[str, str]
    start: date
    end: date
    report: BoardReport
    api: Api

    def cli(self, *args: str, code: int = 0) -> Any:
        result = CliRunner().invoke(
            app, ["board", *args, "--project", str(self.folder)], env=self.environ
        )
        assert result.exit_code == code, result.output
        assert result.exception is None or isinstance(result.exception, SystemExit)
        return json.loads(result.stdout) if "json" in args else result.output


@pytest.fixture(scope="module")
def simulated(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Simulated]:
    root = tmp_path_factory.mktemp("board")
    folder = project_with_jobs(root / "project", VARIANT_JOB)
    environ = embedded_backends(root).environ()
    config = simulation_config("default", accounts=200, days=90, arrival_days=60, seed=4)
    with open_workspace(folder, environ=environ) as workspace:
        simulate_into(workspace, config, run_jobs=True)
    with open_workspace(folder, environ=environ, write=False) as workspace:
        start, end = service.default_period(workspace)
        report = service.board_report(workspace, start, end)
    with api_for(folder, environ) as api:
        yield Simulated(folder, environ, start, end, report, api)


def _at(day: date) -> datetime:
    return datetime.combine(day, time())


def test_every_figure_is_the_underlying_services_result(simulated: Simulated) -> None:
    report, start, end = simulated.report, simulated.start, simulated.end
    assert (end - start).days in (28, 29, 30, 31) and start.day == 1 == end.day
    with open_workspace(simulated.folder, environ=simulated.environ, write=False) as workspace:
        window = revenue(workspace, start, end)
        first = report.outcomes.trend[0].period_start
        trend = revenue(workspace, first, end, period="month")
        active = adoption(workspace, _at(start), _at(end))
        answers = voc(workspace, _at(start), _at(end), comments=0)
        flagged = signals(workspace, _at(end))
        job = report.initiatives.jobs[0]
        assert job.as_of is not None
        measured = report_job(workspace, job.name, job.as_of.replace(tzinfo=None)).model
        entered = workspace.store.enrollments_table().to_pandas()
        with workspace.store.engine.connect() as connection:
            outbox = connection.execute(
                sa.select(schema.outbox.c.status, schema.outbox.c.due_at)
            ).all()
    # Layer 1: the window's figures, and the monthly trend ending with the period.
    assert report.outcomes.status == "ok"
    assert report.outcomes.period == window.total
    assert window.total.starting_mrr > 0 and window.total.nrr is not None
    assert [row.period_start for row in report.outcomes.trend][-1] == start
    assert report.outcomes.trend == trend.rows
    assert len(report.outcomes.trend) == service.TREND_MONTHS
    # Layer 2.
    assert report.leading.adoption.overall == active.overall
    assert report.leading.adoption.usage_drops == len(active.usage_drops.flagged)
    assert report.leading.voice_of_customer.status == "ok"
    assert report.leading.voice_of_customer.nps == answers.nps
    assert report.leading.voice_of_customer.csat == answers.csat
    assert answers.nps.lower is not None and answers.nps.upper is not None
    distinct = {a.account_id: a.arr or 0.0 for s in flagged.signals for a in s.accounts}
    assert report.leading.risk.accounts_at_risk == len(distinct)
    assert report.leading.risk.arr_at_risk == pytest.approx(sum(distinct.values()))
    assert report.leading.time_to_value.status == "unavailable"
    assert "value_event" in (report.leading.time_to_value.reason or "")
    # Initiatives: the job report's verdict, lift and interval.
    assert [j.name for j in report.initiatives.jobs] == ["Integration nudge"]
    assert measured.verdict is not None
    assert job.decision == measured.verdict.decision
    comparison = next(
        c
        for c in measured.measurement.comparisons
        if c.arm == "treatment" and c.metric == "completion_rate"
    )
    assert job.lift == pytest.approx(comparison.absolute.estimate)
    assert (job.lift_lower, job.lift_upper) == pytest.approx(comparison.absolute.ci)
    assert job.lift_status == measured.status
    assert job.enrolled == sum(arm.entered for arm in measured.arms.values())
    # Layer 3: enrollments and messages in the period, counted independently here.
    begin, finish = _at(start), _at(end)
    in_period = entered[(entered.entered_at >= begin) & (entered.entered_at < finish)]
    assert report.activity.accounts_enrolled == len(in_period) > 0
    due = [status for status, at in outbox if at is not None and begin <= at < finish]
    assert report.activity.messages == {s: due.count(s) for s in sorted(set(due))}
    assert report.activity.messages_sent == due.count("sent") > 0
    assert report.activity.jobs_running == 1


def test_cli_json_is_the_api_response_and_the_model(simulated: Simulated) -> None:
    period = ["--start", simulated.start.isoformat(), "--end", simulated.end.isoformat()]
    cli = simulated.cli(*period, "--format", "json")
    response = simulated.api.get(
        "/api/board", params={"start": simulated.start, "end": simulated.end}
    )
    assert response.status_code == 200, response.text
    default = simulated.api.get("/api/board")
    model = json.loads(dump_json(simulated.report))
    assert cli == response.json() == default.json() == model
    assert BoardReport.model_validate(cli) == simulated.report


def test_the_table_output_and_the_files(simulated: Simulated, tmp_path: Path) -> None:
    html, pdf = tmp_path / "board.html", tmp_path / "out" / "board.pdf"
    output = simulated.cli("--html", str(html), "--pdf", str(pdf))
    for heading in ("1. Outcomes", "2. Leading indicators", "Initiatives", "3. Activity"):
        assert heading in output
    assert "NRR" in output and "Integration nudge" in output
    assert html.read_text(encoding="utf-8").startswith("<!doctype html>")
    assert pdf.read_bytes().startswith(b"%PDF")


def test_the_html_leads_with_outcomes_and_keeps_the_layers_in_order(
    simulated: Simulated,
) -> None:
    html = board_html(simulated.report)
    positions = [
        html.index(f'<section id="{part}">')
        for part in ("outcomes", "leading", "initiatives", "activity")
    ]
    assert positions == sorted(positions)
    assert html.index("<h2>1. Outcomes</h2>") < html.index("NRR") < positions[1]
    assert html.count("<svg") >= 2  # the trend and the initiatives' lift, inline
    assert "<script" not in html
    assert 'src="http' not in html and 'href="http' not in html  # standalone: nothing fetched
    nrr = simulated.report.outcomes.period
    assert nrr is not None and nrr.nrr is not None
    assert f"{nrr.nrr * 100:.1f}%" in html


def test_the_pdfs_first_page_is_not_blank(simulated: Simulated) -> None:
    document = pypdfium2.PdfDocument(board_pdf(simulated.report))
    assert len(document) >= 2
    bitmap = document[0].render(scale=1)
    pixels = bitmap.to_numpy()
    ink = (pixels[..., :3].min(axis=-1) < 200).mean()
    # Text, cards, the chart and the table rules: measured 6-8% of the page; blank is 0.
    assert ink > 0.02, ink
    text = document[0].get_textpage().get_text_range()
    assert "1. Outcomes" in text and "NRR" in text


def test_the_api_serves_the_html_and_the_pdf(simulated: Simulated) -> None:
    params = {"start": simulated.start, "end": simulated.end}
    page = simulated.api.get("/api/board.html", params=params)
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert page.text == board_html(simulated.report)
    pdf = simulated.api.get("/api/board.pdf", params=params)
    assert pdf.status_code == 200 and pdf.headers["content-type"] == "application/pdf"
    assert pdf.content.startswith(b"%PDF")
    assert simulated.api.client.get("/api/board").status_code == 401


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"start": "2025-03-01"}, "go together"),
        ({"start": "2025-03-01", "end": "2025-02-01"}, "must be after"),
        ({"start": "2024-01-01", "end": "2025-06-01"}, "at most 366 days"),
        ({"start": "1899-12-01", "end": "1900-01-01"}, "before 1900"),
    ],
)
def test_a_bad_period_is_a_clear_error_on_every_surface(
    simulated: Simulated, params: dict[str, str], message: str
) -> None:
    response = simulated.api.get("/api/board", params=params)
    assert response.status_code == 422 and message in response.json()["error"]["message"]
    args = [item for key, value in params.items() for item in (f"--{key}", value)]
    output = simulated.cli(*args, code=1)
    assert message in output and "Traceback" not in output


def test_value_event_adds_time_to_value(simulated: Simulated) -> None:
    with open_workspace(simulated.folder, environ=simulated.environ, write=False) as workspace:
        found = service.board_report(
            workspace, simulated.start, simulated.end, value_event="integration_connected"
        )
        direct = adoption(
            workspace,
            _at(simulated.start),
            _at(simulated.end),
            value_event="integration_connected",
        )
    part = found.leading.time_to_value
    assert part.status == "ok" and part.value_event == "integration_connected"
    assert direct.time_to_value is not None
    assert part.overall == next(c for c in direct.time_to_value.cohorts if c.cohort == "all")
    assert part.overall is not None and part.overall.reached_value > 0
