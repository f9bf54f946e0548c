"""The dashboard as an ASGI app: every registered page with its twins, login and logout, the
vendored static files, and one renderer of errors.

``create_dashboard(server)`` imports every module of ``closeloop.web`` (so each page module
registers itself with :func:`closeloop.web.pages.page`; nothing needs listing here) and builds
the routes. ``closeloop.asgi`` mounts it beside the API.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable, Mapping
from typing import Any, Literal
from urllib.parse import quote

import jinja2
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

import closeloop.web
from closeloop import __version__
from closeloop.present import format as formatting
from closeloop.schemas.errors import ErrorBody, ErrorResponse
from closeloop.schemas.tokens import GRANTS
from closeloop.services import users as user_service
from closeloop.services.server import Server
from closeloop.web import auth
from closeloop.web.errors import TITLES, body_of, http_body, status_of
from closeloop.web.pages import (
    PAGES,
    Page,
    PageRequest,
    PageSpec,
    Principal,
    Redirect,
    navigation,
    table_named,
    twin_path,
    twin_url,
)

Format = Literal["html", "json", "csv"]

TEMPLATES = jinja2.Environment(
    loader=jinja2.ChoiceLoader(
        [
            jinja2.PackageLoader("closeloop.web", "templates"),
            jinja2.PackageLoader("closeloop.present", "templates"),
        ]
    ),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)

_NOT_PAGE_MODULES = frozenset({"app", "auth", "downloads", "errors", "pages"})


def load_pages() -> list[BaseRoute]:
    """Import every module of ``closeloop.web``: each registers its pages when imported. Returns
    the routes modules offer WITHOUT a login in a ``PUBLIC_ROUTES`` list (e.g. the customer's
    read-only success plan, web/plans.py): each checks its own credential."""
    public: list[BaseRoute] = []
    for module in pkgutil.iter_modules(closeloop.web.__path__):
        if module.name not in _NOT_PAGE_MODULES:
            loaded = importlib.import_module(f"closeloop.web.{module.name}")
            public += getattr(loaded, "PUBLIC_ROUTES", [])
    return public


# -- rendering ---------------------------------------------------------------------------------


def server_of(request: Request) -> Server:
    server: Server = request.app.state.server
    return server


def principal_of(request: Request) -> Principal | None:
    principal: Principal | None = getattr(request.state, "principal", None)
    return principal


def base_context(request: Request, title: str) -> dict[str, Any]:
    """The variables every template gets (base.html.j2 and _macros.html.j2 use them)."""
    principal = principal_of(request)
    path = request.url.path

    def active(item_path: str) -> bool:
        return path == item_path or (item_path != "/" and path.startswith(item_path + "/"))

    return {
        "title": title,
        "user": principal,
        "csrf_token": (principal.csrf_token if principal else None) or "",
        "nav": [(item, active(item.path)) for item in navigation()] if principal else [],
        "project": server_of(request).project_name,
        "version": __version__,
        "request_path": path,
        "static": lambda name: f"/static/{name}",
        "json_url": None,  # a page's twin; set for pages, not for login or error pages
        "csv_url": lambda table: twin_url(request, "csv", table=table),
        "fmt": formatting,
    }


def render(
    request: Request, template: str, context: Mapping[str, Any], *, title: str, status: int = 200
) -> HTMLResponse:
    variables = base_context(request, title)
    variables.update(context)
    html = TEMPLATES.get_template(template).render(variables)
    return HTMLResponse(html, status_code=status)


def wanted_format(request: Request, route_format: Format | None = None) -> Format:
    """The route's format (``.json``, ``.csv``), else JSON when the client asks for it only."""
    if route_format is not None:
        return route_format
    path = request.url.path
    if path.endswith(".json"):
        return "json"
    if path.endswith(".csv"):
        return "csv"
    accept = request.headers.get("accept", "")
    return "json" if "application/json" in accept and "text/html" not in accept else "html"


def error_response(
    request: Request,
    body: ErrorBody,
    status: int,
    output: Format,
    headers: Mapping[str, str] | None = None,
) -> Response:
    if output != "html":
        return JSONResponse(
            ErrorResponse(error=body).model_dump(mode="json"), status_code=status, headers=headers
        )
    title = TITLES.get(status, f"Error {status}")
    try:
        response: Response = render(
            request, "error.html.j2", {"error": body, "status": status}, title=title, status=status
        )
    except Exception:  # the error page itself failed: say so in plain text
        response = Response(f"{title}: {body.message}", status_code=status, media_type="text/plain")
    response.headers.update(headers or {})
    return response


def failure(request: Request, error: Exception, output: Format) -> Response:
    return error_response(request, body_of(error), status_of(error), output)


# -- pages -------------------------------------------------------------------------------------


def _login_redirect(request: Request, output: Format) -> Response:
    if output != "html":
        return error_response(
            request,
            http_body(401, "log in or send an API token (Authorization: Bearer TOKEN)"),
            401,
            output,
            {"WWW-Authenticate": 'Bearer realm="closeloop"'},
        )
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    location = f"/login?next={quote(target, safe='')}"
    if request.headers.get("hx-request"):
        return Response(status_code=401, headers={"HX-Redirect": location})
    return RedirectResponse(location, status_code=303)


async def _form(request: Request) -> FormData | None:
    content_type = request.headers.get("content-type", "")
    if content_type.startswith(("application/x-www-form-urlencoded", "multipart/form-data")):
        return await request.form()
    return None


def _respond(request: Request, spec: PageSpec, result: Page | Redirect, output: Format) -> Response:
    if isinstance(result, Redirect):
        target = auth.safe_next(result.url)
        if request.headers.get("hx-request"):
            return Response(status_code=200, headers={"HX-Redirect": target})
        return RedirectResponse(target, status_code=303)
    if output == "json":
        return JSONResponse(
            result.model.model_dump(mode="json", by_alias=True), status_code=result.status_code
        )
    if output == "csv":
        name = request.query_params.get("table")
        table = table_named(result, name)
        stem = (request.url.path.removesuffix(".csv").strip("/") or "index").replace("/", "-")
        return Response(
            table.csv(),
            status_code=result.status_code,
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="{stem}-{name}.csv"'},
        )
    context = {
        "model": result.model,
        "tables": result.tables,
        "json_url": twin_url(request, "json") if "GET" in spec.methods else None,
        **result.context,
    }
    return render(
        request,
        result.template or spec.template,
        context,
        title=result.title or spec.title,
        status=result.status_code,
    )


def page_endpoint(spec: PageSpec, route_format: Format | None) -> Callable[[Request], Any]:
    async def endpoint(request: Request) -> Response:
        output = wanted_format(request, route_format)
        try:
            server = server_of(request)
            principal = await auth.authenticate(request, server)
            if principal is None:
                return _login_redirect(request, output)
            request.state.principal = principal
            if spec.role not in GRANTS[principal.role]:
                body = http_body(
                    403,
                    f"this page needs the {spec.role.value} role; "
                    f"{principal.name} has {principal.role.value}",
                )
                return error_response(request, body, 403, output)
            form = await _form(request) if request.method not in auth.SAFE_METHODS else None
            if not auth.csrf_ok(request, principal, form):
                body = http_body(
                    403, "the form's CSRF token is missing or wrong; reload the page and try again"
                )
                return error_response(request, body, 403, output)
            page_request = PageRequest(
                request=request, server=server, principal=principal, form=form
            )
            params = {key: str(value) for key, value in request.path_params.items()}
            result = await run_in_threadpool(spec.function, page_request, **params)
            return await run_in_threadpool(_respond, request, spec, result, output)
        except Exception as error:  # every failure is rendered, never a traceback
            return failure(request, error, output)

    return endpoint


def _specificity(path: str) -> list[tuple[int, str]]:
    # Literal segments before parameters, so /jobs/new wins over /jobs/{name}.
    return [(1, "") if "{" in part else (0, part) for part in path.split("/")]


def page_routes() -> list[BaseRoute]:
    twins: list[tuple[str, BaseRoute]] = []
    plain: list[tuple[str, BaseRoute]] = []
    for spec in PAGES.values():
        # A form-only page (POST) answers JSON by Accept; only a readable page has twins.
        for extension in ("json", "csv") if "GET" in spec.methods else ():
            twin = twin_path(spec.path, extension)
            twins.append((twin, Route(twin, page_endpoint(spec, extension), methods=["GET"])))
        plain.append(
            (spec.path, Route(spec.path, page_endpoint(spec, None), methods=list(spec.methods)))
        )
    ordered = sorted(twins, key=lambda item: _specificity(item[0])) + sorted(
        plain, key=lambda item: _specificity(item[0])
    )
    return [route for _, route in ordered]


# -- login and logout --------------------------------------------------------------------------


async def login(request: Request) -> Response:
    server = server_of(request)
    if request.method == "GET":
        principal = await auth.authenticate(request, server)
        target = auth.safe_next(request.query_params.get("next"))
        if principal is not None and principal.via == "session":
            return RedirectResponse(target, status_code=303)
        return render(
            request, "login.html.j2", {"next": target, "failed": False, "name": ""}, title="Log in"
        )
    if not auth.same_origin(request):
        # Login CSRF: a page elsewhere must not log a browser into an account it chose. There is
        # no session (so no CSRF token) yet; browsers send Origin with every cross-site POST.
        body = http_body(403, "the login form was posted from another site")
        return error_response(request, body, 403, "html")
    form = await request.form()
    name = str(form.get("name") or "").strip()
    password = str(form.get("password") or "")
    target = auth.safe_next(str(form.get("next") or ""))
    client = request.client.host if request.client else ""
    throttle: auth.LoginThrottle = request.app.state.login_throttle
    wait = throttle.wait_seconds(name)
    if wait:
        context = {"next": target, "failed": False, "name": name, "wait_minutes": -(-wait // 60)}
        refused = render(request, "login.html.j2", context, title="Log in", status=429)
        refused.headers["Retry-After"] = str(wait)
        return refused
    session = await run_in_threadpool(
        user_service.log_in, server.store, name, password, client=client
    )
    if session is None:
        throttle.failed(name)
        return render(
            request,
            "login.html.j2",
            {"next": target, "failed": True, "name": name},
            title="Log in",
            status=401,
        )
    throttle.succeeded(name)
    response = RedirectResponse(target, status_code=303)
    auth.set_session_cookie(response, request, session.cookie, session.expires_at)
    return response


async def logout(request: Request) -> Response:
    server = server_of(request)
    cookie = request.cookies.get(auth.COOKIE)
    principal = await auth.authenticate(request, server) if cookie else None
    if principal is not None and principal.via == "session" and cookie:
        request.state.principal = principal
        if not auth.csrf_ok(request, principal, await _form(request)):
            body = http_body(403, "the logout form's CSRF token is missing or wrong")
            return error_response(request, body, 403, "html")
        await run_in_threadpool(user_service.log_out, server.store, cookie, actor=principal.name)
    response = RedirectResponse("/login", status_code=303)
    auth.clear_session_cookie(response, request)
    return response


async def home_redirect(_request: Request) -> Response:
    return RedirectResponse("/jobs", status_code=303)


# -- the app -----------------------------------------------------------------------------------


async def _http_error(request: Request, error: Exception) -> Response:
    assert isinstance(error, HTTPException)
    output = wanted_format(request)
    if principal_of(request) is None:
        try:
            request.state.principal = await auth.authenticate(request, server_of(request))
        except Exception:  # an error page must not fail on the store
            request.state.principal = None
    message = {404: f"no page at {request.url.path}"}.get(error.status_code, str(error.detail))
    return error_response(request, http_body(error.status_code, message), error.status_code, output)


async def _unexpected(request: Request, error: Exception) -> Response:
    return failure(request, error, wanted_format(request))


class SecurityHeaders:
    """Headers on every dashboard response: no framing, no sniffing, no caching of pages."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        static = str(scope.get("path", "")).startswith("/static/")

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                # A header the response set itself (a stricter Referrer-Policy) is kept.
                present = {name.lower() for name, _ in headers}
                defaults = [
                    (b"x-frame-options", b"DENY"),
                    (b"x-content-type-options", b"nosniff"),
                    (b"referrer-policy", b"same-origin"),
                ]
                if not static:
                    defaults.append((b"cache-control", b"no-store"))
                headers += [(name, value) for name, value in defaults if name not in present]
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_headers)


def create_dashboard(server: Server) -> Starlette:
    """The dashboard of the project ``server`` serves (routes built from the page registry)."""
    public = load_pages()
    routes: list[BaseRoute] = [
        Route("/login", login, methods=["GET", "POST"]),
        Route("/logout", logout, methods=["POST"]),
        Mount("/static", StaticFiles(packages=[("closeloop.web", "static")]), name="static"),
        *public,
    ]
    if "/" not in PAGES:
        routes.append(Route("/", home_redirect, methods=["GET"]))
    routes += page_routes()
    app = Starlette(
        routes=routes,
        exception_handlers={HTTPException: _http_error, Exception: _unexpected},
    )
    app.state.server = server
    app.state.login_throttle = auth.LoginThrottle()
    app.add_middleware(SecurityHeaders)
    return app
