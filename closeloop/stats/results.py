"""Result types shared by every test in ``closeloop.stats``."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from enum import StrEnum


class Status(StrEnum):
    """What a comparison lets us say. ``insufficient_data`` means: do not read the numbers."""

    POSITIVE = "positive"
    NEGATIVE = "negative"
    INCONCLUSIVE = "inconclusive"
    INSUFFICIENT_DATA = "insufficient_data"


@dataclass(frozen=True)
class Interval:
    lower: float
    upper: float

    @property
    def width(self) -> float:
        return self.upper - self.lower

    def contains(self, value: float) -> bool:
        return self.lower <= value <= self.upper

    @classmethod
    def undefined(cls) -> Interval:
        return cls(math.nan, math.nan)


@dataclass(frozen=True)
class ComparisonResult:
    """Treatment versus control on one metric.

    ``difference`` is ``"absolute"`` (treatment minus control, in the metric's units) or
    ``"relative"`` ((treatment - control) / |control|). ``status`` follows the interval: positive
    when it lies above zero, negative when below, inconclusive when it contains zero.
    """

    difference: str
    estimate: float
    ci: Interval
    se: float
    p_value: float
    df: float
    alpha: float
    status: Status
    message: str = ""

    @classmethod
    def insufficient(cls, difference: str, alpha: float, message: str) -> ComparisonResult:
        return cls(
            difference=difference,
            estimate=math.nan,
            ci=Interval.undefined(),
            se=math.nan,
            p_value=math.nan,
            df=math.nan,
            alpha=alpha,
            status=Status.INSUFFICIENT_DATA,
            message=message,
        )


def status_of(ci: Interval) -> Status:
    if ci.lower > 0:
        return Status.POSITIVE
    if ci.upper < 0:
        return Status.NEGATIVE
    return Status.INCONCLUSIVE


def lower_is_better(result: ComparisonResult) -> ComparisonResult:
    """``result`` with its status read from the goal's side for a metric where lower is better.

    Every status says whether the treatment *helped* (``positive``): for time to goal an interval
    below 0 means the goal was reached sooner, so it is positive. The signed estimate and interval
    stay as they are.
    """
    mirrored = {Status.POSITIVE: Status.NEGATIVE, Status.NEGATIVE: Status.POSITIVE}
    return replace(result, status=mirrored.get(result.status, result.status))
