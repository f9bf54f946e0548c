"""``send: webhook``: POST a signed JSON body to a URL.

Model only so far; rendering and sending are added with the channel (see channels/base.py).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from closeloop.channels.base import StepModel

WEBHOOK = "webhook"


class WebhookStep(StepModel):
    """POST the unit's account, job and step as JSON to ``url``, signed with HMAC-SHA256."""

    send: Literal["webhook"]
    url: str = Field(
        min_length=1,
        description="http(s) URL, or env:NAME to read it from the environment at send time",
    )
    data: dict[str, str | float | bool] = Field(
        default_factory=dict,
        description="extra fields for the body; string values are inline templates",
    )
