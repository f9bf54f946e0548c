"""Terminal rendering (Rich) of the customer's plan links; formatting only."""

from __future__ import annotations

from datetime import datetime

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from closeloop.present.format import MISSING
from closeloop.schemas.plan_links import CreatedPlanLink, PlanLinkInfo

STATE_STYLE = {"active": "green", "expired": "dim", "revoked": "red"}


def _when(moment: datetime | None) -> str:
    return MISSING if moment is None else f"{moment:%Y-%m-%d %H:%M}"


def print_created_link(console: Console, link: CreatedPlanLink) -> None:
    console.print(
        f"Link {link.id} to plan {link.plan_id} (account {escape(link.account_id)}), "
        f"expires {_when(link.expires_at)} UTC. Shown once; send it to the customer:"
    )
    console.print(escape(link.url or link.path), soft_wrap=True, highlight=False)
    if link.url is None:
        console.print("[dim]Prefix the dashboard's address (closeloop serve), or pass --base-url.")


def print_links(console: Console, links: list[PlanLinkInfo]) -> None:
    table = Table(title="Customer links to success plans")
    for header in ("id", "plan", "account", "state", "created", "by", "expires", "last opened"):
        table.add_column(header)
    for link in links:
        style = STATE_STYLE[link.state]
        table.add_row(
            str(link.id),
            MISSING if link.plan_id is None else str(link.plan_id),
            escape(link.account_id),
            f"[{style}]{link.state}[/{style}]",
            _when(link.created_at),
            escape(link.created_by),
            _when(link.expires_at),
            _when(link.last_opened_at),
        )
    console.print(table)


def print_revoked(console: Console, link: PlanLinkInfo) -> None:
    console.print(
        f"Link {link.id} to plan {link.plan_id} revoked at {_when(link.revoked_at)} UTC; "
        "it now answers 410 Gone."
    )
