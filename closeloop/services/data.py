"""Data use cases: import files into the canonical tables."""

from __future__ import annotations

from pathlib import Path

from closeloop.data.importer import ImportResult, ProgressCallback, import_file
from closeloop.services.project import Workspace


def import_table(
    workspace: Workspace, table: str, path: Path, *, progress: ProgressCallback | None = None
) -> ImportResult:
    return import_file(workspace.warehouse, table, path, progress=progress)
