"""Webhook and Slack deliveries to a real HTTP server on loopback; file deliveries on disk."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from closeloop.channels.base import OutboundMessage, Receipt
from closeloop.channels.file import FileSender
from closeloop.channels.signing import sign
from closeloop.channels.slack import SlackSender
from closeloop.channels.webhook import WebhookSender, encode_body
from closeloop.errors import ChannelError, UndeliverableError
from closeloop.services.http_sink import HttpSink

SECRET = "webhook-secret"
KEY = "0123456789abcdef0123456789abcdef01234567"
BODY: dict[str, Any] = {
    "event": "closeloop.action",
    "job": "Integration nudge",
    "account": {"account_id": "acc-1", "name": "Acme"},
    "data": {"note": "é"},
}


def _message(channel: str, payload: dict[str, Any], key: str = KEY) -> OutboundMessage:
    return OutboundMessage(key, channel, "acc-1", "Integration nudge", payload)


def test_a_webhook_arrives_signed_with_its_idempotency_key() -> None:
    with HttpSink(secret=SECRET) as sink:
        sender = WebhookSender(SECRET)
        before = time.time()
        receipt = sender.send(_message("webhook", {"url": f"{sink.url}/hooks/in", "body": BODY}))
        sender.close()
        (request,) = sink.received

    assert receipt == Receipt()
    assert request.signature_ok is True, request.error
    assert request.path == "/hooks/in"
    assert request.idempotency_key == KEY
    assert request.json == BODY
    assert request.body == encode_body(BODY)
    assert request.headers["content-type"] == "application/json"
    assert request.headers["user-agent"] == "closeloop"
    assert abs(int(request.headers["x-closeloop-timestamp"]) - before) <= 2


def test_the_sink_refuses_a_wrong_signature() -> None:
    with HttpSink(secret=SECRET) as sink:
        sender = WebhookSender("another secret")
        with pytest.raises(UndeliverableError, match="HTTP 401: bad signature"):
            sender.send(_message("webhook", {"url": sink.url, "body": BODY}))
        sender.close()
        (request,) = sink.received
    assert request.signature_ok is False
    assert request.error is not None
    assert "does not match" in request.error


def test_the_sink_refuses_a_stale_timestamp() -> None:
    with HttpSink(secret=SECRET) as sink:
        sender = WebhookSender(SECRET, clock=lambda: time.time() - 3600)
        with pytest.raises(UndeliverableError, match="401"):
            sender.send(_message("webhook", {"url": sink.url, "body": BODY}))
        sender.close()
        (request,) = sink.received
    assert request.signature_ok is False
    assert request.error is not None
    assert "old" in request.error


def test_a_webhook_url_is_read_from_the_environment_when_sending() -> None:
    with HttpSink(secret=SECRET) as sink:
        sender = WebhookSender(SECRET, environ={"CRM_HOOK": f"{sink.url}/crm"})
        sender.send(_message("webhook", {"url": "env:CRM_HOOK", "body": BODY}))
        sender.close()
        assert [request.path for request in sink.received] == ["/crm"]


def test_a_server_error_is_retryable_and_the_retry_is_the_same_message() -> None:
    with HttpSink(secret=SECRET, fail_first=1, fail_status=500) as sink:
        sender = WebhookSender(SECRET)
        message = _message("webhook", {"url": sink.url, "body": BODY})
        with pytest.raises(ChannelError, match="HTTP 500: failing on purpose") as failed:
            sender.send(message)
        assert not isinstance(failed.value, UndeliverableError)
        assert sender.send(message) == Receipt()
        sender.close()
        first, second = sink.received
    assert sink.arrivals() == {KEY: 2}
    assert first.body == second.body
    assert first.signature_ok is second.signature_ok is True


@pytest.mark.parametrize("status", [408, 429, 503])
def test_busy_answers_are_retryable(status: int) -> None:
    with HttpSink(status=status) as sink:
        sender = WebhookSender(SECRET)
        with pytest.raises(ChannelError, match=f"HTTP {status}") as failed:
            sender.send(_message("webhook", {"url": sink.url, "body": BODY}))
        sender.close()
    assert not isinstance(failed.value, UndeliverableError)


@pytest.mark.parametrize("status", [400, 404, 410])
def test_a_client_error_is_undeliverable(status: int) -> None:
    with HttpSink(status=status) as sink:
        sender = WebhookSender(SECRET)
        with pytest.raises(UndeliverableError, match=f"refused the message with HTTP {status}"):
            sender.send(_message("webhook", {"url": sink.url, "body": BODY}))
        sender.close()


def test_a_redirect_is_not_followed() -> None:
    with HttpSink(status=307) as sink:
        sender = WebhookSender(SECRET)
        with pytest.raises(UndeliverableError, match="does not follow redirects"):
            sender.send(_message("webhook", {"url": sink.url, "body": BODY}))
        sender.close()
        assert len(sink.received) == 1


def test_a_slow_receiver_times_out_as_a_retryable_failure() -> None:
    with HttpSink(delay=5.0) as sink:
        sender = WebhookSender(SECRET, timeout=0.2)
        with pytest.raises(ChannelError, match=r"did not answer within 0\.2s") as failed:
            sender.send(_message("webhook", {"url": sink.url, "body": BODY}))
        sender.close()
    assert not isinstance(failed.value, UndeliverableError)


def test_an_unreachable_receiver_is_retryable() -> None:
    with HttpSink() as sink:
        url = sink.url  # nothing listens there once the sink has stopped
    sender = WebhookSender(SECRET, timeout=2.0)
    with pytest.raises(
        ChannelError, match=r"cannot reach the webhook at http://127\.0\.0\.1"
    ) as failed:
        sender.send(_message("webhook", {"url": f"{url}/secret-path", "body": BODY}))
    sender.close()
    assert "secret-path" not in str(failed.value)  # a path or query may hold a token


def test_a_signature_a_receiver_checks_by_hand() -> None:
    with HttpSink() as sink:
        sender = WebhookSender(SECRET)
        sender.send(_message("webhook", {"url": sink.url, "body": BODY}))
        sender.close()
        (request,) = sink.received
    timestamp = int(request.headers["x-closeloop-timestamp"])
    assert request.headers["x-closeloop-signature"] == sign(SECRET, timestamp, request.body)


# --- slack -------------------------------------------------------------------------------------


def test_slack_posts_to_the_owner_webhook_or_falls_back_to_the_default() -> None:
    with HttpSink() as sink:
        sender = SlackSender(
            {"default": f"{sink.url}/default", "owner:Dana Scully": f"{sink.url}/dana"}
        )
        owned = sender.send(
            _message("slack", {"route": "owner:Dana Scully", "text": "Acme &amp; Co"}, key="a1")
        )
        fallback = sender.send(
            _message("slack", {"route": "owner:Fox Mulder", "text": "hi"}, key="a2")
        )
        default = sender.send(_message("slack", {"route": "default", "text": "hi"}, key="a3"))
        sender.close()
        requests = sink.received

    assert [request.path for request in requests] == ["/dana", "/default", "/default"]
    assert requests[0].json == {"text": "Acme &amp; Co", "unfurl_links": False}
    assert [request.idempotency_key for request in requests] == ["a1", "a2", "a3"]
    assert owned == default == Receipt()
    assert fallback.detail == "no Slack webhook for owner:Fox Mulder: sent to the default"


def test_slack_without_any_webhook_is_undeliverable() -> None:
    with HttpSink() as sink:
        sender = SlackSender({"owner:Dana Scully": f"{sink.url}/dana"})
        with pytest.raises(UndeliverableError, match="no Slack webhook for owner 'Fox Mulder'"):
            sender.send(_message("slack", {"route": "owner:Fox Mulder", "text": "hi"}))
        sender.close()
        assert sink.received == []


def test_slack_refusals_and_rate_limits() -> None:
    with HttpSink(status=404) as gone:
        sender = SlackSender({"default": gone.url})
        with pytest.raises(UndeliverableError, match=r"Slack webhook for default .* HTTP 404"):
            sender.send(_message("slack", {"route": "default", "text": "hi"}))
        sender.close()
    with HttpSink(status=429) as busy:
        sender = SlackSender({"default": busy.url})
        with pytest.raises(ChannelError, match="HTTP 429") as failed:
            sender.send(_message("slack", {"route": "default", "text": "hi"}))
        sender.close()
    assert not isinstance(failed.value, UndeliverableError)


# --- file --------------------------------------------------------------------------------------


def test_file_deliveries_are_written_once_per_key(tmp_path: Path) -> None:
    sender = FileSender(tmp_path)
    payload = {"folder": "handoff/sales", "data": {"note": "Acme é"}, "account_id": "acc-1"}
    receipt = sender.send(_message("file", payload))
    target = tmp_path / "handoff" / "sales" / f"{KEY}.json"
    first = target.read_bytes()
    sender.send(_message("file", payload))

    assert receipt.detail == f"wrote handoff/sales/{KEY}.json"
    assert target.read_bytes() == first
    assert sorted(p.name for p in target.parent.iterdir()) == [f"{KEY}.json"]  # no temp files
    assert json.loads(first) == {
        "idempotency_key": KEY,
        "channel": "file",
        "job": "Integration nudge",
        "account_id": "acc-1",
        "payload": payload,
    }


def test_override_mode_writes_every_channel_to_its_own_folder(tmp_path: Path) -> None:
    sender = FileSender(tmp_path, override=True)
    sender.send(_message("slack", {"route": "default", "text": "hi"}))
    sender.send(_message("webhook", {"url": "env:CRM_HOOK", "body": BODY}, key="b2"))
    assert json.loads((tmp_path / "slack" / f"{KEY}.json").read_text())["channel"] == "slack"
    assert json.loads((tmp_path / "webhook" / "b2.json").read_text())["payload"]["body"] == BODY


@pytest.mark.parametrize("folder", ["../outside", "/tmp/elsewhere", "a/../../b"])
def test_file_sender_refuses_folders_outside_the_root(tmp_path: Path, folder: str) -> None:
    root = tmp_path / "project"
    with pytest.raises(UndeliverableError, match="would leave the project folder"):
        FileSender(root).send(_message("file", {"folder": folder}))
    assert not (tmp_path / "outside").exists()


def test_file_sender_refuses_a_symlink_out_of_the_root(tmp_path: Path) -> None:
    root = tmp_path / "project"
    root.mkdir()
    (tmp_path / "outside").mkdir()
    (root / "link").symlink_to(tmp_path / "outside")
    with pytest.raises(UndeliverableError, match="through a symlink"):
        FileSender(root).send(_message("file", {"folder": "link"}))
    assert list((tmp_path / "outside").iterdir()) == []


def test_file_sender_refuses_a_key_that_is_not_a_file_name(tmp_path: Path) -> None:
    with pytest.raises(UndeliverableError, match="cannot be a file name"):
        FileSender(tmp_path).send(_message("file", {"folder": "out"}, key="../../x"))
