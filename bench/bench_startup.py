"""Benchmark: how long a ``closeloop`` command takes to start, and its peak memory.

Run with ``.venv/bin/python bench/bench_startup.py [--repeats 10] [--json PATH]``.

Every command first imports ``closeloop.cli.main``; what that import loads, every command pays.
This measures, each as a fresh process, the best wall time of ``--repeats`` runs, the least CPU
time (user + system) and the peak RSS (the child's own ``ru_maxrss``, from ``os.wait4``) of:

- ``python -c pass`` (the interpreter alone: the floor) and ``python -c "import closeloop"``;
- ``python -c "import closeloop.cli.main"`` (the console script's module, nothing run);
- ``closeloop --help`` (goal: at most 0.3 s);
- ``closeloop validate``, ``closeloop jobs list`` and ``closeloop users list`` on a project made
  by ``closeloop init`` in a temporary folder (goal: at most 0.6 s each).

Python's bytecode is kept in one folder of the system's temporary folder (``PYTHONPYCACHEPREFIX``;
a ``PYTHONDONTWRITEBYTECODE`` of the caller's is dropped) and written by the checks below, so every
timed run reads compiled modules, as an installed package does: a source tree without
``__pycache__`` under ``PYTHONDONTWRITEBYTECODE=1`` would otherwise compile closeloop's modules in
every run (0.1–0.3 s per command on the 2-core sandbox), which is not start-up a person sees.

Before any figure is taken, each command must succeed and say what it should (the help lists
every command group, validate finds the project valid, jobs list shows the example job, users
list says there is no user yet); otherwise the script exits with code 1. Nothing is asserted on
time. ``ratio_vs_python`` is a command's time over the bare interpreter's. The JSON (``--json``,
default ``bench/results/bench_startup.json``) follows the convention of bench/README.md, plus,
for the record, each case's ten slowest imports by cumulative time (``-X importtime``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from timing import best_of  # noqa: E402

PYTHON = sys.executable
HELP_GOAL_S = 0.3
COMMAND_GOAL_S = 0.6


@dataclass(frozen=True)
class Case:
    name: str
    argv: list[str]
    expect: str  # text the output must contain
    goal_s: float | None = None
    in_project: bool = False


def closeloop_argv() -> list[str]:
    """The console script next to this interpreter, as a person runs it; else the module."""
    script = Path(PYTHON).parent / "closeloop"
    return [str(script)] if script.is_file() else [PYTHON, "-m", "closeloop.cli.main"]


def cases() -> list[Case]:
    cli = closeloop_argv()
    return [
        Case("python -c pass", [PYTHON, "-c", "pass"], ""),
        Case("import closeloop", [PYTHON, "-c", "import closeloop"], ""),
        Case("import closeloop.cli.main", [PYTHON, "-c", "import closeloop.cli.main"], ""),
        Case("closeloop --help", [*cli, "--help"], "validate", HELP_GOAL_S),
        Case("closeloop validate", [*cli, "validate"], "valid", COMMAND_GOAL_S, True),
        Case("closeloop jobs list", [*cli, "jobs", "list"], "job", COMMAND_GOAL_S, True),
        Case("closeloop users list", [*cli, "users", "list"], "no users", COMMAND_GOAL_S, True),
    ]


BYTECODE = Path(tempfile.gettempdir()) / "closeloop-bench-startup-bytecode"
"""Where the runs keep compiled modules (see the docstring); written by the checks."""


def environment() -> dict[str, str]:
    # A fixed width (help and tables wrap alike), no project from the caller's environment, and
    # compiled modules kept between runs.
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("CLOSELOOP_") and key != "PYTHONDONTWRITEBYTECODE"
    }
    return {**env, "COLUMNS": "120", "NO_COLOR": "1", "PYTHONPYCACHEPREFIX": str(BYTECODE)}


def run_once(argv: list[str], cwd: Path) -> tuple[float, float, float, int, str]:
    """One run: wall seconds, the child's CPU seconds (user + system) and peak RSS in MB, its
    exit code and its output."""
    started = time.perf_counter()
    with subprocess.Popen(
        argv,
        cwd=cwd,
        env=environment(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    ) as child:
        assert child.stdout is not None
        output = child.stdout.read()
        _, status, usage = os.wait4(child.pid, 0)
        child.returncode = os.waitstatus_to_exitcode(status)
    seconds = time.perf_counter() - started
    cpu = usage.ru_utime + usage.ru_stime
    return seconds, cpu, usage.ru_maxrss / 1024, child.returncode, output


def check(case: Case, cwd: Path) -> None:
    """The command succeeds and says what it should; else exit 1 before any timing."""
    _, _, _, code, output = run_once(case.argv, cwd)
    if code != 0 or case.expect.lower() not in output.lower():
        print(f"{case.name}: exit code {code}, expected {case.expect!r} in:\n{output}")
        sys.exit(1)


def importtime_top(case: Case, cwd: Path, count: int = 10) -> list[dict[str, Any]]:
    """The ``count`` imports with the largest cumulative time in one run of the case."""
    argv = case.argv
    if argv[0] != PYTHON:  # the console script: run its module under -X importtime instead
        argv = [PYTHON, "-m", "closeloop.cli.main", *argv[1:]]
    argv = [argv[0], "-X", "importtime", *argv[1:]]
    completed = subprocess.run(argv, cwd=cwd, env=environment(), capture_output=True, text=True)
    rows = []
    for line in completed.stderr.splitlines():
        parts = line.removeprefix("import time:").split("|")
        if len(parts) == 3 and parts[1].strip().isdigit():
            rows.append((int(parts[1]), parts[2].strip()))
    rows.sort(reverse=True)
    return [{"module": name, "cumulative_ms": round(us / 1000, 1)} for us, name in rows[:count]]


def machine() -> dict[str, Any]:
    return {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "load": [round(value, 2) for value in os.getloadavg()],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=10, help="runs of each case (best kept)")
    parser.add_argument("--json", type=Path, default=HERE / "results" / "bench_startup.json")
    options = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="closeloop-startup-") as temporary:
        folder = Path(temporary)
        project = folder / "project"
        subprocess.run(
            [*closeloop_argv(), "init", str(project)],
            env=environment(),
            check=True,
            capture_output=True,
        )
        chosen = cases()
        for case in chosen:
            check(case, project if case.in_project else folder)

        results: list[dict[str, Any]] = []
        floor = None
        for case in chosen:
            cwd = project if case.in_project else folder
            peak, cpu = 0.0, float("inf")

            def run(case: Case = case, cwd: Path = cwd) -> None:
                nonlocal peak, cpu
                _, used, rss, _, _ = run_once(case.argv, cwd)
                peak, cpu = max(peak, rss), min(cpu, used)

            seconds, _ = best_of(options.repeats, run)
            floor = seconds if floor is None else floor
            row: dict[str, Any] = {
                "case": case.name,
                "closeloop_s" if case.name != "python -c pass" else "python_s": round(seconds, 4),
                "ratio_vs_python": round(seconds / floor, 1),
                # The least CPU (user + system) of the runs: on a shared machine, closer to the
                # quiet wall time than the wall time is.
                "cpu_s": round(cpu, 4),
                "peak_rss_mb": round(peak, 1),
            }
            if case.goal_s is not None:
                row["goal_s"] = case.goal_s
                row["meets_goal"] = seconds <= case.goal_s
            row["importtime_top10"] = importtime_top(case, cwd)
            results.append(row)

    print(f"{'case':<28} {'best s':>8} {'× python':>9} {'cpu s':>7} {'peak MB':>8}  goal")
    for row in results:
        shown = float(row.get("closeloop_s", row.get("python_s", 0.0)))
        goal = ""
        if "goal_s" in row:
            goal = f"≤ {row['goal_s']} s: " + ("met" if row["meets_goal"] else "NOT met")
        print(
            f"{row['case']:<28} {shown:>8.3f} {row['ratio_vs_python']:>9.1f} "
            f"{row['cpu_s']:>7.3f} {row['peak_rss_mb']:>8.1f}  {goal}"
        )
    document = {
        "benchmark": "bench_startup",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "params": {"repeats": options.repeats, "command": closeloop_argv()},
        "results": results,
    }
    options.json.parent.mkdir(parents=True, exist_ok=True)
    options.json.write_text(json.dumps(document, indent=2) + "\n")
    print(f"wrote {options.json}")


if __name__ == "__main__":
    main()
