"""Cross-definition rules: goals implied by audiences, cycles, dependency order."""

from __future__ import annotations

import pytest

from closeloop.definitions.expressions import parse_expression
from closeloop.definitions.rules import find_cycle, implies, topological


@pytest.mark.parametrize(
    ("audience", "goal", "expected"),
    [
        ('count(event "x") >= 1', 'count(event "x") >= 1', True),
        ('plan = "pro" and count(event "x") >= 3', 'count(event "x") >= 2', True),
        ('count(event "x") > 2', 'count(event "x") >= 3', True),
        ('count(event "x") = 0', 'count(event "x") >= 1', False),
        ('count(event "x") >= 1', 'count(event "x") >= 2', False),
        ('count(event "x" in last 7 days) >= 1', 'count(event "x") >= 1', False),
        ('plan = "pro" and arr > 5', 'arr > 5 and plan = "pro"', True),
        ('plan = "pro"', 'plan = "pro" or arr > 5', False),  # not judged: conservative
    ],
)
def test_a_goal_the_audience_already_meets_is_caught(
    audience: str, goal: str, expected: bool
) -> None:
    assert implies(parse_expression(audience), parse_expression(goal)) is expected


def test_cycles_are_found_with_their_path() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"a"}}) == ["a", "a"]


def test_dependencies_come_first() -> None:
    order = list(topological({"ratio": {"seats", "logins"}, "seats": set(), "logins": set()}))
    assert order.index("ratio") > order.index("seats")
    assert order.index("ratio") > order.index("logins")
