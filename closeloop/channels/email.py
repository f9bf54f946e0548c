"""``send: email``: Jinja templates rendered with the account's data, sent over SMTP.

Rendering (at tick time) produces the whole message as data: recipients, subject, text and HTML
bodies, the unsubscribe link. Sending (at dispatch time) turns that payload into a MIME message.
Nothing a template or the warehouse holds can add a header: subjects and names lose their line
breaks, recipients are parsed and re-checked on both sides, and the standard library's SMTP
policy refuses any header that still contains CR or LF.

The idempotency key becomes the ``Message-ID`` so receivers can de-duplicate a resend; every email
carries an unsubscribe link in its body and the one-click ``List-Unsubscribe`` headers (RFC 8058).
"""

from __future__ import annotations

import re
import smtplib
import ssl
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from email.errors import HeaderParseError, MessageError
from email.headerregistry import Address, AddressHeader, HeaderRegistry
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import formatdate
from functools import lru_cache
from html import escape
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import Field

from closeloop.channels.base import OutboundMessage, Receipt, RenderContext, Rendered, StepModel
from closeloop.channels.templates import TemplateSet
from closeloop.errors import ChannelError, ConfigurationError, RenderError, UndeliverableError

EMAIL = "email"
MAX_RECIPIENTS = 5
MAX_SUBJECT_LENGTH = 998  # RFC 5322's limit for one header line
SECURITY_MODES = ("none", "starttls", "ssl")
Security = Literal["none", "starttls", "ssl"]

# Control characters (C0, DEL, C1) and Unicode's own line separators: never inside a header.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
# Characters a plain ``local@domain`` never needs; each is a way to smuggle a second address,
# a display name or a comment past a naive parser.
_NOT_IN_PLAIN_ADDRESS = re.compile(r"[\s\x00-\x1f\x7f()<>,;:\"\[\]\\]")
_NOT_IN_URL = re.compile(r"[\s\x00-\x1f\x7f<>\"\\]")
_MESSAGE_ID_PART = re.compile(r"^[A-Za-z0-9._-]{1,200}$")
# RFC 5322 dot-atoms on both sides of one ``@``: every such address is one the header parser
# takes as it is (tests/unit/test_email_render.py checks by property), so it needs no parse.
_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_DOT_ATOM_ADDRESS = re.compile(rf"{_ATEXT}(?:\.{_ATEXT})*@{_ATEXT}(?:\.{_ATEXT})*")
# 7-bit transfer encodings for non-ASCII bodies: the bytes on the wire are ASCII, so a server
# without 8BITMIME takes them as they are.
_POLICY = SMTP.clone(cte_type="7bit")


class EmailStep(StepModel):
    """Send an email built from a Jinja template in the project's ``templates/`` folder."""

    send: Literal["email"]
    subject: str = Field(min_length=1, description="an inline template")
    template: str = Field(
        min_length=1, description="templates/<name>.txt.j2 (and optional .html.j2)"
    )
    to: Literal["account_contacts"] = "account_contacts"


# -- rendering ----------------------------------------------------------------------------------


def check(step: EmailStep, templates: TemplateSet, sample: RenderContext) -> list[str]:
    """Problems with ``step`` a project can see before anything runs: a missing text template, or
    any template (subject, text, HTML) that does not render for the ``sample`` context."""
    text_name = f"{step.template}.txt.j2"
    if not templates.exists(text_name):
        looked_for = templates.folder / text_name
        return [f"email template {step.template!r} not found (looked for {looked_for})"]
    try:
        _render_content(step, sample, templates)
    except RenderError as error:
        return [str(error)]
    return []


def render(step: EmailStep, context: RenderContext, templates: TemplateSet) -> Rendered:
    """The email for one unit: recipients from ``context.contacts`` and the rendered content.

    Contacts whose email is not one plain address are dropped and listed in the payload; with no
    usable address left there is nothing to send (``skip``) and nothing is rendered. A template
    problem raises :class:`RenderError` naming the job, step, account, file and line.
    """
    recipients, dropped = usable_recipients(person.get("email") for person in context.contacts)
    if not recipients:
        reason = "no contact with a usable email address"
        if dropped:
            reason += f" (dropped: {', '.join(repr(address) for address in dropped)})"
        return Rendered(skip=reason)
    subject, text, html = _render_content(step, context, templates)
    return Rendered(
        {
            "to": recipients,
            "subject": subject,
            "text": text,
            "html": html,
            "unsubscribe_url": context.unsubscribe_url,
            "dropped_recipients": dropped,
        }
    )


def _render_content(
    step: EmailStep, context: RenderContext, templates: TemplateSet
) -> tuple[str, str, str | None]:
    variables = context.template_variables()
    subject = templates.render_string(step.subject, variables, label=f"{context.where()} subject")
    html_name = f"{step.template}.html.j2"
    try:
        text = templates.render_file(f"{step.template}.txt.j2", variables)
        html = (
            templates.render_file(html_name, variables, html=True)
            if templates.exists(html_name)
            else None
        )
    except RenderError as error:
        raise RenderError(f"{context.where()}: {error}") from error
    return header_text(subject), text, html


def header_text(value: str, limit: int = MAX_SUBJECT_LENGTH) -> str:
    """``value`` as one header-safe line: control characters and runs of whitespace become one
    space, the ends are stripped and the length capped.

    >>> header_text("Welcome,\\r\\nBcc: everyone@example.com")
    'Welcome, Bcc: everyone@example.com'
    """
    return " ".join(_CONTROL.sub(" ", value).split())[:limit]


def usable_recipients(emails: Iterable[object]) -> tuple[list[str], list[str]]:
    """The first :data:`MAX_RECIPIENTS` distinct usable addresses, and the unusable ones given.

    Empty values (a person without an email) are neither; anything else that is not exactly one
    plain ``local@domain`` address is dropped.
    """
    recipients: list[str] = []
    dropped: list[str] = []
    seen: set[str] = set()
    for raw in emails:
        if raw is None or (isinstance(raw, str) and not raw.strip()):
            continue
        address = plain_address(raw)
        if address is None:
            dropped.append(str(raw))
        elif address.lower() not in seen and len(recipients) < MAX_RECIPIENTS:
            seen.add(address.lower())
            recipients.append(address)
    return recipients, dropped


def plain_address(raw: object) -> str | None:
    """``raw`` as a plain ASCII ``local@domain`` address, or None when it is anything else.

    Refused: no or several addresses, display names and angle brackets, comments, quoted local
    parts, domain literals, line breaks and other control characters, and non-ASCII addresses
    (they need SMTPUTF8 support on every server along the way).

    >>> plain_address(" ada@example.com "), plain_address("ada@example.com, eve@example.com")
    ('ada@example.com', None)
    """
    if not isinstance(raw, str):
        return None
    return _plain_text_address(raw.strip())


@lru_cache(maxsize=65_536)
def _plain_text_address(text: str) -> str | None:
    # The header parser is slow (~0.15 ms an address, most of a tick's rendering): the common
    # dot-atom address is taken by a regular expression, anything else still goes through it.
    if _DOT_ATOM_ADDRESS.fullmatch(text):
        return text
    return _parsed_plain_address(text)


def _parsed_plain_address(text: str) -> str | None:
    """The header parser's judgement of ``text`` (what the fast path must agree with)."""
    if not text.isascii() or _NOT_IN_PLAIN_ADDRESS.search(text):
        return None
    try:
        address = Address(addr_spec=text)
    except (ValueError, IndexError, HeaderParseError):
        return None
    if not address.username or not address.domain or address.addr_spec != text:
        return None
    return text


# -- sending ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Prepared:
    recipients: list[str]
    data: bytes


class SmtpSender:
    """Sends the outbox's email payloads through an SMTP server, reusing one connection.

    ``security`` is ``none`` (plain SMTP, for a relay on the same host), ``starttls`` (upgrade
    after EHLO; refuses to go on when the server does not offer it) or ``ssl`` (TLS from the first
    byte, usually port 465). Certificates are verified against ``ssl_context`` (default: the
    system's trusted authorities). With ``username`` the sender logs in after TLS is up.
    """

    name = EMAIL

    def __init__(
        self,
        host: str,
        port: int,
        sender: str,
        timeout: float = 10.0,
        *,
        security: Security = "none",
        username: str | None = None,
        password: str | None = None,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        if security not in SECURITY_MODES:
            raise ConfigurationError(
                f"SMTP security {security!r} is not one of {', '.join(SECURITY_MODES)}"
            )
        if password and not username:
            raise ConfigurationError("an SMTP password needs a username to log in with")
        self.host = host
        self.port = port
        self.sender = sender_address(sender)
        self.timeout = timeout
        self.security = security
        self.username = username
        self._password = password or ""
        self._ssl_context = ssl_context
        self._smtp: smtplib.SMTP | None = None

    def __repr__(self) -> str:  # the password stays out of logs and tracebacks
        return (
            f"SmtpSender({self.host!r}, {self.port}, {self.sender.addr_spec!r}, "
            f"security={self.security!r}, username={self.username!r})"
        )

    def send(self, message: OutboundMessage) -> Receipt:
        prepared = self._prepare(message)
        smtp = self._connection()
        try:
            refused = smtp.sendmail(self.sender.addr_spec, prepared.recipients, prepared.data)
        except smtplib.SMTPRecipientsRefused as error:
            raise _all_refused(error.recipients) from None
        except smtplib.SMTPSenderRefused as error:
            if error.smtp_code == 530:  # "authentication required": settings can fix that
                self.close()
                raise ChannelError(
                    f"the SMTP server at {self.where} wants a login or TLS first "
                    f"({error.smtp_code} {_text(error.smtp_error)}); set CLOSELOOP_SMTP_USERNAME "
                    "and CLOSELOOP_SMTP_PASSWORD, or CLOSELOOP_SMTP_SECURITY"
                ) from None
            raise self._refused(error) from None
        except smtplib.SMTPDataError as error:
            raise self._refused(error) from None
        except (smtplib.SMTPException, OSError) as error:
            self.close()
            raise ChannelError(
                self._scrub(f"SMTP send through {self.where} failed: {error}")
            ) from None
        if not refused:
            return Receipt()
        return Receipt(detail=f"refused by the server: {_describe_refusals(refused)}")

    def close(self) -> None:
        smtp, self._smtp = self._smtp, None
        if smtp is None:
            return
        try:
            smtp.quit()
        except (smtplib.SMTPException, OSError):
            smtp.close()  # the connection is going away either way

    def _refused(self, error: smtplib.SMTPResponseException) -> ChannelError:
        """5xx replies are permanent (dead-letter); anything else may pass later (retry, on a new
        connection: a 421 means the server is closing this one)."""
        reply = f"{error.smtp_code} {_text(error.smtp_error)}"
        what = f"the SMTP server at {self.where} refused the email: {reply}"
        if 500 <= error.smtp_code < 600:
            return UndeliverableError(what)
        self.close()
        return ChannelError(what)

    @property
    def where(self) -> str:
        return f"{self.host}:{self.port}"

    # The message -------------------------------------------------------------------------------

    def _prepare(self, message: OutboundMessage) -> _Prepared:
        """The message's bytes, or UndeliverableError: a payload that cannot become a valid email
        will not become one on a retry."""
        try:
            return self._build(message)
        except UndeliverableError:
            raise
        except (KeyError, TypeError, ValueError, LookupError, MessageError) as error:
            reason = f"missing {error}" if isinstance(error, KeyError) else str(error)
            raise UndeliverableError(f"cannot build the email: {reason}") from error

    def _build(self, message: OutboundMessage) -> _Prepared:
        payload: Mapping[str, Any] = message.payload
        recipients = [_checked_recipient(raw) for raw in _strings(payload["to"], "to")]
        if not recipients:
            raise UndeliverableError("the email has no recipient")
        unsubscribe_url = _checked_unsubscribe_url(payload["unsubscribe_url"])
        if not _MESSAGE_ID_PART.match(message.idempotency_key):
            raise UndeliverableError(
                f"idempotency key {message.idempotency_key!r} cannot be part of a Message-ID"
            )
        email = EmailMessage(policy=_POLICY)
        email["From"] = self.sender
        email["To"] = [Address(addr_spec=address) for address in recipients]
        email["Subject"] = header_text(_string(payload["subject"], "subject"))
        email["Date"] = formatdate(usegmt=True)
        email["Message-ID"] = f"<{message.idempotency_key}@closeloop>"
        email["X-Closeloop-Idempotency-Key"] = message.idempotency_key
        email["X-Closeloop-Job"] = header_text(message.job_name)
        email["List-Unsubscribe"] = f"<{unsubscribe_url}>"
        email["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
        text = _string(payload["text"], "text")
        email.set_content(f"{text.rstrip()}\n\nUnsubscribe: {unsubscribe_url}\n")
        html = payload.get("html")
        if html is not None:
            email.add_alternative(
                _with_unsubscribe_link(_string(html, "html"), unsubscribe_url), subtype="html"
            )
        return _Prepared(recipients, email.as_bytes())

    # The connection ----------------------------------------------------------------------------

    def _connection(self) -> smtplib.SMTP:
        """The open connection if the server still answers (servers drop idle ones), else a new
        one. Checking with NOOP first means a message is never half-sent on a dead connection."""
        if self._smtp is not None:
            try:
                alive = self._smtp.noop()[0] == 250
            except (smtplib.SMTPException, OSError):
                alive = False
            if alive:
                return self._smtp
            self.close()
        self._smtp = self._connect()
        return self._smtp

    def _connect(self) -> smtplib.SMTP:
        context = self._ssl_context or ssl.create_default_context()
        try:
            smtp = (
                smtplib.SMTP_SSL(self.host, self.port, timeout=self.timeout, context=context)
                if self.security == "ssl"
                else smtplib.SMTP(self.host, self.port, timeout=self.timeout)
            )
        except (smtplib.SMTPException, OSError) as error:
            raise ChannelError(
                self._scrub(f"cannot reach the SMTP server at {self.where}: {error}")
            ) from None
        try:
            smtp.ehlo()
            if self.security == "starttls":
                if not smtp.has_extn("starttls"):
                    raise ChannelError(
                        f"the SMTP server at {self.where} does not offer STARTTLS; refusing to "
                        "send in the clear (set CLOSELOOP_SMTP_SECURITY=ssl for a TLS port)"
                    )
                smtp.starttls(context=context)
                smtp.ehlo()
            if self.username:
                smtp.login(self.username, self._password)
        except ChannelError:
            smtp.close()
            raise
        except smtplib.SMTPAuthenticationError as error:
            smtp.close()
            raise ChannelError(
                self._scrub(
                    f"SMTP authentication failed for user {self.username!r} at {self.where}: "
                    f"{error.smtp_code} {_text(error.smtp_error)}"
                )
            ) from None
        except smtplib.SMTPNotSupportedError as error:
            smtp.close()
            raise ChannelError(
                self._scrub(f"the SMTP server at {self.where} cannot log in: {error}")
            ) from None
        except (smtplib.SMTPException, OSError) as error:  # ssl.SSLError is an OSError
            smtp.close()
            raise ChannelError(
                self._scrub(f"SMTP session with {self.where} failed: {error}")
            ) from None
        return smtp

    def _scrub(self, text: str) -> str:
        """``text`` without the password, whatever a server or library echoed back."""
        return text.replace(self._password, "***") if self._password else text


def sender_address(sender: str) -> Address:
    """The From address, parsed once: ``ada@example.com`` or ``Success team <ada@example.com>``.

    Anything else (several addresses, line breaks, a missing domain) is a ConfigurationError.
    """
    problem = f"the sender address {sender!r} (CLOSELOOP_EMAIL_FROM / email_from)"
    if _CONTROL.search(sender):
        raise ConfigurationError(f"{problem} contains a line break or control character")
    try:
        header = HeaderRegistry()("From", sender)
    except (ValueError, IndexError, HeaderParseError) as error:
        raise ConfigurationError(f"{problem} is not an email address: {error}") from None
    if not isinstance(header, AddressHeader) or len(header.addresses) != 1 or header.defects:
        raise ConfigurationError(f"{problem} must be exactly one email address")
    address = header.addresses[0]
    if plain_address(address.addr_spec) is None:
        raise ConfigurationError(f"{problem} must be a plain ASCII address like name@example.com")
    return Address(display_name=header_text(address.display_name), addr_spec=address.addr_spec)


def _checked_recipient(raw: str) -> str:
    address = plain_address(raw)
    if address is None:
        raise UndeliverableError(f"recipient {raw!r} is not a usable email address")
    return address


def _checked_unsubscribe_url(raw: object) -> str:
    url = _string(raw, "unsubscribe_url").strip()
    if urlsplit(url).scheme.lower() not in ("https", "http", "mailto") or _NOT_IN_URL.search(url):
        raise UndeliverableError(
            f"unsubscribe link {url!r} is not an http(s) or mailto URL without spaces or brackets"
        )
    return url


def _with_unsubscribe_link(html: str, url: str) -> str:
    """The HTML body with an unsubscribe paragraph, before ``</body>`` when there is one."""
    link = f'<p><a href="{escape(url, quote=True)}">Unsubscribe</a></p>'
    end = html.lower().rfind("</body>")
    return f"{html}\n{link}\n" if end < 0 else f"{html[:end]}{link}\n{html[end:]}"


def _string(value: object, field: str) -> str:
    if not isinstance(value, str):
        raise UndeliverableError(f"email payload field {field!r} is not text")
    return value


def _strings(value: object, field: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise UndeliverableError(f"email payload field {field!r} is not a list of addresses")
    return value


def _text(reply: bytes | str) -> str:
    return reply.decode("utf-8", "replace") if isinstance(reply, bytes) else reply


def _all_refused(refusals: Mapping[str, tuple[int, bytes]]) -> ChannelError:
    """Every recipient refused: permanent only if every refusal was (greylisting answers 4xx)."""
    message = f"every recipient was refused by the server: {_describe_refusals(refusals)}"
    permanent = all(500 <= code < 600 for code, _ in refusals.values())
    return UndeliverableError(message) if permanent else ChannelError(message)


def _describe_refusals(refusals: Mapping[str, tuple[int, bytes]]) -> str:
    """``bob@x.com (550 no such user); eve@y.com (450 mailbox busy)``."""
    return "; ".join(
        f"{address} ({code} {_text(reply)})" for address, (code, reply) in refusals.items()
    )
