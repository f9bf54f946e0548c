"""Opt-outs: signed unsubscribe links, and the record every channel and tick honours.

An unsubscribe link carries a token signed with the project secret (HMAC through
:mod:`itsdangerous`) that names the account and the time it was made; it is refused when forged,
made for another project secret, or older than ``max_age``. Redeeming one records the opt-out;
from then on the dispatcher sends nothing for the account (every channel) and the next tick exits
its active enrollments with reason ``opted_out`` and enrolls it nowhere.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import parse_qs, urlsplit

import sqlalchemy as sa
from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer

from closeloop.engine import schema
from closeloop.engine.state import StateStore, utc_now
from closeloop.errors import CloseloopError

SALT = "closeloop.unsubscribe"
DEFAULT_MAX_AGE = timedelta(days=365)


class TokenError(CloseloopError, ValueError):
    """An unsubscribe token that is forged, damaged or expired."""

    code = "invalid_token"


@dataclass(frozen=True)
class OptOut:
    account_id: str
    opted_out_at: datetime
    source: str
    actor: str
    reason: str | None


class UnsubscribeLinks:
    """Makes and checks the signed tokens of unsubscribe links for one project secret."""

    def __init__(self, secret: str, url_template: str, max_age: timedelta = DEFAULT_MAX_AGE):
        self._serializer = URLSafeTimedSerializer(secret, salt=SALT)
        self.url_template = url_template
        self.max_age = max_age

    def token(self, account_id: str) -> str:
        return str(self._serializer.dumps({"account": account_id}))

    def url(self, account_id: str) -> str:
        return self.url_template.replace("{token}", self.token(account_id))

    def account_of(self, token_or_url: str) -> str:
        """The account a token (or a whole unsubscribe URL) names; TokenError if not valid."""
        token = _token_of(token_or_url)
        try:
            data = self._serializer.loads(token, max_age=int(self.max_age.total_seconds()))
        except SignatureExpired:
            raise TokenError(
                f"this unsubscribe link expired (links are valid for {self.max_age.days} days)"
            ) from None
        except BadSignature:
            raise TokenError(
                "this unsubscribe link is not valid (its signature does not match)"
            ) from None
        account = data.get("account") if isinstance(data, dict) else None
        if not isinstance(account, str) or not account:
            raise TokenError("this unsubscribe link names no account")
        return account


def _token_of(token_or_url: str) -> str:
    text = token_or_url.strip()
    if "://" in text:
        values = parse_qs(urlsplit(text).query).get("token")
        if not values:
            raise TokenError("the URL has no token= parameter")
        return values[0]
    return text


def record_optouts(
    store: StateStore,
    account_ids: Iterable[str],
    *,
    source: str,
    actor: str,
    reason: str | None = None,
    at: datetime | None = None,
) -> int:
    """Record opt-outs (an account already opted out keeps its first record); return how many
    were new."""
    moment = at or utc_now()
    wanted = sorted(set(account_ids))
    if not wanted:
        return 0
    o = schema.optouts
    with store.engine.begin() as connection:
        known = set(
            connection.execute(sa.select(o.c.account_id).where(o.c.account_id.in_(wanted)))
            .scalars()
            .all()
        )
        new = [account for account in wanted if account not in known]
        if new:
            connection.execute(
                o.insert(),
                [
                    {
                        "account_id": account,
                        "opted_out_at": moment,
                        "source": source,
                        "actor": actor,
                        "reason": reason,
                    }
                    for account in new
                ],
            )
            store.audit(connection, actor, "optout.added", source, {"accounts": new})
    return len(new)


def list_optouts(store: StateStore) -> list[OptOut]:
    o = schema.optouts
    with store.engine.connect() as connection:
        rows = connection.execute(sa.select(o).order_by(o.c.opted_out_at, o.c.account_id)).all()
    return [OptOut(*row) for row in rows]


def opted_out_since(store: StateStore, at: datetime) -> dict[str, datetime]:
    """Accounts opted out at or before ``at``, with when (for ticks: as of their time)."""
    o = schema.optouts
    with store.engine.connect() as connection:
        rows = connection.execute(
            sa.select(o.c.account_id, o.c.opted_out_at).where(o.c.opted_out_at <= at)
        ).all()
    return {row[0]: row[1] for row in rows}


def optouts_by_arm(store: StateStore, job_name: str, as_of: datetime) -> dict[str, tuple[int, int]]:
    """Per arm of ``job_name``: (units enrolled by ``as_of``, of them opted out after entering).

    An account counts once per enrollment, when it opted out between entering and ``as_of``; the
    holdout's rate is what other messages and chance cause, the guardrail a job is held to.
    """
    o, e = schema.optouts, schema.enrollments
    opted = sa.case((o.c.opted_out_at.is_not(None), 1), else_=0)
    with store.engine.connect() as connection:
        rows = connection.execute(
            sa.select(e.c.arm, sa.func.count(), sa.func.sum(opted))
            .select_from(
                e.outerjoin(
                    o,
                    (o.c.account_id == e.c.account_id)
                    & (o.c.opted_out_at >= e.c.entered_at)
                    & (o.c.opted_out_at <= as_of),
                )
            )
            .where(e.c.job_name == job_name, e.c.entered_at <= as_of)
            .group_by(e.c.arm)
        ).all()
    return {str(arm): (int(units), int(out or 0)) for arm, units, out in rows}
