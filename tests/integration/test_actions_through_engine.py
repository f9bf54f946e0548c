"""Every action kind end to end: a tick plans it, the dispatcher sends it to a real receiver.

Webhooks and Slack messages go to HTTP servers on loopback (Slack routed by owner from the
environment variables closeloop.yaml names), emails to an SMTP server, attribute writes to the
warehouse's ``attribute_history``, referrals to the other job's next tick, files to the project
folder. Each delivery carries its outbox idempotency key; a resend of the same key changes nothing.

The ticks run at the wall clock's time (``NOW``) because referrals and attribute writes are
stamped with the wall clock when they are sent.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from closeloop.channels.signing import sign
from closeloop.data.warehouse import Warehouse
from closeloop.engine import schema
from closeloop.engine.assignment import HOLDOUT, TREATMENT, assign_variant
from closeloop.engine.state import utc_now
from closeloop.engine.steps import OutboxStatus
from closeloop.services import engine_runs
from closeloop.services.http_sink import HttpSink
from closeloop.services.project import Workspace, init_project, open_workspace
from closeloop.services.smtp_sink import SmtpSink
from support import Backends

SECRET = "5e1f0c2b7a9d4e6f8a0b1c2d3e4f5a6b7c8d9e0f"
RATE = 5.0  # webhooks per second: six take >= 1 s (about 0.2 s for everything unlimited)
# Step indexes of the Actions job, in order.
WEBHOOK, SLACK, SET_ATTRIBUTE, ENROLL, FILE = range(5)
CONFIG = f"""
slack: {{default: CL_TEST_SLACK_DEFAULT, owners: {{"ada": CL_TEST_SLACK_ADA}}}}
rate_limits: {{webhook: {RATE:g}}}
"""
JOBS = """\
jobs:
  - name: Actions
    audience: 'count(event "integration_connected") = 0'
    goal: 'count(event "integration_connected") >= 1'
    duration_days: 30
    observational: true
    holdout: 0
    priority: 2
    steps:
      - send: webhook
        url: env:CL_TEST_WEBHOOK
        data: {note: "{{ account.name }} signed up", weight: 2}
      - send: slack
        text: "{{ account.name }} could use a hand"
      - send: set_attribute
        attribute: nudged_by
        value: "{{ job.name }}"
      - send: enroll
        job: Followup
      - send: file
        folder: handoff/crm
        data: {plan: "{{ account.plan }}"}
  - name: Followup
    audience: 'plan = "no such plan"'
    exclusions:
      - 'plan = "enterprise"'
    goal: 'count(event "integration_connected") >= 1'
    duration_days: 30
    holdout: 0.5
    priority: 1
    steps:
      - send: email
        subject: "Following up, {{ account.name }}"
        template: integration_nudge
"""
# account -> (owner, plan)
ACCOUNTS: dict[str, tuple[str | None, str]] = {
    "a0": ("ada", "pro"),
    "a1": ("grace", "pro"),
    "a2": (None, "enterprise"),
    "a3": ("ada", "starter"),
    "a4": (None, "pro"),
    "a5": ("grace", "starter"),
}


@dataclass
class Setup:
    workspace: Workspace
    smtp: SmtpSink
    webhook: HttpSink
    slack_default: HttpSink
    slack_ada: HttpSink
    now: datetime


def _seed(warehouse: Warehouse, created: datetime) -> None:
    ids = list(ACCOUNTS)
    warehouse.append(
        "accounts",
        warehouse.arrow_for(
            "accounts",
            {
                "account_id": ids,
                "name": [f"Company {a}" for a in ids],
                "owner": [ACCOUNTS[a][0] for a in ids],
                "plan": [ACCOUNTS[a][1] for a in ids],
                "created_at": [created] * len(ids),
            },
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
                "created_at": [created] * len(ids),
            },
        ),
    )


@pytest.fixture
def setup(tmp_path: Path, backends: Backends, monkeypatch: pytest.MonkeyPatch) -> Iterator[Setup]:
    folder = tmp_path / "project"
    init_project(folder, name="actions")
    (folder / "jobs.yaml").write_text(JOBS, encoding="utf-8")
    with (folder / "closeloop.yaml").open("a", encoding="utf-8") as file:
        file.write(CONFIG)
    now = utc_now().replace(microsecond=0)
    with ExitStack() as stack:
        smtp = stack.enter_context(SmtpSink())
        webhook = stack.enter_context(HttpSink(secret=SECRET))
        slack_default = stack.enter_context(HttpSink())
        slack_ada = stack.enter_context(HttpSink())
        monkeypatch.setenv("CL_TEST_WEBHOOK", f"{webhook.url}/crm/hook")
        monkeypatch.setenv("CL_TEST_SLACK_DEFAULT", f"{slack_default.url}/default")
        monkeypatch.setenv("CL_TEST_SLACK_ADA", f"{slack_ada.url}/ada")
        environ = {
            **backends.environ(),
            "CLOSELOOP_SECRET": SECRET,
            "CLOSELOOP_SMTP_HOST": smtp.host,
            "CLOSELOOP_SMTP_PORT": str(smtp.port),
        }
        workspace = stack.enter_context(open_workspace(folder, environ=environ))
        _seed(workspace.warehouse, now - timedelta(hours=6))
        yield Setup(workspace, smtp, webhook, slack_default, slack_ada, now)


def _outbox(workspace: Workspace, job: str = "Actions") -> list[dict[str, object]]:
    o = schema.outbox
    with workspace.store.engine.connect() as connection:
        rows = connection.execute(sa.select(o).where(o.c.job_name == job).order_by(o.c.id))
        return [dict(row) for row in rows.mappings()]


def _keys(workspace: Workspace, step: int) -> dict[str, str]:
    """account -> idempotency key of the Actions job's message at ``step``."""
    return {
        str(row["account_id"]): str(row["idempotency_key"])
        for row in _outbox(workspace)
        if row["step_index"] == step
    }


def _attribute_rows(workspace: Workspace) -> list[dict[str, object]]:
    table = workspace.warehouse.table("attribute_history")
    return sorted(table.to_pyarrow().to_pylist(), key=lambda row: str(row["entity_id"]))


def _referrals(workspace: Workspace) -> list[dict[str, object]]:
    r = schema.referrals
    with workspace.store.engine.connect() as connection:
        rows = connection.execute(sa.select(r).order_by(r.c.account_id)).mappings()
        return [dict(row) for row in rows]


def test_every_action_kind_reaches_its_receiver_with_its_idempotency_key(setup: Setup) -> None:
    workspace, now = setup.workspace, setup.now
    ticked = {r.job_name: r for r in engine_runs.tick(workspace, now, launch=True)}
    assert (ticked["Actions"].entered, ticked["Followup"].entered) == (6, 0)
    assert ticked["Actions"].outbox == {OutboxStatus.PENDING: 30}

    started = time.monotonic()
    # Simulated time an hour ahead: it decides what is due, and write-backs are recorded as of it
    # (a backfill that sends writes its attributes in the past it replays, not today).
    dispatched_at = now + timedelta(hours=1)
    result = engine_runs.dispatch(workspace, dispatched_at)
    elapsed = time.monotonic() - started
    assert (len(result.sent), result.retried, result.dead, result.skipped) == (30, 0, 0, 0)
    # Six webhooks at most RATE per second: the sends span at least five intervals.
    assert elapsed >= (len(ACCOUNTS) - 1) / RATE

    # Webhook: signed, the Idempotency-Key is the outbox key, the body names job, step, account.
    keys = _keys(workspace, WEBHOOK)
    requests = {
        request.json["account"]["account_id"]: request for request in setup.webhook.received
    }
    assert set(requests) == set(ACCOUNTS)
    for account, request in requests.items():
        assert request.signature_ok is True, request.error
        assert request.path == "/crm/hook"
        assert request.idempotency_key == request.json["idempotency_key"] == keys[account]
        timestamp = int(request.headers["x-closeloop-timestamp"])
        assert request.headers["x-closeloop-signature"] == sign(SECRET, timestamp, request.body)
        assert request.json["job"] == "Actions" and request.json["step"] == WEBHOOK
        assert request.json["data"] == {"note": f"Company {account} signed up", "weight": 2}
        assert request.json["account"]["owner"] == ACCOUNTS[account][0]

    # Slack: ada's accounts to ada's webhook; grace has none and a2, a4 no owner: the default.
    slack_keys = _keys(workspace, SLACK)
    by_route = {
        "ada": setup.slack_ada.received,
        "default": setup.slack_default.received,
    }
    routed = {
        name: sorted(_account_of(slack_keys, r.idempotency_key) for r in received)
        for name, received in by_route.items()
    }
    assert routed == {"ada": ["a0", "a3"], "default": ["a1", "a2", "a4", "a5"]}
    assert all(r.path == "/ada" for r in setup.slack_ada.received)
    texts = {r.json["text"] for r in setup.slack_ada.received}
    assert texts == {"Company a0 could use a hand", "Company a3 could use a hand"}
    details = {d.account_id: d.detail for d in result.sent if d.channel == "slack"}
    assert details == {
        "a0": None,
        "a1": "no Slack webhook for owner:grace: sent to the default",
        "a2": None,
        "a3": None,
        "a4": None,
        "a5": "no Slack webhook for owner:grace: sent to the default",
    }

    # set_attribute: one row per account, stamped with the dispatch's wall-clock time.
    attribute_keys = _keys(workspace, SET_ATTRIBUTE)
    rows = _attribute_rows(workspace)
    assert [(r["entity"], r["entity_id"], r["name"], r["value"], r["source"]) for r in rows] == [
        ("account", account, "nudged_by", '"Actions"', "job:Actions") for account in ACCOUNTS
    ]
    assert {str(r["entity_id"]): r["write_id"] for r in rows} == attribute_keys
    assert all(r["valid_from"] == dispatched_at for r in rows)

    # enroll: a referral per account, keyed by the delivery, open until Followup ticks.
    referrals = _referrals(workspace)
    assert [(r["account_id"], r["job_name"], r["from_job"]) for r in referrals] == [
        (account, "Followup", "Actions") for account in ACCOUNTS
    ]
    assert {str(r["account_id"]): r["idempotency_key"] for r in referrals} == _keys(
        workspace, ENROLL
    )
    assert all(r["consumed_at"] is None for r in referrals)

    # file: one JSON document per account under the project folder, named by its key.
    folder = workspace.settings.project_dir / "handoff" / "crm"
    file_keys = _keys(workspace, FILE)
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        f"{k}.json" for k in file_keys.values()
    )
    for account, key in file_keys.items():
        document = json.loads((folder / f"{key}.json").read_text())
        assert document["idempotency_key"] == key
        assert (document["channel"], document["job"], document["account_id"]) == (
            "file",
            "Actions",
            account,
        )
        assert document["payload"]["data"] == {"plan": ACCOUNTS[account][1]}

    # A dispatcher that died after sending and before recording: the lease runs out and the
    # same keys go out again. The write-back and the referral are not repeated.
    o = schema.outbox
    with workspace.store.engine.begin() as connection:
        connection.execute(
            o.update()
            .where(o.c.job_name == "Actions")
            .values(status=OutboxStatus.SENDING, claimed_at=utc_now() - timedelta(hours=1))
        )
    again = engine_runs.dispatch(workspace, now + timedelta(hours=1))
    assert len(again.sent) == 30
    assert _attribute_rows(workspace) == rows
    assert _referrals(workspace) == referrals
    assert setup.webhook.arrivals() == {key: 2 for key in keys.values()}
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        f"{k}.json" for k in file_keys.values()
    )

    # Followup's next tick enrolls the referred accounts, randomized by its own salt; its
    # exclusion keeps the enterprise account out; every referral is consumed either way.
    followup_at = now + timedelta(hours=2)
    (followup,) = engine_runs.tick(workspace, followup_at, "Followup")
    record = workspace.store.job_record("Followup")
    expected = {
        account: assign_variant(record.salt, account, 0.5, [(TREATMENT, 1.0)])
        for account in ACCOUNTS
        if ACCOUNTS[account][1] != "enterprise"
    }
    arms = {
        str(r["account_id"]): r["arm"]
        for r in workspace.store.enrollments_table("Followup").to_pylist()
    }
    assert followup.entered == 5
    assert arms == expected
    assert {r["consumed_at"] for r in _referrals(workspace)} == {followup_at}
    (later,) = engine_runs.tick(workspace, followup_at + timedelta(hours=1), "Followup")
    assert later.entered == 0
    sent = engine_runs.dispatch(workspace, followup_at + timedelta(hours=1))
    treated = sorted(a for a, arm in expected.items() if arm != HOLDOUT)
    assert sorted(d.account_id for d in sent.sent) == treated
    assert sorted(m.recipients[0] for m in setup.smtp.received) == [
        f"admin@{a}.test" for a in treated
    ]


def _account_of(keys: dict[str, str], key: str | None) -> str:
    return next(account for account, known in keys.items() if known == key)


def test_deliver_to_writes_every_message_to_files_and_sends_nothing(
    setup: Setup, tmp_path: Path
) -> None:
    workspace, now = setup.workspace, setup.now
    engine_runs.tick(workspace, now, launch=True)
    before = _outbox(workspace)
    dry = tmp_path / "dry"
    result = engine_runs.rehearse_dispatch(workspace, now + timedelta(hours=1), dry)
    assert (len(result.sent), result.dead) == (30, 0)
    # A rehearsal records nothing: the outbox is exactly as it was, ready for the real dispatch.
    assert _outbox(workspace) == before
    pending = [row for row in before if row["status"] == OutboxStatus.PENDING]
    written = {(path.parent.name, path.stem) for path in dry.rglob("*.json")}
    assert written == {(str(row["channel"]), str(row["idempotency_key"])) for row in pending}
    for path in dry.rglob("*.json"):
        assert json.loads(path.read_text())["idempotency_key"] == path.stem
    # Nothing left the machine, nothing was written back or referred, no project files.
    assert setup.webhook.received == []
    assert setup.slack_default.received == [] and setup.slack_ada.received == []
    assert setup.smtp.received == []
    assert _attribute_rows(workspace) == []
    assert _referrals(workspace) == []
    assert not (workspace.settings.project_dir / "handoff").exists()
    # The real dispatch afterwards sends all of them.
    sent = engine_runs.dispatch(workspace, now + timedelta(hours=1))
    assert len(sent.sent) == len(pending)


def test_an_enroll_action_in_a_sending_backfill_reaches_the_other_job(setup: Setup) -> None:
    """A backfill with --send replays the past: the referral its dispatch records at day 0
    must be seen by Followup's tick at day 1, as it would be in real time."""
    workspace = setup.workspace
    start = datetime(2024, 3, 1)
    warehouse = workspace.warehouse
    warehouse.append(
        "accounts",
        warehouse.arrow_for(
            "accounts",
            {
                "account_id": ["past"],
                "name": ["Past Co"],
                "plan": ["pro"],
                "created_at": [start - timedelta(hours=6)],
            },
        ),
    )
    result = engine_runs.backfill(
        workspace, start, start + timedelta(days=2), send=True, launch=True
    )
    (referral,) = [r for r in _referrals(workspace) if r["account_id"] == "past"]
    entered = {(t.job_name, t.at): t.entered for t in result.ticks}
    assert entered[("Followup", start + timedelta(days=1))] == 1, (
        f"referred at {referral['referred_at']}, consumed at {referral['consumed_at']}"
    )
