"""The action registry: every kind a job step can ``send``, with its model, checks and renderer.

The engine plans and renders generic actions through this table and the dispatcher sends through
the kind's sender; adding a kind is adding a module and a row here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from closeloop.channels import email, enroll, file, set_attribute, slack, webhook
from closeloop.channels.base import RenderContext, Rendered, StepModel
from closeloop.channels.templates import TemplateSet


@dataclass(frozen=True)
class ActionKind:
    name: str
    step_model: type[StepModel]
    check: Callable[[Any, TemplateSet, RenderContext], list[str]]
    render: Callable[[Any, RenderContext, TemplateSet], Rendered]
    # Whether the action reaches the customer (email): opt-outs stop it and it needs a recipient.
    reaches_customer: bool


ACTION_KINDS: dict[str, ActionKind] = {
    kind.name: kind
    for kind in (
        ActionKind(email.EMAIL, email.EmailStep, email.check, email.render, True),
        ActionKind(slack.SLACK, slack.SlackStep, slack.check, slack.render, False),
        ActionKind(webhook.WEBHOOK, webhook.WebhookStep, webhook.check, webhook.render, False),
        ActionKind(
            set_attribute.SET_ATTRIBUTE,
            set_attribute.SetAttributeStep,
            set_attribute.check,
            set_attribute.render,
            False,
        ),
        ActionKind(enroll.ENROLL, enroll.EnrollStep, enroll.check, enroll.render, False),
        ActionKind(file.FILE, file.FileStep, file.check, file.render, False),
    )
}


def action_kind(step: StepModel) -> ActionKind:
    """The kind of a step model instance (by its ``send`` field)."""
    return ACTION_KINDS[str(getattr(step, "send"))]  # noqa: B009 (every step model has it)
