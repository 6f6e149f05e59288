"""APScheduler runs a few fixed periodic jobs and nothing per customer.

Per-customer work lives in tables (architecture rule 5). APScheduler 3's defaults bite, so they are
set explicitly: the time zone (not the host's), a misfire grace long enough that a busy loop
does not skip the nightly job, coalescing of missed runs into one, one instance per job.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any
from zoneinfo import ZoneInfo

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

log = logging.getLogger(__name__)

Job = Callable[[], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class FixedJob:
    id: str
    run: Job
    every_seconds: float | None = None  # either an interval...
    cron: str | None = None  # ...or a crontab line in the scheduler's time zone


@dataclass(frozen=True, slots=True)
class PeriodicJob:
    """A job as the domain that runs it declares it (in its jobs.py, beside the code): the
    callable's parameters name the resources it needs (sessions, wecom, clock, settings,
    sop, ...), which whoever schedules it hands over by name (`bind`)."""

    id: str
    run: Callable[..., Awaitable[Any]]
    every_seconds: float | None = None  # either an interval...
    cron: str | None = None  # ...or a crontab line in the scheduler's time zone

    def bind(self, resources: Mapping[str, Any]) -> FixedJob:
        params = inspect.signature(self.run).parameters.values()
        names = [p.name for p in params if p.default is inspect.Parameter.empty]
        missing = [name for name in names if name not in resources]
        if missing:
            raise LookupError(f"job {self.id} needs {', '.join(missing)}, which no one provides")
        run = partial(self.run, **{name: resources[name] for name in names})
        return FixedJob(self.id, run, self.every_seconds, self.cron)


def create_scheduler(timezone: str, jobs: list[FixedJob]) -> AsyncIOScheduler:
    tz = ZoneInfo(timezone)
    scheduler = AsyncIOScheduler(
        timezone=tz,
        job_defaults={"misfire_grace_time": 600, "coalesce": True, "max_instances": 1},
    )
    for job in jobs:
        if (job.every_seconds is None) == (job.cron is None):
            raise ValueError(f"job {job.id}: give exactly one of every_seconds and cron")
        trigger = (
            IntervalTrigger(seconds=job.every_seconds, timezone=tz)
            if job.every_seconds is not None
            else CronTrigger.from_crontab(job.cron, timezone=tz)
        )
        scheduler.add_job(_logged(job), trigger, id=job.id, name=job.id, replace_existing=True)
    return scheduler


def _logged(job: FixedJob) -> Job:
    async def run() -> None:
        try:
            await job.run()
        except Exception:
            # A periodic job must never die silently, nor take the scheduler with it.
            log.exception("periodic job %s failed; it runs again at its next time", job.id)

    return run
