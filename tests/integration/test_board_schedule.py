"""The scheduled board report against a real SMTP server on loopback (aiosmtpd).

A freshly initialised project (no data: every part of its report is unavailable with a reason,
and the report still goes out) with ``board_report`` in closeloop.yaml. The daemon's cycle sends
the closed period's report once per recipient, with the PDF attached; a refused recipient is
retried on a later cycle and the others are not sent twice; two processes racing over one period
send it once; a bad ``board_report`` is a located error.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path

import pytest

from closeloop.definitions.models import BoardReportEvery
from closeloop.engine import board_sends
from closeloop.engine.state import StateStore
from closeloop.errors import DefinitionErrors
from closeloop.services.board import board_report
from closeloop.services.board_schedule import closed_period, send_scheduled
from closeloop.services.engine_runs import run_cycle
from closeloop.services.project import init_project, open_workspace
from closeloop.services.smtp_sink import SmtpSink, free_port
from support import Backends, embedded_backends

RECIPIENTS = ("ceo@example.com", "board@example.com")
AT = datetime(2026, 12, 3, 9, 0)  # December: November has closed


@dataclass(frozen=True)
class Project:
    folder: Path
    environ: dict[str, str]
    port: int


def _configure(folder: Path, block: str) -> None:
    config = folder / "closeloop.yaml"
    config.write_text(config.read_text(encoding="utf-8") + block, encoding="utf-8")


SCHEDULE = (
    "board_report:\n  every: month\n  to: [ceo@example.com, board@example.com]\n"
    "  subject: Monthly board report\n"
)


@pytest.fixture
def project(tmp_path: Path) -> Iterator[Project]:
    folder = tmp_path / "project"
    init_project(folder, name="acme")
    _configure(folder, SCHEDULE)
    port = free_port()
    environ = {
        **embedded_backends(tmp_path).environ(),
        "CLOSELOOP_SMTP_HOST": "127.0.0.1",
        "CLOSELOOP_SMTP_PORT": str(port),
    }
    with open_workspace(folder, environ=environ):
        pass  # creates the warehouse and migrates the state store
    yield Project(folder, environ, port)


def _sends(project: Project) -> list[board_sends.BoardSend]:
    with open_workspace(project.folder, environ=project.environ, write=False) as workspace:
        return board_sends.sends(workspace.store)


def test_claims_on_sqlite_and_postgresql(backends: Backends) -> None:
    store = StateStore.connect(backends.state_url)
    store.migrate()
    try:
        at = datetime(2026, 12, 1)
        assert board_sends.claim(store, "2026-11", "a@example.com", at)
        assert not board_sends.claim(store, "2026-11", "a@example.com", at)  # held: no resend
        assert board_sends.claim(store, "2026-11", "b@example.com", at)
        board_sends.record_failed(store, "2026-11", "b@example.com", "421 try later")
        assert board_sends.claim(store, "2026-11", "b@example.com", at)  # a failure is retried
        assert not board_sends.claim(store, "2026-11", "b@example.com", at)  # by one process
        board_sends.record_sent(store, "2026-11", "a@example.com", at, "<m@closeloop>")
        assert not board_sends.claim(store, "2026-11", "a@example.com", at)
        assert board_sends.claim(store, "2026-12", "a@example.com", at)  # the next period
        rows = {(s.period, s.recipient): s for s in board_sends.sends(store)}
        assert rows[("2026-11", "a@example.com")].message_id == "<m@closeloop>"
        assert rows[("2026-11", "b@example.com")].error is None  # cleared by the new claim
        assert [s.recipient for s in board_sends.sends(store, "2026-12")] == ["a@example.com"]
    finally:
        store.close()


def test_closed_periods() -> None:
    today = date(2026, 12, 3)  # a Thursday
    assert closed_period(BoardReportEvery.MONTH, today).key == "2026-11"
    assert closed_period(BoardReportEvery.MONTH, date(2027, 1, 1)).start == date(2026, 12, 1)
    quarter = closed_period(BoardReportEvery.QUARTER, today)
    assert (quarter.key, quarter.start, quarter.end) == (
        "2026-Q3",
        date(2026, 7, 1),
        date(2026, 10, 1),
    )
    week = closed_period(BoardReportEvery.WEEK, today)
    assert (week.key, week.start, week.end) == ("2026-W48", date(2026, 11, 23), date(2026, 11, 30))


def test_an_empty_project_reports_every_part_unavailable_with_its_reason(
    project: Project,
) -> None:
    with open_workspace(project.folder, environ=project.environ, write=False) as workspace:
        report = board_report(workspace, date(2026, 11, 1), date(2026, 12, 1))
    parts = [
        report.outcomes,
        report.leading.adoption,
        report.leading.time_to_value,
        report.leading.voice_of_customer,
        report.initiatives,
    ]
    assert [part.status for part in parts] == ["unavailable"] * len(parts)
    assert all(part.reason for part in parts)
    assert "subscriptions" in (report.outcomes.reason or "")
    assert report.activity.status == "ok" and report.activity.messages_sent == 0


def test_two_cycles_send_the_closed_month_once_to_each_recipient(project: Project) -> None:
    with SmtpSink(port=project.port) as sink:
        first = run_cycle(project.folder, AT, project.environ)
        second = run_cycle(project.folder, AT.replace(hour=10), project.environ)
        received = list(sink.received)
    assert first.error is None and second.error is None
    assert sorted(r for item in received for r in item.recipients) == sorted(RECIPIENTS)
    message = received[0].message
    assert message["Subject"] == "Monthly board report"
    parts = {part.get_content_type(): part for part in message.walk()}
    assert {"text/plain", "text/html", "application/pdf"} <= set(parts)
    pdf = parts["application/pdf"].get_payload(decode=True)
    assert isinstance(pdf, bytes) and pdf.startswith(b"%PDF")
    assert parts["application/pdf"].get_filename() == "board-report-2026-11.pdf"
    html = parts["text/html"].get_payload(decode=True)
    assert isinstance(html, bytes) and b"1. Outcomes" in html
    sends = _sends(project)
    assert [(s.period, s.recipient) for s in sends] == sorted(("2026-11", r) for r in RECIPIENTS)
    assert all(s.sent_at is not None and s.message_id and s.error is None for s in sends)
    ids = {item.message["Message-ID"] for item in received}
    assert ids == {s.message_id for s in sends}


@pytest.mark.slow  # three cycles, each building the report and its PDF (~25 s)
def test_a_refused_recipient_is_retried_later_and_the_others_are_not_sent_again(
    project: Project,
) -> None:
    refused = {"board@example.com": "550 5.1.1 no such user"}
    with SmtpSink(port=project.port, refuse=refused) as sink:
        run_cycle(project.folder, AT, project.environ)
        first = [r for item in sink.received for r in item.recipients]
    assert first == ["ceo@example.com"]
    failed = {s.recipient: s for s in _sends(project)}["board@example.com"]
    assert failed.sent_at is None and failed.error and "550" in failed.error
    # The SMTP server is down: the cycle goes on, the error is kept.
    cycle = run_cycle(project.folder, AT.replace(hour=10), project.environ)
    assert cycle.error is None
    assert {s.recipient: s for s in _sends(project)}["board@example.com"].error
    with SmtpSink(port=project.port) as sink:
        run_cycle(project.folder, AT.replace(hour=11), project.environ)
        later = [r for item in sink.received for r in item.recipients]
    assert later == ["board@example.com"]
    assert all(s.sent_at is not None and s.error is None for s in _sends(project))


def _send_once(folder: str, environ: dict[str, str], at: datetime) -> None:
    with open_workspace(Path(folder), environ=environ) as workspace:
        send_scheduled(workspace, at)


@pytest.mark.slow  # two spawned interpreters (~35 s)
def test_two_processes_send_the_period_once(project: Project) -> None:
    context = multiprocessing.get_context("spawn")
    with SmtpSink(port=project.port) as sink:
        processes = [
            context.Process(target=_send_once, args=(str(project.folder), project.environ, AT))
            for _ in range(2)
        ]
        for process in processes:
            process.start()
        for process in processes:
            process.join(120)
        assert [process.exitcode for process in processes] == [0, 0]
        received = sorted(r for item in sink.received for r in item.recipients)
    assert received == sorted(RECIPIENTS)


@pytest.mark.parametrize(
    ("block", "expected"),
    [
        ("board_report:\n  every: yearly\n  to: [a@example.com]\n", "every"),
        ("board_report:\n  every: month\n  to: [not-an-address]\n", "plain email address"),
        ("board_report:\n  every: month\n  to: []\n", "to"),
        ("board_report:\n  every: month\n  to: [a@example.com]\n  cc: x\n", "cc"),
    ],
)
def test_a_bad_board_report_setting_is_a_located_error(
    tmp_path: Path, block: str, expected: str
) -> None:
    folder = tmp_path / "project"
    init_project(folder, name="acme")
    _configure(folder, block)
    with (
        pytest.raises(DefinitionErrors) as raised,
        open_workspace(folder, environ=embedded_backends(tmp_path).environ()),
    ):
        pass
    problems = raised.value.errors
    assert any(expected in str(problem) for problem in problems), problems
    assert any(problem.location is not None and problem.location.line >= 1 for problem in problems)
