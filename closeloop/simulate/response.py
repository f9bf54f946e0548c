"""Which configured response a delivery gets: the most specific match of channel and variant."""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from closeloop.simulate.config import Response, SimulationConfig
from closeloop.simulate.milestone import FloatArray


def matching_response(
    responses: tuple[Response, ...], channel: str, variant: str
) -> Response | None:
    """The response for a delivery: a named variant beats ``*``, then a named channel beats ``*``.

    Among equally specific responses the first configured wins; ``None`` when nothing matches.
    """
    best: Response | None = None
    best_rank = -1
    for response in responses:
        if response.channel not in (channel, "*") or response.variant not in (variant, "*"):
            continue
        rank = 2 * (response.variant != "*") + (response.channel != "*")
        if rank > best_rank:
            best, best_rank = response, rank
    return best


@lru_cache(maxsize=256)
def response_effects(
    config: SimulationConfig, channel: str, variant: str
) -> tuple[FloatArray, float]:
    """Per segment (in configured order) the effect of such a delivery, and its decay in days."""
    response = matching_response(config.responses, channel, variant)
    if response is None:
        return np.zeros(len(config.segments)), float("inf")
    effects = np.array([response.effect(segment.name) for segment in config.segments])
    effects.setflags(write=False)
    return effects, response.decay_days
