"""Opt-outs on real stores: signed unsubscribe links, CSV imports, and every channel honouring them.

Tokens are made with the project's own secret, another secret, and a signer whose clock the test
sets in the past, so forged, foreign and expired links are known to be each. Email goes to an SMTP
server and webhooks to an HTTP server on loopback.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from itsdangerous import TimestampSigner, URLSafeTimedSerializer

from closeloop.channels.email import EMAIL, SmtpSender
from closeloop.channels.webhook import WEBHOOK, WebhookSender
from closeloop.data.warehouse import Warehouse
from closeloop.engine import schema
from closeloop.engine.optouts import SALT, UnsubscribeLinks
from closeloop.engine.steps import OutboxStatus
from closeloop.engine.tick import ExitReason
from closeloop.errors import DataImportError
from closeloop.services import engine_runs, operations
from closeloop.services.http_sink import HttpSink
from closeloop.services.project import Workspace, init_project, open_workspace
from closeloop.services.smtp_sink import SmtpSink
from support import Backends

DAY0 = datetime(2024, 3, 1)
SECRET = "0f3c9a7e1b5d2468ace0bdf13579ace2468bdf0"
URL_TEMPLATE = "https://example.com/unsubscribe?token={token}"
ACCOUNTS = ["a0", "a1", "a2", "a3"]

JOBS = """\
jobs:
  - name: Reach
    audience: 'count(event "integration_connected") = 0'
    goal: 'count(event "integration_connected") >= 1'
    duration_days: 2
    re_entry: {after_days: 1}
    observational: true
    holdout: 0
    steps:
      - send: email
        subject: "Hello {{ account.name }}"
        template: integration_nudge
      - send: webhook
        url: env:OPTOUT_TEST_HOOK
"""


def _seed(warehouse: Warehouse, ids: list[str]) -> None:
    created = [DAY0 - timedelta(hours=6)] * len(ids)
    warehouse.append(
        "accounts",
        warehouse.arrow_for(
            "accounts",
            {"account_id": ids, "name": [f"Company {a}" for a in ids], "created_at": created},
        ),
    )
    warehouse.append(
        "people",
        warehouse.arrow_for(
            "people",
            {
                "person_id": [f"{a}-p" for a in ids],
                "account_id": ids,
                "email": [f"admin@{a}.test" for a in ids],
                "created_at": created,
            },
        ),
    )


@pytest.fixture
def workspace(tmp_path: Path, backends: Backends) -> Iterator[Workspace]:
    folder = tmp_path / "project"
    init_project(folder, name="optouts")
    (folder / "jobs.yaml").write_text(JOBS, encoding="utf-8")
    environ = {**backends.environ(), "CLOSELOOP_SECRET": SECRET, "CLOSELOOP_AUTHOR": "ada"}
    with open_workspace(folder, environ=environ) as opened:
        _seed(opened.warehouse, ACCOUNTS)
        yield opened


class _PastSigner(TimestampSigner):
    """Signs with a timestamp 400 days ago (the project's links are valid for 365)."""

    def get_timestamp(self) -> int:
        return int(time.time()) - 400 * 86400


def _token(link: str) -> str:
    return link.split("token=", 1)[1]


def test_a_signed_link_opts_the_account_out_and_bad_links_are_refused(
    workspace: Workspace,
) -> None:
    links = engine_runs.unsubscribe_links(workspace)
    link = links.url("a1")
    assert link.startswith("https://example.com/unsubscribe?token=")
    at = DAY0 + timedelta(hours=3)
    assert operations.optout_from_link(workspace, link, at) == "a1"
    # The same link again (a second click) changes nothing; the bare token works too.
    assert operations.optout_from_link(workspace, _token(link), at + timedelta(hours=1)) == "a1"
    (optout,) = operations.optout_list(workspace)
    # Public results carry UTC date-times with their offset.
    assert (optout.account_id, optout.opted_out_at, optout.source, optout.actor) == (
        "a1",
        at.replace(tzinfo=UTC),
        "link",
        "unsubscribe link",
    )

    token = _token(links.url("a2"))
    payload, stamp, signature = token.split(".")
    tampered = ("B" if payload[0] != "B" else "C") + payload[1:]
    forged = ".".join((tampered, stamp, signature))
    foreign = UnsubscribeLinks("9" + SECRET[1:], URL_TEMPLATE).url("a2")
    expired = URLSafeTimedSerializer(SECRET, salt=SALT, signer=_PastSigner).dumps({"account": "a2"})
    for bad, reason in (
        (forged, "signature does not match"),
        (URL_TEMPLATE.replace("{token}", forged), "signature does not match"),
        (foreign, "signature does not match"),
        (expired, "expired (links are valid for 365 days)"),
        ("https://example.com/unsubscribe?account=a2", "no token= parameter"),
    ):
        with pytest.raises(
            operations.TokenError, match=reason.replace("(", r"\(").replace(")", r"\)")
        ):
            operations.optout_from_link(workspace, bad, at)
    # The untampered token is fine with the right secret, refused when it is too old for max_age.
    assert links.account_of(token) == "a2"
    strict = UnsubscribeLinks(SECRET, URL_TEMPLATE, max_age=timedelta(seconds=1))
    old = URLSafeTimedSerializer(SECRET, salt=SALT, signer=_PastSigner).dumps({"account": "a3"})
    with pytest.raises(operations.TokenError, match="expired"):
        strict.account_of(old)
    assert [o.account_id for o in operations.optout_list(workspace)] == ["a1"]


def test_no_channel_sends_to_an_opted_out_account_and_its_enrollments_end(
    workspace: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    (launch,) = engine_runs.tick(workspace, DAY0, launch=True)
    assert launch.entered == 4
    assert launch.outbox == {OutboxStatus.PENDING: 8}  # an email and a webhook each
    opted_at = DAY0 + timedelta(hours=6)
    link = engine_runs.unsubscribe_links(workspace).url("a1")
    assert operations.optout_from_link(workspace, link, opted_at) == "a1"
    # a4 (a new account) opted out before it ever enrolled.
    _seed(workspace.warehouse, ["a4"])
    assert operations.optout_accounts(workspace, ["a4"], source="cli", at=opted_at) == 1

    with SmtpSink() as smtp, HttpSink(secret=SECRET) as hooks:
        monkeypatch.setenv("OPTOUT_TEST_HOOK", f"{hooks.url}/crm")
        channels = {
            EMAIL: SmtpSender(smtp.host, smtp.port, "cs@example.com"),
            WEBHOOK: WebhookSender(SECRET),
        }
        result = engine_runs.dispatch(workspace, DAY0 + timedelta(hours=7), channels)
        emailed = sorted(message.recipients[0] for message in smtp.received)
        hooked = sorted(request.json["account"]["account_id"] for request in hooks.received)
    assert (len(result.sent), result.skipped, result.dead) == (6, 2, 0)
    assert emailed == ["admin@a0.test", "admin@a2.test", "admin@a3.test"]
    assert hooked == ["a0", "a2", "a3"]
    o = schema.outbox
    with workspace.store.engine.connect() as connection:
        skipped = connection.execute(
            sa.select(o.c.channel, o.c.status, o.c.last_error).where(o.c.account_id == "a1")
        ).all()
    assert sorted(tuple(row) for row in skipped) == [
        (EMAIL, OutboxStatus.SKIPPED, "the account opted out"),
        (WEBHOOK, OutboxStatus.SKIPPED, "the account opted out"),
    ]

    # The next tick ends a1's enrollment when it opted out; a4 never enters.
    (next_tick,) = engine_runs.tick(workspace, DAY0 + timedelta(days=1))
    assert (next_tick.entered, next_tick.exited) == (0, 1)
    ends = {
        str(r["account_id"]): (r["exit_reason"], r["exited_at"])
        for r in workspace.store.enrollments_table("Reach").to_pylist()
    }
    assert ends["a1"] == (ExitReason.OPTED_OUT, opted_at)
    # Day 2: the others time out; day 4 (re-entry after 1 day): they enter again, a1 never does.
    engine_runs.tick(workspace, DAY0 + timedelta(days=2))
    (again,) = engine_runs.tick(workspace, DAY0 + timedelta(days=4))
    assert again.entered == 3
    entered = [str(r["account_id"]) for r in workspace.store.enrollments_table("Reach").to_pylist()]
    assert sorted(entered) == ["a0", "a0", "a1", "a2", "a2", "a3", "a3"]


def test_import_a_csv_of_opt_outs_and_list_them(workspace: Workspace, tmp_path: Path) -> None:
    operations.optout_accounts(workspace, ["a0"], source="cli", reason="asked", at=DAY0)
    csv_file = tmp_path / "unsubscribed.csv"
    # A byte-order mark, as spreadsheet exports write; a0 is known, a2 appears twice.
    csv_file.write_text("\ufeffaccount_id,email\na2,x@a2.test\na0,y@a0.test\na2,z@a2.test\na3,\n")
    assert operations.optout_import(workspace, csv_file, DAY0 + timedelta(days=1)) == 2
    assert operations.optout_import(workspace, csv_file, DAY0 + timedelta(days=2)) == 0
    listed = [
        (o.account_id, o.opted_out_at.replace(tzinfo=None), o.source, o.actor, o.reason)
        for o in operations.optout_list(workspace)
    ]
    assert listed == [
        ("a0", DAY0, "cli", "ada", "asked"),
        ("a2", DAY0 + timedelta(days=1), "import", "ada", None),
        ("a3", DAY0 + timedelta(days=1), "import", "ada", None),
    ]

    no_column = tmp_path / "no_column.csv"
    no_column.write_text("id\na1\n")
    with pytest.raises(DataImportError, match="needs an account_id column"):
        operations.optout_import(workspace, no_column)
    with pytest.raises(DataImportError, match="cannot read"):
        operations.optout_import(workspace, tmp_path / "missing.csv")
    # Nothing from the refused files was recorded.
    assert len(operations.optout_list(workspace)) == 3


def test_an_empty_account_id_is_reported_at_its_line_of_the_file(
    workspace: Workspace, tmp_path: Path
) -> None:
    # A blank line before the bad row: the reader skips it, the line number must not.
    empty_row = tmp_path / "empty_row.csv"
    empty_row.write_text("account_id\na1\n\n ,\n")
    with pytest.raises(DataImportError, match=r"empty_row\.csv:4: account_id is empty"):
        operations.optout_import(workspace, empty_row)
    assert operations.optout_list(workspace) == []
