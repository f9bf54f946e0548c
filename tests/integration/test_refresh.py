"""The measurement refresh gives every job exactly the report measuring it alone gives."""

from __future__ import annotations

import dataclasses
import json
import math
import random
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
from two_jobs_support import simulate_two_jobs

from closeloop.analysis.job_report import JobReport
from closeloop.analysis.measurement import (
    Measurement,
    MeasureOptions,
    measure_parts,
    measure_units,
)
from closeloop.data.warehouse import Warehouse
from closeloop.services.project import open_workspace
from closeloop.services.refresh import refresh_measurements
from closeloop.services.reports import job_report
from closeloop.services.results import job_report_model
from support import Backends


def test_every_jobs_report_from_the_refresh_equals_its_own_report(tmp_path: Path) -> None:
    simulated = simulate_two_jobs(tmp_path, accounts=300, days=50, arrival_days=30, seed=5)
    with open_workspace(simulated.folder, environ=simulated.environ) as workspace:
        refreshed = refresh_measurements(workspace)
        assert sorted(refreshed) == ["Integration nudge", "Invite a teammate"]
        for name, report in refreshed.items():
            assert isinstance(report, JobReport), report
            alone = job_report(workspace, name)
            assert report.measurement.arms["holdout"].n > 20
            assert (
                _differences(
                    job_report_model(report).model_dump(mode="json"),
                    job_report_model(alone).model_dump(mode="json"),
                )
                == []
            )


def _differences(a: Any, b: Any, path: str = "") -> list[str]:
    """Where two dumped reports differ; floats may differ in the last bits (sums in the
    warehouse are added in whatever order its threads finish)."""
    if isinstance(a, dict) and isinstance(b, dict):
        return [
            d
            for key in sorted(set(a) | set(b))
            for d in _differences(a.get(key), b.get(key), f"{path}/{key}")
        ]
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        return [
            d
            for i, (x, y) in enumerate(zip(a, b, strict=True))
            for d in _differences(x, y, f"{path}[{i}]")
        ]
    if isinstance(a, float) and isinstance(b, float):
        same = math.isclose(a, b, rel_tol=1e-12) or (math.isnan(a) and math.isnan(b))
        return [] if same else [f"{path}: {a!r} != {b!r}"]
    return [] if a == b else [f"{path}: {a!r} != {b!r}"]


def test_parts_measured_together_equal_each_measured_alone(backends: Backends) -> None:
    """measure_parts on two jobs' units (different horizons, analysis times and weights) gives
    each job what measure_units gives it alone, on DuckDB and on PostgreSQL."""
    generator = random.Random(3)
    start = datetime(2024, 1, 1)
    rows = []
    for part in ("A", "B"):
        for index in range(400):
            entered = start + timedelta(hours=generator.randrange(24 * 60))
            goal = (
                entered + timedelta(hours=generator.randrange(24 * 25))
                if generator.random() < (0.45 if index % 5 else 0.3)
                else None
            )
            churned = entered + timedelta(days=generator.randrange(40)) if index % 17 == 0 else None
            rows.append(
                {
                    "_part": part,
                    "unit_id": f"{part}{index}",
                    "arm": "holdout" if index % 5 == 0 else "treatment",
                    "entered_at": entered,
                    "goal_at": goal,
                    "churned_at": churned,
                    "segment": generator.choice(["smb", "mid", "ent", None]),
                    "plan": generator.choice(["free", "pro"]),
                    "prior_events": float(generator.randrange(6)),
                }
            )
    options = {
        "A": MeasureOptions(
            horizon_days=14,
            control="holdout",
            as_of=start + timedelta(days=70),
            weights={"holdout": 0.2, "treatment": 0.8},
            segment_by=("segment",),
            looks_while_running=True,
            adjust_for=("segment", "plan", "prior_events"),
            competing=True,
        ),
        "B": MeasureOptions(
            horizon_days=21,
            control="holdout",
            as_of=start + timedelta(days=50),
            weights={"holdout": 0.25, "treatment": 0.75},
            segment_by=("segment",),
            looks_while_running=True,
            adjust_for=("segment", "plan", "prior_events"),
            competing=True,
            sequential_tuning=500,
        ),
    }
    warehouse = Warehouse.connect(backends.warehouse_url)
    try:
        warehouse.backend.create_table("units_both", pa.Table.from_pylist(rows), overwrite=True)
        units = warehouse.table("units_both")
        together = measure_parts(units, options)
        for part, part_options in options.items():
            alone = measure_units(units.filter(units._part == part).drop("_part"), part_options)
            assert _differences(_dumped(together[part]), _dumped(alone)) == [], part
    finally:
        warehouse.close()


def _dumped(measurement: Measurement) -> Any:
    return json.loads(json.dumps(dataclasses.asdict(measurement), default=str))
