"""Revenue outcomes on hand-computed tables (DuckDB and PostgreSQL), the shared reference cases,
each policy switch on a table where it changes a number, and a simulated company against an
independent pandas computation of the same definitions.

Windows are [start, end); a row is active on day d when start_date <= d < end_date. The MRR
"before" a period is the MRR on its eve, "at the end" the MRR on its last day.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import date, datetime
from pathlib import Path
from typing import Any

import pytest

from closeloop.errors import ConfigurationError, NotFoundError
from closeloop.schemas.revenue_outcomes import (
    RevenuePolicy,
    RevenueRow,
)
from closeloop.services.outcomes_revenue import revenue
from closeloop.services.project import Workspace, init_project, open_workspace
from support import Backends

REFERENCE = Path(__file__).resolve().parents[3] / "shared" / "reference" / "revenue_cases.json"
MARCH = (date(2020, 3, 1), date(2020, 4, 1))
Sub = tuple[str, str, str | None, float] | tuple[str, str, str | None, float, dict[str, Any]]


def _reference() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(REFERENCE.read_text())
    return data


def _reference_subs() -> list[Sub]:
    return [
        (row["account_id"], row["start_date"], row["end_date"], float(row["mrr"]))
        for row in _reference()["subscriptions"]
    ]


@pytest.fixture
def workspace(backends: Backends, tmp_path: Path) -> Iterator[Workspace]:
    folder = tmp_path / "project"
    init_project(folder, name="revenue")
    with open_workspace(folder, environ=backends.environ()) as opened:
        yield opened


def load(
    workspace: Workspace,
    subs: list[Sub],
    *,
    accounts: dict[str, str] | None = None,
    opportunities: list[tuple[str, str, str, str, str, str | None]] = (),  # type: ignore[assignment]
) -> None:
    """Subscriptions (account, start, end, mrr[, properties]); accounts: id -> segment;
    opportunities: (id, account, kind, status, closed_at, source)."""
    warehouse = workspace.warehouse
    warehouse.replace(
        "subscriptions",
        warehouse.arrow_for(
            "subscriptions",
            {
                "subscription_id": [f"s{i}" for i in range(len(subs))],
                "account_id": [row[0] for row in subs],
                "start_date": [date.fromisoformat(row[1]) for row in subs],
                "end_date": [date.fromisoformat(row[2]) if row[2] else None for row in subs],
                "mrr": [row[3] for row in subs],
                "properties": [json.dumps(row[4]) if len(row) > 4 else None for row in subs],
            },
        ),
    )
    if accounts is not None:
        warehouse.replace(
            "accounts",
            warehouse.arrow_for(
                "accounts",
                {
                    "account_id": list(accounts),
                    "created_at": [datetime(2019, 12, 1)] * len(accounts),
                    "segment": list(accounts.values()),
                },
            ),
        )
    if opportunities:
        warehouse.replace(
            "opportunities",
            warehouse.arrow_for(
                "opportunities",
                {
                    "opportunity_id": [row[0] for row in opportunities],
                    "account_id": [row[1] for row in opportunities],
                    "kind": [row[2] for row in opportunities],
                    "status": [row[3] for row in opportunities],
                    "created_at": [datetime(2019, 12, 1)] * len(opportunities),
                    "closed_at": [datetime.fromisoformat(row[4]) for row in opportunities],
                    "source": [row[5] for row in opportunities],
                },
            ),
        )


def march(workspace: Workspace, **switches: Any) -> RevenueRow:
    return revenue(workspace, *MARCH, policy=RevenuePolicy(**switches)).total


def close(got: float | None, expected: float, tolerance: float = 1e-6) -> bool:
    return got is not None and abs(got - expected) <= tolerance


# -- the shared reference cases ------------------------------------------------------------------


def test_reference_cases_pass_under_both_methods(workspace: Workspace) -> None:
    case = _reference()
    load(workspace, _reference_subs())
    window = (
        date.fromisoformat(case["window"]["start"]),
        date.fromisoformat(case["window"]["end"]),
    )
    assert window == MARCH
    endpoint = revenue(workspace, *window, policy=RevenuePolicy(method="endpoint")).total
    expected = case["expected_endpoint_method"]
    assert endpoint.starting_accounts == expected["starting_accounts"]
    assert endpoint.starting_mrr == expected["starting_mrr"]
    # The start cohort's MRR at the end: starting - churn - contraction + expansion.
    cohort_end = (
        endpoint.starting_mrr
        - endpoint.churned_mrr
        - endpoint.contraction_mrr
        + endpoint.expansion_mrr
    )
    assert cohort_end == expected["ending_mrr_of_start_cohort"]
    for name in (
        "customer_churn_rate",
        "nrr",
        "expansion_mrr",
        "contraction_mrr",
        "churned_mrr",
        "gross_mrr_churn_rate",
        "grr",
    ):
        assert close(getattr(endpoint, name), expected[name]), name
    event = revenue(workspace, *window, policy=RevenuePolicy(method="event")).total
    for name, value in case["expected_event_method"].items():
        if name != "note":
            assert close(getattr(event, name), value), name
    # Both methods: every account's movements add up to the MRR at the end (E new 70 is in it).
    for row in (endpoint, event):
        assert row.ending_mrr == 310.0
        assert row.ending_mrr == (
            row.starting_mrr
            + row.new_mrr
            + row.expansion_mrr
            + row.reactivation_mrr
            - row.contraction_mrr
            - row.churned_mrr
        )


@pytest.mark.parametrize("method", ["endpoint", "event"])
def test_published_mrr_churn_example(workspace: Workspace, method: str) -> None:
    """ChartMogul's example: starting 100, churn 10, contraction 10, expansion 10.
    X 10 -> 0 (churn), Y 50 -> 40 (contraction), Z 40 -> 50 (expansion); changes on 03-15."""
    example = _reference()["published_example"]
    load(
        workspace,
        [
            ("X", "2020-01-01", "2020-03-15", 10.0),
            ("Y", "2020-01-01", "2020-03-15", 50.0),
            ("Y", "2020-03-15", None, 40.0),
            ("Z", "2020-01-01", "2020-03-15", 40.0),
            ("Z", "2020-03-15", None, 50.0),
        ],
    )
    row = march(workspace, method=method)
    for name, value in example["inputs"].items():
        assert getattr(row, name) == value, name
    for name, value in example["expected"].items():
        assert close(getattr(row, name), value), name


@pytest.mark.parametrize("method", ["endpoint", "event"])
def test_published_customer_churn_example(workspace: Workspace, method: str) -> None:
    """100 customers at the start, 10 of them cancel; one account joins and cancels in March:
    10 / 100 = 0.10 (the joined-and-churned one is excluded by default)."""
    example = _reference()["published_customer_churn_example"]
    subs: list[Sub] = [
        (f"c{i}", "2020-01-01", "2020-03-20" if i < 10 else None, 10.0) for i in range(100)
    ]
    subs.append(("late", "2020-03-05", "2020-03-25", 10.0))
    load(workspace, subs)
    row = march(workspace, method=method)
    assert row.starting_accounts == example["inputs"]["customers_at_start"]
    assert close(row.customer_churn_rate, example["expected"]["customer_churn_rate"])
    assert row.churned_accounts == 10


# -- each switch changes the number it should ----------------------------------------------------


def test_method_switch(workspace: Workspace) -> None:
    """Reference table: G churns on 03-10 (30) and returns on 03-20. The endpoint method sees G
    at 30 before and after (no movement: churned = B's 50); the event method counts its churn
    and its reactivation (churned 80, reactivation 30)."""
    load(workspace, _reference_subs())
    endpoint, event = march(workspace, method="endpoint"), march(workspace, method="event")
    assert (endpoint.churned_mrr, endpoint.reactivation_mrr) == (50.0, 0.0)
    assert (event.churned_mrr, event.reactivation_mrr) == (80.0, 30.0)
    assert (endpoint.churned_accounts, event.churned_accounts) == (1, 2)


def test_churn_at_switch(workspace: Workspace) -> None:
    """K pays 100 until 2020-05-01 (end of the paid period) but cancelled on 2020-03-10; L pays
    50 throughout. At the period end K is lost in May, not in March; at cancellation it is
    lost on 03-10: churned 100, customer churn 1/2, GRR 50/150."""
    load(
        workspace,
        [
            ("K", "2020-01-01", "2020-05-01", 100.0, {"cancelled_at": "2020-03-10"}),
            ("L", "2020-01-01", None, 50.0),
        ],
    )
    for method in ("endpoint", "event"):
        at_end = march(workspace, method=method)
        assert (at_end.churned_mrr, at_end.customer_churn_rate, at_end.grr) == (0.0, 0.0, 1.0)
        cancelled = march(workspace, method=method, churn_at="cancellation")
        assert cancelled.churned_mrr == 100.0
        assert cancelled.customer_churn_rate == 0.5
        assert close(cancelled.grr, 50 / 150)


def test_reactivation_gap_switch(workspace: Workspace) -> None:
    """Reference table, event method: G's gap (03-10 to 03-20) is shorter than a month. With
    `any` it is churn 30 + reactivation 30; with `month` the gap is bridged: churned 50 (B only),
    reactivation 0, gross MRR churn (50 + 30) / 300. H leaves on 2020-01-10 and returns on
    2020-03-12 (two months at zero): a reactivation of 25 under both."""
    subs = [*_reference_subs(), ("H", "2019-12-01", "2020-01-10", 25.0)]
    subs.append(("H", "2020-03-12", None, 25.0))
    load(workspace, subs)
    any_gap = march(workspace, method="event")
    month = march(workspace, method="event", reactivation_gap="month")
    assert (any_gap.churned_mrr, any_gap.reactivation_mrr) == (80.0, 55.0)
    assert (month.churned_mrr, month.reactivation_mrr) == (50.0, 25.0)
    assert close(month.gross_mrr_churn_rate, 80 / 300)
    assert (any_gap.reactivated_accounts, month.reactivated_accounts) == (2, 1)


def test_new_and_churned_switch(workspace: Workspace) -> None:
    """Reference table, event method: F joins on 03-05 (20) and leaves on 03-25. Excluded
    (default): new 70 (E), churned 80, 2 churned accounts; included: new 90, churned 100,
    3 churned accounts and customer churn 3/5."""
    load(workspace, _reference_subs())
    excluded = march(workspace, method="event")
    included = march(workspace, method="event", new_and_churned="include")
    assert (excluded.new_mrr, excluded.churned_mrr, excluded.churned_accounts) == (70.0, 80.0, 2)
    assert (included.new_mrr, included.churned_mrr, included.churned_accounts) == (90.0, 100.0, 3)
    assert (excluded.new_accounts, included.new_accounts) == (1, 2)
    assert close(included.customer_churn_rate, 3 / 5)
    assert excluded.ending_mrr == included.ending_mrr == 310.0


def test_free_downgrade_switch(workspace: Workspace) -> None:
    """P pays 100, then from 03-10 keeps a free row (mrr 0); Q pays 100 throughout. As churn:
    churned 100, 1 of 2 customers lost, 1 customer at the end; as contraction: contraction 100,
    no logo lost, 2 customers at the end (ARPA 100 / 2 = 50)."""
    load(
        workspace,
        [
            ("P", "2020-01-01", "2020-03-10", 100.0),
            ("P", "2020-03-10", None, 0.0),
            ("Q", "2020-01-01", None, 100.0),
        ],
    )
    for method in ("endpoint", "event"):
        churn = march(workspace, method=method)
        assert (churn.churned_mrr, churn.contraction_mrr, churn.churned_accounts) == (100, 0, 1)
        assert (churn.ending_accounts, churn.customer_churn_rate, churn.arpa) == (1, 0.5, 100)
        contraction = march(workspace, method=method, free_downgrade="contraction")
        assert (contraction.churned_mrr, contraction.contraction_mrr) == (0.0, 100.0)
        assert (contraction.ending_accounts, contraction.customer_churn_rate) == (2, 0.0)
        assert contraction.arpa == 50.0
        assert churn.grr == contraction.grr == 0.5


def test_paused_switch(workspace: Workspace) -> None:
    """R pays 80, then its row from 03-10 is paused (properties status "paused"); S pays 100.
    As zero MRR: R is churned (80), starting MRR 180; excluded: R is left out of every figure
    (starting 100, 1 account, nothing churned)."""
    load(
        workspace,
        [
            ("R", "2020-01-01", "2020-03-10", 80.0),
            ("R", "2020-03-10", None, 80.0, {"status": "paused"}),
            ("S", "2020-01-01", None, 100.0),
        ],
    )
    zero = march(workspace)
    assert (zero.starting_mrr, zero.churned_mrr, zero.starting_accounts) == (180.0, 80.0, 2)
    excluded = march(workspace, paused="exclude")
    assert (excluded.starting_mrr, excluded.churned_mrr, excluded.starting_accounts) == (
        100.0,
        0.0,
        1,
    )
    assert excluded.nrr == 1.0 and close(zero.nrr, 100 / 180)


def test_churn_denominator_switch(workspace: Workspace) -> None:
    """Reference table: 5 customers at the start, E new. Endpoint: 1 churned (B): 1/5 with
    `start`, 1/(5 + 1) with `start_plus_new`; event: 2 churned (B, G): 2/5 and 2/6."""
    load(workspace, _reference_subs())
    assert march(workspace).customer_churn_rate == 0.2
    assert close(march(workspace, churn_denominator="start_plus_new").customer_churn_rate, 1 / 6)
    assert march(workspace, method="event").customer_churn_rate == 0.4
    plus_new = march(workspace, method="event", churn_denominator="start_plus_new")
    assert close(plus_new.customer_churn_rate, 2 / 6)


def test_gross_margin_and_clv(workspace: Workspace) -> None:
    """Reference table, endpoint: ARPA = 310 / 5 = 62; customer churn 0.2 over March's 31 days
    is 1 - 0.8 ** (30.4375 / 31) a month; CLV = 62 x margin / that."""
    load(workspace, _reference_subs())
    monthly = 1 - 0.8 ** (30.4375 / 31)
    default = march(workspace)
    assert default.arpa == 62.0
    assert close(default.clv, 62 * 0.8 / monthly)
    assert close(march(workspace, gross_margin=0.5).clv, 62 * 0.5 / monthly)
    # No churn: no lifetime to divide by.
    load(workspace, [("A", "2020-01-01", None, 100.0)])
    assert march(workspace).clv is None


def test_expansion_by_source_and_match_days(workspace: Workspace) -> None:
    """Reference table: C expands by 20 on 03-15. Won expansion opportunities of C: o2 (sales)
    closed 2020-02-01, o0 (cs_influenced) and o1 (cs_sourced) both closed 2020-03-01; lost o3
    (marketing, 03-14) and D's o4 (D contracted) never count. Event method, 30 days: the latest
    closed in [02-14, 03-16) wins, the tie goes to the smaller id (o0: cs_influenced); 10 days:
    [03-05, 03-16) has no won one: unattributed. 60 days still picks o0 (latest)."""
    load(
        workspace,
        _reference_subs(),
        opportunities=[
            ("o2", "C", "expansion", "won", "2020-02-01T10:00:00", "sales"),
            ("o1", "C", "expansion", "won", "2020-03-01T00:00:00", "cs_sourced"),
            ("o0", "C", "expansion", "won", "2020-03-01T00:00:00", "cs_influenced"),
            ("o3", "C", "expansion", "lost", "2020-03-14T00:00:00", "marketing"),
            ("o4", "D", "expansion", "won", "2020-03-09T00:00:00", "marketing"),
        ],
    )

    def sources(row: RevenueRow) -> dict[str, float]:
        return {
            item.source: item.expansion_mrr for item in row.expansion_by_source if item.movements
        }

    assert sources(march(workspace, method="event")) == {"cs_influenced": 20.0}
    assert sources(march(workspace, method="event", match_days=10)) == {"unattributed": 20.0}
    assert sources(march(workspace, method="event", match_days=60)) == {"cs_influenced": 20.0}
    # Endpoint: opportunities closed in [start - N days, end): o0 again; with 0 days [03-01,
    # 04-01) still holds o0/o1 (closed at 03-01 00:00).
    assert sources(march(workspace)) == {"cs_influenced": 20.0}
    assert sources(march(workspace, match_days=0)) == {"cs_influenced": 20.0}
    every = [item.source for item in march(workspace).expansion_by_source]
    assert every == ["cs_sourced", "cs_influenced", "sales", "marketing", "unattributed"]


# -- periods, groups and bad input ---------------------------------------------------------------


def test_months_and_groups(workspace: Workspace) -> None:
    """Reference table over [2020-02-01, 2020-04-01) by month. February: before it A 100, B 50,
    G 30 (180); C (40) and D (80) join: new 120, ending 300, NRR 1. March is the reference.
    By segment (smb: A, B, C; ent: D, E, F, G), March, endpoint: smb starts at 190 (A, B, C),
    ends at 160 (B lost, C +20): NRR 160/190; ent starts at 110 (D 80, G 30), ends at 150
    (D -30, E new 70): NRR 80/110."""
    load(
        workspace,
        _reference_subs(),
        accounts={
            "A": "smb",
            "B": "smb",
            "C": "smb",
            "D": "ent",
            "E": "ent",
            "F": "ent",
            "G": "ent",
        },
    )
    result = revenue(workspace, date(2020, 2, 1), date(2020, 4, 1), period="month")
    assert result.period == "month" and result.by is None
    feb, mar = result.rows
    assert (feb.period_start, feb.period_end, mar.period_start) == (
        date(2020, 2, 1),
        date(2020, 3, 1),
        date(2020, 3, 1),
    )
    assert (feb.starting_mrr, feb.new_mrr, feb.ending_mrr, feb.nrr) == (180.0, 120.0, 300.0, 1.0)
    assert feb.new_accounts == 2
    assert mar == march(workspace)
    assert result.total.starting_mrr == 180.0 and result.total.ending_mrr == 310.0

    grouped = revenue(workspace, *MARCH, by="segment")
    groups = {row.group: row for row in grouped.rows}
    assert set(groups) == {"ent", "smb"}
    assert (groups["smb"].starting_mrr, groups["smb"].ending_mrr) == (190.0, 160.0)
    assert close(groups["smb"].nrr, 160 / 190)
    assert (groups["ent"].starting_mrr, groups["ent"].ending_mrr, groups["ent"].new_mrr) == (
        110.0,
        150.0,
        70.0,
    )
    assert close(groups["ent"].nrr, 80 / 110)
    assert grouped.total == march(workspace)

    both = revenue(workspace, date(2020, 2, 1), date(2020, 4, 1), period="month", by="segment")
    assert [(row.period_start.month, row.group) for row in both.rows] == [
        (2, "ent"),
        (2, "smb"),
        (3, "ent"),
        (3, "smb"),
    ]
    assert both.rows[3] == groups["smb"].model_copy(update={})


def test_quarters_clip_to_the_window(workspace: Workspace) -> None:
    load(workspace, _reference_subs())
    result = revenue(workspace, date(2020, 2, 15), date(2020, 5, 1), period="quarter")
    assert [(row.period_start, row.period_end) for row in result.rows] == [
        (date(2020, 2, 15), date(2020, 4, 1)),
        (date(2020, 4, 1), date(2020, 5, 1)),
    ]


def test_bad_input_is_refused_with_its_reason(workspace: Workspace) -> None:
    load(workspace, _reference_subs())
    with pytest.raises(NotFoundError, match=r"no account attribute 'colour'.*segment"):
        revenue(workspace, *MARCH, by="colour")
    with pytest.raises(ConfigurationError, match="must be after --start"):
        revenue(workspace, date(2020, 4, 1), date(2020, 3, 1))


def test_by_signup_cohort(workspace: Workspace) -> None:
    """Every account of the reference table was created on 2019-12-01: one cohort, 2019-12,
    holding the whole of March; accounts without an accounts row would be "(none)"."""
    load(workspace, _reference_subs(), accounts=dict.fromkeys("ABCDEFG", "smb"))
    result = revenue(workspace, *MARCH, by="cohort")
    assert [row.group for row in result.rows] == ["2019-12"]
    assert result.rows[0].model_copy(update={"group": None}) == result.total
    load(workspace, _reference_subs(), accounts={"A": "smb"})
    groups = {row.group: row.starting_mrr for row in revenue(workspace, *MARCH, by="cohort").rows}
    assert groups == {"2019-12": 100.0, "(none)": 200.0}


def test_groups_are_read_as_of_the_window_start(workspace: Workspace) -> None:
    """A moved from smb to ent on 2020-03-15 (attribute history; the accounts row now says ent).
    March is grouped as of 03-01: A (100) is still smb (190 with B and C); ent holds D and G (110).
    April is grouped as of 04-01: A is ent."""
    load(
        workspace,
        _reference_subs(),
        accounts={
            "A": "ent",
            "B": "smb",
            "C": "smb",
            "D": "ent",
            "E": "ent",
            "F": "ent",
            "G": "ent",
        },
    )
    history = [
        ("w0", "smb", datetime(2019, 12, 1)),
        ("w1", "ent", datetime(2020, 3, 15)),
    ]
    workspace.warehouse.append(
        "attribute_history",
        workspace.warehouse.arrow_for(
            "attribute_history",
            {
                "write_id": [row[0] for row in history],
                "entity": ["account"] * len(history),
                "entity_id": ["A"] * len(history),
                "name": ["segment"] * len(history),
                "value": [json.dumps(row[1]) for row in history],
                "valid_from": [row[2] for row in history],
                "source": ["test"] * len(history),
            },
        ),
    )
    march_groups = {row.group: row for row in revenue(workspace, *MARCH, by="segment").rows}
    assert march_groups["smb"].starting_mrr == 190.0 and march_groups["ent"].starting_mrr == 110.0
    april = revenue(workspace, date(2020, 4, 1), date(2020, 5, 1), by="segment").rows
    assert {row.group: row.starting_mrr for row in april} == {"ent": 250.0, "smb": 60.0}
