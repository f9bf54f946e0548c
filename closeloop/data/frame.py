"""Frames: the table an expression is evaluated on, one row per unit (account or person).

A frame starts from the units that exist as of T with their stored attributes. Everything an
expression needs beyond that (event counts, people roll-ups, cohort or job membership, computed
attributes) is a small per-unit table computed in the warehouse and left-joined on once, however
often the expression mentions it.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any

import ibis.expr.types as ir

from closeloop.definitions.expressions import Entity

ACCOUNT_PREFIX = "account__"  # account columns in a person frame


def unit_key(entity: Entity) -> str:
    return "account_id" if entity == Entity.ACCOUNT else "person_id"


# Builds one per-unit table (column ``on`` and one column per name) from the measures
# registered with Frame.measure: [(name, spec)].
Fuse = Callable[[str, Sequence[tuple[str, Any]]], ir.Table]


@dataclass
class Frame:
    """Units of one entity as of T, and the derived columns registered so far.

    ``fuse`` (given by the compiler) computes the measures registered with :meth:`measure` that
    are joined on the same key as one table: per-unit event aggregates become one grouped pass
    over the events with a condition per aggregate, not a pass each.
    """

    entity: Entity
    base: ir.Table
    joins: list[tuple[ir.Table, str]] = field(default_factory=list)
    names: dict[Hashable, str] = field(default_factory=dict)
    fuse: Fuse | None = None
    measures: dict[str, list[tuple[str, Any]]] = field(default_factory=dict)

    @property
    def key(self) -> str:
        return unit_key(self.entity)

    def derived(self, memo: Hashable, on: str, make: Callable[[str], ir.Table]) -> str:
        """The column name of a derived value, computing its table the first time.

        ``make(name)`` returns a table with columns ``on`` (unique) and ``name``; it is
        left-joined on ``on`` (the unit key, or ``account_id`` for account facts in a person
        frame).
        """
        if memo not in self.names:
            name = f"_d{len(self.names)}"
            self.names[memo] = name
            self.joins.append((make(name), on))
        return self.names[memo]

    def measure(self, memo: Hashable, on: str, spec: Any) -> str:
        """The column name of a measure computed with the others on ``on`` by ``fuse``."""
        assert self.fuse is not None, "a frame with measures needs a fuse"
        if memo not in self.names:
            name = f"_d{len(self.names)}"
            self.names[memo] = name
            self.measures.setdefault(on, []).append((name, spec))
        return self.names[memo]

    def table(self) -> ir.Table:
        """The base with every derived column joined on."""
        table = self.base
        fused = [
            (self.fuse(on, measures), on)
            for on, measures in self.measures.items()
            if self.fuse is not None
        ]
        for extra, on in [*self.joins, *fused]:
            value_columns = [c for c in extra.columns if c != on]
            joined = table.left_join(extra, table[on] == extra[on])
            table = joined.select(*[joined[c] for c in table.columns], *value_columns)
        return table
