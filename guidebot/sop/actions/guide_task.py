"""guide_task: a mass-send task (add_msg_template) the guide confirms in WeCom.

One add_msg_template per guide, step and text, with the list of customers; then a textcard
reminding the guide to confirm. The task is `sent` until get_groupmsg_send_result says the
customer got it (done), is not a friend (failed) or hit their monthly cap (failed, recorded,
not retried): guidebot.sop.results polls it. At send time the customer's daily cap defers it
to the next day in the window.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime, time

from guidebot.sop.actions.base import (
    ActionRuntime,
    GuideFacing,
    Outcome,
    Prepared,
    SendTime,
    Shared,
    Verdict,
    clip,
    not_sent,
    transient,
    window_gate,
)
from guidebot.sop.models import SopTask, TaskStatus
from guidebot.sop.timing import local_day_bounds, next_window_day
from guidebot.wecom.client import WeComError, WeComUncertain

log = logging.getLogger(__name__)

NO_RECIPIENTS = 41048
MAX_RECIPIENTS = 10_000  # add_msg_template's external_userid limit


class GuideTask(GuideFacing):
    name = "guide_task"
    to_customer = True
    takes_content = True
    timed = True
    capped = True
    order = 1
    describe = "guide_task (a mass-send task the guide confirms)"

    def gate(self, task: SopTask, at: SendTime) -> Verdict | None:
        held = window_gate(task, at)
        if held is not None:
            return held
        cap = int(at.settings.get("max_messages_per_day") or 1)
        day_start, day_end = local_day_bounds(at.now, at.zone)
        count = sum(day_start <= t < day_end for t in at.reached.get(task.external_userid, ()))
        if count < cap:
            return None
        # A best_time step keeps the customer's hour (the one it was placed at) the next day.
        hour = time(0)
        if task.step_id in at.settings.get("best_time", ()):
            hour = task.due_at.astimezone(at.zone).time()
        new_due = next_window_day(at.now, at.window, at.zone, hour)
        return Verdict(
            TaskStatus.PENDING,
            f"deferred to {new_due.astimezone(at.zone):%Y-%m-%d %H:%M} {at.zone.key}: "
            f"the customer already got {count} message(s) today (cap {cap})",
            due_at=new_due,
            shift=True,
        )

    def batches(self, rows: Sequence[Prepared]) -> list[list[Prepared]]:
        """A guide's customers who get the same text of one step share a call."""
        groups: dict[tuple[str, str, str, str], list[Prepared]] = defaultdict(list)
        for row in rows:
            groups[(row.guide_userid, row.playbook_id, row.step_id, row.message or "")].append(row)
        return [
            group[start : start + MAX_RECIPIENTS]
            for group in groups.values()
            for start in range(0, len(group), MAX_RECIPIENTS)
        ]

    async def execute(
        self, runtime: ActionRuntime, rows: Sequence[Prepared], now: datetime, shared: Shared
    ) -> list[Outcome]:
        return await create_guide_task(runtime, rows, now)

    def reconcile(self, task: SopTask) -> tuple[str, str]:
        # Looked up in WeCom first (guidebot.sop.reconcile); this is for one not found there.
        return (
            "unknown",
            "interrupted during the WeCom call and not found in WeCom's mass-send "
            "list; not resent (check with the guide)",
        )


async def create_guide_task(
    runtime: ActionRuntime, rows: Sequence[Prepared], now: datetime
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
        if transient(exc):
            return [not_sent(r, exc, now, "mass-send task") for r in rows]
        reason = (
            "WeCom found no customer it could send to (41048)"
            if exc.errcode == NO_RECIPIENTS
            else f"mass-send task refused: {exc}"
        )
        return [Outcome(r.id, r.enrollment_id, TaskStatus.FAILED, reason) for r in rows]
    failed = set(answer.fail_list)
    outcomes = [
        Outcome(
            r.id,
            r.enrollment_id,
            TaskStatus.FAILED,
            "WeCom cannot send to this customer (in add_msg_template's fail_list)",
            wecom_msgid=answer.msgid,
        )
        if r.external_userid in failed
        else Outcome(
            r.id,
            r.enrollment_id,
            TaskStatus.SENT,
            wecom_msgid=answer.msgid,
            result={"msgid": answer.msgid, "send_status": 0},
        )
        for r in rows
    ]
    waiting = [r for r in rows if r.external_userid not in failed]
    if waiting:
        await _remind_guide(
            runtime,
            waiting[0],
            title=f"{first.playbook_name}: 群发任务待确认",
            description=f"{len(waiting)} 位客户待发送。{_excerpt(first.message)}",
        )
    return outcomes


async def _remind_guide(
    runtime: ActionRuntime, row: Prepared, *, title: str, description: str
) -> None:
    """Tell the guide a mass-send task waits for them; at least once, failures only logged."""
    try:
        await runtime.wecom.send_textcard(
            row.guide_userid,
            title=clip(title, 120),
            description=clip(description, 500),
            url=runtime.task_url(row.id),
            btntxt="去发送",
            at_least_once=True,
        )
    except WeComError as exc:
        log.warning("could not remind %s of task %d: %s", row.guide_userid, row.id, exc)
    except Exception:
        # The mass-send task exists by now: its rows' outcomes must not be lost to this.
        log.exception("could not remind %s of task %d", row.guide_userid, row.id)


def _excerpt(text: str | None) -> str:
    return clip((text or "").replace("\n", " "), 300)


ACTION = GuideTask()
