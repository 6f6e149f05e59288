"""Executing prepared rows in WeCom, and recording what WeCom answered.

Every call here runs with no database transaction open; the rows were marked `sending` and
committed first (guidebot.sop.prepare). Each action's module makes its own calls
(guidebot.sop.actions); outcomes are then written in one transaction, each guarded by
`status = 'sending'`.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Awaitable, Sequence
from datetime import datetime

from sqlalchemy import bindparam, update

from guidebot.db.direct import Direct
from guidebot.db.parking import describe_error, is_outage
from guidebot.sop.actions import action_for
from guidebot.sop.actions.base import Outcome, Prepared, Shared, TickReport
from guidebot.sop.completion import complete_enrollments
from guidebot.sop.context import SopRuntime
from guidebot.sop.models import SopTask, TaskStatus

log = logging.getLogger(__name__)

_tasks = SopTask.__table__
OUTCOME_WAITS = (0.5, 1.0, 2.0, 4.0, 8.0, 15.0, 30.0)  # seconds between tries to record outcomes

# On the driver in the welcome lane (db.direct); SQLAlchemy's elsewhere.
SETTLE = Direct(
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
RETRY = Direct(
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


async def execute(
    runtime: SopRuntime, rows: Sequence[Prepared], now: datetime, report: TickReport
) -> None:
    """Call WeCom for every prepared row, then record every outcome in one transaction.

    A call that raises something unexpected settles only its own rows (_unexpected); the
    other rows' outcomes are recorded all the same."""
    gate = asyncio.Semaphore(runtime.concurrency)
    shared = Shared()
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

    by_action: dict[str, list[Prepared]] = defaultdict(list)
    for row in rows:
        if action_for(row.action) is None:
            reason = f"unknown action {row.action}"
            outcomes.append(Outcome(row.id, row.enrollment_id, TaskStatus.FAILED, reason))
        else:
            by_action[row.action].append(row)
    jobs: list[tuple[Sequence[Prepared], Awaitable[list[Outcome]]]] = []
    for name, mine in by_action.items():
        action = action_for(name)
        assert action is not None
        for part in action.batches(mine):
            jobs.append((part, action.execute(runtime, part, now, shared)))
    await asyncio.gather(*(guarded(part, job) for part, job in jobs))
    report.wecom_calls += len(jobs)
    await record_outcomes(runtime, outcomes, now, report)


def _unexpected(row: Prepared, exc: Exception) -> Outcome:
    """A call that raised what no branch expects. A message to a customer may have reached
    WeCom before it did: `unknown`, never resent (rule 6). A reminder or a tag: `failed`."""
    error = describe_error(exc)
    action = action_for(row.action)
    if action is not None and action.to_customer:
        return Outcome(
            row.id,
            row.enrollment_id,
            TaskStatus.UNKNOWN,
            f"unexpected error while sending ({error}); WeCom may or may not have acted: "
            "not resent (check with the guide)",
        )
    return Outcome(row.id, row.enrollment_id, TaskStatus.FAILED, f"unexpected error: {error}")


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
    # WeCom has acted: what it answered is known only here. A database that is away (restarting,
    # failing over) gets the same write again until it is back, within about a minute; losing
    # it would leave the rows `sending` for good, sent but never marked so.
    for pause in (*OUTCOME_WAITS, None):
        try:
            async with runtime.sessions() as session, session.begin():
                if settle:
                    await SETTLE.execute_many(session, settle)
                if retry:
                    await RETRY.execute_many(session, retry)
                await _record_effects(session, outcomes)
                await complete_enrollments(session, {o.enrollment_id for o in outcomes}, now)
            return
        except Exception as exc:
            if pause is None or not is_outage(exc):
                raise
            log.warning(
                "sop: recording %s outcome(s) failed (%s); trying again in %s s",
                len(outcomes),
                describe_error(exc),
                pause,
            )
            await runtime.clock.sleep(pause)


async def _record_effects(session, outcomes: Sequence[Outcome]) -> None:
    """What WeCom did that guidebot keeps a record of (a tag step's tag). Each in a savepoint:
    one that fails is logged and the outcomes are recorded all the same."""
    for outcome in outcomes:
        if outcome.record is None:
            continue
        try:
            async with session.begin_nested():
                await outcome.record(session)
        except Exception:
            log.exception("recording what task %s did failed; its outcome stands", outcome.id)


__all__ = ["RETRY", "SETTLE", "execute", "record_outcomes"]
