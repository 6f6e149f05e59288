"""Enrollment: enroll a pair in a playbook with all its task rows; stop, move and complete
enrollments; credit goals.

Everything per customer is a row (architecture rule 5). Enrollment happens inside the transaction of
the event that caused it (the add, the tag) or of a date/cron job's batch: the enrollment and
ALL its task rows with their UTC due times, planned in the customer's store's time zone (its
own, else the playbook's), commit together.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from itertools import product
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import and_, bindparam, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from guidebot.contacts.reading_hours import reading_of
from guidebot.db.base import constant, only_filters
from guidebot.db.direct import Direct
from guidebot.db.engine import upsert_insert
from guidebot.events import CustomerReplied, publish
from guidebot.sop.actions import action_for
from guidebot.sop.audience import Subject
from guidebot.sop.completion import complete_enrollments
from guidebot.sop.dates import same_year
from guidebot.sop.holdout import HOLDOUT, assign, count_goal
from guidebot.sop.models import CompletedBy, EnrollmentStatus, SopEnrollment, SopTask, TaskStatus
from guidebot.sop.planner import plan
from guidebot.sop.playbook import Playbook
from guidebot.sop.timing import window_to_json, zone_named

log = logging.getLogger(__name__)

# Reasons that end a pair's enrollments whatever the playbook lists: nothing can reach the
# customer through this guide any more (and send time re-checks the relation anyway).
ALWAYS_STOP = frozenset({"contact.lost", "contact.removed"})
REPLIED = "customer.replied"  # a stop and goal event with no WeCom callback behind it
CUSTOMER_SCOPE = "*"


# Built once: enrolling is on every add's path and in bulk date/cron runs.
_TASK_INSERT = SopTask.__table__.insert()
_ENROLLMENT_INSERTS: dict[str, Any] = {}


def enrollment_insert(dialect: str):
    statement = _ENROLLMENT_INSERTS.get(dialect)
    if statement is None:
        table = SopEnrollment.__table__
        statement = upsert_insert(dialect)(table).on_conflict_do_nothing().returning(table.c.id)
        _ENROLLMENT_INSERTS[dialect] = statement
    return statement


@dataclass(frozen=True, slots=True)
class Enrolled:
    enrollment_id: int
    welcome_task_id: int | None  # a welcome to send on the fast path, right after commit
    tasks: int
    # The welcome's row as inserted, when it went in already claimed (enroll_batch's `claim`),
    # and the enrollment's settings its text reads.
    welcome_row: dict[str, Any] | None = None
    settings: dict[str, Any] | None = None


def reaches_anyone(action_name: str) -> bool:
    """Whether a step of this action sends to the customer or gives the guide a task (held-out
    customers get none of these); an unknown action counts as reaching someone."""
    action = action_for(action_name)
    return action is None or action.to_customer or action.guide_facing


def held_out_rows(group: str | None, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The task rows an enrollment in `group` keeps: a held-out one nothing that reaches the
    customer or gives the guide a task."""
    if group == HOLDOUT:
        return [r for r in rows if not reaches_anyone(r["action"])]
    return rows


def enrollment_settings(playbook: Playbook) -> dict[str, Any]:
    settings = {
        "name": playbook.name,
        "send_window": window_to_json(playbook.send_window),
        "max_messages_per_day": playbook.max_messages_per_day,
        "stop_when": sorted(playbook.stop_when),
        "digest": playbook.digest,
        # What guides read for its steps (guidebot.sop.queries.step_name), and what snoozing
        # keeps to: the names and the escalation threshold of the version it began with.
        "step_names": {s.id: s.name for s in playbook.steps if s.name},
        "escalate_after": int(playbook.escalate_after.total_seconds())
        if playbook.escalate_after
        else None,
    }
    best_time = [s.id for s in playbook.steps if s.best_time]
    if best_time:  # a capped best_time step is deferred to the same hour the next day
        settings["best_time"] = best_time
    return settings


async def reading_scores(
    session: AsyncSession, playbook: Playbook, subject: Subject
) -> tuple[float, ...] | None:
    """The customer's reading scores when a step of the playbook wants them (best_time);
    nothing is read otherwise (the add's path stays as short)."""
    if not any(step.best_time for step in playbook.steps):
        return None
    reading = await reading_of(session, subject.external_userid, subject.store_id)
    return reading.scores if reading is not None else None


def enrollment_values(
    playbook: Playbook,
    subject: Subject,
    scope: str,
    zone: ZoneInfo,
    cycle: str,
    at: datetime,
    now: datetime,
    group: str | None,
) -> dict[str, Any]:
    """The enrollment's row (`group`: its holdout group, guidebot.sop.holdout)."""
    return {
        "playbook_id": playbook.id,
        "playbook_version": playbook.version,
        "scope": scope,
        "guide_userid": subject.guide_userid,
        "external_userid": subject.external_userid,
        "store_id": subject.store_id,
        "timezone": zone.key,
        "trigger": playbook.trigger.event,
        "cycle": cycle,
        "status": EnrollmentStatus.ACTIVE,
        "stop_reason": None,
        "enrolled_at": at,
        "ended_at": None,
        "goal_event": playbook.goal.event if playbook.goal else None,
        "goal_deadline": at + playbook.goal.within if playbook.goal else None,
        "goal_met_at": None,
        "treatment_group": group,
        "settings": enrollment_settings(playbook),
        "created_at": now,
        "updated_at": now,
    }


async def enroll(
    session: AsyncSession,
    playbook: Playbook,
    subject: Subject,
    *,
    at: datetime,
    now: datetime,
    default_timezone: str,
    occurrence: str | None = None,
    welcome_code: str | None = None,
) -> Enrolled | None:
    """Enroll the pair in the playbook as of `at`, with every task row; None when the
    enrollment rules say no (or a racing enroller got there first).

    `occurrence` keys a date/cron run (e.g. "2026-03-13"); events leave it None.
    """
    scope = CUSTOMER_SCOPE if playbook.enroll.once_per_customer else subject.guide_userid
    cycle = await _next_cycle(session, playbook, subject, scope, at, occurrence)
    if cycle is None:
        return None
    zone_name = subject.store_zone or playbook.timezone or default_timezone
    zone = zone_named(zone_name, default_timezone)
    group = assign(playbook.id, subject.external_userid, playbook.holdout)
    values = enrollment_values(playbook, subject, scope, zone, cycle, at, now, group)
    enrollment_id = (
        await session.execute(enrollment_insert(session.bind.dialect.name), values)
    ).scalar()
    if enrollment_id is None:
        return None  # a racing enroller inserted this run (or another active one) first
    scores = await reading_scores(session, playbook, subject)
    rows = held_out_rows(
        group, task_rows(playbook, subject, enrollment_id, zone, at, now, welcome_code, scores)
    )
    if group is not None and playbook.goal is not None:
        await count_goal(session, playbook.id, group, at + playbook.goal.within, enrolled=1)
    welcome_id = await _insert_tasks(session, enrollment_id, rows, now)
    log.info(
        "enrolled %s/%s in %s v%d (cycle %s, %d tasks, zone %s%s)",
        subject.guide_userid,
        subject.external_userid,
        playbook.id,
        playbook.version,
        cycle,
        len(rows),
        zone.key,
        ", held out" if group == HOLDOUT else "",
    )
    return Enrolled(enrollment_id, welcome_id, len(rows))


async def _next_cycle(
    session: AsyncSession,
    playbook: Playbook,
    subject: Subject,
    scope: str,
    at: datetime,
    occurrence: str | None,
) -> str | None:
    """The cycle this enrollment would be, or None when the playbook's rules say no: one
    active at a time, one per occurrence, re-entry only after `reenter_after`."""
    previous = (
        await session.execute(
            select(SopEnrollment.status, SopEnrollment.enrolled_at, SopEnrollment.cycle)
            .where(
                SopEnrollment.playbook_id == playbook.id,
                SopEnrollment.scope == scope,
                SopEnrollment.external_userid == subject.external_userid,
            )
            .order_by(SopEnrollment.enrolled_at.desc(), SopEnrollment.id.desc())
        )
    ).all()
    return cycle_after(previous, playbook, at, occurrence)


def cycle_after(
    previous: Sequence[Any], playbook: Playbook, at: datetime, occurrence: str | None
) -> str | None:
    """_next_cycle's rules over the (status, enrolled_at, cycle) of the pair's earlier
    enrollments in the playbook and scope, newest first."""
    if any(status == EnrollmentStatus.ACTIVE for status, _, _ in previous):
        return None
    if occurrence is not None and any(
        cycle == occurrence or same_year(cycle, occurrence) for _, _, cycle in previous
    ):
        return None  # this occurrence ran; a date playbook runs once a year
    if previous:
        reenter = playbook.enroll.reenter_after
        if reenter is None or at < previous[0][1] + reenter:
            return None
    return occurrence if occurrence is not None else str(len(previous))


def task_rows(
    playbook: Playbook,
    subject: Subject,
    enrollment_id: int,
    zone: ZoneInfo,
    at: datetime,
    now: datetime,
    welcome_code: str | None,
    scores: Sequence[float] | None = None,
) -> list[dict[str, Any]]:
    """Every step's task row as planned, each as its action plans it (a welcome takes the
    add's code; a best_time step the customer's hour, from `scores`)."""
    rows: list[dict[str, Any]] = []
    for planned in plan(playbook, at, zone, scores):
        step = playbook.step(planned.step_id)
        row = {
            "enrollment_id": enrollment_id,
            "step_id": step.id,
            "playbook_id": playbook.id,
            "playbook_version": playbook.version,
            "guide_userid": subject.guide_userid,
            "external_userid": subject.external_userid,
            "action": step.action,
            "template": step.template,
            "tag": step.tag,
            "content": step.content,
            "due_at": planned.due_at,
            "expires_at": planned.expires_at,
            "status": TaskStatus.PENDING,
            "attempts": 0,
            # Every row the same columns: a welcome may go in claimed (guidebot.sop.enroll_batch).
            "lease_owner": None,
            "lease_until": None,
            "claimed_by": None,
            "welcome_code": None,
            "reason": None,
            "completed_at": None,
            "created_at": now,
            "updated_at": now,
        }
        action = action_for(step.action)
        # An open guide task this overdue is reported to the store's manager (escalation).
        row["escalate_at"] = (
            planned.due_at + playbook.escalate_after
            if playbook.escalate_after and action is not None and action.guide_facing
            else None
        )
        if action is not None:
            row = action.plan(row, welcome_code=welcome_code, at=at, now=now)
        rows.append(row)
    return rows


async def _insert_tasks(
    session: AsyncSession, enrollment_id: int, rows: list[dict[str, Any]], now: datetime
) -> int | None:
    """Insert the rows; the id of the welcome to send on the fast path, if there is one."""
    if not rows:
        await complete_enrollments(session, [enrollment_id], now)
        return None
    await session.execute(_TASK_INSERT, rows)
    if not any(r["welcome_code"] for r in rows):
        return None
    return await session.scalar(
        select(SopTask.id).where(
            SopTask.enrollment_id == enrollment_id,
            SopTask.welcome_code.is_not(None),
            SopTask.status == TaskStatus.PENDING,
        )
    )


# ---- stopping, moving, completing ------------------------------------------------------------


def _active_runs(with_guide: bool, with_ids: bool, with_begun_by: bool) -> Direct:
    """The customer's active enrollments (id, settings), narrowed as stop_enrollments asks."""
    enrollments = SopEnrollment.__table__
    query = select(enrollments.c.id, enrollments.c.settings).where(
        enrollments.c.external_userid == bindparam("ext"),
        enrollments.c.status == constant(EnrollmentStatus.ACTIVE),
    )
    if with_guide:
        query = query.where(enrollments.c.guide_userid == bindparam("guide"))
    if with_ids:
        query = query.where(enrollments.c.id.in_(bindparam("ids", expanding=True)))
    if with_begun_by:
        query = query.where(enrollments.c.enrolled_at <= bindparam("begun_by"))
    return Direct(query)


# Built once for each way of asking: every end of a pair asks (on the driver: db.direct).
_ACTIVE_RUNS = {shape: _active_runs(*shape) for shape in product((False, True), repeat=3)}
# ...and what it then writes: the runs stopped, their open tasks skipped (plain UPDATEs: no
# object in the session is brought up to date by them, as the ORM's synchronize_session=False).
_STOP_RUNS = Direct(
    update(SopEnrollment.__table__)
    .where(
        SopEnrollment.__table__.c.id.in_(bindparam("ids", expanding=True)),
        # By id: the status only filters (PostgreSQL without statistics took the index of
        # every active run, which the equality implies, and read them all).
        only_filters(SopEnrollment.__table__.c.status, constant(EnrollmentStatus.ACTIVE)),
    )
    .values(
        status=EnrollmentStatus.STOPPED,
        stop_reason=bindparam("reason"),
        ended_at=bindparam("now"),
        updated_at=bindparam("now"),
    )
)
_SKIP_OPEN_TASKS = Direct(
    update(SopTask.__table__)
    .where(
        SopTask.__table__.c.enrollment_id.in_(bindparam("ids", expanding=True)),
        SopTask.__table__.c.status.in_(TaskStatus.UNSENT),
    )
    .values(
        status=TaskStatus.SKIPPED,
        reason=bindparam("why"),
        welcome_code=None,
        lease_owner=None,
        lease_until=None,
        completed_at=bindparam("now"),
        completed_by=CompletedBy.ENGINE,
        updated_at=bindparam("now"),
    )
)


async def stop_enrollments(
    session: AsyncSession,
    *,
    external_userid: str,
    guide_userid: str | None = None,
    reason: str,
    now: datetime,
    force: bool = False,
    enrollment_ids: Sequence[int] | None = None,
    begun_by: datetime | None = None,
    found: Sequence[tuple[int, Any]] | None = None,
) -> list[int]:
    """Stop the active enrollments of this customer (with this guide only, when given) whose
    playbook stops on `reason` ("order.paid", "tag.added:VIP", ...); contact.lost and
    contact.removed stop every one, as does `force`. Pending tasks become `skipped` with the
    reason. The ids of the enrollments stopped.

    Only the pair concerned: a customer's other guides keep their enrollments unless
    `guide_userid` is None (an event about the customer, such as an order). With `begun_by`,
    only enrollments that had begun by then (an event reported late). `found`: the active
    enrollments (id, settings) as the caller read them, with this read's arguments.
    """
    asked: dict[str, Any] = {"ext": external_userid}
    if guide_userid is not None:
        asked["guide"] = guide_userid
    if enrollment_ids is not None:
        asked["ids"] = list(enrollment_ids)
    if begun_by is not None:
        asked["begun_by"] = begun_by
    shape = ("guide" in asked, "ids" in asked, "begun_by" in asked)
    if found is None:
        found = await _ACTIVE_RUNS[shape].execute(session, asked)
    ids = [
        eid
        for eid, settings in found
        if force or reason in ALWAYS_STOP or reason in (settings or {}).get("stop_when", ())
    ]
    if not ids:
        return []
    await _STOP_RUNS.execute(session, {"ids": ids, "reason": reason, "now": now})
    await _SKIP_OPEN_TASKS.execute(session, {"ids": ids, "why": f"stopped: {reason}", "now": now})
    log.info(
        "stopped %d enrollment(s) of %s%s: %s",
        len(ids),
        external_userid,
        f" with {guide_userid}" if guide_userid else "",
        reason,
    )
    return ids


async def transfer_enrollments(
    session: AsyncSession,
    *,
    external_userid: str,
    from_guide: str,
    to_guide: str,
    now: datetime,
) -> dict[str, list[int]]:
    """A transfer completed: the handover's active enrollments and their open tasks move to the
    takeover guide. A playbook that stops on guide.changed stops instead, and so does one the
    takeover already runs (or ran) for this customer. {"moved": [...], "stopped": [...]}"""
    moved, stop_changed, stop_taken = await _sort_handover(
        session, external_userid, from_guide, to_guide
    )
    if moved:
        await session.execute(
            update(SopEnrollment)
            .where(SopEnrollment.id.in_(moved))
            .values(guide_userid=to_guide, updated_at=now)
            .execution_options(synchronize_session="fetch")
        )
        await session.execute(
            update(SopTask)
            .where(
                SopTask.enrollment_id.in_(moved),
                # What was sent already is sop.task_closing.hand_over_tasks's to sort out.
                or_(
                    SopTask.status.in_(TaskStatus.OPEN[:2]),
                    and_(SopTask.status == TaskStatus.SNOOZED, SopTask.sent_at.is_(None)),
                ),
            )
            .values(guide_userid=to_guide, updated_at=now)
            .execution_options(synchronize_session=False)
        )
    stopped = []
    if stop_changed:
        stopped += await stop_enrollments(
            session,
            external_userid=external_userid,
            reason="guide.changed",
            now=now,
            force=True,
            enrollment_ids=stop_changed,
        )
    if stop_taken:
        stopped += await stop_enrollments(
            session,
            external_userid=external_userid,
            reason=f"guide.changed: {to_guide} already runs this playbook for the customer",
            now=now,
            force=True,
            enrollment_ids=stop_taken,
        )
    if moved or stopped:
        log.info(
            "transfer of %s from %s to %s: moved %s, stopped %s",
            external_userid,
            from_guide,
            to_guide,
            moved,
            stopped,
        )
    return {"moved": moved, "stopped": stopped}


async def _sort_handover(
    session: AsyncSession, external_userid: str, from_guide: str, to_guide: str
) -> tuple[list[int], list[int], list[int]]:
    """The handover's active enrollments: (to move, to stop on guide.changed, to stop because
    the takeover already runs that playbook for the customer)."""
    enrollments = list(
        await session.scalars(
            select(SopEnrollment).where(
                SopEnrollment.external_userid == external_userid,
                SopEnrollment.guide_userid == from_guide,
                SopEnrollment.status == constant(EnrollmentStatus.ACTIVE),
            )
        )
    )
    moved: list[int] = []
    stop_changed: list[int] = []
    stop_taken: list[int] = []
    for enrollment in enrollments:
        if "guide.changed" in (enrollment.settings or {}).get("stop_when", ()):
            stop_changed.append(enrollment.id)
            continue
        clash = await session.scalar(
            select(func.count())
            .select_from(SopEnrollment)
            .where(
                SopEnrollment.playbook_id == enrollment.playbook_id,
                SopEnrollment.external_userid == external_userid,
                SopEnrollment.guide_userid == to_guide,
                SopEnrollment.status == constant(EnrollmentStatus.ACTIVE),
            )
        )
        if clash:
            stop_taken.append(enrollment.id)
            continue
        moved.append(enrollment.id)
    return moved, stop_changed, stop_taken


async def record_goal(
    session: AsyncSession,
    *,
    external_userid: str,
    event: str,
    at: datetime,
    guide_userid: str | None = None,
) -> int:
    """A goal event happened (order.paid, ...): enrollments waiting for it within their
    attribution window are credited. The number credited."""
    query = (
        update(SopEnrollment)
        .where(
            SopEnrollment.external_userid == external_userid,
            SopEnrollment.goal_event == event,
            SopEnrollment.goal_met_at.is_(None),
            SopEnrollment.enrolled_at <= at,
            SopEnrollment.goal_deadline >= at,
        )
        .values(goal_met_at=at)
        .returning(
            SopEnrollment.playbook_id, SopEnrollment.treatment_group, SopEnrollment.goal_deadline
        )
        .execution_options(synchronize_session=False)
    )
    if guide_userid is not None:
        query = query.where(SopEnrollment.guide_userid == guide_userid)
    credited = (await session.execute(query)).all()
    for playbook_id, group, deadline in credited:
        if group is not None:  # the holdout lift's rollup
            await count_goal(session, playbook_id, group, deadline, met=1)
    return len(credited)


async def record_reply(
    session: AsyncSession,
    *,
    external_userid: str,
    guide_userid: str,
    at: datetime,
    now: datetime,
    source: str,
) -> tuple[list[int], int]:
    """The customer wrote back to the guide. WeCom pushes no such event to an app: the guide
    marks it in the sidebar, or a chat-archive pipeline posts it to the API (`source`).

    The pair's enrollments that stop on `customer.replied` stop; those with it as their goal
    are credited. A reply reported late touches only enrollments that had begun by `at`. The
    reply is announced (CustomerReplied) for whoever else hears it.
    (the enrollments stopped, the goals credited)
    """
    stopped = await stop_enrollments(
        session,
        external_userid=external_userid,
        guide_userid=guide_userid,
        reason=REPLIED,
        now=at,
        begun_by=at,
    )
    credited = await record_goal(
        session, external_userid=external_userid, event=REPLIED, at=at, guide_userid=guide_userid
    )
    replied = CustomerReplied(
        guide_userid=guide_userid, external_userid=external_userid, at=at, source=source, now=now
    )
    await publish(session, replied)
    return stopped, credited
