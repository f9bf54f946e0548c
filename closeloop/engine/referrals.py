"""Referrals: units that another job's ``send: enroll`` action sent to a job.

The target job's next tick reads the open ones (engine.tick) and consumes them in its recording
transaction. Recording is idempotent by the delivery's idempotency key, so a resend of the same
enroll action refers the unit once.
"""

from __future__ import annotations

import sqlalchemy as sa

from closeloop.channels.enroll import Referral
from closeloop.engine import schema
from closeloop.engine.state import StateStore


def record_referral(store: StateStore, referral: Referral) -> bool:
    """Record ``referral``; False when its idempotency key was recorded before."""
    r = schema.referrals
    with store.engine.begin() as connection:
        known = connection.execute(
            sa.select(r.c.idempotency_key).where(r.c.idempotency_key == referral.idempotency_key)
        ).first()
        if known is not None:
            return False
        connection.execute(
            r.insert().values(
                idempotency_key=referral.idempotency_key,
                job_name=referral.job_name,
                account_id=referral.account_id,
                person_id=referral.person_id,
                from_job=referral.from_job,
                referred_at=referral.referred_at,
            )
        )
    return True
