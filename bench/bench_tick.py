"""Benchmark: ticks of 1 and 20 live jobs on a simulated company (`closeloop tick`).

Run with ``.venv/bin/python bench/bench_tick.py [--accounts 30000 --days 400] [--jobs 1 20]``
(the issue's size, ~14M events; ``--accounts 3000`` gives ~1.4M events for development). For each
job count it simulates a company into a fresh project (DuckDB warehouse, SQLite state store),
holds the last simulated day's events back in a Parquet file, writes N jobs with varied audiences,
goals and actions (email, a reminder after a wait, file deliveries, completion emails) and times,
each in a child process so that its peak RSS is its own:

- ``launch``: the first tick at the start of the last day, launching every job (with the launch
  power checks `closeloop tick --launch` prints);
- ``same_day``: a second tick one hour later (nothing new);
- ``next_day``: the tick one day later, before the day's events arrive;
- ``next_day_new_data``: after importing the held-back day (``closeloop import events``), the tick
  the day after (so the tick reads one more day of events).

Before timing, the launch's enrollments of the first job are checked against a hand-written
DuckDB query of its audience (exit 1 if they differ); ``duckdb_s`` is that query's time. Each
tick runs once (a tick cannot be re-run: the second run is a no-op), so figures carry the noise
of one run. JSON: ``bench/results/bench_tick.json`` (``--json``): per job count and step the
events, jobs, enrollments, outbox rows, seconds and peak RSS.

Notes for reading the figures: every tick first refreshes the per-unit event totals
(``closeloop.data.rollups``; the launch builds them, later ticks fold in only the new days), so
counts, firsts and lasts of an event without a window read the totals plus the events since;
windowed counts read the widest window's events once for all of a frame's aggregates; goals of
the form ``count(event X) >= 1`` are dated by the first X (a per-unit minimum) and ``>= k`` for
k > 1 rank all of X's events. Every job's eligible units and goal times are asked in one query
per target (``closeloop.engine.tick_reads``). The launch adds the launch checks' power estimates
(every job's audience at five weekly points and at T-horizon: one query per distinct time).
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
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_JSON = ROOT / "bench" / "results" / "bench_tick.json"

# (audience, goal, duration_days): the shapes jobs are written in (docs/jobs.md, the demo).
JOB_SHAPES: list[tuple[str, str, int]] = [
    (
        'count(event "login" in last {w} days) < 3 and count(event "login") >= 5',
        'count(event "login" in last 7 days) >= 3',
        21,
    ),
    (
        'signup_date within last {w} days and count(event "integration_connected") = 0',
        'count(event "integration_connected") >= 1',
        30,
    ),
    ("logins_30d < {w} and seats >= 2", 'count(event "report_viewed" in last 14 days) >= 1', 28),
    ("days_since_last_login > {w}", 'count(event "login" in last 7 days) >= 1', 14),
    (
        'segment = "enterprise" and count(event "report_viewed" in last {w} days) = 0',
        'count(event "report_viewed") >= 3',
        30,
    ),
    (
        'count(event "support_ticket_created" in last {w} days) >= 2',
        'count(event "feature_used" in last 7 days) >= 5',
        14,
    ),
    (
        'first(event "login") within last {w} days',
        'count(event "teammate_invited") >= 1',
        30,
    ),
    (
        'count(event "feature_used" in last {w} days) = 0 and count(event "login") >= 1',
        'count(event "feature_used") >= 1',
        21,
    ),
    (
        'in stage "Onboarding" and count(event "first_project_created") = 0',
        'count(event "first_project_created") >= 1',
        30,
    ),
    (
        'last(event "report_viewed") more than {w} days ago',
        'count(event "report_viewed" in last 7 days) >= 1',
        30,
    ),
]
WINDOWS = (14, 30, 7, 21, 10, 60)


def job_yaml(count: int) -> str:
    """``count`` jobs cycling through :data:`JOB_SHAPES` with varied windows and actions."""
    lines = ["jobs:"]
    for index in range(count):
        audience, goal, duration = JOB_SHAPES[index % len(JOB_SHAPES)]
        window = WINDOWS[index % len(WINDOWS)]
        lines += [
            f"  - name: Bench job {index + 1:02d}",
            "    audience: |",
            f"      {audience.format(w=window)}",
            f"    goal: {json.dumps(goal)}",
            f"    duration_days: {duration}",
            "    holdout: 0.2",
            *(["    re_entry: {after_days: 60}"] if index % 3 == 2 else []),
            "    steps:",
            "      - send: email",
            f'        subject: "{{{{ account.name }}}}: a nudge from job {index + 1}"',
            "        template: integration_nudge",
            "      - wait_days: 3",
            "      - send: email",
            f'        subject: "A reminder for {{{{ account.name }}}} ({index + 1})"',
            "        template: integration_nudge",
            "      - send: file",
            "        folder: deliveries",
            '        data: {plan: "{{ account.plan }}"}',
            "    on_completion:",
            "      - send: email",
            '        subject: "Nice work, {{ account.name }}"',
            "        template: integration_nudge",
        ]
    return "\n".join(lines) + "\n"


# -- building a project ---------------------------------------------------------------------


def build_project(folder: Path, accounts: int, days: int, seed: int, jobs: int) -> dict[str, Any]:
    """Simulate into ``folder``; hold the last day's events back; write ``jobs`` jobs."""
    import duckdb

    from closeloop.services.project import init_project, open_workspace
    from closeloop.services.simulation import simulate_into, simulation_config

    init_project(folder)
    (folder / "jobs.yaml").write_text("jobs: []\n", encoding="utf-8")
    with open_workspace(folder) as workspace:
        config = simulation_config("default", accounts=accounts, days=days, seed=seed)
        simulate_into(workspace, config)
    warehouse = folder / "warehouse.duckdb"
    connection = duckdb.connect(str(warehouse))
    newest = connection.sql("SELECT max(timestamp) FROM events").fetchone()
    assert newest is not None and newest[0] is not None
    last_day = datetime.combine(newest[0].date(), datetime.min.time())
    held = folder / "held_back_events.parquet"
    connection.execute(
        f"COPY (SELECT * FROM events WHERE timestamp >= TIMESTAMP '{last_day}' ORDER BY timestamp)"
        f" TO '{held}' (FORMAT parquet)"
    )
    connection.execute(f"DELETE FROM events WHERE timestamp >= TIMESTAMP '{last_day}'")
    connection.execute("CHECKPOINT")
    total = connection.sql("SELECT count(*) FROM events").fetchone()
    held_rows = connection.sql(f"SELECT count(*) FROM '{held}'").fetchone()
    connection.close()
    (folder / "jobs.yaml").write_text(job_yaml(jobs), encoding="utf-8")
    return {
        "events": int(total[0]) if total else 0,
        "held_back_events": int(held_rows[0]) if held_rows else 0,
        "launch_at": last_day,
    }


def first_job_audience_baseline(folder: Path, at: datetime) -> tuple[float, set[str]]:
    """Job 1's audience at ``at`` (lapsing users: fewer than 3 logins in the window, at least 5
    ever) by a hand-written DuckDB query, and its time."""
    import duckdb

    window = WINDOWS[0]
    sql = f"""
        SELECT a.account_id FROM accounts a
        LEFT JOIN (
            SELECT account_id, count(*) AS logins,
                   count(*) FILTER (WHERE timestamp > TIMESTAMP '{at}' - INTERVAL {window} DAY)
                       AS recent
            FROM events WHERE name = 'login' AND timestamp <= TIMESTAMP '{at}'
            GROUP BY account_id
        ) e USING (account_id)
        WHERE a.created_at <= TIMESTAMP '{at}'
          AND coalesce(e.recent, 0) < 3 AND coalesce(e.logins, 0) >= 5
    """
    connection = duckdb.connect(str(folder / "warehouse.duckdb"), read_only=True)
    try:
        started = time.perf_counter()
        rows = connection.sql(sql).fetchall()
        seconds = time.perf_counter() - started
    finally:
        connection.close()
    return seconds, {row[0] for row in rows}


# -- one measured step, in a child process --------------------------------------------------


def child_step(folder: Path, step: str, at: datetime, warm: bool = False) -> dict[str, Any]:
    """Run one step in this process; its seconds (the step alone) and this process's peak RSS.

    ``warm``: first a dry run of the first job at ``at`` (``closeloop dry-run``: it reads and
    renders, records nothing), so the tick runs as in the daemon (``closeloop run``), whose
    modules are imported and whose warehouse has been read before.
    """
    from closeloop.services import engine_runs, operations
    from closeloop.services.data import import_table
    from closeloop.services.project import open_workspace

    with open_workspace(folder) as workspace:
        if warm:
            first = sorted(workspace.project.jobs)[0]
            engine_runs.dry_run(workspace, first, at)
        started = time.perf_counter()
        if step == "import":
            result = import_table(workspace, "events", folder / "held_back_events.parquet")
            detail: dict[str, Any] = {"imported": result.imported}
        else:
            names = list(workspace.project.jobs)
            checks = operations.launch_checks(workspace, names, at) if step == "launch" else []
            results = engine_runs.tick(workspace, at, launch=step == "launch")
            detail = {
                "entered": sum(r.entered for r in results),
                "completed": sum(r.completed for r in results),
                "exited": sum(r.exited for r in results),
                "outbox_written": sum(sum(r.outbox.values()) for r in results),
                "launch_checks": len(checks),
            }
        seconds = time.perf_counter() - started
    return {"seconds": seconds, "peak_rss_mb": _peak_rss_mb(), **detail}


def _peak_rss_mb() -> float:
    with Path("/proc/self/status").open(encoding="ascii") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def run_child(folder: Path, step: str, at: datetime, warm: bool = False) -> dict[str, Any]:
    command = [sys.executable, __file__, "--child", step, str(folder), at.isoformat()]
    command += ["--warm"] if warm else []
    done = subprocess.run(command, capture_output=True, text=True, check=False, cwd=ROOT)
    if done.returncode != 0:
        sys.stderr.write(done.stdout + done.stderr)
        raise SystemExit(f"step {step} failed (exit {done.returncode})")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


STATE_FILES = ("state.sqlite", "warehouse.duckdb")


def _save_state(folder: Path) -> Path:
    saved = folder.parent / f"{folder.name}_saved"
    saved.mkdir(exist_ok=True)
    for name in STATE_FILES:
        shutil.copy2(folder / name, saved / name)
    return saved


def _restore_state(folder: Path, saved: Path) -> None:
    for name in STATE_FILES:
        for extra in (f"{name}-wal", f"{name}-shm", f"{name}.wal"):
            (folder / extra).unlink(missing_ok=True)
        shutil.copy2(saved / name, folder / name)
    shutil.rmtree(saved)


def store_counts(folder: Path) -> dict[str, int]:
    import sqlite3

    connection = sqlite3.connect(folder / "state.sqlite")
    try:
        enrollments = connection.execute("SELECT count(*) FROM enrollments").fetchone()[0]
        outbox = connection.execute("SELECT count(*) FROM outbox").fetchone()[0]
    finally:
        connection.close()
    return {"enrollments": int(enrollments), "outbox_rows": int(outbox)}


def launched_accounts(folder: Path, job_name: str) -> set[str]:
    import sqlite3

    connection = sqlite3.connect(folder / "state.sqlite")
    try:
        rows = connection.execute(
            "SELECT account_id FROM enrollments WHERE job_name = ?", (job_name,)
        ).fetchall()
    finally:
        connection.close()
    return {row[0] for row in rows}


def bench_jobs(args: argparse.Namespace, jobs: int, root: Path) -> list[dict[str, Any]]:
    folder = root / f"jobs_{jobs}"
    built = build_project(folder, args.accounts, args.days, args.seed, jobs)
    launch_at: datetime = built["launch_at"]
    steps = [
        ("launch", launch_at),
        ("same_day", launch_at + timedelta(hours=1)),
        ("next_day", launch_at + timedelta(days=1)),
        ("import", launch_at + timedelta(days=1)),
        ("next_day_new_data", launch_at + timedelta(days=2)),
    ]
    results = []
    for step, at in steps:
        warm = None
        if step not in ("launch", "import"):
            # The same tick twice from the same state: warm (as in the daemon), then cold (a
            # `closeloop tick` process), whose records stay.
            saved = _save_state(folder)
            warm = run_child(folder, step, at, warm=True)
            _restore_state(folder, saved)
        measured = run_child(folder, step, at)
        if warm is not None:
            same = ("entered", "completed", "exited", "outbox_written")
            assert all(warm[key] == measured[key] for key in same), (warm, measured)
            measured["warm_s"] = round(warm["seconds"], 3)
        if step == "launch":
            duckdb_s, expected = first_job_audience_baseline(folder, at)
            got = launched_accounts(folder, "Bench job 01")
            if not expected:
                print(
                    "Bench job 01 has an empty audience: the check would prove nothing; "
                    "simulate more accounts or days",
                    file=sys.stderr,
                )
                raise SystemExit(1)
            if got != expected:
                print(
                    f"launch of Bench job 01: closeloop enrolled {len(got)} accounts, the "
                    f"hand-written query finds {len(expected)} ({len(got ^ expected)} differ)",
                    file=sys.stderr,
                )
                raise SystemExit(1)
            measured["duckdb_s"] = duckdb_s
        if step == "import":
            built["events"] += int(measured.get("imported", 0))
            continue
        results.append(
            {
                "case": f"{jobs} jobs, {step}",
                "jobs": jobs,
                "step": step,
                "at": at.isoformat(),
                "events": built["events"],
                "closeloop_s": round(measured["seconds"], 3),
                "peak_rss_mb": round(measured["peak_rss_mb"], 1),
                **{k: v for k, v in measured.items() if k not in ("seconds", "peak_rss_mb")},
                **store_counts(folder),
            }
        )
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--accounts", type=int, default=30_000)
    parser.add_argument("--days", type=int, default=400)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--jobs", type=int, nargs="+", default=[1, 20])
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON)
    parser.add_argument("--keep", type=Path, help="build the projects here and keep them")
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    parser.add_argument("--warm", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        step, folder, at = args.child
        moment = datetime.fromisoformat(at)
        print(json.dumps(child_step(Path(folder), step, moment, warm=args.warm)))
        return
    with tempfile.TemporaryDirectory(prefix="bench_tick_") as temporary:
        root = args.keep or Path(temporary)
        results = [row for jobs in args.jobs for row in bench_jobs(args, jobs, root)]
    print(
        f"{'case':<28} {'events':>11} {'enrolled':>9} {'outbox':>8} {'seconds':>8} "
        f"{'warm s':>7} {'RSS MB':>7}"
    )
    for row in results:
        warm = f"{row['warm_s']:>7.2f}" if "warm_s" in row else f"{'':>7}"
        print(
            f"{row['case']:<28} {row['events']:>11,} {row['enrollments']:>9,} "
            f"{row['outbox_rows']:>8,} {row['closeloop_s']:>8.2f} {warm} {row['peak_rss_mb']:>7.0f}"
        )
    report = {
        "benchmark": "bench_tick",
        "date": datetime.now().astimezone().isoformat(timespec="seconds"),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "load": list(os.getloadavg()),
        },
        "params": {"accounts": args.accounts, "days": args.days, "seed": args.seed},
        "results": results,
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(f"written {args.json}")


if __name__ == "__main__":
    main()
