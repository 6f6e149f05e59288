"""What the faces and the bot read of the SOP engine's rows.

For a guide: their open tasks and a customer's enrollments (the sidebar, the bot), and whether a
forward completed its task. For HQ: tasks per step and status, active enrollments per playbook
version, and how the playbooks' goals came out. For /metrics: the oldest due task. And
`link_reached_customer`, which the engine's goal crediting and the order attribution share.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    ColumnElement,
    String,
    and_,
    bindparam,
    case,
    exists,
    func,
    literal,
    or_,
    select,
)
from sqlalchemy.ext.asyncio import AsyncSession

from guidebot import i18n
from guidebot.contacts.models import Relation, RelationStatus
from guidebot.content.models import ContentForward
from guidebot.db.base import constant
from guidebot.db.parking import unparked
from guidebot.sop.group_models import GroupSendStatus, SopGroupSend
from guidebot.sop.models import (
    OPEN_GUIDE_TASKS_INDEX,
    Action,
    CompletedBy,
    EnrollmentStatus,
    SopEnrollment,
    SopTask,
    TaskStatus,
)
from guidebot.sop.queue import TASKS_TABLE, TICK_JOB
from guidebot.telemetry import Telemetry

# What a guide can act on in their list: close it (done, skip) or put it off; not a row in
# flight to WeCom (`sending`), not a settled one.
GUIDE_OPEN = TaskStatus.ACTIONABLE
OPENED = "content.opened"  # the goal event a customer's open of their guide's link is

# What a step is called where its playbook gave it no name: its action's name. Guides read
# names, never ids (the playbook's `name`, the step's `name`).
# The words are guidebot.i18n's display names (English in lower case: said mid-sentence).
ACTION_NAMES = {
    "zh": i18n.labels("action", i18n.ZH),
    "en": {code: word.lower() for code, word in i18n.labels("action", i18n.EN).items()},
}


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
    playbook_name: str = ""  # the playbook's display name (its id only if it had none)
    named_step: str | None = None  # the step's display name, if the playbook gave one

    def step_name(self, lang: str = "zh") -> str:
        return self.named_step or ACTION_NAMES[lang].get(self.action, self.action)

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "external_userid": self.external_userid,
            "playbook": self.playbook_id,
            "step": self.step_id,
            "playbook_name": self.playbook_name,
            "step_name": self.step_name(),
            "action": self.action,
            "status": self.status,
            "due_at": self.due_at.isoformat(),
            "content_key": self.content_key,
        }


def _view(task: SopTask, settings: dict[str, Any] | None) -> TaskView:
    settings = settings or {}
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
        playbook_name=settings.get("name") or task.playbook_id,
        named_step=(settings.get("step_names") or {}).get(task.step_id),
    )


def actionable_by_guide(guide: str | None) -> list[ColumnElement[bool]]:
    """The guide's tasks they can act on (any guide's, when None): guide-facing, not settled or
    in flight, and with a customer who is still theirs (an ended relation leaves nothing to do)."""
    mine = [SopTask.guide_userid == guide] if guide is not None else []
    return [
        *mine,
        # Written out in the SQL, in the order of ix_sop_tasks_guide_open's predicate: a
        # planner uses a partial index only where it can see the query implies its predicate.
        SopTask.action.in_(bindparam("guide_facing", Action.GUIDE_FACING, literal_execute=True)),
        SopTask.status.in_(bindparam("guide_open", GUIDE_OPEN, literal_execute=True)),
        exists().where(
            Relation.guide_userid == SopTask.guide_userid,
            Relation.external_userid == SopTask.external_userid,
            Relation.status == RelationStatus.ACTIVE,
        ),
    ]


async def open_tasks(
    session: AsyncSession,
    guide: str,
    *,
    customer: str | None = None,
    due_before: datetime | None = None,
    limit: int = 50,
) -> list[TaskView]:
    """The guide's tasks to act on (guide tasks and reminders), soonest first."""
    query = (
        select(SopTask, SopEnrollment.settings)
        .join(SopEnrollment, SopEnrollment.id == SopTask.enrollment_id)
        .where(*actionable_by_guide(guide))
    )
    if customer is not None:
        query = query.where(SopTask.external_userid == customer)
    if due_before is not None:
        query = query.where(SopTask.due_at < due_before)
    rows = await session.execute(query.order_by(SopTask.due_at, SopTask.id).limit(limit))
    return [_view(task, settings) for task, settings in rows.all()]


async def customer_tasks(
    session: AsyncSession, customer: str, *, guides: list[str] | None = None, limit: int = 100
) -> list[TaskView]:
    """Every task of a customer's, any status and any guide (or only `guides`'), latest due
    first: what HQ reads on a customer's page, settled tasks included."""
    query = (
        select(SopTask, SopEnrollment.settings)
        .join(SopEnrollment, SopEnrollment.id == SopTask.enrollment_id)
        .where(SopTask.external_userid == customer)
    )
    if guides is not None:
        query = query.where(SopTask.guide_userid.in_(guides))
    rows = await session.execute(
        query.order_by(SopTask.due_at.desc(), SopTask.id.desc()).limit(limit)
    )
    return [_view(task, settings) for task, settings in rows.all()]


async def get_task(session: AsyncSession, task_id: int) -> TaskView | None:
    task = await session.get(SopTask, task_id)
    if task is None:
        return None
    enrollment = await session.get(SopEnrollment, task.enrollment_id)
    return _view(task, enrollment.settings if enrollment is not None else None)


async def enrollments(session: AsyncSession, guide: str, customer: str) -> list[dict[str, Any]]:
    """The customer's active playbook runs with this guide."""
    rows = await session.scalars(
        select(SopEnrollment)
        .where(
            SopEnrollment.guide_userid == guide,
            SopEnrollment.external_userid == customer,
            SopEnrollment.status == constant(EnrollmentStatus.ACTIVE),
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


async def forward_completed_task(session: AsyncSession, task_id: int, guide: str) -> bool:
    """Whether the guide's forward left their task done (the engine heard the forward)."""
    task = await session.get(SopTask, task_id, populate_existing=True)
    return task is not None and task.guide_userid == guide and task.status == TaskStatus.DONE


def link_reached_customer(nonce: Any, task_id: Any) -> ColumnElement[bool]:
    """True when the tracked link with this nonce and task (values, or content_opens columns)
    reached its customer: the guide's forward of it was logged, or the SOP message that carried
    it was sent to the customer (a welcome, a mass-send task). A link only prepared in the
    sidebar, or a reminder's link in the guide's own hands, was not: opening it is nobody's
    touch on the customer."""
    logged = exists().where(ContentForward.ref == literal("l:", String) + nonce)
    by_task = exists().where(
        SopTask.id == task_id,
        SopTask.action.in_(Action.TO_CUSTOMER),
        SopTask.status.in_((TaskStatus.SENT, TaskStatus.DONE)),
    )
    return or_(logged, by_task)


async def task_backlog(telemetry: Telemetry, session: AsyncSession, now: datetime) -> None:
    """The /metrics gauge of the oldest due SOP task (ix_sop_tasks_status_due; parked tasks
    are counted with the parked rows instead)."""
    oldest_task = await session.scalar(
        select(func.min(SopTask.due_at)).where(
            SopTask.status == TaskStatus.PENDING,
            unparked(TICK_JOB, TASKS_TABLE, SopTask.id),
        )
    )
    telemetry.sop_task_lag.set(telemetry.age(oldest_task, now))


# ---- HQ's numbers ----------------------------------------------------------------------------

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
    """Per playbook, per step: how many tasks are in each COUNTED status (a group step's rows,
    one per owner or guide and occurrence, in the same statuses)."""
    counts: dict[str, dict[str, dict[str, int]]] = defaultdict(dict)
    rows = [
        *await session.execute(
            select(SopTask.playbook_id, SopTask.step_id, SopTask.status, func.count()).group_by(
                SopTask.playbook_id, SopTask.step_id, SopTask.status
            )
        ),
        *await session.execute(
            select(
                SopGroupSend.playbook_id, SopGroupSend.step_id, SopGroupSend.status, func.count()
            ).group_by(SopGroupSend.playbook_id, SopGroupSend.step_id, SopGroupSend.status)
        ),
    ]
    for playbook_id, step_id, status, n in rows:
        per_step = counts[playbook_id].setdefault(step_id, no_counts())
        if status == GroupSendStatus.CANCELLED:  # a group step's row HQ's stop cancelled
            key = TaskStatus.SKIPPED
        else:
            key = status if status in COUNTED else TaskStatus.PENDING  # claimed/sending
        per_step[key] += n
    return counts


async def stopped_counts(session: AsyncSession) -> dict[str, dict[str, dict[str, int]]]:
    """Per playbook, per step: the skipped tasks no person skipped (a stop condition, the
    engine), by reason: the stop event ("order.paid") when the reason names one, else the
    reason; and the group steps' rows HQ's stop cancelled ("playbook.retired", ...).
    step_counts counts them among `skipped`; pages show them apart as stopped."""
    rows = await session.execute(
        select(SopTask.playbook_id, SopTask.step_id, SopTask.reason, func.count())
        .where(
            SopTask.status == TaskStatus.SKIPPED,
            or_(SopTask.completed_by.is_(None), SopTask.completed_by.not_in(CompletedBy.BY_PERSON)),
        )
        .group_by(SopTask.playbook_id, SopTask.step_id, SopTask.reason)
    )
    cancelled = await session.execute(
        select(SopGroupSend.playbook_id, SopGroupSend.step_id, SopGroupSend.reason, func.count())
        .where(SopGroupSend.status == GroupSendStatus.CANCELLED)
        .group_by(SopGroupSend.playbook_id, SopGroupSend.step_id, SopGroupSend.reason)
    )
    counts: dict[str, dict[str, dict[str, int]]] = defaultdict(dict)
    for playbook_id, step_id, reason, n in [*rows.all(), *cancelled.all()]:
        key = stop_reason_key(reason)
        per_step = counts[playbook_id].setdefault(step_id, {})
        per_step[key] = per_step.get(key, 0) + n
    return counts


def stop_reason_key(reason: str | None) -> str:
    """ "stopped: order.paid (checked at send time)" → "order.paid"; another reason as it is."""
    text = (reason or "").strip()
    if text.startswith("stopped:"):
        words = text.removeprefix("stopped:").split()
        return words[0] if words else "ended"
    if text.startswith("no WelcomeCode"):  # guidebot.sop.actions.welcome.NO_WELCOME_CODE
        return "welcome.no_code"
    return text or "ended"


# A guide task not done within this long of its due time is overdue (the on-time KPI's grace,
# guidebot.sop.actions.base.ON_TIME_GRACE).
OVERDUE_AFTER = timedelta(hours=24)


async def guide_task_counts(
    session: AsyncSession, now: datetime, stores: Collection[int] | None = None
) -> dict[str, dict[str, int]]:
    """Per guide: the tasks they can act on now (`open`: due, not settled) and of those the
    ones more than OVERDUE_AFTER past due (`overdue`); only enrollments of `stores` if given."""
    overdue = case((SopTask.due_at < now - OVERDUE_AFTER, 1))
    query = (
        select(SopTask.guide_userid, func.count(), func.count(overdue))
        .where(*actionable_by_guide(None), SopTask.due_at <= now)
        .group_by(SopTask.guide_userid)
        # The open tasks, not every task ever sent (PostgreSQL's planner finds it itself).
        .with_hint(SopTask, f"INDEXED BY {OPEN_GUIDE_TASKS_INDEX}", "sqlite")
    )
    if stores is not None:
        query = query.join(SopEnrollment, SopEnrollment.id == SopTask.enrollment_id).where(
            SopEnrollment.store_id.in_(sorted(stores))
        )
    rows = await session.execute(query)
    return {guide: {"open": n, "overdue": late} for guide, n, late in rows.all()}


async def active_enrollments(session: AsyncSession) -> dict[str, dict[str, int]]:
    """Per playbook, per version (as text): its active enrollments."""
    rows = await session.execute(
        select(SopEnrollment.playbook_id, SopEnrollment.playbook_version, func.count())
        .where(SopEnrollment.status == constant(EnrollmentStatus.ACTIVE))
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
