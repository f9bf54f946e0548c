"""Helpers shared by tests (importable because pytest puts ``tests/`` on the path)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Backends:
    """Where a test's warehouse and state store live."""

    name: str
    warehouse_url: str
    state_url: str

    def environ(self) -> dict[str, str]:
        return {
            "CLOSELOOP_WAREHOUSE_URL": self.warehouse_url,
            "CLOSELOOP_STATE_URL": self.state_url,
        }


def embedded_backends(folder: Path) -> Backends:
    return Backends(
        "embedded",
        f"duckdb:///{folder / 'warehouse.duckdb'}",
        f"sqlite:///{folder / 'state.sqlite'}",
    )
