"""Print every benchmark result in ``bench/results/*.json`` as one Markdown table per benchmark.

    .venv/bin/python bench/summary.py [--results bench/results]

Each file follows the convention of bench/README.md (``benchmark``, ``date``, ``machine``,
``params``, ``results``: one object per case). The columns shown are the figures a result has,
among the known ones, in a fixed order; seconds print as ms below 10 s.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent

SECONDS = ("closeloop_s", "duckdb_s", "duckdb_checked_s", "polars_s", "pandas_s", "seconds")
OTHERS = (
    "ratio_vs_best",
    "ratio_vs_duckdb",
    "ratio_vs_python",
    "rows_per_s",
    "events_per_s",
    "p50_ms",
    "p95_ms",
    "peak_rss_mb",
)


def _format(value: Any, column: str) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int | float) and column in SECONDS:
        return f"{value * 1000:,.0f} ms" if value < 10 else f"{value:,.1f} s"
    if isinstance(value, float) and column.startswith("ratio"):
        return f"x{value:.2f}"
    if isinstance(value, float):
        return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def table(document: dict[str, Any]) -> str:
    results: list[dict[str, Any]] = document.get("results", [])
    columns = [name for name in (*SECONDS, *OTHERS) if any(name in row for row in results)]
    machine = document.get("machine", {})
    lines = [
        f"### {document.get('benchmark', '?')} ({document.get('date', '?')}, "
        f"{machine.get('cpus', '?')} CPUs)",
        "",
        "| case | " + " | ".join(columns) + " |",
        "|---" * (len(columns) + 1) + "|",
    ]
    for row in results:
        case = row.get("case", "?")
        cells = [_format(row.get(column), column) for column in columns]
        lines.append(f"| {case} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--results", type=Path, default=HERE / "results")
    arguments = parser.parse_args()
    for path in sorted(arguments.results.glob("*.json")):
        document = json.loads(path.read_text(encoding="utf-8"))
        print(table(document))
        print()


if __name__ == "__main__":
    main()
