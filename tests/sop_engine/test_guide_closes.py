"""The guide's day closes: a guide finishes, skips and puts off their tasks by talking to the bot
(through the simulated WeCom's /_sim/messages), and tasks close by themselves when the customer
leaves, the guide leaves, or a transfer hands them over. Each closing records who, when and how.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from defusedxml.ElementTree import fromstring
from sqlalchemy import select

from guidebot.contacts.models import Transfer
from tests.bot.test_bot import settle as bot_settle
from tests.sop_engine.conftest import SHANGHAI

PLAYBOOK = """
playbook: first_contact
version: 1
name: 首次添加
trigger: {event: customer.added}
enroll: {once_per: relation}
timezone: Asia/Shanghai
send_window: {hours: "10:00-21:00", days: mon-sun}
stop_when: [contact.lost, contact.removed]
escalate_after: 1d
steps:
  - {id: welcome, at: enroll, action: welcome, template: welcome.j2, expire_after: 20s}
  - id: day1_intro
    name: 第1天自我介绍
    at: welcome + 1d
    action: remind
    template: remind_day1_intro.j2
    expire_after: 1d
  - {id: day2_call, at: welcome + 2d, action: remind, template: remind_day1_intro.j2,
     expire_after: 1d}
"""


@pytest.fixture
def playbooks() -> list[str]:
    return [PLAYBOOK]


def at(day: int, hour: int, minute: int) -> datetime:
    return datetime(2026, 3, day, hour, minute, tzinfo=SHANGHAI).astimezone(UTC)


async def say(h, text: str, userid: str = "g1") -> str:
    """The guide writes to the app; the bot's answer (passive, else by message/send)."""
    answer = await h.control("messages", {"userid": userid, "text": text})
    assert answer["delivered"], answer
    if answer["reply"]:
        return fromstring(answer["reply"]).findtext("Content")
    # Not ready within the passive budget (real time, a busy machine): sent by message/send
    # once the hand-over in the background is done; reminders are in the same list.
    await bot_settle(h)
    sent = [m for m in await h.app_messages(userid) if m["msgtype"] == "text"]
    return sent[-1]["text"]["content"]


async def reminded(h) -> int:
    """Saturday 20:56: the day-1 reminder went to g1; its task id."""
    await h.add("g1", "wmc1")  # Friday 20:55
    h.set_time(at(14, 20, 56))
    await h.tick()
    task = await h.task("g1", "wmc1", "day1_intro")
    assert task.status == "sent"
    return task.id


async def test_a_guide_finishes_puts_off_and_skips_tasks_by_talking_to_the_bot(h):
    day1 = await reminded(h)
    listing = await say(h, "任务")
    # Numbered by the task's own number, named by the playbook's and the step's names.
    assert f"#{day1} 陈女士 · 首次添加 · 第1天自我介绍 · 20:55" in listing, listing
    assert "day1_intro" not in listing and "first_contact" not in listing

    # 2 hours from 20:57 is past the window's 21:00: it comes back at 10:00 the next morning.
    answer = await say(h, f"稍后 {day1} 2h")
    assert answer == f"已推迟到 03-15 10:00 · #{day1} 陈女士 · 首次添加 · 第1天自我介绍"
    task = await h.task("g1", "wmc1", "day1_intro")
    assert (task.status, task.due_at) == ("snoozed", at(15, 10, 0))
    assert task.result["snoozed"]["by"] == "g1" and task.result["snoozed"]["via"] == "bot"
    assert task.escalate_at == at(16, 10, 0)  # overdue counts from when it is due now
    assert await say(h, "任务") == "今天没有待办任务。"

    h.set_time(at(15, 10, 1))
    before = len(await h.app_messages("g1"))
    await h.tick()  # it comes back: the reminder goes to the guide again
    assert (await h.task("g1", "wmc1", "day1_intro")).status == "sent"
    cards = [m for m in (await h.app_messages("g1"))[before:] if m["msgtype"] == "textcard"]
    assert len(cards) == 1

    assert await say(h, f"done {day1}") == f"Done ✓ #{day1} 陈女士 · 首次添加 · 第1天自我介绍"
    task = await h.task("g1", "wmc1", "day1_intro")
    assert (task.status, task.completed_by, task.completed_by_user) == ("done", "bot", "g1")
    assert task.completed_at == at(15, 10, 1)
    assert await say(h, f"完成 {day1}") == f"已完成 ✓ #{day1} 陈女士 · 首次添加 · 第1天自我介绍"
    assert await say(h, f"跳过 {day1} 太忙") == f"任务 #{day1} 已完成，不能再更改"

    # A task not due yet (tonight's call) may be skipped ahead, with the reason; never sent.
    day2 = (await h.task("g1", "wmc1", "day2_call")).id
    assert await say(h, f"跳过 {day2}") == f"请写上跳过的原因，例如：跳过 {day2} 客户出差"
    answer = await say(h, f"skip {day2} customer travelling")
    assert answer == f"Skipped #{day2} 陈女士 · 首次添加 · reminder\nReason: customer travelling"
    task = await h.task("g1", "wmc1", "day2_call")
    assert (task.status, task.reason, task.completed_by) == (
        "skipped",
        "customer travelling",
        "bot",
    )
    h.set_time(at(15, 20, 56))
    before = len(await h.app_messages("g1"))
    await h.tick()
    assert len(await h.app_messages("g1")) == before


async def test_the_bot_acts_only_on_the_guides_own_tasks_and_says_what_it_needs(h):
    day1 = await reminded(h)
    assert await say(h, f"完成 {day1}", userid="g3") == (
        f"你没有编号为 {day1} 的任务（发送「任务」查看编号）"
    )
    assert (await h.task("g1", "wmc1", "day1_intro")).status == "sent"
    assert await say(h, "完成") == "请写上任务编号，例如：完成 12（发送「任务」查看编号）"
    assert await say(h, f"snooze {day1}") == (
        f"Say how long to put it off, e.g. snooze {day1} 2h (30m, 2h, 1d)"
    )
    assert await say(h, f"稍后 {day1} 下周") == (
        "没看懂「下周」：请写 30m、2h、1d（或 30分钟、2小时、1天），最长 7 天"
    )
    assert await say(h, f"稍后 {day1} 30天") == (
        "没看懂「30天」：请写 30m、2h、1d（或 30分钟、2小时、1天），最长 7 天"
    )
    assert (await h.task("g1", "wmc1", "day1_intro")).status == "sent"


async def test_a_customer_who_leaves_takes_every_open_task_of_the_pair_with_them(h):
    day1 = await reminded(h)
    await say(h, f"稍后 {(await h.task('g1', 'wmc1', 'day2_call')).id} 1h")  # snoozed
    await h.act("contact/delete_by_customer", {"userid": "g1", "external_userid": "wmc1"})
    for step in ("day1_intro", "day2_call"):  # one sent, one snoozed
        task = await h.task("g1", "wmc1", step)
        assert (task.status, task.reason, task.completed_by) == (
            "skipped",
            "stopped: contact.lost",
            "engine",
        )
    assert (await h.task("g1", "wmc1", "welcome")).status == "sent"  # it reached the customer
    assert await say(h, "任务") == "今天没有待办任务。"
    assert await say(h, f"完成 {day1}") == f"任务 #{day1} 已跳过，不能再更改"


async def test_a_guide_who_leaves_has_nothing_left_open(h):
    await reminded(h)
    await h.add("g1", "wmc2")
    await h.act("users/delete", {"userid": "g1", "notify": True})
    tasks = await h.tasks(guide_userid="g1")
    assert {t.status for t in tasks if t.action != "welcome"} == {"skipped"}
    assert {t.reason for t in tasks if t.action != "welcome"} == {"stopped: guide.left"}
    assert {e.status for e in await h.enrollments(guide_userid="g1")} == {"stopped"}


async def test_a_transfer_hands_the_reminder_to_the_successor(h):
    day1 = await reminded(h)
    status, body = await h.api(
        "POST",
        "/transfers",
        json={
            "kind": "in_service",
            "handover_userid": "g1",
            "takeover_userid": "g3",
            "external_userids": ["wmc1"],
        },
    )
    assert status == 202, body
    await h.control(
        "contact/transfer",
        {"handover_userid": "g1", "takeover_userid": "g3", "external_userid": "wmc1"},
    )
    await h.drain()
    async with h.sessions() as session:
        assert (await session.scalar(select(Transfer))).status == "accepted"
    moved = await h.task("g3", "wmc1", "day1_intro")
    assert (moved.id, moved.status) == (day1, "sent")  # waiting for g3 now
    assert (await h.task("g3", "wmc1", "day2_call")).status == "pending"
    assert f"#{day1} 陈女士" in await say(h, "任务", userid="g3")
    assert await say(h, "任务") == "今天没有待办任务。"
    h.advance(timedelta(minutes=1))
    assert (await say(h, f"完成 {day1}", userid="g3")).startswith(f"已完成 ✓ #{day1}")
