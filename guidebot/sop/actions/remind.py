"""remind: a textcard to the guide linking to the task (at least once: a duplicate is fine).

The guide acts on it and marks it done (or skips it) from the task list. A remind step
without a template sends the playbook's name, the customer and the step.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from guidebot.sop.actions.base import (
    ActionRuntime,
    GuideFacing,
    Outcome,
    Prepared,
    Shared,
    clip,
    not_sent,
    transient,
)
from guidebot.sop.models import SopTask, TaskStatus
from guidebot.wecom.client import WeComError, WeComUncertain


class Remind(GuideFacing):
    name = "remind"
    order = 2
    describe = "remind (an app message to the guide)"

    def default_message(self, task: SopTask, variables: Mapping[str, Any]) -> str | None:
        name = variables["playbook"]["name"]
        return f"{name}: {variables['customer']['name']} ({variables['step']['name']})"

    async def execute(
        self, runtime: ActionRuntime, rows: Sequence[Prepared], now: datetime, shared: Shared
    ) -> list[Outcome]:
        return [await send_reminder(runtime, row, now) for row in rows]

    def reconcile(self, task: SopTask) -> tuple[str, str]:
        return "retry", "interrupted before WeCom answered; due again (reminders may repeat)"


async def send_reminder(runtime: ActionRuntime, row: Prepared, now: datetime) -> Outcome:
    try:
        await runtime.wecom.send_textcard(
            row.guide_userid,
            title=clip(row.playbook_name, 120),
            description=clip(row.message or row.playbook_name, 500),
            url=runtime.task_url(row.id),
            btntxt="查看",
            at_least_once=True,
        )
    except WeComError as exc:
        if transient(exc) or isinstance(exc, WeComUncertain):
            return not_sent(row, exc, now, "reminder")
        return Outcome(row.id, row.enrollment_id, TaskStatus.FAILED, f"reminder refused: {exc}")
    # The guide acts on it and marks it done (or skips it) from the task list.
    return Outcome(row.id, row.enrollment_id, TaskStatus.SENT)


ACTION = Remind()
