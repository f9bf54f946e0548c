"""Rendering an email step: recipients, header-safe subjects, located errors, the sandbox.

Templates are small files written per test; nothing here opens a connection (messages the sender
refuses to build fail before it would).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from email.headerregistry import Address
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from closeloop.channels.base import OutboundMessage, RenderContext
from closeloop.channels.email import (
    MAX_RECIPIENTS,
    MAX_SUBJECT_LENGTH,
    EmailStep,
    SmtpSender,
    _parsed_plain_address,
    check,
    plain_address,
    render,
)
from closeloop.channels.templates import TemplateSet
from closeloop.errors import ChannelError, ConfigurationError, RenderError, UndeliverableError

ADA = {"person_id": "p-1", "email": "ada@example.com", "name": "Ada", "role": "admin"}


def _context(
    account: Mapping[str, Any] | None = None,
    contacts: Sequence[Mapping[str, Any]] = (ADA,),
) -> RenderContext:
    return RenderContext(
        job_name="Nudge",
        step_index=0,
        enrollment_id="e-1",
        idempotency_key="k-1",
        arm="treatment",
        account={"account_id": "acc-7", "name": "Acme", **(account or {})},
        contacts=contacts,
        person_id=None,
        unsubscribe_url="https://example.com/unsubscribe?token=t",
        at=datetime(2025, 1, 1, tzinfo=UTC),
    )


def _templates(folder: Path, **files: str) -> TemplateSet:
    for name, text in files.items():
        (folder / name.replace("_txt", ".txt.j2").replace("_html", ".html.j2")).write_text(text)
    return TemplateSet(folder)


def _step(subject: str = "Hello {{ account.name }}", template: str = "welcome") -> EmailStep:
    return EmailStep(send="email", subject=subject, template=template)


# -- the payload --------------------------------------------------------------------------------


def test_the_payload_holds_everything_the_sender_needs(tmp_path: Path) -> None:
    templates = _templates(
        tmp_path,
        welcome_txt="Hi {{ contact.name }} at {{ account.name }}",
        welcome_html="<p>{{ account.name }}</p>",
    )
    rendered = render(_step(), _context({"name": "<Acme & Sons>"}), templates)
    assert rendered.skip is None
    assert rendered.payload == {
        "to": ["ada@example.com"],
        "subject": "Hello <Acme & Sons>",
        "text": "Hi Ada at <Acme & Sons>",  # text is not escaped
        "html": "<p>&lt;Acme &amp; Sons&gt;</p>",  # HTML is
        "unsubscribe_url": "https://example.com/unsubscribe?token=t",
        "dropped_recipients": [],
    }


def test_without_an_html_template_the_email_is_text_only(tmp_path: Path) -> None:
    templates = _templates(tmp_path, welcome_txt="Hi")
    assert render(_step(), _context(), templates).payload["html"] is None


def test_line_breaks_and_control_characters_in_data_never_reach_the_subject(
    tmp_path: Path,
) -> None:
    templates = _templates(tmp_path, welcome_txt="Hi")
    name = "Acme\r\nBcc: everyone@evil.example\t\x00\x1b[31m\u2028Ltd\x85 "
    subject = render(_step(), _context({"name": name}), templates).payload["subject"]
    assert subject == "Hello Acme Bcc: everyone@evil.example [31m Ltd"
    long = render(_step(), _context({"name": "x" * 5000}), templates).payload["subject"]
    assert len(long) == MAX_SUBJECT_LENGTH


def test_unusable_addresses_are_dropped_and_listed(tmp_path: Path) -> None:
    templates = _templates(tmp_path, welcome_txt="Hi")
    contacts: list[dict[str, Any]] = [
        {"email": "ada@example.com\r\nBcc: eve@evil.example"},
        {"email": "ada@example.com, eve@evil.example"},
        {"email": "Eve <eve@evil.example>"},
        {"email": "<eve@evil.example>"},
        {"email": "eve@evil.example (comment)"},
        {"email": "no-domain@"},
        {"email": "@no-local-part.example"},
        {"email": "bób@example.com"},
        {"email": None},  # a person without an email is not a dropped address
        {"email": " bob@example.com "},
        {"email": "BOB@example.com"},  # the same person twice
    ]
    payload = render(_step(), _context(contacts=contacts), templates).payload
    assert payload["to"] == ["bob@example.com"]
    assert payload["dropped_recipients"] == [
        "ada@example.com\r\nBcc: eve@evil.example",
        "ada@example.com, eve@evil.example",
        "Eve <eve@evil.example>",
        "<eve@evil.example>",
        "eve@evil.example (comment)",
        "no-domain@",
        "@no-local-part.example",
        "bób@example.com",
    ]


def test_at_most_five_recipients_oldest_contacts_first(tmp_path: Path) -> None:
    templates = _templates(tmp_path, welcome_txt="Hi")
    contacts = [{"email": f"person{number}@example.com"} for number in range(8)]
    payload = render(_step(), _context(contacts=contacts), templates).payload
    assert payload["to"] == [f"person{number}@example.com" for number in range(MAX_RECIPIENTS)]


def test_an_account_without_people_is_skipped_with_the_reason(tmp_path: Path) -> None:
    templates = _templates(tmp_path, welcome_txt="Hi")
    skipped = render(_step(), _context(contacts=()), templates)
    assert skipped.skip == "no contact with a usable email address" and skipped.payload == {}
    only_bad = render(_step(), _context(contacts=[{"email": "a@b.io\nBcc: c@d.io"}]), templates)
    assert only_bad.skip == (
        "no contact with a usable email address (dropped: 'a@b.io\\nBcc: c@d.io')"
    )


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("ada@example.com", "ada@example.com"),
        ("ada.lovelace+cs@mail.example.co.uk", "ada.lovelace+cs@mail.example.co.uk"),
        ("ada@localhost", "ada@localhost"),
        ("ada@[127.0.0.1]", None),
        ('"ada lovelace"@example.com', None),
        ("ada@example..com", None),
        ("ada@@example.com", None),
        ("ada@example.com;eve@example.com", None),
        (42, None),
    ],
)
def test_plain_addresses(raw: object, expected: str | None) -> None:
    assert plain_address(raw) == expected


_ATOMS = st.lists(
    st.text(alphabet="ab09!#$%&'*+/=?^_`{|}~-", min_size=1, max_size=4), min_size=1, max_size=3
).map(".".join)


@settings(max_examples=1000, deadline=None)
@given(st.tuples(_ATOMS, _ATOMS).map("@".join))
def test_the_fast_path_takes_only_what_the_header_parser_takes(address: str) -> None:
    """Addresses taken without parsing (dot-atom ``local@domain``) are exactly the ones the
    standard library's header parser takes unchanged."""
    parsed = Address(addr_spec=address)
    assert parsed.addr_spec == address and parsed.username and parsed.domain
    assert plain_address(address) == address


@settings(max_examples=2000, deadline=None)
@given(st.text(alphabet=st.sampled_from(list('ab.@-+"\\ <>()[],;:\r\n\x00é')), max_size=12))
def test_any_text_is_judged_as_the_header_parser_judges_it(text: str) -> None:
    assert plain_address(text) == _parsed_plain_address(text.strip())


# -- errors that say where ----------------------------------------------------------------------


def test_an_undefined_variable_names_job_step_account_file_and_line(tmp_path: Path) -> None:
    templates = _templates(tmp_path, welcome_txt="Hi {{ contact.name }},\n\n{{ account.nme }}\n")
    with pytest.raises(RenderError) as raised:
        render(_step(), _context(), templates)
    assert str(raised.value) == (
        "job 'Nudge' step 0, account 'acc-7': welcome.txt.j2:3: undefined variable: "
        "'dict object' has no attribute 'nme'"
    )


def test_an_error_in_the_subject_or_the_html_says_which(tmp_path: Path) -> None:
    templates = _templates(tmp_path, welcome_txt="Hi", welcome_html="<p>\n{{ account.plna }}</p>")
    with pytest.raises(RenderError, match=r"^job 'Nudge' step 0, account 'acc-7' subject:1: "):
        render(_step(subject="{{ acount.name }}"), _context(), templates)
    with pytest.raises(RenderError, match=r"account 'acc-7': welcome\.html\.j2:2: undefined"):
        render(_step(), _context(), templates)


SANDBOX_ESCAPES = [
    "{{ cycler.__init__.__globals__.os.getpid() }}",
    "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "{{ self._TemplateReference__context }}",
    "{{ lipsum.__globals__['os'].getpid() }}",
    "{{ account.__class__.__init__.__globals__ }}",
    "{{ '{0.__class__.__init__.__globals__}'.format(account) }}",
    "{% for c in [].__class__.__base__.__subclasses__() %}{{ c }}{% endfor %}",
]


@pytest.mark.parametrize("escape", SANDBOX_ESCAPES)
def test_templates_cannot_reach_python_internals(
    escape: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[str] = []

    def getpid() -> int:
        calls.append("getpid")
        return 0

    monkeypatch.setattr(os, "getpid", getpid)
    templates = _templates(tmp_path, welcome_txt=f"line one\n{escape}")
    with pytest.raises(RenderError) as in_file:
        render(_step(), _context(), templates)
    assert "welcome.txt.j2:2:" in str(in_file.value)
    with pytest.raises(RenderError) as in_subject:
        render(_step(subject=escape), _context(), templates)
    assert " subject:1:" in str(in_subject.value)
    for error in (in_file.value, in_subject.value):
        assert "refused by the template sandbox" in str(error)
    assert calls == []  # nothing ran (an unsandboxed Environment calls getpid for four of these)


# -- check --------------------------------------------------------------------------------------


def test_check_reports_a_missing_template_with_where_it_looked(tmp_path: Path) -> None:
    problems = check(_step(template="nope"), TemplateSet(tmp_path), _context())
    assert problems == [f"email template 'nope' not found (looked for {tmp_path / 'nope.txt.j2'})"]


def test_check_renders_against_the_sample(tmp_path: Path) -> None:
    templates = _templates(
        tmp_path, welcome_txt="Hi {{ contact.name }}", welcome_html="{% if %}</p>"
    )
    [problem] = check(_step(), templates, _context())
    assert problem.startswith("job 'Nudge' step 0, account 'acc-7': welcome.html.j2:1: ")
    assert "template syntax error" in problem
    (tmp_path / "welcome.html.j2").unlink()
    assert check(_step(), templates, _context()) == []


# -- the templates `closeloop init` writes ------------------------------------------------------


def test_the_starter_templates_render_for_an_account_without_people_or_a_name() -> None:
    folder = resources.files("closeloop.services") / "project_template" / "templates"
    templates = TemplateSet(Path(str(folder)))
    for account, greeting, team in (
        ({"name": "Acme"}, "Hi there,", "Teams at Acme get"),
        ({"name": None}, "Hi there,", "Teams like yours get"),
    ):
        variables = _context(account, contacts=()).template_variables()
        text = templates.render_file("integration_nudge.txt.j2", variables)
        html = templates.render_file("integration_nudge.html.j2", variables, html=True)
        assert text.startswith(greeting) and team in " ".join(text.split())
        assert "None" not in text and "None" not in html
        assert "<p>Hi there,</p>" in html
    nameless = {**ADA, "name": None}
    rendered = render(_step(template="integration_nudge"), _context(contacts=[nameless]), templates)
    assert rendered.payload["text"].startswith("Hi there,")
    assert "<strong>Acme</strong>" in rendered.payload["html"]


# -- messages the sender refuses to build (before any connection) --------------------------------


def _outbound(**changes: Any) -> OutboundMessage:
    payload = {
        "to": ["ada@example.com"],
        "subject": "Hi",
        "text": "Hello",
        "html": None,
        "unsubscribe_url": "https://example.com/u?t=1",
        "dropped_recipients": [],
    }
    key = changes.pop("key", "k-1")
    return OutboundMessage(key, "email", "acc-1", "Nudge", {**payload, **changes})


@pytest.mark.parametrize(
    ("message", "reason"),
    [
        (_outbound(text="\ud800 lone surrogate"), "cannot build the email"),
        (_outbound(text=None), "field 'text' is not text"),
        (_outbound(to="ada@example.com"), "not a list of addresses"),
        (_outbound(to=[]), "no recipient"),
        (_outbound(to=["ada@example.com\r\nBcc: eve@x.io"]), "not a usable email address"),
        (_outbound(unsubscribe_url="javascript:alert(1)"), "unsubscribe link"),
        (_outbound(unsubscribe_url="https://x.io/u>\r\nBcc: e@x.io"), "unsubscribe link"),
        (_outbound(key="k\r\nBcc: eve@x.io"), "cannot be part of a Message-ID"),
        (OutboundMessage("k-1", "email", "acc-1", "Nudge", {"to": ["a@x.io"]}), "missing"),
    ],
)
def test_a_payload_that_cannot_become_an_email_is_undeliverable(
    message: OutboundMessage, reason: str
) -> None:
    # Port 9 on loopback: if the sender got as far as connecting, this would be a ChannelError.
    sender = SmtpSender("127.0.0.1", 9, "cs@example.com", timeout=1)
    with pytest.raises(UndeliverableError, match=reason):
        sender.send(message)


@pytest.mark.parametrize(
    "sender",
    [
        "cs@example.com\r\nBcc: eve@evil.example",
        "cs@example.com, eve@evil.example",
        "not an address",
        "cs@",
        "Team <cs@example.com",
    ],
)
def test_a_bad_sender_address_is_a_configuration_error(sender: str) -> None:
    with pytest.raises(ConfigurationError, match="sender address"):
        SmtpSender("127.0.0.1", 25, sender)


def test_sender_settings_that_cannot_work_are_refused_and_the_password_never_printed() -> None:
    with pytest.raises(ConfigurationError, match="one of none, starttls, ssl"):
        SmtpSender("127.0.0.1", 25, "cs@example.com", security="tls")  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="needs a username"):
        SmtpSender("127.0.0.1", 25, "cs@example.com", password="hunter2-hunter2")
    sender = SmtpSender("h", 25, "cs@example.com", username="ada", password="hunter2-hunter2")
    assert "hunter2" not in repr(sender)
    assert issubclass(UndeliverableError, ChannelError)
