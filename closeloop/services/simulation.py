"""Simulation use case: stream a simulated company into a project's warehouse, day by day.

The simulator produces one :class:`~closeloop.simulate.DayBatch` per day; a few days of batches are
buffered and appended per table in one insert, so memory stays bounded by the buffer (never the
whole dataset) and the warehouse sees a few large inserts instead of thousands of tiny ones.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa

from closeloop.data.warehouse import Warehouse
from closeloop.errors import WarehouseNotEmptyError
from closeloop.services.project import Workspace
from closeloop.simulate import SCENARIOS, CompanySimulator, SimulationConfig, scenario

GROUND_TRUTH_FILE = "simulation.json"
DEFAULT_BATCH_DAYS = 30
DEFAULT_MAX_BUFFERED_ROWS = 2_000_000


@dataclass(frozen=True)
class SimulationProgress:
    """Where a running simulation is: days simulated so far out of all, rows and events so far."""

    days_done: int
    days_total: int
    events: int
    rows: int


ProgressCallback = Callable[[SimulationProgress], None]


@dataclass(frozen=True)
class SimulationResult:
    """What a simulation wrote: rows per table (load order), events, timings, the truth file."""

    config: SimulationConfig
    days: int
    rows: dict[str, int]
    events: int
    seconds: float
    generate_seconds: float
    load_seconds: float
    truth_path: Path

    @property
    def events_per_second(self) -> float:
        return self.events / self.seconds if self.seconds > 0 else 0.0


def scenario_descriptions() -> dict[str, str]:
    """Every simulator scenario by name, with what it shows."""
    return {name: chosen.description for name, chosen in SCENARIOS.items()}


def simulation_config(
    scenario_name: str,
    *,
    accounts: int | None = None,
    days: int | None = None,
    arrival_days: int | None = None,
    seed: int | None = None,
) -> SimulationConfig:
    """The scenario's configuration with the given settings; ``None`` keeps the scenario's own.

    When ``days`` is shortened below the scenario's arrival period and ``arrival_days`` is not
    given, accounts arrive over the whole (shorter) simulation instead.

    >>> simulation_config("default", accounts=60, days=20).arrival_days
    20
    """
    overrides: dict[str, int] = {}
    if accounts is not None:
        overrides["n_accounts"] = accounts
    if days is not None:
        overrides["days"] = days
    if seed is not None:
        overrides["seed"] = seed
    if arrival_days is not None:
        overrides["arrival_days"] = arrival_days
    elif days is not None:
        default_arrival = scenario(scenario_name).arrival_days
        overrides["arrival_days"] = min(default_arrival, max(days, 1))
    return scenario(scenario_name, **overrides)


def simulate_into(
    workspace: Workspace,
    config: SimulationConfig,
    *,
    append: bool = False,
    batch_days: int = DEFAULT_BATCH_DAYS,
    max_buffered_rows: int = DEFAULT_MAX_BUFFERED_ROWS,
    on_progress: ProgressCallback | None = None,
) -> SimulationResult:
    """Simulate ``config`` day by day into the workspace's warehouse and write the ground truth.

    Rows are buffered for ``batch_days`` days, or until ``max_buffered_rows`` rows wait, then
    appended per table, parents first. A warehouse whose ``accounts`` table already has rows is
    refused unless ``append`` is true: simulated customers must never mix silently into real data.
    The simulator's ground truth goes to ``simulation.json`` in the project folder.
    """
    if batch_days < 1:
        raise ValueError(f"batch_days must be at least 1, got {batch_days}")
    warehouse = workspace.warehouse
    if not append:
        _refuse_existing_accounts(warehouse)
    started = time.perf_counter()
    simulator = CompanySimulator(config)
    buffer = _Buffer(warehouse)
    events = 0
    days = config.dates()
    for index, day in enumerate(days, start=1):
        batch = simulator.step(day)
        buffer.add(batch.tables())
        events += batch.events.num_rows
        if index % batch_days == 0 or buffer.rows >= max_buffered_rows:
            buffer.flush()
        if on_progress is not None:
            on_progress(SimulationProgress(index, len(days), events, buffer.total_rows))
    buffer.flush()
    truth_path = workspace.settings.project_dir / GROUND_TRUTH_FILE
    truth_path.write_text(
        json.dumps(simulator.ground_truth(), indent=2, default=str) + "\n", encoding="utf-8"
    )
    seconds = time.perf_counter() - started
    return SimulationResult(
        config=config,
        days=len(days),
        rows=dict(buffer.written),
        events=events,
        seconds=seconds,
        generate_seconds=seconds - buffer.load_seconds,
        load_seconds=buffer.load_seconds,
        truth_path=truth_path,
    )


def _refuse_existing_accounts(warehouse: Warehouse) -> None:
    existing = int(warehouse.table("accounts").count().execute())
    if existing:
        raise WarehouseNotEmptyError(
            f"the warehouse at {warehouse.url} already has {existing:,} accounts; simulated "
            "customers would mix into them. Simulate into a fresh project, or pass --force to "
            "append the simulated rows anyway"
        )


@dataclass
class _Buffer:
    """Days of simulated tables waiting to be appended, and what has been appended so far."""

    warehouse: Warehouse
    pending: dict[str, list[pa.Table]] = field(default_factory=dict)
    written: dict[str, int] = field(default_factory=dict)
    rows: int = 0
    load_seconds: float = 0.0

    @property
    def total_rows(self) -> int:
        return sum(self.written.values()) + self.rows

    def add(self, tables: dict[str, pa.Table]) -> None:
        for name, table in tables.items():
            self.written.setdefault(name, 0)
            if table.num_rows:
                self.pending.setdefault(name, []).append(table)
                self.rows += table.num_rows

    def flush(self) -> None:
        started = time.perf_counter()
        # ``written`` holds every table in load order (parents first), so children follow them.
        for name in self.written:
            tables = self.pending.pop(name, [])
            if tables:
                combined = pa.concat_tables(tables)
                self.warehouse.append(name, combined)
                self.written[name] += combined.num_rows
        self.rows = 0
        self.load_seconds += time.perf_counter() - started
