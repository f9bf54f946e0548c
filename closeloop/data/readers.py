"""Read CSV, JSON Lines and Parquet files into batches of text columns with their row numbers.

Every value is read as text; typing happens afterwards in one place (the importer), so all three
formats get the same checks and the same located errors. Rows that cannot even be read (a CSV line
with the wrong number of fields, a JSON line that is not an object) are handed back as rejects.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from closeloop.errors import DataImportError

FORMATS = {
    ".csv": "csv",
    ".parquet": "parquet",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "jsonl",
}


@dataclass
class Reject:
    row_number: int
    reason: str
    raw: str
    column: str | None = None


@dataclass
class TextBatch:
    """Rows of one file as text: ``rows[i]`` maps column to text or None, for ``row_numbers[i]``."""

    row_numbers: list[int] = field(default_factory=list)
    rows: list[dict[str, str | None]] = field(default_factory=list)
    rejects: list[Reject] = field(default_factory=list)


def detect_format(path: Path) -> str:
    try:
        return FORMATS[path.suffix.lower()]
    except KeyError:
        raise DataImportError(
            f"{path}: cannot tell the format from the extension {path.suffix!r}; "
            "use .csv, .parquet or .jsonl"
        ) from None


def read_header(path: Path) -> list[str] | None:
    """Column names declared up front (CSV header, Parquet schema); None for JSON Lines."""
    kind = detect_format(path)
    if kind == "csv":
        with _open_text(path) as handle:
            header = next(csv.reader(handle), None)
        if header is None:
            raise DataImportError(f"{path}:1: the file is empty; expected a header row")
        return [name.strip() for name in header]
    if kind == "parquet":
        return list(pq.ParquetFile(path).schema_arrow.names)
    return None


def read_batches(path: Path, batch_size: int) -> Iterator[TextBatch]:
    kind = detect_format(path)
    if kind == "csv":
        yield from _read_csv(path, batch_size)
    elif kind == "parquet":
        yield from _read_parquet(path, batch_size)
    else:
        yield from _read_jsonl(path, batch_size)


def _open_text(path: Path) -> Any:
    return path.open("r", encoding="utf-8-sig", newline="")


def _read_csv(path: Path, batch_size: int) -> Iterator[TextBatch]:
    batch = TextBatch()
    with _open_text(path) as handle:
        reader = csv.reader(handle)
        try:
            header = [name.strip() for name in next(reader)]
            row_number = 0
            for record in reader:
                row_number += 1
                if not record or record == [""]:
                    continue  # blank line
                if len(record) != len(header):
                    batch.rejects.append(
                        Reject(
                            row_number,
                            f"expected {len(header)} fields, found {len(record)} "
                            f"(line {reader.line_num})",
                            json.dumps(record),
                        )
                    )
                else:
                    batch.row_numbers.append(row_number)
                    batch.rows.append(dict(zip(header, record, strict=True)))
                if len(batch.rows) + len(batch.rejects) >= batch_size:
                    yield batch
                    batch = TextBatch()
        except UnicodeDecodeError as error:
            raise DataImportError(
                f"{path}: not UTF-8 text after line {reader.line_num}: {error.reason}; "
                "re-export the file as UTF-8"
            ) from None
        except csv.Error as error:
            raise DataImportError(f"{path}:{reader.line_num}: malformed CSV: {error}") from None
    yield batch


def _read_jsonl(path: Path, batch_size: int) -> Iterator[TextBatch]:
    batch = TextBatch()
    with path.open("r", encoding="utf-8-sig") as handle:
        for row_number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                value = json.loads(line)
            except json.JSONDecodeError as error:
                batch.rejects.append(
                    Reject(
                        row_number,
                        f"invalid JSON at column {error.colno}: {error.msg}",
                        line.rstrip("\n"),
                    )
                )
                continue
            if not isinstance(value, dict):
                batch.rejects.append(
                    Reject(row_number, "a JSON Lines row must be an object", line.rstrip("\n"))
                )
                continue
            batch.row_numbers.append(row_number)
            batch.rows.append({key: _to_text(item) for key, item in value.items()})
            if len(batch.rows) + len(batch.rejects) >= batch_size:
                yield batch
                batch = TextBatch()
    yield batch


def _read_parquet(path: Path, batch_size: int) -> Iterator[TextBatch]:
    row_number = 0
    for record_batch in pq.ParquetFile(path).iter_batches(batch_size=batch_size):
        columns: dict[str, list[Any]] = {}
        for name, column in zip(record_batch.schema.names, record_batch.columns, strict=True):
            columns[name] = _arrow_to_text(column).to_pylist()
        batch = TextBatch()
        for index in range(record_batch.num_rows):
            row_number += 1
            batch.row_numbers.append(row_number)
            batch.rows.append({name: values[index] for name, values in columns.items()})
        yield batch


def _arrow_to_text(column: pa.Array) -> pa.Array:
    if pa.types.is_timestamp(column.type):
        # ISO text (%S includes the fraction) with a zone when the column has one, so the importer
        # converts it to UTC.
        return pc.strftime(
            column, format="%Y-%m-%dT%H:%M:%S%z" if column.type.tz else "%Y-%m-%dT%H:%M:%S"
        )
    if (
        pa.types.is_struct(column.type)
        or pa.types.is_list(column.type)
        or pa.types.is_map(column.type)
    ):
        return pa.array(
            [None if v is None else json.dumps(v, default=str) for v in column.to_pylist()]
        )
    return pc.cast(column, pa.string())


def _to_text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict | list):
        return json.dumps(value, sort_keys=True)
    return str(value)
