"""Cross-definition rules: small named checks that run once every definition has loaded.

Each rule returns problems instead of raising, so ``closeloop validate`` reports them all.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping

from closeloop.definitions.expressions import (
    And,
    Comparator,
    Comparison,
    EventCount,
    Expression,
    Literal,
    LiteralKind,
)


def conjuncts(expression: Expression) -> list[Expression]:
    """The parts of a top-level ``and`` (the expression itself otherwise)."""
    if isinstance(expression, And):
        return [part for child in expression.parts for part in conjuncts(child)]
    return [expression]


def threshold(node: Expression) -> tuple[EventCount, float] | None:
    """``count(event …) >= k`` / ``> k`` as (count, smallest count that satisfies it)."""
    if not isinstance(node, Comparison) or not isinstance(node.left, EventCount):
        return None
    right = node.right
    if not (isinstance(right, Literal) and right.kind == LiteralKind.NUMBER):
        return None
    assert isinstance(right.value, float)
    if node.op == Comparator.GE:
        return node.left, math.ceil(right.value)
    if node.op == Comparator.GT:
        return node.left, math.floor(right.value) + 1
    return None


def implies(audience: Expression, goal: Expression) -> bool:
    """Whether every account in ``audience`` already satisfies ``goal`` (checked syntactically).

    True when each conjunct of the goal is a conjunct of the audience, or is an event-count
    threshold that a stricter audience threshold on the same count already meets.
    """
    known = conjuncts(audience)
    thresholds = [found for found in map(threshold, known) if found is not None]

    def covered(part: Expression) -> bool:
        if part in known:
            return True
        wanted = threshold(part)
        return wanted is not None and any(
            count == wanted[0] and minimum >= wanted[1] for count, minimum in thresholds
        )

    return all(covered(part) for part in conjuncts(goal))


def find_cycle(graph: Mapping[str, set[str]]) -> list[str] | None:
    """A cycle in a dependency graph as a path ``[a, b, …, a]``, or None."""
    state: dict[str, int] = {}  # 1 visiting, 2 done
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for target in sorted(graph.get(node, ())):
            if state.get(target) == 1:
                return [*stack[stack.index(target) :], target]
            if target not in state and (found := visit(target)) is not None:
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)) is not None:
            return found
    return None


def topological(graph: Mapping[str, set[str]]) -> Iterator[str]:
    """Nodes with their dependencies first (the graph must be acyclic)."""
    done: set[str] = set()

    def visit(node: str) -> Iterator[str]:
        if node in done:
            return
        done.add(node)
        for target in sorted(graph.get(node, ())):
            yield from visit(target)
        yield node

    for node in sorted(graph):
        yield from visit(node)
