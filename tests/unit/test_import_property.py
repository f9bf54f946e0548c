"""Random bytes never crash the importer and never lose a row silently (Hypothesis).

For any body after a valid header: the import returns counts (or refuses the whole file with a
:class:`DataImportError` and writes nothing), every row read is imported, a duplicate or
quarantined with a reason, and the warehouse holds exactly what the counts say. Where the rows a
file holds can be counted without the importer (no quotes; rows written by ``csv.writer``; JSON
Lines), the importer must read exactly that many. One in-memory DuckDB warehouse keeps it fast.
"""

from __future__ import annotations

import csv
import io
import itertools
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from closeloop.data.importer import ImportResult, import_file
from closeloop.data.warehouse import Warehouse
from closeloop.errors import DataImportError

HEADER = b"activity_id,account_id,kind,occurred_at,notes\n"
SETTINGS = settings(
    max_examples=30,
    deadline=None,
    derandomize=True,  # the same examples every run (seeded, never flaky)
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
_FILES = itertools.count()


@pytest.fixture(scope="module")
def warehouse() -> Iterator[Warehouse]:
    """One in-memory warehouse for every example (a fresh one per example is ten times slower):
    accounts a1 and a2 exist, and activities pile up, so counts are checked as differences."""
    with tempfile.TemporaryDirectory() as folder, Warehouse.connect("duckdb://") as connected:
        connected.ensure_tables()
        accounts = Path(folder) / "accounts.csv"
        accounts.write_text("account_id,created_at\na1,2024-01-01\na2,2024-01-01\n")
        import_file(connected, "accounts", accounts)
        yield connected


# Pieces that stress a CSV reader: quotes, delimiters, line ends, NUL, bytes that are not UTF-8,
# values that must be refused, and values that must not.
_PIECES = [
    b'"',
    b",",
    b"\n",
    b"\r\n",
    b"\r",
    b"\x00",
    b"\xe9",
    b"\xc3\xa9",
    b"\xff\xfe",
    b" ",
    b"a1",
    b"a2",
    b"v1",
    b"call",
    b"2024-01-01",
    b"2024-01-01T10:00:00+25:00",
    b"NaN",
    b"1e400",
    b"12.5",
    b";",
    b"\t",
    b'""',
]
_TEXT = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",)) | st.sampled_from('",\r\n\x00 '),
    max_size=12,
)


def _count(warehouse: Warehouse, table: str) -> int:
    return int(warehouse.table(table).count().to_pyarrow().as_py())


def _import(
    warehouse: Warehouse, body: bytes, suffix: str, header: bytes = HEADER
) -> ImportResult | None:
    """Import ``header + body`` as activities; the result (None when the file was refused
    whole, writing nothing), after checking that the counts add up in the warehouse."""
    stored, quarantined = _count(warehouse, "activities"), _count(warehouse, "quarantine")
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"activities{next(_FILES)}{suffix}"
        path.write_bytes(header + body)
        try:
            result = import_file(warehouse, "activities", path, batch_size=7)
        except DataImportError:
            assert _count(warehouse, "activities") == stored
            assert _count(warehouse, "quarantine") == quarantined
            return None
        quarantine = warehouse.table("quarantine")
        rows = quarantine.filter(quarantine.file == str(path.resolve())).to_pyarrow().to_pylist()
    assert result.rows_read == (
        result.imported + result.updated + result.duplicates + result.quarantined
    )
    assert _count(warehouse, "activities") - stored == result.imported
    assert len(rows) == result.quarantined
    assert all(row["reason"] and row["row_number"] >= 1 for row in rows)
    return result


def _nonblank_lines(text: str) -> int:
    """Lines as CSV reads them (ended by \\r\\n, \\r or \\n) that are not empty."""
    return sum(1 for line in re.split(r"\r\n|\r|\n", text) if line)


@SETTINGS
@given(body=st.binary(max_size=300))
def test_random_bytes_never_crash_and_never_lose_a_row(warehouse: Warehouse, body: bytes) -> None:
    result = _import(warehouse, body, ".csv")
    if result is not None:
        assert result.rows_read <= _nonblank_lines(body.decode("utf-8", "surrogateescape"))


@SETTINGS
@given(body=st.lists(st.sampled_from(_PIECES), max_size=60).map(b"".join))
def test_csv_shaped_bytes_never_crash_and_never_lose_a_row(
    warehouse: Warehouse, body: bytes
) -> None:
    result = _import(warehouse, body, ".csv")
    if result is not None:
        lines = _nonblank_lines(body.decode("utf-8", "surrogateescape"))
        assert result.rows_read <= lines
        if b'"' not in body:
            assert result.rows_read == lines  # without quotes, every line is a row


@SETTINGS
@given(rows=st.lists(st.lists(_TEXT, min_size=5, max_size=5), max_size=12))
def test_rows_written_by_a_csv_writer_are_all_accounted_for(
    warehouse: Warehouse, rows: list[list[str]]
) -> None:
    buffer = io.StringIO(newline="")
    csv.writer(buffer).writerows(rows)
    result = _import(warehouse, buffer.getvalue().encode("utf-8"), ".csv")
    assert result is not None
    assert result.rows_read == len(rows)


@SETTINGS
@given(pieces=st.lists(st.sampled_from([*_PIECES, b"{", b"}", b":", b'"account_id"']), max_size=60))
def test_json_lines_bytes_never_crash_and_never_lose_a_row(
    warehouse: Warehouse, pieces: list[bytes]
) -> None:
    body = b"".join(pieces)
    result = _import(warehouse, body, ".jsonl", header=b"")
    # A byte-order mark says UTF-16: the lines are not the UTF-8 lines counted here.
    if result is not None and not body.startswith((b"\xff\xfe", b"\xfe\xff")):
        lines = body.decode("utf-8", "surrogateescape").split("\n")
        assert result.rows_read == sum(1 for line in lines if line.strip())


@pytest.mark.parametrize(
    "body",
    [
        b'v1,a1,"call,2024-01-01,x\n'
        + b"".join(b"v%d,a2,call,2024-01-01,x\n" % n for n in range(2, 40)),
        b"v1,a1,call,2024-01-01,x\r" * 3,
        b'"\n' * 20,
    ],
)
def test_examples_that_once_went_wrong(warehouse: Warehouse, body: bytes) -> None:
    result = _import(warehouse, body, ".csv")
    assert result is not None
    assert result.rows_read == _nonblank_lines(body.decode())
