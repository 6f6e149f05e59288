"""Read-side numbers of the SOP engine for the faces: tasks per step and status, active
enrollments per playbook version, and how the playbooks' goals came out."""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime

from sqlalchemy import and_, case, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from guidebot.sop.models import EnrollmentStatus, SopEnrollment, SopTask, TaskStatus

# The statuses a step's counts show; claimed and sending rows count as pending (in flight).
COUNTED = (
    TaskStatus.PENDING,
    TaskStatus.SENT,
    TaskStatus.DONE,
    TaskStatus.SKIPPED,
    TaskStatus.EXPIRED,
    TaskStatus.FAILED,
    TaskStatus.UNKNOWN,
)


def no_counts() -> dict[str, int]:
    return dict.fromkeys(COUNTED, 0)


async def step_counts(session: AsyncSession) -> dict[str, dict[str, dict[str, int]]]:
    """Per playbook, per step: how many tasks are in each COUNTED status."""
    rows = await session.execute(
        select(SopTask.playbook_id, SopTask.step_id, SopTask.status, func.count()).group_by(
            SopTask.playbook_id, SopTask.step_id, SopTask.status
        )
    )
    counts: dict[str, dict[str, dict[str, int]]] = defaultdict(dict)
    for playbook_id, step_id, status, n in rows.all():
        per_step = counts[playbook_id].setdefault(step_id, no_counts())
        key = status if status in COUNTED else TaskStatus.PENDING  # claimed/sending: in flight
        per_step[key] += n
    return counts


async def active_enrollments(session: AsyncSession) -> dict[str, dict[str, int]]:
    """Per playbook, per version (as text): its active enrollments."""
    rows = await session.execute(
        select(SopEnrollment.playbook_id, SopEnrollment.playbook_version, func.count())
        .where(SopEnrollment.status == EnrollmentStatus.ACTIVE)
        .group_by(SopEnrollment.playbook_id, SopEnrollment.playbook_version)
    )
    active: dict[str, dict[str, int]] = defaultdict(dict)
    for playbook_id, version, n in rows.all():
        active[playbook_id][str(version)] = n
    return active


async def goal_outcomes(
    session: AsyncSession, now: datetime
) -> dict[tuple[str, str], dict[str, int]]:
    """Per (playbook, goal event), enrollments with the goal: met, still within their window,
    or past it unmet."""
    still_open = and_(SopEnrollment.goal_met_at.is_(None), SopEnrollment.goal_deadline >= now)
    rows = await session.execute(
        select(
            SopEnrollment.playbook_id,
            SopEnrollment.goal_event,
            func.count(SopEnrollment.goal_met_at),
            func.count(case((still_open, 1))),
            func.count(),
        )
        .where(SopEnrollment.goal_event.is_not(None))
        .group_by(SopEnrollment.playbook_id, SopEnrollment.goal_event)
    )
    return {
        (playbook_id, event): {"met": met, "open": opened, "missed": n - met - opened}
        for playbook_id, event, met, opened, n in rows.all()
    }
