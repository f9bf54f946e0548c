"""Benchmark: importing events from CSV and Parquet (closeloop vs DuckDB's own insert, polars,
pandas), with rows/s and peak memory.

Run with ``.venv/bin/python bench/bench_import.py [--rows 1000000 10000000] [--formats csv
parquet] [--accounts 30000] [--repeats 1] [--json PATH]``.

For each size it writes one events file per format with DuckDB ``COPY (SELECT …) TO`` — event
ids, accounts among ``--accounts``, people, four event names, timestamps over 2024, a value on one
row in ten, properties on one in twenty — and plants bad rows (a missing name, a timestamp that is
not one, an unknown account: 1 row in 100,000 each, at least 5) and exact duplicates (1 in
100,000, at least 5). Each way of loading runs in its own child process on a fresh copy of a
DuckDB warehouse that holds the accounts, and reports its wall time (the load alone, not the
interpreter's start) and its peak RSS (``VmHWM``):

- ``closeloop``: ``closeloop.data.importer.import_file`` (every check, the quarantine,
  de-duplication); for Parquet this is the fast path, DuckDB reading the file itself and
  checking it set-based in the warehouse (``closeloop.data.import_sql``);
- ``closeloop_batches``: the same with ``ImportOptions(path="batches")``, the batch path every
  other warehouse and format takes (Arrow batches checked in a staging DuckDB), for comparison;
- ``duckdb``: DuckDB's own ``INSERT INTO events SELECT … FROM read_parquet/read_csv`` into a
  same-shaped table (no checks: it stores the planted bad rows and duplicates too);
- ``duckdb_checked``: the same insert written by hand with closeloop's outcome (required values,
  known accounts, valid timestamps, the first row of each id), so its stored rows equal
  closeloop's;
- ``polars`` and ``pandas``: the file read into a frame, then inserted into DuckDB (no checks).

Before any figure is printed the stored rows are compared: closeloop and ``duckdb_checked`` must
store the same event ids, and every other way the file's rows; closeloop must quarantine exactly
the planted bad rows and count the planted duplicates. A mismatch exits with code 1. Nothing is
asserted on time. ``ratio_vs_duckdb`` is closeloop's time over DuckDB's own insert (the goal: at
most 2 for Parquet); ``ratio_vs_best`` over the fastest other way. The JSON (``--json``, default
``bench/results/bench_import.json``) follows the convention of bench/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
METHODS = ("closeloop", "closeloop_batches", "duckdb", "duckdb_checked", "polars", "pandas")
CLOSELOOP = ("closeloop", "closeloop_batches")
COLUMNS = "event_id, account_id, person_id, name, timestamp, value, properties"
PLANT_EVERY = 100_000  # one row in this many of each planted kind
PLANT_AT_LEAST = 5


@dataclass(frozen=True)
class Planted:
    """What a generated file holds beyond its good rows."""

    good: int
    bad: int  # each of three kinds
    duplicates: int

    @property
    def rows(self) -> int:
        return self.good + 3 * self.bad + self.duplicates


def planted(rows: int) -> Planted:
    bad = max(PLANT_AT_LEAST, rows // PLANT_EVERY)
    duplicates = max(PLANT_AT_LEAST, rows // PLANT_EVERY)
    return Planted(rows - 3 * bad - duplicates, bad, duplicates)


def events_query(rows: int, accounts: int, fmt: str) -> str:
    """The SELECT of a generated events file (see the module docstring), in file order."""
    plan = planted(rows)
    # Text in CSV; in Parquet a typed column cannot hold text, so a bad time is a placeholder.
    time = "CAST({} AS VARCHAR)" if fmt == "csv" else "{}"
    bad_time = "'yesterday'" if fmt == "csv" else "TIMESTAMP '0001-01-01'"
    step = plan.good / (3 * plan.bad + plan.duplicates + 1)  # planted rows spread out
    good_time = time.format(
        "TIMESTAMP '2024-01-01' + to_microseconds(CAST(hash(i * 3) % 31536000000000 AS BIGINT))"
    )
    return (
        "WITH good AS (SELECT CAST(i AS DOUBLE) AS position, 'e' || i AS event_id, "
        f"'a' || (hash(i) % {accounts}) AS account_id, "
        f"'p' || (hash(i * 7) % {accounts * 5}) AS person_id, "
        "['login', 'view_report', 'export', 'invite'][1 + i % 4] AS name, "
        f"{good_time} AS timestamp, "
        "CASE WHEN i % 10 = 0 THEN CAST(i % 100 AS DOUBLE) END AS value, "
        'CASE WHEN i % 20 = 0 THEN \'{"plan": "pro"}\' END AS properties '
        f"FROM range(1, {plan.good + 1}) AS t(i)), "
        f"bad AS (SELECT j * {step} + 0.5 AS position, 'bad' || j AS event_id, "
        f"CASE WHEN j % 3 = 2 THEN 'nobody' ELSE 'a' || (j % {accounts}) END AS account_id, "
        "CAST(NULL AS VARCHAR) AS person_id, "
        "CASE WHEN j % 3 = 0 THEN NULL ELSE 'login' END AS name, "
        f"CASE WHEN j % 3 = 1 THEN {bad_time} ELSE {time.format(chr(39) + '2024-06-01' + chr(39))} "
        "END AS timestamp, CAST(NULL AS DOUBLE) AS value, CAST(NULL AS VARCHAR) AS properties "
        f"FROM range(1, {3 * plan.bad + 1}) AS t(j)), "
        f"copies AS (SELECT * REPLACE (({3 * plan.bad} + position) * {step} + 0.25 AS position) "
        f"FROM good WHERE position <= {plan.duplicates}) "
        f"SELECT {COLUMNS} FROM (SELECT * FROM good UNION ALL BY NAME SELECT * FROM bad "
        "UNION ALL BY NAME SELECT * FROM copies) ORDER BY position"
    )


def write_files(folder: Path, rows: int, accounts: int, formats: list[str]) -> dict[str, Path]:
    """The events file of each format, written by DuckDB (see the module docstring)."""
    import duckdb

    files = {}
    con = duckdb.connect()
    try:
        for fmt in formats:
            path = folder / f"events_{rows}.{fmt}"
            options = "FORMAT parquet" if fmt == "parquet" else "FORMAT csv, HEADER"
            con.execute(f"COPY ({events_query(rows, accounts, fmt)}) TO '{path}' ({options})")
            files[fmt] = path
    finally:
        con.close()
    return files


def make_warehouse(path: Path, accounts: int) -> None:
    """A DuckDB warehouse with the canonical tables and ``accounts`` accounts."""
    from closeloop.data.warehouse import Warehouse

    with Warehouse.connect(f"duckdb:///{path}") as warehouse:
        warehouse.ensure_tables()
        created = datetime(2023, 1, 1)
        warehouse.append(
            "accounts",
            warehouse.arrow_for(
                "accounts",
                {
                    "account_id": [f"a{n}" for n in range(accounts)],
                    "created_at": [created] * accounts,
                },
            ),
        )


# -- the child processes --------------------------------------------------------------------------


def peak_rss_mb() -> float:
    """This process's peak resident memory (VmHWM), in MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _read_sql(fmt: str, path: Path) -> str:
    if fmt == "parquet":
        return f"read_parquet('{path}')"
    return (
        f"read_csv('{path}', header = true, columns = {{'event_id': 'VARCHAR', "
        "'account_id': 'VARCHAR', 'person_id': 'VARCHAR', 'name': 'VARCHAR', "
        "'timestamp': 'VARCHAR', 'value': 'DOUBLE', 'properties': 'VARCHAR'})"
    )


def child(method: str, fmt: str, file: Path, warehouse: Path) -> dict[str, Any]:
    """Load ``file`` into ``warehouse`` one way; the load's seconds and the process's peak RSS."""
    import duckdb

    details: dict[str, Any] = {}
    if method in CLOSELOOP:
        from closeloop.data.importer import ImportOptions, import_file
        from closeloop.data.warehouse import Warehouse

        options = ImportOptions(path="batches" if method == "closeloop_batches" else "auto")
        with Warehouse.connect(f"duckdb:///{warehouse}") as connected:
            started = time.perf_counter()
            result = import_file(connected, "events", file, options=options)
            seconds = time.perf_counter() - started
        details = {
            "rows_read": result.rows_read,
            "imported": result.imported,
            "duplicates": result.duplicates,
            "quarantined": result.quarantined,
        }
        return {"seconds": seconds, "peak_rss_mb": peak_rss_mb(), **details}
    # Libraries are imported before the clock starts, as closeloop's are.
    if method == "polars":
        import polars as pl
    elif method == "pandas":
        import pandas as pd
    con = duckdb.connect(str(warehouse))
    con.execute("SET TimeZone = 'UTC'")
    started = time.perf_counter()
    if method == "duckdb":
        con.execute(
            f"INSERT INTO events SELECT {COLUMNS} FROM {_read_sql(fmt, file)}"
            if fmt == "parquet"
            else f"INSERT INTO events SELECT * REPLACE (TRY_CAST(timestamp AS TIMESTAMP) AS "
            f"timestamp) FROM {_read_sql(fmt, file)}"
        )
    elif method == "duckdb_checked":
        # Required values, known accounts, times in range, the first row of each id.
        con.execute(
            f"INSERT INTO events SELECT {COLUMNS} FROM (SELECT * REPLACE "
            "(TRY_CAST(timestamp AS TIMESTAMP) AS timestamp) FROM "
            f"{_read_sql(fmt, file)}) "
            "WHERE event_id IS NOT NULL AND name IS NOT NULL AND timestamp IS NOT NULL "
            "AND year(timestamp) BETWEEN 1900 AND 2199 "
            "AND account_id IN (SELECT account_id FROM accounts) "
            "QUALIFY row_number() OVER (PARTITION BY event_id) = 1"
        )
    elif method in ("polars", "pandas"):
        if method == "polars":
            frame = (
                pl.read_parquet(file)
                if fmt == "parquet"
                else pl.read_csv(file, schema_overrides={"timestamp": pl.Utf8})
            )
            rows = frame.to_arrow()
        else:
            rows = pd.read_parquet(file) if fmt == "parquet" else pd.read_csv(file, dtype=str)
        con.register("_frame", rows)
        con.execute(
            "INSERT INTO events SELECT event_id, account_id, person_id, name, "
            "TRY_CAST(timestamp AS TIMESTAMP), TRY_CAST(value AS DOUBLE), properties FROM _frame"
        )
    else:
        raise SystemExit(f"unknown method {method}")
    seconds = time.perf_counter() - started
    con.close()
    return {"seconds": seconds, "peak_rss_mb": peak_rss_mb()}


def run_child(method: str, fmt: str, file: Path, template: Path, folder: Path) -> dict[str, Any]:
    """One load in a child process, on a fresh copy of the warehouse; what it stored."""
    import duckdb

    warehouse = folder / f"{method}_{fmt}.duckdb"
    warehouse.unlink(missing_ok=True)
    shutil.copyfile(template, warehouse)
    finished = subprocess.run(
        [sys.executable, __file__, "--child", method, fmt, str(file), str(warehouse)],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "PYTHONPATH": str(HERE.parent)},
    )
    if finished.returncode != 0:
        raise SystemExit(f"{method} {fmt} failed:\n{finished.stdout}{finished.stderr}")
    figures: dict[str, Any] = json.loads(finished.stdout.strip().splitlines()[-1])
    con = duckdb.connect(str(warehouse), read_only=True)
    try:
        (figures["stored"],) = con.execute("SELECT count(*) FROM events").fetchone() or (0,)
        (figures["ids_hash"],) = con.execute(
            "SELECT bit_xor(hash(event_id)) FROM (SELECT DISTINCT event_id FROM events "
            "WHERE event_id NOT LIKE 'bad%')"
        ).fetchone() or (0,)
        (figures["quarantine"],) = con.execute(
            "SELECT count(*) FROM quarantine WHERE table_name = 'events'"
        ).fetchone() or (0,)
    finally:
        con.close()
    warehouse.unlink()
    return figures


def check(case: str, plan: Planted, runs: dict[str, dict[str, Any]]) -> list[str]:
    """Every way stored what it should (see the module docstring); the problems found."""
    problems = []
    for method, figures in runs.items():
        expected = plan.good if method in (*CLOSELOOP, "duckdb_checked") else plan.rows
        if figures["stored"] != expected:
            problems.append(f"{case} {method}: stored {figures['stored']:,}, expected {expected:,}")
    for method in (m for m in CLOSELOOP if m in runs):
        figures = runs[method]
        wanted = (plan.rows, plan.good, plan.duplicates, 3 * plan.bad, 3 * plan.bad)
        found = (
            figures["rows_read"],
            figures["imported"],
            figures["duplicates"],
            figures["quarantined"],
            figures["quarantine"],
        )
        if found != wanted:
            problems.append(
                f"{case} {method}: read, imported, duplicates, quarantined, quarantine rows "
                f"{found}, expected {wanted}"
            )
    hashes = {runs[m]["ids_hash"] for m in runs}
    if len(hashes) != 1:
        problems.append(f"{case}: the ways stored different event ids")
    return problems


def machine() -> dict[str, Any]:
    return {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "load": [round(value, 2) for value in os.getloadavg()],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[1_000_000, 10_000_000])
    parser.add_argument("--formats", nargs="+", default=["csv", "parquet"])
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument("--accounts", type=int, default=30_000)
    parser.add_argument("--repeats", type=int, default=1, help="runs of each load (best kept)")
    parser.add_argument("--json", type=Path, default=HERE / "results" / "bench_import.json")
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.child:
        method, fmt, file, warehouse = options.child
        print(json.dumps(child(method, fmt, Path(file), Path(warehouse))))
        return
    if "closeloop" not in options.methods:
        parser.error("--methods must include closeloop")
    results: list[dict[str, Any]] = []
    problems: list[str] = []
    with tempfile.TemporaryDirectory(prefix="closeloop-bench-import-") as name:
        folder = Path(name)
        template = folder / "template.duckdb"
        make_warehouse(template, options.accounts)
        for rows in options.rows:
            plan = planted(rows)
            files = write_files(folder, rows, options.accounts, options.formats)
            for fmt in options.formats:
                case = f"{fmt} {rows:,} rows"
                runs: dict[str, dict[str, Any]] = {}
                for method in options.methods:
                    tries = [
                        run_child(method, fmt, files[fmt], template, folder)
                        for _ in range(max(1, options.repeats))
                    ]
                    best = min(tries, key=lambda figures: figures["seconds"])
                    best["peak_rss_mb"] = max(figures["peak_rss_mb"] for figures in tries)
                    runs[method] = best
                problems += check(case, plan, runs)
                results.append(_result(fmt, rows, plan, runs, files[fmt]))
                print(_line(results[-1]), flush=True)
                files[fmt].unlink()
    if problems:
        print("MISMATCH:\n" + "\n".join(problems))
        sys.exit(1)
    document = {
        "benchmark": "bench_import",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "params": {
            "rows": options.rows,
            "formats": options.formats,
            "methods": options.methods,
            "accounts": options.accounts,
            "repeats": options.repeats,
            "planted_per_kind": "1 in 100,000 rows, at least 5 (3 bad kinds, exact duplicates)",
        },
        "results": results,
    }
    options.json.parent.mkdir(parents=True, exist_ok=True)
    options.json.write_text(json.dumps(document, indent=2) + "\n")
    print(f"all ways agree; figures written to {options.json}")


def _result(
    fmt: str, rows: int, plan: Planted, runs: dict[str, dict[str, Any]], file: Path
) -> dict[str, Any]:
    result: dict[str, Any] = {
        "case": f"{fmt} {rows:,} rows",
        "format": fmt,
        "rows": plan.rows,
        "file_mb": round(file.stat().st_size / 2**20, 1),
    }
    for method, figures in runs.items():
        result[f"{method}_s"] = round(figures["seconds"], 3)
        result[f"{method}_rows_per_s"] = round(plan.rows / figures["seconds"])
        result[f"{method}_peak_rss_mb"] = round(figures["peak_rss_mb"])
    closeloop = runs["closeloop"]["seconds"]
    others = [figures["seconds"] for method, figures in runs.items() if method not in CLOSELOOP]
    if "duckdb" in runs:
        result["ratio_vs_duckdb"] = round(closeloop / runs["duckdb"]["seconds"], 2)
    if others:
        result["ratio_vs_best"] = round(closeloop / min(others), 2)
    result["peak_rss_mb"] = result["closeloop_peak_rss_mb"]
    result["closeloop"] = {
        key: runs["closeloop"][key] for key in ("imported", "duplicates", "quarantined")
    }
    if "closeloop_batches" in runs:
        result["ratio_batches_vs_duckdb"] = (
            round(runs["closeloop_batches"]["seconds"] / runs["duckdb"]["seconds"], 2)
            if "duckdb" in runs
            else None
        )
    return result


def _line(result: dict[str, Any]) -> str:
    parts = [f"{result['case']:>22}:"]
    for method in METHODS:
        if f"{method}_s" in result:
            parts.append(
                f"{method} {result[f'{method}_s']:.2f} s "
                f"({result[f'{method}_rows_per_s'] / 1e6:.2f}M rows/s, "
                f"{result[f'{method}_peak_rss_mb']} MB)"
            )
    if "ratio_vs_duckdb" in result:
        parts.append(f"closeloop/duckdb {result['ratio_vs_duckdb']}x")
    return " | ".join(parts)


if __name__ == "__main__":
    main()
