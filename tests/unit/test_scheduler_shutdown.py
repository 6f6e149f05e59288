"""Stopping guidebot while a periodic job runs (Ctrl-C, a deploy's SIGTERM) ends that job
quietly: APScheduler cancels it, and the cancellation is not reported as the job's failure."""

from __future__ import annotations

import asyncio
import logging

from guidebot.periodic import FixedJob
from guidebot.scheduler import create_scheduler


async def test_a_job_cancelled_by_the_shutdown_is_not_logged_as_a_failure(caplog):
    started, finished = asyncio.Event(), asyncio.Event()

    async def long_rollup() -> None:
        started.set()
        await asyncio.sleep(3600)
        finished.set()

    jobs = create_scheduler(
        "Asia/Shanghai", [FixedJob("metrics-rollup", long_rollup, every_seconds=0.05)]
    )
    jobs.start()
    await asyncio.wait_for(started.wait(), 5)
    with caplog.at_level(logging.INFO):
        jobs.shutdown(wait=False)
        for _ in range(5):  # the cancelled job's task and APScheduler's callback
            await asyncio.sleep(0)
    assert not finished.is_set()
    failures = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert failures == [], [r.getMessage() for r in failures]
    assert any(
        "metrics-rollup" in r.getMessage() and "stopp" in r.getMessage() for r in caplog.records
    ), [r.getMessage() for r in caplog.records]
