"""Definition versions on real state stores: one row per change, diffs, jobs share the mechanism."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import sqlalchemy as sa

from closeloop.engine import schema
from closeloop.engine.versions import history, latest_versions, record_definitions
from closeloop.services import engine_runs
from closeloop.services.project import init_project, open_workspace
from support import Backends, run_tick

COHORTS = """\
cohorts:
  - name: Big accounts
    criteria: |
      arr >= 10000
        and segment = "enterprise"
"""


def _project(folder: Path) -> Path:
    init_project(folder, "versions")
    for example in ("attributes.yaml", "stages.yaml"):  # only the job and the cohort below
        (folder / example).unlink()
    config = folder / "closeloop.yaml"
    config.write_text(config.read_text() + "cohorts:\n  - cohorts.yaml\n")
    (folder / "cohorts.yaml").write_text(COHORTS)
    return folder


def _environ(backends: Backends, author: str) -> dict[str, str]:
    return {**backends.environ(), "CLOSELOOP_AUTHOR": author}


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new))


def test_versions_record_changes_only_with_author_and_diff(
    backends: Backends, tmp_path: Path
) -> None:
    folder = _project(tmp_path / "project")
    with open_workspace(folder, environ=_environ(backends, "ada")) as workspace:
        latest = latest_versions(workspace.store)
        # Opening again without edits records nothing.
        again = record_definitions(workspace.store, workspace.project, "ada", datetime(2024, 1, 1))
    assert again == []
    assert {key: entry.version for key, entry in latest.items()} == {
        ("cohort", "Big accounts"): 1,
        ("job", "Integration nudge"): 1,
    }
    assert latest["cohort", "Big accounts"].author == "ada"

    _edit(folder / "cohorts.yaml", "arr >= 10000", "arr >= 20000")
    with open_workspace(folder, environ=_environ(backends, "grace")) as workspace:
        versions = history(workspace.store, "Big accounts")
    assert [(v.version, v.author) for v in versions] == [(1, "ada"), (2, "grace")]
    assert versions[0].content_hash != versions[1].content_hash
    assert "-  arr >= 10000\n" in versions[1].diff
    assert "+  arr >= 20000\n" in versions[1].diff
    assert "criteria: |" in versions[1].definition  # block scalars stay readable


def test_job_versions_come_from_definition_versions_and_goal_changes_are_audited(
    backends: Backends, tmp_path: Path
) -> None:
    folder = _project(tmp_path / "project")
    with open_workspace(folder, environ=_environ(backends, "ada")) as workspace:
        job = workspace.project.job("Integration nudge")
        record = run_tick(
            workspace.project, job, workspace.warehouse, workspace.store, datetime(2024, 5, 1),
            "ada",
        )  # fmt: skip
    assert record.version == 1

    _edit(folder / "jobs.yaml", '"integration_connected") >= 1', '"integration_connected") >= 2')
    _edit(folder / "jobs.yaml", "connect an integration sooner", "connect integrations sooner")
    with open_workspace(folder, environ=_environ(backends, "grace")) as workspace:
        job = workspace.project.job("Integration nudge")
        record = run_tick(
            workspace.project, job, workspace.warehouse, workspace.store, datetime(2024, 5, 2),
            "grace",
        )  # fmt: skip
        # A second tick of the same definition is not a second change.
        run_tick(
            workspace.project, job, workspace.warehouse, workspace.store, datetime(2024, 5, 3),
            "grace",
        )  # fmt: skip
        stored = workspace.store.job_record("Integration nudge")
        with workspace.store.engine.connect() as connection:
            rows = connection.execute(
                sa.select(schema.definition_versions.c.version).where(
                    schema.definition_versions.c.kind == "job"
                )
            ).all()
            audit = connection.execute(
                sa.select(schema.audit_log.c.action, schema.audit_log.c.detail).order_by(
                    schema.audit_log.c.id
                )
            ).all()
    assert sorted(row.version for row in rows) == [1, 2]
    assert record.version == stored.version == 2
    assert [row.action for row in audit] == [
        "job.launched",
        "job.changed",
        "job.goal_changed",
        "job.hypothesis_changed",
    ]
    goal = json.loads(audit[2].detail)
    assert goal["from"] == 'count(event "integration_connected") >= 1'
    assert goal["to"] == 'count(event "integration_connected") >= 2'


def test_attribute_history_by_bare_name(backends: Backends, tmp_path: Path) -> None:
    folder = _project(tmp_path / "project")
    config = folder / "closeloop.yaml"
    config.write_text(config.read_text() + "attributes:\n  - attributes.yaml\n")
    (folder / "attributes.yaml").write_text(
        "attributes:\n  - name: logins_30d\n    event: login\n    function: count\n"
        "    window_days: 30\n"
    )
    with open_workspace(folder, environ=_environ(backends, "ada")) as workspace:
        versions = history(workspace.store, "logins_30d", kind="attribute")
    assert [(v.kind, v.name, v.version) for v in versions] == [
        ("attribute", "account.logins_30d", 1)
    ]
    assert versions[0].diff.startswith("--- /dev/null")


def test_a_tick_launches_jobs_in_the_name_of_the_workspace_author(
    backends: Backends, tmp_path: Path
) -> None:
    folder = _project(tmp_path / "project")
    with open_workspace(folder, environ=_environ(backends, "ada")) as workspace:
        engine_runs.tick(workspace, datetime(2024, 5, 1), launch=True)
        with workspace.store.engine.connect() as connection:
            actors = connection.execute(
                sa.select(schema.audit_log.c.actor).where(
                    schema.audit_log.c.action == "job.launched"
                )
            ).scalars()
            assert list(actors) == ["ada"]
