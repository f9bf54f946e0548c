"""Loading project folders: every kind of definition, cross-references, located problems."""

from __future__ import annotations

from pathlib import Path

import pytest

from closeloop.data.compiler import account_attributes, person_attributes
from closeloop.definitions.expressions import Entity
from closeloop.definitions.project import Project, load_project
from closeloop.errors import DefinitionErrors


def _project(folder: Path, **files: str) -> Project:
    (folder / "closeloop.yaml").write_text(files.pop("config", "name: t\n"))
    for name, text in files.items():
        (folder / f"{name}.yaml").write_text(text)
    return load_project(folder, account_attributes(), person_attributes())


def _problems(folder: Path, **files: str) -> list[str]:
    with pytest.raises(DefinitionErrors) as raised:
        _project(folder, **files)
    return [
        f"{Path(e.location.file or '').name}:{e.location.line}:{e.location.column} {e.message}"
        if e.location
        else e.message
        for e in raised.value.errors
        if e.severity == "error"
    ]


JOBS = """jobs:
  - name: Nudge
    audience: plan = "pro"
    goal: count(event "x") >= 1
    duration_days: 7
    hypothesis: {expected_effect: more x}
"""


def test_every_kind_loads_and_default_files_are_optional(tmp_path: Path) -> None:
    project = _project(tmp_path, jobs=JOBS)
    assert set(project.jobs) == {"Nudge"}
    assert not project.cohorts and not project.stages and not project.attributes
    kinds = {kind for kind, *_ in project.definitions()}
    assert kinds == {"job"}


def test_cohort_cycles_are_refused(tmp_path: Path) -> None:
    problems = _problems(
        tmp_path,
        jobs=JOBS,
        cohorts="""cohorts:
  - name: A
    criteria: in cohort "B"
  - name: B
    criteria: in cohort "A" or plan = "x"
""",
    )
    assert any("in a circle: cohort 'A' -> cohort 'B' -> cohort 'A'" in p for p in problems)


def test_computed_attribute_problems_are_located(tmp_path: Path) -> None:
    problems = _problems(
        tmp_path,
        jobs=JOBS,
        attributes="""attributes:
  - name: seats
    rollup: sum
    of: logins
  - name: plan
    event: x
    function: count
  - name: ratio_a
    ratio: {numerator: ratio_b, denominator: arr}
  - name: ratio_b
    ratio: {numerator: ratio_a, denominator: arr}
  - name: since
    days_since: plan
""",
    )
    text = "\n".join(problems)
    assert "attributes.yaml:4:9 of: unknown person attribute 'logins'" in text
    assert "attributes.yaml:5:11 'plan' is already a stored account attribute" in text
    assert "cycle of attributes" in text
    assert "'plan' is a string, expected timestamp or date" in text


def test_stage_without_a_datable_entry_warns(tmp_path: Path) -> None:
    project = _project(
        tmp_path,
        jobs=JOBS,
        stages="""stages:
  - name: Renewal
    entry: renewal_date within next 90 days
    exit: {after_days: 90}
""",
    )
    warnings = [w for w in project.warnings if w.severity == "warning"]
    assert any("cannot be told from its entry criteria" in w.message for w in warnings)
    assert project.stage("Renewal").definition.exit.after_days == 90


def test_person_jobs_check_expressions_about_people(tmp_path: Path) -> None:
    project = _project(
        tmp_path,
        jobs="""jobs:
  - name: Admins
    target: person
    audience: role = "admin" and account.plan = "pro"
    goal: count(event "login") >= 3
    duration_days: 7
    hypothesis: {expected_effect: more logins}
""",
    )
    assert project.catalog.vocabulary.jobs == {"Admins": Entity.PERSON}
    problems = _problems(
        tmp_path,
        jobs="""jobs:
  - name: Admins
    audience: role = "admin"
    goal: count(event "login") >= 3
    duration_days: 7
""",
    )
    assert problems == ["jobs.yaml:3:15 unknown attribute 'role'"]


def test_goal_implied_by_the_audience_is_an_error_at_the_goal(tmp_path: Path) -> None:
    problems = _problems(
        tmp_path,
        jobs="""jobs:
  - name: Done already
    audience: count(event "x") >= 2
    goal: count(event "x") >= 1
    duration_days: 7
""",
    )
    assert len(problems) == 1
    assert problems[0].startswith("jobs.yaml:4:11 the goal is already true")


def test_an_invalid_definition_still_has_its_expressions_checked_and_no_cascade(
    tmp_path: Path,
) -> None:
    problems = _problems(
        tmp_path,
        jobs="""jobs:
  - name: Nudge
    audience: in cohort "Big" and not in stage "Setup"
    goal: count(event "x") >= 1
    duration_days: 7
""",
        cohorts="""cohorts:
  - name: Big
    criteria: employes > 100
    colour: blue
""",
        stages="""stages:
  - name: Setup
    entry: plan = "pro"
    exit: {}
    objectives:
      - name: Integrated
        completion: count(event "x") >= "one"
""",
    )
    text = "\n".join(problems)
    # Each invalid definition reports its own field problem and its expression problems ...
    assert "cohorts.yaml:4:5 cohorts.0.colour: unknown field 'colour'" in text
    assert "cohorts.yaml:3:15 unknown attribute 'employes'" in text
    assert "stages.yaml:7:41 cannot compare" in text
    # ... and the job that refers to them is not blamed for it.
    assert "unknown cohort" not in text and "unknown stage" not in text


def test_the_full_job_example_of_docs_jobs_md_is_valid(tmp_path: Path) -> None:
    text = (Path(__file__).parents[2] / "docs" / "jobs.md").read_text()
    blocks = text.split("```yaml\n")
    jobs_yaml, config_yaml = blocks[1].split("```")[0], blocks[2].split("```")[0]
    (tmp_path / "templates").mkdir()
    for name in ("integration_nudge", "integration_reminder", "integration_thanks"):
        (tmp_path / "templates" / f"{name}.txt.j2").write_text("Hello {{ account.name }}")
    cohorts = 'cohorts:\n  - name: Unused\n    criteria: plan = "pro"\n'
    jobs_yaml += """
  - name: Admin onboarding
    target: person
    audience: role = "admin"
    goal: count(event "login") >= 3
    duration_days: 14
    hypothesis: {expected_effect: admins log in}
"""
    project = _project(
        tmp_path, config="name: docs\n" + config_yaml, jobs=jobs_yaml, cohorts=cohorts
    )
    job = project.job("Integration nudge").definition
    assert job.arms == ("one_email", "with_reminder")
    assert project.config.contact_policy is not None
    assert project.config.contact_policy.max_jobs == 2
    assert not [w for w in project.warnings if w.severity == "error"]


def test_the_examples_of_docs_definitions_md_load_together(tmp_path: Path) -> None:
    text = (Path(__file__).parents[2] / "docs" / "definitions.md").read_text()
    blocks = [block.split("```")[0] for block in text.split("```yaml\n")[1:]]
    files = {"config": blocks[0], "jobs": JOBS}
    for block in blocks[1:]:
        kind = next(line for line in block.splitlines() if not line.startswith("#")).rstrip(":")
        if kind in ("attributes", "cohorts", "stages"):
            files[kind] = block
    assert set(files) == {"config", "jobs", "attributes", "cohorts", "stages"}
    project = _project(tmp_path, **files)
    assert project.attributes and project.cohorts and project.stages
