"""Vega-Lite specs (plain dicts) for the dashboard's journey, health, plans and outcomes pages.

The dashboard draws them client-side with the vendored vega-embed (web/_macros.html.j2's
``chart`` macro). Each spec carries its data inline, so a page's chart shows exactly the numbers
of its tables. Formatting only: the numbers come from the result models.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from closeloop.schemas.health import CalibrationRow
from closeloop.schemas.journey import StageView
from closeloop.schemas.overviews import HealthScoreOverview
from closeloop.schemas.plans import Objective

Spec = dict[str, Any]

SCHEMA = "https://vega.github.io/schema/vega-lite/v5.json"
# Class and band colours by meaning, readable on white (WCAG AA for the marks' size).
CLASS_COLOURS = {"ahead": "#1a7f37", "on_track": "#0969da", "behind": "#9a6700", "stuck": "#cf222e"}
BAND_COLOURS = {"healthy": "#1a7f37", "concerning": "#9a6700", "poor": "#cf222e"}


def _base(values: Sequence[Mapping[str, Any]], height: int = 220) -> Spec:
    return {
        "$schema": SCHEMA,
        "data": {"values": [dict(value) for value in values]},
        "width": "container",
        "height": height,
        "config": {"view": {"stroke": None}, "axis": {"labelLimit": 220}},
    }


def _domain_colours(colours: Mapping[str, str]) -> dict[str, Any]:
    return {"domain": list(colours), "range": list(colours.values())}


def class_counts(view: StageView) -> Spec:
    """Accounts in the stage per class (ahead, on track, behind, stuck)."""
    counts = dict.fromkeys(CLASS_COLOURS, 0)
    for account in view.accounts or []:
        counts[account.account_class.value] += 1
    spec = _base([{"class": name, "accounts": n} for name, n in counts.items()], height=160)
    spec.update(
        mark={"type": "bar", "tooltip": True},
        encoding={
            "y": {"field": "class", "type": "nominal", "sort": list(CLASS_COLOURS), "title": None},
            "x": {"field": "accounts", "type": "quantitative", "title": "accounts in the stage"},
            "color": {
                "field": "class",
                "type": "nominal",
                "scale": _domain_colours(CLASS_COLOURS),
                "legend": None,
            },
        },
    )
    return spec


def objective_rates(view: StageView) -> Spec:
    """Each objective's completion rate among the stage's entrants."""
    rows = [
        {"objective": objective.name, "rate": objective.completion_rate}
        for objective in view.objectives
        if objective.completion_rate is not None
    ]
    spec = _base(rows, height=max(60, 40 * len(rows)))
    spec.update(
        mark={"type": "bar", "tooltip": True, "color": "#0969da"},
        encoding={
            "y": {"field": "objective", "type": "nominal", "sort": None, "title": None},
            "x": {
                "field": "rate",
                "type": "quantitative",
                "title": "completed in the stage",
                "axis": {"format": "%"},
                "scale": {"domain": [0, 1]},
            },
        },
    )
    return spec


def band_distribution(overview: HealthScoreOverview) -> Spec:
    """Accounts per ten-point bin of the score, coloured by the band the bin falls in."""

    def band(low: float) -> str:
        if low < overview.poor_below:
            return "poor"
        return "concerning" if low < overview.concerning_below else "healthy"

    rows = [
        {"bin": f"{b.low:g}–{b.high:g}", "low": b.low, "accounts": b.accounts, "band": band(b.low)}
        for b in overview.distribution
    ]
    spec = _base(rows)
    spec.update(
        mark={"type": "bar", "tooltip": True},
        encoding={
            "x": {"field": "bin", "type": "ordinal", "sort": None, "title": "score"},
            "y": {"field": "accounts", "type": "quantitative", "title": "accounts"},
            "color": {
                "field": "band",
                "type": "nominal",
                "scale": _domain_colours(BAND_COLOURS),
                "title": "band",
            },
        },
    )
    return spec


def calibration(rows: Sequence[CalibrationRow], title: str) -> Spec:
    """Churn rate per score decile (or band) with its 95% interval: a useful score falls."""
    values = [
        {
            "group": row.group,
            "rate": row.churn.rate,
            "low": row.churn.low,
            "high": row.churn.high,
            "n": row.n,
        }
        for row in rows
        if row.churn.rate is not None
    ]
    spec = _base(values)
    x = {"field": "group", "type": "ordinal", "sort": None, "title": title}
    spec["layer"] = [
        {
            "mark": {"type": "rule", "color": "#57606a"},
            "encoding": {
                "x": x,
                "y": {"field": "low", "type": "quantitative"},
                "y2": {"field": "high"},
            },
        },
        {
            "mark": {"type": "point", "filled": True, "size": 70, "color": "#cf222e"},
            "encoding": {
                "x": x,
                "y": {
                    "field": "rate",
                    "type": "quantitative",
                    "title": "churned within the horizon",
                    "axis": {"format": "%"},
                },
                "tooltip": [
                    {"field": "group"},
                    {"field": "n"},
                    {"field": "rate", "format": ".1%"},
                    {"field": "low", "format": ".1%"},
                    {"field": "high", "format": ".1%"},
                ],
            },
        },
    ]
    return spec


def objective_progress(objectives: Sequence[Objective]) -> Spec:
    """Each objective's progress from baseline (0%) to target (100%), with the milestones."""
    rows = [
        {
            "objective": o.title,
            "progress": max(min(o.progress, 1.5), -0.5) if o.progress is not None else 0,
            "status": o.status,
        }
        for o in objectives
    ]
    spec = _base(rows, height=max(60, 40 * len(rows)))
    x = {
        "field": "progress",
        "type": "quantitative",
        "title": "progress from baseline to target",
        "axis": {"format": "%"},
        "scale": {"domain": [min([0.0, *[r["progress"] for r in rows]]), 1.2]},
    }
    spec["layer"] = [
        {
            "mark": {"type": "bar", "tooltip": True},
            "encoding": {
                "y": {"field": "objective", "type": "nominal", "sort": None, "title": None},
                "x": x,
                "color": {
                    "field": "status",
                    "type": "nominal",
                    "scale": _domain_colours(
                        {
                            "met": "#1a7f37",
                            "open": "#0969da",
                            "missed": "#cf222e",
                            "dropped": "#8c959f",
                        }
                    ),
                },
            },
        },
        {
            "data": {"values": [{"m": 0.5}, {"m": 0.8}, {"m": 1.0}]},
            "mark": {"type": "rule", "strokeDash": [4, 3], "color": "#57606a"},
            "encoding": {"x": {"field": "m", "type": "quantitative"}},
        },
    ]
    return spec


def bars(
    rows: Sequence[Mapping[str, Any]],
    *,
    category: str,
    value: str,
    value_title: str,
    percent: bool = False,
    colour: str = "#0969da",
) -> Spec:
    """A horizontal bar per row (e.g. a rate per CSM, a count per source)."""
    spec = _base(rows, height=max(60, 32 * len(rows)))
    axis: dict[str, Any] = {"format": "%"} if percent else {}
    spec.update(
        mark={"type": "bar", "tooltip": True, "color": colour},
        encoding={
            "y": {"field": category, "type": "nominal", "sort": None, "title": None},
            "x": {"field": value, "type": "quantitative", "title": value_title, "axis": axis},
        },
    )
    return spec


def trend(
    rows: Sequence[Mapping[str, Any]],
    *,
    x: str,
    y: str,
    y_title: str,
    series: str | None = None,
    percent: bool = False,
) -> Spec:
    """A line per series over periods (e.g. NRR per month)."""
    spec = _base(rows)
    axis: dict[str, Any] = {"format": "%"} if percent else {}
    encoding: dict[str, Any] = {
        "x": {"field": x, "type": "ordinal", "sort": None, "title": None},
        "y": {"field": y, "type": "quantitative", "title": y_title, "axis": axis},
    }
    if series is not None:
        encoding["color"] = {"field": series, "type": "nominal", "title": None}
    spec.update(mark={"type": "line", "point": True, "tooltip": True}, encoding=encoding)
    return spec
