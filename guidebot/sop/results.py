"""Completion of guide tasks: what WeCom's send results say became of `sent` mass-send tasks."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from guidebot.db.parking import isolating, unparked
from guidebot.sop.completion import complete_enrollments
from guidebot.sop.context import SopRuntime
from guidebot.sop.models import Action, CompletedBy, SopTask, TaskStatus
from guidebot.sop.queue import TASKS_TABLE
from guidebot.sop.reconcile import task_detail
from guidebot.wecom.client import WeComError

log = logging.getLogger(__name__)

# The periodic job's name (guidebot.sop.jobs), as the rows it parks are filed under.
RESULTS_JOB = "sop-results"
# get_groupmsg_send_result is polled this long after the task was created.
POLL_FOR = timedelta(days=14)
SEND_STATUS = {1: "sent", 2: "not a friend", 3: "customer's monthly cap"}


@dataclass
class PollReport:
    msgids: int = 0
    done: int = 0
    failed: int = 0
    waiting: int = 0
    parked: int = 0  # tasks whose answer it could not apply (guidebot.db.parking)
    errors: list[str] = field(default_factory=list)


async def poll_send_results(
    runtime: SopRuntime, now: datetime | None = None, *, limit: int = 200
) -> PollReport:
    """Ask WeCom what became of `sent` guide tasks: status 1 → done (completed_by poll);
    2 → failed "not a friend"; 3 → failed "customer's monthly cap" (recorded, not retried).

    A task whose answer cannot be applied (a send_time no instant holds) is parked with its
    reason and left `sent`, and later runs skip it; the others are settled all the same."""
    now = now or runtime.clock.now()
    report = PollReport()
    async with runtime.sessions() as session:
        pairs = (
            await session.execute(
                select(SopTask.wecom_msgid, SopTask.guide_userid)
                .where(
                    SopTask.action == Action.GUIDE_TASK,
                    SopTask.status == TaskStatus.SENT,
                    SopTask.wecom_msgid.is_not(None),
                    SopTask.sent_at >= now - POLL_FOR,
                    unparked(RESULTS_JOB, TASKS_TABLE, SopTask.id),
                )
                .group_by(SopTask.wecom_msgid, SopTask.guide_userid)
                .order_by(func.min(SopTask.sent_at))
                .limit(limit)
            )
        ).all()
    for msgid, guide in pairs:
        report.msgids += 1
        try:
            results = [r async for r in runtime.wecom.iter_groupmsg_send_result(msgid, guide)]
        except WeComError as exc:
            report.errors.append(f"{msgid}: {exc}")
            continue
        statuses = {r.get("external_userid"): r for r in results}
        async with runtime.sessions() as session, session.begin():
            query = select(SopTask).where(
                SopTask.wecom_msgid == msgid,
                SopTask.guide_userid == guide,
                SopTask.status == TaskStatus.SENT,
                unparked(RESULTS_JOB, TASKS_TABLE, SopTask.id),
            )
            tasks = {t.id: t for t in await session.scalars(query.with_for_update())}
            details = {i: task_detail(t, msgid) for i, t in tasks.items()}
            enrollments = {t.enrollment_id for t in tasks.values()}

            done, failed = await isolating(
                session,
                sorted(tasks),
                partial(_apply_results, session, statuses, now),
                job=RESULTS_JOB,
                table=TASKS_TABLE,
                key=int,
                now=now,
                detail=details.__getitem__,
            )
            for part in done:
                report.done += part.done
                report.failed += part.failed
                report.waiting += part.waiting
            report.parked += len(failed)
            await complete_enrollments(session, enrollments, now)
    if report.done or report.failed or report.parked:
        log.info(
            "groupmsg results: %d done, %d failed, %d waiting, %d parked over %d task(s)",
            report.done,
            report.failed,
            report.waiting,
            report.parked,
            report.msgids,
        )
    return report


async def _apply_results(
    session: AsyncSession, statuses: dict[Any, dict[str, Any]], now: datetime, ids: Sequence[int]
) -> PollReport:
    """_apply_result for these tasks, in the caller's transaction."""
    report = PollReport()
    # Read again: a savepoint rolled back leaves the objects it had changed expired.
    for task in await session.scalars(
        select(SopTask).where(SopTask.id.in_(list(ids))).execution_options(populate_existing=True)
    ):
        _apply_result(task, statuses.get(task.external_userid), now, report)
    await session.flush()
    return report


def _apply_result(
    task: SopTask, answer: dict[str, Any] | None, now: datetime, report: PollReport
) -> None:
    """One customer's line of get_groupmsg_send_result; everything is read before any field
    is set, so a line that cannot be read leaves the task as it was."""
    status = int(answer.get("status", 0)) if answer else 0
    if status == 0:
        report.waiting += 1
        return
    result = {**(task.result or {}), "send_status": status}
    if status == 1:
        send_time = answer.get("send_time") if answer else None
        completed_at = _instant(send_time, "send_time") if send_time else now
        task.status = TaskStatus.DONE
        task.completed_at = completed_at
        task.completed_by = CompletedBy.POLL
        report.done += 1
    else:
        task.status = TaskStatus.FAILED
        task.reason = SEND_STATUS.get(status, f"send status {status}")
        task.completed_at = now
        report.failed += 1
    task.result = result
    task.updated_at = now


def _instant(seconds: Any, name: str) -> datetime:
    """An epoch second from WeCom as an instant, or a ValueError that names it."""
    try:
        return datetime.fromtimestamp(int(seconds), UTC)
    except (OverflowError, OSError, ValueError, TypeError):
        raise ValueError(f"{name} {seconds!r} is no instant") from None


__all__ = ["POLL_FOR", "RESULTS_JOB", "PollReport", "poll_send_results"]
