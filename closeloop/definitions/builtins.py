"""Built-in account attributes: business outcomes every expression may use, as of T.

Names and types only (the vocabulary); the data layer computes them
(``closeloop.data.outcome_attributes``). A stored column or a project's computed attribute of the
same name takes precedence over a built-in (docs/expressions.md, "Outcome attributes").
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from closeloop.definitions.expressions import AttributeType

BUILTIN_ACCOUNT_ATTRIBUTES: Mapping[str, AttributeType] = MappingProxyType(
    {
        "mrr": AttributeType.NUMBER,
        "subscription_arr": AttributeType.NUMBER,
        "nps_latest": AttributeType.NUMBER,
        "csat_latest": AttributeType.NUMBER,
        "ces_latest": AttributeType.NUMBER,
        "active_users_30d": AttributeType.NUMBER,
        "events_30d": AttributeType.NUMBER,
        "usage_change_60d": AttributeType.NUMBER,
        "last_seen_days": AttributeType.NUMBER,
        "open_opportunities": AttributeType.NUMBER,
    }
)
