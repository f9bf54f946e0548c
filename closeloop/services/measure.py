"""Measure an intervention run elsewhere: a units file and an events file in, one measurement out.

Both files are read as text with the importer's readers (same formats, same row numbers), loaded
into an in-memory DuckDB through Ibis and typed there with the importer's rules: a timestamp with
a zone is converted to UTC, one without is taken as UTC. Every per-unit fact (the first goal at or
after entry, the value summed over the horizon) is computed in the engine; the resulting units table
goes to :func:`closeloop.analysis.measurement.measure_units`, the function the job report uses.
"""

from __future__ import annotations

import math
import re
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from difflib import get_close_matches
from pathlib import Path
from typing import IO, Any

import ibis
import ibis.expr.types as ir
import pyarrow as pa

from closeloop.analysis.matching import MatchedComparison, match_units
from closeloop.analysis.measurement import Measurement, MeasureOptions, measure_units
from closeloop.data.readers import FORMATS, read_batches, read_header
from closeloop.errors import ConfigurationError, DataImportError, NotFoundError
from closeloop.schemas import measurement as schemas
from closeloop.services.data import missing_event_warnings
from closeloop.services.results import measurement_model

# What the surfaces need to measure files, so they import services only.
__all__ = [
    "MeasureRequest",
    "MeasureResult",
    "measure_files",
    "measure_uploads",
    "parse_horizon",
    "parse_weights",
]

UNIT_COLUMNS = ("unit_id", "arm", "entered_at")
EVENT_COLUMNS = ("unit_id", "name", "timestamp")
# Columns of the units table handed to measure_units; a covariate or segment may not reuse them.
RESERVED = frozenset({"unit_id", "arm", "entered_at", "goal_at", "value"})
ROW = "__row__"  # the file's row number (1 = the first row after the header), kept for errors
SHOWN = 5  # bad rows listed in one error message
BATCH_SIZE = 50_000
TIMESTAMP_EXAMPLE = "an ISO 8601 timestamp like 2024-03-31T14:05:00Z"
_HORIZON = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([dhw]?)\s*$", re.IGNORECASE)
_HORIZON_UNIT_DAYS = {"": 1.0, "d": 1.0, "h": 1.0 / 24.0, "w": 7.0}


@dataclass(frozen=True)
class MeasureRequest:
    """What to measure: the two files, the goal, the horizon, the control arm and the extras."""

    units: Path
    events: Path
    goal: str
    horizon_days: float
    control: str
    value_event: str | None = None
    covariate: str | None = None
    segment_by: tuple[str, ...] = ()
    weights: Mapping[str, float] | None = None
    match_on: tuple[str, ...] = ()  # no randomization: coarsened exact matching on these
    alpha: float = 0.05
    # How messages and ``source`` name the files (an upload's name); default: the paths.
    units_name: str | None = None
    events_name: str | None = None

    @property
    def units_label(self) -> str:
        return self.units_name if self.units_name is not None else str(self.units)

    @property
    def events_label(self) -> str:
        return self.events_name if self.events_name is not None else str(self.events)


@dataclass(frozen=True)
class MeasureResult:
    """The measurement, what was read, and warnings about the input (besides the measurement's)."""

    measurement: Measurement
    units_file: str
    events_file: str
    units: int
    events: int
    events_for_unknown_units: int
    warnings: list[str] = field(default_factory=list)
    matched: list[MatchedComparison] = field(default_factory=list)

    @property
    def model(self) -> schemas.Measurement:
        """The measurement as the public model (docs/measure-format.md): what JSON surfaces show."""
        return measurement_model(
            self.measurement,
            warnings=self.warnings,
            source=schemas.MeasureSource(
                units_file=self.units_file,
                events_file=self.events_file,
                units=self.units,
                events=self.events,
                events_for_unknown_units=self.events_for_unknown_units,
            ),
            matched=self.matched,
        )


def parse_horizon(text: str) -> float:
    """``14d``, ``14`` (days), ``36h`` or ``2w`` as days.

    >>> parse_horizon("36h")
    1.5
    """
    match = _HORIZON.match(text)
    days = float(match.group(1)) * _HORIZON_UNIT_DAYS[match.group(2).lower()] if match else 0.0
    if not match or not days > 0:
        raise ConfigurationError(
            f"--horizon {text!r} is not a positive duration; write it like 14d, 14 (days), 36h "
            "or 2w"
        )
    return days


def parse_weights(items: Sequence[str]) -> dict[str, float] | None:
    """``ARM=W`` pairs as a split that sums to 1 (None when none are given).

    >>> parse_weights(["holdout=1", "treatment=3"])
    {'holdout': 0.25, 'treatment': 0.75}
    """
    if not items:
        return None
    weights: dict[str, float] = {}
    for item in items:
        arm, equals, number = item.partition("=")
        try:
            weight = float(number) if equals else math.nan
        except ValueError:
            weight = math.nan
        if not arm.strip() or not math.isfinite(weight) or weight <= 0:
            raise ConfigurationError(
                f"--weights {item!r} is not ARM=W with a positive weight W (e.g. holdout=0.2)"
            )
        if arm.strip() in weights:
            raise ConfigurationError(f"--weights gives arm {arm.strip()!r} twice")
        weights[arm.strip()] = weight
    total = sum(weights.values())
    return {arm: weight / total for arm, weight in weights.items()}


def measure_files(request: MeasureRequest) -> MeasureResult:
    """Read both files, build one row per unit in DuckDB, and measure them."""
    _check_options(request)
    con = ibis.duckdb.connect()
    con.raw_sql("SET TimeZone = 'UTC'")
    try:
        units = _typed_units(con, request)
        events = _typed_events(con, request)
        _check_arms(units, request)
        table = con.create_table("measured_units", _units_with_outcomes(units, events, request))
        unknown = int(events.anti_join(units, "unit_id").count().to_pyarrow().as_py())
        # A goal (or value event) no row has measures nothing: say so, with the likely name.
        wanted = [name for name in (request.goal, request.value_event) if name is not None]
        warnings = missing_event_warnings(events, wanted, request.events_label)
        if unknown:
            warnings.append(
                f"{unknown} event(s) in {request.events_label} belong to no unit in "
                f"{request.units_label} and were ignored"
            )
        measurement = measure_units(
            table,
            MeasureOptions(
                horizon_days=request.horizon_days,
                control=request.control,
                weights=request.weights,
                segment_by=request.segment_by,
                value=request.value_event is not None,
                covariate=request.covariate,
                alpha=request.alpha,
            ),
        )
        matched = (
            [_matched(table, request, arm) for arm in measurement.treated_arms]
            if request.match_on
            else []
        )
        if matched:
            warnings.append(
                "no randomization (--match-on): the comparisons above are naive differences "
                "between arms that chose themselves; read the matched estimates (effect on the "
                "treated, observational) instead"
            )
        if request.weights is None:
            warnings.append(
                "no --weights given: the sample-ratio check needs the configured split, so it was "
                "not run (srm is null)"
            )
        return MeasureResult(
            measurement=measurement,
            units_file=request.units_label,
            events_file=request.events_label,
            units=int(units.count().to_pyarrow().as_py()),
            events=int(events.count().to_pyarrow().as_py()),
            events_for_unknown_units=unknown,
            warnings=warnings,
            matched=matched,
        )
    finally:
        con.disconnect()


def measure_uploads(
    request: MeasureRequest,
    units: IO[bytes],
    events: IO[bytes],
) -> MeasureResult:
    """Measure two uploaded files (the API): ``request.units_name`` and ``events_name`` are the
    names the client gave them, which decide their format by extension and name them in messages.

    The uploads are copied to a temporary folder that is removed afterwards.
    """
    with tempfile.TemporaryDirectory(prefix="closeloop-measure-") as folder:
        paths = []
        for stream, role, name in (
            (units, "units", request.units_label),
            (events, "events", request.events_label),
        ):
            path = Path(folder) / f"{role}{_upload_suffix(name)}"
            with path.open("wb") as handle:
                shutil.copyfileobj(stream, handle)
            paths.append(path)
        located = replace(request, units=paths[0], events=paths[1])
        try:
            return measure_files(located)
        except DataImportError as error:
            # The reader names the temporary copy; the client knows the file by its own name.
            message = str(error)
            for path, name in zip(paths, (request.units_label, request.events_label), strict=True):
                message = message.replace(str(path), name)
            raise DataImportError(message) from None


def _upload_suffix(name: str) -> str:
    """The extension(s) that tell the reader an upload's format: ``.csv``, ``.jsonl.gz``, ..."""
    suffixes = [suffix.lower() for suffix in Path(name).suffixes[-2:]]
    compressed = suffixes[-1:] == [".gz"]
    if compressed:
        suffixes.pop()
    if suffixes and suffixes[-1] in FORMATS:
        return suffixes[-1] + (".gz" if compressed else "")
    raise DataImportError(
        f"{name or 'an upload'}: the file name must end in one of {', '.join(FORMATS)} "
        "(optionally .gz) so its format is known"
    )


# -- checks on the options -------------------------------------------------------------------------


def _check_options(request: MeasureRequest) -> None:
    if request.covariate is not None and request.value_event is None:
        raise ConfigurationError(
            "--covariate adjusts the value outcome (CUPED); give --value-event too"
        )
    for flag, names in (("--covariate", [request.covariate]), ("--segment-by", request.segment_by)):
        clashing = sorted({name for name in names if name in RESERVED})
        if clashing:
            raise ConfigurationError(
                f"{flag} {', '.join(clashing)}: a pre-entry column cannot be one of "
                f"{', '.join(sorted(RESERVED))}"
            )
    if len(set(request.segment_by)) != len(request.segment_by):
        raise ConfigurationError("--segment-by names a column twice")


# -- reading ---------------------------------------------------------------------------------------


def _text_table(con: Any, path: Path, label: str, name: str, required: Sequence[str]) -> ir.Table:
    """The file as text columns plus its row numbers, in DuckDB; missing columns are an error.

    Messages name the file ``label`` (its path, or an upload's name).
    """
    if not path.is_file():
        raise DataImportError(f"{label}: no such file")
    header = read_header(path)
    columns: list[str] = list(header) if header is not None else []
    row_numbers: list[int] = []
    rows: list[dict[str, str | None]] = []
    for batch in read_batches(path, BATCH_SIZE):
        if batch.rejects:
            reject = batch.rejects[0]
            raise DataImportError(f"{label}: row {reject.row_number}: {reject.reason}")
        row_numbers.extend(batch.row_numbers)
        rows.extend(batch.rows)
        if header is None:  # JSON Lines: the columns are every key seen
            columns.extend(key for row in batch.rows for key in row if key not in columns)
    _check_columns(label, columns, required)
    data: dict[str, Any] = {ROW: pa.array(row_numbers, pa.int64())}
    for column in columns:
        data[column] = pa.array([_clean(row.get(column)) for row in rows], pa.string())
    return con.create_table(name, pa.table(data))


def _clean(value: str | None) -> str | None:
    return None if value is None or not value.strip() else value.strip()


def _check_columns(path: str, header: Sequence[str], required: Sequence[str]) -> None:
    missing = [name for name in required if name not in header]
    if not missing:
        return
    hints = [
        f"{close[0]!r} → {name!r}?"
        for name in missing
        if (close := get_close_matches(name, list(header), n=1))
    ]
    listed = ", ".join(header) if header else "no columns"
    raise DataImportError(
        f"{path}: missing column(s) {', '.join(missing)}; the header has {listed}"
        + (f" (rename {'; '.join(hints)})" if hints else "")
    )


def _matched(table: ir.Table, request: MeasureRequest, arm: str) -> MatchedComparison:
    try:
        return match_units(
            table,
            treated=arm,
            comparison=request.control,
            covariates=request.match_on,
            horizon_days=request.horizon_days,
            value=request.value_event is not None,
        )
    except ValueError as problem:
        raise ConfigurationError(f"--match-on: {problem}") from None


def _typed_units(con: Any, request: MeasureRequest) -> ir.Table:
    extra = [request.covariate] if request.covariate else []
    extra += [c for c in (*request.segment_by, *request.match_on) if c not in extra]
    text = _text_table(
        con, request.units, request.units_label, "units_text", [*UNIT_COLUMNS, *extra]
    )
    path = request.units_label
    for column in ("unit_id", "arm", "entered_at"):
        _fail_on_rows(path, text, text[column].isnull(), column, "is empty")
    entered = _timestamp(text.entered_at)
    _fail_on_rows(path, text, entered.isnull(), "entered_at", f"is not {TIMESTAMP_EXAMPLE}")
    columns: dict[str, ir.Value] = {
        "unit_id": text.unit_id,
        "arm": text.arm,
        "entered_at": entered,
    }
    if request.covariate:
        covariate = text[request.covariate].try_cast("float64")
        _fail_on_rows(
            path,
            text,
            text[request.covariate].notnull() & covariate.isnull(),
            request.covariate,
            "is not a number",
        )
        columns[request.covariate] = covariate
    for column in request.segment_by:
        if column != request.covariate:
            columns[column] = text[column]
    for column in request.match_on:
        if column in columns and column != request.covariate:
            continue
        if column == request.covariate:
            continue
        number = text[column].try_cast("float64")
        not_numbers = int(
            (text[column].notnull() & number.isnull()).sum().to_pyarrow().as_py() or 0
        )
        # A column whose every value is a number is binned; any other is matched exactly.
        columns[column] = number if not_numbers == 0 else text[column]
    _fail_on_duplicates(path, text)
    return text.select(ROW, **columns)


def _typed_events(con: Any, request: MeasureRequest) -> ir.Table:
    required = [*EVENT_COLUMNS, "value"] if request.value_event else list(EVENT_COLUMNS)
    text = _text_table(con, request.events, request.events_label, "events_text", required)
    path = request.events_label
    for column in EVENT_COLUMNS:
        _fail_on_rows(path, text, text[column].isnull(), column, "is empty")
    timestamp = _timestamp(text.timestamp)
    _fail_on_rows(path, text, timestamp.isnull(), "timestamp", f"is not {TIMESTAMP_EXAMPLE}")
    columns: dict[str, ir.Value] = {
        "unit_id": text.unit_id,
        "name": text.name,
        "timestamp": timestamp,
    }
    if "value" in text.columns:
        value = text.value.try_cast("float64")
        # Only the values that are summed must be numbers; other events may carry anything.
        summed = text.name == request.value_event if request.value_event else ibis.literal(False)
        _fail_on_rows(
            path, text, summed & text.value.notnull() & value.isnull(), "value", "is not a number"
        )
        columns["value"] = value
    return text.select(ROW, **columns)


def _timestamp(text: ir.StringValue) -> ir.TimestampValue:
    # With the session in UTC this is the importer's rule: a zone converts to UTC, none means UTC.
    typed: ir.TimestampValue = text.try_cast("timestamp('UTC')").cast("timestamp")
    return typed


def _fail_on_rows(
    path: str, table: ir.Table, bad: ir.BooleanValue, column: str, problem: str
) -> None:
    """Raise one error naming the first bad rows (row number, column, value) and how many."""
    found = table.filter(bad)
    rows = found.order_by(ROW).select(ROW, column).limit(SHOWN).to_pyarrow().to_pylist()
    if not rows:
        return
    total = int(found.count().to_pyarrow().as_py())
    listed = "; ".join(f"row {row[ROW]}: {row[column]!r}" for row in rows)
    more = f" (and {total - len(rows)} more row(s))" if total > len(rows) else ""
    raise DataImportError(
        f"{path}: column {column!r}: the value {problem} in {total} row(s) — {listed}{more}"
    )


def _fail_on_duplicates(path: str, table: ir.Table) -> None:
    counted = table.group_by("unit_id").aggregate(
        count=table.count(), rows=table[ROW].collect(order_by=table[ROW]), first=table[ROW].min()
    )
    duplicated = counted.filter(counted["count"] > 1)
    rows = duplicated.order_by("first").limit(SHOWN).to_pyarrow().to_pylist()
    if not rows:
        return
    total = int(duplicated.count().to_pyarrow().as_py())
    listed = "; ".join(
        f"{row['unit_id']!r} in rows {', '.join(str(number) for number in row['rows'])}"
        for row in rows
    )
    more = f" (and {total - len(rows)} more unit_id(s))" if total > len(rows) else ""
    raise DataImportError(
        f"{path}: column 'unit_id': {total} unit_id(s) appear more than once — {listed}{more}; "
        "each unit must have exactly one row"
    )


def _check_arms(units: ir.Table, request: MeasureRequest) -> None:
    counts = units.group_by("arm").aggregate(n=units.count(), first=units[ROW].min())
    arms = {row["arm"]: row for row in counts.to_pyarrow().to_pylist()}
    known = ", ".join(f"{arm} ({arms[arm]['n']})" for arm in sorted(arms))
    if request.control not in arms:
        close = get_close_matches(request.control, list(arms), n=1)
        raise NotFoundError(
            f"--control {request.control!r} is not an arm in {request.units_label}; its arms "
            f"(units) are {known}" + (f"; did you mean {close[0]!r}?" if close else "")
        )
    if request.weights is None:
        return
    unweighted = sorted(arm for arm in arms if arm not in request.weights)
    if unweighted:
        listed = ", ".join(
            f"{arm!r} ({arms[arm]['n']} unit(s), first at row {arms[arm]['first']})"
            for arm in unweighted
        )
        raise DataImportError(
            f"{request.units_label}: column 'arm': arm(s) {listed} have no --weights; weights were "
            f"given for {', '.join(sorted(request.weights))}; add ARM=W for every arm"
        )


# -- the units table -------------------------------------------------------------------------------


def _units_with_outcomes(units: ir.Table, events: ir.Table, request: MeasureRequest) -> ir.Table:
    """``unit_id, arm, entered_at, goal_at[, value][, covariate, segments]`` for measure_units."""
    entry = units.select("unit_id", entered=units.entered_at)
    joined = events.join(entry, "unit_id")
    after_entry = joined.filter(joined.timestamp >= joined.entered)
    goals = after_entry.filter(after_entry.name == request.goal)
    first_goal = goals.group_by("unit_id").aggregate(goal_at=goals.timestamp.min())
    table = units.left_join(first_goal, "unit_id").select(
        *[column for column in units.columns if column != ROW], "goal_at"
    )
    if request.value_event is None:
        return table
    # The same window as completion in measure_units: both ends included, compared as timestamps.
    horizon_seconds = request.horizon_days * 86_400.0
    in_window = after_entry.filter(
        (after_entry.name == request.value_event)
        & (
            after_entry.timestamp
            <= after_entry.entered + ibis.interval(seconds=round(horizon_seconds))
        )
    )
    sums = in_window.group_by("unit_id").aggregate(value=in_window.value.fill_null(0.0).sum())
    with_value = table.left_join(sums, "unit_id")
    return with_value.select(
        *[column for column in table.columns], value=with_value.value.fill_null(0.0)
    )
