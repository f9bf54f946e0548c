"""simulate_into streams a simulated company into a warehouse in bounded buffers, rows intact."""

from __future__ import annotations

from pathlib import Path

import pytest

from closeloop.errors import CloseloopError, WarehouseNotEmptyError
from closeloop.services.project import init_project, open_workspace
from closeloop.services.simulation import SimulationProgress, simulate_into, simulation_config
from support import embedded_backends

CONFIG = simulation_config("default", accounts=40, days=12, seed=5)


def _project(tmp_path: Path) -> Path:
    folder = tmp_path / "project"
    init_project(folder, name="simulated")
    return folder


def test_tiny_flushes_load_the_same_rows_as_one_flush(tmp_path: Path) -> None:
    counts = []
    for name, batch_days, max_buffered_rows in (("whole", 100, 10**9), ("tiny", 1, 1)):
        folder = _project(tmp_path / name)
        with open_workspace(folder, environ=embedded_backends(folder).environ()) as workspace:
            progress: list[SimulationProgress] = []
            result = simulate_into(
                workspace,
                CONFIG,
                batch_days=batch_days,
                max_buffered_rows=max_buffered_rows,
                on_progress=progress.append,
            )
            stored = {
                table: int(workspace.warehouse.table(table).count().execute())
                for table in result.rows
            }
        assert stored == result.rows
        assert [update.days_done for update in progress] == list(range(1, CONFIG.days + 1))
        assert progress[-1].events == result.events == result.rows["events"]
        assert progress[-1].rows == sum(result.rows.values())
        assert result.truth_path == folder / "simulation.json"
        counts.append(result.rows)
    assert counts[0] == counts[1]
    assert counts[0]["accounts"] == CONFIG.n_accounts


def test_a_warehouse_with_accounts_is_refused_before_anything_is_written(tmp_path: Path) -> None:
    folder = _project(tmp_path)
    with open_workspace(folder, environ=embedded_backends(folder).environ()) as workspace:
        simulate_into(workspace, CONFIG)
        (folder / "simulation.json").unlink()
        with pytest.raises(WarehouseNotEmptyError, match="already has 40 accounts") as refused:
            simulate_into(workspace, CONFIG)
        assert isinstance(refused.value, CloseloopError)
        assert int(workspace.warehouse.table("accounts").count().execute()) == 40
    assert not (folder / "simulation.json").exists()


def test_days_shorter_than_the_arrival_period_shorten_it() -> None:
    assert simulation_config("default", days=12).arrival_days == 12
    assert simulation_config("default", days=12, arrival_days=5).arrival_days == 5
    default = simulation_config("default")
    assert simulation_config("default", days=default.days + 50).arrival_days == (
        default.arrival_days
    )
