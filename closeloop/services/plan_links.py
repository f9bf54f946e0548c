"""The customer's read-only link to a success plan: share, list, revoke, open
(docs/success-plans.md, "Sharing a plan with the customer").

A link is ``/shared/plans/TOKEN``. TOKEN carries 256 random bits, of which the state store keeps
only the SHA-256 (a leaked database opens nothing), signed with the project's secret together
with the plan, its account and the expiry (:mod:`itsdangerous`), so a link cannot be altered to
open another plan nor moved to another project that happens to share the store's rows. The
stored row decides: a revoked or expired link is refused (410) whatever its token says.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime, timedelta

from itsdangerous import BadSignature, URLSafeSerializer

from closeloop.engine import plan_links as link_store
from closeloop.engine import plans as store_plans
from closeloop.engine.state import StateStore, utc_now
from closeloop.errors import LocatedError, NotFoundError
from closeloop.schemas.plan_links import (
    CreatedPlanLink,
    LinkState,
    PlanLinkInfo,
    PlanLinkList,
    SharedObjective,
    SharedPlan,
    SharedPlanView,
    SharedRenegotiation,
)
from closeloop.services.plan_progress import plan_model

SHARED_PREFIX = "/shared/plans/"
DEFAULT_EXPIRES_DAYS = 30.0
MAX_EXPIRES_DAYS = 366.0
_SALT = "closeloop.plan-link"
_MAX_TOKEN_LENGTH = 1000  # a real one is about 150 characters


def _serializer(secret: str) -> URLSafeSerializer:
    return URLSafeSerializer(secret, salt=_SALT)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def _state(row: link_store.PlanLinkRow, now: datetime) -> LinkState:
    if row.revoked_at is not None:
        return "revoked"
    return "expired" if row.expires_at <= now else "active"


def _info(row: link_store.PlanLinkRow, now: datetime) -> PlanLinkInfo:
    return PlanLinkInfo(
        id=row.id,
        plan_id=row.plan_id,
        account_id=row.account_id,
        created_at=row.created_at,
        created_by=row.created_by,
        expires_at=row.expires_at,
        revoked_at=row.revoked_at,
        last_opened_at=row.last_opened_at,
        state=_state(row, now),
    )


def parse_expiry(text: str) -> float:
    """Days from ``30d``, ``12h`` or a plain number of days; a located error otherwise."""
    value = text.strip().lower()
    scale = 1.0
    if value.endswith("d"):
        value = value[:-1]
    elif value.endswith("h"):
        value, scale = value[:-1], 1 / 24
    try:
        days = float(value) * scale
    except ValueError:
        days = float("nan")
    if not 0 < days <= MAX_EXPIRES_DAYS:
        raise LocatedError(
            f"--expires {text!r} is not a duration between 1h and {MAX_EXPIRES_DAYS:g}d",
            hint="e.g. --expires 30d or --expires 12h",
        )
    return days


def share_plan(
    store: StateStore,
    secret: str,
    plan_id: int,
    *,
    expires_days: float = DEFAULT_EXPIRES_DAYS,
    actor: str,
    base_url: str | None = None,
    now: datetime | None = None,
) -> CreatedPlanLink:
    """A new link to plan ``plan_id`` for its customer, working for ``expires_days``."""
    if not 0 < expires_days <= MAX_EXPIRES_DAYS:
        raise LocatedError(
            f"a link expires after more than 0 and at most {MAX_EXPIRES_DAYS:g} days, "
            f"not {expires_days:g}"
        )
    moment = utc_now() if now is None else now
    plan = store_plans.plan_state(store, plan_id).plan  # NotFoundError for an unknown plan
    # Whole seconds: the expiry is compared between the signed token and the stored row.
    expires_at = (moment + timedelta(days=expires_days)).replace(microsecond=0)
    random_part = secrets.token_urlsafe(32)  # 256 bits
    token = _serializer(secret).dumps(
        [random_part, plan.account_id, plan.id, expires_at.isoformat()]
    )
    row = link_store.create_link(
        store,
        plan_id=plan.id,
        account_id=plan.account_id,
        token_hash=token_hash(random_part),
        expires_at=expires_at,
        actor=actor,
        now=moment,
    )
    path = SHARED_PREFIX + token
    url = base_url.rstrip("/") + path if base_url else None
    return CreatedPlanLink(**_info(row, moment).model_dump(), path=path, url=url)


def list_links(
    store: StateStore, *, plan_id: int | None = None, now: datetime | None = None
) -> PlanLinkList:
    """The links to one plan (NotFoundError for an unknown plan), or to every plan."""
    moment = utc_now() if now is None else now
    if plan_id is None:
        rows = link_store.list_links(store)
    else:
        store_plans.plan_state(store, plan_id)  # NotFoundError for an unknown plan
        rows = link_store.list_links(store, plan_id=plan_id)
    return PlanLinkList(links=[_info(row, moment) for row in rows])


def revoke_link(
    store: StateStore,
    link_id: int,
    *,
    actor: str,
    plan_id: int | None = None,
    now: datetime | None = None,
) -> PlanLinkInfo:
    """Revoke a link for good; with ``plan_id``, only a link to that plan (else NotFoundError)."""
    moment = utc_now() if now is None else now
    if plan_id is not None:
        found = [link for link in list_links(store, plan_id=plan_id).links if link.id == link_id]
        if not found:
            raise NotFoundError(f"plan {plan_id} has no link {link_id}")
    return _info(link_store.revoke(store, link_id, actor=actor, now=moment), moment)


def _payload(secret: str, token: str) -> tuple[str, str, int, datetime] | None:
    """The token's parts when the project's secret signed it, else None."""
    if len(token) > _MAX_TOKEN_LENGTH:
        return None
    try:
        loaded = _serializer(secret).loads(token)
        random_part, account_id, plan_id, expires = loaded
        if not (
            isinstance(random_part, str)
            and isinstance(account_id, str)
            and isinstance(plan_id, int)
            and isinstance(expires, str)
        ):
            return None
        return random_part, account_id, plan_id, datetime.fromisoformat(expires)
    except (BadSignature, ValueError, TypeError):
        return None


def open_shared(
    store: StateStore, secret: str, token: str, *, now: datetime | None = None
) -> SharedPlan:
    """What the customer sees for ``token``: the plan read-only (and the opening recorded), or
    ``expired`` / ``revoked`` / ``not_found`` without anything about the plan."""
    moment = utc_now() if now is None else now
    payload = _payload(secret, token)
    if payload is None:
        return SharedPlan(status="not_found")
    random_part, account_id, plan_id, expires_at = payload
    row = link_store.find_by_hash(store, token_hash(random_part))
    if row is None or row.account_id != account_id or row.expires_at != expires_at:
        return SharedPlan(status="not_found")
    state = _state(row, moment)
    if state != "active":
        return SharedPlan(status=state, expires_at=row.expires_at)
    try:
        current = store_plans.plan_state(store, plan_id)
    except NotFoundError:
        return SharedPlan(status="not_found")
    if current.plan.account_id != row.account_id:
        return SharedPlan(status="not_found")
    plan = plan_model(
        current,
        store_plans.observations(store, [o.id for o in current.objectives]),
        store_plans.versions(store, plan_id),
        moment,
        current.plan.version,
    )
    link_store.record_opened(store, row.id, moment)
    view = SharedPlanView(
        title=plan.title,
        account_id=plan.account_id,
        updated_at=plan.updated_at,
        as_of=plan.as_of,
        objectives=[
            SharedObjective(
                title=o.title,
                baseline=o.baseline,
                target=o.target,
                target_date=o.target_date,
                original_target=o.original_target,
                original_target_date=o.original_target_date,
                status=o.status,
                met_at=o.met_at,
                latest_value=o.latest_value,
                latest_observed_at=o.latest_observed_at,
                progress=o.progress,
                milestones=o.milestones,
                renegotiations=[
                    SharedRenegotiation(
                        old_target=r.old_target,
                        old_target_date=r.old_target_date,
                        new_target=r.new_target,
                        new_target_date=r.new_target_date,
                        reason=r.reason,
                        agreed_by=r.agreed_by,
                        agreed_at=r.recorded_at,
                    )
                    for r in o.renegotiations
                ],
            )
            for o in plan.objectives
        ],
    )
    return SharedPlan(status="ok", plan=view, expires_at=row.expires_at)
