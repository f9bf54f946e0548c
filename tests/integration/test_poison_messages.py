"""Poison messages: hostile data, a template that fails for one account, a sender with a bug.

Every other message is delivered to a real SMTP server on loopback; the bad ones end ``dead`` or
``skipped`` and say why; no row is left ``sending``; nothing a name or an address holds ever adds
a recipient to the SMTP envelope or a header to the message. The template sandbox refuses escape
payloads at validation (file:line:col) and, forced past validation, at render: nothing runs.

The jobs are observational without a holdout, so every account is treated and each one's fate is
known in advance.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping
from datetime import datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from closeloop.channels.base import OutboundMessage, Receipt
from closeloop.channels.email import EMAIL, SmtpSender
from closeloop.cli.main import app
from closeloop.data.warehouse import Warehouse
from closeloop.definitions.models import EmailStep
from closeloop.engine import schema
from closeloop.engine.steps import OutboxStatus
from closeloop.services import engine_runs
from closeloop.services.project import Workspace, init_project, open_workspace
from closeloop.services.smtp_sink import SmtpSink
from support import Backends, run_tick

DAY0 = datetime(2024, 3, 1)
JOB = "Poison"
VICTIM = "victim@x.com"
INJECTED = f"Evil\r\nBcc: {VICTIM}"
# A name that would end the DATA section and start a second envelope if it reached the wire as is.
SMUGGLED = f"Mallory\r\nBcc: {VICTIM}\r\n.\r\nMAIL FROM:<a@x.com>\r\nRCPT TO:<{VICTIM}>\r\nDATA"
TEMPLATE_IN_DATA = "{{ cycler.__init__.__globals__.os.getpid() }}"

SUBJECT = "{{ account.name }} ({{ account.plan.upper() }}): hi {{ contact.name }}"
JOBS = f"""\
jobs:
  - name: {JOB}
    audience: 'count(event "integration_connected") = 0'
    goal: 'count(event "integration_connected") >= 1'
    duration_days: 30
    observational: true
    holdout: 0
    steps:
      - send: email
        subject: "{SUBJECT}"
        template: poison
"""
TEXT = "Hi {{ contact.name }},\n\nwelcome, {{ account.name }}.\n"

# account id -> (account name, plan, [(person name, email)])
ACCOUNTS: dict[str, tuple[str, str | None, list[tuple[str, str]]]] = {
    **{
        f"acc-ok-{i}": (f"Company {i}", "pro", [(f"Owner {i}", f"owner{i}@company{i}.test")])
        for i in range(6)
    },
    "acc-crlf-name": (INJECTED, "pro", [("Nina", "nina@crlf-name.test")]),
    "acc-crlf-contact": (
        "Contact Co",
        "pro",
        [(SMUGGLED, "mallory@contact.test"), ("Eve", f"eve@contact.test\r\nBcc: {VICTIM}")],
    ),
    "acc-template-data": (TEMPLATE_IN_DATA, "pro", [("Tess", "tess@template.test")]),
    "acc-bad-address": ("Bad Address", "pro", [("Eve", f"eve@bad.test\nBcc: {VICTIM}")]),
    "acc-null-plan": ("Null Plan", None, [("Nora", "nora@null.test")]),
    "acc-runtime": ("Runtime Co", "pro", [("Rita", "rita@runtime.test")]),
    "acc-value": ("Value Co", "pro", [("Val", "val@value.test")]),
}
# The accounts whose email must arrive, and the one address each is sent to.
DELIVERED = {
    **{f"acc-ok-{i}": f"owner{i}@company{i}.test" for i in range(6)},
    "acc-crlf-name": "nina@crlf-name.test",
    "acc-crlf-contact": "mallory@contact.test",
    "acc-template-data": "tess@template.test",
}
FAILED = ("acc-bad-address", "acc-null-plan", "acc-runtime", "acc-value")
SENDER_BUGS: dict[str, type[Exception]] = {"acc-runtime": RuntimeError, "acc-value": ValueError}


def _seed(warehouse: Warehouse) -> None:
    ids = list(ACCOUNTS)
    warehouse.append(
        "accounts",
        warehouse.arrow_for(
            "accounts",
            {
                "account_id": ids,
                "name": [ACCOUNTS[a][0] for a in ids],
                "plan": [ACCOUNTS[a][1] for a in ids],
                "created_at": [DAY0 - timedelta(days=1)] * len(ids),
            },
        ),
    )
    people = [(a, name, email) for a in ids for name, email in ACCOUNTS[a][2]]
    warehouse.append(
        "people",
        warehouse.arrow_for(
            "people",
            {
                "person_id": [f"p{i}" for i in range(len(people))],
                "account_id": [a for a, _, _ in people],
                "name": [name for _, name, _ in people],
                "email": [email for _, _, email in people],
                "created_at": [
                    DAY0 - timedelta(days=1) + timedelta(minutes=i) for i in range(len(people))
                ],
            },
        ),
    )


@pytest.fixture
def workspace(tmp_path: Path, backends: Backends) -> Iterator[Workspace]:
    folder = tmp_path / "project"
    init_project(folder, name="poison")
    (folder / "jobs.yaml").write_text(JOBS, encoding="utf-8")
    (folder / "templates" / "poison.txt.j2").write_text(TEXT, encoding="utf-8")
    with open_workspace(folder, environ=backends.environ()) as opened:
        _seed(opened.warehouse)
        yield opened


class BuggySender:
    """The email channel with a bug for some accounts: it raises what ``bugs`` says for them."""

    name = EMAIL

    def __init__(self, inner: SmtpSender, bugs: Mapping[str, type[Exception]]) -> None:
        self.inner = inner
        self.bugs = bugs

    def send(self, message: OutboundMessage) -> Receipt:
        bug = self.bugs.get(message.account_id)
        if bug is not None:
            raise bug(f"sender bug while sending to {message.account_id}")
        return self.inner.send(message)

    def close(self) -> None:
        self.inner.close()


def _outbox(workspace: Workspace) -> dict[str, dict[str, object]]:
    with workspace.store.engine.connect() as connection:
        rows = connection.execute(sa.select(schema.outbox).order_by(schema.outbox.c.id)).mappings()
        return {str(row["account_id"]): dict(row) for row in rows}


def _dispatch_until_settled(
    workspace: Workspace, sink: SmtpSink
) -> list[engine_runs.DispatchResult]:
    """Dispatch five times, an hour apart (the default policy's five attempts, each past its
    backoff); after every round no row may be left ``sending``."""
    results = []
    for hour in range(5):
        sender = BuggySender(SmtpSender(sink.host, sink.port, "cs@example.com"), SENDER_BUGS)
        results.append(
            engine_runs.dispatch(workspace, DAY0 + timedelta(hours=hour), {EMAIL: sender})
        )
        statuses = {str(row["status"]) for row in _outbox(workspace).values()}
        assert OutboxStatus.SENDING not in statuses
    return results


def test_one_poison_message_never_stops_or_hijacks_the_others(workspace: Workspace) -> None:
    (result,) = engine_runs.tick(workspace, DAY0, JOB, launch=True)
    assert result.entered == len(ACCOUNTS) == 13
    # One template error, one account with nobody to write to; the other 11 wait to be sent.
    assert result.outbox == {
        OutboxStatus.PENDING: 11,
        OutboxStatus.DEAD: 1,
        OutboxStatus.SKIPPED: 1,
    }
    (problem,) = result.problems
    assert "'acc-null-plan'" in problem and f"job '{JOB}' step 0" in problem
    assert "'None' has no attribute 'upper'" in problem

    with SmtpSink() as sink:
        rounds = _dispatch_until_settled(workspace, sink)
        received = sink.received

    first, *retries, last = rounds
    assert sorted(d.account_id for d in first.sent) == sorted(DELIVERED)
    assert (first.retried, first.dead) == (2, 0)
    assert [(r.sent, r.retried, r.dead) for r in retries] == [([], 2, 0)] * 3
    assert (last.sent, last.retried, last.dead) == ([], 0, 2)
    assert sorted(error.split(":")[0] for error in last.errors) == [
        f"job {JOB!r} step 0, account 'acc-runtime', email",
        f"job {JOB!r} step 0, account 'acc-value', email",
    ]

    rows = _outbox(workspace)
    assert {a: rows[a]["status"] for a in rows if a not in DELIVERED} == {
        "acc-bad-address": OutboxStatus.SKIPPED,
        "acc-null-plan": OutboxStatus.DEAD,
        "acc-runtime": OutboxStatus.DEAD,
        "acc-value": OutboxStatus.DEAD,
    }
    assert all(rows[a]["status"] == OutboxStatus.SENT for a in DELIVERED)
    assert rows["acc-runtime"]["attempts"] == rows["acc-value"]["attempts"] == 5
    assert rows["acc-runtime"]["last_error"] == (
        f"job {JOB!r} step 0, account 'acc-runtime', email: "
        "unexpected RuntimeError in the email channel: sender bug while sending to acc-runtime"
    )
    assert str(rows["acc-value"]["last_error"]).startswith(
        f"job {JOB!r} step 0, account 'acc-value', email: unexpected ValueError"
    )
    skipped = str(rows["acc-bad-address"]["last_error"])
    assert skipped.startswith(
        f"job {JOB!r} step 0, account 'acc-bad-address': "
        "no contact with a usable email address (dropped:"
    )

    # The SMTP envelope: exactly one message per delivered account, to its one address.
    assert len(received) == len(DELIVERED)
    envelopes = sorted(message.recipients for message in received)
    assert envelopes == sorted((address,) for address in DELIVERED.values())
    assert all(VICTIM not in " ".join(message.recipients) for message in received)
    keys = {f"<{rows[a]['idempotency_key']}@closeloop>" for a in DELIVERED}
    assert {message.message["Message-ID"] for message in received} == keys
    for message in received:
        headers = [name.lower() for name in message.message]
        assert "bcc" not in headers and "cc" not in headers
        assert len(message.message.get_all("To")) == 1
        assert VICTIM not in str(message.message["To"])

    by_address = {message.recipients[0]: message.message for message in received}
    # The line breaks in the account's name became spaces inside the one Subject header.
    subject = " ".join(str(by_address["nina@crlf-name.test"]["Subject"]).split())
    assert subject == f"Evil Bcc: {VICTIM} (PRO): hi Nina"
    # Data is never rendered as a template: the payload in the name arrives as plain text.
    template_subject = " ".join(str(by_address["tess@template.test"]["Subject"]).split())
    assert template_subject == f"{TEMPLATE_IN_DATA} (PRO): hi Tess"
    # The smuggled end-of-data line stays inside the body (dot-stuffed on the wire).
    smuggled = by_address["mallory@contact.test"]
    (text,) = [
        part.get_payload(decode=True).decode()
        for part in smuggled.walk()
        if part.get_content_type() == "text/plain"
    ]
    body_lines = text.splitlines()
    assert "." in body_lines and f"RCPT TO:<{VICTIM}>" in body_lines
    assert " ".join(str(smuggled["Subject"]).split()).startswith("Contact Co (PRO): hi Mallory Bcc")


def test_every_failed_message_says_which_job_step_and_account(workspace: Workspace) -> None:
    """Whatever made a message fail, its recorded reason and the dispatch's dead-letter line
    name the job, the step and the account, so an operator can find and fix it."""
    engine_runs.tick(workspace, DAY0, JOB, launch=True)
    with SmtpSink() as sink:
        last = _dispatch_until_settled(workspace, sink)[-1]
    rows = _outbox(workspace)
    reasons = {account: str(rows[account]["last_error"]) for account in FAILED}
    unnamed = [
        reason
        for account, reason in reasons.items()
        if not (f"job '{JOB}'" in reason and "step 0" in reason and f"'{account}'" in reason)
    ]
    # The dead-letter lines the CLI prints after a dispatch.
    assert len(last.errors) == len(SENDER_BUGS)
    unnamed += [line for line in last.errors if not (JOB in line and "step 0" in line)]
    assert unnamed == []


# -- the template sandbox -----------------------------------------------------------------------

SENTINEL = "PWNED"


def _escapes(sentinel: Path) -> list[str]:
    """Ways out of a Jinja template into Python; the ones with a command would create
    ``sentinel`` if they ran."""
    return [
        "{{ cycler.__init__.__globals__.os.getpid() }}",
        f"{{{{ lipsum.__globals__['os'].popen('touch {sentinel}').read() }}}}",
        f"{{{{ joiner.__init__.__globals__.os.system('touch {sentinel}') }}}}",
        "{{ ''.__class__.__mro__[1].__subclasses__() }}",
        "{% for c in [].__class__.__base__.__subclasses__() %}{{ c }}{% endfor %}",
        "{{ account|attr('__class__') }}",
        "{{ '{0.__class__.__init__.__globals__}'.format(account) }}",
        "{{ self._TemplateReference__context }}",
        "{{ account.update.__self__ }}",
    ]


def _escape_job(steps: list[tuple[str, str]]) -> str:
    """A job with one email step per (subject, template name)."""
    lines = "".join(
        f"""
      - send: email
        subject: {subject}
        template: {template}"""
        for subject, template in steps
    )
    return f"""\
jobs:
  - name: Escape
    audience: 'count(event "integration_connected") = 0'
    goal: 'count(event "integration_connected") >= 1'
    duration_days: 30
    observational: true
    holdout: 0
    steps:{lines}
"""


def _quoted(payload: str) -> str:
    return '"' + payload.replace("\\", "\\\\").replace('"', '\\"') + '"'


def test_validate_refuses_every_escape_at_its_place(tmp_path: Path) -> None:
    project = tmp_path / "escape"
    init_project(project, name="escape")
    payloads = _escapes(tmp_path / SENTINEL)
    (project / "templates" / "plain.txt.j2").write_text("Hi {{ contact.name }}\n")
    # Each payload twice: as a step's subject, and as another step's template file.
    steps = []
    for index, payload in enumerate(payloads):
        (project / "templates" / f"escape{index}.txt.j2").write_text(f"Hi\n\n{payload}\n")
        steps += [(_quoted(payload), "plain"), ('"Hello"', f"escape{index}")]
    jobs = _escape_job(steps)
    (project / "jobs.yaml").write_text(jobs, encoding="utf-8")

    result = CliRunner(env={"CLOSELOOP_PROJECT": None, "COLUMNS": "400"}).invoke(
        app, ["validate", "--project", str(project)]
    )
    assert result.exit_code == 1, result.output
    printed = result.output.splitlines()
    lines = jobs.splitlines()
    expected = []
    for number, line in enumerate(lines, start=1):
        if line.startswith("        subject: ") and line != '        subject: "Hello"':
            expected.append((f"{project / 'jobs.yaml'}:{number}:18: error: ", "subject:1: "))
        elif line.startswith("        template: escape"):
            name = line.removeprefix("        template: ")
            expected.append((f"{project / 'jobs.yaml'}:{number}:19: error: ", f"{name}.txt.j2:3: "))
    assert len(expected) == 2 * len(payloads)
    for at, where in expected:
        line = next((p for p in printed if p.startswith(at)), None)
        assert line is not None, f"{at!r} not in\n{result.output}"
        assert f"{where}refused by the template sandbox" in line, line
    assert printed[-1].startswith(f"{len(expected)} problem(s) found: {len(expected)} error(s)")
    assert not (tmp_path / SENTINEL).exists()


def test_escapes_forced_past_validation_fail_safe_and_nothing_runs(
    tmp_path: Path, backends: Backends
) -> None:
    folder = tmp_path / "project"
    init_project(folder, name="escape")
    sentinel = tmp_path / SENTINEL
    payloads = _escapes(sentinel)
    names = [f"escape{i}" for i in range(len(payloads))]
    jobs = _escape_job([('"Hello"', name) for name in names])
    (folder / "jobs.yaml").write_text(jobs, encoding="utf-8")
    for name in names:
        (folder / "templates" / f"{name}.txt.j2").write_text("Hi {{ contact.name }}\n")
    with open_workspace(folder, environ=backends.environ()) as workspace:
        _seed(workspace.warehouse)
        # Validation passed; now the files change under the engine, and one subject is forced.
        for name, payload in zip(names, payloads, strict=True):
            (folder / "templates" / f"{name}.txt.j2").write_text(f"Hi\n{payload}\n")
        job = workspace.project.job("Escape")
        first = job.definition.steps[0]
        assert isinstance(first, EmailStep)
        steps = (first.model_copy(update={"subject": payloads[0]}), *job.definition.steps[1:])
        forced = dataclasses.replace(
            job, definition=job.definition.model_copy(update={"steps": steps})
        )
        result = run_tick(workspace.project, forced, workspace.warehouse, workspace.store, DAY0)
        rows = _all_rows(workspace)
        with SmtpSink() as sink:
            dispatched = engine_runs.dispatch(
                workspace, DAY0, {EMAIL: SmtpSender(sink.host, sink.port, "cs@example.com")}
            )
            received = sink.received

    # acc-bad-address has no usable address: skipped before anything renders.
    renderable = len(ACCOUNTS) - 1
    assert result.outbox == {
        OutboxStatus.DEAD: renderable * len(payloads),
        OutboxStatus.SKIPPED: len(payloads),
    }
    assert len(result.problems) == renderable * len(payloads)
    dead = [row for row in rows if row["status"] == OutboxStatus.DEAD]
    assert all("refused by the template sandbox" in str(row["last_error"]) for row in dead)
    assert {row["step_index"] for row in dead} == set(range(len(payloads)))
    assert dispatched.sent == [] and received == []
    assert not sentinel.exists()


def _all_rows(workspace: Workspace) -> list[dict[str, object]]:
    with workspace.store.engine.connect() as connection:
        rows = connection.execute(sa.select(schema.outbox).order_by(schema.outbox.c.id)).mappings()
        return [dict(row) for row in rows]
