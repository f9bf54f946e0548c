"""Revenue outcomes as a use case: validate the window and switches, compute in the warehouse,
return :class:`~closeloop.schemas.revenue_outcomes.RevenueOutcomes`.

:func:`revenue` is also what other outcomes build on (the divergence alert reads ``nrr`` per
period from ``rows`` with ``period="month"``).
"""

from __future__ import annotations

from datetime import date

from closeloop.analysis import revenue as analysis
from closeloop.errors import ConfigurationError
from closeloop.schemas.revenue_outcomes import (
    ExpansionBySource,
    RevenueOutcomes,
    RevenuePeriod,
    RevenuePolicy,
    RevenueRow,
)
from closeloop.services.project import Workspace


def revenue(
    workspace: Workspace,
    start: date,
    end: date,
    *,
    period: RevenuePeriod | str | None = None,
    by: str | None = None,
    policy: RevenuePolicy | None = None,
) -> RevenueOutcomes:
    """The revenue figures of [start, end): the window's total, and ``rows`` per period
    (``period``: month or quarter), per group of accounts (``by``: an account attribute as of
    ``start``, or ``cohort``), or both."""
    if end <= start:
        raise ConfigurationError(
            f"--end ({end.isoformat()}) must be after --start ({start.isoformat()}): "
            "the window is [start, end)"
        )
    chosen = RevenuePeriod(period) if period is not None else None
    policy = policy or RevenuePolicy()
    periods = analysis.split_periods(start, end, chosen.value if chosen else None)
    switches = analysis.Policy(**policy.model_dump(mode="json"))
    computed = analysis.compute(workspace.warehouse, start, end, periods, by=by, policy=switches)
    figures = {key: _row(value) for key, value in computed.items()}
    total = figures[("window", "*")]
    rows = [
        row
        for (key, group), row in figures.items()
        if (key == "window") != (chosen is not None)
        and (group != "*") == (by is not None)
        and not (key == "window" and group == "*")
    ]
    rows.sort(key=lambda row: (row.period_start, row.group or ""))
    return RevenueOutcomes(
        start=start, end=end, by=by, period=chosen, policy=policy, total=total, rows=rows
    )


def _row(figures: analysis.Figures) -> RevenueRow:
    values = {name: getattr(figures, name) for name in RevenueRow.model_fields}
    values["expansion_by_source"] = [
        ExpansionBySource(source=source, expansion_mrr=amount, movements=movements)
        for source, amount, movements in figures.expansion_by_source
    ]
    return RevenueRow(**values)
