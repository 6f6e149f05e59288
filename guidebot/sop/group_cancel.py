"""The group steps' rows of a playbook HQ stopped: paused (`paused: true`), retired (its file
removed) or replaced by another version without the row's step (guidebot.sop.registry.stopped;
a new version that keeps the step keeps its rows). A file disabled by an error is an accident,
not a decision: its rows go on.

While a row's task has not ended (its `expires_at`, the step's due time plus `expire_after`: a
guide's Moments task still unpublished then is missed, and stays so):

* a `pending` row (nothing reached WeCom) is `cancelled` without a call, so a stopped
  playbook sends nothing more;
* a `sent` Moments task the guide has not published is cancelled in WeCom
  (cancel_moment_task, doc 97612 停止发表企业朋友圈: it stops only the executors who have not
  published, and cannot take back a post already published) and closes `cancelled`, not
  missed: it leaves moments_assigned, so the guide's publish rate is not charged with it.
  The moment_id comes from get_moment_task_result once the job finished (a job still being
  dispatched, 41079, is asked again next run); the guide publishing first (get_moment_task
  says so, before or after the cancel) leaves the row to the poll, which makes it `done`;
  WeCom refusing the id (41059 none, 41060 unknown, 41067 not a 企业发表 post) leaves it
  `sent` with the reason, and a transient failure tries again next run.

A `sent` group mass send is left as it is: the owner may already have sent it to some groups.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from sqlalchemy import or_, select, update

from guidebot.sop.context import SopRuntime
from guidebot.sop.group_models import GroupSendStatus, SopGroupSend
from guidebot.sop.group_results import JOB_FINISHED
from guidebot.sop.group_sends import BATCH, GroupStepReport
from guidebot.wecom.client import WeComError

log = logging.getLogger(__name__)

# WeCom's answers that say this moment_id can never be cancelled (doc 90313's table).
REFUSED_IDS = {41059: "no moment_id", 41060: "unknown moment_id", 41067: "not a corp post"}
NOT_CANCELLED = "not cancelled:"  # a refused row's reason: never asked again
WHY = {
    "paused": "the playbook is paused",
    "retired": "the playbook was retired (its file removed)",
    "replaced": "another version of the playbook replaced this one",
}


def cancel_reason(why: str, sent: bool) -> str:
    """The row's reason: `stopped: playbook.<why>` first (the playbook pages count by it)."""
    done = (
        "cancelled in WeCom before the guide published" if sent else "cancelled before it was sent"
    )
    return f"stopped: playbook.{why} ({WHY[why]}); {done}"


async def cancel_stopped(
    runtime: SopRuntime, report: GroupStepReport | None = None
) -> GroupStepReport:
    report = report or GroupStepReport()
    now = runtime.clock.now()
    async with runtime.sessions() as session:
        rows = list(
            await session.scalars(
                select(SopGroupSend)
                .where(
                    or_(
                        SopGroupSend.status == GroupSendStatus.PENDING,
                        (SopGroupSend.status == GroupSendStatus.SENT)
                        & (SopGroupSend.action == "moment_task"),
                    ),
                    or_(SopGroupSend.expires_at.is_(None), SopGroupSend.expires_at > now),
                    or_(
                        SopGroupSend.reason.is_(None),
                        ~SopGroupSend.reason.startswith(NOT_CANCELLED, autoescape=True),
                    ),
                )
                .order_by(SopGroupSend.id)
            )
        )
    asked = 0
    for row in rows:
        why = runtime.registry.stopped(row.playbook_id, row.playbook_version)
        if why is None or (why == "replaced" and _kept(runtime, row)):
            continue
        if row.status == GroupSendStatus.PENDING:
            values: dict[str, Any] | None = {"reason": cancel_reason(why, sent=False)}
        elif asked < BATCH:  # WeCom calls: the rest next run
            asked += 1
            values = await _cancel_in_wecom(runtime, row, why)
        else:
            continue
        if values is not None and await _close(runtime, row, values, now):
            report.cancelled += 1
    return report


def _kept(runtime: SopRuntime, row: SopGroupSend) -> bool:
    """Whether the version now loaded still has the row's step, with the same action: an edit
    elsewhere in the file (a wording, another step) is no reason to take back this week's task,
    and the new version will not plan this occurrence again."""
    current = runtime.registry.get(row.playbook_id)
    return current is not None and any(
        step.id == row.step_id and step.action == row.action for step in current.steps
    )


async def _cancel_in_wecom(
    runtime: SopRuntime, row: SopGroupSend, why: str
) -> dict[str, Any] | None:
    """What to write on the row (None: nothing yet; its status is `cancelled` unless the
    values say otherwise)."""
    moment_id = row.moment_id
    try:
        if moment_id is None:
            job = await runtime.wecom.get_moment_task_result(row.wecom_msgid or "")
            if job.status != JOB_FINISHED or job.errcode or not job.moment_id:
                return None  # still being dispatched (the poll settles a failed job)
            moment_id = job.moment_id
        if await _published(runtime, moment_id, row.userid):
            return None  # the guide published: the poll makes it done
        await runtime.wecom.cancel_moment_task(moment_id)
        if await _published(runtime, moment_id, row.userid):
            return None  # published meanwhile: WeCom keeps the post, the poll makes it done
    except WeComError as exc:
        if exc.errcode in REFUSED_IDS:
            log.warning("group step row %d: WeCom refused the cancel (%s)", row.id, exc)
            return {
                "status": GroupSendStatus.SENT,
                "moment_id": moment_id,
                "reason": f"{NOT_CANCELLED} WeCom says {REFUSED_IDS[exc.errcode]} ({exc})",
            }
        log.info("group step row %d: cancel failed (%s); tried again next run", row.id, exc)
        return None
    return {"moment_id": moment_id, "reason": cancel_reason(why, sent=True)}


async def _published(runtime: SopRuntime, moment_id: str, userid: str) -> bool:
    async for task in runtime.wecom.iter_moment_task(moment_id):
        if task.get("userid") == userid and task.get("publish_status") == 1:
            return True
    return False


async def _close(
    runtime: SopRuntime, row: SopGroupSend, values: dict[str, Any], now: datetime
) -> bool:
    """The row `cancelled` (or as `values` say) if it is still as we read it; True when it
    was cancelled."""
    status = values.pop("status", GroupSendStatus.CANCELLED)
    cancelled = status == GroupSendStatus.CANCELLED
    async with runtime.sessions() as session, session.begin():
        result = await session.execute(
            update(SopGroupSend)
            .where(SopGroupSend.id == row.id, SopGroupSend.status == row.status)
            .values(
                status=status,
                **values,
                **({"completed_at": now} if cancelled else {}),
                updated_at=now,
            )
            .execution_options(synchronize_session=False)
        )
    return cancelled and result.rowcount == 1


__all__ = ["cancel_reason", "cancel_stopped"]
