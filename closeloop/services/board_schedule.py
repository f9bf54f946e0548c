"""The scheduled board report: after a period closes, the daemon emails its report once.

``board_report: {every: month, to: [...]}`` in closeloop.yaml. On each cycle
:func:`send_scheduled` looks at the latest period closed at the cycle's time; each recipient
not yet sent it is claimed in the state store (engine/board_sends.py: one process wins a claim),
the report is built once, and each claimed recipient gets the HTML report with the PDF attached
over the project's SMTP settings. A failed send keeps its error and is retried on a later cycle;
a sent one is never sent again. Nothing here raises into the daemon: failures are logged.
"""

from __future__ import annotations

import hashlib
import logging
import smtplib
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from email.headerregistry import Address
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import formatdate

from closeloop.channels.email import SmtpSender, header_text
from closeloop.definitions.models import BoardReportEvery, BoardReportSettings
from closeloop.engine import board_sends
from closeloop.engine.state import utc_now
from closeloop.errors import ChannelError, redact
from closeloop.services.project import Workspace

log = logging.getLogger("closeloop.board")
# Lines within SMTP's limit and ASCII on the wire: the HTML goes quoted-printable, the PDF base64.
_POLICY = SMTP.clone(cte_type="7bit")


@dataclass(frozen=True)
class ClosedPeriod:
    key: str  # 2026-11, 2026-Q3 or 2026-W47: the claim's period
    start: date
    end: date  # exclusive


@dataclass
class ScheduledSend:
    """What one cycle did: the period, and who was sent it or failed."""

    period: ClosedPeriod
    sent: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)


def _month_before(first: date) -> date:
    return (first - timedelta(days=1)).replace(day=1)


def closed_period(every: BoardReportEvery, today: date) -> ClosedPeriod:
    """The latest period of ``every`` that has ended by ``today`` (its end is at or before)."""
    if every is BoardReportEvery.WEEK:
        end = today - timedelta(days=today.weekday())  # this week's Monday
        start = end - timedelta(days=7)
        year, week, _ = start.isocalendar()
        return ClosedPeriod(f"{year}-W{week:02d}", start, end)
    if every is BoardReportEvery.QUARTER:
        end = today.replace(month=3 * ((today.month - 1) // 3) + 1, day=1)
        start = _month_before(_month_before(_month_before(end)))
        return ClosedPeriod(f"{start.year}-Q{(start.month - 1) // 3 + 1}", start, end)
    end = today.replace(day=1)
    start = _month_before(end)
    return ClosedPeriod(f"{start:%Y-%m}", start, end)


class BoardMailer(SmtpSender):
    """The project's SMTP sender (same settings, connection handling and TLS) for one email
    with an HTML body and a PDF attached."""

    def send_report(
        self,
        to: str,
        subject: str,
        text: str,
        html: str,
        pdf: bytes,
        filename: str,
        message_id: str,
    ) -> None:
        email = EmailMessage(policy=_POLICY)
        email["From"] = self.sender
        email["To"] = Address(addr_spec=to)
        email["Subject"] = header_text(subject)
        email["Date"] = formatdate(usegmt=True)
        email["Message-ID"] = message_id
        email.set_content(text)
        email.add_alternative(html, subtype="html")
        email.add_attachment(pdf, maintype="application", subtype="pdf", filename=filename)
        smtp = self._connection()
        try:
            smtp.sendmail(self.sender.addr_spec, [to], email.as_bytes())
        except (smtplib.SMTPException, OSError) as error:
            self.close()
            raise ChannelError(f"SMTP send through {self.where} failed: {error}") from None


def mailer(workspace: Workspace) -> BoardMailer:
    settings = workspace.settings
    return BoardMailer(
        settings.smtp_host,
        settings.smtp_port,
        workspace.project.config.email_from,
        security=settings.smtp_security,
        username=settings.smtp_username,
        password=settings.smtp_password,
    )


def message_id(period: str, recipient: str, project: str) -> str:
    """Stable per (project, period, recipient), so a receiver can tell a resend."""
    digest = hashlib.sha256(f"{project}\n{period}\n{recipient.lower()}".encode()).hexdigest()
    return f"<board-{period}-{digest[:24]}@closeloop>"


def send_scheduled(workspace: Workspace, now: datetime) -> ScheduledSend | None:
    """Send the latest closed period's report to each recipient who has not had it (None when
    nothing is scheduled or everyone has it). Never raises: a failure is logged and recorded."""
    config = workspace.project.config.board_report
    if config is None:
        return None
    try:
        return _send(workspace, config, now)
    except Exception as error:  # the daemon's ticks must go on whatever happens here
        log.warning("scheduled board report at %s failed: %s", now, redact(str(error)))
        return None


def _send(workspace: Workspace, config: BoardReportSettings, now: datetime) -> ScheduledSend | None:
    # Imported here: services.board reaches services.engine_runs (through the signals and job
    # editing), whose daemon cycle calls this module; and the board's presenter loads Altair,
    # which every command reaching engine_runs would pay for.
    from closeloop.present.board import board_email_text, board_html, board_pdf, board_subject
    from closeloop.services.board import board_report

    store = workspace.store
    period = closed_period(config.every, now.date())
    # Most cycles find every recipient done: one read, no failing inserts.
    known = {send.recipient: send for send in board_sends.sends(store, period.key)}
    claimed = [
        recipient
        for recipient in config.to
        if (recipient not in known or known[recipient].error is not None)
        and board_sends.claim(store, period.key, recipient, now)
    ]
    if not claimed:
        return None
    result = ScheduledSend(period)
    try:
        report = board_report(workspace, period.start, period.end)
        html, pdf = board_html(report), board_pdf(report)
    except Exception as error:  # the claims must not stay open: record, retry next cycle
        reason = redact(f"the report could not be built: {error}")
        for recipient in claimed:
            board_sends.record_failed(store, period.key, recipient, reason)
            result.failed[recipient] = reason
        log.warning("board report %s: %s", period.key, reason)
        return result
    subject = config.subject or board_subject(report)
    text = board_email_text(report)
    filename = f"board-report-{period.key}.pdf"
    sender = mailer(workspace)
    try:
        for recipient in claimed:
            identifier = message_id(period.key, recipient, report.project)
            try:
                sender.send_report(recipient, subject, text, html, pdf, filename, identifier)
            except Exception as error:  # one recipient's failure never stops the others
                reason = redact(str(error)) or type(error).__name__
                board_sends.record_failed(store, period.key, recipient, reason)
                result.failed[recipient] = reason
                log.warning("board report %s to %s failed: %s", period.key, recipient, reason)
                continue
            board_sends.record_sent(store, period.key, recipient, utc_now(), identifier)
            result.sent.append(recipient)
    finally:
        sender.close()
    return result
