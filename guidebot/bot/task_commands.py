"""What a guide tells the bot about a task: 完成 N (done N), 跳过 N 原因 (skip N reason),
稍后 N 2h (snooze N 2h). N is the number the task list shows (the task's own number, so it
stays the same however the list changes). Only the guide's own tasks; each change is recorded
as the bot's, by that guide (guidebot.sop.task_marks).

These answers change something, so they run inside a transaction that commits with the
reply's row (guidebot.bot.handlers): a message is acted on once, however often WeCom repeats it.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from guidebot.bot import commands
from guidebot.bot.commands import Command
from guidebot.contacts.models import Customer
from guidebot.sop import queries
from guidebot.sop.models import CompletedBy
from guidebot.sop.task_marks import (
    TaskConflict,
    TaskNotFound,
    complete_task,
    parse_delay,
    skip_task,
    snooze_task,
)

_NUMBER = re.compile(r"#?(\d{1,18})(?:\s+(.*))?", re.S)

TEXT: dict[str, dict[str, Any]] = {
    "zh": {
        "ask": {
            commands.DONE: "请写上任务编号，例如：完成 12（发送「任务」查看编号）",
            commands.SKIP: "请写上任务编号和原因，例如：跳过 12 客户出差",
            commands.SNOOZE: "请写上任务编号和推迟多久，例如：稍后 12 2h",
        },
        "ask_reason": "请写上跳过的原因，例如：跳过 {n} 客户出差",
        "ask_delay": "请写上推迟多久，例如：稍后 {n} 2h（可写 30m、2h、1d、2小时、1天）",
        "bad_delay": "没看懂「{d}」：请写 30m、2h、1d（或 30分钟、2小时、1天），最长 7 天",
        "no_task": "你没有编号为 {n} 的任务（发送「任务」查看编号）",
        "done": "已完成 ✓ #{n} {what}",
        "skip": "已跳过 #{n} {what}\n原因：{reason}",
        "snooze": "已推迟到 {when} · #{n} {what}",
        "conflict": "任务 #{n} {status}，不能再更改",
        "status": {
            "done": "已完成",
            "skipped": "已跳过",
            "expired": "已过期",
            "failed": "发送失败",
            "sending": "正在发送",
            "unknown": "结果未知",
        },
    },
    "en": {
        "ask": {
            commands.DONE: "Write the task's number, e.g. done 12 (send “tasks” for the numbers)",
            commands.SKIP: "Write the task's number and why, e.g. skip 12 customer away",
            commands.SNOOZE: "Write the task's number and how long, e.g. snooze 12 2h",
        },
        "ask_reason": "Say why you skip it, e.g. skip {n} customer away",
        "ask_delay": "Say how long to put it off, e.g. snooze {n} 2h (30m, 2h, 1d)",
        "bad_delay": "“{d}” is not a delay: write 30m, 2h or 1d, at most 7 days",
        "no_task": "You have no task number {n} (send “tasks” for the numbers)",
        "done": "Done ✓ #{n} {what}",
        "skip": "Skipped #{n} {what}\nReason: {reason}",
        "snooze": "Put off until {when} · #{n} {what}",
        "conflict": "Task #{n} is {status}; it cannot be changed now",
        "status": {
            "done": "done",
            "skipped": "skipped",
            "expired": "expired",
            "failed": "failed",
            "sending": "being sent",
            "unknown": "of unknown outcome",
        },
    },
}


async def task_command(
    session: AsyncSession, guide: str, command: Command, *, now: datetime, zone
) -> str:
    """Carry out 完成 / 跳过 / 稍后 on one of the guide's tasks; the answer's text."""
    words = TEXT[command.lang]
    match = _NUMBER.fullmatch(command.arg.strip())
    if match is None:
        return words["ask"][command.name]
    number, rest = int(match.group(1)), (match.group(2) or "").strip()
    view = await queries.get_task(session, number)
    if view is None or view.guide_userid != guide:
        return words["no_task"].format(n=number)
    actor = {"by": CompletedBy.BOT, "guide_userid": guide, "who": guide}
    try:
        if command.name == commands.DONE:
            await complete_task(session, number, now=now, **actor)
            answer = words["done"]
        elif command.name == commands.SKIP:
            if not rest:
                return words["ask_reason"].format(n=number)
            await skip_task(session, number, rest[:500], now, **actor)
            answer = words["skip"]
        else:
            if not rest:
                return words["ask_delay"].format(n=number)
            try:
                delay = parse_delay(rest)
            except ValueError:
                return words["bad_delay"].format(d=rest[:20])
            task = await snooze_task(session, number, delay, now, **actor)
            answer = words["snooze"].replace(
                "{when}", f"{task.due_at.astimezone(zone):%m-%d %H:%M}"
            )
    except TaskNotFound:
        return words["no_task"].format(n=number)
    except TaskConflict:
        status = words["status"].get(view.status, view.status)
        return words["conflict"].format(n=number, status=status)
    except ValueError:
        return words["bad_delay"].format(d=rest[:20])
    return answer.format(n=number, what=await describe(session, view, command.lang), reason=rest)


async def describe(session: AsyncSession, view: queries.TaskView, lang: str) -> str:
    """ "陈女士 · 新客 7 天跟进 · 第3天回访": the customer, the playbook and the step, by name."""
    customer = await session.get(Customer, view.external_userid)
    name = (customer.name if customer is not None else None) or view.external_userid
    return f"{name} · {view.playbook_name} · {view.step_name(lang)}"
