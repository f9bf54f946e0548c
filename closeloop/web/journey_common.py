"""Small helpers the stages, health, plans and outcomes pages share: time and number parameters
that fail with the parameter's name, and links to other pages. No page is registered here."""

from __future__ import annotations

from datetime import UTC, date, datetime
from urllib.parse import quote

from closeloop.services import data as data_service
from closeloop.web.pages import BadParameterError, Link, PageRequest


def now(request: PageRequest) -> datetime:
    """What a page shows when no time is asked for: now (naive UTC), but never after the newest
    event (``services.data.default_as_of``), so a project whose data stops earlier, like the
    demo, is shown as of its data and not as an empty present."""
    with request.workspace() as workspace:
        return data_service.default_as_of(workspace)


def query_time(request: PageRequest, name: str) -> datetime | None:
    """An ISO date or date-time parameter (a zone is converted to UTC; none means UTC)."""
    text = request.query_str(name)
    if text is None:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise BadParameterError(
            f"parameter {name!r}: expected an ISO date or date-time (e.g. 2024-03-01 or "
            f"2024-03-01T12:00), got {text!r}"
        ) from None
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC).replace(tzinfo=None)
    if not 1970 <= moment.year <= 9000:
        raise BadParameterError(f"parameter {name!r}: {text!r} is not between 1970 and 9000")
    return moment


def query_day(request: PageRequest, name: str) -> date | None:
    """A date parameter; a date-time is cut to its day."""
    moment = query_time(request, name)
    return None if moment is None else moment.date()


def query_float(
    request: PageRequest, name: str, default: float, *, minimum: float, maximum: float
) -> float:
    """A number parameter in (minimum, maximum]."""
    text = request.query_str(name)
    if text is None:
        return default
    try:
        value = float(text.removesuffix("d"))
    except ValueError:
        value = float("nan")
    if not minimum < value <= maximum:
        raise BadParameterError(
            f"parameter {name!r}: expected a number above {minimum:g} and at most {maximum:g}, "
            f"got {text!r}"
        )
    return value


def account_link(account_id: str, text: str | None = None) -> Link:
    """The account's page (``/accounts/{id}``)."""
    return Link(text or account_id, f"/accounts/{quote(account_id, safe='')}")


def path_part(text: str) -> str:
    """A name as one path segment."""
    return quote(text, safe="")
