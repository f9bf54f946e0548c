"""What every action kind shares: its step model base, the render context, the sender protocol.

An action kind is one module of ``closeloop.channels`` (``email``, ``slack``, ``webhook``,
``set_attribute``, ``enroll``, ``file``). Each owns

* its **step model** (a frozen pydantic model whose ``send`` field names the kind), which the
  definitions load from YAML;
* ``check(step, templates)``: problems a project can see before anything runs (a missing template,
  a template that does not render against a sample context);
* ``render(step, context, templates) -> Rendered``: the payload written to the outbox when a tick
  plans the action, or why there is nothing to send (``skip``);
* a **sender** (``send(message) -> Receipt``) that the dispatcher calls.

Rendering happens at tick time and sending at dispatch time, so a payload in the outbox is exactly
what goes out; retries resend the same bytes with the same idempotency key.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict

from closeloop.errors import RenderError


class StepModel(BaseModel):
    """Base of every action's step model: frozen, and unknown keys are errors."""

    model_config = ConfigDict(frozen=True, extra="forbid")


@dataclass(frozen=True)
class RenderContext:
    """Everything a template or payload may use about one planned action.

    ``account`` holds the account's attributes (``account_id`` always present); ``contacts`` the
    account's people that have an email, oldest first (for a person target, only that person).
    """

    job_name: str
    step_index: int
    enrollment_id: str
    idempotency_key: str
    arm: str
    account: Mapping[str, Any]
    contacts: Sequence[Mapping[str, Any]]
    person_id: str | None
    unsubscribe_url: str
    at: datetime

    def where(self) -> str:
        """Where a render problem happened, for messages: job 'X' step 2, account 'a1'."""
        unit = f"person {self.person_id!r}" if self.person_id else ""
        account = f"account {self.account.get('account_id')!r}"
        return f"job {self.job_name!r} step {self.step_index}, {account}" + (
            f", {unit}" if unit else ""
        )

    def template_variables(self) -> dict[str, Any]:
        """The names a template sees: account, contact (first contact; empty fields when the
        account has no people, so ``contact.name or "there"`` works), contacts, job,
        unsubscribe_url."""
        first = dict(self.contacts[0]) if self.contacts else {}
        contact = {key: first.get(key) for key in ("person_id", "email", "name", "role")}
        return {
            "account": dict(self.account),
            "contact": contact,
            "contacts": [dict(person) for person in self.contacts],
            "job": {"name": self.job_name, "arm": self.arm},
            "unsubscribe_url": self.unsubscribe_url,
        }


@dataclass(frozen=True)
class Rendered:
    """A rendered action: the payload to store, or the reason there is nothing to send."""

    payload: dict[str, Any] = field(default_factory=dict)
    skip: str | None = None  # e.g. "no contact with a usable email address"


@dataclass(frozen=True)
class OutboundMessage:
    """One concrete send, as stored in the outbox. ``idempotency_key`` travels with the message."""

    idempotency_key: str
    channel: str
    account_id: str
    job_name: str
    payload: dict[str, Any]
    # the time the dispatcher sends at: the wall clock when live, simulated time in a backfill
    # (write-backs and referrals are recorded as of it, so replays stay honest about "as of")
    sent_at: datetime | None = None


@dataclass(frozen=True)
class Receipt:
    """What a sender learned while delivering, recorded on the outbox row (e.g. recipients the
    server refused while accepting the others)."""

    detail: str | None = None


class Sender(Protocol):
    """Delivers one kind of message.

    Raises :class:`closeloop.errors.ChannelError` when a send failed and may work later (it is
    retried with backoff) and :class:`closeloop.errors.UndeliverableError` when it never can
    (dead-lettered at once). Anything else a sender raises is treated like a ChannelError.
    """

    name: str

    def send(self, message: OutboundMessage) -> Receipt: ...

    def close(self) -> None: ...


def render_problems(
    render: Callable[[Any, RenderContext, Any], Rendered],
    step: Any,
    sample: RenderContext,
    templates: Any,
    *static: str | None,
) -> list[str]:
    """A kind's ``check``: its static problems (``None`` for none), then whether the step
    renders for the ``sample`` context. A step with a static problem is not rendered."""
    problems = [problem for problem in static if problem]
    if problems:
        return problems
    try:
        render(step, sample, templates)
    except RenderError as error:
        return [str(error)]
    return []


# Kept for callers that speak of channels: a channel is the sender of one action kind.
Channel = Sender
