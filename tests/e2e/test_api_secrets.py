"""Secrets are never returned or logged: the SMTP password, the signing secret (it signs webhooks
and unsubscribe links) and a Slack webhook URL are set, then every route is called with and
without a token and with bad bodies, the OpenAPI documents are read, an unexpected error is
provoked, and a real ``closeloop serve`` process is exercised over HTTP; no response, header or
log line may contain any of them.
"""

from __future__ import annotations

import logging
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from api_support import Api, api_for
from fastapi import FastAPI
from fastapi.routing import APIRoute, iter_route_contexts

from closeloop.schemas.tokens import Role
from closeloop.services.project import init_project
from closeloop.services.server import SecretsFilter, Server, secret_values
from closeloop.settings import load_settings

SCRIPT = Path(sys.executable).with_name("closeloop")
SMTP_PASSWORD = "smtp-" + secrets.token_hex(12)
SIGNING_SECRET = secrets.token_hex(24)
SLACK_URL = "https://hooks.slack.com/services/T0/B0/" + secrets.token_hex(12)
SECRETS = (SMTP_PASSWORD, SIGNING_SECRET, SLACK_URL, SLACK_URL.rsplit("/", 1)[1])
SLACK_CONFIG = "slack:\n  default: SLACK_CS_ALERTS\n"


def _leaks(text: str) -> list[str]:
    return [secret for secret in SECRETS if secret in text]


@pytest.fixture
def environ(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    folder = tmp_path / "secretive"
    monkeypatch.setenv("SLACK_CS_ALERTS", SLACK_URL)  # Slack routes are read from the process
    return {
        "CLOSELOOP_WAREHOUSE_URL": f"duckdb:///{folder / 'warehouse.duckdb'}",
        "CLOSELOOP_STATE_URL": f"sqlite:///{folder / 'state.sqlite'}",
        "CLOSELOOP_SMTP_USERNAME": "cs",
        "CLOSELOOP_SMTP_PASSWORD": SMTP_PASSWORD,
        "CLOSELOOP_SECRET": SIGNING_SECRET,
        "SLACK_CS_ALERTS": SLACK_URL,
    }


@pytest.fixture
def project(tmp_path: Path, environ: dict[str, str]) -> Path:
    folder = tmp_path / "secretive"
    init_project(folder, "secretive")
    config = folder / "closeloop.yaml"
    config.write_text(config.read_text(encoding="utf-8") + SLACK_CONFIG, encoding="utf-8")
    return folder


@pytest.fixture
def api(project: Path, environ: dict[str, str]) -> Iterator[Api]:
    with api_for(project, environ) as client:
        yield client


def _requests(app: FastAPI) -> Iterator[tuple[str, str, dict[str, object]]]:
    """Every route and method, with no body, an empty object, and a body of the wrong type."""
    for route in iter_route_contexts(app.routes):
        if not isinstance(route.original_route, APIRoute):
            continue
        path = route.path_format or ""
        for parameter in route.dependant.path_params:
            path = path.replace("{" + parameter.name + "}", "x")
        for method in sorted((route.methods or set()) - {"HEAD"}):
            yield method, path, {}
            if method != "GET":
                yield method, path, {"json": {}}
                yield method, path, {"content": b"{not json", "headers": {"X": "1"}}


def test_no_route_returns_a_secret(api: Api, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    settings = api.server.settings
    assert (settings.smtp_password, settings.secret) == (SMTP_PASSWORD, SIGNING_SECRET)
    app = api.client.app
    assert isinstance(app, FastAPI)
    seen: list[str] = []
    for method, path, options in _requests(app):
        for role in (None, Role.admin, Role.ingest):
            headers = dict(options.get("headers") or {})  # type: ignore[call-overload]
            if role is not None:
                headers.update(api.headers(role))
            kwargs = {key: value for key, value in options.items() if key != "headers"}
            response = api.client.request(method, path, headers=headers, **kwargs)  # type: ignore[arg-type]
            seen.append(
                f"{method} {path} {response.status_code} {response.headers} {response.text}"
            )
    for path in ("/openapi.json", "/docs", "/redoc", "/api/health", "/nowhere", "/api/tokens/x"):
        response = api.client.get(path, headers=api.headers(Role.admin))
        seen.append(f"GET {path} {response.status_code} {response.headers} {response.text}")
    seen.append(api.client.put("/api/health").text)  # 405
    assert len(seen) > 50
    leaks = [(line[:120], _leaks(line)) for line in seen if _leaks(line)]
    assert not leaks
    assert not _leaks(caplog.text)


def test_an_unexpected_error_names_no_secret_and_its_log_is_masked(
    api: Api, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A library that quotes a secret in its exception (as a failed login might) reaches the
    client as a generic 500; the serve process's log filter masks it in the traceback too."""

    def failing(self: Server) -> None:
        raise RuntimeError(f"login refused for password {SMTP_PASSWORD} with key {SIGNING_SECRET}")

    monkeypatch.setattr(Server, "health", failing)
    caplog.set_level(logging.ERROR)
    response = api.client.get("/api/health")
    assert response.status_code == 500
    assert response.json()["error"]["code"] == "internal_error"
    assert not _leaks(response.text)

    settings = load_settings(api.server.settings.project_dir, api.server.environ)
    masking = SecretsFilter(secret_values(settings))
    assert set(masking.secrets) >= {SMTP_PASSWORD, SIGNING_SECRET, SLACK_URL}
    records = [record for record in caplog.records if record.exc_info]
    assert records, "the unexpected error was not logged"
    formatter = logging.Formatter("%(levelname)s %(message)s")
    for record in records:
        assert masking.filter(record)
        text = formatter.format(record)
        assert "RuntimeError" in text and "***" in text
        assert not _leaks(text), text


def test_the_filter_masks_messages_arguments_and_url_passwords() -> None:
    masking = SecretsFilter([SMTP_PASSWORD, "short"])
    assert masking.secrets == [SMTP_PASSWORD]  # too short to mask without mangling words
    record = logging.LogRecord(
        "uvicorn.access",
        logging.INFO,
        __file__,
        1,
        '%s - "%s %s HTTP/%s" %d',
        ("127.0.0.1:1", "GET", f"/x?p={SMTP_PASSWORD}", "1.1", 200),
        None,
    )
    assert masking.filter(record)
    assert isinstance(record.args, tuple) and len(record.args) == 5 and record.args[4] == 200
    assert record.getMessage() == '127.0.0.1:1 - "GET /x?p=*** HTTP/1.1" 200'
    url = logging.LogRecord(
        "closeloop", logging.ERROR, __file__, 1, "cannot reach postgresql://u:pw0rd@db/x", (), None
    )
    masking.filter(url)
    assert url.getMessage() == "cannot reach postgresql://u:***@db/x"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def test_a_served_project_never_logs_a_secret(
    project: Path, environ: dict[str, str], tmp_path: Path
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLOSELOOP_")}
    env.update(environ)
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    created = subprocess.run(
        [
            str(SCRIPT),
            "tokens",
            "create",
            "--role",
            "admin",
            "--name",
            "ops",
            "--project",
            str(project),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=True,
    )
    assert not _leaks(created.stdout + created.stderr)
    token = created.stdout.strip().splitlines()[-1]
    log = tmp_path / "serve.log"
    with (
        log.open("w") as output,
        subprocess.Popen(
            [str(SCRIPT), "serve", "--port", str(port), "--every", "1s", "--project", str(project)],
            stdout=output,
            stderr=subprocess.STDOUT,
            env=env,
        ) as server,
    ):
        try:
            deadline = time.monotonic() + 60
            while True:
                assert time.monotonic() < deadline and server.poll() is None, log.read_text()
                try:
                    if httpx.get(f"{base}/api/health", timeout=2).status_code == 200:
                        break
                except httpx.TransportError:
                    time.sleep(0.2)
            with httpx.Client(base_url=base, timeout=60) as client:
                admin = {"Authorization": f"Bearer {token}"}
                answers = [
                    client.get("/openapi.json"),
                    client.get("/api/tokens", headers=admin),
                    client.get("/api/tokens"),
                    client.get("/api/tokens", headers={"Authorization": "Basic !!"}),
                    client.post("/api/tokens", headers=admin, json={"name": "x", "role": "boss"}),
                    client.post("/api/tokens", headers=admin, content=b"{oops"),
                    client.delete(f"/api/tokens/{SMTP_PASSWORD[:4]}", headers=admin),
                    client.get("/api/audit", headers=admin),
                    client.get("/api/definitions", headers=admin),
                    client.post("/v1/batch", headers=admin, json={"batch": [{"type": "nope"}]}),
                ]
            time.sleep(2.5)  # a scheduler cycle or two
        finally:
            server.send_signal(signal.SIGTERM)
            server.wait(timeout=120)
    for answer in answers:
        assert answer.status_code < 500, answer.text
        assert not _leaks(answer.text + str(answer.headers))
    text = log.read_text()
    assert "GET /api/tokens" in text and "outbox:" in text  # the log was written
    assert not _leaks(text), text
