"""The customer's read-only link to a success plan over HTTP, on the real ``closeloop serve`` app:
an editor shares a plan from its page (session + CSRF), the customer opens it with no login and
sees only that plan, the revoke button and expiry make it 410, a forged or foreign link 404;
the API routes and the CLI make and revoke the same links."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from journey_pages_support import Served, logged_in, serve
from typer.testing import CliRunner

from closeloop.cli.main import app
from closeloop.data.warehouse import Warehouse
from closeloop.schemas.plans import ObjectiveInput, PlanCreate
from closeloop.services import plan_links, plans
from closeloop.services.project import init_project, open_workspace

OWNER = "ana.csm@vendor.example"
OTHER_SECRET = "9f8e7d6c5b4a39281706f5e4d3c2b1a0" * 2


def _load(warehouse: Warehouse) -> None:
    warehouse.ensure_tables()
    warehouse.append(
        "accounts",
        warehouse.arrow_for(
            "accounts",
            {
                "account_id": ["acme", "globex"],
                "segment": ["enterprise", "smb"],
                "created_at": [datetime(2024, 1, 1)] * 2,
            },
        ),
    )


def _objective(title: str, baseline: float, target: float) -> ObjectiveInput:
    return ObjectiveInput(
        title=title,
        measure="manual",
        baseline=baseline,
        target=target,
        target_date=date(2030, 6, 30),
        owner=OWNER,
    )


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    project = tmp_path_factory.mktemp("links")
    init_project(project, "links")
    with open_workspace(project) as workspace:
        _load(workspace.warehouse)
        for account, title in (("acme", "Acme rollout"), ("globex", "Globex secret plan")):
            request = PlanCreate(account_id=account, title=title, owner=OWNER)
            request = request.model_copy(
                update={
                    "objectives": [
                        _objective("Weekly active seats", 10, 30),
                        _objective("Support tickets open", 30, 10),
                    ]
                }
            )
            plans.create_plan(workspace, request, actor="ana")
    with serve(project) as found:
        yield found


def _share(served: Served, plan_id: int) -> str:
    """Share from the plan's page as a logged-in editor; the link the page shows."""
    with logged_in(served, "editor") as (client, csrf):
        page = client.get(f"/plans/{plan_id}")
        assert page.status_code == 200
        assert f'action="/plans/{plan_id}/links"' in page.text
        created = client.post(
            f"/plans/{plan_id}/links", data={"csrf_token": csrf, "expires_days": "30"}
        )
    assert created.status_code == 201, created.text
    found = re.search(r'id="share-link">([^<]+)<', created.text)
    assert found, created.text
    url = found.group(1)
    assert url.startswith(served.base + "/shared/plans/")
    return url.removeprefix(served.base)


def test_the_customer_opens_the_shared_plan_without_a_login(served: Served) -> None:
    path = _share(served, 1)
    with served.anonymous() as customer:
        page = customer.get(path)
        twin = customer.get(path + ".json")
    assert page.status_code == 200
    assert page.headers["cache-control"] == "no-store"
    assert page.headers.get_list("referrer-policy") == ["no-referrer"]
    assert "noindex" in page.headers["x-robots-tag"]
    assert "Acme rollout" in page.text and "Weekly active seats" in page.text
    # only that plan: no navigation, no other account's plan, no internal notes
    assert "<nav" not in page.text and 'href="/plans' not in page.text
    assert "Globex" not in page.text and OWNER not in page.text and "ana" not in page.text
    assert "manual" not in page.text  # the measure is internal
    assert twin.status_code == 200
    shared = twin.json()
    assert shared["status"] == "ok" and shared["plan"]["title"] == "Acme rollout"
    assert [o["title"] for o in shared["plan"]["objectives"]] == [
        "Weekly active seats",
        "Support tickets open",
    ]
    assert OWNER not in twin.text
    # the opening is recorded
    with served.client("editor") as api:
        links = api.get("/api/plans/1/links").json()["links"]
    assert links[0]["last_opened_at"] is not None and links[0]["state"] == "active"


def test_the_revoke_button_makes_the_link_gone(served: Served) -> None:
    path = _share(served, 1)
    with served.client("editor") as api:
        newest = api.get("/api/plans/1/links").json()["links"][0]
    with logged_in(served, "editor") as (client, csrf):
        page = client.get("/plans/1")
        assert f'action="/plans/1/links/{newest["id"]}/revoke"' in page.text
        refused = client.post(f"/plans/1/links/{newest['id']}/revoke", data={})
        assert refused.status_code == 403  # no CSRF token
        done = client.post(f"/plans/1/links/{newest['id']}/revoke", data={"csrf_token": csrf})
        assert done.status_code == 303 and done.headers["location"] == "/plans/1#links"
    with served.anonymous() as customer:
        gone = customer.get(path)
        gone_json = customer.get(path + ".json")
    assert gone.status_code == 410
    assert "no longer available" in gone.text and "Acme" not in gone.text
    assert gone_json.status_code == 410 and gone_json.json() == {
        "status": "revoked",
        "plan": None,
        "expires_at": newest["expires_at"],
    }


def test_an_expired_forged_or_foreign_link_opens_nothing(served: Served) -> None:
    settings, store = served.server.settings, served.server.store
    expired = plan_links.share_plan(
        store,
        settings.secret,
        1,
        expires_days=1,
        actor="test",
        now=datetime.now(UTC).replace(tzinfo=None) - timedelta(days=2),
    )
    foreign = plan_links.share_plan(store, OTHER_SECRET, 1, actor="test")  # another project's
    good = plan_links.share_plan(store, settings.secret, 1, actor="test")
    token = good.path.removeprefix("/shared/plans/")
    with served.anonymous() as customer:
        assert customer.get(expired.path).status_code == 410
        assert "expired" in customer.get(expired.path).text
        assert customer.get(foreign.path).status_code == 404
        assert customer.get("/shared/plans/" + token[:-2] + "xx").status_code == 404
        assert customer.get("/shared/plans/nonsense").status_code == 404
        assert customer.get(good.path).status_code == 200
        # the dashboard itself still needs a login
        assert customer.get("/plans/1").status_code == 303
        assert customer.get("/plans/1.json").status_code == 401


def test_sharing_needs_an_editor_and_the_api_routes_agree(served: Served) -> None:
    with logged_in(served, "viewer") as (viewer, csrf):
        page = viewer.get("/plans/1")
        assert page.status_code == 200 and 'action="/plans/1/links"' not in page.text
        refused = viewer.post("/plans/1/links", data={"csrf_token": csrf})
        assert refused.status_code == 403
    with served.client("viewer") as api:
        assert api.post("/api/plans/1/links", json={}).status_code == 403
    with served.client("editor") as api:
        bad = api.post("/api/plans/1/links", json={"expires_days": 400})
        assert bad.status_code == 422
        missing = api.post("/api/plans/999/links", json={})
        assert missing.status_code == 404
        created = api.post("/api/plans/2/links", json={"expires_days": 7})
        assert created.status_code == 201
        body = created.json()
        assert body["url"] == served.base + body["path"] and body["plan_id"] == 2
        listed = api.get("/api/plans/2/links").json()["links"]
        assert [link["id"] for link in listed] == [body["id"]]
        wrong_plan = api.delete(f"/api/plans/1/links/{body['id']}")
        assert wrong_plan.status_code == 404
        revoked = api.delete(f"/api/plans/2/links/{body['id']}")
        assert revoked.status_code == 200 and revoked.json()["state"] == "revoked"
    with served.anonymous() as customer:
        assert customer.get(body["path"]).status_code == 410
    entries = served.server.audit_log(action="plan_link.*")
    actions = [(e.action, e.actor) for e in entries.items]
    assert ("plan_link.create", "editor-user") in actions  # from the page
    assert ("plan_link.revoke", "editor-user") in actions
    assert ("plan_link.create", "api:editor-token") in actions
    assert ("plan_link.revoke", "api:editor-token") in actions


def _cli(project: Path, *args: str, code: int = 0) -> Any:
    result = CliRunner().invoke(app, [*args, "--project", str(project)])
    assert result.exit_code == code, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    return json.loads(result.stdout) if "json" in args else result.output


def test_the_cli_shares_lists_and_unshares(served: Served) -> None:
    created = _cli(served.project, "plans", "share", "1", "--expires", "12h", "--format", "json")
    expires = datetime.fromisoformat(created["expires_at"]) - datetime.fromisoformat(
        created["created_at"]
    )
    assert timedelta(hours=11, minutes=59) < expires <= timedelta(hours=12)
    with served.anonymous() as customer:
        assert customer.get(created["path"]).status_code == 200
    listed = _cli(served.project, "plans", "links", "1", "--format", "json")["links"]
    assert listed[0]["id"] == created["id"] and listed[0]["last_opened_at"] is not None
    table = _cli(served.project, "plans", "links")
    assert "active" in table and "acme" in table
    revoked = _cli(served.project, "plans", "unshare", str(created["id"]), "--format", "json")
    assert revoked["state"] == "revoked"
    with served.anonymous() as customer:
        assert customer.get(created["path"]).status_code == 410
    bad = _cli(served.project, "plans", "share", "1", "--expires", "soon", code=1)
    assert "--expires 'soon'" in bad
    unknown = _cli(served.project, "plans", "unshare", "999", code=1)
    assert "no plan link 999" in unknown
