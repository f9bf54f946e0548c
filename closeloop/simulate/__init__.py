"""A simulated B2B SaaS company with known causal effects (docs/simulator.md).

>>> simulator = CompanySimulator(scenario("default", n_accounts=100, days=20, arrival_days=10))
>>> batches = [simulator.step(day) for day in simulator.config.dates()]
>>> sum(batch.accounts.num_rows for batch in batches)
100
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from closeloop.lazy_exports import load_export

if TYPE_CHECKING:
    from closeloop.simulate.company import (
        FIRST_PROJECT_EVENT,
        SCHEMAS,
        TEAMMATE_INVITED_EVENT,
        CompanySimulator,
        DayBatch,
        PotentialOutcomes,
        UnknownAccountError,
    )
    from closeloop.simulate.config import (
        ALL_SEGMENTS,
        GOAL_EVENT,
        HETEROGENEOUS_VARIANT,
        SCENARIOS,
        MilestoneConfig,
        PlanTier,
        ProductEventConfig,
        Response,
        Scenario,
        SegmentConfig,
        SimulationConfig,
        scenario,
    )
    from closeloop.simulate.milestone import Touches, milestone_days
    from closeloop.simulate.truth import TREATMENT, Policy, Touch, TrueEffect
    from closeloop.simulate.voice import SUPPORT_TICKET_EVENT

__all__ = [
    "ALL_SEGMENTS",
    "FIRST_PROJECT_EVENT",
    "GOAL_EVENT",
    "HETEROGENEOUS_VARIANT",
    "SCENARIOS",
    "SCHEMAS",
    "SUPPORT_TICKET_EVENT",
    "TEAMMATE_INVITED_EVENT",
    "TREATMENT",
    "CompanySimulator",
    "DayBatch",
    "MilestoneConfig",
    "PlanTier",
    "Policy",
    "PotentialOutcomes",
    "ProductEventConfig",
    "Response",
    "Scenario",
    "SegmentConfig",
    "SimulationConfig",
    "Touch",
    "Touches",
    "TrueEffect",
    "UnknownAccountError",
    "milestone_days",
    "scenario",
]

# Each name and the module that defines it, imported on first use: reading the scenarios
# (closeloop.simulate.config, in the CLI's help) then loads neither NumPy, pandas nor Ibis.
_EXPORTS = {
    "FIRST_PROJECT_EVENT": "company",
    "SCHEMAS": "company",
    "TEAMMATE_INVITED_EVENT": "company",
    "CompanySimulator": "company",
    "DayBatch": "company",
    "PotentialOutcomes": "company",
    "UnknownAccountError": "company",
    "ALL_SEGMENTS": "config",
    "GOAL_EVENT": "config",
    "HETEROGENEOUS_VARIANT": "config",
    "SCENARIOS": "config",
    "MilestoneConfig": "config",
    "PlanTier": "config",
    "ProductEventConfig": "config",
    "Response": "config",
    "Scenario": "config",
    "SegmentConfig": "config",
    "SimulationConfig": "config",
    "scenario": "config",
    "Touches": "milestone",
    "milestone_days": "milestone",
    "TREATMENT": "truth",
    "Policy": "truth",
    "Touch": "truth",
    "TrueEffect": "truth",
    "SUPPORT_TICKET_EVENT": "voice",
}


def __getattr__(name: str) -> Any:
    return load_export(__name__, _EXPORTS, globals(), name)
