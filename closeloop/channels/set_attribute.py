"""``send: set_attribute``: write a value back onto the account, recorded with its time.

The value is a literal or, for strings, an inline template (``"{{ job.name }}"``). The write is
appended to the warehouse's ``attribute_history`` (entity, entity_id, name, value, valid_from), so
an "as of" question asked later sees the value only from the moment it was written.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from pydantic import Field, field_validator

from closeloop.channels.base import (
    OutboundMessage,
    Receipt,
    RenderContext,
    Rendered,
    StepModel,
    render_problems,
)
from closeloop.channels.templates import TemplateSet
from closeloop.errors import UndeliverableError

SET_ATTRIBUTE = "set_attribute"
_IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]*$")


class SetAttributeStep(StepModel):
    """Write ``value`` to the account attribute ``attribute`` (strings may be templates)."""

    send: Literal["set_attribute"]
    attribute: str = Field(min_length=1, max_length=63, description="snake_case attribute name")
    value: str | float | bool = Field(description="a literal, or a template string")

    @field_validator("attribute")
    @classmethod
    def _snake_case(cls, value: str) -> str:
        if not _IDENTIFIER.match(value):
            raise ValueError("an attribute name is snake_case (e.g. onboarding_owner)")
        return value


def check(step: SetAttributeStep, templates: TemplateSet, sample: RenderContext) -> list[str]:
    return render_problems(render, step, sample, templates)


def render(step: SetAttributeStep, context: RenderContext, templates: TemplateSet) -> Rendered:
    value: str | float | bool = step.value
    if isinstance(value, str):
        value = templates.render_string(
            value, context.template_variables(), label=f"{context.where()} value"
        )
    return Rendered(
        {
            "entity": "person" if context.person_id else "account",
            "entity_id": context.person_id or context.account["account_id"],
            "attribute": step.attribute,
            "value": value,
        }
    )


@dataclass(frozen=True)
class AttributeWrite:
    entity: str
    entity_id: str
    name: str
    value: str  # JSON text of the value, so numbers and booleans keep their type
    valid_from: datetime
    idempotency_key: str
    source: str  # e.g. "job:Integration nudge"


class AttributeSender:
    """Appends each write through ``write`` (the warehouse's attribute history, in services)."""

    name = SET_ATTRIBUTE

    def __init__(
        self, write: Callable[[AttributeWrite], None], clock: Callable[[], datetime]
    ) -> None:
        self._write = write
        self._clock = clock

    def send(self, message: OutboundMessage) -> Receipt:
        payload: dict[str, Any] = message.payload
        try:
            write = AttributeWrite(
                entity=str(payload["entity"]),
                entity_id=str(payload["entity_id"]),
                name=str(payload["attribute"]),
                value=json.dumps(payload["value"]),
                valid_from=message.sent_at or self._clock(),
                idempotency_key=message.idempotency_key,
                source=f"job:{message.job_name}",
            )
        except KeyError as missing:
            raise UndeliverableError(f"set_attribute payload lacks {missing}") from None
        self._write(write)
        return Receipt()

    def close(self) -> None:
        return None
