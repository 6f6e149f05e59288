"""Sending, polling and settling the group steps' rows (guidebot.sop.group_models).

* `run_due`: a due `pending` row is claimed by one UPDATE (pending → sending, attempts + 1,
  the text it will send written in) and committed before the WeCom call (architecture rule 6);
  then add_msg_template with chat_type group (sender: the owner, chat_id_list: the picked
  groups) or add_moment_task (the guide alone as executor); the answer makes it `sent`. A
  refusal WeCom certainly did not act on makes it pending again (or failed after
  MAX_ATTEMPTS); an answer lost in transit makes it `unknown`, never resent. The text is the
  library item's, with its tracked link carrying the send (`via` group:<id> / moment:<id>).
* `settle_stale`: a row left `sending` by a dead process is looked up in WeCom by its own
  tracked link (a group send's link card, a Moments post's text): found, it is `sent` with
  WeCom's id; not found, `unknown`.
* `poll`: `sent` rows ask WeCom. A group send: get_groupmsg_task says whether the owner sent
  (then `done`), get_groupmsg_send_result which groups got it (status per group, moving only
  forward, so a repeated or late answer changes nothing). A Moments task:
  get_moment_task_result until the job finished (the moment_id), then get_moment_task until
  WeCom says the guide published (`done`), then get_moment_customer_list for its reach.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select, update

from guidebot.content.links import link_url, mint
from guidebot.content.models import ContentItem
from guidebot.db.parking import park_apart, unparked
from guidebot.sop.actions.base import MAX_ATTEMPTS, clip, retry_at, transient
from guidebot.sop.context import SopRuntime
from guidebot.sop.group_models import GroupSendStatus, SopGroupSend, SopGroupSendChat
from guidebot.sop.messages import content_items
from guidebot.wecom.client import WeComError, WeComUncertain

log = logging.getLogger(__name__)

STALE_SENDING = timedelta(minutes=2)  # a claim older than this belongs to a dead process
POLL_EVERY = timedelta(minutes=5)
BATCH = 100
JOB = "sop-group-steps"  # the job's name; rows it parks are filed under it
# add_moment_task: 10 a minute per corp (doc 95094); the job runs every 30 s.
MOMENTS_PER_RUN = 5
FREQUENCY_LIMIT = 45009


@dataclass
class GroupStepReport:
    sent: int = 0
    done: int = 0
    failed: int = 0
    unknown: int = 0
    expired: int = 0
    retried: int = 0
    settled: int = 0  # rows found `sending` after a crash and settled
    cancelled: int = 0  # rows of a playbook HQ stopped (guidebot.sop.group_cancel)


def _via(row: SopGroupSend) -> str:
    return f"{'group' if row.action == 'group_message' else 'moment'}:{row.id}"


def compose(runtime: SopRuntime, row: SopGroupSend, item: ContentItem, now: datetime):
    """(text, attachments, url): the item's words and its tracked link carrying the send."""
    token, _claims = mint(
        runtime.settings.secret_key,
        item_id=item.id,
        guide=row.userid,
        step=row.step_id,
        now=now,
        via=_via(row),
    )
    url = link_url(runtime.settings.public_url, token)
    words = item.body or "\n".join(p for p in (item.title, item.summary) if p)
    if row.action == "moment_task":
        # A Moments link needs a cover uploaded for Moments: the tracked URL goes in the text.
        return f"{words[: 1990 - len(url)]}\n{url}", [], url
    link = {"title": clip(item.title, 128), "url": url}
    if item.summary:
        link["desc"] = clip(item.summary, 512)
    if item.cover_url and item.cover_url.startswith("http"):
        link["picurl"] = item.cover_url
    return clip(words, 4000), [{"msgtype": "link", "link": link}], url


async def run_due(runtime: SopRuntime, report: GroupStepReport | None = None) -> GroupStepReport:
    report = report or GroupStepReport()
    now = runtime.clock.now()
    due: list[int] = []
    async with runtime.sessions() as session:
        for action, limit in (("group_message", BATCH), ("moment_task", MOMENTS_PER_RUN)):
            due += await session.scalars(
                select(SopGroupSend.id)
                .where(
                    SopGroupSend.status == GroupSendStatus.PENDING,
                    SopGroupSend.action == action,
                    SopGroupSend.due_at <= now,
                    unparked(JOB, SopGroupSend.__tablename__, SopGroupSend.id),
                )
                .order_by(SopGroupSend.due_at, SopGroupSend.id)
                .limit(limit)
            )
    for send_id in due:
        try:
            await _run_one(runtime, send_id, report)
        except Exception as exc:  # a row's own fault is parked; the database's fails the run
            await park_apart(
                runtime.sessions,
                exc,
                job=JOB,
                table=SopGroupSend.__tablename__,
                key=send_id,
                now=now,
                detail=f"group step row {send_id}",
            )
    return report


async def _claim(runtime: SopRuntime, send_id: int, now: datetime, report: GroupStepReport):
    """The row marked `sending` with its text and committed, or None (not ours to send)."""
    async with runtime.sessions() as session, session.begin():
        row = await session.get(SopGroupSend, send_id)
        if row is None or row.status != GroupSendStatus.PENDING:
            return None
        if row.expires_at is not None and now > row.expires_at:
            row.status, row.reason, row.updated_at = (
                GroupSendStatus.EXPIRED,
                "not sent before the step expired (an outage); skipped rather than sent late",
                now,
            )
            report.expired += 1
            return None
        items = await content_items(session, {row.content or ""}, now)
        item = items.get(row.content or "")
        if item is None:
            row.status, row.updated_at = GroupSendStatus.FAILED, now
            row.reason = f"library item {row.content!r} not found or not live"
            report.failed += 1
            return None
        text, attachments, url = compose(runtime, row, item, now)
        claimed = await session.execute(
            update(SopGroupSend)
            .where(SopGroupSend.id == send_id, SopGroupSend.status == GroupSendStatus.PENDING)
            .values(
                status=GroupSendStatus.SENDING,
                attempts=SopGroupSend.attempts + 1,
                message=text,
                link_url=url,
                sent_at=now,
                updated_at=now,
            )
            .execution_options(synchronize_session=False)
        )
        if claimed.rowcount != 1:
            return None  # another instance claimed it first
        chats = list(
            await session.scalars(
                select(SopGroupSendChat.chat_id)
                .where(SopGroupSendChat.send_id == send_id)
                .order_by(SopGroupSendChat.chat_id)
            )
        )
        return row.action, row.userid, row.attempts + 1, text, attachments, chats


async def _run_one(runtime: SopRuntime, send_id: int, report: GroupStepReport) -> None:
    now = runtime.clock.now()
    claimed = await _claim(runtime, send_id, now, report)
    if claimed is None:
        return
    action, userid, attempts, text, attachments, chats = claimed
    values: dict[str, Any] = {}
    try:
        if action == "group_message":
            answer = await runtime.wecom.add_msg_template(
                chat_type="group",
                sender=userid,
                chat_ids=chats,
                text=text,
                attachments=attachments,
            )
            values = {"status": GroupSendStatus.SENT, "wecom_msgid": answer.msgid}
        else:
            jobid = await runtime.wecom.add_moment_task(text=text, users=[userid])
            values = {"status": GroupSendStatus.SENT, "wecom_msgid": jobid}
        report.sent += 1
    except WeComUncertain as exc:
        values = {
            "status": GroupSendStatus.UNKNOWN,
            "reason": f"the task may have been created ({exc.errmsg}); not resent",
        }
        report.unknown += 1
    except WeComError as exc:
        values = _refused(exc, attempts, now, report)
    async with runtime.sessions() as session, session.begin():
        await session.execute(
            update(SopGroupSend)
            .where(SopGroupSend.id == send_id, SopGroupSend.status == GroupSendStatus.SENDING)
            .values(**values, updated_at=runtime.clock.now())
            .execution_options(synchronize_session=False)
        )


def _refused(
    exc: WeComError, attempts: int, now: datetime, report: GroupStepReport
) -> dict[str, Any]:
    """WeCom certainly did not act: pending again later, or failed."""
    if exc.errcode == FREQUENCY_LIMIT:  # the corp's budget, not this row: no attempt spent
        report.retried += 1
        return {
            "status": GroupSendStatus.PENDING,
            "due_at": now + timedelta(minutes=1),
            "attempts": attempts - 1,
            "reason": f"not sent, WeCom's frequency limit: {exc}",
        }
    if transient(exc) and attempts < MAX_ATTEMPTS:
        report.retried += 1
        return {
            "status": GroupSendStatus.PENDING,
            "due_at": retry_at(now, attempts),
            "reason": f"not sent, retrying: {exc}",
        }
    report.failed += 1
    reason = (
        "none of the picked groups is the owner's any more (41048)"
        if exc.errcode == 41048
        else f"refused by WeCom: {exc}"
    )
    return {"status": GroupSendStatus.FAILED, "reason": reason}


async def settle_stale(
    runtime: SopRuntime, report: GroupStepReport | None = None
) -> GroupStepReport:
    """Rows left `sending` by a dead process: found in WeCom by their text, or `unknown`."""
    report = report or GroupStepReport()
    now = runtime.clock.now()
    async with runtime.sessions() as session:
        stale = list(
            await session.scalars(
                select(SopGroupSend).where(
                    SopGroupSend.status == GroupSendStatus.SENDING,
                    SopGroupSend.sent_at < now - STALE_SENDING,
                )
            )
        )
    for row in stale:
        try:
            found = await _find_in_wecom(runtime, row, now)
        except WeComError as exc:
            log.warning(
                "group step row %d: WeCom lookup failed (%s); tried again later", row.id, exc
            )
            continue
        values: dict[str, Any]
        if found is not None:
            values = {"status": GroupSendStatus.SENT, **found}
        else:
            values = {
                "status": GroupSendStatus.UNKNOWN,
                "reason": "interrupted during the WeCom call and not found in WeCom; not "
                "resent (check with the guide)",
            }
            report.unknown += 1
        async with runtime.sessions() as session, session.begin():
            await session.execute(
                update(SopGroupSend)
                .where(SopGroupSend.id == row.id, SopGroupSend.status == GroupSendStatus.SENDING)
                .values(**values, updated_at=now)
                .execution_options(synchronize_session=False)
            )
        report.settled += 1
    return report


async def _find_in_wecom(runtime: SopRuntime, row: SopGroupSend, now: datetime):
    """WeCom's id for the task this row's text made, or None."""
    start = (row.sent_at or now) - timedelta(minutes=1)
    cursor = ""
    while True:
        if row.action == "group_message":
            page = await runtime.wecom.get_groupmsg_list_v2(
                chat_type="group", start_time=start, end_time=now, filter_type=0, cursor=cursor
            )
            for task in page.items:
                if row.link_url in _links(task):
                    return {"wecom_msgid": task["msgid"]}
        else:
            page = await runtime.wecom.get_moment_list(
                start_time=start,
                end_time=now + timedelta(seconds=1),
                filter_type=0,
                cursor=cursor,
            )
            for moment in page.items:
                if (moment.get("text") or {}).get("content") == row.message:  # holds the link
                    return {"moment_id": moment["moment_id"]}
        if not page.next_cursor:
            return None
        cursor = page.next_cursor


def _links(task: dict[str, Any]) -> set[str]:
    return {
        (a.get("link") or {}).get("url", "")
        for a in task.get("attachments") or ()
        if isinstance(a, dict) and a.get("msgtype") == "link"
    }


__all__ = ["BATCH", "POLL_EVERY", "GroupStepReport", "compose", "run_due", "settle_stale"]
