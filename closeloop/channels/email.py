"""Email: Jinja templates rendered with account attributes, sent over SMTP.

The idempotency key becomes the ``Message-ID`` so receivers can de-duplicate a resend; every email
carries an unsubscribe link and a ``List-Unsubscribe`` header.
"""

from __future__ import annotations

import contextlib
import smtplib
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path
from typing import Any, Literal

import jinja2
from pydantic import Field

from closeloop.channels.base import OutboundMessage, StepModel
from closeloop.errors import ChannelError, DefinitionError

EMAIL = "email"


class EmailStep(StepModel):
    """Send an email built from a Jinja template in the project's ``templates/`` folder."""

    send: Literal["email"]
    subject: str = Field(min_length=1, description="an inline template")
    template: str = Field(
        min_length=1, description="templates/<name>.txt.j2 (and optional .html.j2)"
    )
    to: Literal["account_contacts"] = "account_contacts"


@dataclass(frozen=True)
class RenderedEmail:
    subject: str
    text: str
    html: str | None


class EmailTemplates:
    """Renders ``templates/<name>.txt.j2`` (required) and ``<name>.html.j2`` (optional)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.text_env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(folder),
            undefined=jinja2.StrictUndefined,
            autoescape=False,
        )
        self.html_env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(folder),
            undefined=jinja2.StrictUndefined,
            autoescape=True,
        )

    def render(self, template: str, subject: str, context: dict[str, Any]) -> RenderedEmail:
        try:
            text = self.text_env.get_template(f"{template}.txt.j2").render(context)
            rendered_subject = self.text_env.from_string(subject).render(context)
            html_path = self.folder / f"{template}.html.j2"
            html = (
                self.html_env.get_template(f"{template}.html.j2").render(context)
                if html_path.is_file()
                else None
            )
        except jinja2.TemplateError as error:
            where = getattr(error, "filename", None) or template
            line = getattr(error, "lineno", None)
            location = f"{where}:{line}" if line else where
            raise DefinitionError(f"email template {location}: {error}") from error
        return RenderedEmail(subject=rendered_subject.strip(), text=text, html=html)


class SmtpEmailChannel:
    """Sends the outbox's email payloads through an SMTP server, reusing one connection."""

    name = EMAIL

    def __init__(self, host: str, port: int, sender: str, timeout: float = 10.0) -> None:
        self.host = host
        self.port = port
        self.sender = sender
        self.timeout = timeout
        self._smtp: smtplib.SMTP | None = None

    def _connection(self) -> smtplib.SMTP:
        if self._smtp is None:
            try:
                self._smtp = smtplib.SMTP(self.host, self.port, timeout=self.timeout)
            except OSError as error:
                raise ChannelError(
                    f"cannot reach the SMTP server at {self.host}:{self.port}: {error}"
                ) from error
        return self._smtp

    def send(self, message: OutboundMessage) -> None:
        payload = message.payload
        email = EmailMessage()
        email["From"] = self.sender
        email["To"] = ", ".join(payload["to"])
        email["Subject"] = payload["subject"]
        email["Message-ID"] = f"<{message.idempotency_key}@closeloop>"
        email["X-Closeloop-Idempotency-Key"] = message.idempotency_key
        email["X-Closeloop-Job"] = message.job_name
        email["List-Unsubscribe"] = f"<{payload['unsubscribe_url']}>"
        email.set_content(payload["text"] + f"\n\nUnsubscribe: {payload['unsubscribe_url']}\n")
        if payload.get("html"):
            email.add_alternative(payload["html"], subtype="html")
        try:
            self._connection().send_message(email)
        except (smtplib.SMTPException, OSError) as error:
            self.close()
            raise ChannelError(f"SMTP send to {email['To']} failed: {error}") from error

    def close(self) -> None:
        if self._smtp is not None:
            with contextlib.suppress(smtplib.SMTPException, OSError):
                self._smtp.quit()  # the connection is going away either way
            self._smtp = None
