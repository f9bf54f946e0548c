"""Definition models: what a closeloop project declares, as frozen pydantic models.

Expressions (audiences, goals, criteria) are kept as text here; the project loader parses each
one with its position in the YAML file so an error points at the right line and column. Field
descriptions become the committed JSON Schema (``closeloop schema``), so editors can autocomplete.
"""

from __future__ import annotations

import re
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationInfo,
    field_validator,
    model_validator,
)

from closeloop.channels.email import EmailStep as EmailStep
from closeloop.channels.enroll import EnrollStep as EnrollStep
from closeloop.channels.file import FileStep as FileStep
from closeloop.channels.set_attribute import SetAttributeStep as SetAttributeStep
from closeloop.channels.slack import SlackStep as SlackStep
from closeloop.channels.webhook import WebhookStep as WebhookStep
from closeloop.definitions.expressions.ast import PROPERTY_NAME
from closeloop.definitions.expressions.parser import keywords
from closeloop.definitions.sources import SourceMapping as SourceMapping
from closeloop.definitions.sources import Sources

MIN_HOLDOUT = 0.05
MAX_HOLDOUT = 0.5
DEFAULT_HOLDOUT = 0.2
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 _\-./]*$")
_IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]*$")

Expression = Annotated[str, Field(min_length=1, description="an expression (docs/expressions.md)")]
DisplayName = Annotated[
    str,
    Field(
        min_length=1,
        max_length=120,
        description="letters, digits, spaces and - _ . /; starts with a letter or digit",
    ),
]


def _readable(value: str) -> str:
    if not _NAME.match(value):
        raise ValueError(
            "a name starts with a letter or digit and uses letters, digits, spaces, - _ . /"
        )
    return value


class Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Target(StrEnum):
    """What a definition is about: an account, or a person (a user of an account)."""

    ACCOUNT = "account"
    PERSON = "person"


# -- computed attributes ------------------------------------------------------------------------


class EventFunction(StrEnum):
    COUNT = "count"  # how many events
    EXISTS = "exists"  # whether there is at least one (boolean)
    FIRST = "first"  # time of the first
    LAST = "last"  # time of the latest
    SUM = "sum"  # sum of the events' `value`


class RollupFunction(StrEnum):
    COUNT = "count"
    SUM = "sum"
    AVG = "avg"
    MIN = "min"
    MAX = "max"


class Ratio(Frozen):
    numerator: str = Field(min_length=1, description="a numeric attribute")
    denominator: str = Field(min_length=1, description="a numeric attribute; 0 gives no value")


class ComputedAttribute(Frozen):
    """An attribute computed from the data, usable in every expression as of any time.

    Exactly one of ``event``, ``rollup``, ``days_since`` or ``ratio`` says how it is computed.
    """

    name: str = Field(min_length=1, max_length=63, description="snake_case, e.g. logins_30d")
    description: str = ""
    entity: Target = Field(
        default=Target.ACCOUNT, description="whose attribute it is: account or person"
    )
    event: str | None = Field(default=None, min_length=1, description="derive from these events")
    function: EventFunction | None = Field(
        default=None, description="with `event`: count, exists, first, last or sum (of value)"
    )
    window_days: float | None = Field(
        default=None, gt=0, le=36_500, description="with `event`: only events in the last N days"
    )
    where: dict[str, str | float | bool] | None = Field(
        default=None, description="with `event`: event properties that must equal these values"
    )
    rollup: RollupFunction | None = Field(
        default=None, description="roll people up to their account: count, sum, avg, min, max"
    )
    of: str | None = Field(
        default=None, description="with `rollup` (not count): the person attribute rolled up"
    )
    people: str | None = Field(
        default=None, description="with `rollup`: only people matching this person expression"
    )
    days_since: str | None = Field(
        default=None, description="days from this date/time attribute to the evaluation time"
    )
    ratio: Ratio | None = Field(default=None, description="numerator / denominator")

    @field_validator("name")
    @classmethod
    def _name_is_identifier(cls, value: str) -> str:
        if not _IDENTIFIER.match(value):
            raise ValueError(
                "an attribute name is snake_case: lower-case letters, digits and _ "
                "(e.g. logins_30d)"
            )
        if value in keywords():
            raise ValueError(f"{value!r} is a reserved word of the expression language")
        return value

    @field_validator("where")
    @classmethod
    def _portable_property_names(
        cls, value: dict[str, str | float | bool] | None
    ) -> dict[str, str | float | bool] | None:
        for key in value or {}:
            if not PROPERTY_NAME.match(key):
                raise ValueError(
                    f"the property name {key!r} cannot be looked up on every warehouse; "
                    "property names use letters, digits, _, - and spaces"
                )
        return value

    @model_validator(mode="after")
    def _one_way_to_compute(self) -> ComputedAttribute:
        ways = [
            key
            for key in ("event", "rollup", "days_since", "ratio")
            if getattr(self, key) is not None
        ]
        if len(ways) != 1:
            found = ", ".join(ways) if ways else "none"
            raise ValueError(
                "say how the attribute is computed with exactly one of event, rollup, "
                f"days_since or ratio (found: {found})"
            )
        if self.event is not None and self.function is None:
            raise ValueError("an event attribute needs `function`: count, exists, first, last, sum")
        if self.event is None and (
            self.function is not None or self.window_days is not None or self.where is not None
        ):
            raise ValueError("`function`, `window_days` and `where` only apply with `event`")
        if self.rollup is not None:
            if self.entity != Target.ACCOUNT:
                raise ValueError("a rollup is an account attribute (it rolls people up)")
            if self.rollup != RollupFunction.COUNT and self.of is None:
                raise ValueError(
                    f"rollup {self.rollup} needs `of`: the person attribute to roll up"
                )
            if self.rollup == RollupFunction.COUNT and self.of is not None:
                raise ValueError("rollup count counts people; drop `of`")
        elif self.of is not None or self.people is not None:
            raise ValueError("`of` and `people` only apply with `rollup`")
        return self


# -- cohorts and stages -------------------------------------------------------------------------


class CohortDefinition(Frozen):
    """A saved, named filter: whoever matches ``criteria`` as of the evaluation time."""

    name: DisplayName
    description: str = ""
    target: Target = Target.ACCOUNT
    criteria: Expression

    _name = field_validator("name")(_readable)


class Objective(Frozen):
    """A milestone within a stage: complete when ``completion`` holds."""

    name: DisplayName
    description: str = ""
    completion: Expression

    _name = field_validator("name")(_readable)


class Marker(Frozen):
    """An ongoing healthy behaviour, usually over a rolling window."""

    name: DisplayName
    description: str = ""
    criteria: Expression

    _name = field_validator("name")(_readable)


class StageExit(Frozen):
    """When an account leaves the stage: after a time, when every objective is complete, or both
    (whichever comes first)."""

    after_days: float | None = Field(default=None, gt=0, le=3650)
    when_objectives_complete: bool = False

    @model_validator(mode="after")
    def _says_when(self) -> StageExit:
        if self.after_days is None and not self.when_objectives_complete:
            raise ValueError(
                "say when the stage ends: after_days, when_objectives_complete, or both"
            )
        return self


class StageClasses(Frozen):
    """Where the stage view's classes cut (docs/stages.md, "Classes"): quantiles of each
    objective's censoring-aware time to complete, and the days without progress that make an
    overdue account ``stuck``."""

    ahead: float = Field(
        default=0.25, gt=0, lt=1, description="done faster than this share of entrants: ahead"
    )
    behind: float = Field(
        default=0.5, gt=0, lt=1, description="a missing objective past this quantile is due"
    )
    stuck: float = Field(
        default=0.9, gt=0, lt=1, description="a missing objective past this quantile is overdue"
    )
    stuck_days: float = Field(
        default=14, gt=0, le=3650, description="overdue and no progress for this many days: stuck"
    )

    @model_validator(mode="after")
    def _increasing(self) -> StageClasses:
        if not self.ahead < self.behind < self.stuck:
            raise ValueError(
                f"the quantiles must increase: ahead ({self.ahead:g}) < behind ({self.behind:g})"
                f" < stuck ({self.stuck:g})"
            )
        return self


class StageDefinition(Frozen):
    """A lifecycle phase with entry criteria, exit criteria, objectives and markers."""

    name: DisplayName
    description: str = ""
    entry: Expression
    entered_at: str | None = Field(
        default=None,
        description=(
            "a date/time attribute that says when an account entered (default: when the entry "
            "criteria first held, where that can be dated)"
        ),
    )
    exit: StageExit
    objectives: tuple[Objective, ...] = ()
    markers: tuple[Marker, ...] = ()
    classes: StageClasses | None = Field(
        default=None, description="this stage's class thresholds (default: stage_classes)"
    )

    _name = field_validator("name")(_readable)

    @model_validator(mode="after")
    def _objectives_for_completion(self) -> StageDefinition:
        if self.exit.when_objectives_complete and not self.objectives:
            raise ValueError("exit.when_objectives_complete needs at least one objective")
        names = [objective.name for objective in self.objectives]
        if len(set(names)) != len(names):
            raise ValueError("objective names must be unique within a stage")
        return self


# -- jobs -------------------------------------------------------------------------------------


class WaitStep(Frozen):
    """Pause the sequence; what follows is sent only if the goal is not reached by then."""

    wait_days: float = Field(gt=0, le=3650)


# Every action kind owns its step model (closeloop.channels); ``send`` says which it is.
ActionStep = EmailStep | SlackStep | WebhookStep | SetAttributeStep | EnrollStep | FileStep
ACTION_STEP_TYPES: tuple[type[BaseModel], ...] = (
    EmailStep,
    SlackStep,
    WebhookStep,
    SetAttributeStep,
    EnrollStep,
    FileStep,
)
Action = Annotated[ActionStep, Field(discriminator="send")]


def _step_kind(value: Any) -> str | None:
    """Which kind of step a YAML item is, by its key, so a mistake gets one message."""
    if isinstance(value, dict):
        return "action" if "send" in value else "WaitStep" if "wait_days" in value else None
    if isinstance(value, WaitStep):
        return "WaitStep"
    return "action" if isinstance(value, ACTION_STEP_TYPES) else None


Step = Annotated[
    Annotated[Action, Tag("action")] | Annotated[WaitStep, Tag("WaitStep")],
    Discriminator(
        _step_kind,
        custom_error_type="step_kind",
        custom_error_message=(
            "a step is either an action (`send: email`, slack, webhook, set_attribute, enroll "
            "or file) or `wait_days: N`"
        ),
    ),
]


class Variant(Frozen):
    """A message or timing alternative; each variant is compared with the holdout and the others."""

    name: str = Field(min_length=1, max_length=40, description="snake_case, e.g. short_email")
    weight: float = Field(default=1.0, gt=0, description="relative share of the treated accounts")
    steps: tuple[Step, ...] = ()

    @field_validator("name")
    @classmethod
    def _name_is_identifier(cls, value: str) -> str:
        if not _IDENTIFIER.match(value):
            raise ValueError("a variant name is snake_case (e.g. short_email)")
        if value in ("holdout", "treatment"):
            raise ValueError(f"{value!r} names an arm closeloop makes itself")
        return value


class Allocation(StrEnum):
    """How treated units are split among a job's variants (the holdout is never adaptive)."""

    FIXED = "fixed"  # by each variant's weight
    THOMPSON = "thompson"  # by each variant's posterior probability of being best, floored


class ReEntryPolicy(Frozen):
    """Whether an account that left the job may enter again, and after how long."""

    after_days: float = Field(gt=0, le=3650)


class Hypothesis(Frozen):
    """What the team expects before launch; locked when the job launches."""

    expected_effect: str = Field(min_length=1)
    primary_metric: Literal["completion_rate", "time_to_goal"] = "completion_rate"
    minimum_effect: float | None = Field(default=None, gt=0, le=1)
    horizon_days: float | None = Field(default=None, gt=0, le=3650)


class JobDefinition(Frozen):
    """An intervention: one goal, an audience, a duration, actions and a randomized holdout."""

    name: DisplayName
    description: str = ""
    target: Target = Target.ACCOUNT
    audience: Expression
    exclusions: tuple[Expression, ...] = ()
    goal: Expression
    duration_days: int = Field(gt=0, le=3650)
    re_entry: Literal["never"] | ReEntryPolicy = Field(
        default="never", description='"never", or {after_days: N} after the last enrollment ended'
    )
    exit_when_ineligible: bool = Field(
        default=False,
        description="exit (reason no_longer_eligible) when the audience stops holding",
    )
    observational: bool = False  # before holdout: the holdout check reads it
    holdout: float = DEFAULT_HOLDOUT
    starts_at: datetime | None = None
    ends_at: datetime | None = None
    steps: tuple[Step, ...] = Field(
        default=(), description="entry actions; `wait_days` then reminders while not completed"
    )
    variants: tuple[Variant, ...] = ()
    allocation: Allocation = Field(
        default=Allocation.FIXED,
        description=(
            "how treated units are split among variants: fixed (by weight) or thompson "
            "(adaptive, toward the variant most likely best; needs at least two variants)"
        ),
    )
    on_completion: tuple[Action, ...] = ()
    on_exit: tuple[Action, ...] = ()
    hypothesis: Hypothesis | None = None
    priority: int = Field(default=0, description="higher first when the contact policy must choose")

    _name = field_validator("name")(_readable)

    @field_validator("holdout")
    @classmethod
    def _holdout_is_honest(cls, value: float, info: ValidationInfo) -> float:
        if not 0 <= value < 1:
            raise ValueError("holdout is a fraction of the audience, between 0 and 1")
        # Without a holdout nothing can be said about cause; only explicitly observational jobs may
        # go without one (they are measured by matching instead).
        if not info.data.get("observational") and not MIN_HOLDOUT <= value <= MAX_HOLDOUT:
            raise ValueError(
                f"holdout must be between {MIN_HOLDOUT} and {MAX_HOLDOUT} (got {value}); "
                "set `observational: true` to run without a randomized holdout"
            )
        return value

    @field_validator("allocation")
    @classmethod
    def _allocation_has_a_choice(cls, value: Allocation, info: ValidationInfo) -> Allocation:
        variants = info.data.get("variants")
        if value == Allocation.THOMPSON and variants is not None and len(variants) < 2:
            raise ValueError(
                f"allocation thompson chooses among variants, and this job has {len(variants)}; "
                "give it at least two variants or use `allocation: fixed`"
            )
        return value

    @model_validator(mode="after")
    def _consistent(self) -> JobDefinition:
        if self.starts_at and self.ends_at and self.ends_at <= self.starts_at:
            raise ValueError("ends_at must be after starts_at")
        if self.variants and self.steps:
            raise ValueError("give steps either to the job or to each variant, not both")
        names = [variant.name for variant in self.variants]
        if len(set(names)) != len(names):
            raise ValueError("variant names must be unique within a job")
        for steps in (self.steps, *(variant.steps for variant in self.variants)):
            if steps and isinstance(steps[-1], WaitStep):
                raise ValueError("a sequence cannot end with a wait: nothing would follow it")
        return self

    @property
    def horizon_days(self) -> float:
        """The days after entry the job is measured over: the hypothesis' horizon, else the
        duration (reports, power and the simulator's ground truth all use this one)."""
        horizon = self.hypothesis.horizon_days if self.hypothesis is not None else None
        return float(horizon if horizon is not None else self.duration_days)

    @property
    def arms(self) -> tuple[str, ...]:
        """The treated arms: each variant's name, or ``treatment`` when there are no variants."""
        return tuple(variant.name for variant in self.variants) or ("treatment",)

    def steps_of(self, arm: str) -> tuple[Step, ...]:
        """The step sequence an arm follows (the holdout is timed like the first treated arm)."""
        for variant in self.variants:
            if variant.name == arm:
                return variant.steps
        return self.variants[0].steps if self.variants else self.steps

    def is_enrolling(self, at: datetime) -> bool:
        """Whether the job admits new enrollments at ``at`` (its enrollment window is open)."""
        if self.starts_at is not None and at < self.starts_at:
            return False
        return self.ends_at is None or at < self.ends_at


# -- project ----------------------------------------------------------------------------------


class ContactPolicy(Frozen):
    """At most ``max_jobs`` jobs may enroll one account within any ``per_days`` days."""

    max_jobs: int = Field(ge=1)
    per_days: float = Field(gt=0, le=3650)


_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _env_name(value: str) -> str:
    if not _ENV_NAME.match(value):
        raise ValueError(
            f"{value!r} is not an environment variable name; Slack webhook URLs are secrets, so "
            "closeloop.yaml names the variable that holds each one (e.g. SLACK_CS_ALERTS)"
        )
    return value


class SlackRouting(Frozen):
    """Which Slack incoming webhook each account owner's messages go to.

    Values are names of environment variables holding the webhook URLs (secrets stay out of
    YAML); an owner without an entry gets ``default``.
    """

    default: str | None = Field(default=None, description="env var with the default webhook URL")
    owners: dict[str, str] = Field(
        default_factory=dict, description="owner name -> env var with that owner's webhook URL"
    )

    @field_validator("default")
    @classmethod
    def _default_is_env_name(cls, value: str | None) -> str | None:
        return None if value is None else _env_name(value)

    @field_validator("owners")
    @classmethod
    def _owners_are_env_names(cls, value: dict[str, str]) -> dict[str, str]:
        for name in value.values():
            _env_name(name)
        return value


ImportTable = Literal[
    "accounts",
    "people",
    "events",
    "subscriptions",
    "survey_responses",
    "activities",
    "opportunities",
    "churn_reasons",
]


class ColumnNormalization(Frozen):
    """How the values of one column are cleaned by ``closeloop import`` before they are checked:
    trim, then casefold, then aliases (docs/import.md)."""

    trim: bool = Field(
        default=True,
        description="collapse runs of whitespace inside a value to one space (surrounding "
        "whitespace is always removed)",
    )
    casefold: bool = Field(
        default=False, description="lower-case the value; aliases then match in any case"
    )
    aliases: dict[str, str | None] = Field(
        default_factory=dict,
        description='replace a value by another, e.g. {"Mid Market": mid_market}; null empties it',
    )


class TableImport(Frozen):
    """How files for one canonical table are imported (``imports:`` in closeloop.yaml)."""

    map: dict[str, str] = Field(
        default_factory=dict,
        description="canonical column -> the file's column, e.g. {name: event_name, timestamp: ts}",
    )
    normalize: dict[str, ColumnNormalization] = Field(
        default_factory=dict, description="canonical column -> how its values are cleaned"
    )


class SlowCompleterSignal(Frozen):
    """``slow_completer``: in a stage, missing an objective past this quantile of its time to
    complete."""

    quantile: float = Field(default=0.75, gt=0, lt=1)


class UsageDropSignal(Frozen):
    """``usage_drop``: ``usage_change_60d`` below this (a share: -0.4 is 40% fewer events)."""

    threshold: float = Field(default=-0.4, ge=-1, lt=0)


class RenewalRiskSignal(Frozen):
    """``renewal_risk``: renewal within ``within_days`` days and ``risk`` holds."""

    within_days: int = Field(default=60, gt=0, le=3650)
    risk: Expression = "usage_change_60d < -0.2 or last_seen_days > 14"


class SignalSettings(Frozen):
    """The rules ``closeloop signals`` applies (docs/stages.md, "Signals")."""

    slow_completer: SlowCompleterSignal = Field(default_factory=SlowCompleterSignal)
    usage_drop: UsageDropSignal = Field(default_factory=UsageDropSignal)
    renewal_risk: RenewalRiskSignal = Field(default_factory=RenewalRiskSignal)


class BoardReportEvery(StrEnum):
    WEEK = "week"
    MONTH = "month"
    QUARTER = "quarter"


class BoardReportSettings(Frozen):
    """``board_report:``: the daemon emails the board report for each closed period, once per
    recipient (docs/board.md)."""

    every: BoardReportEvery = Field(description="week (Monday to Monday), month or quarter")
    to: tuple[str, ...] = Field(min_length=1, description="the addresses that receive it")
    subject: str | None = Field(
        default=None,
        min_length=1,
        max_length=200,
        description="the email's subject (default: '<project> board report <period>')",
    )
    value_event: str | None = Field(
        default=None,
        min_length=1,
        description="the event that marks first value, for the report's time to value",
    )

    @field_validator("to")
    @classmethod
    def _plain_addresses(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for address in value:
            local, at, domain = address.partition("@")
            if (
                not at
                or not local
                or "." not in domain
                or any(c.isspace() or c in '<>,;:"()[]\\' for c in address)
            ):
                raise ValueError(f"{address!r} is not a plain email address (name@example.com)")
        if len({address.lower() for address in value}) != len(value):
            raise ValueError("an address is listed twice")
        return value


class ProjectConfig(Frozen):
    """``closeloop.yaml``: the project's name and where its definitions live.

    Each list names YAML files relative to the project folder. The defaults are loaded when they
    exist; a file listed explicitly must exist.
    """

    name: str = Field(min_length=1)
    jobs: tuple[str, ...] = ("jobs.yaml",)
    cohorts: tuple[str, ...] | None = None
    stages: tuple[str, ...] | None = None
    attributes: tuple[str, ...] | None = None
    health: tuple[str, ...] | None = Field(
        default=None, description="health score files (default: health.yaml when it exists)"
    )
    email_from: str = "success@closeloop.local"
    unsubscribe_url: str = Field(
        default="http://127.0.0.1:8000/unsubscribe?token={token}",
        description="the link in every email; {token} becomes a signed, expiring token",
    )
    unsubscribe_days: int = Field(
        default=365, gt=0, le=3650, description="how long an unsubscribe link stays valid"
    )
    contact_policy: ContactPolicy | None = None
    stage_classes: StageClasses = Field(
        default_factory=StageClasses, description="class thresholds of every stage's view"
    )
    signals: SignalSettings = Field(default_factory=SignalSettings)
    board_report: BoardReportSettings | None = Field(
        default=None, description="email the board report for each closed period (daemon)"
    )
    slack: SlackRouting = Field(default_factory=SlackRouting)
    rate_limits: dict[str, float] = Field(
        default_factory=dict,
        description="most messages per second per channel, e.g. {email: 5, slack: 1}",
    )
    sources: Sources
    imports: dict[ImportTable, TableImport] = Field(
        default_factory=dict,
        description="per canonical table: the column mapping and value normalisation that "
        "`closeloop import` applies (the command's --map adds to and overrides the map)",
    )

    @field_validator("unsubscribe_url")
    @classmethod
    def _signed_unsubscribe(cls, value: str) -> str:
        if "{token}" not in value:
            raise ValueError(
                "unsubscribe_url must contain {token} (a signed, expiring token); an account id "
                "in a link can be guessed, so `{account_id}` is not accepted"
            )
        return value

    @field_validator("rate_limits")
    @classmethod
    def _positive_rates(cls, value: dict[str, float]) -> dict[str, float]:
        for channel, rate in value.items():
            if rate <= 0:
                raise ValueError(f"the rate limit of {channel!r} must be positive")
        return value


class JobsFile(Frozen):
    jobs: tuple[JobDefinition, ...] = ()


class CohortsFile(Frozen):
    cohorts: tuple[CohortDefinition, ...] = ()


class StagesFile(Frozen):
    stages: tuple[StageDefinition, ...] = ()


class AttributesFile(Frozen):
    attributes: tuple[ComputedAttribute, ...] = ()


# -- health scores ------------------------------------------------------------------------------


class Polarity(StrEnum):
    """Which way a measure is good: said explicitly, never guessed from the data."""

    HIGHER_IS_BETTER = "higher_is_better"
    LOWER_IS_BETTER = "lower_is_better"


class HealthMeasure(Frozen):
    """One input of a health score: an expression giving a number or true/false, scaled 0..100.

    A number is scaled linearly between ``range`` (low -> 0, high -> 100, clamped; reversed
    for ``lower_is_better``); true is 100 (0 for ``lower_is_better``). No value: the measure is
    left out and the others are re-weighted.
    """

    name: DisplayName
    description: str = ""
    expression: Expression
    weight: float = Field(gt=0, le=1000, description="relative weight in the score")
    polarity: Polarity = Field(description="higher_is_better or lower_is_better (required)")
    range: tuple[float, float] | None = Field(
        default=None,
        description="[low, high] for a number: low scales to 0, high to 100 (clamped)",
    )

    _name = field_validator("name")(_readable)

    @field_validator("range")
    @classmethod
    def _increasing(cls, value: tuple[float, float] | None) -> tuple[float, float] | None:
        if value is not None and not value[0] < value[1]:
            raise ValueError(f"range is [low, high] with low < high (got {list(value)})")
        return value


class HealthBands(Frozen):
    """Band thresholds: a score below ``poor`` is poor, below ``concerning`` concerning, else
    healthy."""

    poor: float = Field(ge=0, le=100)
    concerning: float = Field(ge=0, le=100)

    @model_validator(mode="after")
    def _in_order(self) -> HealthBands:
        if not self.poor < self.concerning:
            raise ValueError(
                f"bands go up: poor ({self.poor:g}) must be below concerning ({self.concerning:g})"
            )
        return self


class HealthSegment(Frozen):
    """A per-segment variant: accounts matching ``when`` use these weights (first match wins;
    measures not named keep their weight, a weight of 0 leaves a measure out)."""

    when: Expression
    weights: dict[str, float] = Field(description="measure name -> weight for these accounts")

    @field_validator("weights")
    @classmethod
    def _not_negative(cls, value: dict[str, float]) -> dict[str, float]:
        for name, weight in value.items():
            if weight < 0:
                raise ValueError(f"the weight of {name!r} must not be negative")
        return value


class HealthScoreDefinition(Frozen):
    """A health score: weighted measures scaled 0..100, bands, and per-segment weights."""

    name: DisplayName
    description: str = ""
    bands: HealthBands
    measures: tuple[HealthMeasure, ...] = Field(description="at least one measure")
    segments: tuple[HealthSegment, ...] = ()

    _name = field_validator("name")(_readable)

    @model_validator(mode="after")
    def _measures_named_once(self) -> HealthScoreDefinition:
        if not self.measures:
            raise ValueError("a health score needs at least one measure")
        names = [measure.name for measure in self.measures]
        if len(set(names)) != len(names):
            raise ValueError("measure names must be unique within a health score")
        return self


class HealthFile(Frozen):
    health_scores: tuple[HealthScoreDefinition, ...] = ()
