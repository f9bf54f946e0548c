"""Expressions to Ibis: audiences, goals, cohorts and stages evaluated in the warehouse, as of T.

Point in time: only events with ``timestamp <= T`` and units created by T exist; relative times
("within last 14 days") count from T; stored attributes have the value valid at T (changes from
re-imports and write-backs are kept in ``attribute_history``, see ``closeloop.data.history``).
Missing values never match a comparison (a NULL ``plan`` is neither ``= "pro"`` nor
``!= "pro"``), so ``not (plan = "pro")`` does match it; ``has no value`` asks for missing values
explicitly. Literals reach SQL only as escaped literals produced by
Ibis/sqlglot, never by string concatenation.

Compilation has two passes over the tree: the first registers the per-unit tables a predicate
needs on its :class:`~closeloop.data.frame.Frame` and returns closures; the second applies the
closures to the joined frame.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Any

import ibis
import ibis.expr.types as ir
import pyarrow as pa

from closeloop.data import history
from closeloop.data.attributes import ALIASES, account_attributes, person_attributes
from closeloop.data.frame import ACCOUNT_PREFIX, Frame, unit_key
from closeloop.data.outcome_attributes import ZERO_WHEN_ABSENT, outcome_attribute
from closeloop.data.rollups import Rollup
from closeloop.data.tables import ENROLLMENTS
from closeloop.data.warehouse import Warehouse
from closeloop.definitions.builtins import BUILTIN_ACCOUNT_ATTRIBUTES
from closeloop.definitions.expressions import (
    And,
    Attribute,
    Comparator,
    Comparison,
    Contains,
    Entity,
    EventCount,
    EventFilter,
    EventTime,
    Expression,
    HasValue,
    InList,
    Literal,
    LiteralKind,
    Lower,
    Membership,
    MembershipKind,
    MembershipVerb,
    MoreThanAgo,
    Not,
    Operand,
    Or,
    People,
    PeopleCount,
    Quantifier,
    WithinLast,
    WithinNext,
    mentions_person,
)
from closeloop.definitions.models import EventFunction, RollupFunction
from closeloop.definitions.project import Catalog, LoadedCohort, LoadedStage
from closeloop.definitions.rules import threshold

# Stands in for "never" when taking the earliest of several times.
_NEVER = datetime(9999, 1, 1)
SECONDS_PER_DAY = 86_400.0

BoolFn = Callable[[ir.Table], ir.BooleanValue]
ValueFn = Callable[[ir.Table], ir.Value]


# Goals count(event X) >= k up to this k are dated from the events after the earliest entry
# (one column per possible position of the k-th event); larger k rank all of X's events.
MAX_BOUNDED_K = 20


def default_catalog() -> Catalog:
    """Stored attributes only: no computed attributes, cohorts, stages or jobs."""
    return Catalog(account_attributes(), person_attributes())


def _literal(literal: Literal) -> ir.Value:
    kinds = {
        LiteralKind.TIMESTAMP: "timestamp",
        LiteralKind.DATE: "date",
        LiteralKind.NUMBER: "float64",
        LiteralKind.BOOLEAN: "boolean",
        LiteralKind.STRING: "string",
    }
    return ibis.literal(literal.value, type=kinds[literal.kind])


_COMPARATORS: dict[Comparator, Callable[[Any, Any], ir.BooleanValue]] = {
    Comparator.EQ: lambda a, b: a == b,
    Comparator.NE: lambda a, b: a != b,
    Comparator.LT: lambda a, b: a < b,
    Comparator.LE: lambda a, b: a <= b,
    Comparator.GT: lambda a, b: a > b,
    Comparator.GE: lambda a, b: a >= b,
}


def _align(left: ir.Value, right: ir.Value) -> tuple[ir.Value, ir.Value]:
    """Make a date and a timestamp comparable (dates become midnight timestamps)."""
    if left.type().is_date() and right.type().is_timestamp():
        return left.cast("timestamp"), right
    if left.type().is_timestamp() and right.type().is_date():
        return left, right.cast("timestamp")
    return left, right


@ibis.udf.scalar.builtin(name="get_json_object")  # type: ignore[untyped-decorator]
def _get_json_object(json: str, path: str) -> str:  # type: ignore[empty-body]
    """Spark SQL's ``get_json_object``: the value at a JSON path, as text (null if absent)."""


def _connect(parts: list[BoolFn], conjunction: bool) -> BoolFn:
    def combine(table: ir.Table) -> ir.BooleanValue:
        values = [part(table) for part in parts]
        result = values[0]
        for value in values[1:]:
            result = (result & value) if conjunction else (result | value)
        return result

    return combine


class Compiler:
    """Compiles expressions of one project (its catalog) for one warehouse, as of one time."""

    def __init__(
        self,
        warehouse: Warehouse,
        as_of: datetime,
        catalog: Catalog | None,
        rollup: Rollup | None = None,
    ) -> None:
        self.warehouse = warehouse
        self.as_of = as_of
        # Per-unit event totals (closeloop.data.rollups): counts, firsts and lasts of an event
        # without window or filter read them plus the events since, not all history.
        self.rollup = rollup if rollup is not None and rollup.covers(as_of) else None
        self.catalog = catalog or default_catalog()
        self.vocabulary = self.catalog.vocabulary
        self.now = ibis.literal(as_of, type="timestamp")
        # For goal dating: no candidate entered before this (see _kth_event_since).
        self.entered_since: datetime | None = None

    # -- units and events as of T -----------------------------------------------------------

    def accounts(self) -> ir.Table:
        """Accounts as of T, each stored attribute as it was then (``closeloop.data.history``)."""
        accounts = self.warehouse.table("accounts")
        accounts = accounts.filter(accounts.created_at <= self.now)
        return history.as_of(self.warehouse, "account", accounts, self.as_of, key="account_id")

    def people(self) -> ir.Table:
        """People as of T (those without a creation time always), with their account's columns."""
        people = self.warehouse.table("people")
        people = people.filter(people.created_at.isnull() | (people.created_at <= self.now))
        people = history.as_of(self.warehouse, "person", people, self.as_of, key="person_id")
        accounts = self.accounts()
        renamed = accounts.select(
            _account_key=accounts.account_id,
            **{f"{ACCOUNT_PREFIX}{c}": accounts[c] for c in accounts.columns},
        )
        joined = people.inner_join(renamed, people.account_id == renamed._account_key)
        return joined.select(*people.columns, *[c for c in renamed.columns if c != "_account_key"])

    def frame(self, entity: Entity) -> Frame:
        base = self.accounts() if entity == Entity.ACCOUNT else self.people()
        return Frame(entity, base, fuse=self.fused_events)

    def events(
        self,
        event: str,
        filters: tuple[EventFilter, ...] = (),
        window_days: float | None = None,
    ) -> ir.Table:
        events = self.warehouse.table("events")
        events = events.filter(
            events.timestamp <= self.now, events.name == ibis.literal(event, type="string")
        )
        if window_days is not None:
            since = self.as_of - timedelta(days=window_days)
            events = events.filter(events.timestamp > ibis.literal(since, type="timestamp"))
        for condition in filters:
            events = events.filter(self._event_filter(events, condition))
        return events

    def _event_filter(self, events: ir.Table, condition: EventFilter) -> ir.BooleanValue:
        if condition.key == "value":
            value: ir.Value = events.value
        else:
            unwrap = {
                LiteralKind.NUMBER: "float64",
                LiteralKind.BOOLEAN: "boolean",
            }.get(condition.value.kind, "string")
            if self.warehouse.dialect == "pyspark":
                # Ibis unwraps JSON on Spark with a Python UDF (slow, and it needs closeloop's
                # Python on every executor); Spark's own get_json_object reads the value as text.
                # Keys are words, spaces and hyphens (PROPERTY_NAME), safe inside ['...'].
                path = ibis.literal(f"$['{condition.key}']", type="string")
                value = _get_json_object(events.properties.cast("string"), path).cast(unwrap)
            else:
                value = events.properties.cast("json")[condition.key].unwrap_as(unwrap)
        return _COMPARATORS[condition.op](value, _literal(condition.value))

    # -- predicates -------------------------------------------------------------------------

    def predicate(self, node: Expression, frame: Frame, *, negated: bool = False) -> BoolFn:
        """A boolean column where a missing value makes a comparison false.

        Under ``not`` each comparison is made two-valued (NULL -> false) so that ``not`` turns
        it true. Elsewhere NULL already acts as false (a filter drops it; NULL and/or x gives
        the same rows as false and/or x), and leaving it bare lets the database push filters
        into joins.
        """
        if isinstance(node, And | Or):
            parts = [self.predicate(part, frame, negated=negated) for part in node.parts]
            return _connect(parts, isinstance(node, And))
        if isinstance(node, Not):
            inner = self.predicate(node.operand, frame, negated=True)
            return lambda table: ~inner(table)
        if isinstance(node, People):
            return self._people(node.quantifier, node.condition, frame)
        if frame.entity == Entity.ACCOUNT and mentions_person(node):
            # `person.role = "admin"` about an account: some person of it matches.
            return self._people(Quantifier.ANY, node, frame)
        if isinstance(node, Membership):
            membership = self._membership(node, frame)
            return lambda table: membership(table).fill_null(False)
        atom = self._atom(node, frame)
        return (lambda table: atom(table).fill_null(False)) if negated else atom

    def _atom(self, node: Expression, frame: Frame) -> BoolFn:
        if isinstance(node, Comparison):
            left, right = self.operand(node.left, frame), self.operand(node.right, frame)
            compare = _COMPARATORS[node.op]
            return lambda t: compare(*_align(left(t), right(t)))
        if isinstance(node, InList):
            value = self.operand(node.operand, frame)
            options = [_literal(v) for v in node.values]
            if node.negated:
                return lambda t: value(t).notin(options)
            return lambda t: value(t).isin(options)
        if isinstance(node, Contains):
            value = self.operand(node.operand, frame)
            needle = ibis.literal(node.value.value, type="string")
            return lambda t: value(t).contains(needle)
        if isinstance(node, HasValue):
            value = self.operand(node.operand, frame)
            return (lambda t: value(t).notnull()) if node.present else (lambda t: value(t).isnull())
        if isinstance(node, WithinLast | WithinNext | MoreThanAgo):
            return self._relative_time(node, self.operand(node.operand, frame))
        raise TypeError(f"not an expression node: {node!r}")

    def _relative_time(self, node: WithinLast | WithinNext | MoreThanAgo, value: ValueFn) -> BoolFn:
        days = timedelta(days=node.days)

        def bound(column: ir.Value, moment: datetime) -> ir.Value:
            if column.type().is_date():
                return ibis.literal(moment.date(), type="date")
            return ibis.literal(moment, type="timestamp")

        def check(table: ir.Table) -> ir.BooleanValue:
            column = value(table)
            is_date = column.type().is_date()
            if isinstance(node, WithinLast):
                start, end = bound(column, self.as_of - days), bound(column, self.as_of)
                return ((column >= start) if is_date else (column > start)) & (column <= end)
            if isinstance(node, WithinNext):
                start, end = bound(column, self.as_of), bound(column, self.as_of + days)
                return (column >= start) & ((column <= end) if is_date else (column < end))
            return column < bound(column, self.as_of - days)

        return check

    # -- operands ---------------------------------------------------------------------------

    def operand(self, operand: Operand, frame: Frame) -> ValueFn:
        if isinstance(operand, Lower):
            # SQL lower(): Unicode-aware on DuckDB and PostgreSQL (UTF-8); NULL stays NULL.
            text = self.operand(operand.operand, frame)
            return lambda t: text(t).lower()
        if isinstance(operand, Literal):
            value = _literal(operand)
            return lambda _table: value
        if isinstance(operand, Attribute):
            resolved = self.vocabulary.resolve(operand, frame.entity)
            assert resolved is not None, f"unchecked expression: {operand.name}"
            return self.attribute(resolved[0], operand.name, frame)
        if isinstance(operand, EventCount):
            name = self._per_unit_events(
                frame,
                frame.entity,
                ("count", operand.event, operand.filters, operand.window_days),
                lambda events: events.count(),
                "count",
            )
            return lambda t: t[name].fill_null(0)
        if isinstance(operand, EventTime):
            name = self._per_unit_events(
                frame,
                frame.entity,
                ("time", operand.event, operand.filters, operand.last),
                lambda events: events.timestamp.max() if operand.last else events.timestamp.min(),
                "last" if operand.last else "first",
            )
            return lambda t: t[name]
        assert isinstance(operand, PeopleCount)
        return self._people_count(operand.condition, frame)

    def _per_unit_events(
        self,
        frame: Frame,
        entity: Entity,
        memo: tuple[Any, ...],
        aggregate: Callable[[ir.Table], ir.Value],
        measure: str,
    ) -> str:
        """An aggregate over each unit's events (``entity``'s: a person's own, or an account's).

        ``measure`` names it for the rollup (``count``, ``first``, ``last``, ``sum``), which
        answers it when there is no window and no filter.
        """
        kind, event, filters, *rest = memo
        window = rest[0] if kind == "count" else None
        key = unit_key(entity)
        rollup = self.rollup if window is None and not filters else None
        if rollup is None and not filters and frame.fuse is not None:
            # One grouped pass over the events with the frame's other aggregates.
            return frame.measure((entity, *memo), key, (event, window, measure))

        def make(name: str) -> ir.Table:
            if rollup is not None:
                totals = rollup.per_unit(self.warehouse, event, key, self.as_of, measure)
                return totals.select(key, **{name: totals.value})
            events = self.events(event, filters, window)
            if key == "person_id":
                events = events.filter(events.person_id.notnull())
            return events.group_by(key).aggregate(**{name: aggregate(events)})

        return frame.derived((entity, *memo), key, make)

    def fused_events(self, key: str, measures: Sequence[tuple[str, Any]]) -> ir.Table:
        """Per unit (``key``), every measure ``(name, (event, window_days, measure))`` of a
        frame in one grouped pass over the events: each aggregate counts only its event (and
        window); the pass reads only the events named, and only the widest window if every
        measure has one. A unit with none of the events has no row, as with one table each.
        (Measures with property filters are not fused: a filter may only be evaluated on the
        rows of its event.)"""
        events = self.warehouse.table("events")
        names = sorted({event for _, (event, _, _) in measures})
        events = events.filter(
            events.timestamp <= self.now,
            events.name.isin([ibis.literal(name, type="string") for name in names]),
        )
        windows = [window for _, (_, window, _) in measures]
        if all(window is not None for window in windows):
            widest = max(window for window in windows if window is not None)
            since = ibis.literal(self.as_of - timedelta(days=widest), type="timestamp")
            events = events.filter(events.timestamp > since)
        if key == "person_id":
            events = events.filter(events.person_id.notnull())
        aggregates: dict[str, ir.Value] = {}
        for name, (event, window, measure) in measures:
            where = events.name == ibis.literal(event, type="string")
            if window is not None:
                start = ibis.literal(self.as_of - timedelta(days=window), type="timestamp")
                where = where & (events.timestamp > start)
            aggregates[name] = {
                "count": lambda w: events.count(where=w),
                "first": lambda w: events.timestamp.min(where=w),
                "last": lambda w: events.timestamp.max(where=w),
                "sum": lambda w: events.value.sum(where=w),
            }[measure](where)
        return events.group_by(key).aggregate(**aggregates)

    def attribute(self, entity: Entity, name: str, frame: Frame) -> ValueFn:
        """The value of an attribute of ``entity`` for each unit of ``frame``."""
        stored = (
            self.catalog.account_attributes
            if entity == Entity.ACCOUNT
            else self.catalog.person_attributes
        )
        if name in stored:
            column = ALIASES.get(name, name) if entity == Entity.ACCOUNT else name
            if entity == Entity.ACCOUNT and frame.entity == Entity.PERSON:
                column = f"{ACCOUNT_PREFIX}{column}"
            return lambda t: t[column]
        if (entity, name) not in self.catalog.attributes:
            return self._builtin(name, frame)
        computed = self.catalog.attributes[(entity, name)]
        definition = computed.definition
        if definition.event is not None:
            function = definition.function
            aggregates: dict[EventFunction | None, Callable[[ir.Table], ir.Value]] = {
                EventFunction.COUNT: lambda e: e.count(),
                EventFunction.EXISTS: lambda e: e.count(),
                EventFunction.FIRST: lambda e: e.timestamp.min(),
                EventFunction.LAST: lambda e: e.timestamp.max(),
                EventFunction.SUM: lambda e: e.value.sum(),
            }
            filters = tuple(
                EventFilter(key, Comparator.EQ, _as_literal(value))
                for key, value in sorted((definition.where or {}).items())
            )
            column = self._per_unit_events(
                frame,
                entity,
                ("count", definition.event, filters, definition.window_days, function),
                aggregates[function],
                _MEASURES[function],
            )
            if function == EventFunction.EXISTS:
                return lambda t: t[column].fill_null(0) > 0
            if function in (EventFunction.COUNT, EventFunction.SUM):
                return lambda t: t[column].fill_null(0)
            return lambda t: t[column]
        if definition.rollup is not None:
            return self._rollup(computed.name, frame)
        if definition.days_since is not None:
            since = self.attribute(entity, definition.days_since, frame)

            def days(t: ir.Table) -> ir.Value:
                value = since(t)
                if value.type().is_date():
                    value = value.cast("timestamp")
                seconds = self.now.epoch_seconds() - value.epoch_seconds()
                return seconds / SECONDS_PER_DAY

            return days
        assert definition.ratio is not None
        top = self.attribute(entity, definition.ratio.numerator, frame)
        bottom = self.attribute(entity, definition.ratio.denominator, frame)
        return lambda t: top(t).cast("float64") / bottom(t).cast("float64").nullif(0)

    def _builtin(self, name: str, frame: Frame) -> ValueFn:
        """A built-in outcome attribute of accounts (``closeloop.data.outcome_attributes``)."""
        assert name in BUILTIN_ACCOUNT_ATTRIBUTES, f"unchecked attribute: {name}"
        column = frame.derived(
            ("builtin", name),
            "account_id",
            lambda column: outcome_attribute(self.warehouse, name, self.as_of, column),
        )
        if name in ZERO_WHEN_ABSENT:
            return lambda t: t[column].fill_null(0)
        return lambda t: t[column]

    # -- people -----------------------------------------------------------------------------

    def _people_table(self, condition: Expression | None, value: str | None = None) -> ir.Table:
        """People (as of T) matching ``condition``, with ``account_id`` and an optional value."""
        frame = self.frame(Entity.PERSON)
        keep = self.predicate(condition, frame, negated=True) if condition is not None else None
        measure = self.attribute(Entity.PERSON, value, frame) if value is not None else None
        table = frame.table()
        if keep is not None:
            table = table.filter(keep(table))
        columns: dict[str, Any] = {"account_id": table.account_id}
        if measure is not None:
            columns["_value"] = measure(table)
        return table.select(**columns)

    def _people(self, quantifier: Quantifier, condition: Expression, frame: Frame) -> BoolFn:
        memo = ("people", quantifier, condition)
        if quantifier == Quantifier.ANY:

            def matching(name: str) -> ir.Table:
                people = self._people_table(condition)
                return people.group_by("account_id").aggregate(**{name: people.count()})

            column = frame.derived(memo, "account_id", matching)
            return lambda t: t[column].notnull()

        def shares(name: str) -> ir.Table:
            everyone = self._people_table(None)
            matched = self._people_table(condition)
            totals = everyone.group_by("account_id").aggregate(_all=everyone.count())
            hits = matched.group_by("account_id").aggregate(_hits=matched.count())
            joined = totals.left_join(hits, totals.account_id == hits.account_id)
            return joined.select(
                account_id=joined.account_id, **{name: joined._hits.fill_null(0) == joined._all}
            )

        column = frame.derived(memo, "account_id", shares)
        return lambda t: t[column].fill_null(False)

    def _people_count(self, condition: Expression | None, frame: Frame) -> ValueFn:
        def counts(name: str) -> ir.Table:
            people = self._people_table(condition)
            return people.group_by("account_id").aggregate(**{name: people.count()})

        column = frame.derived(("people_count", condition), "account_id", counts)
        return lambda t: t[column].fill_null(0)

    def _rollup(self, name: str, frame: Frame) -> ValueFn:
        computed = self.catalog.attributes[(Entity.ACCOUNT, name)]
        definition = computed.definition
        function = definition.rollup

        def make(column: str) -> ir.Table:
            people = self._people_table(computed.people, definition.of)
            aggregate = {
                RollupFunction.COUNT: lambda: people.count(),
                RollupFunction.SUM: lambda: people._value.sum(),
                RollupFunction.AVG: lambda: people._value.mean(),
                RollupFunction.MIN: lambda: people._value.min(),
                RollupFunction.MAX: lambda: people._value.max(),
            }[function or RollupFunction.COUNT]()
            return people.group_by("account_id").aggregate(**{column: aggregate})

        column = frame.derived(("rollup", name), "account_id", make)
        if function in (RollupFunction.COUNT, RollupFunction.SUM):
            return lambda t: t[column].fill_null(0)
        return lambda t: t[column]

    # -- membership -------------------------------------------------------------------------

    def _membership(self, node: Membership, frame: Frame) -> BoolFn:
        if node.kind == MembershipKind.COHORT:
            cohort = self.catalog.cohorts[node.name]
            target = Entity(cohort.definition.target)
            if target == frame.entity:
                # Same kind of unit: the cohort's criteria are evaluated right here.
                return self.predicate(cohort.criteria, frame)
            column = frame.derived(
                ("cohort", node.name),
                "account_id",
                lambda name: self.cohort_members(cohort).select(
                    "account_id", **{name: ibis.literal(True)}
                ),
            )
            return lambda t: t[column].notnull()
        if node.kind == MembershipKind.STAGE:
            return self._stage_membership(node, frame)
        return self._job_membership(node, frame)

    def _window(self, value: ir.Value, within_days: float | None) -> ir.BooleanValue:
        condition = value.notnull() & (value <= self.now)
        if within_days is not None:
            since = ibis.literal(self.as_of - timedelta(days=within_days), type="timestamp")
            condition = condition & (value > since)
        return condition

    def _stage_membership(self, node: Membership, frame: Frame) -> BoolFn:
        stage = self.catalog.stages[node.name]

        def make(name: str) -> ir.Table:
            return self._stage_flag(stage, node.verb, node.within_days, name)

        column = frame.derived(
            ("stage", node.name, node.verb, node.within_days), "account_id", make
        )
        return lambda t: t[column].fill_null(False)

    def _stage_flag(
        self, stage: LoadedStage, verb: MembershipVerb, within_days: float | None, name: str
    ) -> ir.Table:
        status = self.stage_status(stage)
        flags = {
            MembershipVerb.IN: status.in_stage,
            MembershipVerb.ENTERED: self._window(status.entered_at, within_days),
            MembershipVerb.COMPLETED: self._window(status.completed_at, within_days),
            MembershipVerb.EXITED: self._window(status.exited_at, within_days)
            & status.exited_incomplete,
        }
        return status.select("account_id", **{name: flags[verb]})

    def stage_times(self, node: Membership, frame: Frame) -> ValueFn:
        """When ``entered``/``completed stage`` became true (for dating goals and stage entry)."""
        stage = self.catalog.stages[node.name]
        column = "entered_at" if node.verb == MembershipVerb.ENTERED else "completed_at"
        name = frame.derived(
            ("stage_time", node.name, column),
            "account_id",
            lambda name: self.stage_status(stage).select("account_id", **{name: column}),
        )
        return lambda t: t[name]

    def _job_rows(self, node: Membership, entity: Entity) -> tuple[ir.Table, ir.BooleanValue]:
        enrollments = self.warehouse.table(ENROLLMENTS.name)
        enrollments = enrollments.filter(
            enrollments.job_name == ibis.literal(node.name, type="string"),
            enrollments.entered_at <= self.now,
        )
        if entity == Entity.PERSON:
            enrollments = enrollments.filter(enrollments.person_id.notnull())
        e = enrollments
        after = {
            MembershipVerb.IN: (e.completed_at.isnull() | (e.completed_at > self.now))
            & (e.exited_at.isnull() | (e.exited_at > self.now)),
            MembershipVerb.ENTERED: self._window(e.entered_at, node.within_days),
            MembershipVerb.COMPLETED: self._window(e.completed_at, node.within_days),
            MembershipVerb.EXITED: self._window(e.exited_at, node.within_days),
        }[node.verb]
        return enrollments, after

    def _job_fact(
        self,
        node: Membership,
        frame: Frame,
        what: str,
        aggregate: Callable[[ir.Table], ir.Value],
    ) -> str:
        """A per-unit aggregate over the job's enrollments that satisfy ``node`` as of T."""
        entity = self.catalog.job_targets[node.name]
        key = unit_key(entity)

        def make(name: str) -> ir.Table:
            enrollments, condition = self._job_rows(node, entity)
            matched = enrollments.filter(condition)
            return matched.group_by(key).aggregate(**{name: aggregate(matched)})

        return frame.derived((what, node), key, make)

    def _job_membership(self, node: Membership, frame: Frame) -> BoolFn:
        column = self._job_fact(node, frame, "job", lambda matched: matched.count())
        return lambda t: t[column].notnull()

    def job_times(self, node: Membership, frame: Frame) -> ValueFn:
        """The earliest time ``entered``/``completed job`` held (for dating goals)."""
        moment = "entered_at" if node.verb == MembershipVerb.ENTERED else "completed_at"
        column = self._job_fact(node, frame, "job_time", lambda matched: matched[moment].min())
        return lambda t: t[column]

    # -- when an expression first held -------------------------------------------------------

    def reached(self, node: Expression, frame: Frame) -> ValueFn:
        """When the (true) ``node`` became true: an event or membership time where it can be
        dated, else T.

        ``and`` takes the latest of its parts, ``or`` the earliest part that holds. Under ``not``
        nothing is dated: it would say when the condition stopped holding, not when it began.
        """
        if isinstance(node, And):
            parts = [self.reached(part, frame) for part in node.parts]
            return lambda t: ibis.greatest(*[part(t) for part in parts])
        if isinstance(node, Or):
            never = ibis.literal(_NEVER, type="timestamp")
            pairs = [
                (self.predicate(part, frame), self.reached(part, frame)) for part in node.parts
            ]
            return lambda t: ibis.least(
                *[ibis.ifelse(holds(t).fill_null(False), when(t), never) for holds, when in pairs]
            )
        found = threshold(node)
        if (
            found is not None
            and found[0].window_days is None
            and not found[0].filters
            and found[1] >= 1
        ):
            count, k = found
            if int(k) == 1:
                # The first event's time: a per-unit minimum, which the event totals (rollup)
                # or the frame's one pass over the events answer without ranking all of them.
                column = self._per_unit_events(
                    frame,
                    frame.entity,
                    ("time", count.event, (), False),
                    lambda events: events.timestamp.min(),
                    "first",
                )
                return lambda t: t[column].fill_null(self.now)
            if self.entered_since is not None and int(k) <= MAX_BOUNDED_K:
                return self._kth_event_since(frame, count.event, int(k), self.entered_since)
            column = frame.derived(
                ("kth", frame.entity, count.event, int(k)),
                frame.key,
                lambda name: self._kth_event(count.event, int(k), frame.key, name),
            )
            return lambda t: t[column].fill_null(self.now)
        if isinstance(node, Membership) and node.verb in (
            MembershipVerb.ENTERED,
            MembershipVerb.COMPLETED,
        ):
            times = (
                self.job_times(node, frame)
                if node.kind == MembershipKind.JOB
                else self.stage_times(node, frame)
                if node.kind == MembershipKind.STAGE
                else None
            )
            if times is not None:
                return lambda t: times(t).fill_null(self.now)
        return lambda _t: self.now

    def _kth_event(self, event: str, k: int, key: str, name: str) -> ir.Table:
        """Per unit, the time of its k-th (1-based) ``event`` up to T."""
        events = self.events(event)
        if key == "person_id":
            events = events.filter(events.person_id.notnull())
        ranked = events.mutate(
            _rank=ibis.row_number().over(
                group_by=events[key], order_by=[events.timestamp, events.event_id]
            )
        )
        kth = ranked.filter(ranked._rank == k - 1)
        return kth.select(key, **{name: kth.timestamp})

    def _kth_event_since(self, frame: Frame, event: str, k: int, since: datetime) -> ValueFn:
        """When a goal ``count(event) >= k`` became true, for candidates none of whom entered
        before ``since``, ranking only the events after ``since`` (not all history).

        The goal's time only matters after entry: a k-th event at or before ``since`` gives
        ``since`` (the caller's ``greatest(when, entered_at)`` makes it the entry). Otherwise the
        k-th event is the ``(k - c)``-th after ``since``, where ``c`` (the events up to
        ``since``) is the count as of T (the rollup's or the frame's) less those after.
        """
        total = self._per_unit_events(
            frame,
            frame.entity,
            ("count", event, (), None),
            lambda events: events.count(),
            "count",
        )
        key = frame.key

        def after(name: str) -> ir.Table:
            events = self.events(event)
            events = events.filter(events.timestamp > ibis.literal(since, type="timestamp"))
            if key == "person_id":
                events = events.filter(events.person_id.notnull())
            ranked = events.mutate(
                _rank=ibis.row_number().over(
                    group_by=events[key], order_by=[events.timestamp, events.event_id]
                )
            )
            return ranked.group_by(key).aggregate(
                **{f"{name}_n": ranked.count()},
                **{
                    f"{name}_{index}": ranked.timestamp.min(where=ranked._rank == index)
                    for index in range(k)
                },
            )

        column = frame.derived(("kth_since", frame.entity, event, k, since), key, after)
        start = ibis.literal(since, type="timestamp")

        def when(t: ir.Table) -> ir.Value:
            before = t[total].fill_null(0) - t[f"{column}_n"].fill_null(0)
            kth = ibis.cases(
                (before >= k, start),
                *[(before == k - 1 - index, t[f"{column}_{index}"]) for index in range(k)],
                else_=ibis.null("timestamp"),
            )
            return kth.fill_null(self.now)

        return when

    # -- definitions ------------------------------------------------------------------------

    def units(self, expression: Expression, entity: Entity) -> ir.Table:
        frame = self.frame(entity)
        holds = self.predicate(expression, frame)
        table = frame.table()
        keys = ["account_id"] if entity == Entity.ACCOUNT else ["person_id", "account_id"]
        return table.filter(holds(table)).select(*keys).distinct()

    def cohort_members(self, cohort: LoadedCohort) -> ir.Table:
        return self.units(cohort.criteria, Entity(cohort.definition.target))

    def stage_status(self, stage: LoadedStage) -> ir.Table:
        """Per account: entry, entered/completed/exited times, objectives and markers as of T.

        ``entered_at`` is the ``entered_at`` attribute, else when the entry criteria first held
        (an event or stage/job time; T when that cannot be told). An objective completes when
        its criteria first held, never before entry; the stage completes when its last
        objective does, if that is within ``after_days`` of entry, and exits at the earlier of
        completion (if configured) and entry plus ``after_days``. An account is *in* the stage
        while its entry criteria hold, it has entered and not exited.
        """
        frame = self.frame(Entity.ACCOUNT)
        definition = stage.definition
        entry = self.predicate(stage.entry, frame)
        entered: ValueFn
        if definition.entered_at is not None:
            entered_value = self.attribute(Entity.ACCOUNT, definition.entered_at, frame)

            def entered_attribute(t: ir.Table) -> ir.Value:
                value = entered_value(t)
                return value.cast("timestamp") if value.type().is_date() else value

            entered = entered_attribute
        else:
            entered = self.reached(stage.entry, frame)
        objectives = [
            (self.predicate(o.completion, frame), self.reached(o.completion, frame))
            for o in stage.objectives
        ]
        markers = [self.predicate(m.criteria, frame) for m in stage.markers]
        table = frame.table()
        entry_holds = entry(table).fill_null(False)
        entered_at = ibis.ifelse(entry_holds, entered(table), ibis.null("timestamp"))
        done = [
            ibis.ifelse(holds(table).fill_null(False), ibis.greatest(when(table), entered_at), None)
            for holds, when in objectives
        ]
        completed_at: ir.Value = ibis.null("timestamp")
        if done:
            completed_at = ibis.greatest(*done)
            for moment in done:
                completed_at = ibis.ifelse(moment.isnull(), ibis.null("timestamp"), completed_at)
        exits: list[ir.Value] = []
        if definition.exit.after_days is not None:
            deadline = entered_at + ibis.interval(seconds=int(definition.exit.after_days * 86400))
            # Objectives finished after the stage timed out do not complete the stage.
            completed_at = ibis.ifelse(completed_at <= deadline, completed_at, None)
            exits.append(deadline)
        if definition.exit.when_objectives_complete:
            exits.append(completed_at)
        exited_at = exits[0] if len(exits) == 1 else ibis.least(*exits)
        status = table.select(
            "account_id",
            entered_at=entered_at,
            completed_at=completed_at,
            exited_at=exited_at,
            **{f"objective_{i}": moment for i, moment in enumerate(done)},
            **{f"marker_{i}": m(table).fill_null(False) for i, m in enumerate(markers)},
        )
        # As of T: an entry or exit planned for later has not happened yet.
        never = ibis.null("timestamp")
        status = status.mutate(
            entered_at=ibis.ifelse(status.entered_at <= self.now, status.entered_at, never),
            exited_at=ibis.ifelse(status.exited_at <= self.now, status.exited_at, never),
        )
        in_stage = status.entered_at.notnull() & status.exited_at.isnull()
        left_incomplete = status.exited_at.notnull() & (
            status.completed_at.isnull() | (status.completed_at > status.exited_at)
        )
        return status.mutate(in_stage=in_stage, exited_incomplete=left_incomplete)


def _as_literal(value: str | float | bool) -> Literal:
    if isinstance(value, bool):
        return Literal(value, LiteralKind.BOOLEAN)
    if isinstance(value, int | float):
        return Literal(float(value), LiteralKind.NUMBER)
    return Literal(value, LiteralKind.STRING)


_MEASURES: dict[EventFunction | None, str] = {
    EventFunction.COUNT: "count",
    EventFunction.EXISTS: "count",
    EventFunction.FIRST: "first",
    EventFunction.LAST: "last",
    EventFunction.SUM: "sum",
}


# -- public API -------------------------------------------------------------------------------


def matching_units(
    expression: Expression,
    warehouse: Warehouse,
    as_of: datetime,
    catalog: Catalog | None = None,
    target: Entity = Entity.ACCOUNT,
    *,
    rollup: Rollup | None = None,
) -> ir.Table:
    """The units for which ``expression`` holds as of ``as_of``.

    Columns: ``account_id`` for accounts; ``person_id`` and ``account_id`` for people.
    ``rollup`` (:func:`closeloop.data.rollups.refresh`) answers event totals where it can.
    """
    return Compiler(warehouse, as_of, catalog, rollup).units(expression, target)


def eligible_units(
    audience: Expression,
    exclusions: Sequence[Expression],
    warehouse: Warehouse,
    as_of: datetime,
    catalog: Catalog | None = None,
    target: Entity = Entity.ACCOUNT,
    *,
    rollup: Rollup | None = None,
) -> ir.Table:
    """The units ``audience`` holds for and no exclusion holds for, as of ``as_of``.

    The excluded keys are unioned and anti-joined once: sqlglot (< 28.6) rewrites only every
    other anti-join of a chain for PostgreSQL, leaving a ``LEFT ANTI JOIN`` it cannot run.
    """
    key = "person_id" if target == Entity.PERSON else "account_id"
    units = matching_units(audience, warehouse, as_of, catalog, target, rollup=rollup)
    if not exclusions:
        return units
    excluded = excluded_units(exclusions, warehouse, as_of, catalog, target, rollup=rollup)
    return units.anti_join(excluded, key)


def excluded_units(
    exclusions: Sequence[Expression],
    warehouse: Warehouse,
    as_of: datetime,
    catalog: Catalog | None = None,
    target: Entity = Entity.ACCOUNT,
    *,
    rollup: Rollup | None = None,
) -> ir.Table:
    """The unit keys (one column) any of ``exclusions`` holds for as of ``as_of``: one union,
    so callers anti-join or semi-join it once. ``exclusions`` must not be empty."""
    key = "person_id" if target == Entity.PERSON else "account_id"
    parts = [
        matching_units(exclusion, warehouse, as_of, catalog, target, rollup=rollup).select(key)
        for exclusion in exclusions
    ]
    return parts[0].union(*parts[1:], distinct=True) if len(parts) > 1 else parts[0]


def matching_accounts(
    expression: Expression, warehouse: Warehouse, as_of: datetime, catalog: Catalog | None = None
) -> ir.Table:
    """The accounts (column ``account_id``) for which ``expression`` holds as of ``as_of``."""
    return matching_units(expression, warehouse, as_of, catalog, Entity.ACCOUNT)


def compile_sql(
    expression: Expression,
    warehouse: Warehouse,
    as_of: datetime,
    catalog: Catalog | None = None,
    target: Entity = Entity.ACCOUNT,
) -> str:
    """The SQL ``matching_units`` runs, in the warehouse's dialect."""
    return warehouse.sql(matching_units(expression, warehouse, as_of, catalog, target))


def cohort_members(
    cohort: LoadedCohort, warehouse: Warehouse, as_of: datetime, catalog: Catalog | None = None
) -> ir.Table:
    """Members of a cohort as of ``as_of`` (``account_id``, or ``person_id`` and ``account_id``)."""
    return Compiler(warehouse, as_of, catalog).cohort_members(cohort)


def stage_status(
    stage: LoadedStage, warehouse: Warehouse, as_of: datetime, catalog: Catalog | None = None
) -> ir.Table:
    """Per account, as of ``as_of``: ``entered_at``, ``completed_at`` and ``exited_at`` (null
    until they have happened), ``in_stage``, ``exited_incomplete`` (left without completing),
    ``objective_<i>`` (completion time or null) and ``marker_<i>`` (bool)."""
    return Compiler(warehouse, as_of, catalog).stage_status(stage)


def audience_flags(
    audiences: Sequence[tuple[Expression, Sequence[Expression]]],
    warehouse: Warehouse,
    as_of: datetime,
    catalog: Catalog | None = None,
    target: Entity = Entity.ACCOUNT,
    *,
    rollup: Rollup | None = None,
) -> ir.Table:
    """Several jobs' eligible units as of ``as_of`` in one query: the units at least one of
    ``audiences`` (audience, exclusions) is eligible for, with a flag per audience (``_a0``,
    ``_a1``, ...) that holds where :func:`eligible_units` of that pair would list the unit.

    The audiences share one frame, so a per-unit table two of them mention (the same event
    count, stage or attribute) is computed once, and the query is compiled once.
    """
    compiler = Compiler(warehouse, as_of, catalog, rollup)
    frame = compiler.frame(target)
    parts = [
        (
            compiler.predicate(audience, frame),
            [compiler.predicate(exclusion, frame) for exclusion in exclusions],
        )
        for audience, exclusions in audiences
    ]
    table = frame.table()
    flags: dict[str, ir.BooleanValue] = {}
    for index, (holds, excluded) in enumerate(parts):
        # A filter drops NULL: an audience that is NULL does not hold, nor does an exclusion.
        flag = holds(table).fill_null(False)
        for exclusion in excluded:
            flag = flag & ~exclusion(table).fill_null(False)
        flags[f"_a{index}"] = flag
    keys = ["account_id"] if target == Entity.ACCOUNT else ["person_id", "account_id"]
    flagged = table.select(*keys, **flags)
    anyone = flagged[next(iter(flags))]
    for name in list(flags)[1:]:
        anyone = anyone | flagged[name]
    return flagged.filter(anyone).distinct()


def goal_candidates(target: Entity, rows: Sequence[tuple[int, str, datetime]]) -> ir.Table:
    """The ``candidates`` of :func:`goals_reached_at` from (goal index, unit key, entered_at)."""
    return ibis.memtable(
        pa.table(
            {
                "_goal": pa.array([row[0] for row in rows], pa.int32()),
                unit_key(target): pa.array([row[1] for row in rows], pa.string()),
                "entered_at": pa.array([row[2] for row in rows], pa.timestamp("us")),
            }
        )
    )


def _candidate_frame(compiler: Compiler, candidates: ir.Table, target: Entity) -> Frame:
    """A frame of ``candidates`` (the unit key, ``entered_at``, ...) joined to their units."""
    key = unit_key(target)
    units = compiler.frame(target).base
    joined = candidates.inner_join(units, candidates[key] == units[key])
    return Frame(
        target,
        joined.select(*candidates.columns, *[c for c in units.columns if c != key]),
        fuse=compiler.fused_events,
    )


def goals_reached_at(
    goals: Sequence[Expression],
    warehouse: Warehouse,
    as_of: datetime,
    candidates: ir.Table,
    catalog: Catalog | None = None,
    target: Entity = Entity.ACCOUNT,
    *,
    rollup: Rollup | None = None,
    entered_since: datetime | None = None,
) -> ir.Table:
    """:func:`goal_reached_at` of several goals in one query.

    ``candidates`` has ``_goal`` (an index into ``goals``), the unit key and ``entered_at``;
    the result has ``_goal``, the unit key and ``reached_at`` for the candidates whose goal
    holds as of ``as_of``, with the times :func:`goal_reached_at` gives for each goal alone.
    ``entered_since``: as for :func:`goal_reached_at`.
    """
    compiler = Compiler(warehouse, as_of, catalog, rollup)
    compiler.entered_since = entered_since
    key = unit_key(target)
    frame = _candidate_frame(compiler, candidates.select("_goal", key, "entered_at"), target)
    pairs = [(compiler.predicate(goal, frame), compiler.reached(goal, frame)) for goal in goals]
    table = frame.table()
    never = ibis.null("timestamp")
    reached = ibis.cases(
        *[
            (
                table._goal == index,
                ibis.ifelse(
                    holds(table).fill_null(False),
                    ibis.greatest(when(table), table.entered_at),
                    never,
                ),
            )
            for index, (holds, when) in enumerate(pairs)
        ],
        else_=never,
    )
    result = table.select("_goal", key, reached_at=reached)
    return result.filter(result.reached_at.notnull())


def goal_reached_at(
    expression: Expression,
    warehouse: Warehouse,
    as_of: datetime,
    candidates: ir.Table,
    catalog: Catalog | None = None,
    target: Entity = Entity.ACCOUNT,
    *,
    rollup: Rollup | None = None,
    entered_since: datetime | None = None,
) -> ir.Table:
    """For candidates (unit key, ``entered_at``) whose goal holds as of ``as_of``: when.

    The unit key is ``account_id`` (or ``person_id`` for a person target). ``reached_at`` is
    the earliest time the goal held, at event precision where the goal is a threshold on an
    event count (the time of the k-th event) or a job/stage time, never before ``entered_at``.
    ``entered_since``, a time no candidate entered before (the earliest ``entered_at``), lets
    a k-th event goal rank only the events after it instead of all history.
    """
    compiler = Compiler(warehouse, as_of, catalog, rollup)
    compiler.entered_since = entered_since
    key = unit_key(target)
    frame = _candidate_frame(compiler, candidates.select(key, "entered_at"), target)
    holds = compiler.predicate(expression, frame)
    when = compiler.reached(expression, frame)
    table = frame.table()
    table = table.filter(holds(table))
    reached = ibis.greatest(when(table), table.entered_at)
    return table.select(key, reached_at=reached)
