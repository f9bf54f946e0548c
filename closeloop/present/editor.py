"""View rows of the job editor: a draft's power plan and dry run, formatted for reading."""

from __future__ import annotations

import json

from closeloop.present.format import count, num, pct, pp
from closeloop.schemas.jobs import DryRun, LaunchResult
from closeloop.schemas.planning import PowerPlan

Rows = list[list[str]]

POWER_COLUMNS = ["weeks enrolling", "units", "holdout", "treated", "detectable lift", "result in"]
MESSAGE_COLUMNS = ["account", "step", "channel", "status", "message"]
SAMPLE_CAP = 200  # rendered messages listed (a dry run may plan thousands)


def _in_days(value: float | None) -> str:
    return f"{num(value, 0)} days" if value is not None else "never"


def _units(value: float | None) -> str:
    return count(round(value)) if value is not None else "—"


def power_rows(plan: PowerPlan) -> Rows:
    """One row per enrollment duration: units per arm, the detectable lift, when the result is."""
    return [
        [
            num(row.weeks, 0),
            _units(row.units),
            _units(row.n_holdout),
            _units(row.n_treated),
            pp(row.mde_absolute),
            _in_days(row.days_until_result),
        ]
        for row in plan.plans
    ]


def power_summary(plan: PowerPlan) -> list[str]:
    """Plain sentences: what the planned duration detects, and how long the target takes."""
    lines = []
    if plan.job is not None:
        job = plan.job
        lines.append(
            f"About {num(job.weekly_volume.value, 0)} accounts enter a week "
            f"({job.weekly_volume.detail}); baseline {pct(job.baseline_rate.value)} "
            f"({job.baseline_rate.detail})."
        )
    planned = plan.planned
    if planned is not None and planned.mde_absolute is not None:
        lines.append(
            f"At its planned {num(planned.weeks, 3 if planned.weeks and planned.weeks % 1 else 0)}"
            f" weeks: {_units(planned.n_treated)} treated and {_units(planned.n_holdout)} held "
            f"out, detecting a lift of {pp(planned.mde_absolute)} (result in "
            f"{_in_days(planned.days_until_result)})."
        )
    duration = plan.duration
    if duration is not None and duration.effect is not None:
        if duration.weeks is not None:
            lines.append(
                f"To detect {pp(duration.effect)}: {num(duration.weeks, 1)} weeks of enrollment "
                f"({count(duration.units)} units), result in "
                f"{_in_days(duration.days_until_result)}."
            )
        else:
            lines.append(f"A lift of {pp(duration.effect)} cannot be detected at this volume.")
    return lines


def message_rows(dry_run: DryRun) -> Rows:
    """The messages a dry run rendered: who, which step, and the content (subject or text)."""
    rows = []
    for message in dry_run.messages[:SAMPLE_CAP]:
        payload = message.payload
        if payload.get("ghost"):
            content = "(holdout: recorded, not sent)"
        else:
            content = str(
                payload.get("subject") or payload.get("text") or json.dumps(payload)[:200]
            )
        if message.problem:
            content = f"problem: {message.problem}"
        rows.append(
            [message.account_id, str(message.step), message.channel, message.status, content]
        )
    return rows


def launch_lines(result: LaunchResult) -> list[str]:
    """What a launch did, in words."""
    if not result.launched:
        return [f"{result.job} was already launched; nothing changed."]
    lines = [f"{result.job} is live."]
    if result.tick is not None:
        tick = result.tick
        lines.append(
            f"First tick at {tick.at:%Y-%m-%d %H:%M} UTC: {count(tick.entered)} entered, "
            f"version {tick.version}."
        )
        lines += [f"Problem: {problem}" for problem in tick.problems]
    return lines + result.checks
