"""Contact statistics as doc 92132 (获取「联系客户统计」数据) documents them.

Every test names the rule it holds the simulator to; the figures come from what the simulated
corp saw: adds, deletions, and one-to-one chat messages (/_sim/chats, welcomes, mass sends).
"""

from __future__ import annotations

from .conftest import cn_time

API = "externalcontact/get_user_behavior_data"
DAY = 86_400


async def behavior(sim, userids, start: float, end: float) -> dict:
    return await sim.api(API, {"userid": userids, "start_time": int(start), "end_time": int(end)})


async def chat(sim, userid: str, ext: str, sender: str, count: int = 1) -> None:
    await sim.control(
        "chats", {"userid": userid, "external_userid": ext, "from": sender, "count": count}
    )


async def corp(make_sim, clock):
    clock.set(cn_time(2026, 3, 10, 9, 0))
    sim = await make_sim()
    await sim.seed_guides("alice", "bob")
    for ext in ("wmC1", "wmC2", "wmC3"):
        await sim.add("alice", ext)
    await sim.add("bob", "wmC4")
    return sim


async def test_chats_messages_reply_percentage_and_first_reply_time(make_sim, clock):
    """doc 92132 返回参数: chat_cnt "成员有主动发送过消息的单聊总数", message_cnt "成员在单聊中
    发送的消息总数", reply_percentage "客户主动发起聊天后，成员在一个自然日内有回复过消息的聊天数/
    客户主动发起的聊天数比例", avg_reply_time "单位为分钟…所有聊天的首次回复总时长/
    已回复的聊天总数"."""
    sim = await corp(make_sim, clock)
    clock.set(cn_time(2026, 3, 11, 10, 0))
    await chat(sim, "alice", "wmC1", "customer", 2)  # C1 starts; alice answers 30 min later
    clock.set(cn_time(2026, 3, 11, 10, 30))
    await chat(sim, "alice", "wmC1", "member", 3)
    clock.set(cn_time(2026, 3, 11, 11, 0))
    await chat(sim, "alice", "wmC2", "customer")  # C2 starts; alice answers after 90 min
    clock.set(cn_time(2026, 3, 11, 12, 30))
    await chat(sim, "alice", "wmC2", "member")
    await chat(sim, "alice", "wmC3", "customer")  # C3 starts; nobody answers that day
    clock.set(cn_time(2026, 3, 12, 9, 0))
    await chat(sim, "alice", "wmC3", "member")  # the next day: alice starts this one
    await chat(sim, "alice", "wmC3", "customer")
    answer = await behavior(sim, ["alice"], cn_time(2026, 3, 11), cn_time(2026, 3, 12))
    assert answer["errcode"] == 0
    eleventh, twelfth = answer["behavior_data"]
    assert eleventh["stat_time"] == cn_time(2026, 3, 11)
    assert (eleventh["chat_cnt"], eleventh["message_cnt"]) == (2, 4)
    assert eleventh["reply_percentage"] == 66.67  # 2 of the 3 chats the customers started
    assert eleventh["avg_reply_time"] == 60  # (30 + 90) / 2 minutes
    assert (twelfth["chat_cnt"], twelfth["message_cnt"]) == (1, 1)


async def test_reply_figures_only_when_there_were_chats(make_sim, clock):
    """doc 92132: reply_percentage and avg_reply_time "仅在确有聊天时返回"."""
    sim = await corp(make_sim, clock)
    clock.set(cn_time(2026, 3, 11, 10, 0))
    await chat(sim, "alice", "wmC1", "member")  # alice starts: no chat a customer began
    quiet, started = (await behavior(sim, ["alice"], cn_time(2026, 3, 10), cn_time(2026, 3, 11)))[
        "behavior_data"
    ]
    assert "reply_percentage" not in quiet and "avg_reply_time" not in quiet
    assert "reply_percentage" not in started and started["chat_cnt"] == 1
    await chat(sim, "alice", "wmC2", "customer")  # unanswered: a rate of 0, no average
    [day] = (await behavior(sim, ["alice"], cn_time(2026, 3, 11), cn_time(2026, 3, 11)))[
        "behavior_data"
    ]
    assert day["reply_percentage"] == 0
    assert "avg_reply_time" not in day


async def test_several_userids_are_summed_as_one(make_sim, clock):
    """doc 92132: "如传入多个userid，则表示获取这些成员总体的联系客户数据"."""
    sim = await corp(make_sim, clock)
    clock.set(cn_time(2026, 3, 11, 10, 0))
    await chat(sim, "alice", "wmC1", "customer")
    await chat(sim, "bob", "wmC4", "customer")
    clock.set(cn_time(2026, 3, 11, 10, 20))
    await chat(sim, "bob", "wmC4", "member", 2)
    one_day = (cn_time(2026, 3, 11), cn_time(2026, 3, 11))
    [both] = (await behavior(sim, ["alice", "bob"], *one_day))["behavior_data"]
    [bob] = (await behavior(sim, ["bob"], *one_day))["behavior_data"]
    assert (both["chat_cnt"], both["message_cnt"]) == (1, 2)
    assert both["reply_percentage"] == 50.0  # one of the two chats the customers began
    assert (bob["reply_percentage"], bob["avg_reply_time"]) == (100.0, 20)


async def test_times_are_floored_to_the_day_and_the_interval_is_closed(make_sim, clock):
    """doc 92132: "查询的时间范围为[start_time,end_time]，即前后均为闭区间" and "当传入的时间不为0点
    时间戳时，会向下取整"."""
    sim = await corp(make_sim, clock)
    clock.set(cn_time(2026, 3, 13, 9, 0))
    answer = await behavior(sim, ["alice"], cn_time(2026, 3, 10, 21), cn_time(2026, 3, 12, 8))
    days = [d["stat_time"] for d in answer["behavior_data"]]
    assert days == [cn_time(2026, 3, 10), cn_time(2026, 3, 11), cn_time(2026, 3, 12)]
    assert answer["behavior_data"][0]["new_contact_cnt"] == 3


async def test_at_most_30_days_per_call(make_sim, clock):
    """doc 92132: "支持的最大查询跨度为30天"."""
    sim = await corp(make_sim, clock)
    clock.set(cn_time(2026, 5, 1, 9, 0))
    start = cn_time(2026, 4, 1)
    ok = await behavior(sim, ["alice"], start, start + 30 * DAY)
    assert ok["errcode"] == 0 and len(ok["behavior_data"]) == 31  # 04-01 .. 05-01
    too_long = await behavior(sim, ["alice"], start, start + 31 * DAY)
    assert too_long["errcode"] == 40058
    backwards = await behavior(sim, ["alice"], start + DAY, start)
    assert backwards["errcode"] == 40058


async def test_only_the_last_180_days(make_sim, clock):
    """doc 92132: "用户最多可获取最近180天内的数据"."""
    sim = await corp(make_sim, clock)
    clock.set(cn_time(2026, 9, 30, 12, 0))
    today = cn_time(2026, 9, 30)
    oldest = today - 179 * DAY
    assert (await behavior(sim, ["alice"], oldest, oldest + 5 * DAY))["errcode"] == 0
    refused = await behavior(sim, ["alice"], oldest - DAY, oldest + 5 * DAY)
    assert refused["errcode"] == 40058


async def test_userid_and_partyid_not_both_empty_and_at_most_100(make_sim, clock):
    """doc 92132: "userid和partyid不可同时为空", "成员ID列表，最多100个"."""
    sim = await corp(make_sim, clock)
    start = int(cn_time(2026, 3, 10))
    empty = await sim.api(API, {"start_time": start, "end_time": start})
    assert empty["errcode"] == 40058
    many = await sim.api(
        API, {"userid": [f"u{i}" for i in range(101)], "start_time": start, "end_time": start}
    )
    assert many["errcode"] != 0
    by_party = await sim.api(API, {"partyid": [2], "start_time": start, "end_time": start})
    assert by_party["behavior_data"][0]["new_contact_cnt"] == 4  # alice's 3 and bob's 1


async def test_a_welcome_is_the_members_message(make_sim, clock):
    """doc 92132 message_cnt counts what the member sent in one-to-one chats: a welcome
    (send_welcome_msg) is one."""
    clock.set(cn_time(2026, 3, 10, 9, 0))
    sim = await make_sim()
    await sim.seed_guides("alice")
    code = (await sim.add("alice", "wmC1", welcome_code=True))["welcome_code"]
    sent = await sim.api(
        "externalcontact/send_welcome_msg",
        {"welcome_code": code, "text": {"content": "欢迎光临"}},
    )
    assert sent["errcode"] == 0
    [day] = (await behavior(sim, ["alice"], cn_time(2026, 3, 10), cn_time(2026, 3, 10)))[
        "behavior_data"
    ]
    assert (day["chat_cnt"], day["message_cnt"]) == (1, 1)


async def test_chats_only_between_friends(make_sim, clock):
    sim = await corp(make_sim, clock)
    await sim.control("contact/delete_by_customer", {"userid": "alice", "external_userid": "wmC1"})
    refused = await sim.control(
        "chats", {"userid": "alice", "external_userid": "wmC1", "from": "customer"}, status=409
    )
    assert "not active" in refused["error"]
