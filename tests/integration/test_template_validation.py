"""Loading a project renders every action's templates for a sample account: problems at file:line.

The YAML and templates are written by the test, so each problem's line and column are known; the
project loads the way ``closeloop validate`` loads it.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from closeloop.data.compiler import account_attributes, person_attributes
from closeloop.definitions.project import Project, load_project
from closeloop.errors import DefinitionError, DefinitionErrors
from closeloop.services.project import init_project

# Line numbers in the assertions are 1-based lines of this text.
JOBS = """\
jobs:
  - name: Nudge
    audience: plan = "pro"
    goal: count(event "x") >= 1
    duration_days: 7
    hypothesis: {expected_effect: more x}
    steps:
      - send: email
        subject: "{{ account.name }}: {% if %}"
        template: welcome
      - wait_days: 2
      - send: email
        subject: Reminder
        template: typo
      - wait_days: 2
      - send: email
        subject: Last call
        template: no_such_template
    on_exit:
      - send: set_attribute
        attribute: nudge_outcome
        value: "{{ job.nme }}"
  - name: Split
    audience: plan = "pro"
    goal: count(event "x") >= 1
    duration_days: 7
    hypothesis: {expected_effect: more x}
    variants:
      - name: plain
        steps:
          - send: email
            subject: Hi {{ contact.name }}
            template: welcome
      - name: escape
        steps:
          - send: email
            subject: Hi
            template: escape
"""

TEMPLATES = {
    "welcome.txt.j2": "Hi {{ contact.name or 'there' }},\n\nwelcome to {{ account.name }}.\n",
    "typo.txt.j2": "Hi {{ contact.name }},\n\n{{ account.plna }} is\nready.\n",
    "escape.txt.j2": "Hi\n\n\n{{ cycler.__init__.__globals__.os.getpid() }}\n",
    "escape.html.j2": "<p>fine</p>",
}


def _load(folder: Path, jobs: str = JOBS, templates: dict[str, str] = TEMPLATES) -> Project:
    (folder / "closeloop.yaml").write_text("name: t\n")
    (folder / "jobs.yaml").write_text(jobs)
    (folder / "templates").mkdir(exist_ok=True)
    for name, text in templates.items():
        (folder / "templates" / name).write_text(text)
    return load_project(folder, account_attributes(), person_attributes())


def _errors(
    folder: Path, jobs: str = JOBS, templates: dict[str, str] = TEMPLATES
) -> list[DefinitionError]:
    with pytest.raises(DefinitionErrors) as raised:
        _load(folder, jobs, templates)
    return [error for error in raised.value.errors if error.severity == "error"]


def _at(error: DefinitionError) -> str:
    assert error.location is not None
    return f"{Path(error.location.file or '').name}:{error.location.line}:{error.location.column}"


def test_every_template_problem_is_reported_at_its_step(tmp_path: Path) -> None:
    errors = _errors(tmp_path)
    found = [f"{_at(error)} {error.message}" for error in errors]
    missing = tmp_path / "templates" / "no_such_template.txt.j2"
    assert found == [
        # A syntax error in the subject: at the subject.
        "jobs.yaml:9:18 job 'Nudge' step 0, account 'sample-account' subject:1: "
        "template syntax error: Expected an expression, got 'end of statement block'",
        # An undefined variable in a template file: at the template, naming file and line.
        "jobs.yaml:14:19 job 'Nudge' step 2, account 'sample-account': typo.txt.j2:3: "
        "undefined variable: 'dict object' has no attribute 'plna'",
        f"jobs.yaml:18:19 email template 'no_such_template' not found (looked for {missing})",
        # Actions that are not emails are checked too, on_exit included.
        "jobs.yaml:22:16 job 'Nudge' step 0, account 'sample-account' value:1: "
        "undefined variable: 'dict object' has no attribute 'nme'",
        # Each variant's steps, with the sandbox refusing what a template must not do.
        "jobs.yaml:38:23 job 'Split' step 0, account 'sample-account': escape.txt.j2:4: "
        "refused by the template sandbox: access to attribute '__init__' of 'type' object is "
        "unsafe.",
    ]
    assert all("validation renders them for a sample account" in error.hint for error in errors)
    assert "hint: templates live in templates/" in errors[0].render()


def test_the_sample_has_every_stored_attribute_and_a_contact(tmp_path: Path) -> None:
    uses_everything = (
        "{{ account.account_id }} {{ account.name }} {{ account.segment }} {{ account.plan }} "
        "{{ account.owner }} {{ account.arr * 2 }} {{ account.domain }} {{ account.region }} "
        "{{ account.industry }} {{ account.employees + 1 }} {{ account.renewal_date.year }} "
        "{{ account.created_at.isoformat() }} {{ contact.email }} {{ contact.name.upper() }} "
        "{{ contact.role }} {{ contacts[0].person_id }} {{ job.name }} {{ job.arm }} "
        "{{ unsubscribe_url }}"
    )
    jobs = JOBS.split("    on_exit:")[0].replace("{% if %}", "hi")
    templates = {"welcome.txt.j2": uses_everything, "typo.txt.j2": uses_everything}
    templates["no_such_template.txt.j2"] = "{{ contacts | length }} {{ account.nme }}"
    [error] = _errors(tmp_path, jobs, templates)
    assert _at(error) == "jobs.yaml:18:19"
    assert "no_such_template.txt.j2:1: undefined variable" in error.message


def test_a_valid_project_loads(tmp_path: Path) -> None:
    jobs = JOBS.split("      - wait_days: 2")[0].replace("{% if %}", "welcome")
    project = _load(tmp_path, jobs=jobs)
    assert set(project.jobs) == {"Nudge"}
    assert not [warning for warning in project.warnings if "template" in warning.message]


def test_the_project_closeloop_init_writes_validates(tmp_path: Path) -> None:
    init_project(tmp_path / "starter")
    project = load_project(tmp_path / "starter", account_attributes(), person_attributes())
    assert project.jobs
