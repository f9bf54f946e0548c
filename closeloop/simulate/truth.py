"""The ground truth: what the email did to exactly these units, by segment and overall.

For every unit (an account and the moment it entered the job) the simulator knows both potential
outcomes from the same threshold and frailty: did it reach the goal within the horizon if it was
emailed at entry, and if it never was. Averaging those indicators gives the sample average
treatment effect on completion, the quantity an intention-to-treat lift with a holdout estimates.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from closeloop.simulate.config import ALL_SEGMENTS
from closeloop.simulate.milestone import IntArray


@dataclass(frozen=True)
class TrueEffect:
    """The exact effect of an email at entry on reaching the goal within the horizon.

    ``completion_if_treated`` and ``completion_if_control`` are the shares of the ``n`` units that
    reach the goal milestone in ``(entered_at, entered_at + horizon]`` when emailed at entry and
    when never emailed; ``effect`` is their difference (absolute, in probability). With ``n == 0``
    every number is 0.0.
    """

    segment: str
    n: int
    completion_if_treated: float
    completion_if_control: float
    effect: float


def summarise(
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
            effects.append(TrueEffect(name, 0, 0.0, 0.0, 0.0))
            continue
        treated = int(completed_if_treated[members].sum()) / n
        control = int(completed_if_control[members].sum()) / n
        effects.append(TrueEffect(name, n, treated, control, treated - control))
    return effects
