"""Voice of the customer on a hand-computed table, on DuckDB and PostgreSQL (same numbers).

Window [2024-01-01, 2024-03-01), months. Accounts a1 (ent), a2 (smb), a3 (smb at the window
start, ent from 2024-02-01 by attribute history), a4 (ent, active until 2024-02-15, no answers),
a5 (smb, not active). People p1, p2 (a1), p3 (a2), p4 (a3), p5 (a4).

NPS (0-10 unless said): r1 a1 10 P (Jan 5), r2 a1 8 passive (Jan 20), r6 a2 80 on 0-100 -> 8
passive (Jan 10), r3 a2 9 P (Feb 3), r4 a3 7 passive (Feb 10), r5 a1 3 D (Feb 20); r7 a3 5 on 1-5
excluded (too coarse); r8 a2 10 on Dec 31 (outside).
  respondent: n 6, P 2, D 1 -> NPS 100 (2 - 1) / 6 = 16.67
  account (latest): a1 r5 D, a2 r3 P, a3 r4 passive -> n 3, NPS 0
  Jan: r1, r2, r6 -> 1 P of 3 -> 33.33; Feb: r3, r4, r5 -> 1 P, 1 D -> 0
  segments as of the start: ent {a1}: r1, r2, r5 -> 0; smb {a2, a3}: r3, r4, r6 -> 33.33
CSAT (1-5 unless said): c1 a1 5, c2 a2 4, c3 a3 3, c4 a1 2, c6 a2 9 on 0-10 (top two: 9, 10);
c5 a3 7 on 1-5 excluded (outside its scale).
  respondent: 3 of 5 satisfied -> 60%; account: a1 c4 no, a2 c6 yes, a3 c3 no -> 33.33%
CES (1-7, lower is easier; easy = 1-3): e1 a1 2, e2 a2 5, e3 a3 3, e4 a2 1 on 1-5 -> 1 on 1-7.
  respondent: mean (2 + 5 + 3 + 1) / 4 = 2.75; sd sqrt(8.75 / 3) = 1.7078, t(0.975, 3) 3.1824,
  half-width 3.1824 * 1.7078 / 2 = 2.7175 -> [0.03, 5.47], clipped to [1, 5.4675]; easy 3/4.
  account: a1 2, a2 1 (e4 latest), a3 3 -> mean 2, easy 3/3.
Response rates: active accounts a1-a4 (4), their people p1-p5 (5); NPS answered by a1-a3 (75%)
and p1-p4 (80%); CES by a1-a3 and p1, p3, p4 (60%).
NRR (endpoint): MRR a1 100 (+20 from Feb 10), a2 50, a3 50, a4 40 (ends Feb 15):
  Jan 240 -> 240 = 100%; Feb 240 -> 100 + 20 + 50 + 50 = 220 = 91.67%.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import date, datetime
from pathlib import Path

import pytest

from closeloop.errors import ConfigurationError, NotFoundError
from closeloop.services.outcomes_voc import divergence, voc
from closeloop.services.project import Workspace, init_project, open_workspace
from support import Backends

START, END = datetime(2024, 1, 1), datetime(2024, 3, 1)


def load_voc_dataset(workspace: Workspace) -> None:
    warehouse = workspace.warehouse
    accounts = [("a1", "ent"), ("a2", "smb"), ("a3", "ent"), ("a4", "ent"), ("a5", "smb")]
    warehouse.replace(
        "accounts",
        warehouse.arrow_for(
            "accounts",
            {
                "account_id": [a for a, _ in accounts],
                "segment": [s for _, s in accounts],
                "created_at": [datetime(2023, 1, 1)] * len(accounts),
            },
        ),
    )
    history = [("smb", datetime(2023, 1, 1)), ("ent", datetime(2024, 2, 1))]
    warehouse.replace(
        "attribute_history",
        warehouse.arrow_for(
            "attribute_history",
            {
                "write_id": ["h1", "h2"],
                "entity": ["account", "account"],
                "entity_id": ["a3", "a3"],
                "name": ["segment", "segment"],
                "value": [json.dumps(value) for value, _ in history],
                "valid_from": [moment for _, moment in history],
            },
        ),
    )
    people = [("p1", "a1"), ("p2", "a1"), ("p3", "a2"), ("p4", "a3"), ("p5", "a4")]
    warehouse.replace(
        "people",
        warehouse.arrow_for(
            "people",
            {
                "person_id": [p for p, _ in people],
                "account_id": [a for _, a in people],
                "created_at": [datetime(2023, 1, 1)] * len(people),
            },
        ),
    )
    subscriptions = [
        ("a1", date(2023, 6, 1), None, 100.0),
        ("a1", date(2024, 2, 10), None, 20.0),
        ("a2", date(2023, 6, 1), None, 50.0),
        ("a3", date(2023, 6, 1), None, 50.0),
        ("a4", date(2023, 6, 1), date(2024, 2, 15), 40.0),
        ("a5", date(2022, 1, 1), date(2023, 1, 1), 10.0),
    ]
    warehouse.replace(
        "subscriptions",
        warehouse.arrow_for(
            "subscriptions",
            {
                "subscription_id": [f"s{i}" for i in range(len(subscriptions))],
                "account_id": [s[0] for s in subscriptions],
                "start_date": [s[1] for s in subscriptions],
                "end_date": [s[2] for s in subscriptions],
                "mrr": [s[3] for s in subscriptions],
            },
        ),
    )
    # id, account, person, kind, score, min, max, comment, responded_at
    responses = [
        ("r1", "a1", "p1", "nps", 10, 0, 10, "great", datetime(2024, 1, 5)),
        ("r2", "a1", "p2", "nps", 8, 0, 10, None, datetime(2024, 1, 20)),
        ("r6", "a2", "p3", "nps", 80, 0, 100, None, datetime(2024, 1, 10)),
        ("r3", "a2", "p3", "nps", 9, 0, 10, "good", datetime(2024, 2, 3)),
        ("r4", "a3", "p4", "nps", 7, 0, 10, None, datetime(2024, 2, 10)),
        ("r5", "a1", "p1", "nps", 3, 0, 10, None, datetime(2024, 2, 20)),
        ("r7", "a3", "p4", "nps", 5, 1, 5, None, datetime(2024, 2, 11)),
        ("r8", "a2", "p3", "nps", 10, 0, 10, "old", datetime(2023, 12, 31)),
        ("c1", "a1", "p1", "csat", 5, 1, 5, None, datetime(2024, 1, 8)),
        ("c2", "a2", "p3", "csat", 4, 1, 5, "   ", datetime(2024, 1, 15)),
        ("c3", "a3", "p4", "csat", 3, 1, 5, None, datetime(2024, 2, 1)),
        ("c4", "a1", "p2", "csat", 2, 1, 5, None, datetime(2024, 2, 5)),
        ("c5", "a3", "p4", "csat", 7, 1, 5, None, datetime(2024, 2, 6)),
        ("c6", "a2", "p3", "csat", 9, 0, 10, None, datetime(2024, 2, 12)),
        ("e1", "a1", "p1", "ces", 2, 1, 7, None, datetime(2024, 1, 9)),
        ("e2", "a2", "p3", "ces", 5, 1, 7, None, datetime(2024, 1, 25)),
        ("e3", "a3", "p4", "ces", 3, 1, 7, None, datetime(2024, 2, 14)),
        ("e4", "a2", "p3", "ces", 1, 1, 5, None, datetime(2024, 2, 16)),
    ]
    names = (
        "response_id",
        "account_id",
        "person_id",
        "kind",
        "score",
        "scale_min",
        "scale_max",
        "comment",
        "responded_at",
    )
    columns = {name: [row[i] for row in responses] for i, name in enumerate(names)}
    for name in ("score", "scale_min", "scale_max"):
        columns[name] = [float(value) for value in columns[name]]  # type: ignore[arg-type]
    warehouse.replace("survey_responses", warehouse.arrow_for("survey_responses", columns))


@pytest.fixture
def workspace(backends: Backends, tmp_path: Path) -> Iterator[Workspace]:
    folder = tmp_path / "project"
    init_project(folder, name="voc")
    with open_workspace(folder, environ=backends.environ()) as opened:
        opened.warehouse.ensure_tables()
        load_voc_dataset(opened)
        yield opened


def test_headline_and_account_level_by_hand(workspace: Workspace) -> None:
    result = voc(workspace, START, END, comments=1)
    assert result.nps.value == pytest.approx(100 / 6)
    assert (result.nps.responses, result.nps.promoters, result.nps.passives) == (6, 2, 3)
    assert result.nps.detractors == 1
    assert result.nps.lower is not None and result.nps.upper is not None
    assert result.nps.lower < 100 / 6 < result.nps.upper
    assert result.account_level.nps.value == 0.0
    assert result.account_level.nps.responses == 3
    assert result.csat.value == pytest.approx(60.0)
    assert result.csat.responses == 5
    assert result.account_level.csat.value == pytest.approx(100 / 3)
    assert result.ces.value == pytest.approx(2.75)
    assert (result.ces.lower, result.ces.upper) == (1.0, pytest.approx(5.4675, abs=1e-3))
    assert (result.ces.scale_min, result.ces.scale_max) == (1.0, 7.0)
    assert result.ces.easy_share == pytest.approx(75.0)
    assert result.account_level.ces.value == pytest.approx(2.0)
    assert result.account_level.ces.easy_share == pytest.approx(100.0)


def test_response_rates_by_hand(workspace: Workspace) -> None:
    rates = {rate.kind: rate for rate in voc(workspace, START, END).response_rates}
    assert (rates["nps"].accounts_active, rates["nps"].accounts_responding) == (4, 3)
    assert rates["nps"].account_response_rate == pytest.approx(75.0)
    assert (rates["nps"].people, rates["nps"].people_responding) == (5, 4)
    assert rates["nps"].people_response_rate == pytest.approx(80.0)
    assert rates["ces"].people_response_rate == pytest.approx(60.0)


def test_trend_segments_as_of_the_start_and_comments(workspace: Workspace) -> None:
    result = voc(workspace, START, END, by="segment", comments=1)
    assert [group.key for group in result.trend] == ["2024-01", "2024-02"]
    assert result.trend[0].respondents.nps.value == pytest.approx(100 / 3)
    assert result.trend[1].respondents.nps.value == 0.0
    segments = {group.key: group for group in result.segments}
    assert set(segments) == {"ent", "smb"}  # a3 counts as smb: its segment at the start
    assert segments["ent"].respondents.nps.value == 0.0
    assert segments["smb"].respondents.nps.value == pytest.approx(100 / 3)
    ent_rate = next(r for r in segments["ent"].response_rates if r.kind == "nps")
    assert (ent_rate.accounts_active, ent_rate.accounts_responding) == (2, 1)
    assert [c.response_id for c in result.comments] == ["r3"]
    assert result.comments_total == 2  # r1 and r3; blank and out-of-window comments not
    excluded = {(item.kind, item.scale_min, item.scale_max): item for item in result.excluded}
    assert set(excluded) == {("nps", 1.0, 5.0), ("csat", 1.0, 5.0)}
    assert "too coarse" in excluded[("nps", 1.0, 5.0)].reason
    assert "outside" in excluded[("csat", 1.0, 5.0)].reason


def test_quarters_and_higher_is_easier(workspace: Workspace) -> None:
    result = voc(workspace, START, END, period="quarter", ces_direction="higher_is_easier")
    assert [group.key for group in result.trend] == ["2024-Q1"]
    # Easy is now 5-7 on 1-7: only e2 (5) of 2, 5, 3, 1.
    assert result.ces.easy_share == pytest.approx(25.0)


def test_divergence_series_by_hand(workspace: Workspace) -> None:
    result = divergence(workspace, END, periods=2, period="month")
    assert [row.key for row in result.series] == ["2024-01", "2024-02"]
    assert [row.nrr for row in result.series] == [100.0, pytest.approx(220 / 2.4)]
    assert [row.nps for row in result.series] == [pytest.approx(100 / 3), 0.0]
    # NRR falls 8.33 pp in a month (-100 pp a year) but NPS falls too: nothing fires.
    assert result.nrr_slope == pytest.approx((220 / 2.4 - 100) * 12)
    assert not result.fired
    assert [rule.name for rule in result.rules] == ["nps_rising_nrr_flat", "csat_rising_nrr_flat"]


def test_bad_input_is_refused_with_a_message(workspace: Workspace) -> None:
    with pytest.raises(NotFoundError, match=r"no attribute 'tier'.*segment"):
        voc(workspace, START, END, by="tier")
    with pytest.raises(ConfigurationError, match="must be after --start"):
        voc(workspace, END, START)
    with pytest.raises(ConfigurationError, match="--periods 1"):
        divergence(workspace, END, periods=1)
    # A trend of centuries (the API's property test sent 1900-9998) is refused, not computed
    # month by month for minutes; a quarterly trend of the same window is refused too.
    with pytest.raises(ConfigurationError, match=r"more than 240 months.*--period quarter"):
        voc(workspace, datetime(1900, 1, 1), datetime(2021, 1, 1))
    with pytest.raises(ConfigurationError, match="more than 240 quarters"):
        voc(workspace, datetime(1900, 1, 1), datetime(2021, 1, 1), period="quarter")
    voc(workspace, datetime(2005, 1, 1), datetime(2025, 1, 1))  # 240 months: allowed
