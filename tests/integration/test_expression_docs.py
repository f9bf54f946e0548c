"""Every example in docs/expressions.md, on the documented dataset and project, on every backend."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from closeloop.data.compiler import account_attributes, matching_units, person_attributes
from closeloop.data.warehouse import Warehouse
from closeloop.definitions.expressions import Entity, check_expression, parse_expression
from closeloop.definitions.project import Project, load_project
from support import EXAMPLE_AS_OF, Backends, load_example_dataset

DOC = Path(__file__).parents[2] / "docs" / "expressions.md"
TEXT = DOC.read_text()
EXAMPLE = re.compile(
    r"```expression\n(?P<text>.*?)```\n<!-- (?P<who>matches|people match): (?P<ids>[^>]*) -->",
    re.S,
)
EXAMPLES = [
    (
        match["text"].strip(),
        Entity.ACCOUNT if match["who"] == "matches" else Entity.PERSON,
        sorted(i.strip() for i in match["ids"].split(",") if i.strip()),
    )
    for match in EXAMPLE.finditer(TEXT)
]
PROJECT_YAML = TEXT.split("### The example project", 1)[1].split("```yaml\n", 1)[1].split("```")[0]


def example_project(folder: Path) -> Project:
    """The page's example project, written as a project folder (one file per kind) and loaded."""
    definitions = yaml.safe_load(PROJECT_YAML)
    (folder / "closeloop.yaml").write_text("name: docs\n")
    for kind, items in definitions.items():
        (folder / f"{kind}.yaml").write_text(yaml.safe_dump({kind: items}, sort_keys=False))
    return load_project(folder, account_attributes(), person_attributes())


def test_the_page_has_examples_of_every_construct() -> None:
    assert len(EXAMPLES) >= 50
    texts = " ".join(text for text, _, _ in EXAMPLES)
    for construct in (
        "within next",
        "more than",
        "first(",
        "last(",
        " where ",
        "any person",
        "all people",
        "count(people",
        "person.",
        "account.",
        "in cohort",
        "in stage",
        "completed stage",
        "entered stage",
        "exited stage",
        "in job",
        "entered job",
        "completed job",
        "exited job",
        "%",
        "contains",
        "has no value",
        "has any value",
        " in (",
        "not in (",
    ):
        assert construct in texts, f"no example uses {construct!r}"


def test_the_example_project_loads_cleanly(tmp_path: Path) -> None:
    project = example_project(tmp_path)
    assert {name for _, name in project.attributes} >= {"logins_7d", "logins_per_person"}
    assert set(project.stages) == {"Onboarding", "Adoption"}


@pytest.mark.parametrize(
    ("text", "target", "expected"), EXAMPLES, ids=[text for text, _, _ in EXAMPLES]
)
def test_example(
    text: str, target: Entity, expected: list[str], backends: Backends, tmp_path: Path
) -> None:
    project = example_project(tmp_path)
    expression = parse_expression(text)
    check_expression(expression, project.catalog.vocabulary, text=text, scope=target)
    key = "account_id" if target == Entity.ACCOUNT else "person_id"
    with Warehouse.connect(backends.warehouse_url) as warehouse:
        load_example_dataset(warehouse)
        result = matching_units(
            expression, warehouse, EXAMPLE_AS_OF, project.catalog, target
        ).to_pyarrow()
    assert sorted(result.column(key).to_pylist()) == expected
