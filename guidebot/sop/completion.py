"""Runs with nothing left to do are completed: one statement for any number of them.

Every enrollment, every welcome's outcome, every closed or settled task asks, so the statement is
built once, on the tables, and runs on the driver where it may (guidebot.db.direct).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from sqlalchemy import and_, bindparam, exists, update
from sqlalchemy.ext.asyncio import AsyncSession

from guidebot.db.base import constant, only_filters
from guidebot.db.direct import Direct
from guidebot.sop.models import EnrollmentStatus, SopEnrollment, SopTask, TaskStatus


def _completion():
    enrollments, tasks = SopEnrollment.__table__, SopTask.__table__
    # A snoozed task comes back (due again, or shown again): its run is not over.
    still_open = (*TaskStatus.OPEN, TaskStatus.SNOOZED)
    open_task = exists().where(
        and_(tasks.c.enrollment_id == enrollments.c.id, tasks.c.status.in_(still_open))
    )
    return (
        update(enrollments)
        .where(
            enrollments.c.id.in_(bindparam("ids", expanding=True)),
            # By id: the partial index of active runs holds every customer's run.
            only_filters(enrollments.c.status, constant(EnrollmentStatus.ACTIVE)),
            ~open_task,
        )
        .values(
            status=EnrollmentStatus.COMPLETED,
            ended_at=bindparam("now"),
            updated_at=bindparam("now"),
        )
    )


_COMPLETE = Direct(_completion())


async def complete_enrollments(
    session: AsyncSession, enrollment_ids: Iterable[int], now: datetime
) -> None:
    """Active enrollments with no open task left are completed."""
    ids = sorted(set(enrollment_ids))
    if not ids:
        return
    for start in range(0, len(ids), 500):
        await _COMPLETE.execute(session, {"ids": ids[start : start + 500], "now": now})


__all__ = ["complete_enrollments"]
