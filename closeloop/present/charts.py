"""Charts as Vega-Lite (Altair) from the result models, rendered to SVG offline with vl-convert.

The SVG goes inline into the HTML reports: no scripts, no CDN.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import cast

import altair as alt
import pandas as pd
import vl_convert as vlc

from closeloop.present.format import ARM_PALETTE
from closeloop.schemas.measurement import SurvivalCurve


def to_svg(chart: alt.TopLevelMixin) -> str:
    """The chart as a standalone SVG element."""
    return str(vlc.vegalite_to_svg(chart.to_dict()))


def _arm_colour(names: Sequence[str]) -> alt.Color:
    """One colour per arm in the order given (the control first: grey, then blue, green …)."""
    return alt.Color(
        "arm:N",
        scale=alt.Scale(
            domain=list(names),
            range=[ARM_PALETTE[index % len(ARM_PALETTE)] for index in range(len(names))],
        ),
        title="arm",
    )


def completion_curves(curves: Mapping[str, SurvivalCurve]) -> alt.LayerChart:
    """Share of each arm that has reached the goal by day t (1 − Kaplan–Meier), with its bands."""
    frames = [
        pd.DataFrame(
            {
                "day": [0.0, *curve.days],
                "completed": [0.0, *curve.completed],
                "low": [0.0, *curve.completed_low],
                "high": [0.0, *curve.completed_high],
                "arm": arm,
            }
        )
        for arm, curve in curves.items()
    ]
    data = pd.concat(frames, ignore_index=True)
    color = _arm_colour(list(curves))
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


def completion_chart(curves: Mapping[str, SurvivalCurve], horizon_days: float) -> alt.Chart:
    """Share of each arm that reached the goal by day t (1 − Kaplan–Meier), up to the horizon."""
    frames = []
    for arm, curve in curves.items():
        shares = [0.0, *curve.completed]
        frames.append(
            pd.DataFrame(
                {
                    "day": [0.0, *curve.days, horizon_days],
                    "completed": [*shares, shares[-1]],
                    "arm": arm,
                }
            )
        )
    data = pd.concat(frames, ignore_index=True)
    chart: alt.Chart = (
        alt.Chart(data)
        .mark_line(interpolate="step-after", strokeWidth=2)
        .encode(
            x=alt.X("day:Q", title="days since entry"),
            y=alt.Y("completed:Q", title="reached the goal", axis=alt.Axis(format="%")),
            color=_arm_colour(list(curves)),
        )
        .properties(width=560, height=300, title="Time to goal (1 − Kaplan–Meier)")
    )
    return chart


def lift_chart(rows: Sequence[Mapping[str, object]]) -> alt.LayerChart:
    """Per-segment lift in percentage points with its interval; the true effect as a tick."""
    data = pd.DataFrame(list(rows))
    y = alt.Y("segment:N", title=None, sort=None)
    rule = (
        alt.Chart(data)
        .mark_rule(strokeWidth=2, color=ARM_PALETTE[1])
        .encode(y=y, x=alt.X("low:Q", title="lift in completion (percentage points)"), x2="high:Q")
    )
    point = (
        alt.Chart(data)
        .mark_point(filled=True, size=80, color=ARM_PALETTE[1])
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
            .mark_tick(color=ARM_PALETTE[3], thickness=3, size=18)
            .encode(y=y, x="truth:Q")
        )
    chart = cast(alt.LayerChart, alt.layer(*layers))
    return chart.properties(width=560, height=40 * max(len(data), 1) + 40, title="Lift by segment")
