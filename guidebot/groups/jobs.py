"""The groups package's periodic jobs: the customer groups synced from WeCom nightly (after
the address book, so owners are known) and at start-up (guidebot.web.startup)."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from guidebot.clock import Clock
from guidebot.groups.sync import GroupSyncReport, sync_groups
from guidebot.scheduler import PeriodicJob
from guidebot.wecom.client import WeComClient

Sessions = async_sessionmaker[AsyncSession]


async def nightly_group_sync(
    sessions: Sessions, wecom: WeComClient, clock: Clock
) -> GroupSyncReport:
    return await sync_groups(sessions, wecom, clock.now())


# In GUIDEBOT_TIMEZONE; the runtime hands each job the resources it names.
JOBS = [PeriodicJob("group-sync", nightly_group_sync, cron="45 2 * * *")]
