"""Adoption on a small hand-computed dataset, on DuckDB and PostgreSQL with identical results.

Accounts (created_at, segment): a1 2024-01-01 smb, a2 2024-01-15 ent, a3 2024-05-10 smb,
a4 2023-12-01 ent. The window is [2024-05-01, 2024-06-01): 31 days, also the as-of time.

In the window: a1 — p1 login May 2 (twice), p1 report May 3, p2 login May 3, p2 export May 3;
a2 — p3 login May 5, p3 report May 6, an account-level sync May 7 (no person);
a3 — p4 login May 12, p4 onboarded May 15 00:00, p4 login May 15. a4 has none.

Active accounts 3 (a1, a2, a3); users 4 (p1..p4); person-days: a1 p1{2,3} p2{3} = 3, a2 2,
a3 2, total 7. Mean DAU = 7/31, stickiness = 7/31/4 = 7/124. Per account: a1 3/31 and 3/62,
a2 2/31 and 2/31, a3 2/31 and 2/31. By segment: smb (a1, a3) 2 accounts, 3 users, 5 person-days
-> 5/31 and 5/93; ent (a2) 1, 1, 2 -> 2/31 and 2/31.

Features report, export, integration among the 3 eligible: 2/3, 1/3, 0/3. Depth: a1 2
(report, export), a2 1, a3 0 -> distribution {0: 1, 1: 1, 2: 1}, mean 1.

Usage drop at June 1 with 60-day windows: earlier [Feb 2, Apr 2), recent [Apr 2, Jun 1).
a1: 5 logins Mar 1-5, recent 5 + Apr 25 = 6 (not flagged); a2: 5 logins Mar 10-14, recent 3
(exactly 40% fewer: flagged, change -0.4); a4: 10 logins Feb 10-19, recent 0 (flagged, -1);
a3 was created after Feb 2: too young. With a 0.5 threshold a2 (3 > 2.5) is no longer flagged.

Time to first value (onboarded where step = done), censored at June 1: a1 Jan 11 (10 days;
its Jan 5 "start" step is filtered out), a2 Jan 17 12:00 (2.5 -> 2 whole days), a3 May 15
(5 days), a4 none (censored at 183 days). Cohort 2024-01: S(2) = 1/2, S(10) = 0 -> median 2,
p75 10; 2024-05: median 5, p75 5; 2023-12: 1 censored, no median. All: S(2) = 3/4,
S(5) = 1/2, S(10) = 1/4 -> median 5, p75 10. Without the filter a1 reaches value on day 4, so
2024-01 has median 2, p75 4.
"""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import get_args

import pytest
from pydantic import BaseModel

from closeloop.data.warehouse import Warehouse
from closeloop.errors import ConfigurationError
from closeloop.schemas.adoption import Adoption
from closeloop.services import outcomes_adoption as service
from closeloop.services.project import init_project, open_workspace
from support import Backends

START, END = datetime(2024, 5, 1), datetime(2024, 6, 1)
APRIL_20 = datetime(2024, 4, 20)
DOCS = Path(__file__).resolve().parents[2] / "docs" / "metrics.md"


def load_adoption_dataset(warehouse: Warehouse) -> None:
    """The dataset of this module's docstring."""
    warehouse.ensure_tables()
    accounts = [
        ("a1", datetime(2024, 1, 1), "smb"),
        ("a2", datetime(2024, 1, 15), "ent"),
        ("a3", datetime(2024, 5, 10), "smb"),
        ("a4", datetime(2023, 12, 1), "ent"),
    ]
    warehouse.append(
        "accounts",
        warehouse.arrow_for(
            "accounts",
            {
                "account_id": [a[0] for a in accounts],
                "created_at": [a[1] for a in accounts],
                "segment": [a[2] for a in accounts],
            },
        ),
    )
    done, start = '{"step": "done"}', '{"step": "start"}'
    events: list[tuple[str, str | None, str, datetime, str | None]] = [
        ("a1", "p1", "login", datetime(2024, 5, 2, 9), None),
        ("a1", "p1", "login", datetime(2024, 5, 2, 15), None),
        ("a1", "p1", "report", datetime(2024, 5, 3, 10), None),
        ("a1", "p2", "login", datetime(2024, 5, 3, 11), None),
        ("a1", "p2", "export", datetime(2024, 5, 3, 12), None),
        ("a2", "p3", "login", datetime(2024, 5, 5, 9), None),
        ("a2", "p3", "report", datetime(2024, 5, 6, 9), None),
        ("a2", None, "sync", datetime(2024, 5, 7, 9), None),
        ("a3", "p4", "login", datetime(2024, 5, 12, 9), None),
        ("a3", "p4", "onboarded", datetime(2024, 5, 15), done),
        ("a3", "p4", "login", datetime(2024, 5, 15, 10), None),
        ("a1", "p1", "login", datetime(2024, 4, 25, 9), None),
        *[("a1", "p1", "login", datetime(2024, 3, day, 9), None) for day in range(1, 6)],
        *[("a2", "p3", "login", datetime(2024, 3, day, 9), None) for day in range(10, 15)],
        *[("a4", "p5", "login", datetime(2024, 2, day, 9), None) for day in range(10, 20)],
        ("a1", "p1", "onboarded", datetime(2024, 1, 5), start),
        ("a1", "p1", "onboarded", datetime(2024, 1, 11), done),
        ("a2", "p3", "onboarded", datetime(2024, 1, 17, 12), done),
    ]
    warehouse.append(
        "events",
        warehouse.arrow_for(
            "events",
            {
                "event_id": [f"e{i}" for i in range(len(events))],
                "account_id": [e[0] for e in events],
                "person_id": [e[1] for e in events],
                "name": [e[2] for e in events],
                "timestamp": [e[3] for e in events],
                "value": [None] * len(events),
                "properties": [e[4] for e in events],
            },
        ),
    )


def wilson(successes: int, n: int, z: float = 1.959963984540054) -> tuple[float, float]:
    """Wilson's score interval written out independently of closeloop.stats."""
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return max(0.0, centre - half), min(1.0, centre + half)


def _results(folder: Path, backends: Backends) -> dict[str, Adoption]:
    init_project(folder, "adoption")
    with open_workspace(folder, environ=backends.environ()) as workspace:
        load_adoption_dataset(workspace.warehouse)
        return {
            "main": service.adoption(
                workspace,
                START,
                END,
                by="segment",
                features=["report", "export", "integration"],
                value_event="onboarded",
                value_where={"step": "done"},
            ),
            "defaults": service.adoption(workspace, START, END, value_event="onboarded"),
            "report_only": service.adoption(
                workspace, START, END, activity_events=["report"], drop_threshold=0.5
            ),
            "months": service.adoption(workspace, datetime(2024, 4, 20), END, period="month"),
        }


def test_adoption_metrics_match_the_hand_computed_values(
    backends: Backends, tmp_path: Path
) -> None:
    results = _results(tmp_path / "project", backends)
    main = results["main"]
    close = pytest.approx

    assert main.overall.active_accounts == 3 and main.overall.active_users == 4
    assert main.overall.mean_daily_active_users == close(7 / 31)
    assert main.overall.stickiness == close(7 / 124)
    per_account = {a.account_id: a for a in main.accounts}
    assert list(per_account) == ["a1", "a2", "a3"]
    assert [per_account[a].events for a in ("a1", "a2", "a3")] == [5, 3, 3]
    assert [per_account[a].active_users for a in ("a1", "a2", "a3")] == [2, 1, 1]
    assert per_account["a1"].stickiness == close(3 / 62)
    assert per_account["a2"].mean_daily_active_users == close(2 / 31)
    assert per_account["a2"].stickiness == close(2 / 31)
    assert [per_account[a].key_features_used for a in ("a1", "a2", "a3")] == [2, 1, 0]
    segments = {s.segment: s for s in main.segments}
    assert (segments["smb"].active_accounts, segments["smb"].active_users) == (2, 3)
    assert segments["smb"].stickiness == close(5 / 93)
    assert (segments["ent"].active_accounts, segments["ent"].stickiness) == (1, close(2 / 31))

    features = {f.feature: f for f in main.feature_adoption}
    assert [(f.adopted_accounts, f.eligible_accounts) for f in features.values()] == [
        (1, 3),
        (0, 3),
        (2, 3),
    ]  # export, integration, report (sorted)
    assert features["report"].adoption_rate == close(2 / 3)
    assert (features["report"].ci_lower, features["report"].ci_upper) == close(wilson(2, 3))
    assert features["integration"].ci_lower == 0.0
    assert features["integration"].ci_upper == close(wilson(0, 3)[1])
    depth = main.engagement_depth
    assert depth.eligible_accounts == 3 and depth.mean_key_features_used == close(1.0)
    assert [(b.key_features_used, b.accounts) for b in depth.distribution] == [
        (0, 1),
        (1, 1),
        (2, 1),
    ]

    drops = main.usage_drops
    assert (drops.checked_accounts, drops.too_young_accounts) == (3, 1)
    assert [(d.account_id, d.earlier_events, d.recent_events) for d in drops.flagged] == [
        ("a2", 5, 3),
        ("a4", 10, 0),
    ]
    assert [d.change for d in drops.flagged] == [close(-0.4), close(-1.0)]

    assert main.time_to_value is not None
    cohorts = {c.cohort: c for c in main.time_to_value.cohorts}
    assert list(cohorts) == ["2023-12", "2024-01", "2024-05", "all"]
    assert (cohorts["2023-12"].accounts, cohorts["2023-12"].censored) == (1, 1)
    assert cohorts["2023-12"].median_days is None and cohorts["2023-12"].p75_days is None
    assert (cohorts["2024-01"].median_days, cohorts["2024-01"].p75_days) == (2.0, 10.0)
    assert (cohorts["2024-05"].median_days, cohorts["2024-05"].p75_days) == (5.0, 5.0)
    assert (cohorts["all"].accounts, cohorts["all"].reached_value) == (4, 3)
    assert (cohorts["all"].median_days, cohorts["all"].p75_days) == (5.0, 10.0)


def test_each_switch_changes_the_number_it_should(backends: Backends, tmp_path: Path) -> None:
    results = _results(tmp_path / "project", backends)
    defaults, report_only, months = results["defaults"], results["report_only"], results["months"]

    # Default key features: every event name the active accounts used in the window.
    assert defaults.settings.features == ["export", "login", "onboarded", "report", "sync"]
    assert [f.adopted_accounts for f in defaults.feature_adoption] == [1, 3, 1, 2, 1]
    assert defaults.segments == [] and defaults.periods == []
    # Without the property filter a1's "start" step on Jan 5 (day 4) is its first value.
    assert defaults.time_to_value is not None
    january = next(c for c in defaults.time_to_value.cohorts if c.cohort == "2024-01")
    assert (january.median_days, january.p75_days) == (2.0, 4.0)

    # Only "report" is activity: a1 (p1 May 3) and a2 (p3 May 6).
    assert (report_only.overall.active_accounts, report_only.overall.active_users) == (2, 2)
    assert report_only.overall.stickiness == pytest.approx(1 / 31)
    # Activity decides the usage-drop counts too: a1 and a2 had no report before April, and a4
    # none at all, so nobody has an earlier window; a 0.5 threshold is recorded.
    assert report_only.usage_drops.checked_accounts == 0
    assert report_only.settings.drop_threshold == 0.5
    assert report_only.time_to_value is None

    # April 20 - May 1 (11 days): a1's login on April 25; May as the main window.
    assert [(p.period_start, p.period_end) for p in months.periods] == [
        (APRIL_20.replace(tzinfo=UTC), START.replace(tzinfo=UTC)),
        (START.replace(tzinfo=UTC), END.replace(tzinfo=UTC)),
    ]
    april, may = months.periods
    assert (april.active_accounts, april.active_users) == (1, 1)
    assert april.mean_daily_active_users == pytest.approx(1 / 11)
    assert may.stickiness == pytest.approx(7 / 124)


def test_drop_threshold_switch(backends: Backends, tmp_path: Path) -> None:
    folder = tmp_path / "project"
    init_project(folder, "adoption")
    with open_workspace(folder, environ=backends.environ()) as workspace:
        load_adoption_dataset(workspace.warehouse)
        half = service.adoption(workspace, START, END, drop_threshold=0.5)
        short = service.adoption(workspace, START, END, drop_window_days=30)
    # a2 fell 40% (5 -> 3): flagged at 0.4, not at 0.5.
    assert [d.account_id for d in half.usage_drops.flagged] == ["a4"]
    # 30-day windows: earlier [Apr 2, May 2), recent [May 2, Jun 1); a3 (May 10) is too young;
    # only a1 has earlier events (Apr 25: 1) and it rose to 5, so nobody is flagged.
    assert (short.usage_drops.checked_accounts, short.usage_drops.too_young_accounts) == (1, 1)
    assert short.usage_drops.flagged == []


def test_bad_options_are_clear_errors(tmp_path: Path) -> None:
    folder = tmp_path / "project"
    init_project(folder, "adoption")
    with open_workspace(folder) as workspace:
        load_adoption_dataset(workspace.warehouse)
        with pytest.raises(ConfigurationError, match=r"cannot group by 'sgement'.*segment"):
            service.adoption(workspace, START, END, by="sgement")
        with pytest.raises(ConfigurationError, match="must be in"):
            service.adoption(workspace, START, END, drop_threshold=1.5)
        with pytest.raises(ConfigurationError, match="needs --value-event"):
            service.adoption(workspace, START, END, value_where={"step": "done"})
    with pytest.raises(ConfigurationError, match="must be before --end"):
        service.window(None, END, START, END)
    with pytest.raises(ConfigurationError, match="go together"):
        service.window(None, START, None, END)
    with pytest.raises(ConfigurationError, match="KEY=VALUE"):
        service.parse_where(["step"])
    assert service.window(END, None, None, START) == (END - timedelta(days=30), END)


def test_every_metric_and_switch_is_documented() -> None:
    """Every field of the adoption model (metrics and settings) appears in docs/metrics.md's
    Adoption section, in backquotes."""
    text = DOCS.read_text()
    match = re.search(r"^## Adoption\n(.*?)(?=^## |\Z)", text, re.M | re.S)
    assert match, "docs/metrics.md has no '## Adoption' section"
    section = match.group(1)
    models: set[type[BaseModel]] = {Adoption}
    names: set[str] = set()
    while models:
        model = models.pop()
        for name, field in model.model_fields.items():
            names.add(name)
            for candidate in _models_in(field.annotation):
                models.add(candidate)
    missing = sorted(name for name in names if f"`{name}`" not in section)
    assert not missing, f"undocumented in docs/metrics.md ## Adoption: {missing}"
    for option in ("--activity", "--feature", "--drop-threshold", "--drop-window-days"):
        assert f"`{option}" in section, option


def _models_in(annotation: object) -> list[type[BaseModel]]:
    found: list[type[BaseModel]] = []
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        found.append(annotation)
    for argument in get_args(annotation):
        found.extend(_models_in(argument))
    return found


def test_a_window_without_events_is_a_well_formed_empty_result(
    backends: Backends, tmp_path: Path
) -> None:
    """Nothing happened in 2020: zero counts, null ratios, no features, nobody eligible."""
    folder = tmp_path / "project"
    init_project(folder, "adoption")
    with open_workspace(folder, environ=backends.environ()) as workspace:
        load_adoption_dataset(workspace.warehouse)
        empty = service.adoption(
            workspace, datetime(2020, 1, 1), datetime(2020, 2, 1), by="segment", period="month"
        )
        unused = service.adoption(
            workspace, datetime(2020, 1, 1), datetime(2020, 2, 1), features=["report"]
        )
    assert (empty.overall.active_accounts, empty.overall.active_users) == (0, 0)
    assert empty.overall.stickiness is None and empty.overall.mean_daily_active_users == 0.0
    assert empty.segments == [] and empty.accounts == [] and empty.feature_adoption == []
    assert [p.active_accounts for p in empty.periods] == [0]
    assert empty.engagement_depth.eligible_accounts == 0
    assert empty.engagement_depth.mean_key_features_used is None
    assert empty.engagement_depth.distribution == []
    assert (empty.usage_drops.checked_accounts, empty.usage_drops.too_young_accounts) == (0, 0)
    (report,) = unused.feature_adoption
    assert (report.adopted_accounts, report.eligible_accounts, report.adoption_rate) == (0, 0, None)
    assert report.ci_lower is None and report.ci_upper is None


def test_segments_are_read_as_of_the_window_start(backends: Backends, tmp_path: Path) -> None:
    """a3 was "ent" from 2024-04-01 until it became "smb" on 2024-05-15 (its stored value), so on
    May 1 it counts as ent: smb = a1 (1 account, 2 users, 3 person-days: stickiness 3/62), ent =
    a2 and a3 (2 accounts, 2 users, 4 person-days: 4/31 and 2/31)."""
    folder = tmp_path / "project"
    init_project(folder, "adoption")
    with open_workspace(folder, environ=backends.environ()) as workspace:
        load_adoption_dataset(workspace.warehouse)
        workspace.warehouse.append(
            "attribute_history",
            workspace.warehouse.arrow_for(
                "attribute_history",
                {
                    "write_id": ["w1", "w2"],
                    "entity": ["account", "account"],
                    "entity_id": ["a3", "a3"],
                    "name": ["segment", "segment"],
                    "value": ['"ent"', '"smb"'],
                    "valid_from": [datetime(2024, 4, 1), datetime(2024, 5, 15)],
                },
            ),
        )
        result = service.adoption(workspace, START, END, by="segment")
    segments = {s.segment: s for s in result.segments}
    assert list(segments) == ["ent", "smb"]
    assert (segments["smb"].active_accounts, segments["smb"].active_users) == (1, 2)
    assert segments["smb"].stickiness == pytest.approx(3 / 62)
    assert (segments["ent"].active_accounts, segments["ent"].active_users) == (2, 2)
    assert segments["ent"].mean_daily_active_users == pytest.approx(4 / 31)
    assert segments["ent"].stickiness == pytest.approx(2 / 31)
