"""A simulated B2B SaaS company with known causal effects (docs/simulator.md)."""

from closeloop.simulate.company import CompanySimulator, DayBatch, TrueEffect, milestone_days
from closeloop.simulate.config import SCENARIOS, SegmentConfig, SimulationConfig, scenario

__all__ = [
    "SCENARIOS",
    "CompanySimulator",
    "DayBatch",
    "SegmentConfig",
    "SimulationConfig",
    "TrueEffect",
    "milestone_days",
    "scenario",
]
