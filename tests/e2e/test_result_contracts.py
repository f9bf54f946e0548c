"""One contract per result type: the CLI's ``--format json``, the API's response and the service's
model are the same :mod:`closeloop.schemas` model, and the committed JSON Schemas are generated.

- **Measurement** (with its matched comparisons): ``closeloop measure`` on seeded files =
  ``POST /api/reports/measure`` with the same files uploaded = ``measure_files(...).model``.
- **Job report** (with its revenue value, verdict, variants): a job with two variants run by the
  engine in lockstep with a simulated company (which has subscriptions), then
  ``closeloop report JOB`` = ``GET /api/jobs/{name}/report`` = ``report_job(...).model``.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import jsonschema
import pytest
from api_support import Api, api_for
from typer.testing import CliRunner

from closeloop.cli.main import app
from closeloop.schemas import dump_json
from closeloop.schemas.job_report import JobReport
from closeloop.schemas.measurement import Measurement
from closeloop.services.measure import MeasureRequest, measure_files, parse_weights
from closeloop.services.project import init_project, open_workspace
from closeloop.services.reports import report_job
from closeloop.services.result_schemas import DOCS_DIR, RESULT_SCHEMAS, result_schema_texts
from closeloop.services.simulation import simulate_into, simulation_config
from support import assert_same_json, embedded_backends

DOCS = Path(__file__).resolve().parents[2] / "docs"
GOAL = "integration_connected"
VALUE_EVENT = "expansion"
START = datetime(2024, 1, 1)


# -- measurement ---------------------------------------------------------------------------------


def _measure_files(folder: Path) -> tuple[Path, Path]:
    """300 units (holdout, email, video) with a plan and a pre-entry MRR; seeded goal and value
    events. The email arm completes more often; some events belong to no unit."""
    rng = random.Random(11)
    units = ["unit_id,arm,entered_at,plan,pre_mrr"]
    events = ["unit_id,name,timestamp,value"]
    chance = {"holdout": 0.30, "email": 0.45, "video": 0.35}
    for index in range(300):
        arm = ("holdout", "email", "video")[index % 3]
        plan = rng.choice(["basic", "pro", "enterprise"])
        entered = START + timedelta(days=rng.randrange(28), hours=rng.randrange(24))
        unit = f"u{index:03d}"
        units.append(f"{unit},{arm},{entered.isoformat()}Z,{plan},{rng.randrange(10, 500)}")
        if rng.random() < chance[arm] + (0.1 if plan == "enterprise" else 0.0):
            at = entered + timedelta(hours=rng.randrange(1, 24 * 20))
            events.append(f"{unit},{GOAL},{at.isoformat()}Z,")
        if rng.random() < 0.4:
            at = entered + timedelta(days=rng.randrange(1, 20))
            events.append(f"{unit},{VALUE_EVENT},{at.isoformat()}Z,{rng.randrange(5, 300)}")
    events.append(f"nobody,{GOAL},{START.isoformat()}Z,")
    (folder / "units.csv").write_text("\n".join(units) + "\n", encoding="utf-8")
    (folder / "events.csv").write_text("\n".join(events) + "\n", encoding="utf-8")
    return Path("units.csv"), Path("events.csv")


MEASURE_OPTIONS = {
    "goal": GOAL,
    "control": "holdout",
    "horizon": "14d",
    "value_event": VALUE_EVENT,
    "covariate": "pre_mrr",
    "segment_by": ["plan"],
    "match_on": ["plan", "pre_mrr"],
    "weights": ["holdout=1", "email=1", "video=1"],
    "alpha": "0.05",
}


def _measure_cli_args(units: Path, events: Path) -> list[str]:
    args = ["measure", "--units", str(units), "--events", str(events), "--format", "json"]
    for name, value in MEASURE_OPTIONS.items():
        flag = "--" + name.replace("_", "-")
        for item in value if isinstance(value, list) else [value]:
            args += [flag, item]
    return args


@pytest.fixture
def measured_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path, Path]:
    # Relative names, so the CLI's `source` and messages name the files as the uploads do.
    monkeypatch.chdir(tmp_path)
    units, events = _measure_files(tmp_path)
    init_project(tmp_path / "project", name="contracts")
    return tmp_path, units, events


def test_measure_cli_json_equals_the_api_response_and_the_service_model(
    measured_folder: tuple[Path, Path, Path],
) -> None:
    folder, units, events = measured_folder
    cli = CliRunner().invoke(app, _measure_cli_args(units, events))
    assert cli.exit_code == 0, cli.output
    from_cli = Measurement.model_validate_json(cli.output)

    service = measure_files(
        MeasureRequest(
            units=units,
            events=events,
            goal=GOAL,
            horizon_days=14.0,
            control="holdout",
            value_event=VALUE_EVENT,
            covariate="pre_mrr",
            segment_by=("plan",),
            weights=parse_weights(["holdout=1", "email=1", "video=1"]),
            match_on=("plan", "pre_mrr"),
        )
    ).model

    with api_for(folder / "project", embedded_backends(folder / "project").environ()) as api:
        response = _post_measure(api, folder / units, folder / events)
    assert response.status_code == 200, response.text
    from_api = Measurement.model_validate_json(response.text)

    # The same JSON, number for number (DuckDB may sum in another order: 1e-12 relative).
    expected = json.loads(cli.output)
    assert_same_json(response.json(), expected)
    assert_same_json(json.loads(dump_json(service)), expected)
    assert from_api.source == from_cli.source
    # What the contract covers is present here, not just null.
    assert from_cli.source is not None and from_cli.source.units_file == "units.csv"
    assert from_cli.source.events_for_unknown_units == 1
    assert from_cli.srm is not None and from_cli.segments and from_cli.heterogeneity
    assert from_cli.matched is not None and {m.arm for m in from_cli.matched} == {"email", "video"}
    assert all(m.balance and m.counts.treated_matched > 0 for m in from_cli.matched)
    metrics = {c.metric for c in from_cli.comparisons}
    assert metrics == {"completion_rate", "value", "time_to_goal"}
    value = next(
        c
        for c in from_cli.comparisons
        if (c.metric, c.arm, c.control) == ("value", "email", "holdout")
    )
    assert value.cuped is True and value.two_part is not None
    assert {c.decided_by for c in from_cli.comparisons} <= {"fixed_horizon", "holm_adjusted"}
    # The curves a chart draws: one per arm, ascending, shares between 0 and 1.
    assert set(from_cli.curves) == {"holdout", "email", "video"}
    for curve in from_cli.curves.values():
        assert curve.days == sorted(curve.days) and max(curve.days) <= 14
        assert all(0 <= share <= 1 for share in curve.completed if share is not None)
    jsonschema.validate(expected, json.loads((DOCS / "measure.schema.json").read_text()))


def _post_measure(api: Api, units: Path, events: Path, **changes: object):  # type: ignore[no-untyped-def]
    form = {**MEASURE_OPTIONS, **changes}
    files = {
        "units": (units.name, units.read_bytes(), "text/csv"),
        "events": (events.name, events.read_bytes(), "text/csv"),
    }
    return api.post("/api/reports/measure", role="viewer", data=form, files=files)


def test_measure_api_errors_name_the_uploaded_file_and_use_the_error_shape(
    measured_folder: tuple[Path, Path, Path],
) -> None:
    folder, units, events = measured_folder
    broken = folder / "broken units.csv"
    broken.write_text("unit_id,arm,entered\nu1,holdout,2024-01-01\n", encoding="utf-8")
    text = folder / "events.txt"
    text.write_text((folder / events).read_text(encoding="utf-8"), encoding="utf-8")
    with api_for(folder / "project", embedded_backends(folder / "project").environ()) as api:
        missing_column = _post_measure(api, broken, folder / events)
        unknown_control = _post_measure(api, folder / units, folder / events, control="hold")
        bad_horizon = _post_measure(api, folder / units, folder / events, horizon="soon")
        bad_suffix = _post_measure(api, folder / units, text)
        no_token = api.client.post("/api/reports/measure")
        openapi = api.client.get("/openapi.json").json()
    assert missing_column.status_code == 422
    error = missing_column.json()["error"]
    assert error["code"] == "import_error"
    assert error["message"].startswith("broken units.csv: missing column(s) entered_at")
    assert "closeloop-measure-" not in error["message"]  # never the server's temporary copy
    assert unknown_control.status_code == 404
    assert "did you mean 'holdout'?" in unknown_control.json()["error"]["message"]
    assert bad_horizon.status_code == 422
    assert "--horizon 'soon'" in bad_horizon.json()["error"]["message"]
    assert bad_suffix.status_code == 422
    assert bad_suffix.json()["error"]["message"].startswith("events.txt: the file name must end")
    assert no_token.status_code == 401
    # OpenAPI documents both routes with the result models as their responses.
    for path, method, model in (
        ("/api/reports/measure", "post", "Measurement"),
        ("/api/jobs/{name}/report", "get", "JobReport"),
    ):
        ok = openapi["paths"][path][method]["responses"]["200"]["content"]["application/json"]
        assert ok["schema"] == {"$ref": f"#/components/schemas/{model}"}
    assert "MatchedComparison" in openapi["components"]["schemas"]
    assert "RevenueValue" in openapi["components"]["schemas"]


# -- job report ----------------------------------------------------------------------------------

JOB = "Integration nudge"
JOBS = f"""\
jobs:
  - name: {JOB}
    audience: |
      signup_date within last 14 days
        and count(event "integration_connected") = 0
    goal: count(event "integration_connected") >= 1
    duration_days: 20
    holdout: 0.25
    variants:
      - name: plain
        steps:
          - send: email
            subject: "Connect {{{{ account.name }}}}"
            template: integration_nudge
      - name: video
        steps:
          - send: email
            subject: "Watch: connect in two minutes"
            template: integration_nudge
    hypothesis:
      expected_effect: Nudged accounts connect an integration sooner.
      primary_metric: completion_rate
      horizon_days: 14
"""


@dataclass(frozen=True)
class Simulated:
    folder: Path
    environ: dict[str, str]
    start: datetime  # the simulation's first day


@pytest.fixture(scope="module")
def simulated(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Simulated]:
    """A company simulated for 130 days (subscriptions included) with the job run by the engine:
    old enough enrollments for the 90-day revenue value."""
    folder = tmp_path_factory.mktemp("contracts") / "project"
    init_project(folder, name="contracts")
    (folder / "jobs.yaml").write_text(JOBS, encoding="utf-8")
    environ = embedded_backends(folder).environ()
    config = simulation_config("default", accounts=700, days=130, arrival_days=110, seed=4)
    with open_workspace(folder, environ=environ) as workspace:
        simulate_into(workspace, config, run_jobs=True)
    yield Simulated(folder, dict(environ), datetime.combine(config.start, datetime.min.time()))


@pytest.mark.slow
def test_report_cli_json_equals_the_api_response_and_the_service_model(
    simulated: Simulated,
) -> None:
    folder, environ = simulated.folder, simulated.environ
    cli = CliRunner(env=environ).invoke(
        app, ["report", JOB, "--format", "json", "--project", str(folder)]
    )
    assert cli.exit_code == 0, cli.output
    from_cli = JobReport.model_validate_json(cli.output)

    with open_workspace(folder, write=False, environ=environ) as workspace:
        service = report_job(workspace, JOB).model

    with api_for(folder, environ) as api:
        response = api.get(f"/api/jobs/{JOB}/report", role="viewer")
        segmented = api.get(
            f"/api/jobs/{JOB}/report", role="viewer", params={"segment_by": ["plan", "segment"]}
        )
        unknown = api.get("/api/jobs/No such job/report", role="viewer")
        as_ingest = api.get(f"/api/jobs/{JOB}/report", role="ingest")
    assert response.status_code == 200, response.text
    from_api = JobReport.model_validate_json(response.text)

    expected = json.loads(cli.output)
    assert_same_json(response.json(), expected)
    assert_same_json(json.loads(dump_json(service)), expected)
    assert from_api.job_name == from_cli.job_name == JOB
    # The parts of the contract present on this job, not null.
    assert set(from_cli.arms) == {"holdout", "treatment"}
    assert set(from_cli.variants) == {"plain", "video"}
    assert from_cli.verdict is not None and from_cli.verdict.guardrails
    assert from_cli.deliveries and from_cli.versions
    assert from_cli.srm == from_cli.measurement.srm and from_cli.srm is not None
    assert from_cli.variant_measurement is not None
    assert set(from_cli.variant_measurement.curves) == {"holdout", "plain", "video"}
    revenue = from_cli.revenue_value
    assert revenue is not None and [h.days for h in revenue.horizons] == [90, 180]
    at_90 = revenue.horizons[0]
    assert at_90.matured > 0 and set(at_90.arms) == {"holdout", "treatment"}
    assert {c.arm for c in at_90.variant_comparisons} == {"plain", "video"}
    assert from_cli.measurement.final_alpha == 0.025
    assert any(c.sequential is not None for c in from_cli.measurement.comparisons)
    jsonschema.validate(expected, json.loads((DOCS / "job-report.schema.json").read_text()))

    assert segmented.status_code == 200, segmented.text
    columns = {row["column"] for row in segmented.json()["measurement"]["segments"]}
    assert columns == {"plan", "segment"}
    assert unknown.status_code == 404
    assert unknown.json()["error"]["code"] == "not_found"
    assert as_ingest.status_code == 403


@pytest.mark.slow
def test_report_as_of_the_same_time_agrees_between_cli_and_api(simulated: Simulated) -> None:
    folder, environ = simulated.folder, simulated.environ
    # Day 100 at midnight in UTC+2: 22:00 UTC the day before, on both surfaces.
    moment = simulated.start + timedelta(days=100)
    as_of = f"{moment:%Y-%m-%d}T00:00:00+02:00"
    cli = CliRunner(env=environ).invoke(
        app, ["report", JOB, "--format", "json", "--project", str(folder), "--as-of", as_of]
    )
    assert cli.exit_code == 0, cli.output
    with api_for(folder, environ) as api:
        response = api.get(f"/api/jobs/{JOB}/report", role="viewer", params={"as_of": as_of})
    assert response.status_code == 200, response.text
    from_cli, from_api = json.loads(cli.output), response.json()
    expected_as_of = (moment - timedelta(hours=2)).isoformat()
    assert from_cli["as_of"] == from_api["as_of"] == expected_as_of
    # Freshness warnings name the time as each surface takes it (--as-of, as_of); all else agrees.
    warnings = (from_cli.pop("warnings"), from_api.pop("warnings"))
    assert [w.replace("--as-of", "as_of") for w in warnings[0]] == warnings[1]
    assert_same_json(from_api, from_cli)


# -- the committed schemas -----------------------------------------------------------------------


def test_the_committed_result_schemas_are_the_generated_ones() -> None:
    assert DOCS_DIR == DOCS
    generated = result_schema_texts()
    assert set(generated) == set(RESULT_SCHEMAS)
    for name, text in generated.items():
        committed = (DOCS / name).read_text(encoding="utf-8")
        assert committed == text, (
            f"docs/{name} is stale: run `python -c 'from closeloop.services.result_schemas "
            "import write_result_schemas; write_result_schemas()'`"
        )
