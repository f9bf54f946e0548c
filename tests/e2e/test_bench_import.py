"""The import benchmark, tiny: bench/bench_import.py generates CSV and Parquet events with planted
bad rows and duplicates, loads them in child processes and checks that closeloop and the
hand-written DuckDB insert store the same rows before it reports (its full run is in
bench/README.md)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench" / "bench_import.py"


@pytest.mark.slow  # about 15 s: four child processes that each import closeloop or DuckDB
def test_the_import_benchmark_checks_its_figures(tmp_path: Path) -> None:
    written = tmp_path / "bench_import.json"
    arguments = ["--rows", "3000", "--accounts", "50", "--json", str(written)]
    finished = subprocess.run(
        [sys.executable, str(BENCH), *arguments, "--methods", "closeloop", "duckdb_checked"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert finished.returncode == 0, finished.stdout + finished.stderr
    document = json.loads(written.read_text())
    assert document["benchmark"] == "bench_import"
    assert [result["case"] for result in document["results"]] == [
        "csv 3,000 rows",
        "parquet 3,000 rows",
    ]
    for result in document["results"]:
        # 5 planted rows of each bad kind and 5 duplicates (the least the script plants).
        assert result["closeloop"] == {"imported": 2980, "duplicates": 5, "quarantined": 15}
        assert result["closeloop_s"] > 0 and result["closeloop_peak_rss_mb"] > 0
        assert result["ratio_vs_best"] > 0
