"""The seam between content (sidebar, bot) and the SOP engine's task rows.

Everything content and the bot need from `guidebot.sop` goes through here: the guide's open
tasks, a customer's enrollments, completing a task when its content was forwarded, and the
customer events seen here (a reply the guide marks, a link opened). The SOP engine owns the
rows and their rules; when it offers a service function for an action, this module calls it
instead of touching the rows itself.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from guidebot.sop import enrollment as sop_enrollment
from guidebot.sop import task_marks as sop_task_marks
from guidebot.sop.models import (
    Action,
    CompletedBy,
    EnrollmentStatus,
    SopEnrollment,
    SopTask,
    TaskStatus,
)

log = logging.getLogger(__name__)

# What a guide still has to act on: not yet run, or run and waiting for the guide.
GUIDE_OPEN = (*TaskStatus.OPEN, *TaskStatus.AWAITING_GUIDE)
OPENED = "content.opened"  # the goal event a customer's open of their guide's link is


@dataclass(frozen=True, slots=True)
class TaskView:
    id: int
    guide_userid: str
    external_userid: str
    playbook_id: str
    step_id: str
    action: str
    status: str
    due_at: datetime
    content_key: str | None  # the library item the step sends, when it names one

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "external_userid": self.external_userid,
            "playbook": self.playbook_id,
            "step": self.step_id,
            "action": self.action,
            "status": self.status,
            "due_at": self.due_at.isoformat(),
            "content_key": self.content_key,
        }


def _view(task: SopTask) -> TaskView:
    return TaskView(
        id=task.id,
        guide_userid=task.guide_userid,
        external_userid=task.external_userid,
        playbook_id=task.playbook_id,
        step_id=task.step_id,
        action=task.action,
        status=task.status,
        due_at=task.due_at,
        content_key=task.content,
    )


async def open_tasks(
    session: AsyncSession,
    guide: str,
    *,
    customer: str | None = None,
    due_before: datetime | None = None,
    limit: int = 50,
) -> list[TaskView]:
    """The guide's tasks to act on (guide tasks and reminders), soonest first."""
    query = select(SopTask).where(
        SopTask.guide_userid == guide,
        SopTask.action.in_(Action.GUIDE_FACING),
        SopTask.status.in_(GUIDE_OPEN),
    )
    if customer is not None:
        query = query.where(SopTask.external_userid == customer)
    if due_before is not None:
        query = query.where(SopTask.due_at < due_before)
    rows = await session.scalars(query.order_by(SopTask.due_at, SopTask.id).limit(limit))
    return [_view(task) for task in rows]


async def get_task(session: AsyncSession, task_id: int) -> TaskView | None:
    task = await session.get(SopTask, task_id)
    return _view(task) if task is not None else None


async def enrollments(session: AsyncSession, guide: str, customer: str) -> list[dict[str, Any]]:
    """The customer's active playbook runs with this guide."""
    rows = await session.scalars(
        select(SopEnrollment)
        .where(
            SopEnrollment.guide_userid == guide,
            SopEnrollment.external_userid == customer,
            SopEnrollment.status == EnrollmentStatus.ACTIVE,
        )
        .order_by(SopEnrollment.enrolled_at)
    )
    return [
        {
            "id": e.id,
            "playbook": e.playbook_id,
            "name": (e.settings or {}).get("name") or e.playbook_id,
            "version": e.playbook_version,
            "enrolled_at": e.enrolled_at.isoformat(),
        }
        for e in rows
    ]


async def complete_task(session: AsyncSession, task_id: int, *, by: str, now: datetime) -> bool:
    """Mark the guide's task done because its content was forwarded from the sidebar.

    `by` is the guide who forwarded: only their own task is completed. False when the task is
    not theirs or cannot be done now (in flight, skipped, expired...); done twice is fine.
    """
    try:
        task = await sop_task_marks.complete_task(
            session, task_id, CompletedBy.SIDEBAR, now, guide_userid=by
        )
    except (sop_task_marks.TaskNotFound, sop_task_marks.TaskConflict) as exc:
        log.info("task %s not completed by %s's forward: %s", task_id, by, exc)
        return False
    return task.status == TaskStatus.DONE


async def customer_replied(
    session: AsyncSession, guide: str, customer: str, at: datetime
) -> tuple[list[int], int]:
    """The guide marks in the sidebar that the customer wrote back (see record_reply).
    (the enrollments stopped, the goals credited)"""
    return await sop_enrollment.record_reply(
        session, external_userid=customer, guide_userid=guide, at=at
    )


async def content_opened(session: AsyncSession, guide: str, customer: str, at: datetime) -> int:
    """A customer opened a link their guide sent: enrollments with that goal are credited."""
    return await sop_enrollment.record_goal(
        session, external_userid=customer, event=OPENED, at=at, guide_userid=guide
    )
