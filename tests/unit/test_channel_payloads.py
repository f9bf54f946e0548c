"""Slack, webhook and file actions: what they render, what ``check`` refuses, and signatures."""

from __future__ import annotations

import hashlib
import hmac
import json
from dataclasses import replace
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from closeloop.channels import file, slack, webhook
from closeloop.channels.base import OutboundMessage, RenderContext
from closeloop.channels.file import FileStep
from closeloop.channels.signing import SignatureError, sign, verify
from closeloop.channels.slack import SlackSender, SlackStep, routes_from_environment
from closeloop.channels.templates import TemplateSet
from closeloop.channels.webhook import WebhookSender, WebhookStep
from closeloop.errors import (
    CloseloopError,
    ConfigurationError,
    RenderError,
    UndeliverableError,
)

# Inline templates never touch the folder: these tests do no I/O.
TEMPLATES = TemplateSet(Path("templates-that-do-not-exist"))
AT = datetime(2024, 3, 4, 9, 30)


def _context(**account: Any) -> RenderContext:
    return RenderContext(
        job_name="Integration nudge",
        step_index=1,
        enrollment_id="enr-1",
        idempotency_key="k" * 40,
        arm="treatment",
        account={"account_id": "acc-1", "name": "Acme", "owner": "Dana Scully", **account},
        contacts=[{"person_id": "p1", "email": "ana@acme.test", "name": "Ana", "role": "admin"}],
        person_id=None,
        unsubscribe_url="https://closeloop.test/u/abc",
        at=AT,
    )


def _message(channel: str, payload: dict[str, Any]) -> OutboundMessage:
    return OutboundMessage("k" * 40, channel, "acc-1", "Integration nudge", payload)


# --- signing -----------------------------------------------------------------------------------

SECRET = "s3cret"
BODY = b'{"account":{"account_id":"acc-1"},"event":"closeloop.action"}'
NOW = 1_718_000_000


def test_a_good_signature_verifies() -> None:
    verify(SECRET, str(NOW), sign(SECRET, NOW, BODY), BODY, now=NOW + 5)


def test_the_signature_is_what_a_stdlib_receiver_computes() -> None:
    expected = hmac.new(SECRET.encode(), f"{NOW}.".encode() + BODY, hashlib.sha256).hexdigest()
    assert sign(SECRET, NOW, BODY) == f"v1={expected}"


@pytest.mark.parametrize(
    ("secret", "body", "now", "message"),
    [
        (SECRET, BODY.replace(b"acc-1", b"acc-2"), NOW, "does not match"),
        ("another secret", BODY, NOW, "does not match"),
        (SECRET, BODY, NOW + 301, "301s old"),
        (SECRET, BODY, NOW - 301, "301s in the future"),
    ],
    ids=["tampered body", "wrong secret", "stale timestamp", "future timestamp"],
)
def test_a_bad_request_is_refused(secret: str, body: bytes, now: int, message: str) -> None:
    with pytest.raises(SignatureError, match=message):
        verify(secret, str(NOW), sign(SECRET, NOW, BODY), body, now=now)


@pytest.mark.parametrize(
    ("timestamp", "signature", "message"),
    [
        (None, "v1=00", "X-Closeloop-Timestamp header is missing"),
        (str(NOW), None, "X-Closeloop-Signature header is missing"),
        ("yesterday", "v1=00", "not whole Unix seconds"),
    ],
)
def test_missing_or_malformed_headers_are_refused(
    timestamp: str | None, signature: str | None, message: str
) -> None:
    with pytest.raises(SignatureError, match=message) as refused:
        verify(SECRET, timestamp, signature, BODY, now=NOW)
    assert isinstance(refused.value, CloseloopError | ValueError)
    assert refused.value.code == "signature_error"


# --- webhook -----------------------------------------------------------------------------------


def test_a_webhook_body_carries_the_job_the_account_and_rendered_data() -> None:
    step = WebhookStep(
        send="webhook",
        url="env:CRM_HOOK",
        data={"task": "Call {{ contact.name }} at {{ account.name }}", "priority": 2, "vip": True},
    )
    context = _context(
        created_at=datetime(2023, 1, 5, 12, 0),
        renewal_date=date(2025, 1, 31),
        arr=Decimal("1200.50"),
        employees=None,
        region=float("nan"),  # a missing value read from the warehouse
    )
    payload = webhook.render(step, context, TEMPLATES).payload

    assert payload["url"] == "env:CRM_HOOK"  # resolved when sending: never stored
    assert payload["body"] == {
        "event": "closeloop.action",
        "idempotency_key": "k" * 40,
        "job": "Integration nudge",
        "step": 1,
        "arm": "treatment",
        "enrollment_id": "enr-1",
        "account": {
            "account_id": "acc-1",
            "name": "Acme",
            "owner": "Dana Scully",
            "created_at": "2023-01-05T12:00:00",
            "renewal_date": "2025-01-31",
            "arr": 1200.5,
            "employees": None,
            "region": None,
        },
        "person_id": None,
        "data": {"task": "Call Ana at Acme", "priority": 2, "vip": True},
        "sent_for": "2024-03-04T09:30:00",
    }
    assert json.loads(webhook.encode_body(payload["body"])) == payload["body"]


def test_the_signed_body_is_compact_json_with_sorted_keys() -> None:
    assert webhook.encode_body({"b": 1, "a": {"d": [1, 2], "c": "é"}}) == (
        b'{"a":{"c":"\\u00e9","d":[1,2]},"b":1}'
    )


@pytest.mark.parametrize(
    "url",
    ["https://hooks.example.com/in", "http://127.0.0.1:8080/x?y=1", "env:CRM_HOOK", "env:_A1"],
)
def test_check_accepts_http_urls_and_environment_variables(url: str) -> None:
    assert webhook.check(WebhookStep(send="webhook", url=url), TEMPLATES, _context()) == []


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("ftp://example.com/x", "not an http(s) URL with a host"),
        ("https://", "not an http(s) URL with a host"),
        ("hooks.example.com/in", "not an http(s) URL with a host"),
        ("https://exa mple.com/", "not an http(s) URL with a host"),
        ("https://example.com:port/", "not an http(s) URL with a host"),
        ("env:1BAD", "environment variable name"),
        ("env:", "environment variable name"),
        ("env:CRM-HOOK", "environment variable name"),
    ],
)
def test_check_refuses_other_urls(url: str, message: str) -> None:
    problems = webhook.check(WebhookStep(send="webhook", url=url), TEMPLATES, _context())
    assert len(problems) == 1
    assert message in problems[0]


def test_check_renders_the_data_templates_against_the_sample() -> None:
    step = WebhookStep(
        send="webhook", url="https://hooks.example.com/in", data={"plan": "{{ account.plan }}"}
    )
    (problem,) = webhook.check(step, TEMPLATES, _context())
    assert "data.plan" in problem
    assert "undefined" in problem
    assert "job 'Integration nudge' step 1, account 'acc-1'" in problem


def test_a_webhook_url_from_an_unset_variable_is_undeliverable() -> None:
    sender = WebhookSender(SECRET, environ={})
    with pytest.raises(UndeliverableError, match="CRM_HOOK, which is not set"):
        sender.send(_message("webhook", {"url": "env:CRM_HOOK", "body": {}}))
    sender.close()


def test_a_variable_that_holds_no_url_is_undeliverable_without_showing_its_value() -> None:
    sender = WebhookSender(SECRET, environ={"CRM_HOOK": "token-abc123"})
    with pytest.raises(UndeliverableError, match="CRM_HOOK does not hold") as refused:
        sender.send(_message("webhook", {"url": "env:CRM_HOOK", "body": {}}))
    assert "token-abc123" not in str(refused.value)
    sender.close()


def test_webhooks_need_a_secret() -> None:
    with pytest.raises(ConfigurationError, match="secret"):
        WebhookSender("")


def test_json_safe_turns_warehouse_values_into_json() -> None:
    value = {
        "when": datetime(2024, 1, 2, 3, 4, 5),
        "tags": ("a", "b"),
        "amount": Decimal("NaN"),
        "nested": {1: [Decimal("2.5"), float("inf")]},
    }
    assert webhook.json_safe(value) == {
        "when": "2024-01-02T03:04:05",
        "tags": ["a", "b"],
        "amount": None,
        "nested": {"1": [2.5, None]},
    }


# --- slack -------------------------------------------------------------------------------------


def test_slack_goes_to_the_owner_route() -> None:
    step = SlackStep(send="slack", text="{{ account.name }} has not connected an integration")
    payload = slack.render(step, _context(), TEMPLATES).payload
    assert payload == {
        "route": "owner:Dana Scully",
        "owner": "Dana Scully",
        "text": "Acme has not connected an integration",
        "account_url": None,
    }


@pytest.mark.parametrize(
    ("to", "owner"), [("default", "Dana Scully"), ("owner", None), ("owner", "  ")]
)
def test_slack_goes_to_the_default_route(to: str, owner: str | None) -> None:
    step = SlackStep.model_validate({"send": "slack", "text": "hi", "to": to})
    payload = slack.render(step, _context(owner=owner), TEMPLATES).payload
    assert payload["route"] == "default"


def test_slack_text_is_escaped_so_data_cannot_inject_markup() -> None:
    step = SlackStep(send="slack", text="*{{ account.name }}* needs a call")
    context = _context(name="<!channel> Acme & Co <https://evil.test|click>")
    text = slack.render(step, context, TEMPLATES).payload["text"]
    assert text == ("*&lt;!channel&gt; Acme &amp; Co &lt;https://evil.test|click&gt;* needs a call")


def test_a_slack_link_is_appended_with_the_account_name() -> None:
    step = SlackStep(
        send="slack",
        text="Call them",
        link="https://crm.example.com/accounts/{{ account.account_id }}?tab=a&b=|",
    )
    payload = slack.render(step, _context(name="A <B>"), TEMPLATES).payload
    assert payload["account_url"] == "https://crm.example.com/accounts/acc-1?tab=a&b=|"
    assert payload["text"] == (
        "Call them\n<https://crm.example.com/accounts/acc-1?tab=a&amp;b=%7C|A &lt;B&gt;>"
    )


def test_a_link_that_renders_empty_is_left_out() -> None:
    step = SlackStep(send="slack", text="hi", link="{{ account.crm_url or '' }}")
    payload = slack.render(step, _context(crm_url=None), TEMPLATES).payload
    assert payload["text"] == "hi"
    assert payload["account_url"] is None


def test_a_link_that_is_not_a_url_is_a_render_error() -> None:
    step = SlackStep(send="slack", text="hi", link="javascript:{{ account.name }}")
    with pytest.raises(RenderError, match="link: 'javascript:Acme' is not an http"):
        slack.render(step, _context(), TEMPLATES)
    assert slack.check(step, TEMPLATES, _context()) != []


def test_an_empty_slack_text_is_a_skip() -> None:
    step = SlackStep(send="slack", text="{% if account.arr %}big{% endif %}")
    rendered = slack.render(step, _context(arr=0), TEMPLATES)
    assert rendered.skip == "the Slack text rendered empty"


def test_slack_check_reports_template_errors() -> None:
    step = SlackStep(send="slack", text="{{ account.nope }}")
    (problem,) = slack.check(step, TEMPLATES, _context())
    assert "text" in problem
    assert "undefined" in problem
    assert (
        slack.check(SlackStep(send="slack", text="{{ account.name }}"), TEMPLATES, _context()) == []
    )


@pytest.mark.parametrize(
    ("route", "message"),
    [
        ("owner:Dana Scully", "no Slack webhook for owner 'Dana Scully' and no default"),
        ("default", "no default Slack webhook"),
    ],
)
def test_slack_without_a_route_is_undeliverable(route: str, message: str) -> None:
    sender = SlackSender({})
    with pytest.raises(UndeliverableError, match=message):
        sender.send(_message("slack", {"route": route, "text": "hi"}))
    sender.close()


def test_slack_routes_come_from_environment_variables() -> None:
    environ = {"SLACK_CS": "https://hooks.slack.test/a", "SLACK_DANA": "https://hooks.slack.test/b"}
    routes = routes_from_environment("SLACK_CS", {"Dana Scully": "SLACK_DANA"}, environ)
    assert routes == {
        "default": "https://hooks.slack.test/a",
        "owner:Dana Scully": "https://hooks.slack.test/b",
    }
    with pytest.raises(
        ConfigurationError, match=r"SLACK_MULDER \(for owner:Fox Mulder\) is not set"
    ):
        routes_from_environment(None, {"Fox Mulder": "SLACK_MULDER"}, environ)


def test_slack_routes_that_are_not_urls_are_named_without_their_value() -> None:
    with pytest.raises(ConfigurationError, match="owner:Dana") as refused:
        SlackSender({"owner:Dana": "xoxb-secret"})
    assert "xoxb-secret" not in str(refused.value)


# --- file --------------------------------------------------------------------------------------


def test_a_file_payload_names_its_folder_and_rendered_data() -> None:
    step = FileStep(send="file", folder="handoff/sales", data={"note": "{{ account.name }}!"})
    payload = file.render(step, _context(), TEMPLATES).payload
    assert payload == {
        "folder": "handoff/sales",
        "data": {"note": "Acme!"},
        "account_id": "acc-1",
        "person_id": None,
        "job": "Integration nudge",
        "step": 1,
    }


@pytest.mark.parametrize(
    "folder", ["..", "../outside", "a/../../b", "/etc", "C:\\Windows", "a\\..\\..\\b"]
)
def test_file_check_refuses_folders_that_leave_the_project(folder: str) -> None:
    (problem,) = file.check(FileStep(send="file", folder=folder), TEMPLATES, _context())
    assert "would leave the project folder" in problem


@pytest.mark.parametrize("folder", ["deliveries", "deliveries/onboarding", "./out", "a..b"])
def test_file_check_accepts_folders_inside_the_project(folder: str) -> None:
    assert file.check(FileStep(send="file", folder=folder), TEMPLATES, _context()) == []


def test_a_person_target_is_in_the_payloads() -> None:
    context = replace(_context(), person_id="p1")
    step = WebhookStep(send="webhook", url="https://hooks.example.com/in")
    assert webhook.render(step, context, TEMPLATES).payload["body"]["person_id"] == "p1"
    assert file.render(FileStep(send="file"), context, TEMPLATES).payload["person_id"] == "p1"
