"""Success plans in the state store: plans, objectives, renegotiations, observations and
versions (the only SQL on them).

Every change to a plan runs in one transaction that first moves the plan's ``version`` up by
one, conditionally on the version the writer read when it gave one: of two writers holding the
same version exactly one moves it, and the other finds no row to update and gets a
:class:`~closeloop.errors.ConcurrencyError` with nothing written (PostgreSQL re-checks the
condition after the first writer commits; SQLite runs writers one at a time). The same
transaction applies the change, stores the new version's state as JSON and writes the audit
entry. Observations (values over time) are facts, not edits: they do not move the version.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from datetime import date, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from closeloop.engine import schema
from closeloop.engine.state import StateStore
from closeloop.errors import ConcurrencyError, NotFoundError

MANUAL = "manual"
EXPRESSION = "expression"


@dataclass(frozen=True)
class PlanRow:
    id: int
    account_id: str
    title: str
    owner: str | None
    version: int
    created_at: datetime
    created_by: str
    updated_at: datetime
    updated_by: str


@dataclass(frozen=True)
class ObjectiveRow:
    id: int
    plan_id: int
    title: str
    measure: str  # an expression, or "manual"
    baseline: float
    target: float  # the latest agreed target
    target_date: date
    owner: str | None
    dropped_at: datetime | None
    created_at: datetime


@dataclass(frozen=True)
class RenegotiationRow:
    id: int
    objective_id: int
    old_target: float
    old_target_date: date
    new_target: float
    new_target_date: date
    reason: str
    agreed_by: str
    recorded_by: str
    recorded_at: datetime


@dataclass(frozen=True)
class ObservationRow:
    objective_id: int
    observed_at: datetime
    value: float
    source: str  # expression or manual
    recorded_by: str
    recorded_at: datetime


@dataclass(frozen=True)
class PlanState:
    """A plan as one version holds it: the plan, its objectives and their renegotiations."""

    plan: PlanRow
    objectives: tuple[ObjectiveRow, ...]
    renegotiations: tuple[RenegotiationRow, ...]


@dataclass(frozen=True)
class VersionRow:
    plan_id: int
    version: int
    at: datetime
    actor: str
    change: str


@dataclass(frozen=True)
class NewObjective:
    """An objective to add; ``baseline`` is its value now (a first observation records it)."""

    title: str
    measure: str
    baseline: float
    target: float
    target_date: date
    owner: str | None


# -- reading --------------------------------------------------------------------------------


def _plan(row: Any) -> PlanRow:
    m = row._mapping
    return PlanRow(**{name: m[name] for name in PlanRow.__dataclass_fields__})


def _objective(row: Any) -> ObjectiveRow:
    m = row._mapping
    return ObjectiveRow(**{name: m[name] for name in ObjectiveRow.__dataclass_fields__})


def _renegotiation(row: Any) -> RenegotiationRow:
    m = row._mapping
    return RenegotiationRow(**{name: m[name] for name in RenegotiationRow.__dataclass_fields__})


def _observation(row: Any) -> ObservationRow:
    m = row._mapping
    return ObservationRow(**{name: m[name] for name in ObservationRow.__dataclass_fields__})


def _state(connection: Connection, plan_id: int) -> PlanState:
    plans, objectives = schema.success_plans, schema.plan_objectives
    row = connection.execute(sa.select(plans).where(plans.c.id == plan_id)).one_or_none()
    if row is None:
        raise NotFoundError(f"no success plan {plan_id}")
    objective_rows = connection.execute(
        sa.select(objectives).where(objectives.c.plan_id == plan_id).order_by(objectives.c.id)
    ).all()
    renegotiations = schema.plan_renegotiations
    renegotiation_rows = connection.execute(
        sa.select(renegotiations)
        .where(renegotiations.c.objective_id.in_([r._mapping["id"] for r in objective_rows]))
        .order_by(renegotiations.c.id)
    ).all()
    return PlanState(
        _plan(row),
        tuple(_objective(r) for r in objective_rows),
        tuple(_renegotiation(r) for r in renegotiation_rows),
    )


def plan_state(store: StateStore, plan_id: int) -> PlanState:
    """The current state of a plan; NotFoundError if there is none with that id."""
    with store.engine.connect() as connection:
        return _state(connection, plan_id)


def plan_ids(
    store: StateStore, *, account_id: str | None = None, owner: str | None = None
) -> list[int]:
    """Ids of the plans of an account (or all), with this plan owner or objective owner."""
    plans, objectives = schema.success_plans, schema.plan_objectives
    query = sa.select(plans.c.id).order_by(plans.c.id)
    if account_id is not None:
        query = query.where(plans.c.account_id == account_id)
    if owner is not None:
        owned = sa.select(objectives.c.plan_id).where(objectives.c.owner == owner)
        query = query.where(sa.or_(plans.c.owner == owner, plans.c.id.in_(owned)))
    with store.engine.connect() as connection:
        return [row[0] for row in connection.execute(query)]


def versions(store: StateStore, plan_id: int) -> list[VersionRow]:
    """Every version of a plan, oldest first."""
    table = schema.success_plan_versions
    with store.engine.connect() as connection:
        rows = connection.execute(
            sa.select(table.c.plan_id, table.c.version, table.c.at, table.c.actor, table.c.change)
            .where(table.c.plan_id == plan_id)
            .order_by(table.c.version)
        ).all()
    return [VersionRow(**dict(row._mapping)) for row in rows]


def state_at_version(store: StateStore, plan_id: int, version: int) -> PlanState:
    """The plan as version ``version`` left it; NotFoundError naming the versions there are."""
    table = schema.success_plan_versions
    with store.engine.connect() as connection:
        text = connection.execute(
            sa.select(table.c.state).where(table.c.plan_id == plan_id, table.c.version == version)
        ).scalar_one_or_none()
        if text is None:
            current = connection.execute(
                sa.select(schema.success_plans.c.version).where(
                    schema.success_plans.c.id == plan_id
                )
            ).scalar_one_or_none()
    if text is None:
        if current is None:
            raise NotFoundError(f"no success plan {plan_id}")
        raise NotFoundError(f"success plan {plan_id} has versions 1 to {current}, not {version}")
    return _decode(text)


def states_as_of(store: StateStore, at: datetime) -> list[PlanState]:
    """Every plan as its latest version at or before ``at`` left it (plans created later are
    absent): the agreed targets of that moment, for point-in-time rates."""
    table = schema.success_plan_versions
    latest = (
        sa.select(table.c.plan_id, sa.func.max(table.c.version).label("version"))
        .where(table.c.at <= at)
        .group_by(table.c.plan_id)
        .subquery()
    )
    query = (
        sa.select(table.c.state)
        .join(
            latest,
            sa.and_(table.c.plan_id == latest.c.plan_id, table.c.version == latest.c.version),
        )
        .order_by(table.c.plan_id)
    )
    with store.engine.connect() as connection:
        return [_decode(row[0]) for row in connection.execute(query)]


def observations(store: StateStore, objective_ids: Sequence[int]) -> list[ObservationRow]:
    """The observations of these objectives, by objective and time."""
    if not objective_ids:
        return []
    table = schema.plan_observations
    query = (
        sa.select(*[table.c[name] for name in ObservationRow.__dataclass_fields__])
        .where(table.c.objective_id.in_(list(objective_ids)))
        .order_by(table.c.objective_id, table.c.observed_at, table.c.id)
    )
    with store.engine.connect() as connection:
        return [_observation(row) for row in connection.execute(query)]


def open_expression_objectives(store: StateStore) -> list[tuple[PlanRow, ObjectiveRow]]:
    """Objectives measured by an expression and not dropped, with their plans."""
    plans, objectives = schema.success_plans, schema.plan_objectives
    query = (
        sa.select(plans, objectives)
        .join(objectives, objectives.c.plan_id == plans.c.id)
        .where(objectives.c.measure != MANUAL, objectives.c.dropped_at.is_(None))
        .order_by(objectives.c.id)
    )
    with store.engine.connect() as connection:
        rows = connection.execute(query).all()
    found = []
    for row in rows:
        m = row._mapping
        plan = PlanRow(
            **{n: m[plans.c[n]] for n in PlanRow.__dataclass_fields__},
        )
        objective = ObjectiveRow(
            **{n: m[objectives.c[n]] for n in ObjectiveRow.__dataclass_fields__},
        )
        found.append((plan, objective))
    return found


# -- the state as JSON (each version keeps one) ---------------------------------------------


def _encode_value(value: Any) -> Any:
    return value.isoformat() if isinstance(value, date) else value


_DATES = {"target_date", "old_target_date", "new_target_date"}
_TIMES = {"created_at", "updated_at", "dropped_at", "recorded_at"}


def _decode_fields(data: dict[str, Any]) -> dict[str, Any]:
    decoded = dict(data)
    for name, value in data.items():
        if value is None:
            continue
        if name in _DATES:
            decoded[name] = date.fromisoformat(value)
        elif name in _TIMES:
            decoded[name] = datetime.fromisoformat(value)
    return decoded


def _encode(state: PlanState) -> str:
    def fields(row: Any) -> dict[str, Any]:
        return {name: _encode_value(value) for name, value in asdict(row).items()}

    return json.dumps(
        {
            "plan": fields(state.plan),
            "objectives": [fields(o) for o in state.objectives],
            "renegotiations": [fields(r) for r in state.renegotiations],
        },
        sort_keys=True,
    )


def _decode(text: str) -> PlanState:
    data = json.loads(text)
    return PlanState(
        PlanRow(**_decode_fields(data["plan"])),
        tuple(ObjectiveRow(**_decode_fields(o)) for o in data["objectives"]),
        tuple(RenegotiationRow(**_decode_fields(r)) for r in data["renegotiations"]),
    )


# -- writing --------------------------------------------------------------------------------


def _insert_objectives(
    connection: Connection,
    plan_id: int,
    new: Sequence[NewObjective],
    *,
    sources: Sequence[str],
    actor: str,
    now: datetime,
) -> list[int]:
    ids = []
    for objective, source in zip(new, sources, strict=True):
        objective_id = connection.execute(
            schema.plan_objectives.insert().values(
                plan_id=plan_id,
                title=objective.title,
                measure=objective.measure,
                baseline=objective.baseline,
                target=objective.target,
                target_date=objective.target_date,
                owner=objective.owner,
                created_at=now,
            )
        ).inserted_primary_key[0]  # type: ignore[index]
        connection.execute(
            schema.plan_observations.insert().values(
                objective_id=objective_id,
                observed_at=now,
                value=objective.baseline,
                source=source,
                recorded_by=actor,
                recorded_at=now,
            )
        )
        ids.append(objective_id)
    return ids


def _source(measure: str) -> str:
    return MANUAL if measure == MANUAL else EXPRESSION


def _snapshot(
    connection: Connection, store: StateStore, plan_id: int, actor: str, change: str, now: datetime
) -> PlanState:
    state = _state(connection, plan_id)
    connection.execute(
        schema.success_plan_versions.insert().values(
            plan_id=plan_id,
            version=state.plan.version,
            at=now,
            actor=actor,
            change=change[:500],
            state=_encode(state),
        )
    )
    store.audit(
        connection,
        actor,
        "plan.change",
        f"plan:{plan_id}",
        {"version": state.plan.version, "change": change},
    )
    return state


def create_plan(
    store: StateStore,
    *,
    account_id: str,
    title: str,
    owner: str | None,
    objectives: Sequence[NewObjective],
    actor: str,
    now: datetime,
) -> PlanState:
    """A new plan at version 1 with its objectives (each baseline recorded as an observation)."""
    with store.engine.begin() as connection:
        plan_id = connection.execute(
            schema.success_plans.insert().values(
                account_id=account_id,
                title=title,
                owner=owner,
                version=1,
                created_at=now,
                created_by=actor,
                updated_at=now,
                updated_by=actor,
            )
        ).inserted_primary_key[0]  # type: ignore[index]
        _insert_objectives(
            connection,
            plan_id,
            objectives,
            sources=[_source(o.measure) for o in objectives],
            actor=actor,
            now=now,
        )
        return _snapshot(connection, store, plan_id, actor, f"created plan {title!r}", now)


def change_plan(
    store: StateStore,
    plan_id: int,
    *,
    expected_version: int | None,
    actor: str,
    now: datetime,
    change: str,
    apply: Callable[[Connection, PlanState], None],
) -> PlanState:
    """Move the plan to its next version and ``apply`` a change, in one transaction.

    With ``expected_version`` the move happens only if the plan is still at that version;
    otherwise ConcurrencyError and nothing is written. ``apply`` sees the state before the
    change (under the new version number) and writes through the connection.
    """
    plans = schema.success_plans
    with store.engine.begin() as connection:
        condition = [plans.c.id == plan_id]
        if expected_version is not None:
            condition.append(plans.c.version == expected_version)
        moved = connection.execute(
            plans.update()
            .where(*condition)
            .values(version=plans.c.version + 1, updated_at=now, updated_by=actor)
        ).rowcount
        if moved == 0:
            current = connection.execute(
                sa.select(plans.c.version).where(plans.c.id == plan_id)
            ).scalar_one_or_none()
            if current is None:
                raise NotFoundError(f"no success plan {plan_id}")
            raise ConcurrencyError(
                f"success plan {plan_id} is at version {current}, not {expected_version}: "
                "someone changed it since it was read; nothing was written (show the plan "
                "again and repeat the change against the new version)"
            )
        apply(connection, _state(connection, plan_id))
        return _snapshot(connection, store, plan_id, actor, change, now)


def add_objectives(
    connection: Connection, plan_id: int, new: Sequence[NewObjective], *, actor: str, now: datetime
) -> list[int]:
    """Insert objectives into a plan (inside :func:`change_plan`)."""
    return _insert_objectives(
        connection,
        plan_id,
        new,
        sources=[_source(o.measure) for o in new],
        actor=actor,
        now=now,
    )


def update_plan_row(connection: Connection, plan_id: int, values: dict[str, Any]) -> None:
    connection.execute(
        schema.success_plans.update().where(schema.success_plans.c.id == plan_id).values(**values)
    )


def update_objective_row(connection: Connection, objective_id: int, values: dict[str, Any]) -> None:
    connection.execute(
        schema.plan_objectives.update()
        .where(schema.plan_objectives.c.id == objective_id)
        .values(**values)
    )


def insert_renegotiation(connection: Connection, row: RenegotiationRow) -> None:
    """Record a renegotiation and move the objective to the new target (inside change_plan)."""
    values = asdict(row)
    del values["id"]
    connection.execute(schema.plan_renegotiations.insert().values(**values))
    update_objective_row(
        connection,
        row.objective_id,
        {"target": row.new_target, "target_date": row.new_target_date},
    )


def insert_observation(connection: Connection, row: ObservationRow) -> None:
    connection.execute(schema.plan_observations.insert().values(**asdict(row)))


def record_observations(store: StateStore, rows: Sequence[ObservationRow], actor: str) -> int:
    """Record evaluated values, skipping any already recorded for the same objective, time and
    source (a re-run is a no-op); the count recorded is audited. Returns that count."""
    table = schema.plan_observations
    recorded = 0
    with store.engine.begin() as connection:
        for row in rows:
            exists = connection.execute(
                sa.select(table.c.id).where(
                    table.c.objective_id == row.objective_id,
                    table.c.observed_at == row.observed_at,
                    table.c.source == row.source,
                )
            ).first()
            if exists is None:
                insert_observation(connection, row)
                recorded += 1
        if recorded:
            store.audit(connection, actor, "plan.check", "plans", {"recorded": recorded})
    return recorded


def observed_on(store: StateStore, objective_ids: Sequence[int], day: date) -> set[int]:
    """The objectives among these with an expression observation on ``day`` (UTC)."""
    if not objective_ids:
        return set()
    table = schema.plan_observations
    start = datetime(day.year, day.month, day.day)
    end = datetime.fromordinal(start.toordinal() + 1)
    query = sa.select(table.c.objective_id).where(
        table.c.objective_id.in_(list(objective_ids)),
        table.c.source == EXPRESSION,
        table.c.observed_at >= start,
        table.c.observed_at < end,
    )
    with store.engine.connect() as connection:
        return {row[0] for row in connection.execute(query)}
