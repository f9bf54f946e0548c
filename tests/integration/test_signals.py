"""Signals on the hand-built company of tests/journey_support.py, on DuckDB + SQLite and on
PostgreSQL: who each rule flags, the ARR at risk, and that every rule, evaluated by the compiler as
an audience would be, selects exactly the flagged accounts.

- slow_completer: Connected's KM 0.75-quantile is 20 days (tests/integration/test_stage_view.py);
  in the stage without Connected are a08 (day 12), a09 (day 5), a13 (day 28) and a14 (day 22), so
  a13 and a14 are flagged (ARR 13,000 + 14,000). Invited's curve never reaches 0.75: no signal.
- usage_drop (< -0.4): b1 (-0.8) and b3 (-0.5); b2 is -0.2 exactly. ARR 10,000 + 30,000.
- renewal_risk (renewal within 60 days and usage < -0.2 or last seen > 14 days): b1 (30 days,
  -0.8), b3 (45 days, -0.5), b4 (10 days, seen 20 days ago); b2 renews in 90 days, b5 is healthy.
  ARR 10,000 + 30,000 + 40,000.
"""

from __future__ import annotations

from pathlib import Path

from journey_support import T, journey_project, load_journey_dataset

from closeloop.data.compiler import matching_accounts
from closeloop.definitions.expressions import check_expression, parse_expression
from closeloop.schemas.journey import SignalKind
from closeloop.services import journey
from closeloop.services.project import open_workspace
from support import Backends

SLOW = "slow_completer:Onboarding:Connected"


def test_signals_and_their_rules_select_exactly_the_flagged_accounts(
    backends: Backends, tmp_path: Path
) -> None:
    folder = journey_project(tmp_path / "project")
    with open_workspace(folder, environ=backends.environ()) as workspace:
        load_journey_dataset(workspace.warehouse)
        found = journey.signals(workspace, T)
        selected = {}
        for signal in found.signals:
            expression = parse_expression(signal.rule)
            check_expression(expression, workspace.project.catalog.vocabulary, text=signal.rule)
            rows = matching_accounts(
                expression, workspace.warehouse, T, workspace.project.catalog
            ).to_pyarrow()
            selected[signal.id] = sorted(rows.column("account_id").to_pylist())
        only_usage = journey.signals(workspace, T, SignalKind.USAGE_DROP)

    by_id = {signal.id: signal for signal in found.signals}
    assert list(by_id) == [SLOW, "usage_drop", "renewal_risk"]
    flagged = {key: [a.account_id for a in signal.accounts] for key, signal in by_id.items()}
    assert flagged == {
        SLOW: ["a13", "a14"],
        "usage_drop": ["b1", "b3"],
        "renewal_risk": ["b1", "b3", "b4"],
    }
    assert selected == flagged
    assert {key: signal.count for key, signal in by_id.items()} == {
        SLOW: 2,
        "usage_drop": 2,
        "renewal_risk": 3,
    }
    assert {key: signal.arr_at_risk for key, signal in by_id.items()} == {
        SLOW: 27_000.0,
        "usage_drop": 40_000.0,
        "renewal_risk": 80_000.0,
    }
    assert by_id[SLOW].rule == (
        'in stage "Onboarding" and not (count(event "integration_connected") >= 1) '
        'and not entered stage "Onboarding" within last 20 days'
    )
    assert by_id["usage_drop"].rule == "usage_change_60d < -0.4"
    assert by_id["renewal_risk"].rule == (
        "renewal_date within next 60 days and (usage_change_60d < -0.2 or last_seen_days > 14)"
    )
    details = {a.account_id: a.detail for a in by_id["renewal_risk"].accounts}
    assert details["b4"] == (
        "renews 2024-06-11 (in 10 days), usage +0% over 60 days, last seen 20 days ago"
    )
    assert [a.detail for a in by_id[SLOW].accounts] == ["28.0 days in stage", "22.0 days in stage"]
    assert found.count == 3
    assert [signal.id for signal in only_usage.signals] == ["usage_drop"]


def test_signal_settings_come_from_closeloop_yaml(tmp_path: Path) -> None:
    folder = journey_project(tmp_path / "project")
    config = folder / "closeloop.yaml"
    config.write_text(
        config.read_text()
        + "signals:\n"
        + "  slow_completer:\n    quantile: 0.5\n"
        + "  usage_drop:\n    threshold: -0.6\n"
        + "  renewal_risk:\n    within_days: 20\n    risk: last_seen_days > 14\n"
    )
    with open_workspace(folder, environ={}) as workspace:
        load_journey_dataset(workspace.warehouse)
        found = journey.signals(workspace, T)
    flagged = {s.id: [a.account_id for a in s.accounts] for s in found.signals}
    # Connected's median is 10 days: a08 (day 12), a13 and a14 are past it; a09 (day 5) is not.
    # Usage below -0.6: b1 only. Renewal within 20 days and unseen for 14: b4 (b5 was seen).
    assert flagged == {
        SLOW: ["a08", "a13", "a14"],
        "usage_drop": ["b1"],
        "renewal_risk": ["b4"],
    }
    assert next(s for s in found.signals if s.id == SLOW).rule.endswith("within last 10 days")
