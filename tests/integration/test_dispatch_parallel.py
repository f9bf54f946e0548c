"""Two dispatcher processes drain one PostgreSQL outbox in parallel: every message exactly once.

10,000 webhook messages of a launched job (rendered by the engine's own renderer, written to the
outbox directly so the test does not spend its time ticking) are sent by two ``closeloop
dispatch`` processes released at the same moment (see ``engine_processes``) to one signed HTTP
receiver on loopback. Then two dispatchers whose ``now`` lies 30 days apart, far more than the
lease, run in parallel: leases are measured on the wall clock, so the one in the future does not
take over the other's claims.
"""

from __future__ import annotations

import re
import time
from collections import Counter
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from engine_processes import (
    DAY0,
    SECRET,
    EngineServer,
    ProjectSetup,
    problems_in_output,
    project_setup,
    run_together,
)

from closeloop.engine import schema
from closeloop.engine.assignment import TREATMENT, enrollment_id
from closeloop.engine.steps import OutboxStatus, Renderer, Unit, entry_plan
from closeloop.services.http_sink import HttpSink
from closeloop.services.project import open_workspace
from closeloop.services.smtp_sink import free_port
from support import run_tick

pytestmark = pytest.mark.postgres

JOB = "Hook"
MESSAGES = 10_000
SENT_LINE = re.compile(r"outbox: (\d+) sent")


def _jobs(url: str) -> str:
    return f"""\
jobs:
  - name: {JOB}
    audience: 'count(event "integration_connected") = 0'
    goal: 'count(event "integration_connected") >= 1'
    duration_days: 30
    steps:
      - send: webhook
        url: "{url}/hook"
        data: {{source: "closeloop tests"}}
"""


@pytest.fixture
def sink() -> Iterator[HttpSink]:
    with HttpSink(secret=SECRET) as server:
        yield server


@pytest.fixture
def setup(tmp_path: Path, postgres_url: str, sink: HttpSink) -> Iterator[ProjectSetup]:
    """A PostgreSQL warehouse and state store (one database), the job launched."""
    with project_setup(
        tmp_path / "project", _jobs(sink.url), postgres_url, postgres_url, free_port(), accounts=0
    ) as opened:
        yield opened


def _fill_outbox(setup: ProjectSetup, first: int, count: int, at: datetime) -> None:
    """``count`` enrollments entered at ``at`` and their webhook messages, due at ``at``."""
    with open_workspace(setup.folder, environ=setup.environ) as workspace:
        job = workspace.project.job(JOB)
        # Launched by its first tick (no accounts yet, so nobody enters), then filled directly.
        run_tick(workspace.project, job, workspace.warehouse, workspace.store, DAY0)
        record = workspace.store.job_record(JOB)
        accounts = [f"acc-{number:05d}" for number in range(first, first + count)]
        units = [
            Unit(enrollment_id(JOB, account, at.isoformat()), account, None, TREATMENT)
            for account in accounts
        ]
        renderer = Renderer(workspace.project, job, workspace.warehouse)
        rows = renderer.rows(record.version, entry_plan(job, units, at), at)
        with workspace.store.engine.begin() as connection:
            connection.execute(
                schema.enrollments.insert(),
                [
                    {
                        "enrollment_id": unit.enrollment_id,
                        "job_name": JOB,
                        "job_version": record.version,
                        "account_id": unit.account_id,
                        "arm": unit.arm,
                        "entered_at": at,
                    }
                    for unit in units
                ],
            )
            connection.execute(schema.outbox.insert(), rows)
    assert len(rows) == count and {row["status"] for row in rows} == {OutboxStatus.PENDING}


def _statuses(setup: ProjectSetup) -> Counter[str]:
    o = schema.outbox
    with setup.store.engine.connect() as connection:
        rows = connection.execute(sa.select(o.c.status, sa.func.count()).group_by(o.c.status))
        return Counter({status: count for status, count in rows})


def _dispatch_in_parallel(
    setup: ProjectSetup, server: EngineServer, times: tuple[datetime, datetime]
) -> tuple[list[int], float]:
    """Two ``closeloop dispatch`` processes released together: what each sent, and seconds."""
    commands = [
        ["dispatch", "--at", moment.isoformat(), "--project", str(setup.folder)] for moment in times
    ]
    started = time.monotonic()
    children = run_together(server, commands, setup.environ, timeout=240)
    seconds = time.monotonic() - started
    problems = [problem for child in children for problem in problems_in_output(child)]
    assert not problems, "\n".join(problems)
    assert all(child.returncode == 0 for child in children)
    sent = []
    for child in children:
        match = SENT_LINE.search(child.stdout())
        assert match, child.describe()
        sent.append(int(match[1]))
    return sent, seconds


def _assert_each_once(sink: HttpSink, expected: int) -> Counter[str | None]:
    arrivals = sink.arrivals()
    duplicates = {key: count for key, count in arrivals.items() if count > 1}
    assert not duplicates, f"{len(duplicates)} keys arrived more than once"
    assert None not in arrivals, "a request without an idempotency key"
    assert len(arrivals) == expected
    assert all(request.signature_ok and request.status == 200 for request in sink.received)
    return arrivals


@pytest.mark.slow
def test_two_dispatchers_deliver_ten_thousand_messages_once(
    setup: ProjectSetup, sink: HttpSink
) -> None:
    _fill_outbox(setup, 0, MESSAGES, DAY0)
    with EngineServer(setup.folder / "processes") as server:
        sent, seconds = _dispatch_in_parallel(setup, server, (DAY0, DAY0))
    arrivals = _assert_each_once(sink, MESSAGES)
    assert sum(sent) == MESSAGES
    assert min(sent) > 0, f"one dispatcher sent everything: {sent}"  # they really overlapped
    assert _statuses(setup) == {OutboxStatus.SENT: MESSAGES}
    with setup.store.engine.connect() as connection:
        o = schema.outbox
        keys = set(connection.execute(sa.select(o.c.idempotency_key)).scalars())
    assert set(arrivals) == keys
    print(
        f"\n[dispatch/parallel] {MESSAGES} messages by 2 dispatchers {sent} in {seconds:.1f} s "
        f"({MESSAGES / seconds:.0f} messages/s), 0 duplicate keys"
    )


@pytest.mark.slow
def test_dispatchers_a_month_apart_do_not_take_over_each_others_claims(
    setup: ProjectSetup, sink: HttpSink
) -> None:
    """``now`` decides what is due, the wall clock decides when a claim expires: a dispatcher
    at T + 30 days (far beyond the 10-minute lease) never resends what one at T claimed."""
    count = 2_000
    _fill_outbox(setup, 0, count, DAY0)
    with EngineServer(setup.folder / "processes") as server:
        sent, seconds = _dispatch_in_parallel(setup, server, (DAY0, DAY0 + timedelta(days=30)))
    _assert_each_once(sink, count)
    assert sum(sent) == count and min(sent) > 0, sent
    assert _statuses(setup) == {OutboxStatus.SENT: count}
    print(
        f"\n[dispatch/lease] {count} messages by dispatchers at T and T+30d {sent} in "
        f"{seconds:.1f} s ({count / seconds:.0f} messages/s), 0 duplicate keys"
    )
