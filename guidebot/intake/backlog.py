"""The inbox's backlog gauges for /metrics: a reader the app hands to Telemetry.measure_with."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from guidebot.intake.models import InboxEvent, InboxStatus
from guidebot.telemetry import Telemetry


async def inbox_backlog(telemetry: Telemetry, session: AsyncSession, now: datetime) -> None:
    """Oldest due, pending and failed inbox events (ix_inbox_events_due)."""
    oldest_due, pending = (
        await session.execute(
            select(func.min(InboxEvent.next_attempt_at), func.count()).where(
                InboxEvent.status == InboxStatus.PENDING
            )
        )
    ).one()
    failed = await session.scalar(
        select(func.count()).where(InboxEvent.status == InboxStatus.FAILED)
    )
    telemetry.inbox_lag.set(telemetry.age(oldest_due, now))
    telemetry.inbox_pending.set(pending or 0)
    telemetry.inbox_failed.set(failed or 0)
