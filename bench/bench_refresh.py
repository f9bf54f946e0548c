"""Benchmark: refreshing every job's measurement (closeloop) vs one hand-written DuckDB query,
polars lazy and pandas producing the same per-job aggregates.

Run with ``.venv/bin/python bench/bench_refresh.py [--accounts 100000] [--events 10000000]
[--jobs 20] [--enrollments 200000] [--repeats 3] [--json PATH]``. It builds, with DuckDB, a
warehouse file of accounts (segment, plan) and events and a SQLite state store holding the jobs
and their enrollments (arms, entries, completions, exits), publishes the enrollments, then times:

- ``publish_full`` / ``publish_incremental``: the first copy of the enrollments into the warehouse
  and a publish after 1% of them changed (engine.publish);
- ``refresh``: closeloop's measurement of every job (analysis.refresh.measure_jobs: the units of
  all jobs materialized once, then every job measured together, each query grouped by job: arms,
  KM tables, lifts, segments, adjustment, competing risks, entry weeks, always-valid results),
  as the library measures (without the revenue value); ``refresh + revenue value`` adds each
  job's revenue value (90/180 days; one more query, grouped by job);
- ``refresh service``: ``services.refresh.refresh_measurements`` on the project (publish, the
  store's deliveries, versions and opt-outs per job, verdicts), as the library calls it;
- ``report JOB --format json``: ``closeloop report "Job 00" --format json`` as a process, and
  ``compute only``: ``report_job`` in this process (workspace opened each time);
- ``duckdb`` / ``polars`` / ``pandas``: one query giving, per job, arm, segment, hours to goal or
  censoring, completed and matured, the units and the sum of their events in the 30 days before
  entry: the sufficient statistics the report's arms, KM tables and segment lifts come from.

Before timing it checks that the three baselines give the same table and that closeloop's arms
(n, matured, completed) and segment cells equal the table's sums (exit 1 if not). The ratio is
closeloop's time over the fastest baseline's. Nothing is asserted on time.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd
import polars as pl
import sqlalchemy as sa
from timing import best_of

from closeloop.analysis.refresh import JobToMeasure, measure_jobs
from closeloop.analysis.revenue_value import HORIZONS as REVENUE_HORIZONS
from closeloop.data.warehouse import Warehouse
from closeloop.engine import schema
from closeloop.engine.publish import publish
from closeloop.engine.state import StateStore
from closeloop.services.project import init_project, open_workspace
from closeloop.services.refresh import refresh_measurements
from closeloop.services.reports import report_job

START = datetime(2024, 1, 1)
DAYS = 180
AS_OF = START + timedelta(days=DAYS)
PRIOR_DAYS = 30
HOLDOUT = 0.2
KEYS = ["job_name", "arm", "segment", "hours", "completed", "matured"]


def horizon(job_index: int) -> float:
    return 14.0 + 7.0 * (job_index % 3)


def build(folder: Path, accounts: int, events: int, jobs: int, enrollments: int) -> None:
    """The warehouse (accounts, events) and the store (jobs, enrollments), generated in DuckDB."""
    warehouse = Warehouse.connect(f"duckdb:///{folder / 'warehouse.duckdb'}")
    warehouse.ensure_tables()
    con = warehouse.backend.con
    con.execute(
        f"""
        INSERT INTO accounts (account_id, name, created_at, segment, plan)
        SELECT 'a' || i, 'Account ' || i, TIMESTAMP '{START}' - INTERVAL (i % 400) DAY,
               ['self_serve', 'mid_market', 'enterprise'][1 + i % 3],
               ['free', 'pro', 'business', 'enterprise'][1 + (i * 7) % 4]
        FROM range({accounts}) t(i)
        """
    )
    con.execute(
        f"""
        INSERT INTO events (event_id, account_id, name, timestamp, value)
        SELECT 'e' || i, 'a' || (hash(i) % {accounts}),
               ['login', 'report_viewed', 'integration_connected'][1 + i % 3],
               TIMESTAMP '{START}' - INTERVAL 60 DAY
                 + INTERVAL (hash(i * 31) % ((({DAYS} + 60) * 86400)::UBIGINT)) SECOND,
               NULL
        FROM range({events}) t(i)
        """
    )
    per_job = enrollments // jobs
    rows = con.execute(
        f"""
        WITH base AS (
            SELECT j, k, 'Job ' || lpad(j::VARCHAR, 2, '0') AS job_name,
                   'a' || ((k * 7919 + j * 104729) % {accounts}) AS account_id,
                   TIMESTAMP '{START}' + INTERVAL (hash(j, k) % ({DAYS - 10} * 86400)) SECOND
                       AS entered_at,
                   hash(j, k, 1) % 1000 AS r1, hash(j, k, 2) % 1000 AS r2
            FROM range({jobs}) a(j), range({per_job}) b(k)
        )
        SELECT 'en-' || j || '-' || k, job_name, 1, account_id,
               CASE WHEN r1 < {int(HOLDOUT * 1000)} THEN 'holdout' ELSE 'treatment' END,
               entered_at,
               CASE WHEN r2 < 300 + (CASE WHEN r1 >= 200 THEN 60 ELSE 0 END)
                    THEN entered_at + INTERVAL (hash(j, k, 3) % (20 * 86400)) SECOND END,
               CASE WHEN r2 >= 900 THEN entered_at + INTERVAL 30 DAY END,
               CASE WHEN r2 >= 900 THEN 'timeout' END
        FROM base
        """
    ).fetchall()
    warehouse.close()
    store = StateStore.connect(f"sqlite:///{folder / 'state.sqlite'}")
    store.migrate()
    columns = [
        "enrollment_id", "job_name", "job_version", "account_id", "arm", "entered_at",
        "completed_at", "exited_at", "exit_reason",
    ]  # fmt: skip
    with store.engine.begin() as connection:
        for j in range(jobs):
            connection.execute(
                schema.jobs.insert().values(
                    name=f"Job {j:02d}",
                    salt="salt",
                    current_version=1,
                    content_hash="hash",
                    holdout=HOLDOUT,
                    launched_at=START,
                )
            )
        connection.execute(
            schema.enrollments.insert(), [dict(zip(columns, row, strict=True)) for row in rows]
        )
        for j in range(jobs):
            connection.execute(
                schema.ticks.insert().values(
                    job_name=f"Job {j:02d}",
                    at=AS_OF,
                    job_version=1,
                    entered=0,
                    completed=0,
                    exited=0,
                    processed_at=AS_OF,
                )
            )
    store.close()
    # A project whose jobs are the store's, for `closeloop report JOB`.
    init_project(folder / "project", name="bench")
    (folder / "project" / "jobs.yaml").write_text(
        "jobs:\n"
        + "".join(JOB_YAML.format(name=f"Job {j:02d}", days=int(horizon(j))) for j in range(jobs)),
        encoding="utf-8",
    )


JOB_YAML = """\
  - name: {name}
    audience: signup_date within last 14 days
    goal: count(event "integration_connected") >= 1
    duration_days: {days}
    holdout: 0.2
    steps:
      - send: email
        subject: "Connect"
        template: integration_nudge
"""


def environ(folder: Path) -> dict[str, str]:
    return {
        "CLOSELOOP_WAREHOUSE_URL": f"duckdb:///{folder / 'warehouse.duckdb'}",
        "CLOSELOOP_STATE_URL": f"sqlite:///{folder / 'state.sqlite'}",
    }


def report_process(folder: Path) -> str:
    """``closeloop report "Job 00" --format json`` as its own process."""
    done = subprocess.run(
        [str(Path(sys.executable).parent / "closeloop"), "report", "Job 00", "--format", "json"],
        cwd=folder / "project",
        env={**os.environ, **environ(folder)},
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"closeloop report failed: {done.stderr[-2000:]}")
    return done.stdout


def report_in_process(folder: Path) -> Any:
    with open_workspace(folder / "project", environ=environ(folder), write=False) as workspace:
        return report_job(workspace, "Job 00").model


def refresh_service(folder: Path) -> dict[str, Any]:
    with open_workspace(folder / "project", environ=environ(folder), write=False) as workspace:
        return refresh_measurements(workspace, revenue=False)


HAND_WRITTEN = """
WITH params AS (SELECT * FROM (VALUES {values}) AS p(job_name, horizon_s)),
units AS (
    SELECT e.job_name, e.enrollment_id, e.account_id, e.arm, e.entered_at,
           CASE WHEN e.completed_at <= TIMESTAMP '{as_of}' THEN e.completed_at END AS goal_at,
           a.segment,
           e.entered_at + to_seconds(p.horizon_s) AS horizon_end
    FROM closeloop_enrollments e
    JOIN params p USING (job_name)
    LEFT JOIN accounts a USING (account_id)
    WHERE e.entered_at <= TIMESTAMP '{as_of}'
),
prior AS (
    SELECT u.enrollment_id, count(*) AS prior_events
    FROM units u JOIN events ev ON ev.account_id = u.account_id
    WHERE ev.timestamp >= u.entered_at - INTERVAL {prior} DAY AND ev.timestamp < u.entered_at
    GROUP BY 1
),
facts AS (
    SELECT u.job_name, CASE WHEN u.arm = 'holdout' THEN 'holdout' ELSE 'treatment' END AS arm,
           coalesce(u.segment, '(none)') AS segment,
           least(u.horizon_end, TIMESTAMP '{as_of}') AS observed_until,
           u.goal_at IS NOT NULL AND u.goal_at >= u.entered_at
             AND u.goal_at <= least(u.horizon_end, TIMESTAMP '{as_of}') AS completed,
           u.horizon_end <= TIMESTAMP '{as_of}' AS matured,
           u.entered_at, u.goal_at, coalesce(p.prior_events, 0) AS prior_events
    FROM units u LEFT JOIN prior p USING (enrollment_id)
)
SELECT job_name, arm, segment,
       ceil((epoch(CASE WHEN completed THEN goal_at ELSE observed_until END)
             - epoch(entered_at)) / 3600.0)::BIGINT AS hours,
       completed, matured, count(*) AS units, sum(prior_events)::BIGINT AS prior_events
FROM facts GROUP BY ALL ORDER BY ALL
"""


def hand_written(path: Path, horizons: dict[str, float]) -> pd.DataFrame:
    values = ", ".join(f"('{name}', {seconds * 86400:.0f})" for name, seconds in horizons.items())
    with duckdb.connect(str(path), read_only=True) as con:
        sql = HAND_WRITTEN.format(values=values, as_of=AS_OF, prior=PRIOR_DAYS)
        return con.execute(sql).df()


def _tables(path: Path) -> dict[str, Any]:
    with duckdb.connect(str(path), read_only=True) as con:
        return {
            "enrollments": con.execute(
                "SELECT enrollment_id, job_name, account_id, arm, entered_at, completed_at "
                "FROM closeloop_enrollments"
            ).fetch_arrow_table(),
            "accounts": con.execute("SELECT account_id, segment FROM accounts").fetch_arrow_table(),
            "events": con.execute("SELECT account_id, timestamp FROM events").fetch_arrow_table(),
        }


def with_polars(path: Path, horizons: dict[str, float]) -> pd.DataFrame:
    tables = _tables(path)
    as_of = pl.lit(AS_OF)
    params = pl.DataFrame(
        {"job_name": list(horizons), "horizon_us": [int(d * 86400e6) for d in horizons.values()]}
    ).lazy()
    units = (
        pl.from_arrow(tables["enrollments"])
        .lazy()
        .join(params, on="job_name")
        .join(pl.from_arrow(tables["accounts"]).lazy(), on="account_id", how="left")
        .filter(pl.col("entered_at") <= as_of)
        .with_columns(
            goal_at=pl.when(pl.col("completed_at") <= as_of).then(pl.col("completed_at")),
            horizon_end=pl.col("entered_at") + pl.duration(microseconds=pl.col("horizon_us")),
        )
    )
    prior = (
        units.select("enrollment_id", "account_id", "entered_at")
        .join(pl.from_arrow(tables["events"]).lazy(), on="account_id")
        .filter(
            (pl.col("timestamp") >= pl.col("entered_at") - pl.duration(days=PRIOR_DAYS))
            & (pl.col("timestamp") < pl.col("entered_at"))
        )
        .group_by("enrollment_id")
        .agg(prior_events=pl.len())
    )
    observed = pl.min_horizontal("horizon_end", as_of)
    completed = (
        pl.col("goal_at").is_not_null()
        & (pl.col("goal_at") >= pl.col("entered_at"))
        & (pl.col("goal_at") <= observed)
    )
    end = pl.when(completed).then(pl.col("goal_at")).otherwise(observed)
    facts = units.join(prior, on="enrollment_id", how="left").select(
        "job_name",
        arm=pl.when(pl.col("arm") == "holdout")
        .then(pl.lit("holdout"))
        .otherwise(pl.lit("treatment")),
        segment=pl.col("segment").fill_null("(none)"),
        hours=((end - pl.col("entered_at")).dt.total_seconds() / 3600.0).ceil().cast(pl.Int64),
        completed=completed,
        matured=pl.col("horizon_end") <= as_of,
        prior_events=pl.col("prior_events").fill_null(0),
    )
    result = (
        facts.group_by(KEYS)
        .agg(units=pl.len(), prior_events=pl.col("prior_events").sum())
        .sort(KEYS)
        .collect()
    )
    return result.to_pandas()


def with_pandas(path: Path, horizons: dict[str, float]) -> pd.DataFrame:
    tables = {name: table.to_pandas() for name, table in _tables(path).items()}
    units = tables["enrollments"]
    units = units[units.entered_at <= AS_OF].copy()
    units = units.merge(tables["accounts"], on="account_id", how="left")
    units["goal_at"] = units.completed_at.where(units.completed_at <= AS_OF)
    units["horizon_end"] = units.entered_at + pd.to_timedelta(
        units.job_name.map(horizons), unit="D"
    )
    joined = units[["enrollment_id", "account_id", "entered_at"]].merge(
        tables["events"], on="account_id"
    )
    window = (joined.timestamp >= joined.entered_at - pd.Timedelta(days=PRIOR_DAYS)) & (
        joined.timestamp < joined.entered_at
    )
    prior = joined[window].groupby("enrollment_id").size().rename("prior_events")
    units = units.merge(prior, left_on="enrollment_id", right_index=True, how="left")
    observed = units.horizon_end.where(units.horizon_end <= AS_OF, pd.Timestamp(AS_OF))
    completed = (
        units.goal_at.notna() & (units.goal_at >= units.entered_at) & (units.goal_at <= observed)
    )
    end = units.goal_at.where(completed, observed)
    facts = pd.DataFrame(
        {
            "job_name": units.job_name,
            "arm": units.arm.where(units.arm == "holdout", "treatment"),
            "segment": units.segment.fillna("(none)"),
            "hours": ((end - units.entered_at).dt.total_seconds() / 3600.0).apply(
                lambda x: int(-(-x // 1))
            ),
            "completed": completed,
            "matured": units.horizon_end <= AS_OF,
            "prior_events": units.prior_events.fillna(0).astype("int64"),
        }
    )
    grouped = facts.groupby(KEYS).agg(
        units=("prior_events", "size"), prior_events=("prior_events", "sum")
    )
    return grouped.reset_index().sort_values(KEYS).reset_index(drop=True)


def _normal(frame: pd.DataFrame) -> list[tuple[Any, ...]]:
    frame = frame[[*KEYS, "units", "prior_events"]]
    return sorted(
        (str(r[0]), str(r[1]), str(r[2]), int(r[3]), bool(r[4]), bool(r[5]), int(r[6]), int(r[7]))
        for r in frame.itertuples(index=False)
    )


def refresh(path: Path, jobs: list[JobToMeasure], revenue: bool = False) -> dict[str, Any]:
    with Warehouse.connect(f"duckdb:///{path}") as warehouse:
        return measure_jobs(warehouse, jobs, revenue_horizons=REVENUE_HORIZONS if revenue else None)


def check(reports: dict[str, Any], table: list[tuple[Any, ...]]) -> list[str]:
    """Where closeloop's arms and segments differ from the baseline's table."""
    problems = []
    for name, report in reports.items():
        if isinstance(report, Exception):
            problems.append(f"{name}: {report}")
            continue
        for arm_name, arm in report.measurement.arms.items():
            rows = [r for r in table if r[0] == name and r[1] == arm_name]
            expected = (
                sum(r[6] for r in rows),
                sum(r[6] for r in rows if r[5]),
                sum(r[6] for r in rows if r[5] and r[4]),
            )
            if (arm.n, arm.matured, arm.completed) != expected:
                problems.append(
                    f"{name} {arm_name}: {(arm.n, arm.matured, arm.completed)} != {expected}"
                )
        for cell in report.segments:
            for arm_name, stat in ((cell.control, cell.control_stat), (cell.arm, cell.arm_stat)):
                rows = [r for r in table if r[:3] == (name, arm_name, cell.segment) and r[5]]
                expected = (sum(r[6] for r in rows), sum(r[6] for r in rows if r[4]))
                if (stat.n, stat.successes) != expected:
                    problems.append(f"{name} {cell.segment} {arm_name}: {stat} != {expected}")
    return problems


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, default=100_000)
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument("--jobs", type=int, default=20)
    parser.add_argument("--enrollments", type=int, default=200_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--json", type=Path, default=Path(__file__).parent / "results" / "bench_refresh.json"
    )
    args = parser.parse_args()
    if args.enrollments // args.jobs > args.accounts:
        parser.error("each job enrolls an account once: --enrollments / --jobs <= --accounts")
    folder = Path(tempfile.mkdtemp(prefix="bench_refresh_"))
    build(folder, args.accounts, args.events, args.jobs, args.enrollments)
    path = folder / "warehouse.duckdb"
    store = StateStore.connect(f"sqlite:///{folder / 'state.sqlite'}")

    def publish_once() -> Any:
        with Warehouse.connect(f"duckdb:///{path}") as warehouse:
            return publish(store, warehouse)

    publish_full_s, first = best_of(1, publish_once)
    assert first.full, first
    e = schema.enrollments
    with store.engine.begin() as connection:  # 1% of the enrollments complete
        ids = (
            connection.execute(
                sa.select(e.c.enrollment_id)
                .where(e.c.completed_at.is_(None))
                .limit(args.enrollments // 100)
            )
            .scalars()
            .all()
        )
        connection.execute(
            e.update()
            .where(e.c.enrollment_id.in_(ids))
            .values(completed_at=AS_OF - timedelta(days=1))
        )
    publish_incremental_s, second = best_of(1, publish_once)
    assert not second.full and second.rows == len(ids), second
    horizons = {f"Job {j:02d}": horizon(j) for j in range(args.jobs)}
    jobs = [
        JobToMeasure(name=name, as_of=AS_OF, horizon_days=days, holdout_fraction=HOLDOUT)
        for name, days in horizons.items()
    ]
    baseline = _normal(hand_written(path, horizons))
    if (
        _normal(with_polars(path, horizons)) != baseline
        or _normal(with_pandas(path, horizons)) != baseline
    ):
        print("the baselines disagree", file=sys.stderr)
        return 1
    problems = check(refresh(path, jobs), baseline)
    if problems:
        print(
            "closeloop disagrees with the baselines:\n" + "\n".join(problems[:20]), file=sys.stderr
        )
        return 1
    times = {
        "closeloop_s": best_of(args.repeats, lambda: refresh(path, jobs))[0],
        "duckdb_s": best_of(args.repeats, lambda: hand_written(path, horizons))[0],
        "polars_s": best_of(args.repeats, lambda: with_polars(path, horizons))[0],
        "pandas_s": best_of(max(1, args.repeats - 2), lambda: with_pandas(path, horizons))[0],
    }
    with_revenue_s = best_of(1, lambda: refresh(path, jobs, revenue=True))[0]
    service = refresh_service(folder)
    if any(isinstance(report, Exception) for report in service.values()) or len(service) != len(
        jobs
    ):
        print(f"the refresh service failed: {service}", file=sys.stderr)
        return 1
    service_s = best_of(args.repeats, lambda: refresh_service(folder))[0]
    report_json = json.loads(report_process(folder))
    if report_json["job_name"] != "Job 00":
        print("closeloop report answered another job", file=sys.stderr)
        return 1
    process_s = best_of(args.repeats, lambda: report_process(folder))[0]
    compute_s = best_of(args.repeats, lambda: report_in_process(folder))[0]
    best = min(times["duckdb_s"], times["polars_s"])
    results = [
        {
            "case": f"refresh {args.jobs} jobs",
            **times,
            "ratio_vs_best": times["closeloop_s"] / best,
            "ratio_vs_pandas": times["closeloop_s"] / times["pandas_s"],
        },
        {"case": "refresh + revenue value", "closeloop_s": with_revenue_s},
        {"case": "refresh service (store too)", "closeloop_s": service_s},
        {"case": "report JOB --format json", "closeloop_s": process_s},
        {"case": "report JOB compute only", "closeloop_s": compute_s},
        {"case": "publish, first (full copy)", "closeloop_s": publish_full_s, "rows": first.rows},
        {
            "case": "publish after 1% changed",
            "closeloop_s": publish_incremental_s,
            "rows": second.rows,
        },
    ]
    print(f"{'case':<28} {'closeloop':>10} {'duckdb':>8} {'polars':>8} {'pandas':>8} {'ratio':>6}")
    for row in results:
        print(
            f"{row['case']:<28} {row['closeloop_s']:>10.3f} "
            + " ".join(
                f"{row[k]:>8.3f}" if k in row else f"{'':>8}"
                for k in ("duckdb_s", "polars_s", "pandas_s")
            )
            + (f" {row['ratio_vs_best']:>6.2f}" if "ratio_vs_best" in row else "")
        )
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(
        json.dumps(
            {
                "benchmark": "bench_refresh",
                "date": datetime.now(UTC).isoformat(timespec="seconds"),
                "machine": {
                    "cpus": os.cpu_count(),
                    "python": platform.python_version(),
                    "load": list(os.getloadavg()),
                },
                "params": {
                    "accounts": args.accounts,
                    "events": args.events,
                    "jobs": args.jobs,
                    "enrollments": args.enrollments,
                    "repeats": args.repeats,
                },
                "results": results,
            },
            indent=2,
        )
    )
    store.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
