"""The committed JSON Schemas match the models (regenerate with `closeloop schema`)."""

from __future__ import annotations

import json

import pytest

from closeloop.definitions.json_schema import FILE_KINDS, SCHEMA_DIR, json_schema, schema_texts


@pytest.mark.parametrize("name", sorted(schema_texts()))
def test_committed_schema_is_current(name: str) -> None:
    committed = SCHEMA_DIR / name
    assert committed.is_file(), f"{committed} is missing; run `closeloop schema`"
    assert committed.read_text(encoding="utf-8") == schema_texts()[name], (
        f"{committed} is stale: the models changed; run `closeloop schema` and commit the result"
    )


def test_every_file_kind_has_a_schema_that_forbids_unknown_fields() -> None:
    assert set(FILE_KINDS) == {"closeloop", "jobs", "cohorts", "stages", "attributes", "health"}
    for kind in FILE_KINDS:
        schema = json_schema(kind)
        assert schema["additionalProperties"] is False, kind
        json.dumps(schema)  # serialisable as committed
    jobs = json_schema("jobs")["$defs"]["JobDefinition"]
    assert {"audience", "goal", "holdout", "hypothesis"} <= set(jobs["properties"])
    assert set(jobs["required"]) == {"name", "audience", "goal", "duration_days"}
