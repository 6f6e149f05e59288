"""The group KPIs where a guide reads their numbers: the rollups (API), the bot's 业绩 and the
morning report, all from the same rows (guidebot.groups.queries) and the KPI table's names.

g1 owns 张江VIP群; their customers wmc1 and wmc2 join it (joins delivered encrypted, out of
order and twice), wmc2 leaves; g1 forwards an item into the group from the sidebar; a browser
in the group opens it, and wmc3 (g2's customer, in the group) pays an order."""

from __future__ import annotations

from datetime import timedelta

from guidebot.metrics import kpis
from guidebot.metrics.daily_report import daily_message
from guidebot.metrics.rollup import refresh
from tests.bot.test_bot import answer
from tests.content.test_sidebar_api import login, post
from tests.groups.test_group_sidebar import an_item, open_as_a_browser


async def a_month_of_groups(h) -> str:
    for ext in ("wmc1", "wmc2"):
        await h.add("g1", ext)
    await h.add("g2", "wmc3")
    chat_id = await h.create_group("g1", "张江VIP群")
    first = await h.join(chat_id, "wmc1", deliver=False)
    h.advance(30)
    second = await h.join(chat_id, "wmc2", "wmc3", deliver=False)
    for plaintext in (second["plaintext"], first["plaintext"], first["plaintext"]):
        await h.deliver(plaintext)
    h.advance(60)
    await h.leave(chat_id, "wmc2")
    item = await an_item(h)
    await login(h, "g1")
    status, prepared = await post(
        h, "/sidebar/api/group/prepare", {"item_id": item["id"], "chat_id": chat_id}
    )
    await post(h, "/sidebar/api/group/forwards", {"ref": prepared["ref"]})
    await open_as_a_browser(h, prepared["url"])
    h.advance(timedelta(hours=1))
    status, body = await h.api(
        "POST",
        "/orders",
        json={
            "order_id": "o1",
            "external_userid": "wmc3",
            "amount": "120",
            "paid_at": h.clock.now().isoformat(),
        },
    )
    assert status in (200, 201), body
    return chat_id


async def figures(h) -> dict:
    await refresh(h.sessions, h.settings.timezone, h.clock.now())
    status, body = await h.api(
        "GET", "/guides/g1/metrics", params={"from": "2026-03-10", "to": "2026-03-10"}
    )
    assert status == 200, body
    return body["metrics"]


async def test_the_rollups_count_the_groups_and_what_came_through_their_links(h):
    await a_month_of_groups(h)
    mine = await figures(h)
    assert mine["groups_owned"] == 1
    # wmc1, wmc2, wmc3 joined (a join told twice counts once); wmc2 left.
    assert (mine["group_new_members"], mine["group_members_left"], mine["group_net"]) == (3, 1, 2)
    assert mine["group_join_rate"] == 0.5  # wmc1 of g1's two active customers
    assert (mine["group_opens"], mine["group_orders"]) == (1, 1)
    # A forward into a group is no customer's forward.
    assert mine["forwards"] == 0


async def test_the_bots_numbers_have_a_group_line_named_as_the_kpis(h):
    assert "社群" not in await answer(h, "业绩")  # no group yet: the reply is as it was
    await a_month_of_groups(h)
    reply = await answer(h, "业绩")
    line = next(x for x in reply.splitlines() if x.startswith("社群"))
    assert line == "社群（本月）：群数 1 | 新入群 3 | 退群 1 | 群净增 2 | 入群率 50% | 群链接打开 1"
    # The words are the KPI table's Chinese display names, defined there once.
    for name in ("groups_owned", "group_new_members", "group_members_left", "group_net"):
        assert kpis.KPI_BY_NAME[name].label in line
    assert kpis.KPI_BY_NAME["group_join_rate"].label in line
    assert kpis.KPI_BY_NAME["group_opens"].label in line
    english = await answer(h, "stats")
    assert "Groups this month: groups 1 | new members 3 | left 1 | net 2" in english


async def test_the_morning_report_has_the_group_line_when_there_are_groups(h):
    await a_month_of_groups(h)
    values = await figures(h)
    _, description = daily_message("王芳", "张江店", h.clock.now().date(), values, 0)
    assert "社群 群数 1 · 新入群 3 · 退群 1 · 入群率 50% · 群链接 打开 1 订单 1" in description
    assert len(description.encode()) <= 512
    blank = dict.fromkeys(kpis.KPI_NAMES, 0) | {"group_join_rate": None, "welcome_rate": None}
    _, without = daily_message("王芳", "张江店", h.clock.now().date(), blank, 0)
    assert "社群" not in without
