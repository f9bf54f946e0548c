"""The whole pipeline at 1M / 10M / 100M events: time and peak memory of each step, each step a
real ``closeloop`` process in a project folder.

    .venv/bin/python bench/bench_scaling.py                       # 1M and 10M events
    .venv/bin/python bench/bench_scaling.py --sizes 1M,10M,100M   # and 100M (a few GB of disk)
    .venv/bin/python bench/bench_scaling.py --sizes 1M --page-requests 10

Per size, in a temporary folder removed at the end (``--keep`` keeps it):

1. *generate* (not closeloop): accounts (one per 100 events), people (3 per account) and events
   as Parquet, written by DuckDB from hashes of the row number (deterministic, seconds even at
   100M). Shapes like a product's: a tenth of the accounts hold about half the events; seven
   event names from ``login`` (40%) to ``integration_connected`` (2%); a year of history before
   the first tick, a tenth of the events anonymous; accounts of 4 plans x 3 segments x 3
   regions, 5% of them signed up in the last 14 days.
2. ``closeloop init``, then 20 jobs written to jobs.yaml (an audience of plan, region and an
   event count over 30 days, a goal event, an email; one the example's new-account nudge), each
   with a 20% holdout.
3. ``closeloop import accounts|people|events FILE`` (one process each), ``closeloop validate``.
4. ``closeloop tick --launch --at T``: the first tick, launching the 20 jobs, enrolling and
   sending their emails to an SMTP sink on loopback (aiosmtpd, in this process).
5. ``closeloop import events`` of the next day's events (0.3% more), then
   ``closeloop tick --at T+1 day``: the next-day tick.
6. ``closeloop report "<job>" --format json`` for one job; ``closeloop library --format json``
   (every job's measurement).
7. The dashboard's job page on ``closeloop serve``: the first (cold) request, then warm p50/p95
   over ``--page-requests`` requests (bench/job_page.py's functions); the server's peak RSS.

Each step's wall time and the peak RSS of its process (``os.wait4``'s ``ru_maxrss``: that
process alone; the server's from ``/proc/PID/status`` VmHWM) are printed as a table and written
as JSON (``--json PATH``, default ``bench/results/bench_scaling.json``). Before any timing is
reported the script checks closeloop's answers against the generated data: the imported row
counts equal the files', and the report's enrollments equal those the state store counted for
the job (``closeloop jobs list --format json``); it exits with 1 otherwise. The goal the issue
sets: 100M events within 4 GB peak per process, time near-linear in events (the ``per_1m_s``
column: seconds per million events of the size). Nothing is asserted on time.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import httpx
from aiosmtpd.controller import Controller

sys.path.insert(0, str(Path(__file__).resolve().parent))
import job_page  # bench/job_page.py: the served page's functions

SCRIPT = Path(sys.executable).with_name("closeloop")
ROOT = Path(__file__).resolve().parents[1]
START = datetime(2025, 1, 1)
FIRST_TICK = datetime(2026, 1, 1)  # a year of history before the first tick
NEXT_TICK = FIRST_TICK + timedelta(days=1)
EVENTS_PER_ACCOUNT = 100
PEOPLE_PER_ACCOUNT = 3
NEXT_DAY_SHARE = 0.003  # the next day's events, as a share of the history
JOBS = 20
REPORTED_JOB = "Job 01"

PLANS = ("free", "starter", "pro", "enterprise")
SEGMENTS = ("smb", "mid_market", "enterprise")
REGIONS = ("na", "emea", "apac")
# name, cumulative share in percent (login 40%, feature_used 25%, ...).
EVENT_NAMES = (
    ("login", 40),
    ("feature_used", 65),
    ("report_viewed", 80),
    ("export_created", 87),
    ("invite_sent", 93),
    ("seat_added", 98),
    ("integration_connected", 100),
)


# -- data --------------------------------------------------------------------------------------


def parse_size(text: str) -> int:
    """``1M``, ``10M``, ``100M``, ``500k`` or a plain number of events."""
    text = text.strip().upper()
    factor = {"K": 1_000, "M": 1_000_000, "G": 1_000_000_000}.get(text[-1:], 1)
    number = text[:-1] if factor > 1 else text
    return int(float(number) * factor)


def _name_case(column: str) -> str:
    cases = " ".join(f"WHEN {column} < {limit} THEN '{name}'" for name, limit in EVENT_NAMES)
    return f"CASE {cases} END"


def generate(folder: Path, events: int) -> dict[str, int]:
    """accounts.parquet, people.parquet, events.parquet (history) and next_day.parquet; their
    row counts."""
    accounts = max(events // EVENTS_PER_ACCOUNT, 100)
    heavy = max(accounts // 10, 1)
    history_seconds = int((FIRST_TICK - START).total_seconds())
    next_day = max(int(events * NEXT_DAY_SHARE), 1)
    con = duckdb.connect()
    con.execute("SET preserve_insertion_order = false")
    # An account's creation: 5% in the last 14 days before the first tick, the rest before.
    created = (
        f"TIMESTAMP '{START:%Y-%m-%d}' + to_seconds(CASE WHEN hash(a * 64 + 9) % 100 < 5 "
        f"THEN {history_seconds} - 1 - hash(a * 64 + 10) % {14 * 86400} "
        f"ELSE hash(a * 64 + 10) % {history_seconds // 2} END)"
    )

    def pick(values: tuple[str, ...], salt: int) -> str:
        listed = ",".join(f"'{value}'" for value in values)
        return f"[{listed}][1 + (hash(a * 64 + {salt}) % {len(values)})::BIGINT]"

    con.execute(
        f"""COPY (
            SELECT 'a' || a AS account_id, 'Account ' || a AS name,
                   'a' || a || '.example' AS domain, {created} AS created_at,
                   {pick(SEGMENTS, 2)} AS segment, {pick(PLANS, 1)} AS plan,
                   {pick(("software", "retail", "finance", "health"), 3)} AS industry,
                   (5 + hash(a * 64 + 4) % 2000)::INTEGER AS employees,
                   {pick(REGIONS, 5)} AS region,
                   'owner' || (hash(a * 64 + 6) % 20) AS owner,
                   (1000 + hash(a * 64 + 7) % 100000)::DOUBLE AS arr,
                   (DATE '{FIRST_TICK:%Y-%m-%d}' + (hash(a * 64 + 8) % 365)::INTEGER)
                       AS renewal_date
            FROM range({accounts}) t(a)
        ) TO '{folder / "accounts.parquet"}' (FORMAT parquet)"""
    )
    con.execute(
        f"""COPY (
            SELECT 'p' || a || '_' || k AS person_id, 'a' || a AS account_id,
                   'p' || a || '_' || k || '@a' || a || '.example' AS email,
                   'Person ' || a || '_' || k AS name,
                   ['admin','member','viewer'][1 + k % 3] AS role, {created} AS created_at
            FROM range({accounts}) t(a), range({PEOPLE_PER_ACCOUNT}) u(k)
        ) TO '{folder / "people.parquet"}' (FORMAT parquet)"""
    )

    def events_sql(count: int, first: int, begin: datetime, seconds: int, salt: int) -> str:
        # Half the events go to the heaviest tenth of the accounts, half to any account; each
        # event falls after its account's creation, within [begin, begin + seconds).
        account = (
            f"CASE WHEN hash(i * 64 + {salt}) % 2 = 0 THEN hash(i * 64 + {salt + 1}) % {heavy} "
            f"ELSE hash(i * 64 + {salt + 1}) % {accounts} END"
        )
        return f"""
            WITH chosen AS (
                SELECT i, {account} AS a, hash(i * 64 + {salt + 2}) % 100 AS n
                FROM range({count}) t(i)
            ), placed AS (
                SELECT i, a, n, greatest({created}, TIMESTAMP '{begin:%Y-%m-%d %H:%M:%S}') AS low
                FROM chosen
            )
            SELECT 'e' || ({first} + i) AS event_id, 'a' || a AS account_id,
                   CASE WHEN hash(i * 64 + {salt + 3}) % 10 = 0 THEN NULL
                        ELSE 'p' || a || '_' || (hash(i * 64 + {salt + 4}) % {PEOPLE_PER_ACCOUNT})
                   END
                       AS person_id,
                   {_name_case("n")} AS name,
                   low + to_seconds(hash(i * 64 + {salt + 5}) % greatest(1, {seconds}
                       - epoch(low - TIMESTAMP '{begin:%Y-%m-%d %H:%M:%S}')::BIGINT)) AS timestamp
            FROM placed"""

    con.execute(
        f"COPY ({events_sql(events, 0, START, history_seconds, 20)}) "
        f"TO '{folder / 'events.parquet'}' (FORMAT parquet)"
    )
    con.execute(
        f"COPY ({events_sql(next_day, events, FIRST_TICK, 86400, 40)}) "
        f"TO '{folder / 'next_day.parquet'}' (FORMAT parquet)"
    )
    counts = {
        name: int(con.execute(f"SELECT count(*) FROM '{folder / name}.parquet'").fetchone()[0])  # type: ignore[index]
        for name in ("accounts", "people", "events", "next_day")
    }
    con.close()
    return counts


def jobs_yaml() -> str:
    """20 jobs: audiences of plan, region and recent activity (a few % of the accounts each),
    goals on the rarer events, an email each; the first is the example's new-account nudge."""
    goals = ("integration_connected", "invite_sent", "seat_added", "export_created")
    lines = ["jobs:"]
    for number in range(1, JOBS + 1):
        if number == 1:
            audience = (
                'signup_date within last 14 days and count(event "integration_connected") = 0'
            )
            goal = "integration_connected"
        else:
            plan = PLANS[number % len(PLANS)]
            region = REGIONS[(number // len(PLANS)) % len(REGIONS)]
            event, _ = EVENT_NAMES[number % 3]
            audience = (
                f'plan = "{plan}" and region = "{region}" '
                f'and count(event "{event}" in last 30 days) < {2 + number % 5}'
            )
            goal = goals[number % len(goals)]
        lines += [
            f"  - name: Job {number:02d}",
            f"    audience: '{audience}'",
            f'    goal: count(event "{goal}") >= 1',
            f"    duration_days: {14 + 2 * (number % 8)}",
            "    holdout: 0.2",
            "    steps:",
            "      - send: email",
            f'        subject: "{{{{ account.name }}}}: job {number:02d}"',
            "        template: integration_nudge",
            "    hypothesis:",
            f"      expected_effect: more accounts reach {goal}",
            "      primary_metric: completion_rate",
        ]
    return "\n".join(lines) + "\n"


# -- steps -------------------------------------------------------------------------------------


@dataclass
class Step:
    name: str
    seconds: float
    peak_rss_mb: float
    detail: dict[str, Any] = field(default_factory=dict)


class Failed(SystemExit):
    pass


def run_step(name: str, args: list[str], env: dict[str, str], logs: Path) -> tuple[Step, str]:
    """Run ``closeloop ARGS`` as its own process: wall time, its peak RSS (wait4), its stdout."""
    out, err = logs / f"{name}.out", logs / f"{name}.err"
    with out.open("wb") as stdout, err.open("wb") as stderr:
        started = time.perf_counter()
        process = subprocess.Popen(
            [str(SCRIPT), *args], stdout=stdout, stderr=stderr, env=env, stdin=subprocess.DEVNULL
        )
        _, status, usage = os.wait4(process.pid, 0)
        elapsed = time.perf_counter() - started
        process.returncode = os.waitstatus_to_exitcode(status)
    text = out.read_text(encoding="utf-8", errors="replace")
    if process.returncode != 0:
        raise Failed(
            f"closeloop {' '.join(args)} exited with {process.returncode}:\n"
            f"{text[-2000:]}{err.read_text(encoding='utf-8', errors='replace')[-3000:]}"
        )
    # ru_maxrss is in KiB on Linux.
    return Step(name, elapsed, usage.ru_maxrss / 1024), text


class _Counter:
    """An SMTP sink that only counts the messages it accepts."""

    def __init__(self) -> None:
        self.messages = 0

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        self.messages += 1
        return "250 OK"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def vm_hwm_mb(pid: int) -> float:
    """A live process's peak RSS so far (Linux /proc), or nan."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def page_step(project: Path, job: str, requests: int, env: dict[str, str]) -> Step:
    """The job page on ``closeloop serve``: cold, then warm p50/p95 (bench/job_page.py)."""
    name = "bench-viewer"
    password = "bench-viewer-password-1"
    subprocess.run(
        [
            *(str(SCRIPT), "users", "add", name, "--role", "viewer"),
            *("--password-stdin", "--project", str(project)),
        ],
        input=password + "\n",
        text=True,
        check=True,
        capture_output=True,
        env=env,
    )
    path = f"/jobs/{job.replace(' ', '%20')}"
    with job_page.served(project) as (url, pid):
        client = job_page.login(url, name, password)
        client.timeout = httpx.Timeout(3600.0)  # a cold report at 100M events takes minutes
        started = time.perf_counter()
        cold = job_page.timed_get(client, path)
        job_page.timed_get(client, path)  # the first warm one
        warm = [job_page.timed_get(client, path) for _ in range(requests)]
        elapsed = time.perf_counter() - started
        peak = vm_hwm_mb(pid)
        client.close()
    figures = job_page.summary(warm)
    return Step(
        "job page (serve)",
        elapsed,
        peak,
        {
            "cold_ms": round(cold, 1),
            "warm_p50_ms": figures["p50_ms"],
            "warm_p95_ms": figures["p95_ms"],
        },
    )


def check(condition: bool, message: str) -> None:
    if not condition:
        raise Failed(f"answers differ: {message}")


def run_size(
    events: int, work: Path, args: argparse.Namespace, sink: _Counter, port: int
) -> dict[str, Any]:
    folder = work / f"events-{events}"
    data, project, logs = folder / "data", folder / "project", folder / "logs"
    for path in (data, logs):
        path.mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ,
        "NO_COLOR": "1",
        "COLUMNS": "200",
        "CLOSELOOP_SMTP_HOST": "127.0.0.1",
        "CLOSELOOP_SMTP_PORT": str(port),
    }
    print(f"\n== {events:,} events: generating in {folder}", flush=True)
    started = time.perf_counter()
    counts = generate(data, events)
    generated = time.perf_counter() - started
    print(f"   generated {counts} in {generated:.1f} s", flush=True)

    steps: list[Step] = []

    def step(name: str, *command: str) -> str:
        result, text = run_step(name, list(command), env, logs)
        steps.append(result)
        print(f"   {name:<28} {result.seconds:8.2f} s  {result.peak_rss_mb:8.0f} MB", flush=True)
        return text

    at, next_at = FIRST_TICK.isoformat(), NEXT_TICK.isoformat()
    step("init", "init", str(project), "--name", "scaling")
    (project / "jobs.yaml").write_text(jobs_yaml(), encoding="utf-8")
    p = ("--project", str(project))
    for table in ("accounts", "people", "events"):
        step(f"import {table}", "import", table, str(data / f"{table}.parquet"), *p)
    step("validate", "validate", *p)
    sent_before = sink.messages
    step("tick (first, 20 jobs)", "tick", "--launch", "--at", at, *p)
    steps[-1].detail["emails"] = sink.messages - sent_before
    step("import next day", "import", "events", str(data / "next_day.parquet"), *p)
    sent_before = sink.messages
    step("tick (next day)", "tick", "--at", next_at, *p)
    steps[-1].detail["emails"] = sink.messages - sent_before
    report = json.loads(step("report (1 job)", "report", REPORTED_JOB, "--format", "json", *p))
    library = json.loads(step("library (all jobs)", "library", "--format", "json", *p))
    jobs = json.loads(step("jobs list", "jobs", "list", "--format", "json", *p))
    steps.append(page_step(project, REPORTED_JOB, args.page_requests, env))
    print(
        f"   {'job page':<28} cold {steps[-1].detail['cold_ms']} ms, warm p50 "
        f"{steps[-1].detail['warm_p50_ms']} ms, p95 {steps[-1].detail['warm_p95_ms']} ms, "
        f"server {steps[-1].peak_rss_mb:.0f} MB",
        flush=True,
    )

    # closeloop's answers against the data: the rows stored, the enrollments reported.
    with duckdb.connect(str(project / "warehouse.duckdb"), read_only=True) as warehouse:
        stored = {
            table: int(warehouse.execute(f"SELECT count(*) FROM {table}").fetchone()[0])  # type: ignore[index]
            for table in ("accounts", "people", "events")
        }
    expected = {**counts, "events": counts["events"] + counts["next_day"]}
    for table, rows in stored.items():
        check(
            rows == expected[table],
            f"{table}: {rows:,} rows stored, {expected[table]:,} in the files",
        )
    listed = {job["name"]: job for job in jobs["jobs"]}
    check(len(listed) == JOBS, f"{len(listed)} jobs listed, {JOBS} written")
    entered = sum(arm["entered"] for arm in report["arms"].values())
    check(
        entered == listed[REPORTED_JOB]["enrolled"],
        f"the report of {REPORTED_JOB} counts {entered} entered, the store "
        f"{listed[REPORTED_JOB]['enrolled']}",
    )
    check(len(library["jobs"]) == JOBS, f"the library measures {len(library['jobs'])} jobs")
    return {
        "events": events,
        "rows": counts,
        "generate_s": round(generated, 2),
        "enrollments": sum(int(job["enrolled"]) for job in listed.values()),
        "results": [
            {
                "case": f"{events / 1e6:g}M events: {item.name}",
                "events": events,
                "step": item.name,
                "closeloop_s": round(item.seconds, 3),
                "per_1m_events_s": round(item.seconds / (events / 1e6), 3),
                "peak_rss_mb": round(item.peak_rss_mb, 1),
                **item.detail,
            }
            for item in steps
        ],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument(
        "--sizes", default="1M,10M", help="events per run, comma-separated (1M,10M,100M)"
    )
    parser.add_argument("--page-requests", type=int, default=30, help="warm job page requests")
    parser.add_argument("--work-dir", type=Path, help="where the temporary folder goes")
    parser.add_argument("--keep", action="store_true", help="keep the generated data and projects")
    parser.add_argument(
        "--json", type=Path, default=ROOT / "bench" / "results" / "bench_scaling.json"
    )
    args = parser.parse_args()
    sizes = [parse_size(size) for size in args.sizes.split(",") if size.strip()]

    work = Path(tempfile.mkdtemp(prefix="closeloop-scaling-", dir=args.work_dir))
    sink = _Counter()
    port = free_port()
    controller = Controller(sink, hostname="127.0.0.1", port=port)
    controller.start()
    runs = []
    try:
        for events in sizes:
            runs.append(run_size(events, work, args, sink, port))
            if not args.keep:
                shutil.rmtree(work / f"events-{events}", ignore_errors=True)
    except Failed as failure:
        print(failure.code, file=sys.stderr)
        print(f"(kept for a look: {work})", file=sys.stderr)
        raise SystemExit(1) from None
    finally:
        controller.stop()
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)

    print()
    sizes_text = [f"{run['events'] / 1e6:g}M events" for run in runs]
    header = f"{'step':<24}" + "".join(f"{text:>24}" for text in sizes_text)
    print(header)
    for index, first in enumerate(runs[0]["results"]):
        cells = []
        for run in runs:
            item = run["results"][index]
            cells.append(f"{item['closeloop_s']:>10.2f} s {item['peak_rss_mb']:>8.0f} MB")
        print(f"{first['step']:<24}" + "".join(f"{cell:>24}" for cell in cells))
    for run in runs:
        page = run["results"][-1]
        print(
            f"{run['events']:,} events, {run['enrollments']:,} enrollments: job page warm p50 "
            f"{page['warm_p50_ms']} ms, p95 {page['warm_p95_ms']} ms"
        )

    document = {
        "benchmark": "bench_scaling",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "load": [round(value, 2) for value in os.getloadavg()],
        },
        "params": {
            "sizes": sizes,
            "jobs": JOBS,
            "events_per_account": EVENTS_PER_ACCOUNT,
            "people_per_account": PEOPLE_PER_ACCOUNT,
            "page_requests": args.page_requests,
        },
        "runs": [{key: value for key, value in run.items() if key != "results"} for run in runs],
        "results": [item for run in runs for item in run["results"]],
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
