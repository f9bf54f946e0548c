"""The page mechanism: one function per page, served as HTML, JSON and CSV.

A page is a function decorated with :func:`page`. It gets a :class:`PageRequest` (the served
project, who is asking, the query and form) and the path's parameters, calls a service, and
returns a :class:`Page`: the schema model (the page's JSON twin, the same model the API and
``--format json`` return), the template context, and named :class:`Table` s (each downloadable as
CSV). Registering ``/jobs/{name}`` serves:

- ``/jobs/{name}``: HTML (the template rendered with the context), or the model as JSON when the
  request says ``Accept: application/json``;
- ``/jobs/{name}.json``: the model, ``model_dump(mode="json")``;
- ``/jobs/{name}.csv?table=arms``: one named table as CSV (an unknown name: 404 with the list).

The home page ``/`` has its twins at ``/index.json`` and ``/index.csv``.

Example (a whole page; its template extends ``base.html.j2``)::

    @page("/jobs/{name}", template="job.html.j2", title="Job", nav=None)
    def job_page(request: PageRequest, name: str) -> Page:
        with request.workspace() as workspace:
            detail = operations.show_job(workspace, name)
        rows = Table(["arm", "units"], [[arm.arm, arm.units] for arm in detail.deliveries.values()])
        return Page(model=detail, context={"detail": detail}, tables={"arms": rows}, title=name)

The function runs in a worker thread (services block on the warehouse), never on the event loop.
Bad input raises a closeloop error (or :class:`BadParameterError` through the ``query_*``
helpers); the dashboard renders it as an error page with its location and caret, or the API's
JSON error shape.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date
from enum import StrEnum
from typing import Any, Literal, TypeVar

from pydantic import BaseModel
from starlette.datastructures import FormData, QueryParams
from starlette.requests import Request

from closeloop.errors import CloseloopError, NotFoundError
from closeloop.schemas.tokens import Role
from closeloop.services.project import Workspace
from closeloop.services.server import Server

# -- what a page returns -----------------------------------------------------------------------


@dataclass(frozen=True)
class Link:
    """A table cell that links somewhere (its text goes to the CSV)."""

    text: str
    href: str

    def __str__(self) -> str:
        return self.text


class Tone(StrEnum):
    """A badge's colour, by meaning (WCAG AA contrast on the page's background)."""

    good = "good"  # ship, positive, live
    bad = "bad"  # stop, negative, harmed, failed
    warn = "warn"  # review, inconclusive, paused
    info = "info"  # keep running, draft
    neutral = "neutral"


@dataclass(frozen=True)
class Badge:
    """A status or verdict shown as a coloured label (its text goes to the CSV)."""

    text: str
    tone: Tone = Tone.neutral

    def __str__(self) -> str:
        return self.text


Cell = str | int | float | Link | Badge | None


@dataclass(frozen=True)
class Table:
    """A named table of a page: column headers and rows of cells, already formatted by
    ``closeloop.present`` for reading (numbers may be left as numbers; they right-align)."""

    columns: Sequence[str]
    rows: Sequence[Sequence[Cell]]
    caption: str = ""

    def __post_init__(self) -> None:
        for number, row in enumerate(self.rows, start=1):
            if len(row) != len(self.columns):
                raise ValueError(
                    f"table row {number} has {len(row)} cells for {len(self.columns)} columns"
                )

    def csv(self) -> str:
        """The table as CSV (a link's or badge's text; a formula-like text is quoted with ')."""
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\r\n")
        writer.writerow([_csv_cell(column) for column in self.columns])
        for row in self.rows:
            writer.writerow([_csv_cell(cell) for cell in row])
        return out.getvalue()


_FORMULA = re.compile(r"^[=+@\t\r]|^-(?![\d.])")


def _csv_cell(cell: Cell) -> str | int | float:
    if cell is None:
        return ""
    if isinstance(cell, int | float):
        return cell
    text = str(cell)
    # A spreadsheet runs a cell that starts like a formula (CSV injection); numbers like
    # "-3.2 pp" stay as they are.
    return "'" + text if _FORMULA.match(text) else text


@dataclass(frozen=True)
class Page:
    """What a page function returns.

    ``model`` is the JSON twin; ``context`` the template's variables (besides the ones every
    page gets, see :func:`closeloop.web.app.render_page`); ``tables`` the named tables, each at
    ``PATH.csv?table=NAME`` and given to the template as ``tables``; ``title`` the heading and
    ``<title>``; ``template`` overrides the decorator's; ``status_code`` e.g. 201 or 422.
    """

    model: BaseModel
    context: Mapping[str, Any] = field(default_factory=dict)
    tables: Mapping[str, Table] = field(default_factory=dict)
    title: str = ""
    template: str | None = None
    status_code: int = 200


@dataclass(frozen=True)
class Redirect:
    """What a form's POST returns: go to ``url`` (a local path) with 303 (htmx: HX-Redirect)."""

    url: str


# -- who asks, and what they sent --------------------------------------------------------------


@dataclass(frozen=True)
class Principal:
    """Who makes a request: a logged-in user (``via="session"``) or an API token."""

    name: str
    role: Role
    via: Literal["session", "token"]
    csrf_token: str | None = None  # the session's; None for a token


class BadParameterError(CloseloopError, ValueError):
    """A query or form parameter that does not parse (rendered as 422, naming the parameter)."""

    code = "bad_parameter"


BadParameter = BadParameterError  # the shorter name, as pages import it


E = TypeVar("E", bound=StrEnum)


@dataclass(frozen=True)
class PageRequest:
    """What a page function gets: the project, who asks, the query and (for POST) the form."""

    request: Request
    server: Server
    principal: Principal
    form: FormData | None = None

    @property
    def query(self) -> QueryParams:
        return self.request.query_params

    @property
    def actor(self) -> str:
        """Who audit entries are attributed to: the user's or the token's name."""
        return self.principal.name

    @contextmanager
    def workspace(self, *, write: bool = False) -> Iterator[Workspace]:
        """The project's workspace for this request (closed, and the warehouse released, after)."""
        with self.server.workspace(write=write) as workspace:
            yield workspace

    def _raw(self, name: str) -> str | None:
        value = self.query.get(name)
        if value is None and self.form is not None:
            field_value = self.form.get(name)
            value = field_value if isinstance(field_value, str) else None
        return None if value is None or value.strip() == "" else value.strip()

    def query_str(self, name: str, default: str | None = None) -> str | None:
        """A text parameter (query string, else form field); blank counts as absent."""
        value = self._raw(name)
        return default if value is None else value

    def query_int(
        self,
        name: str,
        default: int | None = None,
        *,
        minimum: int | None = None,
        maximum: int | None = None,
    ) -> int | None:
        """A whole-number parameter within [minimum, maximum]."""
        value = self._raw(name)
        if value is None:
            return default
        try:
            number = int(value)
        except ValueError:
            raise BadParameterError(
                f"parameter {name!r}: expected a whole number, got {value!r}"
            ) from None
        if (minimum is not None and number < minimum) or (maximum is not None and number > maximum):
            low = "-∞" if minimum is None else minimum
            high = "∞" if maximum is None else maximum
            bounds = f"{low}..{high}"
            raise BadParameterError(f"parameter {name!r}: {number} is outside {bounds}")
        return number

    def query_date(self, name: str, default: date | None = None) -> date | None:
        """A date parameter, YYYY-MM-DD."""
        value = self._raw(name)
        if value is None:
            return default
        try:
            return date.fromisoformat(value)
        except ValueError:
            raise BadParameterError(
                f"parameter {name!r}: expected a date as YYYY-MM-DD, got {value!r}"
            ) from None

    def query_choice(self, name: str, choices: type[E], default: E | None = None) -> E | None:
        """One of an enum's values."""
        value = self._raw(name)
        if value is None:
            return default
        try:
            return choices(value)
        except ValueError:
            allowed = ", ".join(member.value for member in choices)
            raise BadParameterError(
                f"parameter {name!r}: {value!r} is not one of {allowed}"
            ) from None


# -- the registry ------------------------------------------------------------------------------

# The navigation's order; a page joins it with ``nav="Jobs"`` (other labels follow, by name).
NAV_ORDER = (
    "Board",
    "Jobs",
    "Library",
    "Stages",
    "Accounts",
    "Health",
    "Plans",
    "Outcomes",
    "Editor",
)

PageFunction = Callable[..., Page | Redirect]


@dataclass(frozen=True)
class PageSpec:
    path: str
    function: PageFunction
    template: str
    role: Role
    methods: tuple[str, ...]
    nav: str | None
    title: str

    @property
    def name(self) -> str:
        return f"{self.function.__module__}.{self.function.__qualname__}"


PAGES: dict[str, PageSpec] = {}
"""Every registered page by path (filled when the modules of ``closeloop.web`` are imported)."""


def page(
    path: str,
    *,
    template: str,
    role: Role = Role.viewer,
    methods: Sequence[str] = ("GET",),
    nav: str | None = None,
    title: str = "",
) -> Callable[[PageFunction], PageFunction]:
    """Register a page at ``path`` (Starlette syntax, e.g. ``/jobs/{name}``).

    ``role``: the least role that may see it (viewer; editor for pages that write).
    ``methods``: add "POST" for a form; a POST from a session must carry the CSRF token (the
    layout's forms and htmx do it: see web/README.md). ``nav``: a label for the navigation (only
    for paths without parameters). ``title``: the default heading.
    """
    if not path.startswith("/"):
        raise ValueError(f"a page's path starts with '/': {path!r}")
    if nav is not None and "{" in path:
        raise ValueError(f"a page in the navigation needs a path without parameters: {path!r}")

    def register(function: PageFunction) -> PageFunction:
        existing = PAGES.get(path)
        spec = PageSpec(
            path=path,
            function=function,
            template=template,
            role=role,
            methods=tuple(method.upper() for method in methods),
            nav=nav,
            title=title,
        )
        if existing is not None and existing.name != spec.name:
            raise ValueError(f"two pages at {path!r}: {existing.name} and {spec.name}")
        PAGES[path] = spec
        return function

    return register


@dataclass(frozen=True)
class NavItem:
    label: str
    path: str


def navigation() -> list[NavItem]:
    """The navigation: every page that asked to be in it, in :data:`NAV_ORDER`."""
    items = [NavItem(spec.nav, spec.path) for spec in PAGES.values() if spec.nav]

    def order(item: NavItem) -> tuple[int, str]:
        known = item.label in NAV_ORDER
        return (NAV_ORDER.index(item.label) if known else len(NAV_ORDER), item.label)

    return sorted(items, key=order)


def twin_path(path: str, extension: Literal["json", "csv"]) -> str:
    """Where a page's JSON or CSV twin answers: ``/jobs/a`` → ``/jobs/a.json``; ``/`` →
    ``/index.json``."""
    return f"/index.{extension}" if path == "/" else f"{path.rstrip('/')}.{extension}"


def twin_url(request: Request, extension: Literal["json", "csv"], **query: str) -> str:
    """The twin of the page ``request`` asks for, keeping its query (plus ``query``)."""
    params = dict(request.query_params)
    params.update(query)
    suffix = str(QueryParams(params))
    return twin_path(request.url.path, extension) + (f"?{suffix}" if suffix else "")


def table_named(page_result: Page, name: str | None) -> Table:
    """The table ``name`` of a page, or a 404 that lists the page's tables."""
    known = ", ".join(sorted(page_result.tables)) or "none"
    if name is None:
        raise NotFoundError(f"say which table with ?table=NAME; this page's tables: {known}")
    table = page_result.tables.get(name)
    if table is None:
        raise NotFoundError(f"no table {name!r} on this page; its tables: {known}")
    return table
