"""The API's reference: each operation's role written into the OpenAPI document
(``x-closeloop-role`` and a first line of its description) and docs/api.md generated from it.

``python -m closeloop.api.reference > docs/api.md`` rewrites the page; a test fails when the
committed page differs from what the app serves.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Any

from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute, RouteContext, iter_route_contexts

from closeloop.api.security import RoleDependency

PUBLIC = "public"
HEADER = """# The REST API

`closeloop serve` (or `closeloop api`) answers on `http://127.0.0.1:8000` by default. Every
operation needs an API token (`closeloop tokens create --role ROLE --name NAME`) as a Bearer
token, or as the HTTP Basic user name (Segment's convention for write keys), except the few marked
*public*. Roles: `admin` may do everything; `editor` what a `viewer` may, plus create, edit and
run jobs; `viewer` reads every resource and report; `ingest` may only write events
(docs/ingestion.md). The full contract, with every model, is the OpenAPI document at
`/openapi.json` (interactive at `/docs`); each result's JSON Schema is in `docs/*.schema.json`.

Every failure answers one shape, with the code the CLI prints in brackets for the same error:

```json
{"error": {"code": "not_found", "message": "no job 'Nudge'; jobs: Onboarding",
           "location": null, "hint": "", "problems": []}}
```

`location` points into a file (`file`, `line`, `column`, `source_line`, `caret`) for definition
and expression errors, or names the request field (`body.audience`, `query.offset`) for a bad
request. Statuses: 400 bad request, 401 no or bad token, 403 role too low, 404 unknown name, 405
wrong method (`Allow` lists the path's methods), 409 conflicts with the state (a stopped job,
a taken name), 413 body too large, 422 invalid request or definition, 429 rate limited
(`Retry-After`), 500 unexpected (the server log has the details). Lists are pages: `offset`,
`limit`, and `total` in the answer.

This page is generated from the app (`python -m closeloop.api.reference > docs/api.md`).

| method | path | role | returns | what |
|---|---|---|---|---|
"""


def declared_roles(dependant: Dependant) -> list[str]:
    """The roles a route's dependencies declare (:func:`closeloop.api.security.require`)."""
    roles: list[str] = []
    for dependency in dependant.dependencies:
        if isinstance(dependency.call, RoleDependency):
            roles.append(dependency.call.role.value)
        roles.extend(declared_roles(dependency))
    return roles


_CONVERTER = re.compile(r"\{(\w+):\w+\}")


def openapi_path(path: str) -> str:
    """A route's path as the OpenAPI document names it: ``{signal_id:path}`` -> ``{signal_id}``."""
    return _CONVERTER.sub(r"{\1}", path)


def operations(app: FastAPI) -> Iterator[tuple[str, RouteContext, str]]:
    """(method, route, role) for every API operation the app serves."""
    for route in iter_route_contexts(app.routes):
        if not isinstance(route.original_route, APIRoute) or route.path is None:
            continue
        roles = declared_roles(route.dependant)
        for method in sorted((route.methods or set()) - {"HEAD"}):
            yield method, route, roles[0] if roles else PUBLIC


def openapi_with_roles(app: FastAPI) -> Callable[[], dict[str, Any]]:
    """An ``app.openapi`` that adds each operation's role (cached, as FastAPI's own is)."""

    def build() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        document = get_openapi(
            title=app.title,
            version=app.version,
            description=app.description,
            routes=app.routes,
        )
        for method, route, role in operations(app):
            assert route.path is not None  # operations() yields routes with a path only
            operation = document["paths"].get(openapi_path(route.path), {}).get(method.lower())
            if operation is None:
                continue
            operation["x-closeloop-role"] = role
            needs = "Public: no token needed." if role == PUBLIC else f"Needs the `{role}` role."
            described = operation.get("description", "")
            operation["description"] = needs + (f"\n\n{described}" if described else "")
        app.openapi_schema = document
        return document

    return build


def _returns(operation: dict[str, Any]) -> str:
    for status in ("200", "201", "202"):
        content = operation.get("responses", {}).get(status, {}).get("content", {})
        schema = content.get("application/json", {}).get("schema", {})
        reference = schema.get("$ref")
        if reference:
            return f"`{reference.rsplit('/', 1)[-1]}`"
        if schema.get("type"):
            return str(schema["type"])
    return "—"


def reference_markdown(app: FastAPI) -> str:
    """docs/api.md: the header, then one row per operation (path order, then method)."""
    document = app.openapi()
    rows = []
    for method, route, role in sorted(operations(app), key=lambda item: (item[1].path, item[0])):
        assert route.path is not None
        path = openapi_path(route.path)
        operation = document["paths"].get(path, {}).get(method.lower(), {})
        summary = operation.get("summary", "")
        rows.append(f"| {method} | `{path}` | {role} | {_returns(operation)} | {summary} |")
    return HEADER + "\n".join(rows) + "\n"


if __name__ == "__main__":  # pragma: no cover (python -m closeloop.api.reference > docs/api.md)
    import sys
    import tempfile
    from pathlib import Path

    from closeloop.api.app import create_app
    from closeloop.services.project import init_project

    with tempfile.TemporaryDirectory() as folder:
        project = Path(folder) / "reference"
        init_project(project)
        served = create_app(project)
        sys.stdout.write(reference_markdown(served))
        served.state.server.close()
