"""Reports as files (HTML and PDF), served beside the pages: a page answers HTML, JSON or CSV,
so a download is its own route. Each checks the session or API token and the role exactly as a
page does (a browser without one goes to the login form) and answers an error as text, never a
traceback. Modules list their downloads in ``PUBLIC_ROUTES`` (routes the page mechanism does not
wrap); "public" only in that sense.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from closeloop.schemas.errors import ErrorBody
from closeloop.schemas.tokens import GRANTS, Role
from closeloop.services.server import Server
from closeloop.web import auth
from closeloop.web.errors import body_of, http_body, status_of

PDF = "application/pdf"
HTML = "text/html"

Produce = Callable[[Request, Server], Awaitable[tuple[bytes | str, str, str]]]
"""Makes the file: its content, its media type (:data:`HTML` or :data:`PDF`) and a file name."""


def download(path: str, produce: Produce, role: Role = Role.viewer) -> Route:
    """A GET route at ``path`` answering the file ``produce`` makes, for ``role`` and above."""

    async def endpoint(request: Request) -> Response:
        server: Server = request.app.state.server
        try:
            principal = await auth.authenticate(request, server)
            if principal is None:
                target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
                return RedirectResponse(f"/login?next={quote(target, safe='')}", status_code=303)
            if role not in GRANTS[principal.role]:
                return _error(http_body(403, f"this report needs the {role.value} role"), 403)
            content, media_type, name = await produce(request, server)
        except Exception as error:  # answered in the API's error words, never a traceback
            return _error(body_of(error), status_of(error))  # body_of logs an unexpected one
        if media_type == HTML:
            return HTMLResponse(content)
        disposition = f'attachment; filename="{name}"'
        return Response(
            content, media_type=media_type, headers={"Content-Disposition": disposition}
        )

    return Route(path, endpoint, methods=["GET"])


def _error(body: ErrorBody, status: int) -> Response:
    return Response(
        f"error {status}: {body.message}\n", status_code=status, media_type="text/plain"
    )
