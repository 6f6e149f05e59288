"""What each step does in WeCom, and what the engine records of the answer.

Every function here runs with no database transaction open while WeCom is called; the rows
it handles were marked `sending` and committed first (engine.prepare). Outcomes are then
written in one transaction, each guarded by `status = 'sending'`.

* welcome: send_welcome_msg with the add event's WelcomeCode. 41051 = already welcomed (done,
  stop); 41050 = the code expired; 41096 = another app is sending, retried with a short backoff
  while the 20 s window lasts; WeComUncertain = unknown, never resent. The step's expiry is the
  call's deadline: a welcome the client cannot make before it is expired, not sent.
* guide_task: one add_msg_template per guide, step and text, with the list of customers; then
  a textcard reminding the guide to confirm. The task is `sent` until get_groupmsg_send_result
  says the customer got it (done), is not a friend (failed) or hit their monthly cap (failed,
  recorded, not retried).
* remind: a textcard to the guide linking to the task (at least once: a duplicate is fine).
* tag: mark_tag, idempotent.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

from sqlalchemy import bindparam, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from guidebot.db.parking import describe_error, is_row_error, isolating, park, unparked
from guidebot.sop.engine import (
    SEND_LEASE,
    TASKS_TABLE,
    Prepared,
    SopRuntime,
    TickReport,
    complete_enrollments,
    human_duration,
)
from guidebot.sop.models import Action, CompletedBy, SopTask, TaskStatus
from guidebot.wecom.client import (
    WeComDeadlineExceeded,
    WeComError,
    WeComTransportError,
    WeComUncertain,
)

log = logging.getLogger(__name__)

ALREADY_WELCOMED = 41051
CODE_EXPIRED = 41050
WELCOME_BUSY = 41096
NO_RECIPIENTS = 41048
NO_RELATION = 84061
# WeCom did not act and may be asked again later: busy, limits, or never reached.
RETRY_LATER = frozenset({-1, 45009, 45033})
MAX_ATTEMPTS = 5
WELCOME_BACKOFF = (0.5, 1.0, 2.0, 4.0)
MAX_RECIPIENTS = 10_000  # add_msg_template's external_userid limit
# get_groupmsg_send_result is polled this long after the task was created.
POLL_FOR = timedelta(days=14)
SEND_STATUS = {1: "sent", 2: "not a friend", 3: "customer's monthly cap"}

_tasks = SopTask.__table__
# The periodic jobs' names (guidebot.app), as the rows they park are filed under.
RECONCILE_JOB = "sop-reconcile"
RESULTS_JOB = "sop-results"


@dataclass
class Outcome:
    id: int
    enrollment_id: int
    status: str
    reason: str | None = None
    wecom_msgid: str | None = None
    result: dict[str, Any] | None = None
    completed_by: str | None = None
    retry_at: datetime | None = None  # not sent: due again at this instant


@dataclass
class _Tags:
    """Corp tag names → ids, fetched at most once per batch."""

    ids: dict[str, str] | None = None
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


def _retry_at(now: datetime, attempts: int) -> datetime:
    return now + timedelta(seconds=min(1800, 30 * 2 ** max(0, attempts - 1)))


def _not_sent(row: Prepared, exc: WeComError, now: datetime, what: str) -> Outcome:
    """WeCom certainly did not act: due again later, or failed after MAX_ATTEMPTS."""
    if row.attempts >= MAX_ATTEMPTS:
        return Outcome(
            row.id,
            row.enrollment_id,
            TaskStatus.FAILED,
            f"{what} not sent after {row.attempts} attempts: {exc}",
        )
    return Outcome(
        row.id,
        row.enrollment_id,
        TaskStatus.PENDING,
        f"{what} not sent, retrying: {exc}",
        retry_at=_retry_at(now, row.attempts),
    )


def _transient(exc: WeComError) -> bool:
    return isinstance(exc, WeComTransportError) or exc.errcode in RETRY_LATER


# ---- executing prepared rows ------------------------------------------------------------------


async def execute(
    runtime: SopRuntime, rows: Sequence[Prepared], now: datetime, report: TickReport
) -> None:
    """Call WeCom for every prepared row, then record every outcome in one transaction.

    A call that raises something unexpected settles only its own rows (_unexpected); the
    other rows' outcomes are recorded all the same."""
    gate = asyncio.Semaphore(runtime.concurrency)
    tags = _Tags()
    outcomes: list[Outcome] = []

    async def guarded(rows: Sequence[Prepared], job: Awaitable[list[Outcome]]) -> None:
        async with gate:
            try:
                found = await job
            except Exception as exc:
                log.error(
                    "sop: %s failed unexpectedly for task(s) %s; settled alone, the others go on",
                    rows[0].action,
                    ", ".join(str(r.id) for r in rows),
                    exc_info=exc,
                )
                found = [_unexpected(row, exc) for row in rows]
            outcomes.extend(found)

    jobs: list[tuple[Sequence[Prepared], Awaitable[list[Outcome]]]] = []
    groups: dict[tuple[str, str, str, str], list[Prepared]] = defaultdict(list)
    for row in rows:
        if row.action == Action.GUIDE_TASK:
            groups[(row.guide_userid, row.playbook_id, row.step_id, row.message or "")].append(row)
        elif row.action == Action.WELCOME:
            jobs.append(([row], _one(send_welcome(runtime, row))))
        elif row.action == Action.REMIND:
            jobs.append(([row], _one(send_reminder(runtime, row, now))))
        elif row.action == Action.TAG:
            jobs.append(([row], _one(mark_tag(runtime, row, now, tags))))
        else:
            outcomes.append(
                Outcome(
                    row.id, row.enrollment_id, TaskStatus.FAILED, f"unknown action {row.action}"
                )
            )
    for group in groups.values():
        for start in range(0, len(group), MAX_RECIPIENTS):
            part = group[start : start + MAX_RECIPIENTS]
            jobs.append((part, create_guide_task(runtime, part, now)))
    await asyncio.gather(*(guarded(part, job) for part, job in jobs))
    report.wecom_calls += len(jobs)
    await record_outcomes(runtime, outcomes, now, report)


async def _one(job: Awaitable[Outcome]) -> list[Outcome]:
    return [await job]


def _unexpected(row: Prepared, exc: Exception) -> Outcome:
    """A call that raised what no branch expects. A message to a customer may have reached
    WeCom before it did: `unknown`, never resent (rule 6). A reminder or a tag: `failed`."""
    error = describe_error(exc)
    if row.action in Action.TO_CUSTOMER:
        return Outcome(
            row.id,
            row.enrollment_id,
            TaskStatus.UNKNOWN,
            f"unexpected error while sending ({error}); WeCom may or may not have acted: "
            "not resent (check with the guide)",
        )
    return Outcome(row.id, row.enrollment_id, TaskStatus.FAILED, f"unexpected error: {error}")


async def send_welcome(runtime: SopRuntime, row: Prepared) -> Outcome:
    done = CompletedBy.ENGINE
    for attempt in range(len(WELCOME_BACKOFF) + 1):
        try:
            # The code's expiry is the call's deadline: queued behind WeCom's budget past it,
            # the welcome is not sent at all.
            await runtime.wecom.send_welcome_msg(
                row.welcome_code or "", text=row.message, deadline=row.expires_at
            )
            return Outcome(row.id, row.enrollment_id, TaskStatus.SENT, completed_by=done)
        except WeComDeadlineExceeded as exc:
            return Outcome(
                row.id,
                row.enrollment_id,
                TaskStatus.EXPIRED,
                f"the 20 s welcome window closed before WeCom could be called ({exc.errmsg})",
            )
        except WeComUncertain as exc:
            return Outcome(
                row.id,
                row.enrollment_id,
                TaskStatus.UNKNOWN,
                f"the welcome may have been delivered ({exc.errmsg}); not resent",
            )
        except WeComError as exc:
            if exc.errcode == ALREADY_WELCOMED:
                return Outcome(
                    row.id,
                    row.enrollment_id,
                    TaskStatus.DONE,
                    "already welcomed (41051): another app or the guide got there first",
                    completed_by=done,
                )
            if exc.errcode == CODE_EXPIRED:
                return Outcome(
                    row.id,
                    row.enrollment_id,
                    TaskStatus.EXPIRED,
                    "the welcome code expired (41050) before it could be used",
                )
            if exc.errcode == WELCOME_BUSY or _transient(exc):
                delay = WELCOME_BACKOFF[attempt] if attempt < len(WELCOME_BACKOFF) else None
                closes = row.expires_at or datetime.max.replace(tzinfo=UTC)
                if delay is not None and runtime.clock.now() + timedelta(seconds=delay) < closes:
                    await runtime.sleep(delay)
                    continue
                return Outcome(
                    row.id,
                    row.enrollment_id,
                    TaskStatus.EXPIRED,
                    f"the 20 s welcome window closed while WeCom answered: {exc}",
                )
            return Outcome(row.id, row.enrollment_id, TaskStatus.FAILED, str(exc))
    raise AssertionError("unreachable")


async def create_guide_task(
    runtime: SopRuntime, rows: Sequence[Prepared], now: datetime
) -> list[Outcome]:
    """One add_msg_template for a guide's customers who get the same text; then a reminder."""
    first = rows[0]
    try:
        answer = await runtime.wecom.add_msg_template(
            external_userids=[r.external_userid for r in rows],
            sender=first.guide_userid,
            text=first.message,
        )
    except WeComUncertain as exc:
        return [
            Outcome(
                r.id,
                r.enrollment_id,
                TaskStatus.UNKNOWN,
                f"the mass-send task may have been created ({exc.errmsg}); not resent",
            )
            for r in rows
        ]
    except WeComError as exc:
        if _transient(exc):
            return [_not_sent(r, exc, now, "mass-send task") for r in rows]
        reason = (
            "WeCom found no customer it could send to (41048)"
            if exc.errcode == NO_RECIPIENTS
            else f"mass-send task refused: {exc}"
        )
        return [Outcome(r.id, r.enrollment_id, TaskStatus.FAILED, reason) for r in rows]
    failed = set(answer.fail_list)
    outcomes = []
    for r in rows:
        if r.external_userid in failed:
            outcomes.append(
                Outcome(
                    r.id,
                    r.enrollment_id,
                    TaskStatus.FAILED,
                    "WeCom cannot send to this customer (in add_msg_template's fail_list)",
                    wecom_msgid=answer.msgid,
                )
            )
        else:
            outcomes.append(
                Outcome(
                    r.id,
                    r.enrollment_id,
                    TaskStatus.SENT,
                    wecom_msgid=answer.msgid,
                    result={"msgid": answer.msgid, "send_status": 0},
                )
            )
    waiting = [r for r in rows if r.external_userid not in failed]
    if waiting:
        await _remind_guide(
            runtime,
            waiting[0],
            title=f"{first.playbook_name}: 群发任务待确认",
            description=f"{len(waiting)} 位客户待发送。{_excerpt(first.message)}",
        )
    return outcomes


async def send_reminder(runtime: SopRuntime, row: Prepared, now: datetime) -> Outcome:
    try:
        await runtime.wecom.send_textcard(
            row.guide_userid,
            title=_clip(row.playbook_name, 120),
            description=_clip(row.message or row.step_id, 500),
            url=runtime.task_url(row.id),
            btntxt="查看",
            at_least_once=True,
        )
    except WeComError as exc:
        if _transient(exc) or isinstance(exc, WeComUncertain):
            return _not_sent(row, exc, now, "reminder")
        return Outcome(row.id, row.enrollment_id, TaskStatus.FAILED, f"reminder refused: {exc}")
    # The guide acts on it and marks it done (or skips it) from the task list.
    return Outcome(row.id, row.enrollment_id, TaskStatus.SENT)


async def mark_tag(runtime: SopRuntime, row: Prepared, now: datetime, tags: _Tags) -> Outcome:
    wanted = row.tag or ""
    try:
        tag_id = await _tag_id(runtime, wanted, tags)
        if tag_id is None:
            return Outcome(
                row.id, row.enrollment_id, TaskStatus.FAILED, f"no corp tag named {wanted!r}"
            )
        await runtime.wecom.mark_tag(row.guide_userid, row.external_userid, add_tag=[tag_id])
    except WeComError as exc:
        if _transient(exc):
            return _not_sent(row, exc, now, "tag")
        if exc.errcode == NO_RELATION:
            return Outcome(
                row.id, row.enrollment_id, TaskStatus.FAILED, "not the guide's customer (84061)"
            )
        return Outcome(row.id, row.enrollment_id, TaskStatus.FAILED, f"mark_tag refused: {exc}")
    return Outcome(
        row.id,
        row.enrollment_id,
        TaskStatus.DONE,
        result={"tag_id": tag_id},
        completed_by=CompletedBy.ENGINE,
    )


async def _tag_id(runtime: SopRuntime, wanted: str, tags: _Tags) -> str | None:
    async with tags.lock:
        if tags.ids is None:
            ids: dict[str, str] = {}
            for group in await runtime.wecom.get_corp_tag_list():
                for tag in group.get("tag", []):
                    if tag.get("deleted"):
                        continue
                    ids.setdefault(str(tag.get("name")), str(tag.get("id")))
                    ids[str(tag.get("id"))] = str(tag.get("id"))
            tags.ids = ids
    return tags.ids.get(wanted)


async def _remind_guide(
    runtime: SopRuntime, row: Prepared, *, title: str, description: str
) -> None:
    """Tell the guide a mass-send task waits for them; at least once, failures only logged."""
    try:
        await runtime.wecom.send_textcard(
            row.guide_userid,
            title=_clip(title, 120),
            description=_clip(description, 500),
            url=runtime.task_url(row.id),
            btntxt="去发送",
            at_least_once=True,
        )
    except WeComError as exc:
        log.warning("could not remind %s of task %d: %s", row.guide_userid, row.id, exc)
    except Exception:
        # The mass-send task exists by now: its rows' outcomes must not be lost to this.
        log.exception("could not remind %s of task %d", row.guide_userid, row.id)


def _clip(text: str, limit_bytes: int) -> str:
    data = text.encode("utf-8")
    if len(data) <= limit_bytes:
        return text
    return data[: limit_bytes - 3].decode("utf-8", errors="ignore") + "…"


def _excerpt(text: str | None) -> str:
    return _clip((text or "").replace("\n", " "), 300)


# ---- recording --------------------------------------------------------------------------------


_SETTLE = (
    update(_tasks)
    .where(_tasks.c.id == bindparam("b_id"), _tasks.c.status == TaskStatus.SENDING)
    .values(
        status=bindparam("b_status"),
        reason=bindparam("b_reason"),
        wecom_msgid=bindparam("b_msgid"),
        result=bindparam("b_result"),
        completed_at=bindparam("b_completed_at"),
        completed_by=bindparam("b_completed_by"),
        lease_owner=None,
        lease_until=None,
        welcome_code=None,
        updated_at=bindparam("b_now"),
    )
)
_RETRY = (
    update(_tasks)
    .where(_tasks.c.id == bindparam("b_id"), _tasks.c.status == TaskStatus.SENDING)
    .values(
        status=TaskStatus.PENDING,
        reason=bindparam("b_reason"),
        due_at=bindparam("b_due"),
        sent_at=None,
        message=None,
        lease_owner=None,
        lease_until=None,
        updated_at=bindparam("b_now"),
    )
)
# `sent` guide tasks and reminders still wait for the guide; everything else is settled now.
_WAITING = {Action.GUIDE_TASK, Action.REMIND}


async def record_outcomes(
    runtime: SopRuntime, outcomes: Sequence[Outcome], now: datetime, report: TickReport
) -> None:
    if not outcomes:
        return
    settle, retry = [], []
    for o in outcomes:
        if o.retry_at is not None:
            retry.append({"b_id": o.id, "b_reason": o.reason, "b_due": o.retry_at, "b_now": now})
            report.retried += 1
            continue
        settle.append(
            {
                "b_id": o.id,
                "b_status": o.status,
                "b_reason": o.reason,
                "b_msgid": o.wecom_msgid,
                "b_result": o.result,
                "b_completed_at": None if o.status == TaskStatus.SENT else now,
                "b_completed_by": o.completed_by,
                "b_now": now,
            }
        )
        name = o.status if o.status in report.__dataclass_fields__ else "failed"
        setattr(report, name, getattr(report, name) + 1)
    async with runtime.sessions() as session, session.begin():
        if settle:
            await session.execute(_SETTLE, settle)
        if retry:
            await session.execute(_RETRY, retry)
        await complete_enrollments(session, {o.enrollment_id for o in outcomes}, now)


# ---- after a crash: rows left in `sending` ------------------------------------------------------


@dataclass
class ReconcileReport:
    checked: int = 0
    sent: int = 0
    unknown: int = 0
    requeued: int = 0
    parked: int = 0  # rows it could not settle (guidebot.db.parking), left in `sending`
    errors: list[str] = field(default_factory=list)


async def reconcile_sending(
    runtime: SopRuntime, now: datetime | None = None, *, everything: bool = False
) -> ReconcileReport:
    """Settle rows left in `sending` by a process that died mid-call (their lease lapsed, or,
    with `everything`, all of them: SQLite at start-up, where one process owns the queue).

    A guide task is looked up in WeCom (get_groupmsg_list_v2 by time window, then the task's
    send list for this guide); found → sent, else unknown. A welcome cannot be checked →
    unknown. Reminders and tags may repeat → due again. Nothing to a customer is resent.

    A row it cannot settle (a guide whose lookup breaks on it, an instant out of range) is
    parked with its reason and left in `sending`, and later runs skip it; the others are
    settled all the same (guidebot.db.parking).
    """
    now = now or runtime.clock.now()
    report = ReconcileReport()
    query = select(SopTask).where(
        SopTask.status == TaskStatus.SENDING,
        unparked(RECONCILE_JOB, TASKS_TABLE, SopTask.id),
    )
    if not everything:
        query = query.where(SopTask.lease_until < now)
    async with runtime.sessions() as session:
        rows = list(await session.scalars(query.order_by(SopTask.id).limit(5000)))
    if not rows:
        return report
    report.checked = len(rows)
    found: dict[int, str] = {}
    broken: dict[int, Exception] = {}  # rows whose guide's lookup failed on them
    guide_tasks = [r for r in rows if r.action == Action.GUIDE_TASK]
    by_guide: dict[str, list[SopTask]] = defaultdict(list)
    for row in guide_tasks:
        by_guide[row.guide_userid].append(row)
    for guide, tasks in by_guide.items():
        try:
            found.update(await _find_mass_tasks(runtime, guide, tasks, now))
        except WeComError as exc:
            report.errors.append(f"{guide}: {exc}")
            for row in tasks:
                found[row.id] = ""  # left in `sending`; tried again next time
        except Exception as exc:
            if not is_row_error(exc):
                raise
            broken.update((row.id, exc) for row in tasks)
    params: dict[int, tuple[str, dict[str, Any]]] = {}  # task id -> (_SETTLE or _RETRY, values)
    for row in rows:
        if row.id in broken:
            continue
        if row.action == Action.GUIDE_TASK:
            msgid = found.get(row.id)
            if msgid == "":
                continue
            if msgid:
                params[row.id] = (
                    "settle",
                    _settle_params(row.id, TaskStatus.SENT, None, msgid, now),
                )
            else:
                params[row.id] = (
                    "settle",
                    _settle_params(
                        row.id,
                        TaskStatus.UNKNOWN,
                        "interrupted during the WeCom call and not found in WeCom's mass-send "
                        "list; not resent (check with the guide)",
                        None,
                        now,
                    ),
                )
        elif row.action == Action.WELCOME:
            params[row.id] = (
                "settle",
                _settle_params(
                    row.id,
                    TaskStatus.UNKNOWN,
                    "interrupted during send_welcome_msg; WeCom cannot tell whether it was "
                    "delivered, and the code works once: not resent",
                    None,
                    now,
                ),
            )
        else:
            params[row.id] = (
                "retry",
                {
                    "b_id": row.id,
                    "b_reason": "interrupted before WeCom answered; due again "
                    f"({'reminders may repeat' if row.action == Action.REMIND else 'idempotent'})",
                    "b_due": now,
                    "b_now": now,
                },
            )
    by_id = {row.id: row for row in rows}

    async with runtime.sessions() as session, session.begin():

        async def write(ids: Sequence[int]) -> list[int]:
            settle = [params[i][1] for i in ids if params[i][0] == "settle"]
            retry = [params[i][1] for i in ids if params[i][0] == "retry"]
            if settle:
                await session.execute(_SETTLE, settle)
            if retry:
                await session.execute(_RETRY, retry)
            await complete_enrollments(session, {by_id[i].enrollment_id for i in ids}, now)
            return list(ids)

        for task_id, exc in broken.items():
            await park(
                session,
                job=RECONCILE_JOB,
                table=TASKS_TABLE,
                key=task_id,
                reason=describe_error(exc),
                now=now,
                detail=_task_detail(by_id[task_id]),
            )
        _, failed = await isolating(
            session,
            sorted(params),
            write,
            job=RECONCILE_JOB,
            table=TASKS_TABLE,
            key=int,
            now=now,
            detail=lambda i: _task_detail(by_id[i]),
        )
    report.parked = len(broken) + len(failed)
    for task_id in (i for i in params if i not in failed):
        kind, values = params[task_id]
        if kind == "retry":
            report.requeued += 1
        elif values["b_status"] == TaskStatus.SENT:
            report.sent += 1
        else:
            report.unknown += 1
    log.warning(
        "reconciled %d row(s) left in sending: %d found sent, %d unknown, %d due again, %d parked",
        report.checked,
        report.sent,
        report.unknown,
        report.requeued,
        report.parked,
    )
    return report


def _task_detail(task: SopTask, msgid: str | None = None) -> str:
    """What a parked task row is, for `guidebot jobs parked`."""
    text = f"{task.playbook_id} step {task.step_id} for {task.guide_userid}/{task.external_userid}"
    return f"{text} (msgid {msgid})" if msgid else text


def _settle_params(
    task_id: int, status: str, reason: str | None, msgid: str | None, now: datetime
) -> dict[str, Any]:
    return {
        "b_id": task_id,
        "b_status": status,
        "b_reason": reason,
        "b_msgid": msgid,
        "b_result": {"msgid": msgid, "send_status": 0, "reconciled": True} if msgid else None,
        "b_completed_at": None if status == TaskStatus.SENT else now,
        "b_completed_by": None,
        "b_now": now,
    }


def _text_of(item: dict[str, Any]) -> str | None:
    text = item.get("text")
    if isinstance(text, dict):
        return text.get("content")
    return text if isinstance(text, str) else None


async def _find_mass_tasks(
    runtime: SopRuntime, guide: str, rows: Sequence[SopTask], now: datetime
) -> dict[int, str]:
    """task id → msgid of the WeCom mass-send task that holds its customer, if there is one."""
    earliest = min(r.sent_at or now for r in rows)
    start = max(earliest - timedelta(minutes=1), now - timedelta(days=30))
    end = min(now, max(r.sent_at or now for r in rows) + SEND_LEASE + timedelta(minutes=1))
    texts = {r.message for r in rows if r.message}
    candidates = [
        item["msgid"]
        async for item in runtime.wecom.iter_groupmsg_list_v2(
            start_time=start, end_time=max(end, start), filter_type=0, limit=100
        )
        if _text_of(item) in texts
    ]
    found: dict[int, str] = {}
    wanted = {r.external_userid: r for r in rows}
    for msgid in candidates:
        async for result in runtime.wecom.iter_groupmsg_send_result(msgid, guide):
            row = wanted.get(result.get("external_userid"))
            if row is not None and row.id not in found:
                found[row.id] = msgid
    return found


# ---- completion of guide tasks: polling WeCom's send results ----------------------------------


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
            details = {i: _task_detail(t, msgid) for i, t in tasks.items()}
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


__all__ = [
    "Outcome",
    "PollReport",
    "ReconcileReport",
    "create_guide_task",
    "execute",
    "human_duration",
    "mark_tag",
    "poll_send_results",
    "reconcile_sending",
    "record_outcomes",
    "send_reminder",
    "send_welcome",
]
