"""The metrics package's fixed periodic jobs (JOBS, below; the runtime schedules them).

* `metrics_rollup` (every 5 s): apply the changes committed since the last run to the daily
  rollups (guidebot.metrics.rollup.refresh), so figures reflect an event within 10 seconds.
  Safe on any number of instances: on PostgreSQL one holds the advisory lock per transaction,
  the others skip the tick.
* `cohorts_refresh` (every minute): the customers whose logs changed or whose retention or
  repurchase checkpoint came due, recomputed into the cohort rollup
  (guidebot.metrics.cohorts.refresh_cohorts).
* `metrics_reports` (hourly, on the hour): the 09:00 store-time reports to guides and the
  Monday reports to store managers (guidebot.metrics.daily_report).
* `task_escalations` (hourly, at half past): each store manager's daily digest of their store's
  tasks still open past their playbook's `escalate_after` (guidebot.metrics.escalation).
* `lost_alerts` (hourly, at :07, off WeCom's busy :00): each guide's customers who deleted
  them since the last batch, in one message; each store manager's list of yesterday's losses
  at 09:xx store time (guidebot.metrics.losses).
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from guidebot.clock import Clock
from guidebot.config import Settings
from guidebot.metrics.cohorts import CohortReport, refresh_cohorts
from guidebot.metrics.daily_report import ReportsReport, send_reports
from guidebot.metrics.escalation import EscalationReport, send_escalations
from guidebot.metrics.losses import LostReport, send_lost_alerts
from guidebot.metrics.rollup import GUIDES_PER_TRANSACTION, RefreshReport, refresh
from guidebot.periodic import PeriodicJob
from guidebot.wecom.client import WeComClient

ROLLUP_EVERY_SECONDS = 5
COHORTS_EVERY_SECONDS = 60
REPORTS_CRON = "0 * * * *"
ESCALATIONS_CRON = "30 * * * *"
LOST_ALERTS_CRON = "7 * * * *"


async def metrics_rollup(
    sessions: async_sessionmaker[AsyncSession], clock: Clock, settings: Settings
) -> RefreshReport:
    # On SQLite the add path waits behind each of the rollup's transactions: one guide each.
    guides = 1 if settings.is_sqlite else GUIDES_PER_TRANSACTION
    return await refresh(sessions, settings.timezone, clock.now(), guides_per_transaction=guides)


async def cohorts_refresh(
    sessions: async_sessionmaker[AsyncSession], clock: Clock, settings: Settings
) -> CohortReport:
    return await refresh_cohorts(sessions, settings.timezone, clock.now())


async def metrics_reports(
    sessions: async_sessionmaker[AsyncSession],
    wecom: WeComClient,
    clock: Clock,
    settings: Settings,
) -> ReportsReport:
    return await send_reports(sessions, wecom, clock, settings)


async def task_escalations(
    sessions: async_sessionmaker[AsyncSession],
    wecom: WeComClient,
    clock: Clock,
    settings: Settings,
) -> EscalationReport:
    return await send_escalations(sessions, wecom, clock, settings)


async def lost_alerts(
    sessions: async_sessionmaker[AsyncSession],
    wecom: WeComClient,
    clock: Clock,
    settings: Settings,
) -> LostReport:
    return await send_lost_alerts(sessions, wecom, clock, settings)


# Rollups from the dirty rows the source tables' triggers write (figures within 10 s), and
# the 09:00 store-time reports (hourly; each store's 09:xx sends).
JOBS = [
    PeriodicJob(
        "metrics-rollup", metrics_rollup, every_seconds=ROLLUP_EVERY_SECONDS, gives_way=True
    ),
    PeriodicJob(
        "cohorts-refresh", cohorts_refresh, every_seconds=COHORTS_EVERY_SECONDS, gives_way=True
    ),
    PeriodicJob("metrics-reports", metrics_reports, cron=REPORTS_CRON),
    PeriodicJob("task-escalations", task_escalations, cron=ESCALATIONS_CRON),
    PeriodicJob("lost-alerts", lost_alerts, cron=LOST_ALERTS_CRON),
]
