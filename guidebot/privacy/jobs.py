"""The retention job (JOBS, below; the runtime schedules it)."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from guidebot.clock import Clock
from guidebot.config import Settings
from guidebot.periodic import PeriodicJob
from guidebot.privacy.retention import PruneReport, prune

Sessions = async_sessionmaker[AsyncSession]


async def prune_expired(sessions: Sessions, clock: Clock, settings: Settings) -> PruneReport:
    """Prune each table past its GUIDEBOT_RETENTION_* period, in small batches."""
    return await prune(sessions, settings.retention, clock.now())


# Hourly, at a quarter past: a run does at most MAX_BATCHES batches per table.
JOBS = [PeriodicJob("retention", prune_expired, cron="15 * * * *", gives_way=True)]
