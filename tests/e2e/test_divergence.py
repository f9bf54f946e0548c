"""Acceptance of the divergence alert on the simulator (slow): the ``divergence`` scenario, where
NPS rises 1.5 points a year while churn climbs, fires it; the ``default`` scenario does not.

Both at 300 accounts and fixed seeds, each scenario over its own length, the alert with its
defaults (the last 12 whole months) ending on the day the simulation ends. Calibration (seeds 1-3
at 300 and 600 accounts): the divergence scenario fired with NPS slope z 4.0-6.7 and NRR slopes
-1.3 to -5.5 pp a year; the default scenario never did (NPS slope z at most 1.1).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import pytest

from closeloop.services.outcomes_voc import divergence
from closeloop.services.project import init_project, open_workspace
from closeloop.services.simulation import simulate_into, simulation_config
from support import embedded_backends

pytestmark = pytest.mark.slow


def _alert(tmp_path: Path, scenario: str, seed: int) -> tuple[bool, str]:
    folder = tmp_path / scenario
    init_project(folder, name=scenario)
    environ = embedded_backends(folder).environ()
    config = simulation_config(scenario, accounts=300, seed=seed)
    with open_workspace(folder, environ=environ) as workspace:
        simulate_into(workspace, config)
    end = datetime.combine(config.start, datetime.min.time()) + timedelta(days=config.days)
    with open_workspace(folder, environ=environ, write=False) as workspace:
        result = divergence(workspace, end)
    return result.fired, "; ".join(rule.explanation for rule in result.rules)


@pytest.mark.parametrize("seed", [1, 3])
def test_divergence_scenario_fires_the_alert(tmp_path: Path, seed: int) -> None:
    fired, why = _alert(tmp_path, "divergence", seed)
    assert fired, why


@pytest.mark.parametrize("seed", [1, 3])
def test_default_scenario_does_not(tmp_path: Path, seed: int) -> None:
    fired, why = _alert(tmp_path, "default", seed)
    assert not fired, why
