"""Take the README's dashboard screenshots from the demo project (``make demo`` builds it).

    .venv/bin/python scripts/readme_screenshots.py [--project closeloop-demo]

Adds a throwaway viewer user to the project (removed afterwards), serves it with
``closeloop serve --no-scheduler`` on a free loopback port, logs in with Debian's Chromium
(Playwright, never a downloaded browser) and saves the top of the board (the demo's last full
month) and of the demo job's page, 1280 px wide, to ``docs/images/``.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
from playwright.sync_api import sync_playwright

ROOT = Path(__file__).resolve().parents[1]
CLOSELOOP = Path(sys.executable).parent / "closeloop"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]


def _run(project: Path, *args: str, stdin: str | None = None) -> str:
    done = subprocess.run(
        [str(CLOSELOOP), *args, "--project", str(project)],
        input=stdin,
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "COLUMNS": "200"},
    )
    return done.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--project", type=Path, default=ROOT / "closeloop-demo")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "images")
    options = parser.parse_args()
    project = options.project.resolve()
    options.out.mkdir(parents=True, exist_ok=True)
    name, password = f"screenshots-{secrets.token_hex(3)}", secrets.token_urlsafe(16)
    _run(project, "users", "add", name, "--role", "viewer", "--password-stdin", stdin=password)
    jobs = json.loads(_run(project, "jobs", "list", "--format", "json"))["jobs"]
    job = next(j["name"] for j in jobs if j["enrolled"] > 0)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    server = subprocess.Popen(
        [str(CLOSELOOP), "serve", "--no-scheduler", "--port", str(port), "--project", str(project)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(120):
            try:
                if httpx.get(f"{url}/api/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.5)
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS
            )
            page = browser.new_page(viewport={"width": 1280, "height": 1000})
            page.goto(f"{url}/login?next=/jobs")
            page.get_by_label("Name").fill(name)
            page.get_by_label("Password").fill(password)
            page.get_by_role("button", name="Log in").click()
            page.wait_for_url(lambda address: "/login" not in address)
            for path, file in ((f"/jobs/{job}", "dashboard-job.png"), ("/", "dashboard-board.png")):
                page.goto(url + path, timeout=120_000)
                page.wait_for_load_state("networkidle")
                page.screenshot(path=str(options.out / file))
                print(f"saved {options.out / file}")
            browser.close()
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)
        _run(project, "users", "remove", name)


if __name__ == "__main__":
    main()
