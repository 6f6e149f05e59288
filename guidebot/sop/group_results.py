"""What WeCom says of the group steps' `sent` rows (guidebot.sop.group_sends, `poll`).

A group send: get_groupmsg_task says whether the owner sent it (status 2: `done`, at WeCom's
send_time) and get_groupmsg_send_result lists the groups that got it (only sent rows are
listed for group sends, doc 93338); each group's status only moves forward, so an answer
repeated, or older than one already recorded, changes nothing. A Moments task:
get_moment_task_result until its job finished (moment_id; a job that failed, or that names the
guide invalid, fails the row), then get_moment_task until WeCom says the guide published
(`done`), then get_moment_customer_list for how many customers it was shown to.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import or_, select, update

from guidebot.db.engine import upsert_insert
from guidebot.sop.context import SopRuntime
from guidebot.sop.group_models import GroupSendStatus, SopGroupSend, SopGroupSendChat
from guidebot.sop.group_sends import BATCH, POLL_EVERY, GroupStepReport
from guidebot.wecom.client import WeComError

log = logging.getLogger(__name__)

# WeCom keeps a month of mass sends to list; a row still unconfirmed after that stays `sent`
# and is no longer asked about.
POLL_HORIZON = timedelta(days=30)
OWNER_SENT = 2  # get_groupmsg_task: 0 未发送, 2 已发送
JOB_FINISHED = 3  # get_moment_task_result: 1 started, 2 in progress, 3 finished
# A group's status moves only forward: not listed < other < capped < sent.
_RANK = {0: 0, 2: 1, 3: 2, 1: 3}


async def poll(
    runtime: SopRuntime,
    report: GroupStepReport | None = None,
    *,
    every: timedelta = POLL_EVERY,
) -> GroupStepReport:
    """Ask WeCom about each `sent` row not asked within `every` (the job: POLL_EVERY)."""
    report = report or GroupStepReport()
    now = runtime.clock.now()
    async with runtime.sessions() as session:
        rows = list(
            await session.scalars(
                select(SopGroupSend)
                .where(
                    SopGroupSend.status == GroupSendStatus.SENT,
                    SopGroupSend.due_at >= now - POLL_HORIZON,
                    or_(SopGroupSend.polled_at.is_(None), SopGroupSend.polled_at <= now - every),
                )
                .order_by(SopGroupSend.id)
                .limit(BATCH)
            )
        )
    for row in rows:
        try:
            if row.action == "group_message":
                values = await _group_send(runtime, row)
            else:
                values = await _moment(runtime, row)
        except WeComError as exc:  # 41063 just after creation, a busy WeCom: next poll
            log.info("group step row %d: poll failed (%s); asked again later", row.id, exc)
            values = {}
        values["polled_at"] = now
        if values.get("status") == GroupSendStatus.DONE:
            report.done += 1
        elif values.get("status") == GroupSendStatus.FAILED:
            report.failed += 1
        async with runtime.sessions() as session, session.begin():
            await session.execute(
                update(SopGroupSend)
                .where(SopGroupSend.id == row.id, SopGroupSend.status == GroupSendStatus.SENT)
                .values(**values, updated_at=now)
                .execution_options(synchronize_session=False)
            )
    return report


async def _group_send(runtime: SopRuntime, row: SopGroupSend) -> dict[str, Any]:
    msgid = row.wecom_msgid or ""
    sent_at = None
    async for task in runtime.wecom.iter_groupmsg_task(msgid):
        if task.get("userid") == row.userid and task.get("status") == OWNER_SENT:
            sent_at = _instant(task.get("send_time")) or runtime.clock.now()
    results = [r async for r in runtime.wecom.iter_groupmsg_send_result(msgid, row.userid)]
    await record_group_results(runtime, row.id, results)
    if sent_at is None:
        return {}
    return {"status": GroupSendStatus.DONE, "completed_at": sent_at}


async def record_group_results(
    runtime: SopRuntime, send_id: int, results: list[dict[str, Any]]
) -> int:
    """Each listed group's status, moving only forward; how many groups changed."""
    changed = 0
    async with runtime.sessions() as session, session.begin():
        known = {
            c.chat_id: c
            for c in await session.scalars(
                select(SopGroupSendChat).where(SopGroupSendChat.send_id == send_id)
            )
        }
        insert = upsert_insert(session.bind.dialect.name)
        for result in results:
            chat_id, status = result.get("chat_id"), int(result.get("status") or 0)
            if not chat_id:
                continue
            current = known.get(chat_id)
            if current is None:  # a group the owner added in the client (allow_select)
                await session.execute(
                    insert(SopGroupSendChat)
                    .values(send_id=send_id, chat_id=chat_id, status=0)
                    .on_conflict_do_nothing()
                )
                current = await session.get(SopGroupSendChat, (send_id, chat_id))
                known[chat_id] = current
            if _RANK.get(status, 0) > _RANK.get(current.status, 0):
                current.status = status
                current.send_time = _instant(result.get("send_time"))
                changed += 1
    return changed


async def _moment(runtime: SopRuntime, row: SopGroupSend) -> dict[str, Any]:
    values: dict[str, Any] = {}
    moment_id = row.moment_id
    if moment_id is None:
        job = await runtime.wecom.get_moment_task_result(row.wecom_msgid or "")
        if job.status != JOB_FINISHED:
            return values
        if job.errcode or not job.moment_id:
            return {
                "status": GroupSendStatus.FAILED,
                "reason": f"the Moments job failed ({job.errcode})",
            }
        if row.userid in job.invalid_users:
            return {
                "status": GroupSendStatus.FAILED,
                "moment_id": job.moment_id,
                "reason": "WeCom found the guide outside the app's visible range",
            }
        moment_id = values["moment_id"] = job.moment_id
    published = False
    async for task in runtime.wecom.iter_moment_task(moment_id):
        if task.get("userid") == row.userid and task.get("publish_status") == 1:
            published = True
    if not published:
        return values
    reach = 0
    async for _customer in runtime.wecom.iter_moment_customer_list(moment_id, row.userid):
        reach += 1
    return {
        **values,
        "status": GroupSendStatus.DONE,
        "completed_at": runtime.clock.now(),
        "reach": reach,
    }


def _instant(value: Any) -> datetime | None:
    return datetime.fromtimestamp(int(value), UTC) if value else None


__all__ = ["poll", "record_group_results"]
