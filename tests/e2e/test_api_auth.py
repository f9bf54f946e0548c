"""The auth matrix: every route of the API × {no token, malformed headers, an unknown token, a
revoked token, each role}.

Routes are enumerated from ``create_app(...)`` when the test runs, so a route added later is covered
without editing this file. Each route must declare exactly one role through
:class:`closeloop.api.security.RoleDependency` (found anywhere in its dependency tree), except the
explicit public list. Expectations:

- no token, a malformed ``Authorization`` header, an unknown or a revoked token → 401 with the one
  error shape and a ``WWW-Authenticate`` header;
- a valid token whose role does not grant the route's role → 403 with the error shape;
- a granted role → neither 401 nor 403 (the request may still be invalid: 404, 422, …), and never a
  server error.
"""

from __future__ import annotations

import base64
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from api_support import Api, api_for
from fastapi import Depends, FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute, RouteContext, iter_route_contexts
from fastapi.testclient import TestClient
from starlette.routing import Route

from closeloop.api.admin import PUBLIC_PATHS
from closeloop.api.app import create_app
from closeloop.api.security import Editor, RoleDependency, Viewer
from closeloop.schemas.tokens import GRANTS, Role
from closeloop.services.project import init_project
from closeloop.services.tokens import create_token, revoke_token

# FastAPI's own documents: the contract itself, readable without a token.
DOCUMENT_PATHS = frozenset({"/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc"})

# Values for path parameters, by name: plausible, and never the name of a token the test uses
# (a DELETE /api/tokens/{name_or_id} must not revoke the tokens of the matrix).
PATH_VALUES = {
    "name": "Nudge",
    "job": "Nudge",
    "job_name": "Nudge",
    "account_id": "a1",
    "person_id": "p1",
    "table": "events",
    "name_or_id": "nobody",
    "version": "1",
    "entity": "accounts",
    "kind": "cohorts",
}


def declared_roles(dependant: Dependant) -> list[Role]:
    """Every role a route's dependency tree declares (RoleDependency instances, recursively)."""
    roles: list[Role] = []
    for dependency in dependant.dependencies:
        if isinstance(dependency.call, RoleDependency):
            roles.append(dependency.call.role)
        roles.extend(declared_roles(dependency))
    return roles


def api_routes(app: FastAPI) -> Iterator[RouteContext]:
    """Every route as served (FastAPI includes routers lazily: ``app.routes`` holds the included
    routers, :func:`iter_route_contexts` the routes with their effective paths and dependencies)."""
    yield from iter_route_contexts(app.routes)


def _path(route: RouteContext) -> str:
    values: dict[str, str] = {}
    for parameter in route.dependant.path_params:
        annotation = parameter.field_info.annotation
        if annotation is int:
            values[parameter.name] = "1"
        else:
            values[parameter.name] = PATH_VALUES.get(parameter.name, "x")
    return route.path_format.format(**values)


def _body(route: RouteContext) -> dict[str, Any]:
    """Keyword arguments for a minimal request: an empty JSON object where a body is expected."""
    if route.dependant.body_params:
        return {"json": {}}
    return {}


def _cases(app: FastAPI) -> Iterator[tuple[RouteContext, str]]:
    for route in api_routes(app):
        if isinstance(route.original_route, APIRoute):
            for method in sorted((route.methods or set()) - {"HEAD"}):
                yield route, method


@pytest.fixture
def api(tmp_path: Path) -> Iterator[Api]:
    folder = tmp_path / "matrix"
    init_project(folder, "matrix")
    environ = {
        "CLOSELOOP_WAREHOUSE_URL": f"duckdb:///{folder / 'warehouse.duckdb'}",
        "CLOSELOOP_STATE_URL": f"sqlite:///{folder / 'state.sqlite'}",
    }
    with api_for(folder, environ) as client:
        yield client


def _revoked_token(api: Api) -> str:
    created = create_token(api.server.store, name="revoked", role=Role.admin, actor="tests")
    revoke_token(api.server.store, "revoked", actor="tests")
    return created.token


def _unauthorized(api: Api) -> dict[str, dict[str, str]]:
    basic_of = base64.b64encode(b"cl_" + uuid.uuid4().hex.encode() + b":").decode()
    return {
        "no token": {},
        "empty bearer": {"Authorization": "Bearer "},
        "another scheme": {"Authorization": f"Token {api.tokens[Role.admin]}"},
        "basic, not base64": {"Authorization": "Basic !!!not-base64!!!"},
        "basic, not UTF-8": {"Authorization": "Basic " + base64.b64encode(b"\xff\xfe:").decode()},
        "unknown bearer": {"Authorization": f"Bearer cl_{uuid.uuid4().hex}"},
        "unknown basic": {"Authorization": f"Basic {basic_of}"},
        "not a closeloop token": {"Authorization": "Bearer " + "x" * 300},
        "revoked": {"Authorization": f"Bearer {_revoked_token(api)}"},
    }


def _error_shaped(body: Any) -> bool:
    return (
        isinstance(body, dict)
        and set(body) == {"error"}
        and isinstance(body["error"].get("code"), str)
        and isinstance(body["error"].get("message"), str)
    )


def test_every_route_declares_exactly_one_role_or_is_listed_public(api: Api) -> None:
    app = api.client.app
    assert isinstance(app, FastAPI)
    problems = []
    for route in api_routes(app):
        if isinstance(route.original_route, APIRoute):
            roles = declared_roles(route.dependant)
            if route.path != route.original_route.path:
                # The audit names a write by the route's own path: prefixes belong in the router.
                problems.append(f"{route.path} is included with a prefix; give it to its APIRouter")
            if route.path in PUBLIC_PATHS:
                if roles:
                    problems.append(f"{route.path} is listed public but declares {roles}")
            elif len(set(roles)) != 1:
                problems.append(f"{sorted(route.methods)} {route.path} declares {roles or 'none'}")
        elif isinstance(route.original_route, Route) and route.path in DOCUMENT_PATHS:
            continue
        else:  # a mount or a plain route would bypass the dependencies that check tokens
            problems.append(f"{route.path or route.original_route!r} is not an APIRoute")
    assert not problems, "\n".join(problems)
    paths = {route.path for route in api_routes(app)}
    assert {"/api/tokens", "/api/audit", "/api/health"} <= paths


def test_the_role_check_catches_a_route_without_a_role() -> None:
    """The enumeration can fail: a route without a RoleDependency declares none; one nested in
    another dependency, or given through an alias, is found."""
    app = FastAPI()

    @app.get("/open")
    def open_route() -> dict[str, str]:
        return {}

    def nested(principal: Editor) -> str:
        return principal.name

    @app.get("/nested", dependencies=[Depends(nested)])
    def nested_route() -> dict[str, str]:
        return {}

    @app.get("/aliased")
    def aliased_route(_principal: Viewer) -> dict[str, str]:
        return {}

    routes = {route.path: route for route in api_routes(app)}
    assert declared_roles(routes["/open"].dependant) == []
    assert declared_roles(routes["/nested"].dependant) == [Role.editor]
    assert declared_roles(routes["/aliased"].dependant) == [Role.viewer]


def test_every_route_answers_each_token_as_its_role_says(api: Api) -> None:
    app = api.client.app
    assert isinstance(app, FastAPI)
    unauthorized = _unauthorized(api)
    failures: list[str] = []
    checked = 0
    for route, method in _cases(app):
        if route.path in PUBLIC_PATHS:
            continue
        roles = declared_roles(route.dependant)
        assert roles, f"{route.path} declares no role (see the test above)"
        needed = roles[0]
        path, body = _path(route), _body(route)
        label = f"{method} {route.path}"
        for case, headers in unauthorized.items():
            response = api.client.request(method, path, headers=headers, **body)
            checked += 1
            if response.status_code != 401:
                failures.append(f"{label} with {case}: {response.status_code}, expected 401")
            elif not _error_shaped(response.json()):
                failures.append(f"{label} with {case}: 401 without the error shape")
            elif response.headers.get("www-authenticate") != 'Bearer, Basic realm="closeloop"':
                failures.append(f"{label} with {case}: 401 without the one WWW-Authenticate")
        for role in Role:
            granted = needed in GRANTS[role]
            for scheme, headers in _role_headers(api, role, first=method == "GET"):
                response = api.client.request(method, path, headers=headers, **body)
                checked += 1
                status = response.status_code
                if granted and status in (401, 403):
                    failures.append(f"{label} as {role.value} ({scheme}): {status}")
                elif granted and status >= 500:
                    failures.append(f"{label} as {role.value} ({scheme}): {status} {response.text}")
                elif not granted and status != 403:
                    failures.append(f"{label} as {role.value} ({scheme}): {status}, expected 403")
                elif not granted and not _error_shaped(response.json()):
                    failures.append(f"{label} as {role.value}: 403 without the error shape")
    assert not failures, f"{len(failures)} of {checked} requests:\n" + "\n".join(failures)
    assert checked >= 3 * (len(unauthorized) + len(Role))


def _role_headers(api: Api, role: Role, *, first: bool) -> list[tuple[str, dict[str, str]]]:
    """The role's token as a Bearer token and, on reads, also as the HTTP Basic user (Segment's
    write-key convention) — writes are sent once so their side effects happen once."""
    token = api.tokens[role]
    bearer = ("bearer", {"Authorization": f"Bearer {token}"})
    if not first:
        return [bearer]
    basic = base64.b64encode(f"{token}:".encode()).decode()
    return [bearer, ("basic", {"Authorization": f"Basic {basic}"})]


def test_public_routes_and_documents_answer_without_a_token(tmp_path: Path) -> None:
    folder = tmp_path / "public"
    init_project(folder, "public")
    environ = {
        "CLOSELOOP_WAREHOUSE_URL": f"duckdb:///{folder / 'warehouse.duckdb'}",
        "CLOSELOOP_STATE_URL": f"sqlite:///{folder / 'state.sqlite'}",
    }
    with TestClient(create_app(folder, environ=environ)) as client:
        for path in sorted(PUBLIC_PATHS | {"/openapi.json", "/docs", "/redoc"}):
            assert client.get(path).status_code == 200, path
        spec = client.get("/openapi.json").json()
    schemes = spec["components"]["securitySchemes"]
    assert {scheme["scheme"].lower() for scheme in schemes.values()} == {"bearer", "basic"}
