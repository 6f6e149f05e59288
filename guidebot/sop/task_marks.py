"""The guide's side of a task: done, skip and snooze (the sidebar, the bot, the API).

A guide closes or puts off their own tasks (`guide_userid` given: another guide's task is not
found); HQ any task. Each change records how (`completed_by`: sidebar, bot, api, ...), who
(`completed_by_user`: the guide's userid, "hq:<account>") and when (`completed_at`). A task
still waiting may be closed before it is due (the guide made the introduction already): it is
then never sent.
"""

from __future__ import annotations

import re
import unicodedata
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from guidebot.sop.completion import complete_enrollments
from guidebot.sop.models import CompletedBy, SopEnrollment, SopTask, TaskStatus
from guidebot.sop.planner import snap_into_window
from guidebot.sop.timing import window_from_json, zone_named

# What done and skip accept: what the guide can act on, and a send whose outcome is unknown.
CLOSABLE = (*TaskStatus.ACTIONABLE, TaskStatus.UNKNOWN)


# A delay as guides write it; the API declares the same pattern.
DELAY_PATTERN = (
    r"^\s*([0-9]{1,4})\s*"
    r"(m|min|mins|minutes?|分钟|分|h|hrs?|hours?|小时|个小时|钟头|d|days?|天)\s*$"
)
_DELAY = re.compile(DELAY_PATTERN)
# A guide may put a task off by this much (longer is a skip, not a snooze).
SNOOZE_RANGE = (timedelta(minutes=1), timedelta(days=7))
_UNIT = {"m": 60, "分": 60, "h": 3600, "小": 3600, "个": 3600, "钟": 3600, "d": 86400, "天": 86400}


def parse_delay(text: str) -> timedelta:
    """How long to put a task off, as a guide writes it: 2h, 30m, 1d, 2小时, 30分钟, 1天."""
    raw = unicodedata.normalize("NFKC", text or "").strip().lower()
    match = _DELAY.match(raw)
    if not match:
        raise ValueError(f"{text!r} is not a delay such as 2h, 30m, 1d (2小时, 30分钟, 1天)")
    return timedelta(seconds=int(match.group(1)) * _UNIT[match.group(2)[0]])


class SopError(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class TaskNotFound(SopError):
    pass


class TaskConflict(SopError):
    """The task is not in a state that allows this change (e.g. already done)."""


async def complete_task(
    session: AsyncSession,
    task_id: int,
    by: str,
    now: datetime,
    *,
    guide_userid: str | None = None,
    who: str | None = None,
    note: str | None = None,
) -> SopTask:
    """The guide did it (sidebar confirmation, or marked done): the task is `done`.

    A task still waiting (pending, snoozed) is done by hand and will not be sent; a `sending`
    one is in flight and cannot be changed; a settled one answers TaskConflict.
    """
    if by not in CompletedBy.ALL:
        raise ValueError(f"completed_by must be one of {CompletedBy.ALL}")
    task = await _task_for_update(session, task_id, guide_userid)
    if task.status == TaskStatus.DONE:
        return task  # idempotent: the sidebar may confirm twice
    if task.status not in CLOSABLE:
        raise TaskConflict(f"task {task_id} is {task.status}; it cannot be marked done")
    _close(task, TaskStatus.DONE, by, who or guide_userid, now)
    if note:
        task.reason = note
    await session.flush()
    await complete_enrollments(session, [task.enrollment_id], now)
    return task


async def skip_task(
    session: AsyncSession,
    task_id: int,
    reason: str,
    now: datetime,
    *,
    by: str = CompletedBy.GUIDE,
    guide_userid: str | None = None,
    who: str | None = None,
) -> SopTask:
    """The guide (or HQ) skips the task with a reason; only a task not yet done or in flight."""
    reason = (reason or "").strip()
    if not reason:
        raise ValueError("a reason is required to skip a task")
    task = await _task_for_update(session, task_id, guide_userid)
    if task.status == TaskStatus.SKIPPED:
        return task
    if task.status not in CLOSABLE:
        raise TaskConflict(f"task {task_id} is {task.status}; it cannot be skipped")
    _close(task, TaskStatus.SKIPPED, by, who or guide_userid, now)
    task.reason = reason
    await session.flush()
    await complete_enrollments(session, [task.enrollment_id], now)
    return task


async def snooze_task(
    session: AsyncSession,
    task_id: int,
    delay: timedelta,
    now: datetime,
    *,
    by: str = CompletedBy.GUIDE,
    guide_userid: str | None = None,
    who: str | None = None,
) -> SopTask:
    """Put the task off by `delay`: from now, or from its due time if it is not due yet, moved
    forward into the playbook's send window (the version it began with). It comes back then:
    a task not yet sent (or a reminder) is due again, a guide task WeCom holds shows again."""
    if not SNOOZE_RANGE[0] <= delay <= SNOOZE_RANGE[1]:
        raise ValueError("a task can be put off by 1 minute to 7 days")
    task = await _task_for_update(session, task_id, guide_userid)
    if task.status not in TaskStatus.ACTIONABLE:
        raise TaskConflict(f"task {task_id} is {task.status}; it cannot be put off")
    enrollment = await session.get(SopEnrollment, task.enrollment_id)
    settings = (enrollment.settings or {}) if enrollment is not None else {}
    zone = zone_named(enrollment.timezone if enrollment else None, "UTC")
    waiting = task.status in (TaskStatus.PENDING, TaskStatus.SNOOZED)
    start = max(now, task.due_at) if waiting else now
    until = start + delay
    window = window_from_json(settings.get("send_window"))
    if window is not None:
        until = snap_into_window(until, window, zone)
    shift = until - task.due_at
    if task.expires_at is not None and shift > timedelta(0):
        task.expires_at = task.expires_at + shift  # still "this long after it is due"
    if task.escalate_at is not None and shift > timedelta(0):
        task.escalate_at = task.escalate_at + shift
    task.due_at = until
    task.status = TaskStatus.SNOOZED
    task.lease_owner = task.lease_until = None
    task.result = {
        **(task.result or {}),
        "snoozed": {"by": who or guide_userid, "via": by, "at": now.isoformat()},
    }
    task.updated_at = now
    await session.flush()
    return task


def _close(task: SopTask, status: str, by: str, who: str | None, now: datetime) -> None:
    task.status = status
    task.completed_at = now
    task.completed_by = by
    task.completed_by_user = who
    task.welcome_code = None
    task.lease_owner = task.lease_until = None
    task.updated_at = now


async def _task_for_update(session: AsyncSession, task_id: int, guide: str | None) -> SopTask:
    query = select(SopTask).where(SopTask.id == task_id).with_for_update()
    task = await session.scalar(query.execution_options(populate_existing=True))
    if task is None or (guide is not None and task.guide_userid != guide):
        raise TaskNotFound(f"no task {task_id}")
    return task
