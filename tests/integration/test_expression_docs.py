"""Every example in docs/expressions.md, on the documented dataset, on every backend."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from closeloop.data.compiler import account_attributes, matching_accounts
from closeloop.data.warehouse import Warehouse
from closeloop.definitions.expressions import check_expression, parse_expression
from support import EXAMPLE_AS_OF, Backends, load_example_dataset

DOC = Path(__file__).parents[2] / "docs" / "expressions.md"
EXAMPLE = re.compile(r"```expression\n(?P<text>.*?)```\n<!-- matches: (?P<ids>[^>]*) -->", re.S)
EXAMPLES = [
    (match["text"].strip(), sorted(i.strip() for i in match["ids"].split(",") if i.strip()))
    for match in EXAMPLE.finditer(DOC.read_text())
]


def test_the_page_has_examples() -> None:
    assert len(EXAMPLES) >= 20


@pytest.mark.parametrize(("text", "expected"), EXAMPLES, ids=[text for text, _ in EXAMPLES])
def test_example(text: str, expected: list[str], backends: Backends) -> None:
    expression = parse_expression(text)
    check_expression(expression, account_attributes(), text=text)
    with Warehouse.connect(backends.warehouse_url) as warehouse:
        load_example_dataset(warehouse)
        result = matching_accounts(expression, warehouse, EXAMPLE_AS_OF).to_pyarrow()
    assert sorted(result.column("account_id").to_pylist()) == expected
