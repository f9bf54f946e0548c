"""Run every benchmark of issue 17 one after another at the sizes bench/README.md reports, each
writing its JSON to ``bench/results/``, then print the summary table (``bench/summary.py``).

    .venv/bin/python bench/run_all.py                  # everything (about an hour on 2 cores)
    .venv/bin/python bench/run_all.py --only startup import
    .venv/bin/python bench/run_all.py --quick          # small sizes, to check that all run

Run it on a quiet machine: the scripts time wall clock. A benchmark that fails (its own check of
closeloop's answer against the hand-written one, or a crash) is reported and the rest still run;
the exit code is 1 if any failed.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
PYTHON = sys.executable

FULL: dict[str, list[str]] = {
    "startup": ["bench_startup.py", "--repeats", "10"],
    "import": [
        "bench_import.py",
        *("--rows", "1000000", "10000000", "--formats", "parquet", "csv"),
        *("--methods", "closeloop", "duckdb", "duckdb_checked", "polars", "pandas"),
    ],
    "tick": ["bench_tick.py", "--accounts", "30000", "--days", "400", "--jobs", "1", "20"],
    "refresh": ["bench_refresh.py", "--repeats", "2"],
    "job_page": [
        *("job_page.py", "--accounts", "30000", "--days", "400"),
        *("--requests", "100", "--cold", "2"),
    ],
    "ingest": ["ingest_load.py", "--seconds", "60", "--clients", "4", "--batch", "100"],
    "scaling": ["bench_scaling.py", "--sizes", "1M,10M"],  # 100M: run it alone (hours)
}

QUICK: dict[str, list[str]] = {
    "startup": ["bench_startup.py", "--repeats", "3"],
    "import": ["bench_import.py", "--rows", "200000"],
    "tick": ["bench_tick.py", "--accounts", "1000", "--days", "120", "--jobs", "1", "3"],
    "refresh": [
        "bench_refresh.py",
        *("--accounts", "5000", "--events", "200000", "--jobs", "3", "--enrollments", "3000"),
        *("--repeats", "1"),
    ],
    "job_page": ["job_page.py", "--accounts", "1000", "--days", "120", "--requests", "10"],
    "ingest": ["ingest_load.py", "--seconds", "5", "--clients", "2", "--batch", "100"],
    "scaling": ["bench_scaling.py", "--sizes", "1M", "--page-requests", "5"],
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", choices=list(FULL), help="run only these")
    parser.add_argument("--quick", action="store_true", help="small sizes (checks, not figures)")
    parser.add_argument("--results", type=Path, default=HERE / "results", help="JSON folder")
    arguments = parser.parse_args()
    plan = QUICK if arguments.quick else FULL
    names = arguments.only or list(plan)
    arguments.results.mkdir(parents=True, exist_ok=True)
    failed: list[str] = []
    for name in names:
        script, *flags = plan[name]
        output = arguments.results / f"{Path(script).stem}.json"
        command = [PYTHON, str(HERE / script), *flags, "--json", str(output)]
        print(f"== {name}: {' '.join(command[1:])}", flush=True)
        started = time.perf_counter()
        code = subprocess.call(command)
        took = time.perf_counter() - started
        print(f"== {name}: exit {code} after {took:.0f} s", flush=True)
        if code != 0:
            failed.append(name)
    subprocess.call([PYTHON, str(HERE / "summary.py"), "--results", str(arguments.results)])
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
