"""Simulation use case: stream a simulated company into a project's warehouse, day by day.

The simulator produces one :class:`~closeloop.simulate.DayBatch` per day; a few days of batches are
buffered and appended per table in one insert, so memory stays bounded by the buffer (never the
whole dataset) and the warehouse sees a few large inserts instead of thousands of tiny ones.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import date, datetime, timedelta
from functools import partial
from pathlib import Path

import pyarrow as pa

from closeloop.channels.base import Channel, OutboundMessage, Receipt, Sender
from closeloop.channels.email import EMAIL
from closeloop.channels.registry import ACTION_KINDS
from closeloop.data.tables import GROUND_TRUTH
from closeloop.data.warehouse import Warehouse
from closeloop.definitions.catalog import LoadedJob
from closeloop.definitions.models import JobDefinition, WaitStep
from closeloop.engine.dispatcher import Dispatcher
from closeloop.engine.tick import run_tick
from closeloop.errors import WarehouseNotEmptyError, mask_url
from closeloop.services.choices import scenario_descriptions as scenario_descriptions
from closeloop.services.engine_runs import unsubscribe_links
from closeloop.services.power import launch_plan
from closeloop.services.project import Workspace
from closeloop.simulate import (
    CompanySimulator,
    DayBatch,
    Policy,
    SimulationConfig,
    Touch,
    TrueEffect,
    scenario,
)

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
    job_truths: list[JobTruth] = field(default_factory=list)

    @property
    def events_per_second(self) -> float:
        return self.events / self.seconds if self.seconds > 0 else 0.0


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
    run_jobs: bool = False,
    batch_days: int = DEFAULT_BATCH_DAYS,
    max_buffered_rows: int = DEFAULT_MAX_BUFFERED_ROWS,
    on_progress: ProgressCallback | None = None,
) -> SimulationResult:
    """Simulate ``config`` day by day into the workspace's warehouse and write the ground truth.

    Rows are buffered for ``batch_days`` days, or until ``max_buffered_rows`` rows wait, then
    appended per table, parents first. A warehouse whose ``accounts`` table already has rows is
    refused unless ``append`` is true: simulated customers must never mix silently into real data.
    The simulator's ground truth goes to ``simulation.json`` in the project folder.

    With ``run_jobs`` every job of the project runs in lockstep: each day is loaded at once, every
    job ticks at the following midnight and the dispatcher's sends reach the simulated customers
    (through :class:`SimulatedInbox`, never the project's real channels). The true effect of each
    job on its matured enrollments, per variant and segment, then goes to the warehouse table
    ``closeloop_ground_truth`` and to ``simulation.json``.
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
    jobs = list(workspace.project.jobs.values()) if run_jobs else []
    inboxes: dict[str, Sender] = {kind: SimulatedInbox(kind) for kind in ACTION_KINDS}
    lockstep = Lockstep(workspace, simulator, jobs, inboxes) if run_jobs else None
    try:
        for index, day in enumerate(days, start=1):
            if lockstep is not None:  # the engine reads each day before the next one happens
                batch = lockstep.day(day)
                buffer.count(batch.tables())
            else:
                batch = simulator.step(day)
                buffer.add(batch.tables())
                if index % batch_days == 0 or buffer.rows >= max_buffered_rows:
                    buffer.flush()
            events += batch.events.num_rows
            if on_progress is not None:
                on_progress(SimulationProgress(index, len(days), events, buffer.total_rows))
    finally:
        if lockstep is not None:
            lockstep.close()
    buffer.flush()
    truth = simulator.ground_truth()
    truths: list[JobTruth] = []
    if lockstep is not None:
        as_of = datetime.combine(days[-1] + timedelta(days=1), datetime.min.time())
        truths = job_truths(workspace, simulator, jobs, as_of)
        write_ground_truth(warehouse, truths, as_of)
        truth["jobs"] = [asdict(job_truth) for job_truth in truths]
        truth["messages_sent"] = lockstep.sent
    truth_path = workspace.settings.project_dir / GROUND_TRUTH_FILE
    truth_path.write_text(json.dumps(truth, indent=2, default=str) + "\n", encoding="utf-8")
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
        job_truths=truths,
    )


def _refuse_existing_accounts(warehouse: Warehouse) -> None:
    existing = int(warehouse.table("accounts").count().execute())
    if existing:
        raise WarehouseNotEmptyError(
            f"the warehouse at {mask_url(warehouse.url)} already has {existing:,} accounts; "
            "simulated customers would mix into them. Simulate into a fresh project, or pass "
            "--force to append the simulated rows anyway"
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

    def count(self, tables: dict[str, pa.Table]) -> None:
        """Tables that were appended already (by the lockstep): only count their rows."""
        for name, table in tables.items():
            self.written[name] = self.written.get(name, 0) + table.num_rows

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


# -- running jobs in lockstep with the simulated company ------------------------------------------


class SimulatedInbox:
    """The simulated customers' inbox: accepts every message (they are not real people).

    ``closeloop simulate --run-jobs`` delivers through it so a project's real channels (its SMTP
    server, its Slack) never receive messages for simulated accounts; the demo uses a real SMTP
    server on loopback instead.
    """

    def __init__(self, name: str = EMAIL) -> None:
        self.name = name
        self.received = 0

    def send(self, message: OutboundMessage) -> Receipt:
        self.received += 1
        return Receipt()

    def close(self) -> None:
        return None


class Lockstep:
    """One simulated day at a time: load the day, tick every job at midnight, dispatch, deliver.

    The simulated customers learn about exactly the messages the dispatcher sent (with the
    enrollment's arm as the variant), so their behaviour responds to the engine's real decisions.
    """

    def __init__(
        self,
        workspace: Workspace,
        simulator: CompanySimulator,
        jobs: Sequence[LoadedJob],
        channels: Mapping[str, Channel],
    ) -> None:
        self.workspace = workspace
        self.simulator = simulator
        self.jobs = list(jobs)
        self.dispatcher = Dispatcher(workspace.store, channels)
        self.sent = 0

    def day(self, day: date) -> DayBatch:
        workspace, simulator = self.workspace, self.simulator
        batch = simulator.step(day)
        for name, table in batch.tables().items():
            if table.num_rows:
                workspace.warehouse.append(name, table)
        at = datetime.combine(day + timedelta(days=1), datetime.min.time())
        links = unsubscribe_links(workspace)
        for job in self.jobs:
            # The simulator runs the project's jobs: the first day launches them.
            run_tick(
                workspace.project,
                job,
                workspace.warehouse,
                workspace.store,
                at,
                launch=True,
                unsubscribe_url=links.url,
                launch_plan=partial(launch_plan, workspace, job.name, at),
            )
        for delivery in self.dispatcher.dispatch(at).sent:
            simulator.deliver(
                delivery.account_id,
                delivery.sent_at,
                channel=delivery.channel,
                variant=delivery.arm,
            )
            self.sent += 1
        return batch

    def close(self) -> None:
        self.dispatcher.close()


def policy_of(job: JobDefinition, arm: str) -> Policy:
    """What a job does to a unit of ``arm``: its sends, at their offsets from entry.

    >>> from closeloop.definitions.models import JobDefinition
    >>> job = JobDefinition.model_validate({
    ...     "name": "J", "audience": "plan = \"pro\"", "goal": "plan = \"pro\"",
    ...     "duration_days": 30, "steps": [
    ...         {"send": "email", "subject": "Hi", "template": "t"}, {"wait_days": 5},
    ...         {"send": "email", "subject": "Again", "template": "t"}]})
    >>> policy_of(job, "treatment")
    (Touch(offset_days=0.0, channel='email'), Touch(offset_days=5.0, channel='email'))
    """
    offset = 0.0
    touches: list[Touch] = []
    for step in job.steps_of(arm):
        if isinstance(step, WaitStep):
            offset += step.wait_days
        else:
            touches.append(Touch(offset, step.send))
    return tuple(touches)


@dataclass(frozen=True)
class JobTruth:
    """The simulator's exact effects of one job on its matured units, per variant and segment."""

    job_name: str
    horizon_days: float
    units: int
    effects: list[TrueEffect]

    def rows(self, as_of: datetime) -> list[dict[str, object]]:
        return [
            {
                "truth_id": f"{self.job_name}|{effect.variant}|{effect.segment}",
                "job_name": self.job_name,
                "horizon_days": self.horizon_days,
                "as_of": as_of,
                **asdict(effect),
            }
            for effect in self.effects
        ]


def job_truths(
    workspace: Workspace,
    simulator: CompanySimulator,
    jobs: Sequence[LoadedJob],
    as_of: datetime,
) -> list[JobTruth]:
    """Each account-targeted job's true effects on the units whose horizon ended by ``as_of``.

    Units are every enrollment of both arms (the holdout included), so the effect is the sample
    average effect an intention-to-treat comparison with a holdout estimates.
    """
    truths = []
    for job in jobs:
        definition = job.definition
        if definition.target != "account":
            continue  # the simulator models behaviour per account, not per person
        horizon = definition.horizon_days
        enrolled = workspace.store.enrollments_table(definition.name).to_pylist()
        units = [
            (row["account_id"], row["entered_at"])
            for row in enrolled
            if row["entered_at"] + timedelta(days=horizon) <= as_of
        ]
        policies = {arm: policy_of(definition, arm) for arm in definition.arms}
        truths.append(
            JobTruth(
                definition.name,
                horizon,
                len(units),
                simulator.true_effects(units, horizon, policies),
            )
        )
    return truths


def write_ground_truth(warehouse: Warehouse, truths: Sequence[JobTruth], as_of: datetime) -> None:
    """Replace the warehouse's ``closeloop_ground_truth`` table with these truths."""
    rows = [row for truth in truths for row in truth.rows(as_of)]
    columns = {name: [row[name] for row in rows] for name in GROUND_TRUTH.column_names}
    schema = GROUND_TRUTH.ibis_schema().to_pyarrow()
    warehouse.replace(
        GROUND_TRUTH.name,
        pa.Table.from_pydict(columns, schema=schema),
        schema=GROUND_TRUTH.ibis_schema(),
    )
