"""A simulated B2B SaaS company with known causal effects (docs/simulator.md).

>>> simulator = CompanySimulator(scenario("default", n_accounts=100, days=20, arrival_days=10))
>>> batches = [simulator.step(day) for day in simulator.config.dates()]
>>> sum(batch.accounts.num_rows for batch in batches)
100
"""

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
