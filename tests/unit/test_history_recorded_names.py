"""Within a tick, which attributes have history is asked once per warehouse and entity."""

from __future__ import annotations

from datetime import datetime

from closeloop.data import history
from closeloop.data.tables import ATTRIBUTE_HISTORY
from closeloop.data.warehouse import Warehouse


def _record(warehouse: Warehouse, write_id: str, name: str) -> None:
    rows = {
        "write_id": [write_id],
        "entity": ["account"],
        "entity_id": ["a1"],
        "name": [name],
        "value": ['"pro"'],
        "valid_from": [datetime(2024, 1, 1)],
        "source": ["test"],
    }
    warehouse.append(ATTRIBUTE_HISTORY.name, warehouse.arrow_for(ATTRIBUTE_HISTORY.name, rows))


def test_names_are_fixed_inside_the_block_and_asked_again_outside() -> None:
    warehouse = Warehouse.connect("duckdb://")
    warehouse.ensure_tables()
    accounts = warehouse.table("accounts")
    _record(warehouse, "w1", "plan")
    with history.recorded_names_fixed():
        assert history._overlaid(warehouse, "account", accounts, "account_id") == ["plan"]
        _record(warehouse, "w2", "segment")  # not seen: the block asked once
        assert history._overlaid(warehouse, "account", accounts, "account_id") == ["plan"]
        with history.recorded_names_fixed():  # a nested block shares the outer answer
            assert history._overlaid(warehouse, "account", accounts, "account_id") == ["plan"]
    names = history._overlaid(warehouse, "account", accounts, "account_id")
    assert sorted(names) == ["plan", "segment"]
    assert history._overlaid(warehouse, "person", warehouse.table("people"), "person_id") == []
