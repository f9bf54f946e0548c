"""The intervention library as view rows for the dashboard: one row per job, its lift (or its
lift in the chosen segment, with the adjusted interval) and the gist of what it sent when."""

from __future__ import annotations

from dataclasses import dataclass

from closeloop.present.format import pp, pp_ci, status_text
from closeloop.schemas.library import Library, LibraryEntry

LIBRARY_COLUMNS = (
    "job",
    "status",
    "lift",
    "goal",
    "sends",
    "segment lift (adjusted)",
    "enrolled",
    "launched",
)


@dataclass(frozen=True)
class LibraryRow:
    name: str
    status: str
    status_text: str
    lift: str
    goal: str
    sends: str
    segment: str
    enrolled: int
    launched: str


def sends_text(entry: LibraryEntry) -> str:
    """Each variant's sends as "day 0: subject"; variants apart with " | "."""
    parts = []
    for variant in entry.variants:
        sends = "; ".join(
            f"day {send.day:g}: {send.subject or send.template or send.channel}"
            for send in variant.sends
        )
        label = f"{variant.name}: " if len(entry.variants) > 1 else ""
        parts.append(label + (sends or "no sends"))
    return " | ".join(parts)


def _segment_text(entry: LibraryEntry, segment: str | None) -> str:
    if segment is None:
        return ""
    row = entry.segment_effect(segment)
    if row is None:
        return ""
    return (
        f"{pp(row.estimate)} {pp_ci((row.lower, row.upper))}; adjusted "
        f"{pp_ci((row.adjusted_lower, row.adjusted_upper))}" + (" (small)" if row.small else "")
    )


def library_rows(library: Library, segment: str | None = None) -> list[LibraryRow]:
    rows = []
    for entry in library.jobs:
        effect = entry.effect
        status = entry.headline_status(segment)
        rows.append(
            LibraryRow(
                name=entry.name,
                status=status,
                status_text=status_text(status),
                lift=(
                    f"{pp(effect.estimate)} {pp_ci((effect.lower, effect.upper))}"
                    if effect is not None
                    else "—"
                ),
                goal=entry.goal,
                sends=sends_text(entry),
                segment=_segment_text(entry, segment),
                enrolled=entry.enrolled,
                launched=f"{entry.launched_at:%Y-%m-%d}",
            )
        )
    return rows
