"""After a crash: rows left in `sending` by a process that died mid-call.

A guide task is looked up in WeCom (get_groupmsg_list_v2 by time window, then the task's send
list for this guide); found → sent, else its action says what it is (unknown). A welcome
cannot be checked → unknown. Reminders and tags may repeat → due again. Nothing to a customer
is resent (rule 6).
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select

from guidebot.db.parking import describe_error, is_row_error, isolating, park, unparked
from guidebot.sop.actions import action_for
from guidebot.sop.completion import complete_enrollments
from guidebot.sop.context import SopRuntime
from guidebot.sop.execute import RETRY, SETTLE
from guidebot.sop.models import Action, SopTask, TaskStatus
from guidebot.sop.prepare import SEND_LEASE
from guidebot.sop.queue import TASKS_TABLE
from guidebot.wecom.client import WeComError

log = logging.getLogger(__name__)

# The periodic job's name (guidebot.sop.jobs), as the rows it parks are filed under.
RECONCILE_JOB = "sop-reconcile"


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
    found, broken = await _look_up_guide_tasks(runtime, rows, now, report)
    params = _verdicts(rows, found, broken, now)
    failed = await _write(runtime, rows, params, broken, now)
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


async def _look_up_guide_tasks(
    runtime: SopRuntime, rows: Sequence[SopTask], now: datetime, report: ReconcileReport
) -> tuple[dict[int, str], dict[int, Exception]]:
    """Guide tasks found in WeCom: (task id -> msgid, "" when the lookup failed and the row
    stays in `sending` for next time; rows whose guide's lookup broke on them)."""
    found: dict[int, str] = {}
    broken: dict[int, Exception] = {}
    by_guide: dict[str, list[SopTask]] = defaultdict(list)
    for row in rows:
        if row.action == Action.GUIDE_TASK:
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
    return found, broken


def _verdicts(
    rows: Sequence[SopTask], found: dict[int, str], broken: dict[int, Exception], now: datetime
) -> dict[int, tuple[str, dict[str, Any]]]:
    """task id -> ("settle" or "retry", the statement's values)."""
    params: dict[int, tuple[str, dict[str, Any]]] = {}
    for row in rows:
        if row.id in broken:
            continue
        msgid = found.get(row.id)
        if msgid == "":
            continue
        if msgid:
            params[row.id] = ("settle", _settle_params(row.id, TaskStatus.SENT, None, msgid, now))
            continue
        action = action_for(row.action)
        kind, reason = (
            action.reconcile(row)
            if action is not None
            else ("retry", "interrupted before WeCom answered; due again (idempotent)")
        )
        if kind == "retry":
            values = {"b_id": row.id, "b_reason": reason, "b_due": now, "b_now": now}
            params[row.id] = ("retry", values)
        else:
            params[row.id] = (
                "settle",
                _settle_params(row.id, TaskStatus.UNKNOWN, reason, None, now),
            )
    return params


async def _write(
    runtime: SopRuntime,
    rows: Sequence[SopTask],
    params: dict[int, tuple[str, dict[str, Any]]],
    broken: dict[int, Exception],
    now: datetime,
) -> set[int] | list[int]:
    """Park the broken rows and write the others, each apart; the ids that failed to write."""
    by_id = {row.id: row for row in rows}
    async with runtime.sessions() as session, session.begin():

        async def write(ids: Sequence[int]) -> list[int]:
            settle = [params[i][1] for i in ids if params[i][0] == "settle"]
            retry = [params[i][1] for i in ids if params[i][0] == "retry"]
            if settle:
                await SETTLE.execute_many(session, settle)
            if retry:
                await RETRY.execute_many(session, retry)
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
                detail=task_detail(by_id[task_id]),
            )
        _, failed = await isolating(
            session,
            sorted(params),
            write,
            job=RECONCILE_JOB,
            table=TASKS_TABLE,
            key=int,
            now=now,
            detail=lambda i: task_detail(by_id[i]),
        )
    return failed


def task_detail(task: SopTask, msgid: str | None = None) -> str:
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


__all__ = ["RECONCILE_JOB", "ReconcileReport", "reconcile_sending", "task_detail"]
