"""Read CSV, JSON Lines and Parquet files into batches of text columns with their row numbers.

CSV and JSON Lines values are read as text; Parquet batches stay columnar Arrow (strings checked
for UTF-8, numbers, booleans, dates and times kept typed, the rest written as text), so a large
file never passes through Python objects. Typing happens afterwards in one place (the importer),
so all three formats get the same checks and the same located errors. Rows that cannot even be
read are handed back as rejects with their line and a reason, and reading goes on with the next
row:

- a CSV line whose quote never closes is rejected alone and reading resumes on the next line (a
  stray quote must not swallow the rest of the file into one value);
- a line that is not valid in the file's encoding (UTF-8 unless told otherwise) is rejected with
  the encoding it looks like, so ``--encoding`` can repair it on a re-run;
- a row whose repeated header column holds two different values is rejected (which one is meant
  cannot be known);
- a JSON line that is not an object, and Parquet strings that are not UTF-8, likewise.

Only what makes the whole file unreadable (no header, a binary file, an unknown encoding) raises
:class:`DataImportError`, with ``file:line:column`` where there is one.
"""

from __future__ import annotations

import codecs
import csv
import gzip
import io
import json
import re
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, cast

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from closeloop.definitions.text_encoding import guess_encoding, not_utf8_message
from closeloop.errors import DataImportError

FORMATS = {
    ".csv": "csv",
    ".tsv": "csv",
    ".tab": "csv",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
}
"""Extensions that say the format outright; others (.json, .txt, .gz, none) are sniffed."""
FORMAT_NAMES = ("csv", "jsonl", "parquet")
DELIMITERS = (",", ";", "\t", "|")
SAMPLE_BYTES = 64 * 1024
SHOWN_CHARACTERS = 80  # of a value or line quoted in a reason
ROW = "_row"
"""The row-number column of a columnar batch."""

# Undecodable bytes survive decoding as lone surrogates (U+DC00 + the byte, like Python's
# "surrogateescape", which cannot escape bytes below 0x80 as a UTF-16 decoder needs), so a bad
# line is found, located and rejected while the lines around it are read as usual.
_ESCAPE = "closeloop-escape-bytes"
_UNDECODABLE = re.compile("[\udc00-\udcff]")


def _escape_bytes(error: UnicodeError) -> tuple[str | bytes, int]:
    if isinstance(error, UnicodeDecodeError):
        bad = error.object[error.start : error.end]
        return "".join(chr(0xDC00 + byte) for byte in bad), error.end
    if isinstance(error, UnicodeEncodeError):
        text = error.object[error.start : error.end]
        if all(0xDC00 <= ord(char) <= 0xDCFF for char in text):
            return bytes(ord(char) - 0xDC00 for char in text), error.end
    raise error


codecs.register_error(_ESCAPE, _escape_bytes)


def _original_bytes(text: str) -> bytes:
    """The bytes of text read with escaped undecodable bytes (valid characters as UTF-8)."""
    return text.encode("utf-8", _ESCAPE)


_GZIP_MAGIC = b"\x1f\x8b"
_PARQUET_MAGIC = b"PAR1"
_ZIP_MAGIC = b"PK\x03\x04"
_OLE_MAGIC = b"\xd0\xcf\x11\xe0"


@dataclass
class Reject:
    """A row that could not be read, with the reason; ``line`` is the file line it starts on."""

    row_number: int
    reason: str
    raw: str
    column: str | None = None
    line: int | None = None
    code: str = "unreadable"  # machine-readable: not_utf8, stray_quote, field_count, ...


@dataclass
class TextBatch:
    """Rows of one file as text: ``rows[i]`` maps column to text or None, for ``row_numbers[i]``.

    A columnar batch (Parquet) holds its rows in ``columns`` instead: an Arrow table of the
    file's columns (each name once) and ``_row``, the row numbers. ``position`` is the share of
    the file read once this batch is done (for progress bars).
    """

    row_numbers: list[int] = field(default_factory=list)
    rows: list[dict[str, str | None]] = field(default_factory=list)
    rejects: list[Reject] = field(default_factory=list)
    position: float | None = None
    columns: pa.Table | None = None

    @property
    def size(self) -> int:
        columnar = self.columns.num_rows if self.columns is not None else 0
        return len(self.rows) + len(self.rejects) + columnar

    @property
    def has_rows(self) -> bool:
        return bool(self.rows) or (self.columns is not None and self.columns.num_rows > 0)

    @property
    def first_row(self) -> int | None:
        """The number of the batch's first good row (None when it has none)."""
        if self.columns is not None and self.columns.num_rows:
            return int(self.columns.column(ROW).chunk(0)[0].as_py())
        return self.row_numbers[0] if self.row_numbers else None

    @property
    def last_row(self) -> int:
        """The highest row number the batch holds (good or rejected; 0 when empty)."""
        numbers = [reject.row_number for reject in self.rejects]
        if self.columns is not None and self.columns.num_rows:
            numbers.append(int(pc.max(self.columns.column(ROW)).as_py()))
        return max([*numbers, *self.row_numbers[-1:]], default=0)

    def raw_rows(self, row_numbers: Iterable[int]) -> dict[int, dict[str, str | None]]:
        """The rows numbered ``row_numbers`` as read (text by column), for quarantine records."""
        wanted = set(row_numbers)
        if self.columns is None:
            return {
                number: row
                for number, row in zip(self.row_numbers, self.rows, strict=True)
                if number in wanted
            }
        if not wanted:
            return {}
        numbers = self.columns.column(ROW)
        picked = self.columns.filter(pc.is_in(numbers, pa.array(sorted(wanted), pa.int64())))
        names = [name for name in picked.column_names if name != ROW]
        texts = {name: arrow_to_text(picked.column(name).combine_chunks())[0] for name in names}
        return {
            int(number): {name: texts[name][index] for name in names}
            for index, number in enumerate(picked.column(ROW).to_pylist())
        }


def detect_format(path: Path, declared: str | None = None) -> str:
    """csv, jsonl or parquet: as declared, else from a clear extension, else from the content."""
    if declared is not None:
        if declared not in FORMAT_NAMES:
            raise DataImportError(
                f"unknown format {declared!r}; use one of {', '.join(FORMAT_NAMES)}"
            )
        return declared
    head = _sample(path)
    if head.startswith(_PARQUET_MAGIC):
        return "parquet"
    _refuse_binary(path, head)
    suffixes = [suffix.lower() for suffix in path.suffixes[-2:]]
    if suffixes and suffixes[-1] == ".gz":
        suffixes.pop()
    if suffixes and suffixes[-1] in FORMATS:
        return FORMATS[suffixes[-1]]
    return _sniff_text_format(path, _decompressed_sample(path, head))


def read_header(
    path: Path, *, format: str | None = None, encoding: str | None = None
) -> list[str] | None:
    """Column names declared up front (CSV header, Parquet schema); None for JSON Lines.

    A column named twice appears twice; an unnamed one is called ``column_N`` (its position).
    """
    return SourceFile(path, format=format, encoding=encoding).header()


def read_batches(
    path: Path, batch_size: int, *, format: str | None = None, encoding: str | None = None
) -> Iterator[TextBatch]:
    yield from SourceFile(path, format=format, encoding=encoding).batches(batch_size)


class SourceFile:
    """One input file: its format and encoding settled once, read as header and text batches."""

    def __init__(
        self, path: Path, *, format: str | None = None, encoding: str | None = None
    ) -> None:
        if not path.is_file():
            raise DataImportError(f"{path}: no such file")
        self.path = path
        self.format = detect_format(path, format)
        self.compressed = _sample(path).startswith(_GZIP_MAGIC)
        if self.format == "parquet" and self.compressed:
            raise DataImportError(f"{path}: a gzip-compressed Parquet file; decompress it first")
        if encoding is not None and self.format == "parquet":
            raise DataImportError(
                f"{path}: --encoding applies to CSV and JSON Lines; Parquet text is always UTF-8"
            )
        self.encoding = self._encoding(encoding) if self.format != "parquet" else "utf-8"

    # -- public ---------------------------------------------------------------------------------

    def header(self) -> list[str] | None:
        if self.format == "csv":
            with self._text() as stream:
                return _CsvRows(self, stream).header
        if self.format == "parquet":
            return _parquet_names(self._parquet())
        return None

    def batches(self, batch_size: int, *, columnar: bool = False) -> Iterator[TextBatch]:
        """The file's rows in batches. ``columnar``: Parquet and plain CSV batches hold their
        rows in ``columns`` (Arrow); otherwise every batch holds text rows."""
        if self.format == "csv":
            if columnar:
                yield from self._csv_batches(batch_size)
            else:
                with self._text() as stream:
                    yield from _batched(_CsvRows(self, stream), stream, batch_size)
        elif self.format == "parquet":
            for batch in self._parquet_batches(batch_size):
                yield batch if columnar else _as_rows(batch)
        else:
            yield from self._jsonl_batches(batch_size)

    # -- text files -----------------------------------------------------------------------------

    def _encoding(self, declared: str | None) -> str:
        if declared is not None:
            try:
                name = codecs.lookup(declared).name
            except LookupError:
                raise DataImportError(
                    f"unknown encoding {declared!r}; e.g. utf-8, latin-1, cp1252, utf-16"
                ) from None
            return "utf-8-sig" if name == "utf-8" else declared  # a BOM is never data
        head = _decompressed_sample(self.path, _sample(self.path))
        if head.startswith((codecs.BOM_UTF32_LE, codecs.BOM_UTF32_BE)):
            return "utf-32"
        if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
            return "utf-16"
        if head and head.count(b"\x00") * 10 >= len(head):
            raise DataImportError(
                f"{self.path}:1: NUL bytes between the characters: this looks like UTF-16 "
                "text without a byte-order mark; pass --encoding utf-16 (or utf-16-le/utf-16-be)"
            )
        return "utf-8-sig"

    def _binary(self) -> tuple[IO[bytes], IO[bytes]]:
        """The file's bytes (decompressed when gzip) and the raw file, whose position is
        progress."""
        raw: IO[bytes] = self.path.open("rb")
        if self.compressed:
            return cast(IO[bytes], gzip.GzipFile(fileobj=raw, mode="rb")), raw
        return raw, raw

    def _text(self, newline: str = "") -> _TextStream:
        binary, raw = self._binary()
        return _TextStream(binary, raw, self.encoding, newline, self.path)

    def _csv_batches(self, batch_size: int) -> Iterator[TextBatch]:
        """A plain CSV file (:meth:`plain_csv`) is read by DuckDB's CSV reader, columnar; when
        that reader meets a row it refuses (a stray quote, a wrong field count, bytes that are
        not UTF-8), the row-by-row reader takes over from the first row not yet handed out, so
        every bad row is rejected alone with its line and reason, as it always was."""
        handed_out = 0
        plain = self.plain_csv()
        if plain is not None:
            try:
                for batch in self._duckdb_csv_batches(plain, batch_size):
                    yield batch
                    handed_out += batch.size
                return
            except duckdb.Error:
                pass
        with self._text() as stream:
            rows = _CsvRows(self, stream)
            rest = ((number, row) for number, row in rows if number > handed_out)
            yield from _batched(rest, stream, batch_size)

    def plain_csv(self) -> PlainCsv | None:
        """How DuckDB's CSV reader can read this file with the row-by-row reader's outcome, or
        None when it cannot be sure to: a file that is compressed or not UTF-8, a header on more
        than one line, repeated or single columns, NUL bytes or blank lines (which the
        row-by-row reader numbers and DuckDB skips)."""
        if not hasattr(self, "_plain"):
            self._plain = self._plain_csv()
        return self._plain

    def _plain_csv(self) -> PlainCsv | None:
        if self.format != "csv" or self.compressed or self.encoding != "utf-8-sig":
            return None
        with self._text() as stream:
            rows = _CsvRows(self, stream)
            taken = rows.lines.taken
            if len(taken) != 1 or rows.repeated or rows.width < 2:
                return None
            header, delimiter, skip = rows.header, rows.delimiter, taken[0][0]
        if not _plain_bytes(self.path):
            return None
        head = _sample(self.path)
        row_bytes = len(head) / max(head.count(b"\n"), 1)
        return PlainCsv(header, delimiter, skip, row_bytes)

    def _duckdb_csv_batches(self, plain: PlainCsv, batch_size: int) -> Iterator[TextBatch]:
        """Columnar batches of a plain CSV file read by DuckDB (every value text, as read: an
        empty field is an empty string); raises :class:`duckdb.Error` at a row it refuses."""
        size = max(self.path.stat().st_size, 1)
        connection = duckdb.connect()
        try:
            connection.execute(f"SELECT * FROM {duckdb_csv_sql(self.path, plain)}")
            reader = connection.fetch_record_batch(batch_size)
            rows = 0
            held: TextBatch | None = None
            for record_batch in reader:
                count = record_batch.num_rows
                numbers = np.arange(rows + 1, rows + count + 1, dtype=np.int64)
                table = pa.Table.from_batches([record_batch]).append_column(ROW, pa.array(numbers))
                rows += count
                if held is not None:
                    yield held
                # The share of the file read, from the size of the rows at its start.
                held = TextBatch(columns=table, position=min(rows * plain.row_bytes / size, 0.99))
            last = held or TextBatch()
            last.position = 1.0
            yield last
        finally:
            connection.close()

    def _jsonl_batches(self, batch_size: int) -> Iterator[TextBatch]:
        with self._text(newline="\n") as stream:
            # A row's number is its line's (blank lines hold no row but keep their number).
            rows = (
                (row_number, self._json_row(line, row_number, row_number))
                for row_number, line in enumerate(stream.lines(), start=1)
                if line.strip()
            )
            yield from _batched(rows, stream, batch_size)

    def _json_row(
        self, line: str, line_number: int, row_number: int
    ) -> dict[str, str | None] | Reject:
        text = line.rstrip("\r\n")
        bad = _UNDECODABLE.search(text)
        if bad is not None:
            return self._not_decodable(row_number, line_number, text, bad.start())
        try:
            value = json.loads(text, object_pairs_hook=_object_without_conflicts)
        except json.JSONDecodeError as error:
            return Reject(
                row_number,
                f"invalid JSON at column {error.colno}: {error.msg}",
                text,
                line=line_number,
                code="invalid_json",
            )
        except _RepeatedKeyError as repeated:
            return Reject(
                row_number,
                f"key {repeated.key!r} appears twice in one object with "
                f"different values ({_shown(repeated.first)} / {_shown(repeated.second)})",
                text,
                column=repeated.key,
                line=line_number,
                code="repeated_column",
            )
        except RecursionError:
            return Reject(
                row_number,
                "JSON nested too deeply to read",
                text[:1000],
                line=line_number,
                code="invalid_json",
            )
        if not isinstance(value, dict):
            return Reject(
                row_number,
                "a JSON Lines row must be an object",
                text,
                line=line_number,
                code="not_an_object",
            )
        return {str(key): _to_text(item) for key, item in value.items()}

    def _not_decodable(self, row_number: int, line_number: int, text: str, index: int) -> Reject:
        data = _original_bytes(text)
        guess = guess_encoding(data)
        return Reject(
            row_number,
            f"line {line_number}, column {index + 1}: {not_utf8_message(self.encoding, guess)}",
            data.decode(guess, "replace"),
            line=line_number,
            code="not_utf8",
        )

    # -- Parquet --------------------------------------------------------------------------------

    def _parquet(self) -> pq.ParquetFile:
        try:
            return pq.ParquetFile(self.path)
        except (pa.ArrowException, OSError) as error:
            raise DataImportError(
                f"{self.path}: not a readable Parquet file ({_first_line(error)}); re-export it"
            ) from None

    def _parquet_batches(self, batch_size: int) -> Iterator[TextBatch]:
        """Columnar batches of about ``batch_size`` rows, read a record batch at a time (a
        row group is never read whole, so memory stays bounded whatever the file's layout)."""
        parquet = self._parquet()
        names = _parquet_names(parquet)
        total = max(parquet.metadata.num_rows, 1)
        row_number = 0
        pending = _Pending(names)
        for group in range(parquet.num_row_groups):
            group_rows = parquet.metadata.row_group(group).num_rows
            group_start = row_number
            try:
                for record_batch in parquet.iter_batches(
                    batch_size=min(batch_size, 65_536), row_groups=[group]
                ):
                    pending.add(_parquet_columns(record_batch, names, row_number))
                    row_number += record_batch.num_rows
                    if pending.size >= batch_size:
                        yield pending.take(row_number / total)
            except (pa.ArrowException, OSError) as error:
                # The rows are counted in the file's metadata, so each is quarantined, not lost.
                reason = (
                    f"row group {group + 1} (rows {group_start + 1}-{group_start + group_rows}) "
                    f"cannot be read: {_first_line(error)}"
                )
                rejects = [
                    Reject(number, reason, "", code="unreadable")
                    for number in range(row_number + 1, group_start + group_rows + 1)
                ]
                row_number = group_start + group_rows
                for start in range(0, len(rejects), batch_size):
                    pending.add(TextBatch(rejects=rejects[start : start + batch_size]))
                    if pending.size >= batch_size:
                        yield pending.take(row_number / total)
        if pending.size or row_number == 0:
            yield pending.take(1.0)

    def column_values(self, name: str, batch_size: int) -> Iterator[pa.Array] | None:
        """The values of one column as columnar batches hold them, a batch at a time, for a
        Parquet or plain CSV file (None for others); iterating raises what reading raises."""
        if self.format == "parquet":
            return self.parquet_column(name, batch_size)
        plain = self.plain_csv()
        if plain is None or name not in plain.header:
            return None
        return (
            batch.columns.column(name).combine_chunks()
            for batch in self._duckdb_csv_batches(plain, batch_size)
            if batch.columns is not None and batch.columns.num_rows
        )

    def parquet_column(self, name: str, batch_size: int) -> Iterator[pa.Array]:
        """The values of one Parquet column (as columnar batches hold them), a record batch at
        a time; raises what reading the file raises."""
        parquet = self._parquet()
        names = _parquet_names(parquet)
        if names.count(name) != 1:
            raise KeyError(name)
        original = parquet.schema_arrow.names[names.index(name)]
        if parquet.schema_arrow.names.count(original) != 1:
            raise KeyError(name)
        batches = parquet.iter_batches(batch_size=batch_size, columns=[original])
        return (_arrow_column(record_batch.column(0))[0] for record_batch in batches)


class _Pending:
    """Columnar pieces gathered until a batch is full (record batches end at row groups)."""

    def __init__(self, names: list[str]) -> None:
        self.names = names
        self.pieces: list[TextBatch] = []
        self.size = 0

    def add(self, piece: TextBatch) -> None:
        self.pieces.append(piece)
        self.size += piece.size

    def take(self, position: float) -> TextBatch:
        tables = [piece.columns for piece in self.pieces if piece.columns is not None]
        columns = (
            pa.concat_tables(tables, promote_options="permissive")
            if tables
            else pa.table({ROW: pa.array([], pa.int64())})
        )
        rejects = [reject for piece in self.pieces for reject in piece.rejects]
        self.pieces, self.size = [], 0
        return TextBatch(rejects=rejects, position=position, columns=columns)


def _as_rows(batch: TextBatch) -> TextBatch:
    """A columnar batch as text rows."""
    if batch.columns is None:
        return batch
    numbers = batch.columns.column(ROW).to_pylist()
    rows = batch.raw_rows(numbers)
    return TextBatch(
        row_numbers=numbers,
        rows=[rows[number] for number in numbers],
        rejects=batch.rejects,
        position=batch.position,
    )


@dataclass(frozen=True)
class PlainCsv:
    """What DuckDB's CSV reader needs to read a plain CSV file (see SourceFile.plain_csv)."""

    header: list[str]
    delimiter: str
    skip: int  # lines before the first row (the header, a ``sep=`` line, blank lines)
    row_bytes: float  # the average size of a row at the file's start (for progress)


_NEVER_NULL = "\x01closeloop: no value is null\x01"
"""DuckDB's ``nullstr``: no field is read as null, an empty one stays an empty string."""


def duckdb_csv_sql(path: Path, plain: PlainCsv) -> str:
    """DuckDB's ``read_csv`` of a plain CSV file (:meth:`SourceFile.plain_csv`): every value
    text as read (an empty field an empty string), in the order of the file; it raises
    :class:`duckdb.Error` at a row the row-by-row reader would reject."""
    columns = ", ".join(f"{_sql_text(name)}: 'VARCHAR'" for name in plain.header)
    return (
        f"read_csv({_sql_text(str(path))}, header = false, skip = {plain.skip}, "
        f"columns = {{{columns}}}, delim = {_sql_text(plain.delimiter)}, quote = '\"', "
        "escape = '\"', auto_detect = false, strict_mode = true, null_padding = false, "
        f"all_varchar = true, allow_quoted_nulls = false, nullstr = {_sql_text(_NEVER_NULL)}, "
        "encoding = 'utf-8')"
    )


def _plain_bytes(path: Path) -> bool:
    """Whether the file has no NUL byte and no blank line (a scan at memory speed)."""
    tail = b""
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 22):
            data = tail + chunk
            if b"\x00" in data or b"\n\n" in data or b"\n\r\n" in data or b"\r\r" in data:
                return False
            tail = data[-2:]
    return True


def _sql_text(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _batched(
    rows: Iterable[tuple[int, dict[str, str | None] | Reject]],
    stream: _TextStream,
    batch_size: int,
) -> Iterator[TextBatch]:
    """``rows`` (row number, row or reject) in batches of ``batch_size`` rows and rejects; each
    batch says how far into the file it ends, and the last one is yielded even when empty."""
    batch = TextBatch()
    for row_number, item in rows:
        if isinstance(item, Reject):
            batch.rejects.append(item)
        else:
            batch.row_numbers.append(row_number)
            batch.rows.append(item)
        if batch.size >= batch_size:
            batch.position = stream.position()
            yield batch
            batch = TextBatch()
    batch.position = 1.0
    yield batch
    stream.check()


class _TextStream:
    """A decoded text stream over a (possibly gzip) file, closed with it."""

    def __init__(
        self, binary: IO[bytes], raw: IO[bytes], encoding: str, newline: str, path: Path
    ) -> None:
        self.raw = raw
        self.path = path
        self.size = max(path.stat().st_size, 1)
        self.text = io.TextIOWrapper(binary, encoding=encoding, errors=_ESCAPE, newline=newline)
        self.damage: str | None = None

    def __enter__(self) -> _TextStream:
        return self

    def __exit__(self, *_: object) -> None:
        self.text.close()
        self.raw.close()

    def position(self) -> float:
        return min(self.raw.tell() / self.size, 1.0)

    def lines(self) -> Iterator[str]:
        """The lines; damaged compressed data ends them (``damage`` says so) instead of
        raising, so the rows before the damage are imported before the error is raised."""
        try:
            yield from self.text
        except (EOFError, gzip.BadGzipFile, zlib.error) as error:
            self.damage = (
                f"{self.path}: the compressed data is damaged ({error}); the rows before the "
                "damage were read; re-export or download the file again"
            )

    def check(self) -> None:
        """Raise when the lines ended at damaged data."""
        if self.damage is not None:
            raise DataImportError(self.damage)


class _Lines:
    """Numbered lines with push-back, so a record that ran past a bad line can be re-read."""

    def __init__(self, lines: Iterator[str]) -> None:
        self._lines = lines
        self._next_number = 1
        self._pending: list[tuple[int, str]] = []  # pushed back, last first
        self.taken: list[tuple[int, str]] = []  # lines handed out for the current record

    def __iter__(self) -> _Lines:
        return self

    def __next__(self) -> str:
        if self._pending:
            number, line = self._pending.pop()
        else:
            line = next(self._lines)
            number = self._next_number
            self._next_number += 1
        self.taken.append((number, line))
        return line

    def push_back(self, lines: list[tuple[int, str]]) -> None:
        self._pending.extend(reversed(lines))


class _CsvRows:
    """The header and then ``(row_number, row or Reject)`` for every record of a CSV file."""

    def __init__(self, source: SourceFile, stream: _TextStream) -> None:
        self.source = source
        self.path = source.path
        self.lines = _Lines(stream.lines())
        self.delimiter = self._delimiter()
        self.reader = csv.reader(self.lines, delimiter=self.delimiter, strict=True)
        self.header = self._header()
        self.width = len(self.header)
        # Positions of every name the header repeats: their values must agree on each row.
        positions: dict[str, list[int]] = {}
        for index, name in enumerate(self.header):
            positions.setdefault(name, []).append(index)
        self.repeated = {name: found for name, found in positions.items() if len(found) > 1}

    def _delimiter(self) -> str:
        """The delimiter: an Excel ``sep=;`` line, else ``.tsv``, else the header's commonest."""
        first = self._peek()
        if first is None:
            return ","
        stripped = first.strip().lstrip("\ufeff")
        if stripped.lower().startswith("sep=") and len(stripped) == 5:
            self.lines.taken.clear()
            next(self.lines)  # consumed: it is a hint, not the header
            self.lines.taken.clear()
            return stripped[4]
        if self.path.suffix.lower() in (".tsv", ".tab"):
            return "\t"
        outside = re.sub(r'"[^"]*"', "", first)  # delimiters inside quoted names do not count
        counts = {delimiter: outside.count(delimiter) for delimiter in DELIMITERS}
        best = max(DELIMITERS, key=lambda delimiter: counts[delimiter])
        return best if counts[best] > counts[","] else ","

    def _peek(self) -> str | None:
        try:
            line = next(self.lines)
        except StopIteration:
            return None
        self.lines.push_back(list(self.lines.taken))
        self.lines.taken.clear()
        return line

    def _header(self) -> list[str]:
        while True:
            self.lines.taken.clear()
            try:
                record = next(self.reader)
            except StopIteration:
                raise DataImportError(
                    f"{self.path}:1: the file is empty; expected a header row"
                ) from None
            except csv.Error as error:
                line = self.lines.taken[0][0] if self.lines.taken else 1
                raise DataImportError(
                    f"{self.path}:{line}: the header row is not valid CSV ({error})"
                ) from None
            if record:  # blank lines before the header are skipped
                break
        for number, text in self.lines.taken:
            bad = _UNDECODABLE.search(text)
            if bad is not None:
                data = _original_bytes(text)
                message = not_utf8_message(self.source.encoding, guess_encoding(data))
                raise DataImportError(f"{self.path}:{number}:{bad.start() + 1}: {message}")
        return [
            name.strip().lstrip("\ufeff") or f"column_{index}"
            for index, name in enumerate(record, start=1)
        ]

    def __iter__(self) -> Iterator[tuple[int, dict[str, str | None] | Reject]]:
        row_number = 0
        lines = self.lines
        while True:
            lines.taken.clear()
            try:
                record = next(self.reader)
            except StopIteration:
                return
            except csv.Error as error:
                taken = list(lines.taken)
                if not taken:
                    return
                row_number += 1
                yield row_number, self._broken(row_number, taken, str(error))
                lines.push_back(taken[1:])
                continue
            row_number += 1
            if not record:
                continue  # a blank line: counted as a row number, holds no row
            taken = lines.taken
            if len(taken) > 1 and len(record) != self.width:
                # A quote opened on the first line and closed somewhere that does not fit: only
                # that line is the bad row; the lines after it are read again as rows.
                yield row_number, self._broken(row_number, list(taken), None)
                lines.push_back(list(taken[1:]))
                continue
            undecodable = self._undecodable(row_number, taken)
            if undecodable is not None:
                yield row_number, undecodable
            elif len(record) != self.width:
                first = taken[0][0]
                yield (
                    row_number,
                    Reject(
                        row_number,
                        f"expected {self.width} fields, found {len(record)} (line {first})",
                        json.dumps(record, ensure_ascii=False),
                        line=first,
                        code="field_count",
                    ),
                )
            elif self.repeated:
                yield row_number, self._with_repeats(row_number, record, taken[0][0])
            else:
                yield row_number, dict(zip(self.header, record, strict=True))

    def _undecodable(self, row_number: int, taken: list[tuple[int, str]]) -> Reject | None:
        for number, text in taken:
            bad = _UNDECODABLE.search(text)
            if bad is not None:
                record_text = "".join(line for _, line in taken).rstrip("\r\n")
                reject = self.source._not_decodable(row_number, number, text, bad.start())
                data = _original_bytes(record_text)
                reject.raw = data.decode(guess_encoding(data), "replace")
                return reject
        return None

    def _broken(self, row_number: int, taken: list[tuple[int, str]], error: str | None) -> Reject:
        number, text = taken[0]
        text = text.rstrip("\r\n")
        raw = _original_bytes(text).decode("utf-8", "replace")
        opened = _open_quote_column(text, self.delimiter)
        if opened is not None:
            reason = (
                f"line {number}, column {opened}: a quote opens a value that does not end on "
                f"this line (a stray quote?); reading goes on at line {number + 1}"
            )
            code = "stray_quote"
        else:
            reason = f"line {number}: malformed CSV ({error or 'unbalanced quotes'})"
            code = "malformed_csv"
        return Reject(row_number, reason, raw, line=number, code=code)

    def _with_repeats(
        self, row_number: int, record: list[str], line: int
    ) -> dict[str, str | None] | Reject:
        for name, positions in self.repeated.items():
            values = {record[index].strip() for index in positions}
            if len(values) > 1:
                shown = " / ".join(_shown(record[index]) for index in positions)
                fields = ", ".join(str(index + 1) for index in positions)
                return Reject(
                    row_number,
                    f"column {name!r} appears {len(positions)} times in the header (fields "
                    f"{fields}) and this row's values differ ({shown}); rename or drop the "
                    "copies in the file",
                    json.dumps(record, ensure_ascii=False),
                    column=name,
                    line=line,
                    code="repeated_column",
                )
        return dict(zip(self.header, record, strict=True))


def _open_quote_column(line: str, delimiter: str) -> int | None:
    """The 1-based column of a quote that opens a value and is still open at the line's end."""
    in_quotes = False
    at_field_start = True
    opened = 0
    index = 0
    while index < len(line):
        char = line[index]
        if in_quotes:
            if char == '"':
                if index + 1 < len(line) and line[index + 1] == '"':
                    index += 1
                else:
                    in_quotes = False
        elif at_field_start and char == '"':
            in_quotes, opened = True, index + 1
        at_field_start = not in_quotes and char == delimiter
        index += 1
    return opened if in_quotes else None


class _RepeatedKeyError(ValueError):
    def __init__(self, key: str, first: Any, second: Any) -> None:
        super().__init__(key)
        self.key, self.first, self.second = key, first, second


def _object_without_conflicts(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object; a key given twice with different values is an error (not "last wins")."""
    result = dict(pairs)
    if len(result) != len(pairs):
        seen: dict[str, Any] = {}
        for key, value in pairs:
            if key in seen and seen[key] != value:
                raise _RepeatedKeyError(key, seen[key], value)
            seen[key] = value
    return result


def _parquet_names(parquet: pq.ParquetFile) -> list[str]:
    return [
        name.strip() or f"column_{index}"
        for index, name in enumerate(parquet.schema_arrow.names, start=1)
    ]


def _parquet_columns(record_batch: pa.RecordBatch, names: list[str], rows_before: int) -> TextBatch:
    """One record batch as a columnar batch: strings checked for UTF-8, nested values as JSON
    text, numbers, booleans, dates and times kept typed; rows that cannot be read (invalid
    UTF-8, a repeated column whose copies differ) become rejects."""
    size = record_batch.num_rows
    columns: list[pa.Array] = []
    bad: dict[int, tuple[str, str]] = {}  # row index: (column, reason)
    for name, column in zip(names, record_batch.columns, strict=True):
        values, problems = _arrow_column(column)
        columns.append(values)
        for index, reason in problems.items():
            bad.setdefault(index, (name, reason))
    positions: dict[str, list[int]] = {}
    for index, name in enumerate(names):
        positions.setdefault(name, []).append(index)
    for name, found in positions.items():
        if len(found) > 1:
            for index, problem in _repeated_problems(name, [columns[p] for p in found]).items():
                bad.setdefault(index, problem)
    row_numbers = pa.array(np.arange(rows_before + 1, rows_before + size + 1, dtype=np.int64))
    unique = {name: columns[found[0]] for name, found in positions.items()}
    table = pa.table({**unique, ROW: row_numbers})
    batch = TextBatch(columns=table)
    if bad:
        keep = [index not in bad for index in range(size)]
        rows = batch.raw_rows(rows_before + index + 1 for index in bad)
        for index in sorted(bad):
            column, reason = bad[index]
            row = rows[rows_before + index + 1]
            for found in positions.values():
                # As the row was read before: the last copy of a repeated column shows.
                if len(found) > 1:
                    last = columns[found[-1]].slice(index, 1)
                    row[names[found[-1]]] = arrow_to_text(last)[0][0]
            raw = json.dumps(row, ensure_ascii=False, default=str)
            batch.rejects.append(
                Reject(rows_before + index + 1, reason, raw, column=column, code="value")
            )
        batch.columns = table.filter(pa.array(keep))
    return batch


parquet_columns = _parquet_columns
"""One Parquet record batch as the batch path holds it (for the fast path's raw rows)."""


def _repeated_problems(name: str, copies: list[pa.Array]) -> dict[int, tuple[str, str]]:
    """The rows whose copies of column ``name`` differ, with why (text compared, as read)."""
    texts = [pc.cast(copy, pa.string()) if not _is_text(copy.type) else copy for copy in copies]
    first = texts[0]
    differ: pa.Array | None = None
    for other in texts[1:]:
        same = pc.or_kleene(pc.equal(first, other), pc.and_(pc.is_null(first), pc.is_null(other)))
        unequal = pc.invert(pc.fill_null(same, False))
        differ = unequal if differ is None else pc.or_(differ, unequal)
    if differ is None or not pc.any(differ).as_py():
        return {}
    problems: dict[int, tuple[str, str]] = {}
    for index in pc.indices_nonzero(differ).to_pylist():
        values = [arrow_to_text(copy.slice(index, 1))[0][0] for copy in copies]
        shown = " / ".join(_shown(value) for value in values)
        problems[index] = (
            name,
            f"column {name!r} appears {len(copies)} times in the file and this row's "
            f"values differ ({shown}); rename or drop the copies",
        )
    return problems


def _is_text(kind: pa.DataType) -> bool:
    return bool(pa.types.is_string(kind) or pa.types.is_large_string(kind))


KEPT_TYPES = (
    pa.types.is_integer,
    pa.types.is_floating,
    pa.types.is_boolean,
    pa.types.is_timestamp,
    pa.types.is_date,
)
"""Arrow types a columnar batch keeps as they are (the importer types them without text)."""


def _arrow_column(column: pa.Array) -> tuple[pa.Array, dict[int, str]]:
    """The column as a columnar batch holds it (see :data:`KEPT_TYPES`; text otherwise), and
    the rows whose value cannot be text (invalid UTF-8), with why."""
    kind = column.type
    if pa.types.is_dictionary(kind):
        column = column.dictionary_decode()
        kind = column.type
    if any(test(kind) for test in KEPT_TYPES) and not pa.types.is_float16(kind):
        return column, {}
    if _is_text(kind):
        try:
            column.validate(full=True)
        except pa.ArrowInvalid:
            values, problems = _bytes_to_text(column.cast(pa.large_binary()))
            return pa.array(values, pa.string()), problems
        return column, {}
    if pa.types.is_binary(kind) or pa.types.is_large_binary(kind):
        try:
            return column.cast(pa.string()), {}
        except pa.ArrowInvalid:
            values, problems = _bytes_to_text(column)
            return pa.array(values, pa.string()), problems
    values, problems = arrow_to_text(column)
    return pa.array(values, pa.string()), problems


def arrow_to_text(column: pa.Array) -> tuple[list[str | None], dict[int, str]]:
    """The column as text, and the rows whose value cannot be text (invalid UTF-8), with why."""
    kind = column.type
    if pa.types.is_dictionary(kind):
        column = column.dictionary_decode()
        kind = column.type
    if pa.types.is_timestamp(kind):
        # ISO text (%S includes the fraction) with a zone when the column has one, so the
        # importer converts it to UTC.
        text = pc.strftime(column, format="%Y-%m-%dT%H:%M:%S%z" if kind.tz else "%Y-%m-%dT%H:%M:%S")
        return text.to_pylist(), {}
    if pa.types.is_struct(kind) or pa.types.is_list(kind) or pa.types.is_map(kind):
        return _nested_to_text(column)
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        try:
            column.validate(full=True)
        except pa.ArrowInvalid:
            return _bytes_to_text(column.cast(pa.large_binary()))
        return column.to_pylist(), {}
    if pa.types.is_binary(kind) or pa.types.is_large_binary(kind):
        return _bytes_to_text(column)
    return pc.cast(column, pa.string()).to_pylist(), {}


def arrow_text(column: pa.Array | pa.ChunkedArray) -> pa.Array | pa.ChunkedArray:
    """A column of a columnar batch as text, set-based (as :func:`arrow_to_text` writes it)."""
    kind = column.type
    if _is_text(kind):
        return column
    if pa.types.is_timestamp(kind):
        return pc.strftime(column, format="%Y-%m-%dT%H:%M:%S%z" if kind.tz else "%Y-%m-%dT%H:%M:%S")
    return pc.cast(column, pa.string())


def _bytes_to_text(column: pa.Array) -> tuple[list[str | None], dict[int, str]]:
    values: list[str | None] = []
    problems: dict[int, str] = {}
    for index, data in enumerate(column.to_pylist()):
        if data is None:
            values.append(None)
            continue
        try:
            values.append(data.decode("utf-8"))
        except UnicodeDecodeError as error:
            guess = guess_encoding(data)
            problems[index] = (
                f"byte {error.start + 1} of the value: not UTF-8 (looks like {guess}); "
                "re-export the strings as UTF-8"
            )
            values.append(data.decode(guess, "replace"))
    return values, problems


def _nested_to_text(column: pa.Array) -> tuple[list[str | None], dict[int, str]]:
    try:
        return [None if v is None else json.dumps(v, default=str) for v in column.to_pylist()], {}
    except (UnicodeDecodeError, pa.ArrowException):
        pass  # find the rows that cannot be read, one by one
    values: list[str | None] = []
    problems: dict[int, str] = {}
    for index in range(len(column)):
        try:
            value = column[index].as_py()
            values.append(None if value is None else json.dumps(value, default=str))
        except (UnicodeDecodeError, pa.ArrowException) as error:
            problems[index] = f"a nested value cannot be read as UTF-8 text ({error})"
            values.append(None)
    return values, problems


def _to_text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict | list):
        return json.dumps(value, sort_keys=True)
    return str(value)


def _shown(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    if len(text) > SHOWN_CHARACTERS:
        text = text[: SHOWN_CHARACTERS - 1] + "…"
    return repr(text)


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def _sample(path: Path) -> bytes:
    try:
        with path.open("rb") as handle:
            return handle.read(SAMPLE_BYTES)
    except OSError as error:
        raise DataImportError(f"{path}: cannot read the file ({error.strerror})") from None


def _decompressed_sample(path: Path, head: bytes) -> bytes:
    """The start of the file's content: ``head`` itself, or as much of it as decompresses
    (a damaged gzip file is read up to the damage; reading it reports the damage)."""
    if not head.startswith(_GZIP_MAGIC):
        return head
    try:
        return zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(head, SAMPLE_BYTES)
    except zlib.error as error:
        raise DataImportError(f"{path}: a damaged gzip file ({error})") from None


def _refuse_binary(path: Path, head: bytes) -> None:
    if head.startswith(_ZIP_MAGIC):
        raise DataImportError(
            f"{path}: a zip archive (an Excel .xlsx workbook?); save the sheet as CSV (UTF-8)"
        )
    if head.startswith(_OLE_MAGIC):
        raise DataImportError(f"{path}: an old Excel .xls workbook; save the sheet as CSV (UTF-8)")


def _sniff_text_format(path: Path, head: bytes) -> str:
    """JSON Lines when the content starts with ``{``, CSV otherwise; a JSON array is refused."""
    text = head.decode("utf-8", "replace").lstrip("\ufeff\ufffe \t\r\n\x00")
    if text.startswith("["):
        raise DataImportError(
            f"{path}:1: a JSON array, not JSON Lines; write one object per line (for example "
            f"`jq -c '.[]' {path.name} > {path.stem}.jsonl`) and import that"
        )
    if text.startswith("{"):
        first_line = text.split("\n", 1)[0].strip()
        if first_line == "{":
            raise DataImportError(
                f"{path}:1: a pretty-printed JSON document, not JSON Lines; write one object "
                f"per line (for example `jq -c . {path.name} > {path.stem}.jsonl`)"
            )
        return "jsonl"
    return "csv"
