"""The accounts list (search by name or id, paged) and the account page (viewer role)."""

from __future__ import annotations

from urllib.parse import quote, urlencode

from closeloop.present import account_page as view
from closeloop.services import account_page as service
from closeloop.services import accounts as account_service
from closeloop.web.pages import Link, Page, PageRequest, Table, page

PAGE_SIZE = 50


def account_link(account_id: str) -> str:
    return f"/accounts/{quote(account_id, safe='')}"


@page("/accounts", template="accounts.html.j2", nav="Accounts", title="Accounts")
def accounts_list(request: PageRequest) -> Page:
    """Accounts by id; ``q`` finds text in the id, name or domain; ``offset`` pages."""
    q = request.query_str("q")
    offset = request.query_int("offset", 0, minimum=0, maximum=1_000_000_000) or 0
    with request.workspace() as workspace:
        found = account_service.list_accounts(workspace, q=q, offset=offset, limit=PAGE_SIZE)
    rows = []
    for account in found.items:
        row = view.account_row(account)
        rows.append([Link(account.account_id, account_link(account.account_id)), *row[1:]])
    end = min(offset + len(found.items), found.total)

    def at(start: int) -> str:
        return "/accounts?" + urlencode({"q": q or "", "offset": start})

    context = {
        "q": q or "",
        "first": offset + 1 if found.items else 0,
        "last": end,
        "previous": at(max(offset - PAGE_SIZE, 0)) if offset > 0 else None,
        "next": at(offset + PAGE_SIZE) if offset + PAGE_SIZE < found.total else None,
    }
    table = Table(view.ACCOUNT_COLUMNS, rows)
    return Page(model=found, context=context, tables={"accounts": table})


@page("/accounts/{account_id}", template="account.html.j2", title="Account")
def account(request: PageRequest, account_id: str) -> Page:
    """One account from every source: attributes and revenue, timeline, jobs, deliveries,
    surveys, health and its explanation, success plans (``at``: as of a date-time)."""
    at = request.query_date("at")
    moment = None if at is None else service.end_of(at)
    with request.workspace() as workspace:
        found = service.account_page(workspace, account_id, moment)
    jobs = [
        [Link(row[0], f"/jobs/{quote(str(row[0]), safe='')}"), *row[1:]]
        for row in view.enrollment_rows(found)
    ]
    tables = {
        "attributes": Table(view.ATTRIBUTE_COLUMNS, view.attribute_rows(found.account)),
        "timeline": Table(view.TIMELINE_COLUMNS, view.timeline_rows(found)),
        "jobs": Table(view.ENROLLMENT_COLUMNS, jobs),
        "deliveries": Table(view.DELIVERY_COLUMNS, view.delivery_rows(found)),
        "surveys": Table(view.SURVEY_COLUMNS, view.survey_rows(found)),
        "health": Table(view.HEALTH_COLUMNS, view.health_rows(found)),
        "objectives": Table(view.OBJECTIVE_COLUMNS, view.objective_rows(found)),
    }
    context = {
        "page": found,
        "delivery_counts": view.delivery_counts(found.deliveries.counts),
        "renewal": view.when(found.account.renewal_date),
        "at": at.isoformat() if at is not None else "",
    }
    title = found.account.name or found.account.account_id
    return Page(model=found, context=context, tables=tables, title=title)
