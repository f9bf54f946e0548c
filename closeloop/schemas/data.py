"""The quarantine: rows imports and ingestion set aside, with where they came from and why."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import Field

from closeloop.schemas.base import Schema


class QuarantinedRow(Schema):
    """A row an import (or a Segment message) set aside: where it came from, why, the row."""

    table: str = Field(description="the canonical table it was meant for")
    file: str = Field(description="the imported file (or the ingestion batch) it came from")
    row: int = Field(description="1-based row (line) number in that file")
    column: str | None = Field(description="the column at fault, when one is")
    reason: str
    raw: str = Field(description="the row as read: a JSON object of column -> text, or the line")
    values: dict[str, Any] | None = Field(
        description="the row's values by column, when it could be read into columns"
    )
    quarantined_at: datetime


class QuarantineListing(Schema):
    """Quarantined rows (a page of them, oldest first) and how many there are by table."""

    table: str | None = Field(description="the table listed (null: every table)")
    total: int = Field(ge=0, description="quarantined rows selected, over all pages")
    by_table: dict[str, int]
    offset: int = Field(default=0, ge=0)
    shown: int = Field(ge=0, description="rows in this answer")
    rows: list[QuarantinedRow]


class QuarantinePurge(Schema):
    table: str | None
    before: datetime | None = Field(description="only rows quarantined before this time")
    purged: int = Field(ge=0)
    remaining: int = Field(ge=0)


class ExportedFile(Schema):
    table: str
    path: str = Field(description="the file written")
    rows: int = Field(ge=0)
    readable: bool = Field(
        description="rows in columns (fix and re-import) or unreadable lines (repair by hand)"
    )


class QuarantineExport(Schema):
    folder: str
    files: list[ExportedFile]
