"""The measurement refresh benchmark, tiny: it builds its data, checks that closeloop's arms and
segments equal the hand-written DuckDB, polars and pandas aggregates (it exits 1 otherwise) and
writes its JSON (bench/bench_refresh.py, whose full run is in bench/README.md)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench" / "bench_refresh.py"


@pytest.mark.slow  # about 30 s: data, a project, three `closeloop report` processes
def test_the_refresh_benchmark_agrees_with_its_baselines_at_a_tiny_size(tmp_path: Path) -> None:
    written = tmp_path / "bench_refresh.json"
    arguments = ["--accounts", "600", "--events", "20000", "--jobs", "3", "--enrollments", "1500"]
    finished = subprocess.run(
        [sys.executable, str(BENCH), *arguments, "--repeats", "1", "--json", str(written)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert finished.returncode == 0, finished.stdout + finished.stderr
    document = json.loads(written.read_text())
    assert document["benchmark"] == "bench_refresh"
    assert document["params"]["jobs"] == 3
    cases = {row["case"]: row for row in document["results"]}
    refresh = cases["refresh 3 jobs"]
    assert refresh["closeloop_s"] > 0 and refresh["duckdb_s"] > 0 and refresh["polars_s"] > 0
    assert cases["publish after 1% changed"]["rows"] == 15
    assert cases["publish, first (full copy)"]["rows"] == 1500
