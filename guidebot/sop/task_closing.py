"""Tasks that close or come back by themselves.

* A relation that ended (the customer deleted the guide, the guide removed the customer) or a
  guide who left: every task of theirs the guide could still act on (pending, claimed, sent,
  snoozed) is skipped with the reason, when the event arrives (architecture rule 7), whatever
  became of its enrollment: a sent reminder outlives a completed run.
* A transfer: what the handover still had to act on follows the customer where it can. The
  enrollment's unsent tasks moved with it (enrollment.transfer_enrollments); a reminder moves
  to the successor too; a guide task WeCom already holds for the handover (a mass-send task in
  their client) cannot be sent by anyone else, so it closes.
* A snoozed task whose time came is due again (not sent yet, or a reminder to send again), or,
  a guide task WeCom holds already, back in the guide's list as sent.
"""

from __future__ import annotations

import logging
from datetime import datetime

from sqlalchemy import and_, bindparam, case, literal_column, null, or_, select, union_all, update
from sqlalchemy.ext.asyncio import AsyncSession

from guidebot.db.base import constant, only_filters
from guidebot.db.direct import Direct
from guidebot.sop.completion import complete_enrollments
from guidebot.sop.enrollment import stop_enrollments
from guidebot.sop.models import (
    Action,
    CompletedBy,
    EnrollmentStatus,
    SopEnrollment,
    SopTask,
    TaskStatus,
)

log = logging.getLogger(__name__)

GUIDE_LEFT = "guide.left"


# A closed task: skipped by the engine, with the reason and the instant (_closed).
_CLOSED = {
    "status": TaskStatus.SKIPPED,
    "welcome_code": None,
    "lease_owner": None,
    "lease_until": None,
    "completed_by": CompletedBy.ENGINE,
    "completed_by_user": None,
}


def _closed(reason: str, now: datetime) -> dict:
    return _CLOSED | {"reason": _why(reason), "completed_at": now, "updated_at": now}


def _why(reason: str) -> str:
    return f"stopped: {reason}"


# Still to be acted on: not sent yet, or sent to the guide and waiting for them (a welcome
# or a tag that is `sent` is settled: it reached the customer).
_TASKS = SopTask.__table__
_WAITING = or_(
    _TASKS.c.status.in_(TaskStatus.UNSENT),
    and_(_TASKS.c.status == TaskStatus.SENT, _TASKS.c.action.in_(Action.GUIDE_FACING)),
)
# Built once: every end of a pair asks, and closes what it finds (on the driver:
# db.direct; building the update's comparisons per end cost more than running it). Found
# through the customer's handful of tasks, never the guide's thousands: SQLite picked the
# guide's index by its shape, PostgreSQL without statistics may (the guide only filters).
_PAIR = (
    _TASKS.c.external_userid == bindparam("ext"),
    only_filters(_TASKS.c.guide_userid, bindparam("guide")),
)
_BY_CUSTOMER = "INDEXED BY ix_sop_tasks_customer_sent"
_RUNS = SopEnrollment.__table__
# What an end reads, once: the pair's active runs (stop_enrollments' read for the pair) and its
# waiting tasks, each with its run and status (one statement: two cost an end more).
_PAIR_LOOK = Direct(
    union_all(
        select(literal_column("1").label("run"), _RUNS.c.id, null().label("status")).where(
            _RUNS.c.external_userid == bindparam("ext"),
            _RUNS.c.status == constant(EnrollmentStatus.ACTIVE),
            _RUNS.c.guide_userid == bindparam("guide"),
        ),
        select(literal_column("0"), _TASKS.c.enrollment_id, _TASKS.c.status)
        .where(*_PAIR, _WAITING)
        .with_hint(_TASKS, _BY_CUSTOMER, "sqlite"),
    )
)
_PAIR_CLOSE = Direct(
    update(_TASKS)
    .with_hint(_BY_CUSTOMER, dialect_name="sqlite")
    .where(*_PAIR, _WAITING)
    .values(
        **_CLOSED,
        reason=bindparam("why"),
        completed_at=bindparam("now"),
        updated_at=bindparam("now"),
    )
)


async def _close_where(session: AsyncSession, where: list, reason: str, now: datetime) -> int:
    where = [*where, _WAITING]
    enrollments = set(await session.scalars(select(SopTask.enrollment_id).where(*where)))
    return await _close(session, where, enrollments, reason, now)


async def _close(
    session: AsyncSession, where: list, enrollments: set[int], reason: str, now: datetime
) -> int:
    """Close the tasks `where` finds (waiting ones), of `enrollments`."""
    if not enrollments:
        return 0
    closed = (
        await session.execute(
            update(SopTask)
            .where(*where)
            .values(**_closed(reason, now))
            .execution_options(synchronize_session=False)
        )
    ).rowcount
    await complete_enrollments(session, enrollments, now)
    return closed


async def end_pair(
    session: AsyncSession,
    *,
    external_userid: str,
    guide_userid: str,
    reason: str,
    now: datetime,
    stop_runs: bool,
) -> int:
    """The relation ended: with `stop_runs` (WeCom said so) the pair's active enrollments stop
    first (enrollment.stop_enrollments), then the pair's tasks the guide could act on close with
    the reason. The tasks closed."""
    pair = {"ext": external_userid, "guide": guide_userid}
    found = (await _PAIR_LOOK.execute(session, pair)).all()
    stopped: set[int] = set()
    if stop_runs:
        runs = [(row.id, None) for row in found if row.run]
        stopped = set(
            await stop_enrollments(
                session,
                external_userid=external_userid,
                guide_userid=guide_userid,
                reason=reason,
                now=now,
                force=True,
                found=runs,
            )
        )
    # Still waiting after the stop: a stopped run's unsent tasks were skipped with it.
    enrollments = {
        row.id
        for row in found
        if not row.run and not (row.id in stopped and row.status in TaskStatus.UNSENT)
    }
    if not enrollments:
        return 0
    closing = pair | {"why": _why(reason), "now": now}
    closed = (await _PAIR_CLOSE.execute(session, closing)).rowcount
    await complete_enrollments(session, enrollments, now)
    if closed:
        log.info("%d task(s) of %s/%s closed: %s", closed, guide_userid, external_userid, reason)
    return closed


async def close_guide_tasks(session: AsyncSession, guide_userid: str, now: datetime) -> int:
    """The guide left: their running enrollments stop and every task they had closes."""
    await session.execute(
        update(SopEnrollment)
        .where(
            SopEnrollment.guide_userid == guide_userid,
            SopEnrollment.status == constant(EnrollmentStatus.ACTIVE),
        )
        .values(
            status=EnrollmentStatus.STOPPED, stop_reason=GUIDE_LEFT, ended_at=now, updated_at=now
        )
        .execution_options(synchronize_session=False)
    )
    closed = await _close_where(session, [SopTask.guide_userid == guide_userid], GUIDE_LEFT, now)
    if closed:
        log.info("%d task(s) of %s closed: the guide left", closed, guide_userid)
    return closed


async def hand_over_tasks(
    session: AsyncSession, *, external_userid: str, from_guide: str, to_guide: str, now: datetime
) -> tuple[int, int]:
    """After the enrollments moved: the handover's reminders for this customer follow them
    (unless their run stopped); the rest the handover still held closes. (moved, closed)"""
    pair = [SopTask.external_userid == external_userid, SopTask.guide_userid == from_guide]
    live_run = select(SopEnrollment.id).where(
        SopEnrollment.id == SopTask.enrollment_id,
        SopEnrollment.status != EnrollmentStatus.STOPPED,
    )
    reminders = [
        *pair,
        SopTask.action == Action.REMIND,
        SopTask.status.in_(TaskStatus.ACTIONABLE),
        live_run.exists(),
    ]
    moved = (
        await session.execute(
            update(SopTask)
            .where(*reminders)
            .values(guide_userid=to_guide, updated_at=now)
            .execution_options(synchronize_session=False)
        )
    ).rowcount
    closed = await _close_where(session, pair, "guide.changed", now)
    return moved, closed


async def wake_snoozed(session: AsyncSession, now: datetime) -> int:
    """Snoozed tasks whose time came: due again, or (a guide task WeCom holds) sent again."""
    held_by_wecom = and_(SopTask.action == Action.GUIDE_TASK, SopTask.sent_at.is_not(None))
    return (
        await session.execute(
            update(SopTask)
            .where(SopTask.status == TaskStatus.SNOOZED, SopTask.due_at <= now)
            .values(
                status=case((held_by_wecom, TaskStatus.SENT), else_=TaskStatus.PENDING),
                updated_at=now,
            )
            .execution_options(synchronize_session=False)
        )
    ).rowcount
