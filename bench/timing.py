"""Timing shared by the benchmarks: the best wall time of N runs (the least disturbed one)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def best_of(repeats: int, run: Callable[[], T]) -> tuple[float, T]:
    """Run ``run`` ``repeats`` times (at least once); the fastest time in seconds and the last
    result."""
    started = time.perf_counter()
    result = run()
    best = time.perf_counter() - started
    for _ in range(repeats - 1):
        started = time.perf_counter()
        result = run()
        best = min(best, time.perf_counter() - started)
    return best, result
