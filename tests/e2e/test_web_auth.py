"""The dashboard's login, roles, CSRF, twins and errors over real HTTP (uvicorn on loopback, no
browser), on a project fresh from ``closeloop init``.

Besides the real ``/jobs`` page, the module registers four pages under ``/_test`` that exercise
the mechanism where no product page does: an editor-only form, a page with a typed query
parameter, and pages that fail (a located error, an unexpected one). They are unregistered after.
"""

from __future__ import annotations

import re
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import httpx
import pytest
import uvicorn
from typer.testing import CliRunner

from closeloop.asgi import create_app
from closeloop.cli.main import app as cli
from closeloop.errors import LocatedError, SourceLocation
from closeloop.schemas.base import Schema
from closeloop.schemas.tokens import Role
from closeloop.services import tokens as token_service
from closeloop.services import users as user_service
from closeloop.services.server import Server
from closeloop.web import pages
from closeloop.web.auth import LoginThrottle
from closeloop.web.pages import Page, PageRequest, Redirect, Table, page

PASSWORD = "web-auth-password"


class Echo(Schema):
    value: int
    actor: str


def _shown(value: int) -> dict[str, object]:
    """The error template serves as a small page: it shows a code and a message."""
    return {"status": 200, "error": {"code": "echo", "message": str(value), "location": None}}


def _echo(request: PageRequest) -> Page:
    value = request.query_int("value", 0, minimum=0, maximum=100)
    assert value is not None
    model = Echo(value=value, actor=request.actor)
    return Page(
        model=model,
        context=_shown(value),
        tables={"values": Table(["value"], [[value], ["=1+1"], ["-2.5 pp"]])},
    )


def _write(request: PageRequest) -> Page | Redirect:
    if request.request.method == "POST":
        return Redirect(f"/_test/echo?value={request.query_str('value', '1')}")
    return Page(model=Echo(value=0, actor=request.actor), context=_shown(0))


def _located(_request: PageRequest) -> Page:
    raise LocatedError(
        "unknown attribute 'plna'",
        SourceLocation(
            line=3, column=14, file="jobs.yaml", source_line="    audience: plna == 'pro'"
        ),
        hint="did you mean 'plan'?",
    )


def _crash(_request: PageRequest) -> Page:
    raise RuntimeError("secret internals")


def _register_test_pages() -> list[str]:
    """Register the test pages (only while this module's server runs: a sweep over every
    registered page elsewhere must not meet them)."""
    page("/_test/echo", template="error.html.j2", title="Echo")(_echo)
    page("/_test/write", template="error.html.j2", role=Role.editor, methods=["GET", "POST"])(
        _write
    )
    page("/_test/located", template="error.html.j2")(_located)
    page("/_test/crash", template="error.html.j2")(_crash)
    return ["/_test/echo", "/_test/write", "/_test/located", "/_test/crash"]


@dataclass(frozen=True)
class Served:
    url: str
    admin_token: str
    viewer_token: str
    server: Server


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    project = tmp_path_factory.mktemp("web") / "project"
    environ = {
        "CLOSELOOP_WAREHOUSE_URL": f"duckdb:///{project.parent / 'warehouse.duckdb'}",
        "CLOSELOOP_STATE_URL": f"sqlite:///{project.parent / 'state.sqlite'}",
        "CLOSELOOP_AUTHOR": "ops",
    }
    result = CliRunner(env=environ).invoke(cli, ["init", str(project)])
    assert result.exit_code == 0, result.output
    server = Server.open(project, environ)
    for name, role in (
        ("admin-1", "admin"),
        ("editor-1", "editor"),
        ("viewer-1", "viewer"),
        ("guessed-1", "viewer"),
    ):
        user_service.add_user(server.store, name=name, role=role, password=PASSWORD, actor="ops")
    admin = token_service.create_token(server.store, name="a", role="admin", actor="ops").token
    viewer = token_service.create_token(server.store, name="v", role="viewer", actor="ops").token
    test_paths = _register_test_pages()
    port = _free_port()
    config = uvicorn.Config(
        create_app(server=server), host="127.0.0.1", port=port, log_level="warning"
    )
    uv = uvicorn.Server(config)
    thread = threading.Thread(target=uv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not uv.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert uv.started
    try:
        yield Served(f"http://127.0.0.1:{port}", admin, viewer, server)
    finally:
        uv.should_exit = True
        thread.join(timeout=30)
        server.close()
        for path in test_paths:
            pages.PAGES.pop(path, None)


def _client(served: Served) -> httpx.Client:
    return httpx.Client(base_url=served.url, follow_redirects=False, timeout=60)


@contextmanager
def _logged_in(served: Served, role: str) -> Iterator[tuple[httpx.Client, str]]:
    """A client with a session as ``role`` and the session's CSRF token (from the page)."""
    with _client(served) as client:
        yield client, _log_in(client, role)


def _log_in(client: httpx.Client, role: str) -> str:
    answer = client.post(
        "/login", data={"name": f"{role}-1", "password": PASSWORD, "next": "/jobs"}
    )
    assert answer.status_code == 303, answer.text
    page_html = client.get("/jobs").text
    match = re.search(r'name="csrf-token" content="([^"]+)"', page_html)
    assert match is not None
    return match.group(1)


def _no_traceback(text: str) -> None:
    assert "Traceback" not in text
    assert 'File "' not in text


def test_without_a_login_browsers_go_to_the_form_and_scripts_get_401(served: Served) -> None:
    with _client(served) as client:
        answer = client.get("/jobs?x=1")
        assert answer.status_code == 303
        assert answer.headers["location"] == "/login?next=%2Fjobs%3Fx%3D1"
        for path, headers in (
            ("/jobs.json", {}),
            ("/jobs.csv?table=jobs", {}),
            ("/jobs", {"accept": "application/json"}),
        ):
            answer = client.get(path, headers=headers)
            assert answer.status_code == 401, path
            assert answer.json()["error"]["code"] == "unauthorized"
            assert answer.headers["www-authenticate"].startswith("Bearer")
        # htmx gets told where to go instead of a login page swapped into the page.
        answer = client.get("/jobs", headers={"hx-request": "true"})
        assert (answer.status_code, answer.headers["hx-redirect"]) == (401, "/login?next=%2Fjobs")
        assert client.get("/login").status_code == 200
        # A bad token is a 401, not a fallback to anything else.
        answer = client.get("/jobs.json", headers={"authorization": "Bearer cl_not-a-token"})
        assert answer.status_code == 401


def test_a_wrong_name_or_password_gets_one_message_and_no_cookie(served: Served) -> None:
    with _client(served) as client:
        for name, password in (("viewer-1", "wrong-password"), ("nobody", PASSWORD)):
            answer = client.post("/login", data={"name": name, "password": password})
            assert answer.status_code == 401
            assert "Wrong name or password." in answer.text
            assert "set-cookie" not in answer.headers
        assert client.get("/jobs").status_code == 303


def test_a_login_posted_from_another_site_is_refused(served: Served) -> None:
    """Login CSRF: a page elsewhere cannot log a browser into an account of its choosing."""
    credentials = {"name": "viewer-1", "password": PASSWORD}
    with _client(served) as client:
        foreign = client.post("/login", data=credentials, headers={"Origin": "https://evil.test"})
        assert foreign.status_code == 403 and "set-cookie" not in foreign.headers
        assert "posted from another site" in foreign.text
        host = client.base_url.netloc.decode()
        ours = client.post("/login", data=credentials, headers={"Origin": f"http://{host}"})
        assert ours.status_code == 303 and "closeloop_session" in ours.headers["set-cookie"]


def test_password_guessing_is_throttled_per_name(served: Served) -> None:
    with _client(served) as client:
        for attempt in range(10):
            answer = client.post(
                "/login", data={"name": "guessed-1", "password": f"guess{attempt}"}
            )
            assert answer.status_code == 401
        # The right password no longer helps, for a while; other names are not affected.
        refused = client.post("/login", data={"name": "guessed-1", "password": PASSWORD})
        assert refused.status_code == 429
        assert 0 < int(refused.headers["retry-after"]) <= 900
        assert "Too many failed logins for this name: try again in 15 minutes." in refused.text
        assert "set-cookie" not in refused.headers
        other = client.post("/login", data={"name": "viewer-1", "password": PASSWORD})
        assert other.status_code == 303


def test_the_throttle_forgets_failures_after_its_window() -> None:
    throttle = LoginThrottle(limit=3, window=60)
    for moment in (0.0, 10.0, 20.0):
        assert throttle.wait_seconds("Ann", now=moment) == 0
        throttle.failed("Ann", now=moment)
    assert throttle.wait_seconds("ann", now=30.0) == 30  # names are compared case-insensitively
    assert throttle.wait_seconds("ann", now=60.5) == 0  # the first failure left the window
    throttle.failed("ann", now=61.0)
    assert throttle.wait_seconds("ann", now=61.0) == 9
    throttle.succeeded("ann")
    assert throttle.wait_seconds("ann", now=61.0) == 0


def test_a_session_cookie_is_httponly_samesite_and_only_local_next_is_followed(
    served: Served,
) -> None:
    with _client(served) as client:
        answer = client.post(
            "/login",
            data={"name": "viewer-1", "password": PASSWORD, "next": "//evil.example/x"},
        )
        assert (answer.status_code, answer.headers["location"]) == (303, "/")
        cookie = answer.headers["set-cookie"]
        assert cookie.startswith("closeloop_session=")
        assert "HttpOnly" in cookie
        assert "SameSite=lax" in cookie
        assert "Secure" not in cookie  # plain http on loopback
        value = cookie.split(";")[0].split("=", 1)[1]
        assert len(value) >= 43  # 256 bits
        answer = client.get("/jobs")
        assert answer.status_code == 200
        assert '<a href="/jobs" aria-current="page">Jobs</a>' in answer.text
        assert "viewer-1" in answer.text
        assert answer.headers["cache-control"] == "no-store"
        assert answer.headers["x-frame-options"] == "DENY"


def test_the_json_twin_is_what_the_api_returns(served: Served) -> None:
    with _logged_in(served, "viewer") as (client, _):
        twin = client.get("/jobs.json")
        negotiated = client.get("/jobs", headers={"accept": "application/json"})
    with _client(served) as api:
        from_api = api.get("/api/jobs", headers={"authorization": f"Bearer {served.viewer_token}"})
        with_token = api.get(
            "/jobs.json", headers={"authorization": f"Bearer {served.viewer_token}"}
        )
    assert from_api.status_code == 200
    assert twin.json() == negotiated.json() == from_api.json() == with_token.json()
    assert twin.json()["count"] >= 1


def test_csv_tables_and_the_list_of_tables_for_an_unknown_one(served: Served) -> None:
    with _logged_in(served, "viewer") as (client, _):
        answer = client.get("/jobs.csv?table=jobs")
        assert answer.status_code == 200
        assert answer.headers["content-type"] == "text/csv; charset=utf-8"
        assert answer.headers["content-disposition"] == 'attachment; filename="jobs-jobs.csv"'
        lines = answer.text.splitlines()
        assert lines[0] == "job,status,version,launched,last tick,enrolled,active,enrolled by arm"
        twin = client.get("/jobs.json").json()
        assert len(lines) == 1 + twin["count"]
        assert lines[1].split(",")[0] == twin["jobs"][0]["name"]
        # A formula-like cell is defused; a signed number stays as it is.
        values = client.get("/_test/echo.csv?table=values&value=7").text.splitlines()
        assert values == ["value", "7", "'=1+1", "-2.5 pp"]
        for query in ("?table=nope", ""):
            missing = client.get(f"/jobs.csv{query}")
            assert missing.status_code == 404
            assert "tables: jobs" in missing.json()["error"]["message"]


def test_roles_editor_pages_refuse_a_viewer(served: Served) -> None:
    with _logged_in(served, "viewer") as (viewer, csrf):
        answer = viewer.get("/_test/write")
        assert answer.status_code == 403
        assert "needs the editor role; viewer-1 has viewer" in answer.text
        answer = viewer.post("/_test/write", data={"csrf_token": csrf})
        assert answer.status_code == 403
        answer = viewer.get("/_test/write.json")
        assert answer.json()["error"]["code"] == "forbidden"
    with _client(served) as client:
        answer = client.get(
            "/_test/write.json", headers={"authorization": f"Bearer {served.viewer_token}"}
        )
        assert answer.status_code == 403


def test_csrf_a_session_post_needs_its_token_a_bearer_post_does_not(served: Served) -> None:
    with _logged_in(served, "editor") as (_other, other_csrf):
        pass
    with _logged_in(served, "editor") as (editor, csrf):
        assert editor.post("/_test/write", data={"value": "3"}).status_code == 403
        wrong = editor.post("/_test/write", data={"value": "3", "csrf_token": other_csrf})
        assert wrong.status_code == 403
        assert "CSRF" in wrong.text
        assert editor.post("/_test/write", headers={"x-csrf-token": "nope"}).status_code == 403
        ok = editor.post("/_test/write", data={"value": "3", "csrf_token": csrf})
        assert (ok.status_code, ok.headers["location"]) == (303, "/_test/echo?value=3")
        by_header = editor.post("/_test/write", data={"value": "4"}, headers={"x-csrf-token": csrf})
        assert by_header.status_code == 303
        htmx = editor.post("/_test/write", headers={"x-csrf-token": csrf, "hx-request": "true"})
        assert (htmx.status_code, htmx.headers["hx-redirect"]) == (200, "/_test/echo?value=1")
    with _client(served) as client:
        answer = client.post(
            "/_test/write", headers={"authorization": f"Bearer {served.admin_token}"}
        )
        assert answer.status_code == 303


def test_bad_parameters_and_errors_render_without_a_traceback(served: Served) -> None:
    with _logged_in(served, "viewer") as (client, _):
        good = client.get("/_test/echo.json?value=42")
        assert good.json() == {"value": 42, "actor": "viewer-1"}
        bad = client.get("/_test/echo?value=lots")
        assert bad.status_code == 422
        assert "parameter &#39;value&#39;: expected a whole number, got &#39;lots&#39;" in bad.text
        _no_traceback(bad.text)
        bad_json = client.get("/_test/echo.json?value=500")
        assert bad_json.status_code == 422
        assert bad_json.json()["error"] == {
            "code": "bad_parameter",
            "message": "parameter 'value': 500 is outside 0..100",
            "location": None,
            "hint": "",
            "problems": [],
        }
        located = client.get("/_test/located")
        assert located.status_code == 422
        assert "jobs.yaml:3:14" in located.text
        assert "    audience: plna == &#39;pro&#39;\n                 ^" in located.text
        assert "did you mean &#39;plan&#39;?" in located.text
        located_json = client.get("/_test/located.json").json()["error"]
        assert located_json["location"]["column"] == 14
        crash = client.get("/_test/crash")
        assert crash.status_code == 500
        assert "the server log has the details" in crash.text
        assert "secret internals" not in crash.text
        _no_traceback(crash.text)
        assert client.get("/_test/crash.json").json()["error"]["code"] == "internal_error"
        missing = client.get("/no/such/page")
        assert missing.status_code == 404
        assert "no page at /no/such/page" in missing.text
        assert client.get("/no/such/page.json").json()["error"]["code"] == "not_found"


def test_logout_needs_the_token_and_ends_the_session(served: Served) -> None:
    with _logged_in(served, "viewer") as (client, csrf):
        assert client.post("/logout").status_code == 403
        assert client.get("/jobs").status_code == 200
        answer = client.post("/logout", data={"csrf_token": csrf})
        assert (answer.status_code, answer.headers["location"]) == (303, "/login")
        assert 'closeloop_session=""' in answer.headers["set-cookie"]
        # The old cookie is dead in the store, whatever the browser keeps.
        assert client.get("/jobs").status_code == 303


def test_the_api_keeps_its_paths_and_the_dashboard_stays_out_of_openapi(served: Served) -> None:
    with _client(served) as client:
        missing = client.get("/api/no-such-route")
        assert missing.status_code == 404
        assert missing.json()["error"]["code"] == "not_found"
        assert client.get("/api/health").json()["status"] == "ok"
        paths = client.get("/openapi.json").json()["paths"]
        assert all(path.startswith(("/api/", "/v1/")) for path in paths)
        vendored = client.get("/static/vendor/vega-embed.min.js")
        assert vendored.status_code == 200
        assert "vegaEmbed" in vendored.text


def test_every_vendored_file_the_layout_loads_is_served(served: Served) -> None:
    with _logged_in(served, "viewer") as (client, _):
        html = client.get("/jobs").text
        sources = re.findall(r'(?:src|href)="(/static/[^"]+)"', html)
        assert len(sources) == 6, sources
        for source in sources:
            assert client.get(source).status_code == 200, source
