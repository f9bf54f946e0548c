"""``send: file``: write the payload to a JSON file in a folder (dry runs, hand-offs).

Model only so far; rendering and sending are added with the channel (see channels/base.py).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from closeloop.channels.base import StepModel

FILE = "file"


class FileStep(StepModel):
    """Write a JSON file per delivery into ``folder`` (relative to the project folder)."""

    send: Literal["file"]
    folder: str = Field(default="deliveries", min_length=1)
    data: dict[str, str | float | bool] = Field(
        default_factory=dict, description="fields to write; string values are inline templates"
    )
