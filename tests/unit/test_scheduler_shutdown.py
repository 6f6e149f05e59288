"""Stopping guidebot while a periodic job runs (Ctrl-C, a deploy's SIGTERM) ends that job
quietly: APScheduler cancels it, and the cancellation is not reported as the job's failure. A
job that outlasts its interval is skipped quietly too."""

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


async def test_a_job_still_running_at_its_next_time_is_skipped_without_a_warning(caplog):
    """One instance per job: a run that outlasts its interval (the rollup after the demo's
    month) makes APScheduler skip the next times. That is the design; APScheduler warned each
    time, in English, on the demo's console. It is a debug line of ours now."""
    runs, released = [], asyncio.Event()

    async def slow_rollup() -> None:
        runs.append(1)
        await released.wait()

    def skips() -> list[logging.LogRecord]:
        return [r for r in caplog.records if "still running at its next time" in r.getMessage()]

    jobs = create_scheduler(
        "Asia/Shanghai", [FixedJob("metrics-rollup", slow_rollup, every_seconds=0.05)]
    )
    with caplog.at_level(logging.DEBUG):
        jobs.start()
        for _ in range(500):  # its next times pass while the first run holds on
            if len(skips()) >= 3:
                break
            await asyncio.sleep(0.01)
        released.set()
        jobs.shutdown(wait=False)
        await asyncio.sleep(0)
    assert len(runs) == 1
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert warnings == [], [r.getMessage() for r in warnings]
    assert len(skips()) >= 3 and all("metrics-rollup" in r.getMessage() for r in skips())
