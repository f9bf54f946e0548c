"""The ground truth: what a job's policy did to exactly these units, by variant and segment.

For every unit (an account and the moment it entered the job) the simulator knows both potential
outcomes from the same threshold and frailty: did it reach the goal within the horizon under the
variant's policy (its deliveries, each sent only while the goal is not reached), and under no
delivery at all. Averaging those indicators gives the sample average treatment effect on
completion, the quantity an intention-to-treat lift of that variant against a holdout estimates.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from closeloop.simulate.config import ALL_SEGMENTS
from closeloop.simulate.milestone import IntArray

TREATMENT = "treatment"
"""The variant name of the default policy (one email at entry) and of a job without variants."""


@dataclass(frozen=True)
class Touch:
    """One delivery of a policy: ``offset_days`` after entry, on ``channel``.

    It is sent only if the goal has not been reached by then (the engine cancels reminders of
    completed enrollments), so a touch at offset 0 is the entry message.
    """

    offset_days: float = 0.0
    channel: str = "email"


Policy = tuple[Touch, ...]
"""What a job does to a unit of one variant, in order."""


@dataclass(frozen=True)
class TrueEffect:
    """The exact effect of a variant's policy on reaching the goal within the horizon.

    ``completion_if_treated`` and ``completion_if_control`` are the shares of the ``n`` units that
    reach the goal milestone in ``(entered_at, entered_at + horizon]`` under the variant's policy
    and under no delivery; ``effect`` is their difference (absolute, in probability). With
    ``n == 0`` every number is 0.0.
    """

    variant: str
    segment: str
    n: int
    completion_if_treated: float
    completion_if_control: float
    effect: float


def summarise(
    variant: str,
    segment_names: Sequence[str],
    segment: IntArray,
    completed_if_treated: npt.NDArray[np.bool_],
    completed_if_control: npt.NDArray[np.bool_],
) -> list[TrueEffect]:
    """One :class:`TrueEffect` per segment present (in configured order), then ``"all"``."""
    groups = [
        (name, segment == index)
        for index, name in enumerate(segment_names)
        if bool((segment == index).any())
    ]
    groups.append((ALL_SEGMENTS, np.ones(len(segment), dtype=np.bool_)))
    effects: list[TrueEffect] = []
    for name, members in groups:
        n = int(members.sum())
        if n == 0:
            effects.append(TrueEffect(variant, name, 0, 0.0, 0.0, 0.0))
            continue
        treated = int(completed_if_treated[members].sum()) / n
        control = int(completed_if_control[members].sum()) / n
        effects.append(TrueEffect(variant, name, n, treated, control, treated - control))
    return effects
