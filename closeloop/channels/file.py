"""``send: file``: write the payload to a JSON file in a folder (dry runs, hand-offs).

Each delivery is ``<root>/<folder>/<idempotency key>.json``, written atomically (a temporary file
in the same folder, then a rename), so a reader never sees half a file and a resend rewrites the
same file with the same content. In override mode, used for dry runs, every channel's messages go
to files instead, one folder per channel: ``<root>/<channel>/<idempotency key>.json``.

Folders are relative to the root (the project folder); one that would leave it (``..``, an
absolute path, a symlink pointing out) is refused by ``check`` and again when sending.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Literal

from pydantic import Field

from closeloop.channels.base import (
    OutboundMessage,
    Receipt,
    RenderContext,
    Rendered,
    StepModel,
    render_problems,
)
from closeloop.channels.templates import TemplateSet
from closeloop.channels.webhook import render_data
from closeloop.errors import ChannelError, UndeliverableError

FILE = "file"
_FILE_NAME = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9._-]*$")


class FileStep(StepModel):
    """Write a JSON file per delivery into ``folder`` (relative to the project folder)."""

    send: Literal["file"]
    folder: str = Field(default="deliveries", min_length=1)
    data: dict[str, str | float | bool] = Field(
        default_factory=dict, description="fields to write; string values are inline templates"
    )


def folder_problem(folder: str) -> str | None:
    """Why ``folder`` cannot hold deliveries (``None`` if it can): it must stay inside the root."""
    posix = PurePosixPath(folder.replace("\\", "/"))
    if posix.is_absolute() or PureWindowsPath(folder).drive or ".." in posix.parts:
        return (
            f"folder {folder!r} would leave the project folder: "
            "use a relative path without '..', e.g. deliveries/onboarding"
        )
    return None


def check(step: FileStep, templates: TemplateSet, sample: RenderContext) -> list[str]:
    return render_problems(render, step, sample, templates, folder_problem(step.folder))


def render(step: FileStep, context: RenderContext, templates: TemplateSet) -> Rendered:
    return Rendered(
        {
            "folder": step.folder,
            "data": render_data(step.data, context, templates),
            "account_id": context.account["account_id"],
            "person_id": context.person_id,
            "job": context.job_name,
            "step": context.step_index,
        }
    )


class FileSender:
    """Writes each message to ``<root>/<folder>/<key>.json``; with ``override``, any channel's
    message to ``<root>/<channel>/<key>.json`` (a dry run)."""

    name = FILE

    def __init__(self, root: Path, *, override: bool = False) -> None:
        self.root = root
        self.override = override

    def send(self, message: OutboundMessage) -> Receipt:
        folder = message.channel if self.override else str(message.payload.get("folder") or "")
        problem = folder_problem(folder) if folder else "the payload names no folder"
        if problem:
            raise UndeliverableError(problem)
        if not _FILE_NAME.match(message.idempotency_key):
            raise UndeliverableError(
                f"idempotency key {message.idempotency_key[:80]!r} cannot be a file name"
            )
        directory = self.root / folder
        root = self.root.resolve()
        if not directory.resolve().is_relative_to(root):  # a symlink inside the root pointing out
            raise UndeliverableError(f"folder {folder!r} leads out of {root} through a symlink")
        document = {
            "idempotency_key": message.idempotency_key,
            "channel": message.channel,
            "job": message.job_name,
            "account_id": message.account_id,
            "payload": message.payload,
        }
        try:
            text = json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
        except (TypeError, ValueError) as error:
            raise UndeliverableError(f"the payload is not JSON: {error}") from None
        target = directory / f"{message.idempotency_key}.json"
        try:
            _write_atomically(target, text)
        except OSError as error:
            raise ChannelError(f"cannot write {target}: {error}") from error
        return Receipt(detail=f"wrote {target.relative_to(self.root).as_posix()}")

    def close(self) -> None:
        return None


def _write_atomically(target: Path, text: str) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(
        dir=target.parent, prefix=f".{target.name}.", suffix=".tmp"
    )
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            stream.write(text)
        Path(temporary).replace(target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
