"""The SOP engine: enroll, plan task rows, claim due rows, stop, move and complete.

Everything per customer is a row (DESIGN rule 5); this module is the only writer of
`sop_enrollments` and `sop_tasks` besides `actions` (which records what WeCom answered).

Enrollment happens inside the transaction of the event that caused it (the add, the tag) or of
a date/cron job's batch: the enrollment and ALL its task rows with their UTC due times, planned
in the customer's store's time zone (its own, else the playbook's), commit together.

A task's life::

    pending ──claim──▶ claimed ──prepare──▶ sending ──WeCom──▶ sent / done / failed / unknown
       │                  │ (lease lapsed: back to pending)     (a crash here: reconciled,
       │                  ├──▶ skipped   (stop condition)        never resent blindly)
       │                  ├──▶ expired   (overdue past expire_after: never a burst)
       │                  └──▶ pending   (deferred by the per-customer daily cap)
       └──▶ skipped (a stop event, or by hand)

`sending` is committed before any WeCom call (rule 6), and no transaction is open during one:
SQLite has a single writer (BEGIN IMMEDIATE), so a slow WeCom would stall every writer.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import socket
import uuid
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta
from functools import partial
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import and_, exists, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from guidebot.clock import Clock
from guidebot.config import Settings
from guidebot.contacts.models import Customer, Department, Guide, Relation, RelationStatus
from guidebot.db.engine import upsert_insert
from guidebot.db.parking import describe_error, isolating, park, unparked
from guidebot.resources import project_dir
from guidebot.sop.models import (
    Action,
    CompletedBy,
    EnrollmentStatus,
    SopEnrollment,
    SopTask,
    TaskStatus,
)
from guidebot.sop.planner import plan, snap_into_window
from guidebot.sop.playbook import Audience, Playbook, SendWindow
from guidebot.wecom.client import WeComClient

log = logging.getLogger(__name__)

Sessions = async_sessionmaker[AsyncSession]

# A tick holds claimed rows this long before another claimer may take them back (the
# default; GUIDEBOT_CLAIM_LEASE_SECONDS sets it, see SopRuntime.claim_lease).
CLAIM_LEASE = timedelta(minutes=2)
# A row in `sending` whose lease lapsed was left by a crash: it is reconciled, not resent.
SEND_LEASE = timedelta(minutes=5)
# Rows the task runner cannot decide are parked under this job (guidebot.db.parking) and not
# claimed again until `guidebot jobs retry` hands them back.
TICK_JOB = "sop-tick"
TASKS_TABLE = SopTask.__tablename__
# Reasons that end a pair's enrollments whatever the playbook lists: nothing can reach the
# customer through this guide any more (and send time re-checks the relation anyway).
ALWAYS_STOP = frozenset({"contact.lost", "contact.removed"})
REPLIED = "customer.replied"  # a stop and goal event with no WeCom callback behind it
# Counted toward the customer's daily cap: what may have reached them.
REACHED = (TaskStatus.SENDING, TaskStatus.SENT, TaskStatus.DONE, TaskStatus.UNKNOWN)
CUSTOMER_SCOPE = "*"
_BIRTHDAY = re.compile(r"生日\s*[:：]\s*(\d{1,2})\s*[-/月.]\s*(\d{1,2})")


class SopError(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class TaskNotFound(SopError):
    pass


class TaskConflict(SopError):
    """The task is not in a state that allows this change (e.g. already done)."""


# ---- the runtime: what the engine needs, wired once per app ---------------------------------


def default_owner() -> str:
    return f"{socket.gethostname()[:40]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def templates_dir_for(sop_dir: str | Path) -> Path:
    """Where the sop directory's message templates are, as `guidebot sop check` finds them
    (templates/messages beside it, else in the current directory), falling back to the
    templates shipped at the package's repo root."""
    from guidebot.sop.loader import templates_dir_for as loader_templates_dir

    found = loader_templates_dir(Path(sop_dir).resolve())
    if found.is_dir():
        return found.resolve()
    return project_dir("templates") / "messages"


_REGISTRIES: dict[tuple[str, str], Any] = {}
# (claimer, row) claimed by a run in this process that then failed (the database went away
# between two of its transactions). Such a run is over, so the next tick of any runtime here
# gives back those rows still merely claimed, rather than letting them wait out the lease (a
# welcome's code lives 20 s). Process-wide because each welcome runs with a runtime of its own.
_FAILED_RUNS: set[tuple[str, int]] = set()
_ENVIRONMENTS: dict[Path, Any] = {}


def _message_environment(templates_dir: Path):
    """One message environment per templates directory, so each welcome (a runtime of its
    own) does not compile its template again; it still sees edits (auto_reload)."""
    from guidebot.sop.templates import message_environment

    env = _ENVIRONMENTS.get(templates_dir)
    if env is None:
        env = _ENVIRONMENTS[templates_dir] = message_environment(templates_dir)
    return env


def registry_for(settings: Settings):
    """The process's PlaybookRegistry for this sop directory (loaded on first use).

    Handlers only receive `settings`; the app and its handlers share this one registry, so a
    reload through the API is what the next event sees.
    """
    from guidebot.sop.registry import PlaybookRegistry

    sop_dir = Path(settings.sop_dir).resolve()
    templates = templates_dir_for(sop_dir)
    key = (str(sop_dir), str(templates))
    registry = _REGISTRIES.get(key)
    if registry is None:
        registry = PlaybookRegistry(sop_dir, templates)
        registry.reload()
        _REGISTRIES[key] = registry
    return registry


@dataclass
class SopRuntime:
    """The engine's dependencies. One per app (or per benchmark / test claimer)."""

    sessions: Sessions
    wecom: WeComClient
    clock: Clock
    settings: Settings
    registry: Any = None  # PlaybookRegistry; found from settings when not given
    owner: str = field(default_factory=default_owner)
    batch_size: int = 500
    max_batches: int = 50  # per tick: a backlog drains over several ticks, never all at once
    concurrency: int = 8  # WeCom calls in flight per tick
    sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep
    _env: Any = None
    _tag_ids: dict[str, str] | None = None

    def __post_init__(self) -> None:
        if self.registry is None:
            self.registry = registry_for(self.settings)

    @property
    def env(self):
        if self._env is None:
            self._env = _message_environment(self.templates_dir)
        return self._env

    @property
    def templates_dir(self) -> Path:
        found = getattr(self.registry, "templates_dir", None)
        return Path(found) if found is not None else templates_dir_for(self.settings.sop_dir)

    @property
    def claim_lease(self) -> timedelta:
        """How long a claim holds before another claimer may take the row back."""
        return timedelta(seconds=self.settings.claim_lease_seconds)

    @property
    def is_postgres(self) -> bool:
        return self.sessions.kw["bind"].dialect.name == "postgresql"

    def task_url(self, task_id: int) -> str:
        return f"{self.settings.public_url}/sidebar?task={task_id}"


# ---- time -----------------------------------------------------------------------------------


def zone_named(name: str | None, default: str) -> ZoneInfo:
    try:
        return ZoneInfo(name or default)
    except (ZoneInfoNotFoundError, ValueError):
        log.warning("unknown time zone %r; using %s", name, default)
        return ZoneInfo(default)


def human_duration(delta: timedelta) -> str:
    seconds = int(max(delta, timedelta(0)).total_seconds())
    days, rest = divmod(seconds, 86_400)
    hours, rest = divmod(rest, 3600)
    minutes = rest // 60
    if days:
        return f"{days}d{hours}h" if hours else f"{days}d"
    if hours:
        return f"{hours}h{minutes}m" if minutes else f"{hours}h"
    return f"{minutes}m" if minutes else f"{seconds}s"


def window_to_json(window: SendWindow | None) -> dict[str, Any] | None:
    if window is None:
        return None
    return {
        "start": window.start.strftime("%H:%M:%S"),
        "end": window.end.strftime("%H:%M:%S"),
        "days": sorted(window.days),
    }


def window_from_json(data: dict[str, Any] | None) -> SendWindow | None:
    if not data:
        return None
    return SendWindow(
        time.fromisoformat(data["start"]),
        time.fromisoformat(data["end"]),
        frozenset(int(d) for d in data.get("days", range(7))),
    )


def next_window_day(now: datetime, window: SendWindow | None, zone: ZoneInfo) -> datetime:
    """The first moment of the customer's next local day that lies in the send window."""
    local = now.astimezone(zone)
    tomorrow = datetime.combine(local.date() + timedelta(days=1), time(0), tzinfo=zone)
    if window is None:
        return tomorrow.astimezone(UTC)
    return snap_into_window(tomorrow, window, zone).astimezone(UTC)


def local_day_bounds(instant: datetime, zone: ZoneInfo) -> tuple[datetime, datetime]:
    day = instant.astimezone(zone).date()
    start = datetime.combine(day, time(0), tzinfo=zone)
    end = datetime.combine(day + timedelta(days=1), time(0), tzinfo=zone)
    return start.astimezone(UTC), end.astimezone(UTC)


# ---- who may enroll -------------------------------------------------------------------------


def tag_keys(tags: Iterable[dict[str, Any]] | None) -> set[str]:
    """A relation's tags as every string a playbook may name them by: id and name."""
    keys: set[str] = set()
    for tag in tags or ():
        for key in ("id", "name"):
            value = tag.get(key) if isinstance(tag, dict) else None
            if value:
                keys.add(str(value))
    return keys


@dataclass(frozen=True, slots=True)
class Subject:
    """The guide↔customer pair as the audience filter and the planner see it."""

    guide_userid: str
    external_userid: str
    relation_status: str
    store_id: int | None
    store_code: str | None
    store_zone: str | None
    channel: str | None
    state: str | None
    tags: frozenset[str]


def audience_matches(audience: Audience, subject: Subject) -> bool:
    checks = (
        (audience.channels, {subject.channel} if subject.channel else set()),
        (audience.states, {subject.state} if subject.state else set()),
        (audience.stores, {subject.store_code} if subject.store_code else set()),
        (audience.tags, set(subject.tags)),
    )
    return all(not wanted or bool(set(wanted) & have) for wanted, have in checks)


async def subject_for(session: AsyncSession, relation: Relation) -> Subject:
    store = await session.get(Department, relation.store_id) if relation.store_id else None
    return Subject(
        guide_userid=relation.guide_userid,
        external_userid=relation.external_userid,
        relation_status=relation.status,
        store_id=relation.store_id,
        store_code=store.code if store is not None else None,
        store_zone=store.timezone if store is not None else None,
        channel=relation.channel,
        state=relation.state,
        tags=frozenset(tag_keys(relation.tags)),
    )


def birthday_of(relation: Relation) -> tuple[int, int] | None:
    """(month, day) from `生日:MM-DD` in the guide's remark or description, if written there."""
    for text in (relation.description, relation.remark):
        match = _BIRTHDAY.search(text or "")
        if match:
            month, day = int(match.group(1)), int(match.group(2))
            if 1 <= month <= 12 and 1 <= day <= 31:
                return month, day
    return None


# ---- enrollment -----------------------------------------------------------------------------


# Built once: enrolling is on every add's path and in bulk date/cron runs.
_TASK_INSERT = SopTask.__table__.insert()
_ENROLLMENT_INSERTS: dict[str, Any] = {}


def _enrollment_insert(dialect: str):
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


def enrollment_settings(playbook: Playbook) -> dict[str, Any]:
    return {
        "name": playbook.name,
        "send_window": window_to_json(playbook.send_window),
        "max_messages_per_day": playbook.max_messages_per_day,
        "stop_when": sorted(playbook.stop_when),
        "digest": playbook.digest,
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
    if any(status == EnrollmentStatus.ACTIVE for status, _, _ in previous):
        return None
    if occurrence is not None and any(cycle == occurrence for _, _, cycle in previous):
        return None
    if previous:
        reenter = playbook.enroll.reenter_after
        if reenter is None or at < previous[0][1] + reenter:
            return None
    cycle = occurrence if occurrence is not None else str(len(previous))

    zone_name = subject.store_zone or playbook.timezone or default_timezone
    zone = zone_named(zone_name, default_timezone)
    enrollment_id = (
        await session.execute(
            _enrollment_insert(session.bind.dialect.name),
            {
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
                "settings": enrollment_settings(playbook),
                "created_at": now,
                "updated_at": now,
            },
        )
    ).scalar()
    if enrollment_id is None:
        return None  # a racing enroller inserted this run (or another active one) first

    rows: list[dict[str, Any]] = []
    for planned in plan(playbook, at, zone):
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
            "welcome_code": None,
            "reason": None,
            "completed_at": None,
            "created_at": now,
            "updated_at": now,
        }
        if step.action == Action.WELCOME:
            if not welcome_code:
                row |= {
                    "status": TaskStatus.SKIPPED,
                    "reason": "no WelcomeCode in the add event (a welcome is configured in the"
                    " admin console, the pair had chatted before, or it was not an add)",
                    "completed_at": now,
                }
            elif planned.expires_at is not None and now > planned.expires_at:
                row |= {
                    "status": TaskStatus.EXPIRED,
                    "reason": f"the add was handled {human_duration(now - at)} after it happened;"
                    " the welcome code had expired",
                    "completed_at": now,
                }
            else:
                row["welcome_code"] = welcome_code
        rows.append(row)
    welcome_id = None
    if rows:
        await session.execute(_TASK_INSERT, rows)
        if any(r["welcome_code"] for r in rows):
            welcome_id = await session.scalar(
                select(SopTask.id).where(
                    SopTask.enrollment_id == enrollment_id,
                    SopTask.action == Action.WELCOME,
                    SopTask.status == TaskStatus.PENDING,
                )
            )
    else:
        await complete_enrollments(session, [enrollment_id], now)
    log.info(
        "enrolled %s/%s in %s v%d (cycle %s, %d tasks, zone %s)",
        subject.guide_userid,
        subject.external_userid,
        playbook.id,
        playbook.version,
        cycle,
        len(rows),
        zone.key,
    )
    return Enrolled(enrollment_id, welcome_id, len(rows))


# ---- stopping, moving, completing ------------------------------------------------------------


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
) -> list[int]:
    """Stop the active enrollments of this customer (with this guide only, when given) whose
    playbook stops on `reason` ("order.paid", "tag.added:VIP", ...); contact.lost and
    contact.removed stop every one, as does `force`. Pending tasks become `skipped` with the
    reason. The ids of the enrollments stopped.

    Only the pair concerned: a customer's other guides keep their enrollments unless
    `guide_userid` is None (an event about the customer, such as an order). With `begun_by`,
    only enrollments that had begun by then (an event reported late).
    """
    query = select(SopEnrollment.id, SopEnrollment.settings).where(
        SopEnrollment.external_userid == external_userid,
        SopEnrollment.status == EnrollmentStatus.ACTIVE,
    )
    if guide_userid is not None:
        query = query.where(SopEnrollment.guide_userid == guide_userid)
    if enrollment_ids is not None:
        query = query.where(SopEnrollment.id.in_(list(enrollment_ids)))
    if begun_by is not None:
        query = query.where(SopEnrollment.enrolled_at <= begun_by)
    found = (await session.execute(query)).all()
    ids = [
        eid
        for eid, settings in found
        if force or reason in ALWAYS_STOP or reason in (settings or {}).get("stop_when", ())
    ]
    if not ids:
        return []
    await session.execute(
        update(SopEnrollment)
        .where(SopEnrollment.id.in_(ids), SopEnrollment.status == EnrollmentStatus.ACTIVE)
        .values(status=EnrollmentStatus.STOPPED, stop_reason=reason, ended_at=now, updated_at=now)
        .execution_options(synchronize_session=False)
    )
    await session.execute(
        update(SopTask)
        .where(
            SopTask.enrollment_id.in_(ids),
            SopTask.status.in_((TaskStatus.PENDING, TaskStatus.CLAIMED)),
        )
        .values(
            status=TaskStatus.SKIPPED,
            reason=f"stopped: {reason}",
            welcome_code=None,
            lease_owner=None,
            lease_until=None,
            completed_at=now,
            updated_at=now,
        )
        .execution_options(synchronize_session=False)
    )
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
    enrollments = list(
        await session.scalars(
            select(SopEnrollment).where(
                SopEnrollment.external_userid == external_userid,
                SopEnrollment.guide_userid == from_guide,
                SopEnrollment.status == EnrollmentStatus.ACTIVE,
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
                SopEnrollment.status == EnrollmentStatus.ACTIVE,
            )
        )
        if clash:
            stop_taken.append(enrollment.id)
            continue
        moved.append(enrollment.id)
    if moved:
        await session.execute(
            update(SopEnrollment)
            .where(SopEnrollment.id.in_(moved))
            .values(guide_userid=to_guide, updated_at=now)
            .execution_options(synchronize_session="fetch")
        )
        await session.execute(
            update(SopTask)
            .where(SopTask.enrollment_id.in_(moved), SopTask.status.in_(TaskStatus.OPEN[:2]))
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


async def complete_enrollments(
    session: AsyncSession, enrollment_ids: Iterable[int], now: datetime
) -> None:
    """Active enrollments with no open task left are completed."""
    ids = sorted(set(enrollment_ids))
    if not ids:
        return
    open_task = exists().where(
        and_(SopTask.enrollment_id == SopEnrollment.id, SopTask.status.in_(TaskStatus.OPEN))
    )
    for start in range(0, len(ids), 500):
        await session.execute(
            update(SopEnrollment)
            .where(
                SopEnrollment.id.in_(ids[start : start + 500]),
                SopEnrollment.status == EnrollmentStatus.ACTIVE,
                ~open_task,
            )
            .values(status=EnrollmentStatus.COMPLETED, ended_at=now, updated_at=now)
            .execution_options(synchronize_session=False)
        )


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
        .execution_options(synchronize_session=False)
    )
    if guide_userid is not None:
        query = query.where(SopEnrollment.guide_userid == guide_userid)
    return (await session.execute(query)).rowcount


async def record_reply(
    session: AsyncSession, *, external_userid: str, guide_userid: str, at: datetime
) -> tuple[list[int], int]:
    """The customer wrote back to the guide. WeCom pushes no such event to an app: the guide
    marks it in the sidebar, or a chat-archive pipeline posts it to the API.

    The pair's enrollments that stop on `customer.replied` stop; those with it as their goal
    are credited. A reply reported late touches only enrollments that had begun by `at`.
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
    return stopped, credited


# ---- the guide's side: done and skip ----------------------------------------------------------


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


# ---- claiming --------------------------------------------------------------------------------


async def reap_claims(runtime: SopRuntime, now: datetime, *, everything: bool = False) -> int:
    """Claimed rows whose lease lapsed (their claimer died before any WeCom call) are due.

    `everything`: every claim, whoever holds it (SQLite at start-up: the one process that could
    hold one is dead). Safe even for a claim in hand: `prepare` takes only rows still claimed
    by its claimer, so a row is prepared once at most."""
    query = update(SopTask).where(SopTask.status == TaskStatus.CLAIMED)
    if not everything:
        query = query.where(SopTask.lease_until < now)
    async with runtime.sessions() as session, session.begin():
        result = await session.execute(
            query.values(
                status=TaskStatus.PENDING, lease_owner=None, lease_until=None, updated_at=now
            ).execution_options(synchronize_session=False)
        )
        return result.rowcount


async def release_failed_runs(runtime: SopRuntime, now: datetime) -> int:
    """Give back the rows failed runs in this process left claimed (never a row already
    `sending`: what may have reached WeCom is reconciled, not retried)."""
    if not _FAILED_RUNS:
        return 0
    pairs = set(_FAILED_RUNS)
    released = 0
    async with runtime.sessions() as session, session.begin():
        for owner in {owner for owner, _ in pairs}:
            result = await session.execute(
                update(SopTask)
                .where(
                    SopTask.id.in_(sorted(i for o, i in pairs if o == owner)),
                    SopTask.status == TaskStatus.CLAIMED,
                    SopTask.lease_owner == owner,
                )
                .values(
                    status=TaskStatus.PENDING, lease_owner=None, lease_until=None, updated_at=now
                )
                .execution_options(synchronize_session=False)
            )
            released += result.rowcount
    _FAILED_RUNS.difference_update(pairs)
    return released


async def claim(
    runtime: SopRuntime,
    now: datetime,
    *,
    limit: int | None = None,
    ids: Sequence[int] | None = None,
) -> list[int]:
    """Claim due pending rows (or exactly `ids`, whatever their due time) under a lease.

    PostgreSQL: SELECT ... FOR UPDATE SKIP LOCKED, so several instances never take one row;
    SQLite: one writer at a time (BEGIN IMMEDIATE) and a conditional UPDATE.
    """
    query = select(SopTask.id).where(
        SopTask.status == TaskStatus.PENDING, unparked(TICK_JOB, TASKS_TABLE, SopTask.id)
    )
    if ids is not None:
        query = query.where(SopTask.id.in_(list(ids)))
    else:
        query = (
            query.where(SopTask.due_at <= now)
            .order_by(SopTask.due_at, SopTask.id)
            .limit(limit or runtime.batch_size)
        )
    async with runtime.sessions() as session, session.begin():
        if runtime.is_postgres:
            query = query.with_for_update(skip_locked=True)
        picked = list(await session.scalars(query))
        if not picked:
            return []
        result = await session.execute(
            update(SopTask)
            .where(SopTask.id.in_(picked), SopTask.status == TaskStatus.PENDING)
            .values(
                status=TaskStatus.CLAIMED,
                lease_owner=runtime.owner,
                lease_until=now + runtime.claim_lease,
                claimed_by=runtime.owner,
                attempts=SopTask.attempts + 1,
                updated_at=now,
            )
            .returning(SopTask.id)
            .execution_options(synchronize_session=False)
        )
        return sorted(row for (row,) in result)


# ---- preparing claimed rows: stop checks, expiry, the daily cap, rendering --------------------


@dataclass
class Prepared:
    """A row marked `sending` and committed, with what executing it needs."""

    id: int
    enrollment_id: int
    action: str
    guide_userid: str
    external_userid: str
    step_id: str
    playbook_id: str
    playbook_version: int
    playbook_name: str
    message: str | None
    tag: str | None
    welcome_code: str | None
    due_at: datetime
    expires_at: datetime | None
    attempts: int


# A row decided but for its template: (the row, (template name, its variables)).
Held = tuple[Prepared, tuple[str, dict[str, Any]]]


@dataclass
class TickReport:
    claimed: int = 0
    sending: int = 0
    sent: int = 0
    done: int = 0
    skipped: int = 0
    expired: int = 0
    deferred: int = 0
    failed: int = 0
    unknown: int = 0
    retried: int = 0
    reaped: int = 0
    wecom_calls: int = 0
    parked: int = 0

    def add(self, other: TickReport) -> None:
        for name in self.__dataclass_fields__:
            setattr(self, name, getattr(self, name) + getattr(other, name))

    def as_dict(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in self.__dataclass_fields__}


def _end_reason(relation: Relation | None) -> str:
    if relation is None:
        return "contact.removed: no relation between this guide and the customer"
    if relation.status == RelationStatus.LOST:
        return "contact.lost"
    if relation.status == RelationStatus.REMOVED:
        return "contact.removed"
    if relation.status == RelationStatus.TRANSFERRED:
        return "guide.changed"
    return f"relation {relation.status}"


async def prepare(
    runtime: SopRuntime, ids: Sequence[int], now: datetime, report: TickReport
) -> list[Prepared]:
    """Decide every claimed row in one transaction and commit: skipped (stop condition),
    expired, deferred (daily cap), failed, or `sending` — ready for WeCom. A row with a
    template stays claimed through that commit; its template renders after it, off the event
    loop, and a second transaction marks it `sending` or `failed` (_render_held).

    A row that cannot be decided (a setting an older version wrote, an instant out of range)
    is parked with its reason and its claim released; the others go on (guidebot.db.parking).
    """
    ready: list[Prepared] = []
    held: list[Held] = []
    async with runtime.sessions() as session, session.begin():

        async def park_task(task_id: int, exc: Exception) -> None:
            what = (
                await session.execute(
                    select(
                        SopTask.playbook_id,
                        SopTask.step_id,
                        SopTask.guide_userid,
                        SopTask.external_userid,
                    ).where(SopTask.id == task_id)
                )
            ).one_or_none()
            detail = f"{what[0]} step {what[1]} for {what[2]}/{what[3]}" if what else None
            await park(
                session,
                job=TICK_JOB,
                table=TASKS_TABLE,
                key=task_id,
                reason=describe_error(exc),
                now=now,
                detail=detail,
            )
            await session.execute(
                update(SopTask)
                .where(
                    SopTask.id == task_id,
                    SopTask.status == TaskStatus.CLAIMED,
                    SopTask.lease_owner == runtime.owner,
                )
                .values(
                    status=TaskStatus.PENDING, lease_owner=None, lease_until=None, updated_at=now
                )
                .execution_options(synchronize_session=False)
            )

        done, parked = await isolating(
            session,
            sorted(ids),
            partial(_decide, runtime, session, now),
            job=TICK_JOB,
            table=TASKS_TABLE,
            key=int,
            now=now,
            on_failure=park_task,
        )
        for part_ready, part_held, part_report in done:
            ready += part_ready
            held += part_held
            report.add(part_report)
        report.parked += len(parked)
    if held:
        ready += await _render_held(runtime, held, now, report)
    return sorted(ready, key=lambda r: (r.due_at, r.id))


async def _decide(
    runtime: SopRuntime, session: AsyncSession, now: datetime, ids: Sequence[int]
) -> tuple[list[Prepared], list[Held], TickReport]:
    """prepare() for these rows, in the caller's transaction: (ready, held for their
    template, what happened)."""
    report = TickReport()
    ready: list[Prepared] = []
    held: list[Held] = []
    query = select(SopTask).where(
        SopTask.id.in_(list(ids)),
        SopTask.status == TaskStatus.CLAIMED,
        SopTask.lease_owner == runtime.owner,
    )
    if runtime.is_postgres:
        query = query.with_for_update()
    tasks = sorted(
        await session.scalars(query.execution_options(populate_existing=True)),
        key=lambda t: (t.due_at, t.id),
    )
    if not tasks:
        return [], [], report
    enrollments = {
        e.id: e
        for e in await session.scalars(
            select(SopEnrollment).where(SopEnrollment.id.in_({t.enrollment_id for t in tasks}))
        )
    }
    customers_ids = {t.external_userid for t in tasks}
    relations = {
        (r.guide_userid, r.external_userid): r
        for r in await session.scalars(
            select(Relation).where(Relation.external_userid.in_(customers_ids))
        )
    }
    customers = {
        c.external_userid: c
        for c in await session.scalars(
            select(Customer).where(Customer.external_userid.in_(customers_ids))
        )
    }
    guides = {
        g.userid: g
        for g in await session.scalars(
            select(Guide).where(Guide.userid.in_({t.guide_userid for t in tasks}))
        )
    }
    store_ids = {r.store_id for r in relations.values() if r.store_id is not None}
    store_ids |= {e.store_id for e in enrollments.values() if e.store_id is not None}
    stores = {
        d.id: d
        for d in await session.scalars(select(Department).where(Department.id.in_(store_ids)))
    }
    reached = await _reached_today(session, tasks, now)
    contents = await _content_items(session, {t.content for t in tasks if t.content}, now)

    # (guide, customer) -> (reason, every enrollment of the pair or only those listing it)
    stop_pairs: dict[tuple[str, str], tuple[str, bool]] = {}
    for task in tasks:
        enrollment = enrollments[task.enrollment_id]
        settings = enrollment.settings or {}
        relation = relations.get((task.guide_userid, task.external_userid))

        def settle(status: str, reason: str | None, task: SopTask = task) -> None:
            task.status = status
            task.reason = reason
            task.lease_owner = task.lease_until = None
            task.welcome_code = None
            task.completed_at = now
            task.updated_at = now

        if enrollment.status != EnrollmentStatus.ACTIVE:
            settle(TaskStatus.SKIPPED, f"stopped: {enrollment.stop_reason or 'ended'}")
            report.skipped += 1
            continue
        if relation is None or relation.status != RelationStatus.ACTIVE:
            reason = _end_reason(relation)
            settle(TaskStatus.SKIPPED, f"stopped: {reason} (checked at send time)")
            stop_pairs[(task.guide_userid, task.external_userid)] = (reason, True)
            report.skipped += 1
            continue
        stop_tags = {
            s.removeprefix("tag.added:")
            for s in settings.get("stop_when", ())
            if s.startswith("tag.added:")
        }
        hit = sorted(stop_tags & tag_keys(relation.tags))
        if hit:
            reason = f"tag.added:{hit[0]}"
            settle(TaskStatus.SKIPPED, f"stopped: {reason} (checked at send time)")
            stop_pairs.setdefault((task.guide_userid, task.external_userid), (reason, False))
            report.skipped += 1
            continue
        if task.expires_at is not None and now > task.expires_at:
            late = human_duration(now - task.due_at)
            settle(
                TaskStatus.EXPIRED,
                f"overdue by {late} after an outage (expire_after passed at "
                f"{task.expires_at.isoformat()}); skipped rather than sent late",
            )
            report.expired += 1
            continue
        if task.action == Action.WELCOME and not task.welcome_code:
            settle(TaskStatus.SKIPPED, "no WelcomeCode to send the welcome with")
            report.skipped += 1
            continue
        zone = zone_named(enrollment.timezone, runtime.settings.timezone)
        window = window_from_json(settings.get("send_window"))
        if task.action in Action.GUIDE_FACING and window is not None:
            # Due before an outage and not yet expired, but the window is shut (3 am):
            # held until it opens, or expired if it only opens after the step expires.
            opens = snap_into_window(now, window, zone)
            if opens > now:
                if task.expires_at is not None and opens > task.expires_at:
                    settle(
                        TaskStatus.EXPIRED,
                        f"overdue by {human_duration(now - task.due_at)} after an outage, "
                        "and the send window opens again only after the step expires; "
                        "skipped rather than sent late",
                    )
                    report.expired += 1
                    continue
                task.due_at = opens
                task.status = TaskStatus.PENDING
                task.lease_owner = task.lease_until = None
                task.reason = (
                    f"held until the send window opens "
                    f"({opens.astimezone(zone):%Y-%m-%d %H:%M} {zone.key})"
                )
                task.updated_at = now
                report.deferred += 1
                continue
        if task.action == Action.GUIDE_TASK:
            cap = int(settings.get("max_messages_per_day") or 1)
            day_start, day_end = local_day_bounds(now, zone)
            count = sum(day_start <= t < day_end for t in reached[task.external_userid])
            if count >= cap:
                new_due = next_window_day(now, window, zone)
                shift = new_due - task.due_at
                task.due_at = new_due
                if task.expires_at is not None:
                    task.expires_at = task.expires_at + shift
                task.status = TaskStatus.PENDING
                task.lease_owner = task.lease_until = None
                task.reason = (
                    f"deferred to {new_due.astimezone(zone):%Y-%m-%d %H:%M} {zone.key}: "
                    f"the customer already got {count} message(s) today (cap {cap})"
                )
                task.updated_at = now
                report.deferred += 1
                continue
        message = None
        render: tuple[str, dict[str, Any]] | None = None
        if task.action in (Action.WELCOME, Action.GUIDE_TASK, Action.REMIND):
            try:
                message, render = _message(
                    runtime,
                    task,
                    enrollment,
                    customers.get(task.external_userid),
                    guides.get(task.guide_userid),
                    stores.get(relation.store_id or enrollment.store_id or -1),
                    relation,
                    contents.get(task.content or ""),
                    now,
                )
            except Exception as exc:
                settle(TaskStatus.FAILED, f"template error: {exc}")
                report.failed += 1
                continue
        if task.action in Action.TO_CUSTOMER:
            reached[task.external_userid].append(now)
        prepared = Prepared(
            id=task.id,
            enrollment_id=task.enrollment_id,
            action=task.action,
            guide_userid=task.guide_userid,
            external_userid=task.external_userid,
            step_id=task.step_id,
            playbook_id=task.playbook_id,
            playbook_version=task.playbook_version,
            playbook_name=str(settings.get("name") or task.playbook_id),
            message=message,
            tag=task.tag,
            welcome_code=task.welcome_code,
            due_at=task.due_at,
            expires_at=task.expires_at,
            attempts=task.attempts,
        )
        if render is not None:
            # HQ's template renders after this commit, off the event loop: the row stays
            # claimed until then (_render_held).
            held.append((prepared, render))
            continue
        task.status = TaskStatus.SENDING
        task.lease_until = now + SEND_LEASE
        task.sent_at = now
        task.message = message
        task.updated_at = now
        report.sending += 1
        ready.append(prepared)
    await session.flush()
    for (guide, ext), (reason, force) in stop_pairs.items():
        await stop_enrollments(
            session,
            external_userid=ext,
            guide_userid=guide,
            reason=reason,
            now=now,
            force=force,
        )
    await complete_enrollments(session, {t.enrollment_id for t in tasks}, now)
    return ready, held, report


async def _render_held(
    runtime: SopRuntime,
    held: Sequence[Held],
    now: datetime,
    report: TickReport,
) -> list[Prepared]:
    """Render the held rows' templates outside any transaction and off the event loop (one
    may take its whole render budget), then mark each row `sending` with its text, or
    `failed` with why; a row stopped or taken back meanwhile is left as it is."""
    from guidebot.sop.templates import render_off_loop

    results = await render_off_loop(runtime.env, [job for _, job in held])
    ready: list[Prepared] = []
    failed: set[int] = set()
    async with runtime.sessions() as session, session.begin():
        query = select(SopTask).where(
            SopTask.id.in_([prepared.id for prepared, _ in held]),
            SopTask.status == TaskStatus.CLAIMED,
            SopTask.lease_owner == runtime.owner,
        )
        if runtime.is_postgres:
            query = query.with_for_update()
        tasks = {
            t.id: t for t in await session.scalars(query.execution_options(populate_existing=True))
        }
        for (prepared, _), result in zip(held, results, strict=True):
            task = tasks.get(prepared.id)
            if task is None:
                continue
            task.updated_at = now
            if isinstance(result, Exception):
                task.status = TaskStatus.FAILED
                task.reason = f"template error: {result}"
                task.lease_owner = task.lease_until = None
                task.welcome_code = None
                task.completed_at = now
                failed.add(task.enrollment_id)
                report.failed += 1
                continue
            task.status = TaskStatus.SENDING
            task.lease_until = now + SEND_LEASE
            task.sent_at = now
            task.message = prepared.message = result
            report.sending += 1
            ready.append(prepared)
        await session.flush()
        await complete_enrollments(session, failed, now)
    return ready


async def _reached_today(
    session: AsyncSession, tasks: Sequence[SopTask], now: datetime
) -> dict[str, list[datetime]]:
    """Per customer: when messages that may have reached them went out (last two days), across
    playbooks and guides. The caller counts those in the customer's local day."""
    wanted = {t.external_userid for t in tasks if t.action == Action.GUIDE_TASK}
    sent: dict[str, list[datetime]] = defaultdict(list)
    if not wanted:
        return sent
    rows = await session.execute(
        select(SopTask.external_userid, SopTask.sent_at).where(
            SopTask.external_userid.in_(wanted),
            SopTask.action.in_(Action.TO_CUSTOMER),
            SopTask.status.in_(REACHED),
            SopTask.sent_at >= now - timedelta(days=2),
        )
    )
    for ext, sent_at in rows:
        sent[ext].append(sent_at)
    return sent


def _message(
    runtime: SopRuntime,
    task: SopTask,
    enrollment: SopEnrollment,
    customer: Customer | None,
    guide: Guide | None,
    store: Department | None,
    relation: Relation | None,
    content: Any = None,
    now: datetime | None = None,
) -> tuple[str | None, tuple[str, dict[str, Any]] | None]:
    """(the text, None) for a step without a template; (None, (template, variables)) for one
    whose template is still to render."""
    variables = message_variables(
        runtime, task, enrollment, customer, guide, store, relation, content, now
    )
    if task.template:
        return None, (task.template, variables)
    name = variables["playbook"]["name"]
    if task.action == Action.REMIND:
        return f"{name}: {variables['customer']['name']} ({task.step_id})", None
    raise ValueError(f"step {task.step_id!r} has no template to send")


def message_variables(
    runtime: SopRuntime,
    task: SopTask,
    enrollment: SopEnrollment,
    customer: Customer | None,
    guide: Guide | None,
    store: Department | None,
    relation: Relation | None,
    content: Any = None,
    now: datetime | None = None,
) -> dict[str, Any]:
    """The closed set of template variables (templates.ALLOWED_VARIABLES).

    A step's content item becomes a tracked link that carries the guide, the customer and this
    task, so its opens (and the orders after them) are credited to the right place.

    customer.name is the customer's WeCom name, else the guide's remark. With neither (the
    profile is not fetched yet: an add recorded from the event alone), a message to the
    customer gets an empty name ("{{ customer.name }}您好" reads "您好"), never their raw id; a
    reminder to the guide names the customer by id, so the guide can still tell who it is.
    """
    remark = relation.remark if relation is not None else None
    name = (customer.name if customer else None) or remark
    if not name:
        name = "" if task.action in Action.TO_CUSTOMER else task.external_userid
    settings = enrollment.settings or {}
    tracked = _tracked_link(runtime, task, content, now)
    return {
        "customer": {
            "name": name,
            "external_userid": task.external_userid,
            "remark": remark or name,
        },
        "guide": {
            "name": (guide.name if guide else None) or task.guide_userid,
            "userid": task.guide_userid,
        },
        "store": {
            "name": store.name if store else "",
            "code": store.code if store else "",
        },
        "content": {
            "id": task.content or "",
            "title": content.title if content is not None else "",
            "url": tracked,
        },
        "links": {"content": tracked, "task": runtime.task_url(task.id)},
        "playbook": {
            "id": task.playbook_id,
            "name": settings.get("name") or task.playbook_id,
            "version": task.playbook_version,
        },
        "step": {"id": task.step_id, "action": task.action},
    }


async def _content_items(session: AsyncSession, refs: set[str], now: datetime) -> dict[str, Any]:
    """Live content items named by steps (by key, or by id), under every name they go by."""
    from guidebot.content.models import ContentItem
    from guidebot.content.service import is_live

    if not refs:
        return {}
    ids = [int(ref) for ref in refs if ref.isdigit()]
    items = await session.scalars(
        select(ContentItem).where(or_(ContentItem.key.in_(refs), ContentItem.id.in_(ids)))
    )
    found: dict[str, Any] = {}
    for item in items:
        if is_live(item, now):
            found[item.key] = found[str(item.id)] = item
    return found


def _tracked_link(runtime: SopRuntime, task: SopTask, content: Any, now: datetime | None) -> str:
    from guidebot.content.links import link_url, mint

    if content is None or now is None:
        return ""
    token, _ = mint(
        runtime.settings.secret_key,
        item_id=content.id,
        guide=task.guide_userid,
        customer=task.external_userid,
        task_id=task.id,
        step=task.step_id,
        now=now,
    )
    return link_url(runtime.settings.public_url, token)


# ---- the tick --------------------------------------------------------------------------------


async def run_tasks(
    runtime: SopRuntime, now: datetime, *, ids: Sequence[int] | None = None
) -> TickReport:
    """Claim, prepare and execute due rows (or exactly `ids`: the welcome fast path)."""
    from guidebot.sop.actions import execute

    report = TickReport()
    batches = 1 if ids is not None else runtime.max_batches
    for _ in range(batches):
        claimed = await claim(runtime, now, ids=ids)
        if not claimed:
            break
        report.claimed += len(claimed)
        try:
            ready = await prepare(runtime, claimed, now, report)
            if ready:
                await execute(runtime, ready, now, report)
        except BaseException:
            _FAILED_RUNS.update((runtime.owner, task_id) for task_id in claimed)
            raise
        if ids is None and len(claimed) < runtime.batch_size:
            break
    return report


async def tick(runtime: SopRuntime, now: datetime | None = None) -> TickReport:
    """One scheduler tick: take back lapsed claims, then run what is due, batch by batch."""
    now = now or runtime.clock.now()
    reaped = await release_failed_runs(runtime, now) + await reap_claims(runtime, now)
    report = await run_tasks(runtime, now)
    report.reaped = reaped
    if report.claimed or reaped:
        log.info("sop tick: %s", {k: v for k, v in report.as_dict().items() if v})
    return report


__all__ = [
    "ALWAYS_STOP",
    "CLAIM_LEASE",
    "SEND_LEASE",
    "Enrolled",
    "Prepared",
    "SopRuntime",
    "Subject",
    "TaskConflict",
    "TaskNotFound",
    "TickReport",
    "audience_matches",
    "birthday_of",
    "claim",
    "complete_enrollments",
    "complete_task",
    "enroll",
    "prepare",
    "reap_claims",
    "record_goal",
    "record_reply",
    "registry_for",
    "run_tasks",
    "skip_task",
    "stop_enrollments",
    "subject_for",
    "tick",
    "transfer_enrollments",
]
