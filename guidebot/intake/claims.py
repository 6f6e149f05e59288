"""Which stored callbacks the inbox worker takes next: the leased queue over `inbox_events`.

A customer's events go in arrival order: one waits while an earlier event of the same customer
is pending or being processed. Across customers the fresh go first: events that arrived (or
fell due) within `fresh_first` are claimed before older ones, in arrival order. An add's
WelcomeCode lives 20 s; when a livestream brings adds faster than the worker handles them,
oldest-first would handle every add after its code is gone, while the older events lose
nothing by waiting for the burst to pass. An event's first attempt is due when it arrives, so
the fresh are found in the due index's order, without sorting the backlog; only when they do
not fill the batch are older events taken.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Row, and_, exists
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from guidebot.db.queue import LeasedQueue
from guidebot.intake.models import InboxEvent, InboxStatus

_INBOX = InboxEvent.__table__
INBOX_QUEUE = LeasedQueue(_INBOX, pending=InboxStatus.PENDING, claimed=InboxStatus.PROCESSING)
# What the worker needs of each claimed event.
CLAIMED_COLUMNS = (
    _INBOX.c.id,
    _INBOX.c.customer_key,
    _INBOX.c.payload,
    _INBOX.c.attempts,
    _INBOX.c.lease_until,
)


_EARLIER = aliased(InboxEvent)
# Built once: an earlier event of the same customer is still to be done.
_BLOCKED_BY_EARLIER = exists().where(
    and_(
        _EARLIER.customer_key == InboxEvent.customer_key,
        _EARLIER.id < InboxEvent.id,
        _EARLIER.status.in_((InboxStatus.PENDING, InboxStatus.PROCESSING)),
    )
)


async def claim_due(
    session: AsyncSession,
    *,
    owner: str,
    now: datetime,
    lease: timedelta,
    limit: int,
    fresh_first: timedelta,
) -> list[Row[Any]]:
    """Claim at most `limit` due events for `owner` until now + lease, the fresh first."""
    due, fresh_since = _INBOX.c.next_attempt_at, now - fresh_first
    rows: list[Row[Any]] = []
    # The fresh in the due index's order, then, if they left room, the older in arrival order.
    stages = ((due >= fresh_since, (due, _INBOX.c.id)), (due < fresh_since, (_INBOX.c.id,)))
    for which, order_by in stages:
        if len(rows) == limit:
            break
        rows += await INBOX_QUEUE.claim(
            session,
            owner=owner,
            now=now,
            lease=lease,
            where=(due <= now, which, ~_BLOCKED_BY_EARLIER),
            order_by=order_by,
            limit=limit - len(rows),
            returning=CLAIMED_COLUMNS,
        )
    return rows


__all__ = ["CLAIMED_COLUMNS", "INBOX_QUEUE", "claim_due"]
