"""Benchmark: simulating a company and streaming it into a DuckDB warehouse (`closeloop simulate`).

Run with ``.venv/bin/python bench/bench_simulate.py [--quick] [--accounts N --days D ...]``.
It first steps the simulator alone over every day (generation only, batches discarded), then runs
the same configuration through ``simulate_into`` into a fresh project whose warehouse is a DuckDB
file in a temporary folder, and prints events, wall times, events/s, the split between generating
and loading, and the process's peak memory. Nothing here is asserted on time: the numbers are for
people, recorded in bench/README.md.
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from pathlib import Path

from closeloop.services.project import init_project, open_workspace
from closeloop.services.simulation import (
    DEFAULT_BATCH_DAYS,
    DEFAULT_MAX_BUFFERED_ROWS,
    simulate_into,
    simulation_config,
)
from closeloop.simulate import CompanySimulator, SimulationConfig

# (accounts, days, arrival days): about 10 million events with the default scenario, or 1 million.
FULL_SIZE = (30_000, 365, 300)
QUICK_SIZE = (3_000, 365, 300)


def peak_memory_mb() -> float:
    # Linux reports ru_maxrss in kilobytes.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def generate_only(config: SimulationConfig) -> tuple[float, int, int]:
    """Seconds to step the simulator over every day, with the events and rows it produced."""
    started = time.perf_counter()
    simulator = CompanySimulator(config)
    events = rows = 0
    for day in config.dates():
        batch = simulator.step(day)
        events += batch.events.num_rows
        rows += batch.rows
    return time.perf_counter() - started, events, rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="about 1 million events")
    parser.add_argument("--scenario", default="default")
    parser.add_argument("--accounts", type=int)
    parser.add_argument("--days", type=int)
    parser.add_argument("--arrival-days", type=int)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--batch-days", type=int, default=DEFAULT_BATCH_DAYS)
    parser.add_argument("--max-buffered-rows", type=int, default=DEFAULT_MAX_BUFFERED_ROWS)
    parser.add_argument(
        "--skip-generation-only", action="store_true", help="only time the load into DuckDB"
    )
    arguments = parser.parse_args()
    accounts, days, arrival_days = QUICK_SIZE if arguments.quick else FULL_SIZE
    config = simulation_config(
        arguments.scenario,
        accounts=arguments.accounts or accounts,
        days=arguments.days or days,
        arrival_days=arguments.arrival_days or arrival_days,
        seed=arguments.seed,
    )
    print(
        f"scenario {config.name!r}: {config.n_accounts:,} accounts over {config.days} days "
        f"(sign-ups over {config.arrival_days}), seed {config.seed}; "
        f"flush every {arguments.batch_days} days or {arguments.max_buffered_rows:,} rows"
    )
    if not arguments.skip_generation_only:
        seconds, events, rows = generate_only(config)
        print(
            f"generation only: {events:,} events ({rows:,} rows) in {seconds:.1f} s "
            f"= {events / seconds:,.0f} events/s; peak memory so far {peak_memory_mb():,.0f} MB"
        )
    with tempfile.TemporaryDirectory() as temporary:
        folder = Path(temporary) / "project"
        init_project(folder, name="bench")
        environment = {
            "CLOSELOOP_WAREHOUSE_URL": f"duckdb:///{folder / 'warehouse.duckdb'}",
            "CLOSELOOP_STATE_URL": f"sqlite:///{folder / 'state.sqlite'}",
        }
        with open_workspace(folder, environ=environment) as workspace:
            result = simulate_into(
                workspace,
                config,
                batch_days=arguments.batch_days,
                max_buffered_rows=arguments.max_buffered_rows,
            )
        size_mb = (folder / "warehouse.duckdb").stat().st_size / 2**20
    total_rows = sum(result.rows.values())
    print(
        f"simulate into DuckDB: {result.events:,} events ({total_rows:,} rows) in "
        f"{result.seconds:.1f} s = {result.events_per_second:,.0f} events/s "
        f"(generating {result.generate_seconds:.1f} s, loading {result.load_seconds:.1f} s); "
        f"warehouse file {size_mb:,.0f} MB"
    )
    for name, rows in result.rows.items():
        print(f"  {name:<18}{rows:>14,} rows")
    print(f"peak memory (ru_maxrss): {peak_memory_mb():,.0f} MB")


if __name__ == "__main__":
    main()
