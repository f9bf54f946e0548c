"""Latency of the dashboard's job page on a real ``closeloop serve``: cold (the report is
computed) and warm (the cached report, checked against the stores' high-water marks).

    .venv/bin/python bench/job_page.py --demo                        # builds closeloop-demo/
    .venv/bin/python bench/job_page.py --project closeloop-demo      # an existing project
    .venv/bin/python bench/job_page.py --accounts 30000 --days 400   # a bigger simulated one

It starts the server on a free loopback port, adds a viewer and logs in through the login form
(session cookie), then requests the job page: the first request is cold; ``--cold N`` more cold
requests each follow a restart of the server (an empty cache); then ``--requests N`` warm ones.
Prints p50/p95/max in ms and writes the figures as JSON (``--json FILE``, default
``bench/results/job_page.json``; the benchmarks' shape: ``benchmark``, ``date``, ``machine``,
``params`` and one result per case, cold and warm, with the server's CPU per warm request).
Before timing, the page's JSON twin must show the report the CLI gives (``closeloop report JOB
--format json``: the same arms, entered and completed per arm); the script exits with 1
otherwise. Nothing is asserted on time.

What a warm page costs (the server's CPU): opening the workspace (the project's definitions are
kept while their files keep their stamps; the DuckDB file is connected per request, so other
processes can write it between requests), the job's report from the cache, and the counts and
lists around it, which are remembered while the DuckDB warehouse and the SQLite state store
files are unwritten (``services/file_marks.py``); then rendering the HTML.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import secrets
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx

from closeloop.services.project import open_workspace

SCRIPT = Path(sys.executable).with_name("closeloop")
ROOT = Path(__file__).resolve().parents[1]


def run(*args: str, stdin: str | None = None) -> str:
    result = subprocess.run(
        [str(SCRIPT), *args],
        capture_output=True,
        text=True,
        input=stdin,
        check=False,
        env={**os.environ, "NO_COLOR": "1"},
    )
    if result.returncode != 0:
        raise SystemExit(f"closeloop {' '.join(args)} failed:\n{result.stdout}{result.stderr}")
    return result.stdout


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc), or nan elsewhere."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextmanager
def served(project: Path) -> Iterator[tuple[str, int]]:
    port = free_port()
    process = subprocess.Popen(
        [
            str(SCRIPT),
            "serve",
            "--no-scheduler",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--project",
            str(project),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{url}/api/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.2)
        else:
            raise SystemExit("serve did not start within 120 s")
        yield url, process.pid
    finally:
        process.terminate()
        process.wait(timeout=30)


def login(url: str, name: str, password: str) -> httpx.Client:
    client = httpx.Client(base_url=url, timeout=300)
    response = client.post("/login", data={"name": name, "password": password, "next": "/jobs"})
    if response.status_code not in (200, 303) or not client.cookies:
        raise SystemExit(f"login failed: {response.status_code} {response.text[:200]}")
    return client


def timed_get(client: httpx.Client, path: str) -> float:
    started = time.perf_counter()
    response = client.get(path)
    elapsed = time.perf_counter() - started
    if response.status_code != 200:
        raise SystemExit(f"GET {path}: {response.status_code} {response.text[:300]}")
    return elapsed * 1000


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(share * (len(ordered) - 1))))
    return ordered[index]


def summary(values: list[float]) -> dict[str, float]:
    return {
        "n": len(values),
        "p50_ms": round(statistics.median(values), 1),
        "p95_ms": round(percentile(values, 0.95), 1),
        "max_ms": round(max(values), 1),
    }


def events_count(project: Path) -> int:
    with open_workspace(project, write=False) as workspace:
        return int(workspace.warehouse.table("events").count().execute())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--project", type=Path, help="an existing project folder")
    source.add_argument("--demo", action="store_true", help="build closeloop-demo/ first")
    parser.add_argument("--accounts", type=int, help="simulate this many accounts instead")
    parser.add_argument("--days", type=int, default=400, help="days to simulate (--accounts)")
    parser.add_argument("--job", default="Integration nudge")
    parser.add_argument("--requests", type=int, default=100, help="warm requests")
    parser.add_argument("--cold", type=int, default=3, help="cold requests (a restart each)")
    parser.add_argument(
        "--json",
        type=Path,
        default=ROOT / "bench" / "results" / "job_page.json",
        help="write the figures here",
    )
    args = parser.parse_args()

    if args.accounts:
        project = Path(tempfile.mkdtemp(prefix="closeloop-bench-")) / "project"
        run("init", str(project), "--name", "bench")
        started = time.perf_counter()
        run(
            "simulate",
            "--accounts",
            str(args.accounts),
            "--days",
            str(args.days),
            "--run-jobs",
            "--project",
            str(project),
        )
        print(f"simulated in {time.perf_counter() - started:.0f} s: {project}", flush=True)
    elif args.demo or args.project is None:
        project = ROOT / "closeloop-demo"
        if args.demo or not project.exists():
            run("demo", "--dir", str(project))
    else:
        project = args.project

    name, password = f"bench-{secrets.token_hex(3)}", secrets.token_urlsafe(16)
    run(
        "users",
        "add",
        name,
        "--role",
        "viewer",
        "--password-stdin",
        "--project",
        str(project),
        stdin=password + "\n",
    )
    path = f"/jobs/{quote(args.job, safe='')}"

    cold: list[float] = []
    cpu_ms = float("nan")
    warm: list[float] = []
    try:
        for _ in range(max(args.cold, 1)):
            with served(project) as (url, pid):
                client = login(url, name, password)
                cold.append(timed_get(client, path))
                if len(cold) == max(args.cold, 1):
                    timed_get(client, path)  # the first warm one loads what a restart drops
                    before = cpu_seconds(pid)
                    for _ in range(args.requests):
                        warm.append(timed_get(client, path))
                    cpu_ms = (cpu_seconds(pid) - before) * 1000 / max(args.requests, 1)
                    twin = client.get(path + ".json").json()
                client.close()
    finally:
        run("users", "remove", name, "--project", str(project))

    report = twin["report"]
    cli = json.loads(run("report", args.job, "--format", "json", "--project", str(project)))
    for arm, counts in cli["arms"].items():
        page_arm = report["arms"].get(arm, {})
        for field in ("entered", "completed"):
            if page_arm.get(field) != counts[field]:
                print(
                    f"the page's {arm} {field} is {page_arm.get(field)}, the CLI's {counts[field]}",
                    file=sys.stderr,
                )
                raise SystemExit(1)
    figures: dict[str, Any] = {
        "project": str(project),
        "job": args.job,
        "events": events_count(project),
        "enrollments": sum(arm["entered"] for arm in report["arms"].values()),
        "cold": summary(cold),
        "warm": summary(warm),
        # The server's CPU per warm request: what the page costs whatever else runs.
        "warm_server_cpu_ms": round(cpu_ms, 1),
        "load_average": os.getloadavg()[0],
    }
    print(
        f"{args.job}: {figures['enrollments']:,} enrollments, {figures['events']:,} events\n"
        f"cold  p50 {figures['cold']['p50_ms']} ms  max {figures['cold']['max_ms']} ms "
        f"({len(cold)} requests)\n"
        f"warm  p50 {figures['warm']['p50_ms']} ms  p95 {figures['warm']['p95_ms']} ms  "
        f"max {figures['warm']['max_ms']} ms ({len(warm)} requests); server CPU "
        f"{figures['warm_server_cpu_ms']} ms per warm request; load average "
        f"{figures['load_average']:.1f}"
    )
    size = f"{figures['events']:,} events, {figures['enrollments']:,} enrollments"
    document = {
        "benchmark": "job_page",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "load": [round(value, 2) for value in os.getloadavg()],
        },
        "params": {
            "project": str(project),
            "job": args.job,
            "accounts": args.accounts,
            "days": args.days if args.accounts else None,
            "cold_requests": len(cold),
            "warm_requests": len(warm),
            "events": figures["events"],
            "enrollments": figures["enrollments"],
        },
        "results": [
            {
                "case": f"cold ({size})",
                "closeloop_s": round(figures["cold"]["p50_ms"] / 1000, 4),
                **figures["cold"],
            },
            {
                "case": f"warm ({size})",
                "closeloop_s": round(figures["warm"]["p50_ms"] / 1000, 4),
                **figures["warm"],
                "server_cpu_ms": figures["warm_server_cpu_ms"],
            },
        ],
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
