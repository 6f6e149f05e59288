"""Preparing claimed rows: stop checks, expiry, each action's send-time gate, rendering.

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

import logging
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from guidebot.contacts.models import Customer, Department, Guide, Relation, RelationStatus
from guidebot.db.parking import describe_error, isolating, park
from guidebot.sop.actions import action_for, actions_where
from guidebot.sop.actions.base import Prepared, SendTime, TickReport, Verdict
from guidebot.sop.audience import tag_keys
from guidebot.sop.completion import complete_enrollments
from guidebot.sop.context import SopRuntime
from guidebot.sop.enrollment import stop_enrollments
from guidebot.sop.messages import content_items, message_for
from guidebot.sop.models import EnrollmentStatus, SopEnrollment, SopTask, TaskStatus
from guidebot.sop.queue import TASK_QUEUE, TASKS_TABLE, TICK_JOB
from guidebot.sop.templates import render_off_loop
from guidebot.sop.timing import human_duration

log = logging.getLogger(__name__)

# A row in `sending` whose lease lapsed was left by a crash: it is reconciled, not resent.
SEND_LEASE = timedelta(minutes=5)
# Counted toward the customer's daily cap: what may have reached them.
REACHED = (TaskStatus.SENDING, TaskStatus.SENT, TaskStatus.DONE, TaskStatus.UNKNOWN)

# A row decided but for its template: (the row, (template name, its variables)).
Held = tuple[Prepared, tuple[str, dict[str, Any]]]


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
        done, parked = await isolating(
            session,
            sorted(ids),
            partial(_decide, runtime, session, now),
            job=TICK_JOB,
            table=TASKS_TABLE,
            key=int,
            now=now,
            on_failure=partial(_park_task, runtime, session, now),
        )
        for part_ready, part_held, part_report in done:
            ready += part_ready
            held += part_held
            report.add(part_report)
        report.parked += len(parked)
    if held:
        ready += await _render_held(runtime, held, now, report)
    return sorted(ready, key=lambda r: (r.due_at, r.id))


async def _park_task(
    runtime: SopRuntime, session: AsyncSession, now: datetime, task_id: int, exc: Exception
) -> None:
    """A row that could not be decided: parked with why, and its claim released."""
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
    await TASK_QUEUE.release(session, [task_id], owner=runtime.owner, now=now)


@dataclass
class _Batch:
    """What deciding a batch of claimed rows reads, once for the batch."""

    enrollments: dict[int, SopEnrollment]
    relations: dict[tuple[str, str], Relation]
    customers: dict[str, Customer]
    guides: dict[str, Guide]
    stores: dict[int, Department]
    reached: dict[str, list[datetime]]
    contents: dict[str, Any]
    # (guide, customer) -> (reason, every enrollment of the pair or only those listing it)
    stop_pairs: dict[tuple[str, str], tuple[str, bool]]


async def _load(session: AsyncSession, tasks: Sequence[SopTask], now: datetime) -> _Batch:
    customer_ids = {t.external_userid for t in tasks}
    enrollments = {
        e.id: e
        for e in await session.scalars(
            select(SopEnrollment).where(SopEnrollment.id.in_({t.enrollment_id for t in tasks}))
        )
    }
    relations = {
        (r.guide_userid, r.external_userid): r
        for r in await session.scalars(
            select(Relation).where(Relation.external_userid.in_(customer_ids))
        )
    }
    customers = await session.scalars(
        select(Customer).where(Customer.external_userid.in_(customer_ids))
    )
    guides = await session.scalars(
        select(Guide).where(Guide.userid.in_({t.guide_userid for t in tasks}))
    )
    store_ids = {r.store_id for r in relations.values() if r.store_id is not None}
    store_ids |= {e.store_id for e in enrollments.values() if e.store_id is not None}
    stores = await session.scalars(select(Department).where(Department.id.in_(store_ids)))
    return _Batch(
        enrollments=enrollments,
        relations=relations,
        customers={c.external_userid: c for c in customers},
        guides={g.userid: g for g in guides},
        stores={d.id: d for d in stores},
        reached=await _reached_today(session, tasks, now),
        contents=await content_items(session, {t.content for t in tasks if t.content}, now),
        stop_pairs={},
    )


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
    batch = await _load(session, tasks, now)
    for task in tasks:
        decided = _decide_one(runtime, batch, task, now)
        if isinstance(decided, str):
            setattr(report, decided, getattr(report, decided) + 1)
        elif isinstance(decided, Prepared):
            _mark_sending(task, decided.message, now)
            report.sending += 1
            ready.append(decided)
        else:
            # HQ's template renders after this commit, off the event loop: the row stays
            # claimed until then (_render_held).
            held.append(decided)
    await session.flush()
    for (guide, ext), (reason, force) in batch.stop_pairs.items():
        await stop_enrollments(
            session, external_userid=ext, guide_userid=guide, reason=reason, now=now, force=force
        )
    await complete_enrollments(session, {t.enrollment_id for t in tasks}, now)
    return ready, held, report


def _decide_one(
    runtime: SopRuntime, batch: _Batch, task: SopTask, now: datetime
) -> str | Prepared | Held:
    """One claimed row: the report field it counts in once settled or deferred here, or the
    row ready to send, or held for its template."""
    enrollment = batch.enrollments[task.enrollment_id]
    settings = enrollment.settings or {}
    relation = batch.relations.get((task.guide_userid, task.external_userid))
    verdict = _common_verdict(batch, task, enrollment, relation, now)
    action = action_for(task.action)
    if verdict is None and action is not None:
        at = SendTime(now, settings, enrollment.timezone, runtime.settings.timezone, batch.reached)
        verdict = action.gate(task, at)
    if verdict is not None:
        return _apply(task, verdict, now)
    message = None
    render: tuple[str, dict[str, Any]] | None = None
    if action is not None and action.sends:
        try:
            message, render = message_for(
                runtime,
                action,
                task,
                enrollment,
                batch.customers.get(task.external_userid),
                batch.guides.get(task.guide_userid),
                batch.stores.get(relation.store_id or enrollment.store_id or -1),  # type: ignore[union-attr]
                relation,
                batch.contents.get(task.content or ""),
                now,
            )
        except Exception as exc:
            _settle(task, TaskStatus.FAILED, f"template error: {exc}", now)
            return "failed"
    if action is not None and action.to_customer:
        batch.reached[task.external_userid].append(now)
    prepared = prepared_from(task, settings, message)
    return (prepared, render) if render is not None else prepared


def _common_verdict(
    batch: _Batch,
    task: SopTask,
    enrollment: SopEnrollment,
    relation: Relation | None,
    now: datetime,
) -> Verdict | None:
    """The checks every action's rows pass at send time: the enrollment still runs, the pair
    is still connected, no stop tag was added, the step has not expired."""
    if enrollment.status != EnrollmentStatus.ACTIVE:
        return Verdict(TaskStatus.SKIPPED, f"stopped: {enrollment.stop_reason or 'ended'}")
    pair = (task.guide_userid, task.external_userid)
    if relation is None or relation.status != RelationStatus.ACTIVE:
        reason = _end_reason(relation)
        batch.stop_pairs[pair] = (reason, True)
        return Verdict(TaskStatus.SKIPPED, f"stopped: {reason} (checked at send time)")
    stop_tags = {
        s.removeprefix("tag.added:")
        for s in (enrollment.settings or {}).get("stop_when", ())
        if s.startswith("tag.added:")
    }
    hit = sorted(stop_tags & tag_keys(relation.tags))
    if hit:
        reason = f"tag.added:{hit[0]}"
        batch.stop_pairs.setdefault(pair, (reason, False))
        return Verdict(TaskStatus.SKIPPED, f"stopped: {reason} (checked at send time)")
    if task.expires_at is not None and now > task.expires_at:
        late = human_duration(now - task.due_at)
        return Verdict(
            TaskStatus.EXPIRED,
            f"overdue by {late} after an outage (expire_after passed at "
            f"{task.expires_at.isoformat()}); skipped rather than sent late",
        )
    return None


def _apply(task: SopTask, verdict: Verdict, now: datetime) -> str:
    """Carry out a verdict on the row; the report field it counts in."""
    if verdict.due_at is None:
        _settle(task, verdict.status, verdict.reason, now)
        return verdict.status
    if verdict.shift and task.expires_at is not None:
        task.expires_at = task.expires_at + (verdict.due_at - task.due_at)
    if task.escalate_at is not None:  # overdue counts from when it is due now
        task.escalate_at = task.escalate_at + (verdict.due_at - task.due_at)
    task.due_at = verdict.due_at
    task.status = TaskStatus.PENDING
    task.lease_owner = task.lease_until = None
    task.reason = verdict.reason
    task.updated_at = now
    return "deferred"


def _settle(task: SopTask, status: str, reason: str | None, now: datetime) -> None:
    task.status = status
    task.reason = reason
    task.lease_owner = task.lease_until = None
    task.welcome_code = None
    task.completed_at = now
    task.updated_at = now


def _mark_sending(task: SopTask, message: str | None, now: datetime) -> None:
    task.status = TaskStatus.SENDING
    task.lease_until = now + SEND_LEASE
    task.sent_at = now
    task.message = message
    task.updated_at = now


def prepared_from(task: Any, settings: dict[str, Any], message: str | None) -> Prepared:
    """A row ready for WeCom from a task (a row loaded here, or one the welcome lane was handed
    as the add inserted it) and its enrollment's settings."""
    return Prepared(
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


async def _render_held(
    runtime: SopRuntime,
    held: Sequence[Held],
    now: datetime,
    report: TickReport,
) -> list[Prepared]:
    """Render the held rows' templates outside any transaction and off the event loop (one
    may take its whole render budget), then mark each row `sending` with its text, or
    `failed` with why; a row stopped or taken back meanwhile is left as it is."""
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
            if isinstance(result, Exception):
                _settle(task, TaskStatus.FAILED, f"template error: {result}", now)
                failed.add(task.enrollment_id)
                report.failed += 1
                continue
            _mark_sending(task, result, now)
            prepared.message = result
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
    capped = actions_where(capped=True)
    wanted = {t.external_userid for t in tasks if t.action in capped}
    sent: dict[str, list[datetime]] = defaultdict(list)
    if not wanted:
        return sent
    rows = await session.execute(
        select(SopTask.external_userid, SopTask.sent_at).where(
            SopTask.external_userid.in_(wanted),
            SopTask.action.in_(actions_where(to_customer=True)),
            SopTask.status.in_(REACHED),
            SopTask.sent_at >= now - timedelta(days=2),
        )
    )
    for ext, sent_at in rows:
        sent[ext].append(sent_at)
    return sent
