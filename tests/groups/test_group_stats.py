"""WeCom's group chat figures (群聊数据统计, doc 92133) synced daily by `group-stats-sync` into
group_chat_stats: one owner per call, 30 days a call, idempotent, a refused owner parked while
the others go on; shown labelled as WeCom's on the groups pages and the API.

The harness's clock starts at 2026-03-10 12:00 China time; groups are made that day, people
talk in them, and the sync reads the next morning."""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from sqlalchemy import select

from guidebot.db.parking import parked_rows
from guidebot.groups.models import GroupChatStat
from guidebot.groups.statistic import sync_group_stats
from guidebot.web.keys import WECOM
from guidebot.wecom.client import WeComError
from tests.web.conftest import Sessions, admin_cookie

BY_DAY = "externalcontact/groupchat/statistic_group_by_day"
MARCH_10 = date(2026, 3, 10)


async def talk(h) -> tuple[str, str]:
    """g1's group with two customers who send 3 messages; g2's group with one; next morning."""
    await h.add("g1", "wmc1")
    g1 = await h.create_group("g1", "张江VIP群")
    await h.join(g1, "wmc1", "wmc2")
    await h.control("groups/messages", {"chat_id": g1, "from": "wmc1", "count": 2})
    await h.control("groups/messages", {"chat_id": g1, "from": "wmc2", "count": 1})
    g2 = await h.create_group("g2", "徐汇VIP群")
    await h.join(g2, "wmc3")
    h.advance(timedelta(hours=20))  # 2026-03-11 08:00 China time
    return g1, g2


async def rows(h) -> dict[tuple[str, date], GroupChatStat]:
    async with h.sessions() as session:
        found = await session.scalars(select(GroupChatStat))
        return {(r.owner_userid, r.day): r for r in found}


async def test_the_sync_keeps_each_owners_days_asking_for_one_owner_a_call(h):
    await talk(h)
    before = len(await h.calls(BY_DAY))
    report = await sync_group_stats(h.sessions, h.app[WECOM], h.clock.now())
    assert (report.owners, report.parked) == (2, 0)
    calls = [c["body"] for c in await h.calls(BY_DAY)][before:]
    assert all(len(c["owner_filter"]["userid_list"]) == 1 for c in calls)
    assert {c["owner_filter"]["userid_list"][0] for c in calls} == {"g1", "g2"}
    # 180 China days (yesterday back to 180 days ago) in calls of at most 30 days each.
    assert all(c["day_end_time"] - c["day_begin_time"] <= 29 * 86_400 for c in calls)
    assert len(calls) == 2 * 6
    found = await rows(h)
    mine = found[("g1", MARCH_10)]
    assert (mine.new_chat_cnt, mine.chat_total, mine.new_member_cnt, mine.member_total) == (
        1,
        1,
        3,
        3,
    )
    assert (mine.chat_has_msg, mine.member_has_msg, mine.msg_total) == (1, 2, 3)
    assert found[("g2", MARCH_10)].member_total == 2


async def test_running_it_again_changes_nothing_and_rereads_only_the_last_days(h):
    await talk(h)
    await sync_group_stats(h.sessions, h.app[WECOM], h.clock.now())
    first = {k: (r.msg_total, r.synced_at) for k, r in (await rows(h)).items()}
    before = len(await h.calls(BY_DAY))
    h.advance(60)
    again = await sync_group_stats(h.sessions, h.app[WECOM], h.clock.now())
    assert again.written == 0
    assert {k: (r.msg_total, r.synced_at) for k, r in (await rows(h)).items()} == first
    calls = [c["body"] for c in await h.calls(BY_DAY)][before:]
    assert len(calls) == 2  # one short span per owner: the days WeCom may still complete


async def test_an_owner_wecom_refuses_is_parked_and_the_others_are_read(h):
    await talk(h)
    await h.fault(BY_DAY, 60011)  # the first owner's first call: outside the visible range
    report = await sync_group_stats(h.sessions, h.app[WECOM], h.clock.now())
    assert (report.owners, report.parked) == (1, 1)
    async with h.sessions() as session:
        [parked] = await parked_rows(session, "group-stats-sync")
    assert (parked.table_name, parked.row_key) == ("group_chat_stats", "g1")
    assert {owner for owner, _ in await rows(h)} == {"g2"}


async def test_wecom_refusing_the_app_fails_the_run(h):
    await talk(h)
    await h.fault(BY_DAY, 48002)
    with pytest.raises(WeComError):
        await sync_group_stats(h.sessions, h.app[WECOM], h.clock.now())


async def test_the_groups_pages_and_the_api_show_wecoms_figures_labelled_as_wecoms(h):
    g1, _ = await talk(h)
    await sync_group_stats(h.sessions, h.app[WECOM], h.clock.now())
    cookie = admin_cookie(await Sessions(h).account("boss", "hq", []))
    page = await (
        await h.client.get("/admin/groups?from=2026-03-10&to=2026-03-10", headers=cookie)
    ).text()
    assert "企业微信的群聊数据" in page
    assert "群消息总数" in page and "发过消息的群成员数" in page
    assert 'data-stat="msg_total">3<' in page  # g1's three; g2's group had none
    assert 'data-stat="chat_total">2<' in page
    detail = await (await h.client.get(f"/admin/groups/{g1}", headers=cookie)).text()
    assert 'data-stat="member_total">3<' in detail
    status, body = await h.api(
        "GET", "/group-chat-stats", params={"owner": "g1", "from": "2026-03-10", "to": "2026-03-10"}
    )
    assert status == 200, body
    assert body["source"] == "wecom groupchat/statistic"
    assert body["figures"]["msg_total"] == 3 and body["days"] == 1
    assert body["labels"]["msg_total"] == "群消息总数"
    status, body = await h.api("GET", "/group-chat-stats", params={"store": "11"})
    assert status == 200 and body["figures"]["chat_total"] == 1  # store 11: g1's group


async def test_a_manager_sees_wecoms_figures_of_their_stores_owners_only(h):
    await talk(h)
    cookie = admin_cookie(await Sessions(h).account("m12", "manager", ["12"]))
    before = await (
        await h.client.get("/admin/groups?from=2026-03-10&to=2026-03-10", headers=cookie)
    ).text()
    assert 'data-stat="none"' in before  # not read from WeCom yet: said so, no zeros
    await sync_group_stats(h.sessions, h.app[WECOM], h.clock.now())
    page = await (
        await h.client.get("/admin/groups?from=2026-03-10&to=2026-03-10", headers=cookie)
    ).text()
    # g2's group (store 12) only: two members, no messages; g1's three messages are not here.
    assert 'data-stat="chat_total">1<' in page and 'data-stat="member_total">2<' in page
    assert 'data-stat="msg_total">0<' in page
