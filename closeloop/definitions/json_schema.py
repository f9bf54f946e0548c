"""JSON Schema of the project's YAML files, generated from the definition models.

The schemas are committed under ``closeloop/definitions/schema/`` so editors can validate and
autocomplete while a person types (a test fails when they are stale); ``closeloop schema``
writes them anywhere. Point an editor at one with a first line such as
``# yaml-language-server: $schema=<path>/jobs.schema.json``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from closeloop.definitions.models import (
    AttributesFile,
    CohortsFile,
    HealthFile,
    JobsFile,
    ProjectConfig,
    StagesFile,
)

SCHEMA_DIR = Path(__file__).parent / "schema"
DIALECT = "https://json-schema.org/draft/2020-12/schema"

# File kind -> (model of the whole file, what the file holds).
FILE_KINDS: dict[str, tuple[type[BaseModel], str]] = {
    "closeloop": (ProjectConfig, "closeloop.yaml: the project's name and definition files"),
    "jobs": (JobsFile, "jobs: interventions with a goal, an audience and a randomized holdout"),
    "cohorts": (CohortsFile, "cohorts: saved, named filters"),
    "stages": (StagesFile, "stages: lifecycle phases with objectives and markers"),
    "attributes": (AttributesFile, "computed attributes: values derived from the data"),
    "health": (HealthFile, "health scores: weighted measures, bands and segment variants"),
}


def json_schema(kind: str) -> dict[str, Any]:
    """The JSON Schema of one file kind (``closeloop``, ``jobs``, ``cohorts``, ...)."""
    model, description = FILE_KINDS[kind]
    schema = model.model_json_schema(mode="validation")
    return {"$schema": DIALECT, "title": f"closeloop {kind}", "description": description, **schema}


def schema_file_name(kind: str) -> str:
    return f"{kind}.schema.json"


def schema_texts() -> dict[str, str]:
    """Each schema file's name and exact text (stable: sorted keys, trailing newline)."""
    return {
        schema_file_name(kind): json.dumps(json_schema(kind), indent=2, sort_keys=True) + "\n"
        for kind in FILE_KINDS
    }


def write_schemas(folder: Path = SCHEMA_DIR) -> list[Path]:
    """Write every schema into ``folder`` (created if missing); return the files written."""
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in schema_texts().items():
        path = folder / name
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written
