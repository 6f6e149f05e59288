"""Lost-customer alerts: a customer deletes a guide (del_follow_user through the simulated
WeCom's callback), the guide gets one app message per hour naming them, how long they were
together and what was sent last; the store manager's morning list names the store's losses.

Cast as in tests/metrics/conftest.py: store 11 张江店 (g1 王芳, g3), store 12 (g2), customers
wmc01.. named 顾客01..
"""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from guidebot.metrics.losses import _take_batch, send_lost_alerts
from guidebot.metrics.models import LostAlert
from guidebot.web.keys import CLOCK, WECOM
from tests.metrics.conftest import at, make_harness


async def run(h):
    return await send_lost_alerts(h.sessions, h.app[WECOM], h.app[CLOCK], h.settings)


def texts(messages: list[dict]) -> list[str]:
    return [m["text"]["content"] for m in messages if m["msgtype"] == "text"]


async def two_customers_leave(h) -> None:
    h.set_time(at(10, 9))
    await h.add("g1", "wmc01")
    item = await h.item("春季新品")
    h.set_time(at(11, 10))
    await h.forward("g1", "wmc01", item)
    h.set_time(at(13, 14))
    await h.add("g1", "wmc02", code=False)
    h.set_time(at(13, 14, 20))
    await h.lose("g1", "wmc01")
    h.set_time(at(13, 14, 30))
    await h.lose("g1", "wmc02")


async def test_one_message_per_hour_naming_each_customer(h):
    await two_customers_leave(h)
    await h.add("g2", "wmc05")
    await h.remove("g2", "wmc05")  # the guide deleted the customer: no alert
    h.set_time(at(13, 15, 7))
    report = await run(h)
    assert (report.sent, report.customers) == (1, 2)
    [text] = texts(await h.app_messages("g1"))
    zh, en = text.split("\n\n")
    assert zh.splitlines() == [
        "客户流失提醒：2 位客户删除了你",
        "· 顾客01：相处 3 天，最后发送 《春季新品》（3月11日）",
        "· 顾客02：相处 不到 1 小时，最后发送 未发送过内容",
    ]
    assert en.splitlines()[0] == "2 customers deleted you"
    assert "· 顾客01: together 3 days, last sent 《春季新品》 (2026-03-11)" in en
    assert "wmc0" not in text  # names, never ids
    assert texts(await h.app_messages("g2")) == []

    # Nothing more this hour; a loss later in the hour waits for the next one, alone.
    assert (await run(h)).sent == 0
    h.set_time(at(13, 15, 30))
    await h.add("g1", "wmc04", code=False)
    await h.lose("g1", "wmc04")
    assert (await run(h)).sent == 0
    h.set_time(at(13, 16, 7))
    assert (await run(h)).customers == 1
    latest = texts(await h.app_messages("g1"))[-1]
    assert "顾客04" in latest and "顾客01" not in latest


async def test_a_replayed_deletion_is_not_alerted_twice(h):
    await two_customers_leave(h)
    deliveries = h.sim_state.deliveries
    # WeCom retries the last callback (c02's deletion): the same event, folded.
    await h.control("callbacks", {"xml": deliveries[-1]["plaintext"]})
    await h.drain()
    async with h.sessions() as session:
        assert await session.scalar(select(func.count()).select_from(LostAlert)) == 2


async def test_a_batch_claimed_before_a_crash_is_never_sent(h):
    await two_customers_leave(h)
    h.set_time(at(13, 15, 7))
    # The job claimed g1's hour and marked the losses, then the process died before WeCom.
    assert len(await _take_batch(h.sessions, "g1", "2026-03-13T07", h.clock.now())) == 2
    h.set_time(at(13, 16, 7))
    assert (await run(h)).sent == 0
    assert texts(await h.app_messages("g1")) == []


async def test_a_refused_alert_goes_out_with_the_next_hour(h):
    await two_customers_leave(h)
    h.set_time(at(13, 15, 7))
    await h.fault("message/send", 81013)
    report = await run(h)
    assert (report.sent, report.failed) == (0, 1)
    h.set_time(at(13, 16, 7))
    report = await run(h)
    assert (report.sent, report.customers) == (1, 2)
    assert len(texts(await h.app_messages("g1"))) == 1


@pytest.fixture
async def hm(aiohttp_client, database_url, clock, sop_dir):
    return await make_harness(aiohttp_client, database_url, clock, sop_dir, store_managers=("g3",))


async def test_the_store_manager_gets_yesterdays_losses_in_the_morning_once(hm):
    h = hm
    await two_customers_leave(h)
    h.set_time(at(14, 8, 7))
    assert (await run(h)).digests == 0  # before 09:00 store time
    h.set_time(at(14, 9, 7))
    assert (await run(h)).digests == 1
    [digest] = texts(await h.app_messages("g3"))
    zh, en = digest.split("\n\n")
    assert zh.splitlines() == [
        "张江店 3月13日 流失客户 2 位",
        "· 顾客01（导购 王芳）：相处 3 天，最后发送 《春季新品》（3月11日）",
        "· 顾客02（导购 王芳）：相处 不到 1 小时，最后发送 未发送过内容",
    ]
    assert en.splitlines()[0] == "张江店: 2 customer(s) left on 2026-03-13"
    h.set_time(at(14, 10, 7))
    assert (await run(h)).digests == 0  # once a day
    h.set_time(at(15, 9, 7))
    assert (await run(h)).digests == 0  # no losses on the 14th: no message
