"""The inbox's backlog: its gauges for /metrics (a reader the app hands to
Telemetry.measure_with), and what an operator does with it (`guidebot inbox replay`, `guidebot
inbox dismiss`)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from guidebot.clock import Clock
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


async def replay(sessions: async_sessionmaker[AsyncSession], clock: Clock, *, failed: bool) -> int:
    """Make waiting events due now; with `failed`, give parked events a fresh start too."""
    statuses = [InboxStatus.PENDING] + ([InboxStatus.FAILED] if failed else [])
    async with sessions() as session, session.begin():
        result = await session.execute(
            update(InboxEvent)
            .where(InboxEvent.status.in_(statuses))
            .values(
                status=InboxStatus.PENDING,
                next_attempt_at=clock.now(),
                attempts=0,
                lease_owner=None,
                lease_until=None,
            )
        )
        return result.rowcount


DISMISSED = "dismissed"


async def dismiss(
    session: AsyncSession, now: datetime, *, ids: list[int] | None = None
) -> list[int]:
    """Settle failed events unprocessed (all of them, or those of `ids`): an operator decided
    they need no handling. They count as processed from now, so the retention job clears their
    plaintext after its period. The ids dismissed."""
    query = update(InboxEvent).where(InboxEvent.status == InboxStatus.FAILED)
    if ids is not None:
        query = query.where(InboxEvent.id.in_(ids))
    result = await session.execute(
        query.values(status=InboxStatus.DONE, processed_at=now, last_error=DISMISSED)
        .returning(InboxEvent.id)
        .execution_options(synchronize_session=False)
    )
    return sorted(result.scalars())
