"""`closeloop measure` end to end on small hand-made files whose numbers are counted by hand.

Four units per arm, entered at midnight on 2024-01-01, a 14-day horizon:

- holdout: u1 reaches the goal on day 2; u2 only on day 19 (after the horizon); u3, u4 never.
  u1 has expansion value 30 on day 14 (the window's last instant, included).
- email: t1 on day 1; t2 at 2024-01-05T00:00+02:00 = 2024-01-04T22:00Z (3 d 22 h = 94 h); t3 has a
  goal event before entry (ignored) and one on day 10 written without a zone (taken as UTC); t4
  never. t1 has expansion 100 on day 4 and 50 on day 15 (outside the window).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jsonschema
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from closeloop.cli.main import app

SCHEMA_PATH = Path(__file__).resolve().parents[2] / "docs" / "measure.schema.json"
UNITS = """unit_id,arm,entered_at,plan,pre_mrr
u1,holdout,2024-01-01T00:00:00Z,basic,10
u2,holdout,2024-01-01T00:00:00Z,pro,20
u3,holdout,2024-01-01T00:00:00Z,basic,30
u4,holdout,2024-01-01T00:00:00Z,pro,40
t1,email,2024-01-01T00:00:00Z,basic,10
t2,email,2024-01-01T00:00:00Z,pro,20
t3,email,2024-01-01T00:00:00Z,basic,30
t4,email,2024-01-01T00:00:00Z,pro,40
"""
EVENTS = """unit_id,name,timestamp,value
u1,integration_connected,2024-01-03T00:00:00Z,
u2,integration_connected,2024-01-20T00:00:00Z,
t1,integration_connected,2024-01-02T00:00:00Z,
t2,integration_connected,2024-01-05T00:00:00+02:00,
t3,integration_connected,2023-12-31T00:00:00Z,
t3,integration_connected,2024-01-11T00:00:00,
t1,expansion,2024-01-05T00:00:00Z,100
t1,expansion,2024-01-16T00:00:00Z,50
u1,expansion,2024-01-15T00:00:00Z,30
zz,expansion,2024-01-05T00:00:00Z,5
t4,page_view,2024-01-02T00:00:00Z,not a number
"""
T2_DAYS = 94 / 24


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner(env={"COLUMNS": "200"})


@pytest.fixture
def files(tmp_path: Path) -> tuple[Path, Path]:
    units, events = tmp_path / "units.csv", tmp_path / "events.csv"
    units.write_text(UNITS, encoding="utf-8")
    events.write_text(EVENTS, encoding="utf-8")
    return units, events


def _invoke(runner: CliRunner, units: Path, events: Path, *extra: str) -> Any:
    return runner.invoke(
        app,
        [
            "measure",
            "--units",
            str(units),
            "--events",
            str(events),
            "--goal",
            "integration_connected",
            "--control",
            "holdout",
            *extra,
        ],
    )


def _json(runner: CliRunner, units: Path, events: Path, *extra: str) -> dict[str, Any]:
    result = _invoke(runner, units, events, "--format", "json", *extra)
    assert result.exit_code == 0, result.output
    payload: dict[str, Any] = json.loads(result.stdout)
    jsonschema.validate(payload, json.loads(SCHEMA_PATH.read_text(encoding="utf-8")))
    return payload


def _failure(runner: CliRunner, units: Path, events: Path, *extra: str) -> str:
    result = _invoke(runner, units, events, *extra)
    assert result.exit_code == 1, result.output
    return " ".join(result.output.split())  # rich may wrap a long message


def test_hand_counted_numbers(runner: CliRunner, files: tuple[Path, Path]) -> None:
    payload = _json(runner, *files, "--horizon", "14d", "--value-event", "expansion")
    assert payload["format_version"] == 1
    assert payload["horizon_days"] == 14.0
    assert payload["control"] == "holdout"
    assert list(payload["arms"]) == ["holdout", "email"]
    holdout, email = payload["arms"]["holdout"], payload["arms"]["email"]
    assert (holdout["n"], holdout["completed"], holdout["completion_rate"]) == (4, 1, 0.25)
    assert (email["n"], email["completed"], email["completion_rate"]) == (4, 3, 0.75)
    assert holdout["completion_at"] == {"7": 0.25, "14": 0.25}
    assert email["completion_at"] == {"7": 0.5, "14": 0.75}
    assert email["km_completion_at_horizon"] == 0.75
    assert holdout["median_time_to_goal"] is None  # three of four never reach the goal
    assert email["median_time_to_goal"] == pytest.approx(T2_DAYS, abs=1e-12)
    # RMST = area under S(t) over 14 days: holdout 2 + 12 * 0.75; email 1 + (94/24 - 1) * 0.75
    # + (10 - 94/24) * 0.5 + 4 * 0.25.
    holdout_rmst = 2 + 12 * 0.75
    email_rmst = 1 + (T2_DAYS - 1) * 0.75 + (10 - T2_DAYS) * 0.5 + 4 * 0.25
    assert holdout["rmst"] == pytest.approx(holdout_rmst, abs=1e-12)
    assert email["rmst"] == pytest.approx(email_rmst, abs=1e-12)
    assert email["conditional_mean_days"] == pytest.approx((1 + T2_DAYS + 10) / 3, abs=1e-12)
    assert email["conditional_median_days"] == pytest.approx(T2_DAYS, abs=1e-12)
    assert (holdout["mean_value"], email["mean_value"]) == (7.5, 25.0)

    comparisons = {c["metric"]: c for c in payload["comparisons"]}
    completion = comparisons["completion_rate"]
    assert completion["status"] == "insufficient_data"  # fewer than 20 units per arm
    assert completion["absolute"]["estimate"] is None
    # Every comparison needs 20 units per arm: with four, none is called (the arms' own numbers
    # above are still reported).
    for metric in ("value", "time_to_goal"):
        assert comparisons[metric]["status"] == "insufficient_data", metric
        assert "fewer than 20" in comparisons[metric]["message"]
    assert comparisons["time_to_goal"]["rmst_difference"]["estimate"] is None

    assert payload["srm"] is None
    assert payload["status"] == "insufficient_data"
    assert payload["source"]["events_for_unknown_units"] == 1
    assert any("belong to no unit" in warning for warning in payload["warnings"])
    assert any("no --weights" in warning for warning in payload["warnings"])


def test_parquet_and_json_lines_give_the_same_numbers(
    runner: CliRunner, files: tuple[Path, Path], tmp_path: Path
) -> None:
    expected = _json(runner, *files, "--horizon", "14d", "--value-event", "expansion")
    utc = UTC

    def moment(day: int, hour: int = 0) -> datetime:
        return datetime(2024, 1, 1, tzinfo=utc) + timedelta(days=day, hours=hour)

    units = pa.table(
        {
            "unit_id": ["u1", "u2", "u3", "u4", "t1", "t2", "t3", "t4"],
            "arm": ["holdout"] * 4 + ["email"] * 4,
            "entered_at": pa.array([moment(0)] * 8, pa.timestamp("us", tz="UTC")),
        }
    )
    events = pa.table(
        {
            "unit_id": ["u1", "u2", "t1", "t2", "t3", "t3", "t1", "t1", "u1", "zz"],
            "name": ["integration_connected"] * 6 + ["expansion"] * 4,
            "timestamp": pa.array(
                [
                    moment(2),
                    moment(19),
                    moment(1),
                    moment(3, 22),
                    moment(-1),
                    moment(10),
                    moment(4),
                    moment(15),
                    moment(14),
                    moment(4),
                ],
                pa.timestamp("us", tz="UTC"),
            ),
            "value": [None] * 6 + [100.0, 50.0, 30.0, 5.0],
        }
    )
    pq.write_table(units, tmp_path / "units.parquet")
    pq.write_table(events, tmp_path / "events.parquet")
    with (tmp_path / "units.jsonl").open("w", encoding="utf-8") as handle:
        for row in units.to_pylist():
            handle.write(json.dumps({**row, "entered_at": row["entered_at"].isoformat()}) + "\n")

    for units_file, events_file in (
        (tmp_path / "units.parquet", tmp_path / "events.parquet"),
        (tmp_path / "units.jsonl", files[1]),
    ):
        got = _json(
            runner, units_file, events_file, "--horizon", "14d", "--value-event", "expansion"
        )
        for key in ("arms", "comparisons", "status"):
            assert got[key] == expected[key], (units_file, key)


def test_completion_lift_weights_segments_and_cuped(runner: CliRunner, tmp_path: Path) -> None:
    # 20 units per arm: 5 of the holdout and 10 of the treated reach the goal on day 3.
    units = ["unit_id,arm,entered_at,plan,pre_mrr"]
    events = ["unit_id,name,timestamp,value"]
    for arm, completing in (("holdout", 5), ("treatment", 10)):
        for index in range(20):
            unit = f"{arm}-{index}"
            units.append(f"{unit},{arm},2024-02-01,{'pro' if index % 2 else 'basic'},{index}")
            if index < completing:
                events.append(f"{unit},integration_connected,2024-02-04T00:00:00Z,")
            value = index + index % 3 + (5 if arm == "treatment" else 0)
            events.append(f"{unit},expansion,2024-02-02,{value}")
    (tmp_path / "units.csv").write_text("\n".join(units) + "\n", encoding="utf-8")
    (tmp_path / "events.csv").write_text("\n".join(events) + "\n", encoding="utf-8")
    payload = _json(
        runner,
        tmp_path / "units.csv",
        tmp_path / "events.csv",
        "--horizon",
        "2w",
        "--value-event",
        "expansion",
        "--covariate",
        "pre_mrr",
        "--segment-by",
        "plan",
        "--weights",
        "holdout=1",
        "--weights",
        "treatment=1",
    )
    completion = next(c for c in payload["comparisons"] if c["metric"] == "completion_rate")
    assert completion["absolute"]["estimate"] == pytest.approx(0.25, abs=1e-12)
    assert completion["relative"]["estimate"] == pytest.approx(1.0, abs=1e-12)
    low, high = completion["absolute"]["ci"]
    assert low < 0.25 < high
    assert payload["srm"]["chi2"] == 0.0 and payload["srm"]["mismatch"] is False
    # Value = covariate + noise (the same in both arms) + 5 for the treated; the covariate means
    # are equal, so the CUPED estimate is exactly the difference in means.
    value = next(c for c in payload["comparisons"] if c["metric"] == "value")
    assert value["cuped"] is True
    assert value["absolute"]["estimate"] == pytest.approx(5.0, abs=1e-9)
    assert {(s["segment"], s["n_control"], s["n_arm"]) for s in payload["segments"]} == {
        ("basic", 10, 10),
        ("pro", 10, 10),
    }
    assert all(s["small"] for s in payload["segments"])
    # 10 units per arm is under the minimum: shown, but out of the family and of Cochran's Q.
    assert not any(s["in_family"] for s in payload["segments"])
    assert all(s["adjusted_ci"] is None and s["p_value_bh"] is None for s in payload["segments"])
    assert payload["heterogeneity"] == []


@pytest.mark.parametrize(
    ("horizon", "days"), [("14d", 14.0), ("14", 14.0), ("36h", 1.5), ("2w", 14.0)]
)
def test_horizon_spellings(
    runner: CliRunner, files: tuple[Path, Path], horizon: str, days: float
) -> None:
    assert _json(runner, *files, "--horizon", horizon)["horizon_days"] == days


@pytest.mark.parametrize("horizon", ["0d", "abc", "14x", "-3d"])
def test_a_bad_horizon_is_refused(
    runner: CliRunner, files: tuple[Path, Path], horizon: str
) -> None:
    message = _failure(runner, *files, "--horizon", horizon)
    assert f"--horizon {horizon!r} is not a positive duration" in message
    assert "36h" in message


def test_table_output(runner: CliRunner, files: tuple[Path, Path]) -> None:
    result = _invoke(runner, *files, "--horizon", "14d", "--segment-by", "plan")
    assert result.exit_code == 0, result.output
    for text in ("Arms", "Comparisons", "holdout", "email", "time to goal", "plan=basic"):
        assert text in result.stdout, text
    assert "Sample ratio check: not run" in result.stdout


def test_html_output_to_a_file(runner: CliRunner, files: tuple[Path, Path], tmp_path: Path) -> None:
    page = tmp_path / "measure.html"
    result = _invoke(runner, *files, "--horizon", "14d", "--format", "html", "--output", str(page))
    assert result.exit_code == 0, result.output
    html = page.read_text(encoding="utf-8")
    assert html.startswith("<!doctype html>")
    assert "<svg" in html
    assert "email" in html and "holdout" in html


def test_json_output_to_a_file(runner: CliRunner, files: tuple[Path, Path], tmp_path: Path) -> None:
    output = tmp_path / "measure.json"
    result = _invoke(
        runner, *files, "--horizon", "14d", "--format", "json", "--output", str(output)
    )
    assert result.exit_code == 0, result.output
    assert json.loads(output.read_text(encoding="utf-8"))["format_version"] == 1


def test_the_schema_is_a_valid_json_schema() -> None:
    schema = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    jsonschema.Draft202012Validator.check_schema(schema)
    assert schema["additionalProperties"] is False


# -- located errors --------------------------------------------------------------------------------


def _write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_missing_column_lists_the_header_and_a_close_name(
    runner: CliRunner, files: tuple[Path, Path], tmp_path: Path
) -> None:
    units = _write(tmp_path, "bad.csv", UNITS.replace("entered_at", "entered", 1))
    message = _failure(runner, units, files[1], "--horizon", "14d")
    assert f"{units}: missing column(s) entered_at" in message
    assert "the header has unit_id, arm, entered, plan, pre_mrr" in message
    assert "'entered' → 'entered_at'?" in message


def test_value_column_is_required_with_a_value_event(
    runner: CliRunner, files: tuple[Path, Path], tmp_path: Path
) -> None:
    events = _write(
        tmp_path, "ev.csv", "unit_id,name,timestamp\nu1,integration_connected,2024-01-03\n"
    )
    message = _failure(runner, files[0], events, "--horizon", "14d", "--value-event", "x")
    assert "missing column(s) value" in message


def test_unparseable_timestamp_names_file_row_column_and_value(
    runner: CliRunner, files: tuple[Path, Path], tmp_path: Path
) -> None:
    units = _write(
        tmp_path, "bad.csv", UNITS.replace("t2,email,2024-01-01T00:00:00Z", "t2,email,yesterday")
    )
    message = _failure(runner, units, files[1], "--horizon", "14d")
    assert f"{units}: column 'entered_at'" in message
    assert "row 6: 'yesterday'" in message
    events = _write(tmp_path, "ev.csv", EVENTS.replace("2024-01-20T00:00:00Z", "2024-13-45"))
    message = _failure(runner, files[0], events, "--horizon", "14d")
    assert f"{events}: column 'timestamp'" in message and "row 2: '2024-13-45'" in message


def test_unparseable_value_of_a_summed_event(
    runner: CliRunner, files: tuple[Path, Path], tmp_path: Path
) -> None:
    # t4's page_view value "not a number" is fine: page_view is not summed.
    events = _write(
        tmp_path, "ev.csv", EVENTS.replace("2024-01-05T00:00:00Z,100", "2024-01-05T00:00:00Z,lots")
    )
    message = _failure(runner, files[0], events, "--horizon", "14d", "--value-event", "expansion")
    assert f"{events}: column 'value'" in message and "row 7: 'lots'" in message
    assert "is not a number" in message


def test_unparseable_covariate(runner: CliRunner, files: tuple[Path, Path], tmp_path: Path) -> None:
    units = _write(tmp_path, "bad.csv", UNITS.replace("pro,40", "pro,forty"))
    message = _failure(
        runner, units, files[1], "--horizon", "14d", "--value-event", "expansion",
        "--covariate", "pre_mrr",
    )  # fmt: skip
    assert "column 'pre_mrr'" in message and "'forty'" in message and "row 4" in message


def test_duplicate_unit_ids_name_the_rows(
    runner: CliRunner, files: tuple[Path, Path], tmp_path: Path
) -> None:
    units = _write(tmp_path, "dup.csv", UNITS + "u2,email,2024-01-01T00:00:00Z,pro,1\n")
    message = _failure(runner, units, files[1], "--horizon", "14d")
    assert f"{units}: column 'unit_id'" in message
    assert "'u2' in rows 2, 9" in message


def test_unknown_control_lists_the_arms(runner: CliRunner, files: tuple[Path, Path]) -> None:
    result = runner.invoke(
        app,
        ["measure", "--units", str(files[0]), "--events", str(files[1]), "--goal", "g",
         "--horizon", "14d", "--control", "hold-out"],
    )  # fmt: skip
    assert result.exit_code == 1
    message = " ".join(result.output.split())
    assert "--control 'hold-out' is not an arm" in message
    assert "email (4), holdout (4)" in message and "did you mean 'holdout'?" in message


def test_arm_without_weight(runner: CliRunner, files: tuple[Path, Path]) -> None:
    message = _failure(runner, *files, "--horizon", "14d", "--weights", "holdout=1")
    assert "arm(s) 'email' (4 unit(s), first at row 5) have no --weights" in message


@pytest.mark.parametrize("weight", ["holdout", "holdout=0", "holdout=x", "=1"])
def test_bad_weights(runner: CliRunner, files: tuple[Path, Path], weight: str) -> None:
    message = _failure(runner, *files, "--horizon", "14d", "--weights", weight)
    assert f"--weights {weight!r} is not ARM=W" in message


def test_empty_required_value(runner: CliRunner, files: tuple[Path, Path], tmp_path: Path) -> None:
    units = _write(tmp_path, "bad.csv", UNITS.replace("u3,holdout", "u3,"))
    message = _failure(runner, units, files[1], "--horizon", "14d")
    assert "column 'arm': the value is empty in 1 row(s) — row 3" in message


def test_missing_file(runner: CliRunner, files: tuple[Path, Path], tmp_path: Path) -> None:
    message = _failure(runner, tmp_path / "nope.csv", files[1], "--horizon", "14d")
    assert "nope.csv: no such file" in message


def test_covariate_needs_a_value_event(runner: CliRunner, files: tuple[Path, Path]) -> None:
    message = _failure(runner, *files, "--horizon", "14d", "--covariate", "pre_mrr")
    assert "--covariate adjusts the value outcome (CUPED); give --value-event too" in message


def test_match_on_estimates_the_effect_on_the_treated(runner: CliRunner, tmp_path: Path) -> None:
    """A campaign that picked big accounts: 30 big and 10 small treated, 10 big and 30 small not.

    Completion: treated big 18/30, small 2/10; untreated big 5/10, small 3/30. The naive
    difference is 20/40 - 8/40 = 0.30; the effect on the treated is 0.75 * (0.6 - 0.5) +
    0.25 * (0.2 - 0.1) = 0.10, the matched comparison's estimate exactly.
    """
    units = ["unit_id,arm,entered_at,size"]
    events = ["unit_id,name,timestamp"]
    for arm, size, count, completing in (
        ("campaign", "big", 30, 18),
        ("campaign", "small", 10, 2),
        ("none", "big", 10, 5),
        ("none", "small", 30, 3),
    ):
        for index in range(count):
            unit = f"{arm}-{size}-{index}"
            units.append(f"{unit},{arm},2024-02-01,{size}")
            if index < completing:
                events.append(f"{unit},integration_connected,2024-02-03")
    unit_file = _write(tmp_path, "units.csv", "\n".join(units) + "\n")
    event_file = _write(tmp_path, "events.csv", "\n".join(events) + "\n")
    arguments = ("--horizon", "14d", "--control", "none", "--match-on", "size")

    payload = _json(runner, unit_file, event_file, *arguments)

    (matched,) = payload["matched"]
    assert matched["estimand"] == "effect on the treated (ATT), observational"
    assert (matched["arm"], matched["control"]) == ("campaign", "none")
    assert matched["naive_completion"]["estimate"] == pytest.approx(0.30, abs=1e-12)
    assert matched["completion"]["estimate"] == pytest.approx(0.10, abs=1e-12)
    assert matched["counts"]["treated_pruned"] == matched["counts"]["control_pruned"] == 0
    big = next(row for row in matched["balance"] if row["level"] == "big")
    assert big["smd_before"] > 0.9
    assert big["smd_after"] == pytest.approx(0.0, abs=1e-12)
    assert any("--match-on" in warning for warning in payload["warnings"])
    table = _invoke(runner, unit_file, event_file, *arguments)
    assert table.exit_code == 0, table.output
    assert "Matched comparison" in table.output and "Balance" in table.output
    missing = _failure(runner, unit_file, event_file, *arguments[:-1], "colour")
    assert "colour" in missing
