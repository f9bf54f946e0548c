"""Randomized arm assignment by a deterministic hash of (job salt, unit id).

The hash makes assignment random with respect to anything about the account, reproducible (the
same inputs always give the same arm) and stable (re-running a tick never moves anyone).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

HOLDOUT = "holdout"
TREATMENT = "treatment"


def bucket(salt: str, unit_id: str) -> float:
    """A uniform number in [0, 1) determined by ``salt`` and ``unit_id``.

    >>> bucket("s", "acc-1") == bucket("s", "acc-1")
    True
    """
    digest = hashlib.sha256(f"{salt}:{unit_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def assign_arm(salt: str, unit_id: str, holdout: float) -> str:
    """``holdout`` for the first ``holdout`` share of the hash space, ``treatment`` otherwise."""
    return HOLDOUT if bucket(salt, unit_id) < holdout else TREATMENT


def assign_variant(
    salt: str, unit_id: str, holdout: float, arms: Sequence[tuple[str, float]]
) -> str:
    """The holdout below ``holdout``; the rest of [holdout, 1) split among ``arms`` by weight.

    ``arms`` are (name, weight) pairs in the job's order. With one arm this is ``assign_arm``:

    >>> assign_variant("s", "acc-1", 0.2, [(TREATMENT, 1.0)]) == assign_arm("s", "acc-1", 0.2)
    True
    """
    position = bucket(salt, unit_id)
    if position < holdout:
        return HOLDOUT
    share = (position - holdout) / (1 - holdout) * sum(weight for _, weight in arms)
    for name, weight in arms:
        if share < weight:
            return name
        share -= weight
    return arms[-1][0]  # floating-point rounding at the very top of the range


def enrollment_id(job_name: str, unit_id: str, entered_at_iso: str) -> str:
    """A deterministic enrollment id, so a repeated tick can never create a second enrollment."""
    return hashlib.sha256(f"{job_name}|{unit_id}|{entered_at_iso}".encode()).hexdigest()[:32]


def idempotency_key(job_name: str, version: int, enrollment: str, step_index: int) -> str:
    """The key that travels with a message (email Message-ID, webhook header)."""
    raw = f"{job_name}|{version}|{enrollment}|{step_index}"
    return hashlib.sha256(raw.encode()).hexdigest()[:40]
