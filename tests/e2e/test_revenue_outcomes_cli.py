"""``closeloop outcomes revenue`` and ``GET /api/outcomes/revenue`` on a simulated company: the
CLI's ``--format json``, the API's response and the service's model are the same JSON; csv is
the rows; bad input is a clear error (404 for an unknown ``--by``, 422 for bad dates or switches)
with no traceback. The monthly figures equal an independent pandas computation of the same
definitions (a day-by-day MRR matrix), and docs/metrics.md names every metric and switch.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from api_support import Api, api_for
from pydantic import BaseModel
from typer.testing import CliRunner

from closeloop.cli.main import app
from closeloop.schemas import dump_json
from closeloop.schemas.revenue_outcomes import (
    ChurnAt,
    ChurnDenominator,
    ExpansionBySource,
    FreeDowngrade,
    NewAndChurned,
    PausedPolicy,
    ReactivationGap,
    RevenueMethod,
    RevenueOutcomes,
    RevenuePolicy,
    RevenueRow,
)
from closeloop.services.outcomes_revenue import revenue
from closeloop.services.project import init_project, open_workspace
from closeloop.services.simulation import simulate_into, simulation_config
from support import embedded_backends

METRICS = Path(__file__).resolve().parents[2] / "docs" / "metrics.md"


@dataclass(frozen=True)
class Project:
    folder: Path
    environ: dict[str, str]
    start: date
    end: date
    subscriptions: pd.DataFrame
    api: Api

    def cli(self, *args: str, code: int = 0) -> Any:
        result = CliRunner().invoke(
            app, ["outcomes", "revenue", *args, "--project", str(self.folder)], env=self.environ
        )
        assert result.exit_code == code, result.output
        assert result.exception is None or isinstance(result.exception, SystemExit)
        return json.loads(result.stdout) if "json" in args else result.output


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Project]:
    root = tmp_path_factory.mktemp("revenue")
    folder = root / "project"
    init_project(folder, name="revenue")
    environ = embedded_backends(root).environ()
    config = simulation_config("default", accounts=400, days=240, arrival_days=120, seed=5)
    with open_workspace(folder, environ=environ) as workspace:
        simulate_into(workspace, config)
        rows = (
            workspace.warehouse.table("subscriptions")
            .select("account_id", "start_date", "end_date", "mrr")
            .to_pyarrow()
            .to_pylist()
        )
    # Python dates (None for open rows), not pandas timestamps.
    subscriptions = pd.DataFrame.from_records(rows).astype({"start_date": object})
    first = min(subscriptions.start_date)
    start = date(first.year, first.month, 1) + timedelta(days=62)
    start = date(start.year, start.month, 1)
    month = start.month - 1 + 3
    end = date(start.year + month // 12, month % 12 + 1, 1)
    with api_for(folder, environ) as api:
        yield Project(folder, environ, start, end, subscriptions, api)


def model_json(model: BaseModel) -> Any:
    return json.loads(dump_json(model))


def test_cli_json_is_the_api_response_and_the_model(project: Project) -> None:
    args = ["--start", project.start.isoformat(), "--end", project.end.isoformat()]
    switches = ["--method", "event", "--period", "month", "--by", "segment"]
    cli = project.cli(*args, *switches, "--match-days", "45", "--format", "json")
    response = project.api.get(
        "/api/outcomes/revenue",
        params={
            "start": project.start.isoformat(),
            "end": project.end.isoformat(),
            "method": "event",
            "period": "month",
            "by": "segment",
            "match_days": 45,
        },
    )
    assert response.status_code == 200, response.text
    with open_workspace(project.folder, write=False, environ=project.environ) as workspace:
        model = revenue(
            workspace,
            project.start,
            project.end,
            period="month",
            by="segment",
            policy=RevenuePolicy(method="event", match_days=45),
        )
    assert cli == response.json() == model_json(model)
    assert RevenueOutcomes.model_validate(cli) == model
    assert model.total.starting_accounts > 50 and len(model.rows) >= 3
    # The groups of each month add up to the month (segments as of the window start).
    months = revenue_by_month(project, RevenuePolicy(method="event"))
    for month in months.rows:
        parts = [row for row in model.rows if row.period_start == month.period_start]
        assert sum(row.starting_mrr for row in parts) == pytest.approx(month.starting_mrr)
        assert sum(row.churned_mrr for row in parts) == pytest.approx(month.churned_mrr)


def revenue_by_month(project: Project, policy: RevenuePolicy) -> RevenueOutcomes:
    with open_workspace(project.folder, write=False, environ=project.environ) as workspace:
        return revenue(workspace, project.start, project.end, period="month", policy=policy)


def test_csv_is_the_rows_and_the_table_reads(project: Project) -> None:
    args = ["--start", project.start.isoformat(), "--end", project.end.isoformat()]
    rows = list(
        csv.DictReader(io.StringIO(project.cli(*args, "--period", "month", "--format", "csv")))
    )
    model = revenue_by_month(project, RevenuePolicy())
    assert [row["period_start"] for row in rows] == [r.period_start.isoformat() for r in model.rows]
    assert float(rows[0]["ending_mrr"]) == pytest.approx(model.rows[0].ending_mrr)
    assert "expansion_cs_sourced_mrr" in rows[0]
    total = list(csv.DictReader(io.StringIO(project.cli(*args, "--format", "csv"))))
    assert len(total) == 1 and float(total[0]["nrr"]) == pytest.approx(model.total.nrr)
    table = project.cli(*args, "--period", "month")
    assert "NRR" in table and "Expansion by source" in table and "churn %" in table


def test_bad_input_is_a_clear_error(project: Project) -> None:
    args = ["--start", project.start.isoformat(), "--end", project.end.isoformat()]
    output = project.cli(*args, "--by", "colour", code=1)
    assert "no account attribute 'colour'" in output and "segment" in output
    assert "Traceback" not in output
    output = project.cli("--start", "2024-13-01", "--end", "2024-02-01", code=2)
    assert "--start" in output and "2024-13-01" in output
    output = project.cli("--start", "2024-03-01", "--end", "2024-02-01", code=1)
    assert "must be after --start" in output
    base = {"start": project.start.isoformat(), "end": project.end.isoformat()}
    response = project.api.get("/api/outcomes/revenue", params={**base, "by": "colour"})
    assert response.status_code == 404 and "colour" in response.json()["error"]["message"]
    response = project.api.get("/api/outcomes/revenue", params={**base, "start": "2024-02-30"})
    assert response.status_code == 422 and "start" in response.text
    response = project.api.get("/api/outcomes/revenue", params={**base, "method": "magic"})
    assert response.status_code == 422 and "method" in response.text
    response = project.api.get(
        "/api/outcomes/revenue", params={"start": "2024-03-01", "end": "2024-02-01"}
    )
    assert response.status_code == 422 and "must be after" in response.json()["error"]["message"]


# -- an independent pandas computation of the same definitions -----------------------------------


def pandas_month(
    subs: pd.DataFrame, start: date, end: date, method: str, include: bool = False
) -> dict[str, float]:
    """Day-by-day MRR matrix (accounts x days) from the rows; a customer has MRR > 0; "before"
    is the eve of the period, "at the end" its last day."""
    accounts = sorted(subs.account_id.unique())
    index = {account: i for i, account in enumerate(accounts)}
    origin = min(subs.start_date) - timedelta(days=1)
    width = (end - origin).days
    matrix = np.zeros((len(accounts), width))
    for row in subs.itertuples():
        lo = (row.start_date - origin).days
        hi = width if row.end_date is None else min((row.end_date - origin).days, width)
        if hi > lo:
            matrix[index[row.account_id], lo:hi] += row.mrr
    customer = matrix > 0
    eve, last = (start - origin).days - 1, (end - origin).days - 1
    m0, m1 = matrix[:, eve], matrix[:, last]
    c0, c1 = customer[:, eve], customer[:, last]
    out = {"starting_mrr": m0.sum(), "ending_mrr": m1.sum(), "starting_accounts": c0.sum()}
    if method == "endpoint":
        both = c0 & c1
        ever = customer[:, : eve + 1].any(axis=1)
        out["churned_mrr"] = m0[c0 & ~c1].sum()
        out["churned_accounts"] = (c0 & ~c1).sum()
        out["expansion_mrr"] = np.clip(m1 - m0, 0, None)[both].sum()
        out["contraction_mrr"] = np.clip(m0 - m1, 0, None)[both].sum()
        out["new_mrr"] = m1[~c0 & c1 & ~ever].sum()
        out["reactivation_mrr"] = m1[~c0 & c1 & ever].sum()
        returned = out["expansion_mrr"]
    else:
        sums = dict.fromkeys(["new", "expansion", "contraction", "churn", "reactivation"], 0.0)
        churned = np.zeros(len(accounts), dtype=bool)
        joined = np.zeros(len(accounts), dtype=bool)
        moves: list[tuple[int, str, float]] = []
        for day in range(eve + 1, last + 1):
            before, now = matrix[:, day - 1], matrix[:, day]
            ever = customer[:, :day].any(axis=1)
            was, is_ = before > 0, now > 0
            for i in np.flatnonzero(before != now):
                if not was[i]:
                    moves.append((i, "reactivation" if ever[i] else "new", now[i]))
                    joined[i] |= not ever[i]
                elif not is_[i]:
                    moves.append((i, "churn", before[i]))
                else:
                    kind = "expansion" if now[i] > before[i] else "contraction"
                    moves.append((i, kind, abs(now[i] - before[i])))
        # Joined and churned in the period: excluded (unless included).
        skip = joined & ~c1 & (not include)
        for i, kind, amount in moves:
            if not skip[i]:
                sums[kind] += amount
                churned[i] |= kind == "churn"
        out.update({f"{kind}_mrr": value for kind, value in sums.items()})
        out["churned_mrr"] = out.pop("churn_mrr")
        out["churned_accounts"] = churned.sum()
        returned = sums["expansion"] + sums["reactivation"]
    lost = out["churned_mrr"] + out["contraction_mrr"]
    out["nrr"] = (out["starting_mrr"] - lost + returned) / out["starting_mrr"]
    out["grr"] = (out["starting_mrr"] - lost) / out["starting_mrr"]
    out["gross_mrr_churn_rate"] = lost / out["starting_mrr"]
    out["net_mrr_churn_rate"] = (lost - returned) / out["starting_mrr"]
    out["customer_churn_rate"] = out["churned_accounts"] / out["starting_accounts"]
    out["arpa"] = out["ending_mrr"] / c1.sum()
    return out


@pytest.mark.parametrize(
    ("method", "new_and_churned"),
    [("endpoint", "exclude"), ("event", "exclude"), ("event", "include")],
)
def test_monthly_figures_equal_an_independent_pandas_computation(
    project: Project, method: str, new_and_churned: str
) -> None:
    policy = RevenuePolicy(method=method, new_and_churned=new_and_churned)
    result = revenue_by_month(project, policy)
    moved = 0.0
    for row in result.rows:
        expected = pandas_month(
            project.subscriptions,
            row.period_start,
            row.period_end,
            method,
            include=new_and_churned == "include",
        )
        for name, value in expected.items():
            assert getattr(row, name) == pytest.approx(value, rel=1e-9, abs=1e-9), (
                row.period_start,
                name,
            )
        moved += row.churned_mrr + row.expansion_mrr + row.new_mrr
    assert moved > 0  # the company moves


# -- docs ----------------------------------------------------------------------------------------


def revenue_section() -> str:
    text = METRICS.read_text()
    match = re.search(r"^## Revenue\n(.*?)(?=^## |\Z)", text, re.S | re.M)
    assert match, "docs/metrics.md has no ## Revenue section"
    return match.group(1)


def test_every_metric_and_switch_is_documented() -> None:
    section = revenue_section()
    names = [*RevenueRow.model_fields, *ExpansionBySource.model_fields, *RevenuePolicy.model_fields]
    missing = [name for name in names if f"`{name}`" not in section]
    assert not missing, f"docs/metrics.md ## Revenue does not name: {missing}"
    switches: list[type[StrEnum]] = [
        RevenueMethod,
        ChurnAt,
        ReactivationGap,
        NewAndChurned,
        FreeDowngrade,
        PausedPolicy,
        ChurnDenominator,
    ]
    undocumented = [
        f"{enum.__name__}.{member.value}"
        for enum in switches
        for member in enum
        if f"`{member.value}`" not in section
    ]
    assert not undocumented, undocumented
    for option in RevenuePolicy.model_fields:
        assert f"--{option.replace('_', '-')}" in section, option
    for vendor in ("ChartMogul", "ProfitWell", "Stripe", "Recurly"):
        assert vendor in section
