"""The intervention library over two jobs run in lockstep with a simulated company.

The library's numbers are the job report's; what is checked here is that every job ever run is
listed (also one deleted from the project, from its recorded definition), with its timing, and
that the filters and sorts do what they say.
"""

from __future__ import annotations

import json
import math

import pytest
from two_jobs_support import Simulated, simulate_two_jobs

from closeloop.schemas.library import SortKey
from closeloop.services.library import library
from closeloop.services.project import open_workspace
from closeloop.services.reports import job_report
from support import VARIANT_JOB


@pytest.fixture(scope="module")
def simulated(tmp_path_factory: pytest.TempPathFactory) -> Simulated:
    folder = tmp_path_factory.mktemp("library")
    return simulate_two_jobs(folder, accounts=500, days=60, arrival_days=35, seed=4)


def test_every_job_is_listed_with_its_timing_counts_and_the_reports_effect(
    simulated: Simulated,
) -> None:
    with open_workspace(simulated.folder, environ=simulated.environ) as workspace:
        entries = library(workspace, sort=SortKey.NAME).jobs
        reports = {entry.name: job_report(workspace, entry.name) for entry in entries}
        stored = {
            name: workspace.store.enrollments_table(name).num_rows
            for name in ("Integration nudge", "Invite a teammate")
        }
    assert [entry.name for entry in entries] == ["Integration nudge", "Invite a teammate"]
    nudge, invite = entries
    assert nudge.definition_source == "project"
    assert nudge.horizon_days == 14
    assert invite.horizon_days == 10  # no hypothesis horizon: the duration
    assert [(v.name, [(s.day, s.subject) for s in v.sends]) for v in nudge.variants] == [
        ("plain", [(0.0, "Connect {{ account.name }}"), (4.0, "Still time")]),
        ("video", [(0.0, "Watch: connect in two minutes")]),
    ]
    assert [(v.name, [(s.day, s.subject) for s in v.sends]) for v in invite.variants] == [
        ("treatment", [(2.0, "Work together")])
    ]
    for entry in entries:
        report = reports[entry.name]
        assert entry.enrolled == stored[entry.name] > 100
        assert 0 < entry.matured <= entry.enrolled
        assert entry.status == report.status.value
        assert entry.effect is not None
        assert entry.effect.estimate == pytest.approx(report.lift.estimate)
        assert entry.effect.lower <= entry.effect.estimate <= entry.effect.upper
        assert {row.segment for row in entry.segments} >= {"self_serve", "mid_market"}
        assert len(entry.segments) == len(report.segments)
    assert [effect.arm for effect in nudge.variant_effects] == ["plain", "video"]
    assert invite.variant_effects == []
    # The JSON twin is strict JSON (no NaN) and keeps every field.
    payload = json.loads(json.dumps([e.model_dump(mode="json") for e in entries], allow_nan=False))
    assert payload[0]["variants"][0]["sends"][1] == {
        "day": 4.0,
        "subject": "Still time",
        "template": "integration_nudge",
        "channel": "email",
    }
    assert payload[0]["segments"][0].keys() >= {"adjusted_lower", "p_value_bh", "small"}


def test_filters_and_sorts(simulated: Simulated) -> None:
    with open_workspace(simulated.folder, environ=simulated.environ) as workspace:
        everything = library(workspace, sort=SortKey.NAME).jobs
        by_goal = library(workspace, goal="INTEGRATION").jobs
        self_serve = library(workspace, segment="self_serve", sort=SortKey.EFFECT).jobs
        by_n = library(workspace, sort=SortKey.N).jobs
        by_start = library(workspace, sort=SortKey.STARTED).jobs
        by_effect = library(workspace, sort=SortKey.EFFECT).jobs
        nowhere = library(workspace, segment="no_such_segment").jobs
        statuses = {
            entry.status: library(workspace, status=entry.status).jobs for entry in everything
        }
    assert [entry.name for entry in by_goal] == ["Integration nudge"]
    assert len(self_serve) == 2
    for entry in self_serve:
        assert {row.segment for row in entry.segments} == {"self_serve"}
    lifts = [entry.segment_effect("self_serve") for entry in self_serve]
    assert all(lift is not None for lift in lifts)
    estimates = [lift.estimate for lift in lifts if lift is not None]
    assert estimates == sorted(estimates, reverse=True)
    assert [e.enrolled for e in by_n] == sorted((e.enrolled for e in everything), reverse=True)
    launched = [e.launched_at for e in by_start]
    assert launched == sorted(launched, reverse=True)
    effects = [e.effect.estimate for e in by_effect if e.effect is not None]
    assert effects == sorted(effects, reverse=True) and not any(map(math.isnan, effects))
    assert nowhere == []
    for status, entries in statuses.items():
        assert entries and all(entry.status == status for entry in entries)


def test_a_job_removed_from_the_project_stays_in_the_library(simulated: Simulated) -> None:
    with open_workspace(simulated.folder, environ=simulated.environ) as workspace:
        (before,) = library(workspace, goal="teammate").jobs
    jobs_file = simulated.folder / "jobs.yaml"
    original = jobs_file.read_text(encoding="utf-8")
    try:
        # Delete the invite job and change the nudge's description: a second version.
        edited = VARIANT_JOB.replace(
            "    audience:", "    description: second try\n    audience:", 1
        )
        jobs_file.write_text("jobs:\n" + edited, encoding="utf-8")
        with open_workspace(simulated.folder, environ=simulated.environ) as workspace:
            entries = {entry.name: entry for entry in library(workspace).jobs}
    finally:
        jobs_file.write_text(original, encoding="utf-8")
    removed = entries["Invite a teammate"]
    assert removed.definition_source == "history"
    assert removed.goal == before.goal
    assert removed.variants == before.variants
    assert removed.effect == before.effect
    assert removed.segments == before.segments
    assert entries["Integration nudge"].versions == 2
