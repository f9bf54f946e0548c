"""The browser-test harness: Playwright (the Python package) driving Debian's Chromium against a
real ``closeloop serve`` process on loopback.

- ``dashboard`` (session): ONE simulated project served by ``closeloop serve --no-scheduler`` on a
  free port, with an admin, an editor and a viewer user and API tokens. Build nothing else this
  expensive: share it, and give anything a test writes (a job it launches) a unique name.
- ``browser`` (session): headless ``/usr/bin/chromium`` (installed with apt when missing; if that
  fails the tests fail on CI and are skipped elsewhere, with the reason). Playwright never
  downloads a browser here.
- ``logged_in_page`` (function): ``logged_in_page("viewer")`` is a new page, logged in through the
  form as that role, 1280 px wide; its context is closed after the test.
- ``screenshot`` (function): ``screenshot(page, "jobs")`` saves
  ``test-artifacts/screenshots/jobs-1280.png`` and ``jobs-390.png`` (full page).
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from browser_support import Dashboard, log_in
from playwright.sync_api import Browser, BrowserContext, Page, sync_playwright

CHROMIUM = Path("/usr/bin/chromium")
INSTALL_LOCK = Path(tempfile.gettempdir()) / "closeloop-tests-chromium-install.lock"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / "test-artifacts" / "screenshots"
SCRIPT = Path(sys.executable).parent / "closeloop"
PASSWORD = "browser-tests-pass"
WIDE, NARROW, HEIGHT = 1280, 390, 900
ROLES = ("admin", "editor", "viewer")


def _apt_install_chromium() -> str:
    """Install Debian's chromium with apt; the reason it failed, or '' once it is there."""
    if shutil.which("apt-get") is None:
        return "apt-get is not available"
    if os.geteuid() != 0:
        return "installing chromium with apt needs root"
    # apt waits for another apt (an upgrade, a package install) instead of failing at once.
    install = ["apt-get", "-o", "DPkg::Lock::Timeout=600", "install", "-y"]
    install += ["--no-install-recommends", "chromium"]
    environ = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    result = subprocess.run(install, capture_output=True, text=True, env=environ, check=False)
    if result.returncode != 0:
        subprocess.run(["apt-get", "update"], capture_output=True, env=environ, check=False)
        result = subprocess.run(install, capture_output=True, text=True, env=environ, check=False)
    if result.returncode != 0 or not CHROMIUM.exists():
        return f"apt-get install chromium failed: {result.stderr.strip()[-500:]}"
    return ""


def ensure_chromium() -> None:
    if CHROMIUM.exists():
        return
    # Test workers running in parallel install it once: the first takes the lock, the others
    # wait for it and find chromium there.
    with INSTALL_LOCK.open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        reason = "" if CHROMIUM.exists() else _apt_install_chromium()
    if reason:
        message = f"{CHROMIUM} is missing and could not be installed ({reason})"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _environ(project: Path) -> dict[str, str]:
    """The environment of the served project: this process's minus any CLOSELOOP_ setting that
    could point it elsewhere."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith("CLOSELOOP_")}
    environ.update(CLOSELOOP_AUTHOR="browser-tests", CLOSELOOP_PROJECT=str(project))
    return environ


def _closeloop(environ: dict[str, str], *args: str, stdin: str | None = None, cwd: Path) -> str:
    result = subprocess.run(
        [str(SCRIPT), *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=environ,
        cwd=cwd,
        timeout=600,
        check=False,
    )
    if result.returncode != 0:
        raise AssertionError(
            f"closeloop {' '.join(args)} failed ({result.returncode}):\n"
            f"{result.stdout[-2000:]}\n{result.stderr[-2000:]}"
        )
    return result.stdout


def _wait_until_up(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(
                f"closeloop serve exited ({process.returncode}):\n{log.read_text()}"
            )
        try:
            if httpx.get(f"{url}/api/health", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.25)
    raise AssertionError(f"closeloop serve did not answer within 90 s:\n{log.read_text()}")


@pytest.fixture(scope="session")
def dashboard(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dashboard]:
    """``closeloop init`` + ``simulate --accounts 200 --days 45 --run-jobs`` (a measured job),
    three users and two tokens, served by ``closeloop serve --no-scheduler``."""
    project = tmp_path_factory.mktemp("dashboard") / "project"
    project.mkdir()
    environ = _environ(project)
    _closeloop(environ, "init", str(project), cwd=project)
    # Class thresholds below the defaults (0.9 and 14 days): 45 simulated days are too few for
    # anyone to be past the 90th percentile, and the stuck-accounts test needs some to open.
    with (project / "closeloop.yaml").open("a", encoding="utf-8") as config:
        config.write("\nstage_classes:\n  behind: 0.4\n  stuck: 0.5\n  stuck_days: 4\n")
    _closeloop(environ, "simulate", "--accounts", "200", "--days", "45", "--run-jobs", cwd=project)
    users = {}
    for role in ROLES:
        name = f"{role}-user"
        _closeloop(
            environ, "users", "add", name, "--role", role, "--password-stdin",
            stdin=PASSWORD + "\n", cwd=project,
        )  # fmt: skip
        users[role] = (name, PASSWORD)
    tokens = {
        role: json.loads(
            _closeloop(
                environ,
                "tokens",
                "create",
                "--role",
                role,
                "--name",
                f"browser-{role}",
                "--format",
                "json",
                cwd=project,
            )
        )["token"]
        for role in ("admin", "viewer")
    }
    jobs = json.loads(_closeloop(environ, "jobs", "list", "--format", "json", cwd=project))
    measured = [job["name"] for job in jobs["jobs"] if job["enrolled"] > 0]
    assert measured, f"the simulation launched no job: {jobs}"
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    log = project / "serve.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            [
                str(SCRIPT),
                "serve",
                "--no-scheduler",
                "--port",
                str(port),
                "--project",
                str(project),
            ],
            stdout=output,
            stderr=subprocess.STDOUT,
            env=environ,
            cwd=project,
        )
    try:
        _wait_until_up(url, process, log)
        yield Dashboard(
            url=url,
            project=project,
            users=users,
            token=tokens["admin"],
            viewer_token=tokens["viewer"],
            job=measured[0],
            log=log,
            environ=environ,
        )
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    """Headless Debian Chromium through Playwright."""
    ensure_chromium()
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def logged_in_page(browser: Browser, dashboard: Dashboard) -> Iterator[Callable[..., Page]]:
    """``logged_in_page(role="admin")``: a new page in a new context, logged in as that role."""
    contexts: list[BrowserContext] = []

    def open_page(role: str = "admin") -> Page:
        context = browser.new_context(
            viewport={"width": WIDE, "height": HEIGHT}, base_url=dashboard.url
        )
        context.set_default_timeout(30_000)
        contexts.append(context)
        page = context.new_page()
        log_in(page, dashboard, role)
        return page

    yield open_page
    for context in contexts:
        context.close()


@pytest.fixture
def screenshot() -> Callable[[Page, str], list[Path]]:
    """``screenshot(page, name)``: full-page PNGs at 1280 px and 390 px wide."""

    def take(page: Page, name: str) -> list[Path]:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        paths = []
        for width in (WIDE, NARROW):
            page.set_viewport_size({"width": width, "height": HEIGHT})
            path = SCREENSHOTS / f"{name}-{width}.png"
            page.screenshot(path=str(path), full_page=True)
            paths.append(path)
        page.set_viewport_size({"width": WIDE, "height": HEIGHT})
        return paths

    return take
