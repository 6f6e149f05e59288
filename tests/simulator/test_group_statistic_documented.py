"""群聊数据统计 as WeCom documents it (doc 92133, 获取「群聊数据统计」数据; the official page is
96359): groupchat/statistic by owner and groupchat/statistic_group_by_day per natural day.

The clock starts at 2026-03-10 12:00 China time; groups are made on the days before it."""

from __future__ import annotations

from datetime import timedelta

from tests.simulator.conftest import cn_time
from tests.simulator.test_groups_documented import customers, group

BY_OWNER = "externalcontact/groupchat/statistic"
BY_DAY = "externalcontact/groupchat/statistic_group_by_day"
MAR = {d: int(cn_time(2026, 3, d)) for d in range(1, 11)}
ALICE = {"userid_list": ["alice"]}


async def history(sim) -> str:
    """alice's group made on 8 March with two customers, one more joins and one leaves on 9
    March, three messages on the 9th; bob's group made on the 9th."""
    await customers(sim, "wmA", "wmB", "wmC")
    sim.clock.set(cn_time(2026, 3, 8, 10))
    chat_id = await group(sim, "alice", ["wmA", "wmB"])
    sim.clock.set(cn_time(2026, 3, 9, 10))
    await sim.control("groups/join", {"chat_id": chat_id, "members": ["wmC"]})
    await sim.control("groups/leave", {"chat_id": chat_id, "members": ["wmA"]})
    await sim.control("groups/messages", {"chat_id": chat_id, "from": "wmB", "count": 2})
    await sim.control("groups/messages", {"chat_id": chat_id, "from": "alice", "count": 1})
    await group(sim, "bob", ["wmA"])
    sim.clock.set(cn_time(2026, 3, 10, 12))
    return chat_id


async def test_by_day_gives_each_natural_day_with_the_eight_keys(sim):
    """doc 92133: statistic_group_by_day 按自然日聚合; data holds new_chat_cnt, chat_total,
    chat_has_msg, new_member_cnt, member_total, member_has_msg, msg_total (migrate_trainee_chat_cnt
    only for 教培)."""
    await history(sim)
    answer = await sim.api(
        BY_DAY, {"day_begin_time": MAR[8], "day_end_time": MAR[9], "owner_filter": ALICE}
    )
    assert answer["errcode"] == 0, answer
    assert [i["stat_time"] for i in answer["items"]] == [MAR[8], MAR[9]]
    day8, day9 = (i["data"] for i in answer["items"])
    assert day8 == {
        "new_chat_cnt": 1,
        "chat_total": 1,
        "chat_has_msg": 0,
        "new_member_cnt": 3,  # alice and two customers
        "member_total": 3,
        "member_has_msg": 0,
        "msg_total": 0,
    }
    assert day9 == {
        "new_chat_cnt": 0,
        "chat_total": 1,
        "chat_has_msg": 1,
        "new_member_cnt": 1,
        "member_total": 3,
        "member_has_msg": 2,
        "msg_total": 3,
    }


async def test_times_are_floored_to_the_days_midnight(sim):
    """doc 92133: day_begin_time 会被自动转换为当天 0 点 (example 1554296400 → 1554220800)."""
    await history(sim)
    noon = MAR[8] + 12 * 3600
    answer = await sim.api(BY_DAY, {"day_begin_time": noon, "owner_filter": ALICE})
    assert [i["stat_time"] for i in answer["items"]] == [MAR[8]]  # end defaults to begin


async def test_today_and_days_past_180_are_refused_with_600018(sim):
    """doc 92133: 取值范围为昨天至前180天; today (community thread, 2022-08-29) → 600018."""
    today = MAR[10]
    assert (await sim.api(BY_DAY, {"day_begin_time": today, "owner_filter": ALICE}))[
        "errcode"
    ] == 600018
    old = int(today - timedelta(days=181).total_seconds())
    assert (await sim.api(BY_DAY, {"day_begin_time": old, "owner_filter": ALICE}))[
        "errcode"
    ] == 600018
    oldest = int(today - timedelta(days=180).total_seconds())
    assert (await sim.api(BY_DAY, {"day_begin_time": oldest, "owner_filter": ALICE}))[
        "errcode"
    ] == 0


async def test_a_span_over_30_days_is_refused(sim):
    """doc 92133: 开始时间和结束时间的间隔不超过30天."""
    end = MAR[9]
    thirty = {"day_begin_time": end - 29 * 86_400, "day_end_time": end, "owner_filter": ALICE}
    assert (await sim.api(BY_DAY, thirty))["errcode"] == 0
    assert len((await sim.api(BY_DAY, thirty))["items"]) == 30
    thirty_one = {**thirty, "day_begin_time": end - 30 * 86_400}
    assert (await sim.api(BY_DAY, thirty_one))["errcode"] == 600018


async def test_owner_filter_takes_at_most_100_owners_inside_the_visible_range(sim):
    """doc 92133: owner_filter.userid_list 群主ID列表, 最多100个; outside the range 60011."""
    many = {"userid_list": ["alice"] * 101}
    body = {"day_begin_time": MAR[9], "owner_filter": many}
    assert (await sim.api(BY_DAY, body))["errcode"] == 40058
    assert (await sim.api(BY_OWNER, body))["errcode"] == 40058
    stranger = {"day_begin_time": MAR[9], "owner_filter": {"userid_list": ["nobody"]}}
    assert (await sim.api(BY_DAY, stranger))["errcode"] == 60011


async def test_several_owners_by_day_come_back_together(sim):
    """doc 92133: statistic_group_by_day gives the listed owners' groups as one row a day."""
    await history(sim)
    both = {"userid_list": ["alice", "bob"]}
    answer = await sim.api(BY_DAY, {"day_begin_time": MAR[9], "owner_filter": both})
    (item,) = answer["items"]
    assert (item["data"]["chat_total"], item["data"]["new_chat_cnt"]) == (2, 1)


async def test_by_owner_gives_a_row_per_owner_ordered_and_paged(sim):
    """doc 92133: groupchat/statistic 按群主聚合; order_by 1 新增群数 (default) .. 4 群总人数,
    order_asc 0 descending (default); offset, limit (default 500, max 1000); paging ends when
    next_offset equals total."""
    await history(sim)
    body = {
        "day_begin_time": MAR[8],
        "day_end_time": MAR[9],
        "owner_filter": {"userid_list": ["alice", "bob"]},
    }
    answer = await sim.api(BY_OWNER, {**body, "order_by": 4})
    assert answer["errcode"] == 0 and answer["total"] == 2
    assert [i["owner"] for i in answer["items"]] == ["alice", "bob"]  # 3 members, then 2
    alice = answer["items"][0]["data"]
    assert (alice["new_member_cnt"], alice["member_total"], alice["msg_total"]) == (4, 3, 3)
    ascending = await sim.api(BY_OWNER, {**body, "order_by": 4, "order_asc": 1})
    assert [i["owner"] for i in ascending["items"]] == ["bob", "alice"]
    first = await sim.api(BY_OWNER, {**body, "order_by": 4, "limit": 1})
    assert (first["next_offset"], first["total"], first["items"][0]["owner"]) == (1, 2, "alice")
    second = await sim.api(BY_OWNER, {**body, "order_by": 4, "limit": 1, "offset": 1})
    assert (second["next_offset"], second["items"][0]["owner"]) == (2, "bob")  # done
    assert (await sim.api(BY_OWNER, {**body, "limit": 1001}))["errcode"] == 40058
    assert (await sim.api(BY_OWNER, {**body, "order_by": 5}))["errcode"] == 40058


async def test_a_dismissed_group_no_longer_counts_from_its_day(sim):
    """doc 92133: chat_total 截至当天客户群总数: a group dismissed that day is gone."""
    chat_id = await history(sim)
    sim.clock.set(cn_time(2026, 3, 10, 9))
    await sim.control("groups/dismiss", {"chat_id": chat_id})
    sim.clock.set(cn_time(2026, 3, 11, 9))
    answer = await sim.api(
        BY_DAY, {"day_begin_time": MAR[9], "day_end_time": MAR[10], "owner_filter": ALICE}
    )
    assert [i["data"]["chat_total"] for i in answer["items"]] == [1, 0]
