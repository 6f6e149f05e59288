"""The metrics package's fixed periodic jobs (guidebot.app.periodic_jobs runs them).

* `metrics_rollup` (every 5 s): apply the changes committed since the last run to the daily
  rollups (guidebot.metrics.rollup.refresh), so figures reflect an event within 10 seconds.
  Safe on any number of instances: on PostgreSQL one holds the advisory lock per transaction,
  the others skip the tick.
* `metrics_reports` (hourly, on the hour): the 09:00 store-time reports to guides and the
  Monday reports to store managers (guidebot.metrics.daily_report).
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from guidebot.clock import Clock
from guidebot.config import Settings
from guidebot.metrics.daily_report import ReportsReport, send_reports
from guidebot.metrics.rollup import RefreshReport, refresh
from guidebot.wecom.client import WeComClient

ROLLUP_EVERY_SECONDS = 5
REPORTS_CRON = "0 * * * *"


async def metrics_rollup(
    sessions: async_sessionmaker[AsyncSession], clock: Clock, settings: Settings
) -> RefreshReport:
    return await refresh(sessions, settings.timezone, clock.now())


async def metrics_reports(
    sessions: async_sessionmaker[AsyncSession],
    wecom: WeComClient,
    clock: Clock,
    settings: Settings,
) -> ReportsReport:
    return await send_reports(sessions, wecom, clock, settings)
