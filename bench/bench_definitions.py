"""Benchmark: project definitions (people roll-ups, stages) through closeloop's compiler vs
hand-written SQL vs pandas.

Run with ``.venv/bin/python bench/bench_definitions.py [--accounts N] [--people-per-account P]
[--events-per-account K]``. It builds a DuckDB file with synthetic accounts, people (with roles)
and events (by people, with timestamps), writes a small project (computed attributes and an
Onboarding stage) to a temporary folder, loads it with ``load_project``, and times three queries
as of one time, each three ways: closeloop's compiler (expression → Ibis → SQL, run in DuckDB,
result as Arrow), the same query written by hand in DuckDB SQL, and pandas over the raw tables.
It first checks that the three ways return exactly the same accounts or counts. Nothing here is
asserted on time: the numbers are for people, recorded in bench/README.md.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import ibis
import numpy as np
import pandas as pd
import pyarrow as pa
from timing import best_of

from closeloop.data.compiler import (
    account_attributes,
    matching_units,
    person_attributes,
    stage_status,
)
from closeloop.data.warehouse import Warehouse
from closeloop.definitions.catalog import Project
from closeloop.definitions.expressions import Entity, parse_expression
from closeloop.definitions.project import load_project

AS_OF = datetime(2024, 6, 1)
AUDIENCE = (
    'any person where (role = "admin" and count(event "login" in last 14 days) >= 2)'
    " and seat_activation < 50%"
)

IN_STAGE = 'in stage "Onboarding"'

PROJECT_FILES = {
    "closeloop.yaml": """\
name: Definitions benchmark
jobs: []
attributes: [attributes.yaml]
stages: [stages.yaml]
""",
    "attributes.yaml": """\
attributes:
  - name: seats
    rollup: count
  - name: active_seats
    rollup: count
    people: count(event "login" in last 30 days) >= 1
  - name: seat_activation
    ratio: {numerator: active_seats, denominator: seats}
""",
    "stages.yaml": """\
stages:
  - name: Onboarding
    entry: signup_date has any value
    entered_at: signup_date
    exit:
      after_days: 30
      when_objectives_complete: true
    objectives:
      - name: Connected an integration
        completion: count(event "integration_connected") >= 1
      - name: Three logins
        completion: count(event "login") >= 3
""",
}

# -- hand-written SQL (the documented semantics, as of $as_of) -------------------------------------

AUDIENCE_SQL = """
WITH acc AS (
    SELECT account_id FROM accounts WHERE created_at <= $as_of
), ppl AS (
    SELECT p.person_id, p.account_id, p.role
    FROM people p JOIN acc USING (account_id)
    WHERE p.created_at IS NULL OR p.created_at <= $as_of
), logins AS (
    SELECT person_id,
           count(*) FILTER (WHERE "timestamp" > $as_of - INTERVAL 14 DAY) AS n14,
           count(*) AS n30
    FROM events
    WHERE name = 'login' AND person_id IS NOT NULL
      AND "timestamp" <= $as_of AND "timestamp" > $as_of - INTERVAL 30 DAY
    GROUP BY person_id
), per_account AS (
    SELECT p.account_id,
           count(*) AS seats,
           count(*) FILTER (WHERE l.n30 >= 1) AS active_seats,
           bool_or(p.role = 'admin' AND coalesce(l.n14, 0) >= 2) AS busy_admin
    FROM ppl p LEFT JOIN logins l USING (person_id)
    GROUP BY p.account_id
)
SELECT account_id FROM per_account
WHERE busy_admin AND active_seats::DOUBLE / seats < 0.5
"""

STAGE_SQL = """
WITH acc AS (
    SELECT account_id, created_at AS entered
    FROM accounts
    WHERE created_at <= $as_of AND created_at IS NOT NULL  -- entry: signup_date has any value
), reached AS (  -- when each objective's criteria first held: the time of the k-th event
    SELECT account_id,
           min("timestamp") FILTER (WHERE name = 'integration_connected') AS o1,
           list_sort(list("timestamp") FILTER (WHERE name = 'login'))[3] AS o2
    FROM events
    WHERE "timestamp" <= $as_of AND name IN ('integration_connected', 'login')
    GROUP BY account_id
), done AS (  -- the last objective, never before entry; only within 30 days of entry
    SELECT a.account_id, a.entered, a.entered + INTERVAL 30 DAY AS deadline,
           CASE WHEN r.o1 IS NOT NULL AND r.o2 IS NOT NULL
                THEN greatest(r.o1, r.o2, a.entered) END AS last_objective
    FROM acc a LEFT JOIN reached r USING (account_id)
), status AS (
    SELECT account_id, entered,
           CASE WHEN last_objective <= deadline THEN last_objective END AS completed,
           coalesce(CASE WHEN last_objective <= deadline THEN last_objective END, deadline)
               AS exits
    FROM done
)
"""

IN_STAGE_SQL = (
    STAGE_SQL
    + """
SELECT account_id FROM status WHERE entered <= $as_of AND exits > $as_of
"""
)

STAGE_COUNTS_SQL = (
    STAGE_SQL
    + """
SELECT count(*) FILTER (WHERE entered <= $as_of AND exits > $as_of) AS in_stage,
       count(*) FILTER (WHERE completed IS NOT NULL AND completed <= $as_of) AS completed,
       count(*) FILTER (WHERE exits <= $as_of AND completed IS NULL) AS left_incomplete
FROM status
"""
)


# -- data ------------------------------------------------------------------------------------------


def _timestamps(values: np.ndarray) -> pa.Array:
    return pa.array(values.astype("datetime64[us]"), pa.timestamp("us"))


def build(
    path: Path, accounts: int, people_per_account: float, events_per_account: int, seed: int = 1
) -> Warehouse:
    """Accounts created over four months (a few after T), people with roles (some created after
    T, some with no creation time, a few accounts with nobody), and events by those people (some
    anonymous) from a few days before each account's creation to a few days after T."""
    rng = np.random.default_rng(seed)
    warehouse = Warehouse.connect(f"duckdb:///{path}")
    warehouse.ensure_tables()
    as_of = np.datetime64(AS_OF, "us")
    day = np.timedelta64(86_400_000_000, "us")

    ids = np.array([f"acc_{i:07d}" for i in range(accounts)])
    created = as_of - (rng.uniform(-4, 120, accounts) * day).astype("timedelta64[us]")
    warehouse.append(
        "accounts",
        warehouse.arrow_for(
            "accounts",
            {"account_id": ids.tolist(), "created_at": created.astype(datetime).tolist()},
        ),
    )

    counts = rng.poisson(people_per_account, accounts)
    first = np.concatenate([[0], np.cumsum(counts)[:-1]])
    people = int(counts.sum())
    owner = np.repeat(np.arange(accounts), counts)
    person_created = created[owner] + (rng.uniform(0, 90, people) * day).astype("timedelta64[us]")
    no_time = rng.random(people) < 0.15
    roles = np.array(["admin", "member", "viewer"])[rng.choice(3, people, p=[0.25, 0.55, 0.2])]
    no_role = rng.random(people) < 0.03
    warehouse.append(
        "people",
        warehouse.arrow_for(
            "people",
            {
                "person_id": [f"p_{i:08d}" for i in range(people)],
                "account_id": ids[owner].tolist(),
                "role": [None if n else r for n, r in zip(no_role, roles.tolist(), strict=True)],
                "created_at": [
                    None if n else t
                    for n, t in zip(no_time, person_created.astype(datetime), strict=True)
                ],
            },
        ),
    )

    person_ids = np.array([f"p_{i:08d}" for i in range(people)] + [""])
    names = np.array(["login", "feature_used", "report_viewed", "integration_connected"])
    n = accounts * events_per_account
    chunk = 2_000_000
    for start in range(0, n, chunk):
        size = min(chunk, n - start)
        by = rng.integers(0, accounts, size)
        begin = created[by] - 5 * day
        span = (as_of + 5 * day - begin).astype("int64")
        stamps = begin + (rng.random(size) * span).astype("timedelta64[us]")
        # Some people are much more active than others; a tenth of events are anonymous.
        which = first[by] + np.floor(rng.random(size) ** 4 * counts[by]).astype(np.int64)
        anonymous = (counts[by] == 0) | (rng.random(size) < 0.1)
        person = np.where(anonymous, people, which)
        table = pa.table(
            {
                "event_id": pa.array([f"ev_{start + i}" for i in range(size)]),
                "account_id": pa.array(ids[by]),
                "person_id": pa.array(person_ids[person], mask=anonymous),
                "name": pa.array(names[rng.choice(4, size, p=[0.5, 0.3, 0.18, 0.02])]),
                "timestamp": _timestamps(stamps),
                "value": pa.nulls(size, pa.float64()),
                "properties": pa.nulls(size, pa.string()),
            }
        )
        warehouse.append("events", table)
    return warehouse


def write_project(folder: Path) -> Project:
    folder.mkdir()
    for name, text in PROJECT_FILES.items():
        (folder / name).write_text(text)
    return load_project(folder, account_attributes(), person_attributes())


# -- pandas ----------------------------------------------------------------------------------------


class PandasData:
    """The raw tables, read fresh each run (the read is part of the pandas time)."""

    def __init__(self, con: Any) -> None:
        self.accounts = con.execute(
            "SELECT account_id, created_at FROM accounts WHERE created_at <= $t", {"t": AS_OF}
        ).df()
        self.people = con.execute("SELECT person_id, account_id, role, created_at FROM people").df()
        self.events = con.execute(
            """SELECT event_id, account_id, person_id, name, "timestamp" FROM events
               WHERE name IN ('login', 'integration_connected')"""
        ).df()
        self.events = self.events[self.events["timestamp"] <= AS_OF]


def pandas_audience(data: PandasData) -> set[str]:
    people = data.people[data.people["created_at"].isna() | (data.people["created_at"] <= AS_OF)]
    people = people[people["account_id"].isin(data.accounts["account_id"])]
    events = data.events
    logins = events[
        (events["name"] == "login")
        & events["person_id"].notna()
        & (events["timestamp"] > AS_OF - timedelta(days=30))
    ]
    n30 = logins.groupby("person_id").size()
    n14 = logins[logins["timestamp"] > AS_OF - timedelta(days=14)].groupby("person_id").size()
    people = people.assign(
        n30=people["person_id"].map(n30).fillna(0), n14=people["person_id"].map(n14).fillna(0)
    )
    people = people.assign(
        active=people["n30"] >= 1, busy_admin=(people["role"] == "admin") & (people["n14"] >= 2)
    )
    per = people.groupby("account_id").agg(
        seats=("person_id", "size"), active=("active", "sum"), busy=("busy_admin", "any")
    )
    per = per[per["busy"] & (per["active"] / per["seats"] < 0.5)]
    return set(per.index)


def pandas_stage(data: PandasData) -> pd.DataFrame:
    """Per account: entered, completed (or NaT) and exit time, as documented."""
    events = data.events.sort_values(["account_id", "name", "timestamp", "event_id"])
    events = events.assign(k=events.groupby(["account_id", "name"]).cumcount() + 1)
    o1 = events[(events["name"] == "integration_connected") & (events["k"] == 1)]
    o2 = events[(events["name"] == "login") & (events["k"] == 3)]
    status = data.accounts.rename(columns={"created_at": "entered"})
    status = status.assign(
        o1=status["account_id"].map(o1.set_index("account_id")["timestamp"]),
        o2=status["account_id"].map(o2.set_index("account_id")["timestamp"]),
    )
    last = status[["o1", "o2", "entered"]].max(axis=1)
    last = last.where(status["o1"].notna() & status["o2"].notna())
    deadline = status["entered"] + timedelta(days=30)
    completed = last.where(last <= deadline)
    return status.assign(completed=completed, exits=completed.fillna(deadline))


def pandas_in_stage(data: PandasData) -> set[str]:
    status = pandas_stage(data)
    return set(status.loc[(status["entered"] <= AS_OF) & (status["exits"] > AS_OF), "account_id"])


def pandas_stage_counts(data: PandasData) -> tuple[int, int, int]:
    s = pandas_stage(data)
    return (
        int(((s["entered"] <= AS_OF) & (s["exits"] > AS_OF)).sum()),
        int((s["completed"].notna() & (s["completed"] <= AS_OF)).sum()),
        int(((s["exits"] <= AS_OF) & s["completed"].isna()).sum()),
    )


# -- timing ----------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--accounts", type=int, default=20_000)
    parser.add_argument("--people-per-account", type=float, default=5.0)
    parser.add_argument("--events-per-account", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        warehouse = build(
            folder / "bench.duckdb", args.accounts, args.people_per_account, args.events_per_account
        )
        started = time.perf_counter()
        project = write_project(folder / "project")
        load_seconds = time.perf_counter() - started
        catalog = project.catalog
        stage = catalog.stages["Onboarding"]
        audience, in_stage = parse_expression(AUDIENCE), parse_expression(IN_STAGE)
        con = warehouse.backend.con

        def units(expression: Any) -> ibis.Table:
            return matching_units(expression, warehouse, AS_OF, catalog, Entity.ACCOUNT)

        def counts_query() -> ibis.Table:
            status = stage_status(stage, warehouse, AS_OF, catalog)
            return status.aggregate(
                in_stage=status.in_stage.cast("int64").sum(),
                completed=status.completed_at.notnull().cast("int64").sum(),
                left_incomplete=status.exited_incomplete.cast("int64").sum(),
            )

        def ids(table: pa.Table) -> set[str]:
            return set(table.column("account_id").to_pylist())

        def counts(table: pa.Table) -> tuple[int, ...]:
            row = table.to_pylist()[0]
            return tuple(int(row[c] or 0) for c in ("in_stage", "completed", "left_incomplete"))

        def sql_ids(sql: str) -> set[str]:
            return {row[0] for row in con.execute(sql, {"as_of": AS_OF}).fetchall()}

        def sql_counts(sql: str) -> tuple[int, ...]:
            row = con.execute(sql, {"as_of": AS_OF}).fetchone()
            assert row is not None
            return tuple(int(v) for v in row)

        queries: list[tuple[str, Callable[[], ibis.Table], Callable[[pa.Table], Any], Any]] = [
            (
                AUDIENCE,
                lambda: units(audience),
                ids,
                (lambda: sql_ids(AUDIENCE_SQL), lambda: pandas_audience(PandasData(con))),
            ),
            (
                IN_STAGE,
                lambda: units(in_stage),
                ids,
                (lambda: sql_ids(IN_STAGE_SQL), lambda: pandas_in_stage(PandasData(con))),
            ),
            (
                "stage_status counts (in stage, completed, left without completing)",
                counts_query,
                counts,
                (
                    lambda: sql_counts(STAGE_COUNTS_SQL),
                    lambda: pandas_stage_counts(PandasData(con)),
                ),
            ),
        ]

        people = con.execute("SELECT count(*) FROM people").fetchone()
        events = args.accounts * args.events_per_account
        print(
            f"{args.accounts:,} accounts, {people[0] if people else 0:,} people,"
            f" {events:,} events; load_project {load_seconds * 1000:.1f} ms"
        )
        for title, build_query, convert, (hand, pandas_run) in queries:
            # Checked before timing: all three must agree exactly.
            results = {
                "closeloop": convert(build_query().to_pyarrow()),
                "hand-written": hand(),
                "pandas": pandas_run(),
            }
            reference = results["hand-written"]
            size = f"{len(reference):,} accounts" if isinstance(reference, set) else reference
            print(f"\n{title}\n  result: {size}")
            if any(result != reference for result in results.values()):
                for name, result in results.items():
                    shown = len(result) if isinstance(result, set) else result
                    print(f"  {name}: {shown}")
                    if isinstance(result, set) and name != "hand-written":
                        extra, missing = result - reference, reference - result
                        print(f"    extra {sorted(extra)[:5]}, missing {sorted(missing)[:5]}")
                warehouse.close()
                raise SystemExit("the three implementations disagree: this is a bug")
            timings = {
                "hand-written DuckDB SQL": best_of(args.repeats, hand)[0],
                "closeloop (Ibis compiler)": best_of(
                    args.repeats, lambda b=build_query, c=convert: c(b().to_pyarrow())
                )[0],
                "pandas": best_of(args.repeats, pandas_run)[0],
            }
            compile_seconds, sql = best_of(
                args.repeats, lambda b=build_query: ibis.to_sql(b(), dialect="duckdb")
            )
            run_seconds = best_of(args.repeats, lambda s=str(sql): con.execute(s).arrow())[0]
            base = timings["hand-written DuckDB SQL"]
            for name, seconds in timings.items():
                print(f"  {name:28s} {seconds * 1000:9.1f} ms   x{seconds / base:5.2f}")
            print(
                f"  (closeloop: build + to_sql {compile_seconds * 1000:.1f} ms,"
                f" compiled SQL alone {run_seconds * 1000:.1f} ms, {len(str(sql)):,} chars of SQL)"
            )
        warehouse.close()


if __name__ == "__main__":
    main()
