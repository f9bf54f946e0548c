"""Write the malformed-file corpus of this folder (run it to regenerate; the files are committed).

Every file is small and made on purpose: `manifest.json` says, for each, what importing it must
give (rows read, imported, duplicate, quarantined, and the located reason of each bad row), and
`tests/integration/test_bad_files.py` checks exactly that on DuckDB and PostgreSQL.

    .venv/bin/python tests/data/bad/make_corpus.py
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

HERE = Path(__file__).resolve().parent
HEADER = "account_id,name,created_at,segment,employees,arr\n"


def account_line(number: int, name: str | None = None) -> str:
    return (
        f"a{number},{name or f'Company {number}'},2024-01-{(number % 28) + 1:02d}T09:00:00Z,"
        f"{('self_serve', 'mid_market', 'enterprise')[number % 3]},{10 + number},{1200 + number}\n"
    )


def write(name: str, text: str, encoding: str = "utf-8") -> None:
    (HERE / name).write_bytes(text.encode(encoding))


def write_bytes(name: str, data: bytes) -> None:
    (HERE / name).write_bytes(data)


def base() -> None:
    # The accounts every events/people case refers to (a1..a20); not malformed.
    (HERE / "base").mkdir(exist_ok=True)
    write("base/accounts.csv", HEADER + "".join(account_line(n) for n in range(1, 21)))


def csv_cases() -> None:
    # 1,000 rows with one stray quote at row 10: only row 10 is lost.
    lines = [account_line(n) for n in range(1, 1001)]
    lines[9] = 'a10,"Company 10,2024-01-11T09:00:00Z,mid_market,20,1210\n'
    write("stray_quote.csv", HEADER + "".join(lines))
    # A stray quote in the last column and no other quote in the file: it runs to the end.
    lines = [account_line(n) for n in range(1, 101)]
    lines[49] = 'a50,Company 50,2024-01-23T09:00:00Z,enterprise,60,"1250\n'
    write("stray_quote_last_column.csv", HEADER + "".join(lines))
    # Stray quotes on several rows, and quoted values around them that are right.
    lines = [account_line(n) for n in range(1, 31)]
    lines[4] = 'a5,"Company 5,2024-01-06T09:00:00Z,mid_market,15,1205\n'
    lines[5] = 'a6,"Company, Six",2024-01-07T09:00:00Z,enterprise,16,1206\n'
    lines[11] = 'a12,Company 12",2024-01-13T09:00:00Z,enterprise,22,1212\n'
    lines[19] = '"a20,Company 20,2024-01-21T09:00:00Z,mid_market,30,1220\n'
    lines[20] = 'a21,"Company ""21""",2024-01-22T09:00:00Z,enterprise,31,1221\n'
    write("stray_quotes_several.csv", HEADER + "".join(lines))
    # A quoted value followed by more text: strict CSV refuses it, the next row is fine.
    write(
        "text_after_quote.csv",
        HEADER
        + account_line(1)
        + 'a2,"Acme" Inc,2024-01-03T09:00:00Z,enterprise,5,500\n'
        + account_line(3),
    )
    # Values with line breaks inside quotes are right and stay one row each.
    write(
        "multiline_values.csv",
        "activity_id,account_id,owner,kind,occurred_at,notes\n"
        'v1,a1,ada,call,2024-02-01T10:00:00Z,"first line\nsecond line"\n'
        'v2,a2,ada,meeting,2024-02-02T10:00:00Z,"a, b\n\nand ""c"""\n'
        "v3,a3,grace,email,2024-02-03T10:00:00Z,plain\n",
    )
    # Latin-1 and Windows-1252 exports, and one whose header is not UTF-8.
    rows = HEADER + account_line(1) + account_line(2, "Société Générale") + account_line(3)
    rows += account_line(4, "Müller GmbH") + account_line(5)
    write("latin1.csv", rows, "latin-1")
    write("cp1252.csv", HEADER + account_line(1, "“Quoted” Corp") + account_line(2), "cp1252")
    write(
        "latin1_header.csv",
        "account_id,name,created_at,société\n" + "a1,Acme,2024-01-01,x\n",
        "latin-1",
    )
    # UTF-16 with a byte-order mark (Excel's "Unicode text"), UTF-8 with one and CRLF endings.
    write("utf16.csv", HEADER + account_line(1, "Zoë Ltd") + account_line(2), "utf-16")
    write_bytes(
        "utf8_bom_crlf.csv",
        b"\xef\xbb\xbf"
        + (HEADER + account_line(1) + account_line(2)).replace("\n", "\r\n").encode(),
    )
    write_bytes("utf16_no_bom.csv", (HEADER + account_line(1)).encode("utf-16-le"))
    # Numbers that are not finite, or not whole where a whole number is expected.
    write(
        "non_finite_numbers.csv",
        HEADER
        + "a1,One,2024-01-01,enterprise,10,NaN\n"
        + "a2,Two,2024-01-01,enterprise,10,inf\n"
        + "a3,Three,2024-01-01,enterprise,10,-Infinity\n"
        + "a4,Four,2024-01-01,enterprise,10,1e400\n"
        + "a5,Five,2024-01-01,enterprise,12.7,100\n"
        + "a6,Six,2024-01-01,enterprise,12.0,1e308\n"
        + "a7,Seven,2024-01-01,enterprise,0x10,100\n",
    )
    # Timestamps that are keywords, out of range, ambiguous or impossible.
    stamps = [
        "epoch",
        "infinity",
        "-infinity",
        "now",
        "-0044-03-15",
        "0001-01-01T00:00:00Z",
        "9999-12-31",
        "2024-01-01T10:00:00+25:00",
        "2024-01-01T10:00:00+05:75",
        "2024-02-30",
        "01/02/2024",
        "2024-01-01T10:00:00+14:00",
        "2024-03-05 08:30",
    ]
    write(
        "bad_timestamps.csv",
        HEADER
        + "".join(f"t{i},Stamp {i},{stamp},enterprise,1,1\n" for i, stamp in enumerate(stamps, 1)),
    )
    # NUL characters in a value and in an extra column.
    write(
        "nul_bytes.csv",
        HEADER.rstrip("\n")
        + ",tier\n"
        + "a1,Ac\x00me,2024-01-01,enterprise,1,1,gold\n"
        + "a2,Beta,2024-01-01,enterprise,1,1,sil\x00ver\n"
        + "a3,Gamma,2024-01-01,enterprise,1,1,bronze\n",
    )
    # A header that names a column twice: rows whose two values agree are fine.
    write(
        "repeated_header.csv",
        "account_id,name,created_at,name,segment\n"
        + "a1,Acme,2024-01-01,Acme,enterprise\n"
        + "a2,Beta,2024-01-01,Beta Inc,enterprise\n"
        + "a3,Gamma,2024-01-01, Gamma ,enterprise\n",
    )
    # Ids repeated inside one file: the same row again, and the same id with other values.
    write(
        "duplicate_ids.csv",
        "event_id,account_id,name,timestamp\n"
        + "e1,a1,login,2024-03-01T10:00:00Z\n"
        + "e2,a1,login,2024-03-01T11:00:00Z\n"
        + "e1,a1,login,2024-03-01T10:00:00Z\n"
        + "e2,a2,export,2024-03-02T11:00:00Z\n"
        + "e3,a3,login,2024-03-03T10:00:00Z\n",
    )
    # Rows with too many or too few fields, blank lines and a line of spaces.
    write(
        "field_counts.csv",
        HEADER
        + account_line(1)
        + "a2,Two,2024-01-01,enterprise,1,1,EXTRA\n"
        + "a3,Three,2024-01-01\n"
        + "\n"
        + account_line(4)
        + "   \n"
        + "\n"
        + account_line(6),
    )
    # Required values missing, and events of accounts that do not exist.
    write(
        "missing_values.csv",
        HEADER
        + ",No id,2024-01-01,enterprise,1,1\n"
        + "a2,No date,,enterprise,1,1\n"
        + account_line(3),
    )
    write(
        "unknown_accounts.csv",
        "event_id,account_id,name,timestamp\n"
        + "e1,a1,login,2024-03-01T10:00:00Z\n"
        + "e2,nobody,login,2024-03-01T10:00:00Z\n"
        + "e3,a99,login,2024-03-01T10:00:00Z\n",
    )
    # A product-analytics export whose columns have other names (needs --map).
    write(
        "renamed_columns.csv",
        "uid,account_id,event_name,ts,plan\n"
        + "e1,a1,Integration Connected,2024-03-01T10:00:00Z,pro\n"
        + "e2,a2,Login,2024-03-01 11:00:00,starter\n",
    )
    # A European export: semicolons, and a decimal comma that is not a number.
    write(
        "semicolons.csv",
        HEADER.replace(",", ";")
        + "a1;Acme;2024-01-01;enterprise;10;1200\n"
        + "a2;Beta;2024-01-01;enterprise;10;1200,50\n",
    )
    write(
        "excel_sep_line.csv",
        "sep=;\n" + HEADER.replace(",", ";") + "a1;Acme;2024-01-01;enterprise;10;1200\n",
    )
    # No extension at all: the content says CSV.
    write("accounts_export", HEADER + account_line(1) + account_line(2))
    # Rows dated years ahead (imported, with a warning).
    write(
        "future_dated.csv",
        "event_id,account_id,name,timestamp\n"
        + "e1,a1,login,2024-03-01T10:00:00Z\n"
        + "e2,a1,login,2031-05-01T10:00:00Z\n"
        + "e3,a2,login,2031-06-01T10:00:00Z\n",
    )
    # A gzip file cut short, an empty file, a header alone, an Excel workbook in disguise.
    data = gzip.compress(  # mtime 0: the same bytes on every run
        (
            "event_id,account_id,name,timestamp\n"
            + "".join(f"e{n},a{n % 20 + 1},login,2024-03-01T10:00:00Z\n" for n in range(1, 2001))
        ).encode(),
        mtime=0,
    )
    write_bytes("truncated.csv.gz", data[: len(data) // 2])
    write("empty.csv", "")
    write("header_only.csv", HEADER)
    write_bytes("workbook.csv", b"PK\x03\x04" + bytes(range(256)) * 4)


def jsonl_cases() -> None:
    good = {"event_id": "e1", "account_id": "a1", "name": "login", "timestamp": "2024-03-01"}
    lines = [
        json.dumps(good),
        "this is not json",
        '["an", "array"]',
        '{"event_id": "e3", "account_id": "a1", "name": "login", "timestamp": "2024-03-01",'
        ' "value": NaN}',
        '{"event_id": "e4", "account_id": "a1", "name": "login", "timestamp": "2024-03-01",'
        ' "value": 1e400}',
        '{"event_id": "e5", "account_id": "a1", "name": "login", "name": "logout",'
        ' "timestamp": "2024-03-01"}',
        '{"event_id": "e6", "account_id": "a1", "name": "login", "timestamp": "2024-03-01",'
        ' "properties": {"ratio": NaN}}',
        '{"event_id": "e7", "account_id": "a1", "name": "lo\\u0000gin", "timestamp": "2024-03-01"}',
        '{"event_id": "e8", "account_id": "a1", "name": "login", "timestamp": "2024-03-01",'
        ' "deep": ' + "[" * 5000 + "]" * 5000 + "}",
        "",
        '{"event_id": "e9", "account_id": "a1", "name": "login", "timestamp": "2024-03-01",'
        ' "properties": [1, 2]}',
        '{"event_id": "e10", "account_id": "a1", "name": "login", "name": "login",'
        ' "timestamp": "2024-03-01T10:00:00Z"}',
    ]
    write("bad_lines.jsonl", "\r\n".join(lines) + "\r\n")
    rows = [
        {"event_id": "e1", "account_id": "a1", "name": "login", "timestamp": "2024-03-01"},
        {"event_id": "e2", "account_id": "a2", "name": "café visit", "timestamp": "2024-03-01"},
        {"event_id": "e3", "account_id": "a3", "name": "login", "timestamp": "2024-03-01"},
    ]
    write(
        "latin1.jsonl",
        "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows),
        "latin-1",
    )
    write("array.json", json.dumps(rows, indent=None))
    write("pretty.json", json.dumps(rows[0], indent=2))


def parquet_cases() -> None:
    names = pa.array([b"Acme", b"Soci\xe9t\xe9", None, b"Zo\xc3\xab"], pa.binary()).view(
        pa.string()
    )
    table = pa.table(
        {
            "account_id": ["p1", "p2", "p3", "p4"],
            "name": names,
            "created_at": pa.array([1_704_067_200_000_000] * 4, pa.timestamp("us")),
        }
    )
    pq.write_table(table, HERE / "invalid_utf8.parquet")
    table = pa.table(
        {
            "account_id": ["q1", "q2", "q3", "q4"],
            "created_at": pa.array(
                [
                    1_704_067_200_000_000,
                    -62_135_596_800_000_000,  # 0001-01-01
                    4_102_444_800_000_000,  # 2100-01-01
                    1_704_067_200_000_000,
                ],
                pa.timestamp("us", tz="UTC"),
            ),
            "arr": [1.5, float("nan"), float("inf"), 2.0],
            "employees": pa.array([1, 2, 3, None], pa.int64()),
        }
    )
    pq.write_table(table, HERE / "odd_values.parquet")
    repeated = pa.Table.from_arrays(
        [
            pa.array(["r1", "r2"]),
            pa.array(["One", "Two"]),
            pa.array(["2024-01-01", "2024-01-01"]),
            pa.array(["One", "Deux"]),
        ],
        names=["account_id", "name", "created_at", "name"],
    )
    pq.write_table(repeated, HERE / "repeated_columns.parquet")
    data = (HERE / "odd_values.parquet").read_bytes()
    write_bytes("truncated.parquet", data[: len(data) - 40])
    write("not_really.parquet", HEADER + account_line(1))


def yaml_cases() -> None:
    folder = HERE / "yaml"
    folder.mkdir(exist_ok=True)
    levels = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for previous, name in zip("abcdefgh", "bcdefghi", strict=True):
        levels.append(f"{name}: &{name} [" + ",".join([f"*{previous}"] * 9) + "]")
    (folder / "alias_bomb.yaml").write_text("\n".join(levels) + "\n")
    (folder / "recursive_alias.yaml").write_text(
        "jobs:\n  - &job\n    name: Loop\n    goal: *job\n"
    )
    (folder / "latin1.yaml").write_bytes(
        'jobs:\n  - name: Relance société\n    audience: plan = "pro"\n'.encode("latin-1")
    )
    (folder / "nul.yaml").write_bytes(b"jobs:\n  - name: a\x00b\n")
    (folder / "too_deep.yaml").write_text("jobs: " + "[" * 400 + "]" * 400 + "\n")
    (folder / "impossible_date.yaml").write_text("jobs:\n  - name: X\n    launched: 2024-13-45\n")


if __name__ == "__main__":
    base()
    csv_cases()
    jsonl_cases()
    parquet_cases()
    yaml_cases()
