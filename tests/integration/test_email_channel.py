"""The SMTP sender against a real SMTP server on loopback (aiosmtpd): plain, STARTTLS, TLS, login.

Each test renders or writes a payload the way the outbox stores it, sends it through
:class:`SmtpSender` and reads back what the server received, envelope included. The certificate
is made once per session with the ``openssl`` command and trusted explicitly by the client, so
TLS is verified in every test, never switched off.
"""

from __future__ import annotations

import re
import shutil
import ssl
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import Message
from pathlib import Path
from typing import Any

import pytest

from closeloop.channels.base import OutboundMessage, Receipt, RenderContext
from closeloop.channels.email import EmailStep, SmtpSender, render
from closeloop.channels.templates import TemplateSet
from closeloop.errors import ChannelError, UndeliverableError
from closeloop.services.smtp_sink import SmtpSink, free_port

FROM = "Customer Success <cs@example.com>"
PASSWORD = "correct-horse-battery-staple"
UNSUBSCRIBE = "https://example.com/unsubscribe?token=abc&x=1"


@dataclass(frozen=True)
class Certificate:
    cert: Path
    key: Path

    def server_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.cert, self.key)
        return context

    def client_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.cert))


@pytest.fixture(scope="session")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> Certificate:
    """A self-signed certificate for 127.0.0.1 and localhost."""
    openssl = shutil.which("openssl")
    assert openssl is not None, "the TLS tests need the openssl command"
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [
            openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
            "-nodes", "-days", "1", "-subj", "/CN=localhost",
            "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
            "-keyout", str(key), "-out", str(cert),
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return Certificate(cert, key)


def _message(
    to: list[str],
    *,
    subject: str = "Welcome aboard",
    text: str = "Hi Ada,\nConnect your first integration.",
    html: str | None = "<p>Hi <b>Ada</b></p>",
    key: str = "k-0001",
    job: str = "Integration nudge",
    **payload: Any,
) -> OutboundMessage:
    fields = {
        "to": to,
        "subject": subject,
        "text": text,
        "html": html,
        "unsubscribe_url": UNSUBSCRIBE,
        "dropped_recipients": [],
        **payload,
    }
    return OutboundMessage(key, "email", "acc-1", job, fields)


def _body(message: Message, subtype: str) -> str:
    for part in message.walk():
        if part.get_content_type() == f"text/{subtype}":
            payload = part.get_payload(decode=True)
            assert isinstance(payload, bytes)
            return payload.decode(part.get_content_charset() or "utf-8")
    raise AssertionError(f"no text/{subtype} part")


@pytest.fixture
def sink() -> Iterator[SmtpSink]:
    with SmtpSink(refuse={"nobody@example.com": "550 5.1.1 no such user"}) as running:
        yield running


@pytest.fixture
def sender(sink: SmtpSink) -> Iterator[SmtpSender]:
    smtp = SmtpSender(sink.host, sink.port, FROM, timeout=5)
    yield smtp
    smtp.close()


# -- plain SMTP ---------------------------------------------------------------------------------


def test_a_rendered_email_arrives_with_its_headers_and_both_bodies(
    tmp_path: Path, sink: SmtpSink, sender: SmtpSender
) -> None:
    (tmp_path / "welcome.txt.j2").write_text("Hi {{ contact.name }},\nwelcome, {{ account.name }}.")
    (tmp_path / "welcome.html.j2").write_text("<html><body><p>{{ account.name }}</p></body></html>")
    context = RenderContext(
        job_name="Integration nudge",
        step_index=0,
        enrollment_id="e-1",
        idempotency_key="k-0001",
        arm="treatment",
        account={"account_id": "acc-1", "name": "Ada & Co"},
        contacts=[{"email": "ada@example.com", "name": "Ada"}, {"email": "Bob <b@x.io>"}],
        person_id=None,
        unsubscribe_url=UNSUBSCRIBE,
        at=datetime(2025, 1, 1, tzinfo=UTC),
    )
    step = EmailStep(send="email", subject="{{ account.name }}: welcome", template="welcome")
    rendered = render(step, context, TemplateSet(tmp_path))
    assert rendered.skip is None

    receipt = sender.send(
        OutboundMessage("k-0001", "email", "acc-1", "Integration nudge", rendered.payload)
    )

    assert receipt == Receipt()
    [received] = sink.received
    assert received.mail_from == "cs@example.com"
    assert received.recipients == ("ada@example.com",)
    assert not received.encrypted and received.logged_in_as is None
    email = received.message
    assert email["From"] == "Customer Success <cs@example.com>"
    assert email["To"] == "ada@example.com"
    assert email["Subject"] == "Ada & Co: welcome"
    assert email["Message-ID"] == "<k-0001@closeloop>"
    assert email["X-Closeloop-Idempotency-Key"] == "k-0001"
    assert email["X-Closeloop-Job"] == "Integration nudge"
    assert email["List-Unsubscribe"] == f"<{UNSUBSCRIBE}>"
    assert email["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert email["Date"] is not None
    assert _body(email, "plain").replace("\r\n", "\n") == (
        f"Hi Ada,\nwelcome, Ada & Co.\n\nUnsubscribe: {UNSUBSCRIBE}\n"
    )
    html = _body(email, "html")
    assert "<p>Ada &amp; Co</p>" in html  # autoescaped
    assert html.index('<a href="https://example.com/unsubscribe?token=abc&amp;x=1">') < html.index(
        "</body>"
    )


def test_line_breaks_in_a_payload_never_become_headers(sink: SmtpSink, sender: SmtpSender) -> None:
    # A payload written by an older version, or edited in the state store: the sender cleans again.
    message = _message(
        ["ada@example.com"],
        subject="Hello\r\nBcc: everyone@evil.example\r\n\r\nspoofed body",
        job="Nudge\nX-Injected: yes",
    )
    sender.send(message)
    [received] = sink.received
    assert received.recipients == ("ada@example.com",)
    email = received.message
    assert email["Bcc"] is None and email["X-Injected"] is None
    assert email["Subject"] == "Hello Bcc: everyone@evil.example spoofed body"
    assert email["X-Closeloop-Job"] == "Nudge X-Injected: yes"


def test_a_recipient_smuggled_into_the_payload_is_undeliverable(
    sink: SmtpSink, sender: SmtpSender
) -> None:
    for bad in ("ada@example.com\r\nRCPT TO:<eve@evil.example>", "ada@example.com, eve@x.io"):
        with pytest.raises(UndeliverableError, match="not a usable email address"):
            sender.send(_message([bad]))
    assert sink.received == []


def test_one_connection_serves_many_messages_and_a_dropped_one_is_replaced() -> None:
    port = free_port()
    smtp = SmtpSender("127.0.0.1", port, FROM, timeout=5)
    try:
        with SmtpSink(port=port) as first:
            smtp.send(_message(["ada@example.com"], key="k-1"))
            smtp.send(_message(["ada@example.com"], key="k-2"))
            assert [m["Message-ID"] for m in first.messages] == [
                "<k-1@closeloop>",
                "<k-2@closeloop>",
            ]
        # The server went away while the sender held its connection (a restart, an idle timeout).
        with SmtpSink(port=port) as second:
            smtp.send(_message(["ada@example.com"], key="k-3"))
            assert [m["Message-ID"] for m in second.messages] == ["<k-3@closeloop>"]
    finally:
        smtp.close()


def test_a_partly_refused_email_records_who_was_refused(sink: SmtpSink, sender: SmtpSender) -> None:
    receipt = sender.send(_message(["ada@example.com", "nobody@example.com"]))
    assert receipt.detail == "refused by the server: nobody@example.com (550 5.1.1 no such user)"
    [received] = sink.received
    assert received.recipients == ("ada@example.com",)


def test_every_recipient_refused_for_good_is_undeliverable(
    sink: SmtpSink, sender: SmtpSender
) -> None:
    with pytest.raises(UndeliverableError, match=r"nobody@example.com \(550 5.1.1 no such user\)"):
        sender.send(_message(["nobody@example.com"]))
    # The connection is still good for the next message.
    sender.send(_message(["ada@example.com"]))
    assert [r.recipients for r in sink.received] == [("ada@example.com",)]


def test_temporary_refusals_are_retried_not_dead_lettered() -> None:
    greylisting = {"ada@example.com": "451 4.7.1 greylisted, try again later"}
    with SmtpSink(refuse=greylisting) as sink:
        smtp = SmtpSender(sink.host, sink.port, FROM, timeout=5)
        with pytest.raises(ChannelError, match=r"451 4\.7\.1 greylisted") as raised:
            smtp.send(_message(["ada@example.com"]))
        smtp.close()
    assert not isinstance(raised.value, UndeliverableError)


@pytest.mark.parametrize(
    ("reply", "permanent"),
    [("554 5.7.1 message content rejected", True), ("452 4.3.1 insufficient storage", False)],
)
def test_a_refused_message_is_permanent_only_on_a_5xx_reply(reply: str, permanent: bool) -> None:
    with SmtpSink(data_reply=reply) as sink:
        smtp = SmtpSender(sink.host, sink.port, FROM, timeout=5)
        with pytest.raises(ChannelError, match=re.escape(reply)) as raised:
            smtp.send(_message(["ada@example.com"]))
        smtp.close()
    assert isinstance(raised.value, UndeliverableError) is permanent


def test_an_unreachable_server_is_a_retryable_failure() -> None:
    smtp = SmtpSender("127.0.0.1", free_port(), FROM, timeout=2)
    with pytest.raises(ChannelError, match="cannot reach the SMTP server") as raised:
        smtp.send(_message(["ada@example.com"]))
    assert not isinstance(raised.value, UndeliverableError)


# -- TLS and login ------------------------------------------------------------------------------


def test_starttls_encrypts_the_session(certificate: Certificate) -> None:
    with SmtpSink(starttls=certificate.server_context(), require_starttls=True) as sink:
        smtp = SmtpSender(
            sink.host,
            sink.port,
            FROM,
            timeout=5,
            security="starttls",
            ssl_context=certificate.client_context(),
        )
        smtp.send(_message(["ada@example.com"]))
        smtp.close()
        [received] = sink.received
    assert received.encrypted


def test_starttls_refuses_a_server_that_does_not_offer_it(sink: SmtpSink) -> None:
    smtp = SmtpSender(sink.host, sink.port, FROM, timeout=5, security="starttls")
    with pytest.raises(ChannelError, match="does not offer STARTTLS; refusing to send"):
        smtp.send(_message(["ada@example.com"]))
    assert sink.received == []


def test_an_untrusted_certificate_is_refused(certificate: Certificate) -> None:
    with SmtpSink(starttls=certificate.server_context()) as sink:
        # The default context trusts the system's authorities only, not this self-signed one.
        smtp = SmtpSender(sink.host, sink.port, FROM, timeout=5, security="starttls")
        with pytest.raises(ChannelError, match="CERTIFICATE_VERIFY_FAILED"):
            smtp.send(_message(["ada@example.com"]))
        assert sink.received == []


def test_implicit_tls_encrypts_from_the_first_byte(certificate: Certificate) -> None:
    with SmtpSink(implicit_tls=certificate.server_context()) as sink:
        smtp = SmtpSender(
            "localhost",
            sink.port,
            FROM,
            timeout=5,
            security="ssl",
            ssl_context=certificate.client_context(),
        )
        smtp.send(_message(["ada@example.com"]))
        smtp.close()
        [received] = sink.received
    assert received.encrypted


def test_login_after_starttls(certificate: Certificate) -> None:
    with SmtpSink(starttls=certificate.server_context(), logins={"ada": PASSWORD}) as sink:
        smtp = SmtpSender(
            sink.host,
            sink.port,
            FROM,
            timeout=5,
            security="starttls",
            username="ada",
            password=PASSWORD,
            ssl_context=certificate.client_context(),
        )
        smtp.send(_message(["bob@example.com"]))
        smtp.close()
        [received] = sink.received
    assert received.logged_in_as == "ada" and received.encrypted


def test_a_wrong_password_is_a_retryable_failure_that_never_shows_the_password(
    certificate: Certificate,
) -> None:
    wrong = "wrong-password-0123456789"
    with SmtpSink(starttls=certificate.server_context(), logins={"ada": PASSWORD}) as sink:
        smtp = SmtpSender(
            sink.host,
            sink.port,
            FROM,
            timeout=5,
            security="starttls",
            username="ada",
            password=wrong,
            ssl_context=certificate.client_context(),
        )
        with pytest.raises(ChannelError, match="authentication failed for user 'ada'") as raised:
            smtp.send(_message(["bob@example.com"]))
        assert sink.received == []
    assert not isinstance(raised.value, UndeliverableError)
    assert wrong not in str(raised.value) and wrong not in repr(smtp)
    assert raised.value.__cause__ is None and raised.value.__suppress_context__


def test_a_server_that_requires_login_is_a_configuration_problem_not_a_dead_letter(
    certificate: Certificate,
) -> None:
    with SmtpSink(starttls=certificate.server_context(), logins={"ada": PASSWORD}) as sink:
        smtp = SmtpSender(
            sink.host,
            sink.port,
            FROM,
            timeout=5,
            security="starttls",
            ssl_context=certificate.client_context(),
        )
        with pytest.raises(ChannelError, match="CLOSELOOP_SMTP_USERNAME") as raised:
            smtp.send(_message(["bob@example.com"]))
        smtp.close()
    assert not isinstance(raised.value, UndeliverableError)
