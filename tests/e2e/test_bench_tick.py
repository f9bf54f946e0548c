"""The tick benchmark, tiny: a simulated company, two jobs, the four ticks and the import between
them, each in its own process (bench/bench_tick.py, whose full-size run is in bench/README.md)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench" / "bench_tick.py"
STEPS = ["launch", "same_day", "next_day", "next_day_new_data"]


@pytest.mark.slow  # a simulation and five short processes: 2 min on 2 busy cores
def test_the_tick_benchmark_runs_and_checks_its_launch(tmp_path: Path) -> None:
    written = tmp_path / "bench_tick.json"
    arguments = ["--accounts", "120", "--days", "45", "--jobs", "2", "--json", str(written)]
    finished = subprocess.run(
        [sys.executable, str(BENCH), *arguments],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    # Exit 1 would mean the launch enrolled other accounts than the hand-written audience query.
    assert finished.returncode == 0, finished.stdout + finished.stderr
    document = json.loads(written.read_text())
    assert document["benchmark"] == "bench_tick"
    assert document["params"] == {"accounts": 120, "days": 45, "seed": 7}
    rows = document["results"]
    assert [row["step"] for row in rows] == STEPS
    launch, *_, new_data = rows
    assert launch["entered"] > 0 and launch["launch_checks"] >= 1 and "duckdb_s" in launch
    assert new_data["events"] > launch["events"]  # the held-back day was imported
    assert [row["enrollments"] for row in rows] == sorted(row["enrollments"] for row in rows)
    assert all(row["closeloop_s"] > 0 and row["peak_rss_mb"] > 0 for row in rows)
    # Every tick after the launch was also timed warm, from the same state, with the same result.
    assert all(row["warm_s"] > 0 for row in rows[1:]) and "warm_s" not in launch
