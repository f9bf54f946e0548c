"""``send: slack``: a message to the account owner's Slack channel through an incoming webhook.

Model only so far; rendering and sending are added with the channel (see channels/base.py).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from closeloop.channels.base import StepModel

SLACK = "slack"


class SlackStep(StepModel):
    """Post ``text`` (an inline template) to the owner's channel (``to: owner``) or the default."""

    send: Literal["slack"]
    text: str = Field(min_length=1, description="an inline template, e.g. '{{ account.name }} …'")
    to: Literal["owner", "default"] = Field(
        default="owner",
        description="owner: the channel mapped to the account's owner (else the default); "
        "default: the project's default channel",
    )
