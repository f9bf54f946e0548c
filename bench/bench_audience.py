"""Benchmark: evaluating a job audience through closeloop's compiler vs hand-written SQL vs pandas.

Run with ``.venv/bin/python bench/bench_audience.py [--accounts N] [--events-per-account K]``.
It builds a DuckDB file with synthetic accounts and events, checks that the three ways return the
same accounts, and prints each one's best-of-N wall time and its ratio to the hand-written query.
Nothing here is asserted on time: the numbers are for people, recorded in bench/README.md.
"""

from __future__ import annotations

import argparse
import tempfile
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
from timing import best_of

from closeloop.data.compiler import matching_accounts
from closeloop.data.warehouse import Warehouse
from closeloop.definitions.expressions import parse_expression

AUDIENCE = 'signup_date within last 14 days and count(event "integration_connected") = 0'
AS_OF = datetime(2024, 6, 1)

HAND_WRITTEN = """
SELECT a.account_id
FROM accounts a
LEFT JOIN (
    SELECT account_id, count(*) AS n
    FROM events
    WHERE name = 'integration_connected' AND "timestamp" <= $as_of
    GROUP BY account_id
) e USING (account_id)
WHERE a.created_at <= $as_of
  AND a.created_at >= $as_of - INTERVAL 14 DAY
  AND coalesce(e.n, 0) = 0
"""


def build(path: Path, accounts: int, events_per_account: int, seed: int = 1) -> Warehouse:
    rng = np.random.default_rng(seed)
    warehouse = Warehouse.connect(f"duckdb:///{path}")
    warehouse.ensure_tables()
    ids = np.array([f"acc_{i:07d}" for i in range(accounts)])
    created = AS_OF - pd.to_timedelta(rng.uniform(0, 120, accounts), unit="D")
    warehouse.append(
        "accounts",
        warehouse.arrow_for(
            "accounts",
            {"account_id": ids.tolist(), "created_at": created.to_pydatetime().tolist()},
        ),
    )
    n = accounts * events_per_account
    names = np.array(["login", "feature_used", "report_viewed", "integration_connected"])
    chunk = 2_000_000
    for start in range(0, n, chunk):
        size = min(chunk, n - start)
        owner = rng.integers(0, accounts, size)
        offsets = rng.uniform(0, 150, size)
        table = pa.table(
            {
                "event_id": pa.array([f"ev_{start + i}" for i in range(size)]),
                "account_id": pa.array(ids[owner]),
                "person_id": pa.nulls(size, pa.string()),
                "name": pa.array(names[rng.choice(4, size, p=[0.6, 0.3, 0.095, 0.005])]),
                "timestamp": pa.array(
                    (
                        np.datetime64(AS_OF - timedelta(days=120))
                        + (offsets * 86_400e6).astype("timedelta64[us]")
                    ),
                    pa.timestamp("us"),
                ),
                "value": pa.nulls(size, pa.float64()),
                "properties": pa.nulls(size, pa.string()),
            }
        )
        warehouse.append("events", table)
    return warehouse


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--accounts", type=int, default=50_000)
    parser.add_argument("--events-per-account", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        warehouse = build(Path(folder) / "bench.duckdb", args.accounts, args.events_per_account)
        audience = parse_expression(AUDIENCE)
        con = warehouse.backend.con

        def closeloop() -> set[str]:
            table = matching_accounts(audience, warehouse, AS_OF).to_pyarrow()
            return set(table.column("account_id").to_pylist())

        def hand_written() -> set[str]:
            rows = con.execute(HAND_WRITTEN, {"as_of": AS_OF}).fetchall()
            return {row[0] for row in rows}

        def pandas_version() -> set[str]:
            accounts = con.execute("SELECT account_id, created_at FROM accounts").df()
            events = con.execute('SELECT account_id, name, "timestamp" FROM events').df()
            goal = events[
                (events["name"] == "integration_connected") & (events["timestamp"] <= AS_OF)
            ]
            done = set(goal["account_id"])
            recent = accounts[
                (accounts["created_at"] <= AS_OF)
                & (accounts["created_at"] >= AS_OF - timedelta(days=14))
            ]
            return set(recent["account_id"]) - done

        timings = {}
        results = {}
        for name, run in (
            ("hand-written DuckDB SQL", hand_written),
            ("closeloop (Ibis compiler)", closeloop),
            ("pandas", pandas_version),
        ):
            timings[name], results[name] = best_of(args.repeats, run)
        reference = results["hand-written DuckDB SQL"]
        if any(result != reference for result in results.values()):
            raise SystemExit("the three implementations disagree: this is a bug")
        events = args.accounts * args.events_per_account
        print(f"audience: {AUDIENCE}")
        print(f"{args.accounts:,} accounts, {events:,} events, {len(reference):,} match")
        base = timings["hand-written DuckDB SQL"]
        for name, seconds in timings.items():
            print(f"  {name:28s} {seconds * 1000:9.1f} ms   x{seconds / base:5.2f}")
        warehouse.close()


if __name__ == "__main__":
    main()
