"""Frames: the table an expression is evaluated on, one row per unit (account or person).

A frame starts from the units that exist as of T with their stored attributes. Everything an
expression needs beyond that (event counts, people roll-ups, cohort or job membership, computed
attributes) is a small per-unit table computed in the warehouse and left-joined on once, however
often the expression mentions it.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from dataclasses import dataclass, field

import ibis.expr.types as ir

from closeloop.definitions.expressions import Entity

ACCOUNT_PREFIX = "account__"  # account columns in a person frame


def unit_key(entity: Entity) -> str:
    return "account_id" if entity == Entity.ACCOUNT else "person_id"


@dataclass
class Frame:
    """Units of one entity as of T, and the derived columns registered so far."""

    entity: Entity
    base: ir.Table
    joins: list[tuple[ir.Table, str]] = field(default_factory=list)
    names: dict[Hashable, str] = field(default_factory=dict)

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

    def table(self) -> ir.Table:
        """The base with every derived column joined on."""
        table = self.base
        for extra, on in self.joins:
            value_columns = [c for c in extra.columns if c != on]
            joined = table.left_join(extra, table[on] == extra[on])
            table = joined.select(*[joined[c] for c in table.columns], *value_columns)
        return table
