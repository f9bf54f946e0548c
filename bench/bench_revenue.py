"""Benchmark: monthly revenue outcomes (endpoint method, default switches) through closeloop vs a
hand-written DuckDB query vs pandas.

Run with ``.venv/bin/python bench/bench_revenue.py [--accounts N] [--subscriptions-per-account K]
[--events M]``. It builds a DuckDB file with synthetic accounts, subscription histories (renewals,
price changes, gaps, churn) and events, checks that the three ways give the same monthly figures
(starting accounts and MRR, new, expansion, contraction, churned, reactivation and ending MRR),
and prints each one's best-of-N wall time and its ratio to the hand-written query. Nothing is
asserted on time: the numbers are for people, recorded in bench/README.md.
"""

from __future__ import annotations

import argparse
import tempfile
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
from timing import best_of

from closeloop.analysis import revenue
from closeloop.data.warehouse import Warehouse

START, END = date(2024, 1, 1), date(2025, 1, 1)
SEGMENTS = ["self_serve", "mid_market", "enterprise"]
FIELDS = (
    "starting_accounts",
    "starting_mrr",
    "new_mrr",
    "expansion_mrr",
    "contraction_mrr",
    "churned_mrr",
    "reactivation_mrr",
    "ending_mrr",
)

HAND_WRITTEN = """
WITH periods AS (
    SELECT p_start, p_end FROM (VALUES {values}) AS p(p_start, p_end)
),
paid AS (SELECT account_id, start_date, end_date, mrr FROM subscriptions),
before AS (
    SELECT p.p_start, s.account_id, sum(s.mrr) AS mrr
    FROM periods p JOIN paid s
      ON s.start_date <= p.p_start - 1 AND (s.end_date IS NULL OR s.end_date > p.p_start - 1)
    GROUP BY ALL
),
after AS (
    SELECT p.p_start, s.account_id, sum(s.mrr) AS mrr
    FROM periods p JOIN paid s
      ON s.start_date <= p.p_end - 1 AND (s.end_date IS NULL OR s.end_date > p.p_end - 1)
    GROUP BY ALL
),
first_paid AS (
    SELECT account_id, min(start_date) AS first_day FROM paid WHERE mrr > 0 GROUP BY 1
),
both_ends AS (
    SELECT coalesce(b.p_start, a.p_start) AS p_start,
           coalesce(b.account_id, a.account_id) AS account_id,
           coalesce(b.mrr, 0) AS m0, coalesce(a.mrr, 0) AS m1
    FROM before b FULL JOIN after a ON b.p_start = a.p_start AND b.account_id = a.account_id
)
SELECT e.p_start,
       count(*) FILTER (WHERE m0 > 0) AS starting_accounts,
       coalesce(sum(m0) FILTER (WHERE m0 > 0), 0) AS starting_mrr,
       coalesce(sum(m1) FILTER (WHERE m0 <= 0 AND m1 > 0 AND f.first_day >= e.p_start), 0)
           AS new_mrr,
       coalesce(sum(m1 - m0) FILTER (WHERE m0 > 0 AND m1 > m0), 0) AS expansion_mrr,
       coalesce(sum(m0 - m1) FILTER (WHERE m0 > 0 AND m1 > 0 AND m1 < m0), 0) AS contraction_mrr,
       coalesce(sum(m0) FILTER (WHERE m0 > 0 AND m1 <= 0), 0) AS churned_mrr,
       coalesce(sum(m1) FILTER (WHERE m0 <= 0 AND m1 > 0 AND f.first_day < e.p_start), 0)
           AS reactivation_mrr,
       coalesce(sum(m1) FILTER (WHERE m1 > 0), 0) AS ending_mrr
FROM both_ends e LEFT JOIN first_paid f USING (account_id)
GROUP BY e.p_start ORDER BY e.p_start
"""


def months() -> list[tuple[date, date]]:
    return [(p.start, p.end) for p in revenue.split_periods(START, END, "month")[1:]]


def build(path: Path, accounts: int, per_account: int, events: int, seed: int = 3) -> Warehouse:
    """Accounts signing up over 2022–2024, each with a chain of subscription rows: back to back
    (renewals and price changes), sometimes after a gap (a return), the last one sometimes open."""
    rng = np.random.default_rng(seed)
    warehouse = Warehouse.connect(f"duckdb:///{path}")
    warehouse.ensure_tables()
    ids = np.array([f"acc_{i:07d}" for i in range(accounts)])
    first = np.datetime64("2022-01-01") + rng.integers(0, 1000, accounts).astype("timedelta64[D]")
    warehouse.append(
        "accounts",
        warehouse.arrow_for(
            "accounts",
            {
                "account_id": ids.tolist(),
                "created_at": pd.to_datetime(first).to_pydatetime().tolist(),
                "segment": rng.choice(
                    ["self_serve", "mid_market", "enterprise"], accounts
                ).tolist(),
            },
        ),
    )
    rows = accounts * per_account
    owner = np.repeat(np.arange(accounts), per_account)
    length = rng.integers(20, 90, rows).astype("timedelta64[D]")
    gap = np.where(rng.random(rows) < 0.08, rng.integers(1, 60, rows), 0).astype("timedelta64[D]")
    steps = (length + gap).reshape(accounts, per_account)
    starts = first[:, None] + np.cumsum(steps, axis=1) - steps + gap.reshape(accounts, per_account)
    ends = starts + length.reshape(accounts, per_account)
    base = rng.choice([0.0, 49.0, 99.0, 299.0, 990.0], accounts, p=[0.05, 0.4, 0.3, 0.2, 0.05])
    drift = rng.choice([0.0, 0.0, 0.0, 10.0, -10.0, 50.0], rows).reshape(accounts, per_account)
    mrr = np.maximum(base[:, None] + np.cumsum(drift, axis=1), 0.0).ravel()
    stops = rng.integers(1, per_account + 1, accounts)  # rows after an account's stop are dropped
    keep = (np.arange(per_account)[None, :] < stops[:, None]).ravel()
    open_last = (rng.random(accounts) < 0.6)[:, None] & (
        np.arange(per_account)[None, :] == (stops - 1)[:, None]
    )
    end_values = np.where(open_last.ravel(), np.datetime64("NaT"), ends.ravel())
    subscriptions = pa.table(
        {
            "subscription_id": pa.array([f"sub_{i}" for i in np.flatnonzero(keep)]),
            "account_id": pa.array(ids[owner][keep]),
            "plan": pa.nulls(int(keep.sum()), pa.string()),
            "start_date": pa.array(starts.ravel()[keep].astype("datetime64[D]"), pa.date32()),
            "end_date": pa.array(end_values[keep].astype("datetime64[D]"), pa.date32()),
            "mrr": pa.array(mrr[keep]),
            "billing_period_months": pa.array(np.ones(int(keep.sum()), dtype=np.int64)),
            "quantity": pa.nulls(int(keep.sum()), pa.int64()),
            "properties": pa.nulls(int(keep.sum()), pa.string()),
        }
    )
    warehouse.append("subscriptions", subscriptions)
    connection = warehouse.backend.con  # the DuckDB connection under Ibis: events by SQL, fast
    connection.execute(
        f"""
        INSERT INTO events (event_id, account_id, person_id, name, "timestamp", value, properties)
        SELECT 'ev_' || i, 'acc_' || lpad(CAST(i % {accounts} AS VARCHAR), 7, '0'), NULL,
               CASE WHEN i % 10 < 6 THEN 'login' ELSE 'feature_used' END,
               TIMESTAMP '2023-01-01' + to_seconds(CAST(hash(i) % 63072000 AS BIGINT)),
               NULL, NULL
        FROM range({events}) t(i)
        """
    )
    return warehouse


def closeloop_figures(warehouse: Warehouse) -> pd.DataFrame:
    periods = revenue.split_periods(START, END, "month")
    computed = revenue.compute(warehouse, START, END, periods, by=None, policy=revenue.Policy())
    rows = [
        {"p_start": figures.period_start, **{f: getattr(figures, f) for f in FIELDS}}
        for (key, _group), figures in computed.items()
        if key != "window"
    ]
    return pd.DataFrame(rows).sort_values("p_start").reset_index(drop=True)


def duckdb_figures(warehouse: Warehouse) -> pd.DataFrame:
    values = ", ".join(f"(DATE '{lo}', DATE '{hi}')" for lo, hi in months())
    result = warehouse.backend.con.execute(HAND_WRITTEN.format(values=values)).df()
    result["p_start"] = pd.to_datetime(result["p_start"]).dt.date
    return result


def pandas_figures(warehouse: Warehouse) -> pd.DataFrame:
    subs = warehouse.backend.con.execute(
        "SELECT account_id, start_date, end_date, mrr FROM subscriptions"
    ).df()
    subs["start_date"] = pd.to_datetime(subs["start_date"])
    subs["end_date"] = pd.to_datetime(subs["end_date"])
    first_paid = subs[subs.mrr > 0].groupby("account_id").start_date.min()

    def mrr_on(day: pd.Timestamp) -> pd.Series:
        active = (subs.start_date <= day) & (subs.end_date.isna() | (subs.end_date > day))
        return subs[active].groupby("account_id").mrr.sum()

    rows = []
    for lo, hi in months():
        m0 = mrr_on(pd.Timestamp(lo - timedelta(days=1)))
        m1 = mrr_on(pd.Timestamp(hi - timedelta(days=1)))
        both = pd.concat([m0.rename("m0"), m1.rename("m1")], axis=1).fillna(0.0)
        before = both.m0 > 0
        after = both.m1 > 0
        fresh = first_paid.reindex(both.index) >= pd.Timestamp(lo)
        rows.append(
            {
                "p_start": lo,
                "starting_accounts": int(before.sum()),
                "starting_mrr": both.m0[before].sum(),
                "new_mrr": both.m1[~before & after & fresh].sum(),
                "expansion_mrr": (both.m1 - both.m0)[before & (both.m1 > both.m0)].sum(),
                "contraction_mrr": (both.m0 - both.m1)[before & after & (both.m1 < both.m0)].sum(),
                "churned_mrr": both.m0[before & ~after].sum(),
                "reactivation_mrr": both.m1[~before & after & ~fresh].sum(),
                "ending_mrr": both.m1[after].sum(),
            }
        )
    return pd.DataFrame(rows)


def same(a: pd.DataFrame, b: pd.DataFrame) -> bool:
    for field in FIELDS:
        if not np.allclose(a[field].to_numpy(float), b[field].to_numpy(float), rtol=0, atol=1e-4):
            print(f"  differs in {field}:\n{a[field].tolist()}\n{b[field].tolist()}")
            return False
    return list(a.p_start) == list(b.p_start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--accounts", type=int, default=100_000)
    parser.add_argument("--subscriptions-per-account", type=int, default=20)
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        warehouse = build(
            Path(folder) / "bench.duckdb",
            args.accounts,
            args.subscriptions_per_account,
            args.events,
        )
        count = warehouse.backend.con.execute("SELECT count(*) FROM subscriptions").fetchone()
        events = warehouse.backend.con.execute("SELECT count(*) FROM events").fetchone()
        print(
            f"{args.accounts:,} accounts, {count[0] if count else 0:,} subscription rows, "
            f"{events[0] if events else 0:,} events; 12 months, endpoint method"
        )
        timings = {}
        results = {}
        for name, run in (
            ("hand-written DuckDB", duckdb_figures),
            ("closeloop", closeloop_figures),
            ("pandas", pandas_figures),
        ):
            timings[name], results[name] = best_of(args.repeats, lambda run=run: run(warehouse))
        reference = results["hand-written DuckDB"]
        for name, result in results.items():
            assert same(reference, result), f"{name} disagrees with the hand-written query"
        base = timings["hand-written DuckDB"]
        for name, seconds in timings.items():
            print(f"{name:>20}: {seconds * 1000:8.0f} ms  (x{seconds / base:.1f})")
        warehouse.close()


if __name__ == "__main__":
    main()
