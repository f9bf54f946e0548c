"""Revenue outcomes (MRR movements, NRR/GRR, expansion by source) on every backend.

March 2024 of backend_dataset.SUBSCRIPTIONS, by hand (MRR on the eve of March, then at its end):
a2 1000 -> 1500 on 3/15 (expansion 500, a won cs_sourced expansion opportunity on 3/10), a3
400 -> 300 on 3/10 (contraction 100), a4 200 ends 3/20 (churn 200), a1 starts at 100 on 3/5
(new), a5 (a customer until 1/31) comes back at 250 on 3/25 (reactivation). Starting MRR 1600 on 3
accounts; ending 2150 on 4; NRR (1600 + 500 - 100 - 200) / 1600 = 1.125; GRR 1300 / 1600.
"""

from __future__ import annotations

from datetime import date

import pytest
from backend_support import same

from closeloop.analysis.revenue import Policy, compute, split_periods
from closeloop.data.warehouse import Warehouse

MARCH = (date(2024, 3, 1), date(2024, 4, 1))


def _figures(warehouse: Warehouse, policy: Policy, by: str | None = None) -> object:
    start, end = MARCH
    periods = split_periods(start, end, "month")
    return compute(warehouse, start, end, periods, by=by, policy=policy)


@pytest.mark.parametrize("method", ["endpoint", "event"])
def test_revenue_movements(warehouse: Warehouse, reference: Warehouse, method: str) -> None:
    policy = Policy(method=method)
    got = _figures(warehouse, policy)
    same(got, _figures(reference, policy))
    assert isinstance(got, dict)
    march = got[("window", "*")]
    assert (march.starting_accounts, march.ending_accounts) == (3, 4)
    assert (march.starting_mrr, march.ending_mrr) == (1600.0, 2150.0)
    movements = (
        march.new_mrr,
        march.expansion_mrr,
        march.contraction_mrr,
        march.churned_mrr,
        march.reactivation_mrr,
    )
    assert movements == (100.0, 500.0, 100.0, 200.0, 250.0)
    if method == "endpoint":  # the event method counts the reactivation in NRR too
        assert march.nrr == pytest.approx(1.125)
        assert march.grr == pytest.approx(1300 / 1600)
    assert dict((source, mrr) for source, mrr, _ in march.expansion_by_source)["cs_sourced"] == (
        500.0
    )


def test_revenue_by_segment(warehouse: Warehouse, reference: Warehouse) -> None:
    policy = Policy()
    got = _figures(warehouse, policy, by="segment")
    same(got, _figures(reference, policy, by="segment"))
    assert isinstance(got, dict)
    assert got[("window", "enterprise")].expansion_mrr == 500.0
    assert got[("window", "mid_market")].contraction_mrr == 100.0
