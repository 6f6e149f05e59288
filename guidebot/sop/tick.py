"""The tick: claim due rows batch by batch, prepare them, execute them in WeCom."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime

from guidebot.sop.actions.base import TickReport
from guidebot.sop.context import SopRuntime
from guidebot.sop.execute import execute
from guidebot.sop.prepare import prepare
from guidebot.sop.queue import FAILED_RUNS, claim, reap_claims, release_failed_runs
from guidebot.sop.task_closing import wake_snoozed

log = logging.getLogger(__name__)


async def run_tasks(
    runtime: SopRuntime, now: datetime, *, ids: Sequence[int] | None = None
) -> TickReport:
    """Claim, prepare and execute due rows (or exactly `ids`: the welcome fast path)."""
    report = TickReport()
    batches = 1 if ids is not None else runtime.max_batches
    for _ in range(batches):
        claimed = await claim(runtime, now, ids=ids)
        if not claimed:
            break
        report.claimed += len(claimed)
        await run_claimed(runtime, claimed, now, report)
        if ids is None and len(claimed) < runtime.batch_size:
            break
    return report


async def run_claimed(
    runtime: SopRuntime, claimed: Sequence[int], now: datetime, report: TickReport
) -> None:
    """Prepare and execute rows this runtime holds claimed; if the run fails between its
    transactions, the next tick hands them back."""
    try:
        ready = await prepare(runtime, claimed, now, report)
        if ready:
            await execute(runtime, ready, now, report)
    except BaseException:
        FAILED_RUNS.add(runtime.owner, claimed)
        raise


async def tick(runtime: SopRuntime, now: datetime | None = None) -> TickReport:
    """One scheduler tick: take back lapsed claims, then run what is due, batch by batch."""
    now = now or runtime.clock.now()
    reaped = await release_failed_runs(runtime, now) + await reap_claims(runtime, now)
    async with runtime.sessions() as session, session.begin():
        await wake_snoozed(session, now)
    report = await run_tasks(runtime, now)
    report.reaped = reaped
    if report.claimed or reaped:
        log.info("sop tick: %s", {k: v for k, v in report.as_dict().items() if v})
    return report
