"""Escalation: a guide task still open a day (the playbook's `escalate_after`) after it was due
goes to the store's manager in one app message a day, and shows on the manager's store page;
a playbook without the key never escalates."""

from __future__ import annotations

from datetime import timedelta

import pytest

from guidebot.metrics.escalation import send_escalations
from guidebot.web.accounts import save_account
from guidebot.web.auth import ADMIN_COOKIE, mint_admin_session
from guidebot.web.keys import CLOCK, SESSIONS, SETTINGS, WECOM
from tests.harness import start_harness, write_playbook
from tests.sop_engine.conftest import FOLLOW_UP, SopHarness
from tests.sop_engine.test_guide_closes import PLAYBOOK, at, say


@pytest.fixture
async def h(aiohttp_client, database_url, clock, sop_dir) -> SopHarness:
    for text in (PLAYBOOK, FOLLOW_UP):
        write_playbook(sop_dir, text)
    harness = await start_harness(
        aiohttp_client,
        database_url,
        clock,
        kind=SopHarness,
        sop_dir=sop_dir,
        store_managers=("g3",),  # 张伟 manages 张江店 (store 11), where g1 works
    )
    harness.reload()
    return harness


async def escalate(h):
    app = h.app
    return await send_escalations(app[SESSIONS], app[WECOM], app[CLOCK], app[SETTINGS])


async def texts(h, userid: str) -> list[str]:
    return [m["text"]["content"] for m in await h.app_messages(userid) if m["msgtype"] == "text"]


async def test_an_overdue_task_reaches_the_manager_once_a_day_and_shows_on_the_store_page(h):
    await h.add("g1", "wmc1")  # Friday 20:55
    h.set_time(at(14, 20, 56))
    await h.tick()  # the day-1 reminder (due Saturday 20:55) goes to g1
    day1 = await h.task("g1", "wmc1", "day1_intro")
    assert day1.escalate_at == at(15, 20, 55)
    follow_up = await h.task("g1", "wmc1", "day3")
    assert follow_up.escalate_at is None  # follow_up_7d sets no escalate_after

    h.set_time(at(15, 20, 0))  # Sunday, not a day overdue yet
    assert (await escalate(h)).sent == 0
    h.set_time(at(15, 20, 56))
    report = await escalate(h)
    assert (report.sent, report.tasks) == (1, 1)
    [digest] = await texts(h, "g3")
    assert digest.splitlines() == [
        "张江店 逾期未处理的任务 1 项（2026-03-15）· overdue tasks",
        "• 王芳 · 陈女士 · 首次添加 · 第1天自我介绍 · 逾期 1 天",
        f"查看 · View: {h.settings.public_url}/admin/stores?store=11",
    ]
    assert (await h.task("g1", "wmc1", "day1_intro")).escalated_at == at(15, 20, 56)
    assert await texts(h, "g1") == []  # the guide gets no digest

    h.advance(timedelta(minutes=30))
    assert (await escalate(h)).sent == 0  # one digest per manager per day

    # The manager's store page lists it too.
    async with h.sessions() as session, session.begin():
        account = await save_account(session, "m11", "x" * 16, "manager", ["11"], h.clock.now())
        cookie = mint_admin_session(h.settings.secret_key, account.id, h.clock.now())
    response = await h.client.get("/admin/stores", headers={"Cookie": f"{ADMIN_COOKIE}={cookie}"})
    html = await response.text()
    assert response.status == 200 and "<h2>逾期任务</h2>" in html and "逾期 1 天" in html
    assert "第1天自我介绍" in html and "陈女士" in html and "day1_intro" not in html

    # Monday morning it is still open: the day's digest lists it again; done, it stops.
    h.set_time(at(16, 9, 5))
    assert (await escalate(h)).sent == 1
    assert len(await texts(h, "g3")) == 2
    await say(h, f"完成 {day1.id}")
    h.set_time(at(17, 9, 5))
    assert (await escalate(h)).sent == 1  # Sunday night's call is a day overdue now; not day 1
    assert (await texts(h, "g3"))[-1].splitlines()[
        1
    ] == "• 王芳 · 陈女士 · 首次添加 · 提醒 · 逾期 1 天"
    await say(h, f"跳过 {(await h.task('g1', 'wmc1', 'day2_call')).id} 客户出差")
    h.set_time(at(18, 9, 5))
    assert (await escalate(h)).sent == 0
    cookie = mint_admin_session(h.settings.secret_key, account.id, h.clock.now())
    response = await h.client.get("/admin/stores", headers={"Cookie": f"{ADMIN_COOKIE}={cookie}"})
    assert "没有逾期的任务" in await response.text()


async def test_snoozing_moves_the_escalation_with_the_task(h):
    await h.add("g1", "wmc1")
    h.set_time(at(14, 20, 56))
    await h.tick()
    day1 = await h.task("g1", "wmc1", "day1_intro")
    h.set_time(at(15, 20, 50))
    await say(h, f"稍后 {day1.id} 1h")  # past 21:00: Monday 10:00
    h.set_time(at(15, 20, 56))
    assert (await escalate(h)).sent == 0
    assert (await h.task("g1", "wmc1", "day1_intro")).escalate_at == at(17, 10, 0)
