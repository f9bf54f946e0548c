"""Charts as Vega-Lite (Altair) rendered to SVG offline with vl-convert, for HTML/PDF reports."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import cast

import altair as alt
import pandas as pd
import vl_convert as vlc

from closeloop.stats import KaplanMeierResult

ARM_COLORS = {"treatment": "#2563eb", "holdout": "#9ca3af"}


def to_svg(chart: alt.TopLevelMixin) -> str:
    return str(vlc.vegalite_to_svg(chart.to_dict()))


def completion_curves(
    curves: Mapping[str, KaplanMeierResult], horizon_days: float
) -> alt.LayerChart:
    """Share of each arm that has reached the goal by day t (1 − Kaplan–Meier), with 95% bands."""
    frames = []
    for arm, km in curves.items():
        times = [0.0, *[t for t in km.times if t <= horizon_days]]
        survival = [1.0, *km.survival[: len(times) - 1]]
        lower = [1.0, *km.ci_lower[: len(times) - 1]]
        upper = [1.0, *km.ci_upper[: len(times) - 1]]
        frames.append(
            pd.DataFrame(
                {
                    "day": times,
                    "completed": [1 - s for s in survival],
                    "low": [1 - u for u in upper],
                    "high": [1 - lo for lo in lower],
                    "arm": arm,
                }
            )
        )
    data = pd.concat(frames, ignore_index=True)
    color = alt.Color(
        "arm:N",
        scale=alt.Scale(domain=list(ARM_COLORS), range=list(ARM_COLORS.values())),
        title="arm",
    )
    base = alt.Chart(data).encode(x=alt.X("day:Q", title="days since entry"))
    band = base.mark_area(opacity=0.18, interpolate="step-after").encode(
        y=alt.Y("low:Q", title="reached the goal", axis=alt.Axis(format="%")),
        y2="high:Q",
        color=color,
    )
    line = base.mark_line(interpolate="step-after", strokeWidth=2).encode(
        y="completed:Q", color=color
    )
    chart: alt.LayerChart = (band + line).properties(
        width=560, height=300, title="Time to goal (Kaplan–Meier)"
    )
    return chart


def lift_chart(rows: Sequence[Mapping[str, object]]) -> alt.LayerChart:
    """Per-segment lift in percentage points with its 95% CI; optional true effect as a tick."""
    data = pd.DataFrame(list(rows))
    y = alt.Y("segment:N", title=None, sort=None)
    rule = (
        alt.Chart(data)
        .mark_rule(strokeWidth=2, color="#2563eb")
        .encode(y=y, x=alt.X("low:Q", title="lift in completion (percentage points)"), x2="high:Q")
    )
    point = (
        alt.Chart(data)
        .mark_point(filled=True, size=80, color="#2563eb")
        .encode(y=y, x="estimate:Q", tooltip=["segment", "estimate", "low", "high"])
    )
    zero = (
        alt.Chart(pd.DataFrame({"x": [0]}))
        .mark_rule(color="#6b7280", strokeDash=[4, 4])
        .encode(x="x:Q")
    )
    layers: list[alt.Chart] = [zero, rule, point]
    if "truth" in data.columns:
        layers.append(
            alt.Chart(data)
            .mark_tick(color="#dc2626", thickness=3, size=18)
            .encode(y=y, x="truth:Q")
        )
    chart = cast(alt.LayerChart, alt.layer(*layers))
    return chart.properties(width=560, height=40 * max(len(data), 1) + 40, title="Lift by segment")
