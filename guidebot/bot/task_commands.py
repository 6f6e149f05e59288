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

from guidebot import i18n
from guidebot.bot import commands
from guidebot.bot.commands import Command
from guidebot.contacts.models import Customer
from guidebot.i18n import NP_
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

# The words, English as the catalogs' msgids (guidebot/locale, context "bot"); TEXT has
# them in each language the bot answers in, by the command's language ("zh" or "en").
WORDS: dict[str, Any] = {
    "ask": {
        commands.DONE: NP_(
            "bot", "Write the task's number, e.g. done 12 (send “tasks” for the numbers)"
        ),
        commands.SKIP: NP_("bot", "Write the task's number and why, e.g. skip 12 customer away"),
        commands.SNOOZE: NP_("bot", "Write the task's number and how long, e.g. snooze 12 2h"),
    },
    "ask_reason": NP_("bot", "Say why you skip it, e.g. skip {n} customer away"),
    "ask_delay": NP_("bot", "Say how long to put it off, e.g. snooze {n} 2h (30m, 2h, 1d)"),
    "bad_delay": NP_("bot", "“{d}” is not a delay: write 30m, 2h or 1d, at most 7 days"),
    "no_task": NP_("bot", "You have no task number {n} (send “tasks” for the numbers)"),
    "done": NP_("bot", "Done ✓ #{n} {what}"),
    "skip": NP_("bot", "Skipped #{n} {what}\nReason: {reason}"),
    "snooze": NP_("bot", "Put off until {when} · #{n} {what}"),
    "conflict": NP_("bot", "Task #{n} is {status}; it cannot be changed now"),
    "status": {
        "done": NP_("bot", "done"),
        "skipped": NP_("bot", "skipped"),
        "expired": NP_("bot", "expired"),
        "failed": NP_("bot", "failed"),
        "sending": NP_("bot", "being sent"),
        "unknown": NP_("bot", "of unknown outcome"),
    },
}
TEXT = i18n.in_languages(WORDS)


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
