"""APScheduler runs a few fixed periodic jobs and nothing per customer.

Per-customer work lives in tables (architecture rule 5). APScheduler 3's defaults bite, so they are
set explicitly: the time zone (not the host's), a misfire grace long enough that a busy loop
does not skip the nightly job, coalescing of missed runs into one, one instance per job (and a
run skipped for it is a debug line, not a warning).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from zoneinfo import ZoneInfo

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from guidebot.periodic import FixedJob, Job, Quiet, giving_way

log = logging.getLogger(__name__)


class GiveWay:
    """Whether a job that gives way runs now: not while `busy()` (the inbox worker's burst,
    guidebot.intake.worker.InboxWorker.busy), unless it has been put off for `longest` seconds
    already. Skipping loses nothing: the rollups and the pruning pick up where they left off."""

    def __init__(
        self,
        busy: Callable[[], bool],
        longest: float = 60.0,
        now: Callable[[], float] = time.monotonic,  # real time, as the scheduler's own
        quiet: Quiet | None = None,  # waits (at most so long) until no add is in hand
    ) -> None:
        self.busy = busy
        self.quiet = quiet
        self.longest = longest
        self.now = now
        self._put_off_since: dict[str, float] = {}  # job id -> when it was first put off

    def lets(self, job_id: str) -> bool:
        now = self.now()
        if not self.busy():
            self._put_off_since.pop(job_id, None)
            return True
        since = self._put_off_since.setdefault(job_id, now)
        if now - since < self.longest:
            log.debug("periodic job %s gives way to a burst of adds", job_id)
            return False
        del self._put_off_since[job_id]
        return True


class _SchedulerLog(logging.LoggerAdapter):
    """APScheduler's log, with one warning made a debug line: a job still running at its next
    time is not started again (max_instances=1). That is the design, not a fault: the rollup
    every 5 s runs longer after a backlog (the demo's month, a busy hour), and the warning
    came every 5 s until it caught up, in English, on the demo's console."""

    def warning(self, msg: object, *args: object, **kwargs: object) -> None:
        if isinstance(msg, str) and "maximum number of running instances" in msg:
            job = getattr(args[0], "id", args[0]) if args else "?"
            log.debug("periodic job %s is still running at its next time; that run is skipped", job)
            return
        super().warning(msg, *args, **kwargs)


def create_scheduler(
    timezone: str, jobs: list[FixedJob], give_way: GiveWay | None = None
) -> AsyncIOScheduler:
    tz = ZoneInfo(timezone)
    scheduler = AsyncIOScheduler(
        timezone=tz,
        job_defaults={"misfire_grace_time": 600, "coalesce": True, "max_instances": 1},
        logger=_SchedulerLog(logging.getLogger("apscheduler.scheduler"), {}),
    )
    for job in jobs:
        if (job.every_seconds is None) == (job.cron is None):
            raise ValueError(f"job {job.id}: give exactly one of every_seconds and cron")
        trigger = (
            IntervalTrigger(seconds=job.every_seconds, timezone=tz)
            if job.every_seconds is not None
            else CronTrigger.from_crontab(job.cron, timezone=tz)
        )
        scheduler.add_job(
            _logged(job, give_way), trigger, id=job.id, name=job.id, replace_existing=True
        )
    return scheduler


def _logged(job: FixedJob, give_way: GiveWay | None = None) -> Job:
    async def run() -> None:
        quiet = None
        if job.gives_way and give_way is not None:
            if not give_way.lets(job.id):
                return
            quiet = give_way.quiet
        try:
            with giving_way(quiet):
                await job.run()
        except asyncio.CancelledError:
            # Only the scheduler's shutdown cancels a job (Ctrl-C, a deploy's SIGTERM): what it
            # had not committed is not kept, and it runs again after the restart. Left to
            # APScheduler, the cancellation is logged as the job's failure, with a traceback.
            log.info("periodic job %s stopped at shutdown; it runs again after the restart", job.id)
        except Exception:
            # A periodic job must never die silently, nor take the scheduler with it.
            log.exception("periodic job %s failed; it runs again at its next time", job.id)

    return run
