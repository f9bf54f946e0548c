"""What the surfaces offer before anything runs: the tables ``closeloop import`` takes and the
simulator's scenarios. Their help text is built from these at start-up, so this module loads
neither a warehouse library nor the simulator's numerics (closeloop.data.tables and
closeloop.simulate.config are plain data)."""

from __future__ import annotations

from closeloop.data.tables import CANONICAL_TABLES
from closeloop.simulate.config import SCENARIOS

IMPORT_TABLES: tuple[str, ...] = tuple(CANONICAL_TABLES)


def scenario_descriptions() -> dict[str, str]:
    """Every simulator scenario by name, with what it shows."""
    return {name: chosen.description for name, chosen in SCENARIOS.items()}
