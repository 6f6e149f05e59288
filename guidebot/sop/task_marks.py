"""The guide's side of a task: done and skip (the sidebar, the API, the bot)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from guidebot.sop.enrollment import complete_enrollments
from guidebot.sop.models import CompletedBy, SopTask, TaskStatus


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
    note: str | None = None,
) -> SopTask:
    """The guide did it (sidebar confirmation, or marked done): the task is `done`.

    A task still waiting (pending) is done by hand and will not be sent; a `sending` one is in
    flight and cannot be changed; a settled one answers TaskConflict.
    """
    if by not in CompletedBy.ALL:
        raise ValueError(f"completed_by must be one of {CompletedBy.ALL}")
    task = await _task_for_update(session, task_id, guide_userid)
    if task.status == TaskStatus.DONE:
        return task  # idempotent: the sidebar may confirm twice
    if task.status not in (TaskStatus.PENDING, TaskStatus.SENT, TaskStatus.UNKNOWN):
        raise TaskConflict(f"task {task_id} is {task.status}; it cannot be marked done")
    task.status = TaskStatus.DONE
    task.completed_at = now
    task.completed_by = by
    task.welcome_code = None
    task.lease_owner = task.lease_until = None
    if note:
        task.reason = note
    task.updated_at = now
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
) -> SopTask:
    """The guide (or HQ) skips the task with a reason; only a task not yet done or in flight."""
    reason = (reason or "").strip()
    if not reason:
        raise ValueError("a reason is required to skip a task")
    task = await _task_for_update(session, task_id, guide_userid)
    if task.status == TaskStatus.SKIPPED:
        return task
    if task.status not in (TaskStatus.PENDING, TaskStatus.SENT, TaskStatus.UNKNOWN):
        raise TaskConflict(f"task {task_id} is {task.status}; it cannot be skipped")
    task.status = TaskStatus.SKIPPED
    task.reason = reason
    task.completed_at = now
    task.completed_by = by
    task.welcome_code = None
    task.updated_at = now
    await session.flush()
    await complete_enrollments(session, [task.enrollment_id], now)
    return task


async def _task_for_update(session: AsyncSession, task_id: int, guide: str | None) -> SopTask:
    query = select(SopTask).where(SopTask.id == task_id).with_for_update()
    task = await session.scalar(query.execution_options(populate_existing=True))
    if task is None or (guide is not None and task.guide_userid != guide):
        raise TaskNotFound(f"no task {task_id}")
    return task
