"""``send: enroll``: put the unit into another job.

The action records a referral; the other job's next tick enrolls the referred unit like any other
entrant (its own exclusions, re-entry rule, contact policy and randomized holdout apply), so every
enrollment still comes from exactly one place, the tick, under its lock.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from pydantic import Field

from closeloop.channels.base import OutboundMessage, Receipt, RenderContext, Rendered, StepModel
from closeloop.channels.templates import TemplateSet
from closeloop.errors import UndeliverableError

ENROLL = "enroll"


class EnrollStep(StepModel):
    """Enroll the unit into the job named ``job`` at its next tick."""

    send: Literal["enroll"]
    job: str = Field(min_length=1, description="the name of another job of the project")


def check(step: EnrollStep, templates: TemplateSet, sample: RenderContext) -> list[str]:
    return []  # that the job exists is a cross-definition rule (definitions.project)


def render(step: EnrollStep, context: RenderContext, templates: TemplateSet) -> Rendered:
    return Rendered(
        {
            "job": step.job,
            "account_id": context.account["account_id"],
            "person_id": context.person_id,
            "from_job": context.job_name,
        }
    )


@dataclass(frozen=True)
class Referral:
    job_name: str
    account_id: str
    person_id: str | None
    from_job: str
    referred_at: datetime
    idempotency_key: str


class EnrollSender:
    """Records referrals through ``refer`` (the state store's referrals, in services)."""

    name = ENROLL

    def __init__(self, refer: Callable[[Referral], None], clock: Callable[[], datetime]) -> None:
        self._refer = refer
        self._clock = clock

    def send(self, message: OutboundMessage) -> Receipt:
        payload = message.payload
        try:
            referral = Referral(
                job_name=str(payload["job"]),
                account_id=str(payload["account_id"]),
                person_id=payload.get("person_id"),
                from_job=str(payload["from_job"]),
                referred_at=message.sent_at or self._clock(),
                idempotency_key=message.idempotency_key,
            )
        except KeyError as missing:
            raise UndeliverableError(f"enroll payload lacks {missing}") from None
        self._refer(referral)
        return Receipt()

    def close(self) -> None:
        return None
