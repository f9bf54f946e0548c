"""The terminal and the HTML page render the same numbers from the result models.

A job report built from hand-made enrollments in a DuckDB file and a measurement of several arms
in memory: every cell the terminal shows is on the page, and the sentences follow the model.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import ibis
import pyarrow as pa
import pytest
from markupsafe import escape
from rich.console import Console

from closeloop.analysis.job_report import build_job_report
from closeloop.analysis.measurement import MeasureOptions, measure_units
from closeloop.data.tables import ENROLLMENTS
from closeloop.data.warehouse import Warehouse
from closeloop.present import measurement as measured
from closeloop.present import report_view as view
from closeloop.present.format import pct, pp, pp_ci
from closeloop.present.html import job_report_html, measurement_html, write_job_report_html
from closeloop.present.job_report import print_job_report
from closeloop.schemas.job_report import JobReport
from closeloop.services.results import job_report_model, measurement_model
from support import Backends

DAY0 = datetime(2025, 3, 3)
ARMS = ("holdout", "short", "long")
PER_ARM = 40


def _enrollments() -> tuple[dict[str, list[object]], list[str]]:
    """40 accounts per arm entering on day 0; in arm k the first 10 + 5k complete on day 3."""
    rows: dict[str, list[object]] = {name: [] for name in ENROLLMENTS.column_names}
    accounts = []
    for k, arm in enumerate(ARMS):
        for i in range(PER_ARM):
            account = f"a_{arm}_{i:02d}"
            completes = i < 10 + 5 * k
            values = {
                "enrollment_id": f"e_{account}",
                "job_name": "Nudge",
                "job_version": 1,
                "account_id": account,
                "person_id": None,
                "arm": arm,
                "entered_at": DAY0,
                "completed_at": DAY0 + timedelta(days=3) if completes else None,
                "exited_at": None if completes else DAY0 + timedelta(days=14),
                "exit_reason": None if completes else "timeout",
            }
            for name in rows:
                rows[name].append(values.get(name))
            accounts.append(account)
    return rows, accounts


@pytest.fixture
def report(backends: Backends) -> Iterator[JobReport]:
    with Warehouse.connect(backends.warehouse_url) as warehouse:
        warehouse.ensure_tables()
        rows, accounts = _enrollments()
        warehouse.replace(
            ENROLLMENTS.name,
            pa.Table.from_pydict(rows, schema=ENROLLMENTS.ibis_schema().to_pyarrow()),
        )
        warehouse.append(
            "accounts",
            warehouse.arrow_for(
                "accounts",
                {
                    "account_id": accounts,
                    "created_at": [DAY0 - timedelta(days=30)] * len(accounts),
                    "segment": ["big" if i % 2 else "small" for i in range(len(accounts))],
                },
            ),
        )
        analysed = build_job_report(
            warehouse,
            "Nudge",
            as_of=DAY0 + timedelta(days=30),
            horizon_days=14,
            holdout_fraction=1 / 3,
            variants=(("short", 1.0), ("long", 1.0)),
        )
        yield job_report_model(analysed)


def _terminal(report: JobReport, truths: dict[str, float] | None = None) -> str:
    console = Console(record=True, width=400, color_system=None)
    print_job_report(console, report, truths)
    return console.export_text()


def test_the_job_report_shows_the_models_numbers_in_the_terminal_and_on_the_page(
    report: JobReport,
) -> None:
    truths = {"all": 0.2, "big": 0.2, "small": 0.2}
    text = _terminal(report, truths)
    page = job_report_html(report, truths)
    completion = view.job_comparison(report, "completion_rate")
    assert completion is not None and completion.absolute is not None
    # 35/80 treated against 10/40 in the holdout, counted by hand.
    assert completion.absolute.estimate == pytest.approx(35 / 80 - 10 / 40)
    lift = f"{pp(completion.absolute.estimate)}"
    assert f"Lift in completion: {lift} 97.5% CI {pp_ci(completion.absolute.ci)}" in text
    assert view.headline(report) in text
    assert str(escape(view.headline(report))) in page
    assert view.headline(report).startswith(("The job worked", "Inconclusive"))
    for row in view.arm_rows(report):
        assert pct(row["completion_rate"]) in text
        assert f"<td>{pct(row['completion_rate'])}</td>" in page
    assert pct(10 / 40) in text and pct(35 / 80) in text
    # Each variant against the other, in the terminal's table and in the page's.
    variants = [row for row in view.comparison_rows(report) if row["scope"] == "variant"]
    assert {row["versus"] for row in variants} >= {"short − holdout", "long − holdout"}
    for row in variants:
        assert row["versus"] in text and row["estimate"] in text
        assert f"<td>{row['versus']}</td>" in page
    # The simulator's truth: overall against the lift's interval, per segment as columns.
    assert "Simulator's true effect overall: +20.0 pp (inside the CI)" in text
    assert "<th>true effect</th>" in page and "true effect" in text
    assert page.count("<svg") == 2  # the time-to-goal curves and the lift by segment


def test_the_page_without_truths_and_a_report_without_data(
    report: JobReport, tmp_path: Path
) -> None:
    written = write_job_report_html(report, tmp_path / "out" / "report.html")
    page = written.read_text(encoding="utf-8")
    assert "<th>true effect</th>" not in page and page.startswith("<!doctype html>")
    assert "Generated by closeloop" in page
    empty = report.model_copy(update={"status": "insufficient_data"})
    assert view.headline(empty).startswith("Not enough data to measure this job yet")
    assert "Not enough data to measure this job yet" in _terminal(empty)


def _units() -> ibis.Table:
    """Three arms of 400: control completes 100, a 140, b 120, each within nine days."""
    completed = {"control": 100, "a": 140, "b": 120}
    rows: dict[str, list[object]] = {
        "unit_id": [],
        "arm": [],
        "entered_at": [],
        "goal_at": [],
        "segment": [],
    }
    for arm, count in completed.items():
        for i in range(400):
            entered = DAY0 + timedelta(hours=i % 240)
            rows["unit_id"].append(f"{arm}-{i:04d}")
            rows["arm"].append(arm)
            rows["entered_at"].append(entered)
            rows["goal_at"].append(entered + timedelta(days=1 + i % 9) if i < count else None)
            rows["segment"].append("smb" if i % 3 else "ent")
    return ibis.memtable(pa.table(rows))


def test_a_measurement_shows_the_same_cells_in_the_terminal_and_on_the_page() -> None:
    options = MeasureOptions(
        horizon_days=14,
        control="control",
        weights={"control": 1.0, "a": 1.0, "b": 1.0},
        segment_by=("segment",),
    )
    model = measurement_model(measure_units(_units(), options), warnings=["an input warning"])
    console = Console(record=True, width=400, color_system=None)
    measured.print_measurement(console, model)
    text = console.export_text()
    page = measurement_html(model)
    assert measured.headline(model).startswith("All treated completed more often than control")
    assert measured.headline(model) in text and measured.headline(model) in page
    assert "⚠ an input warning" in text and "⚠ an input warning" in page
    cells = [
        *(cell for row in measured.arm_rows(model) for cell in row),
        *(cell for c in model.comparisons for cell in measured.comparison_cells(c)),
        *(cell for s in model.segments for cell in measured.segment_cells(s)),
    ]
    assert len(cells) > 50
    for cell in cells:
        assert cell in text, cell
        assert f"<td>{escape(cell)}</td>" in page, cell
    assert pct(140 / 400) in text  # arm a's completion rate, counted by hand
    assert "Sample ratio check: chi2 = 0.00, p = 1.0000 (ok)" in text
    assert page.count("<svg") == 1
