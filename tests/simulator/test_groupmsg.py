"""企业群发: a task until the guide confirms; then sent, not-a-friend, or over the monthly cap."""

from __future__ import annotations

from .conftest import cn_time

TEXT = {"text": {"content": "新品到店"}}


async def create(sim, sender="alice", **extra) -> dict:
    answer = await sim.api("externalcontact/add_msg_template", {"sender": sender, **TEXT, **extra})
    assert answer["errcode"] == 0, answer
    return answer


async def send_result(sim, msgid: str, userid: str = "alice") -> dict[str, int]:
    answer = await sim.api(
        "externalcontact/get_groupmsg_send_result", {"msgid": msgid, "userid": userid}
    )
    return {row["external_userid"]: row["status"] for row in answer["send_list"]}


async def test_a_task_sends_nothing_until_the_guide_confirms(sim):
    for ext in ("wmC1", "wmC2", "wmC3"):
        await sim.add("alice", ext)
    await sim.control("customers", {"external_userid": "wmStranger"})
    created = await create(sim, external_userid=["wmC1", "wmC2", "wmC3", "wmStranger"])
    msgid = created["msgid"]
    assert created["fail_list"] == ["wmStranger"]

    assert await send_result(sim, msgid) == {"wmC1": 0, "wmC2": 0, "wmC3": 0}
    task = await sim.api("externalcontact/get_groupmsg_task", {"msgid": msgid})
    assert task["task_list"] == [{"userid": "alice", "status": 0}]

    # Before the guide taps send, one customer deletes the guide.
    await sim.control("contact/delete_by_customer", {"userid": "alice", "external_userid": "wmC3"})
    sim.clock.advance(30)
    confirmed = await sim.control("groupmsg/confirm", {"msgid": msgid, "userid": "alice"})
    assert {r["external_userid"]: r["status"] for r in confirmed["send_list"]} == {
        "wmC1": 1,
        "wmC2": 1,
        "wmC3": 2,
    }
    rows = (
        await sim.api(
            "externalcontact/get_groupmsg_send_result", {"msgid": msgid, "userid": "alice"}
        )
    )["send_list"]
    assert rows[0] == {
        "external_userid": "wmC1",
        "userid": "alice",
        "status": 1,
        "send_time": int(sim.clock.time()),
    }
    assert "send_time" not in rows[2]
    task = await sim.api("externalcontact/get_groupmsg_task", {"msgid": msgid})
    assert task["task_list"] == [
        {"userid": "alice", "status": 2, "send_time": int(sim.clock.time())}
    ]
    again = await sim.control("groupmsg/confirm", {"msgid": msgid, "userid": "alice"}, status=409)
    assert "already sent" in again["error"]


async def test_monthly_cap_defaults_to_the_days_in_the_month(make_sim, clock):
    clock.set(cn_time(2026, 2, 3, 10, 0))  # February 2026 has 28 days
    sim = await make_sim()
    await sim.seed_guides("alice")
    await sim.add("alice", "wmC1")
    statuses = []
    for _ in range(29):
        msgid = (await create(sim, external_userid=["wmC1"]))["msgid"]
        await sim.control("groupmsg/confirm", {"msgid": msgid, "userid": "alice"})
        statuses.append((await send_result(sim, msgid))["wmC1"])
    assert statuses == [1] * 28 + [3]

    clock.set(cn_time(2026, 3, 1, 0, 0))  # a new calendar month (China time) resets it
    msgid = (await create(sim, external_userid=["wmC1"]))["msgid"]
    await sim.control("groupmsg/confirm", {"msgid": msgid, "userid": "alice"})
    assert (await send_result(sim, msgid))["wmC1"] == 1


async def test_monthly_cap_is_configurable_and_counts_per_customer(sim):
    await sim.control("config", {"monthly_cap": 1})
    await sim.add("alice", "wmC1")
    await sim.add("bob", "wmC1")
    await sim.add("bob", "wmC2")
    first = (await create(sim, external_userid=["wmC1"]))["msgid"]
    await sim.control("groupmsg/confirm", {"msgid": first, "userid": "alice"})
    # Another guide's message still counts against the same customer's cap.
    second = (await create(sim, sender="bob", external_userid=["wmC1", "wmC2"]))["msgid"]
    await sim.control("groupmsg/confirm", {"msgid": second, "userid": "bob"})
    assert await send_result(sim, second, "bob") == {"wmC1": 3, "wmC2": 1}


async def test_the_cap_resets_at_midnight_china_time_on_the_first(make_sim, clock):
    clock.set(cn_time(2026, 3, 31, 23, 0))
    sim = await make_sim()
    await sim.seed_guides("alice")
    await sim.control("config", {"monthly_cap": 2})
    await sim.add("alice", "wmC1")

    async def send_one() -> int:
        msgid = (await create(sim, external_userid=["wmC1"]))["msgid"]
        await sim.control("groupmsg/confirm", {"msgid": msgid, "userid": "alice"})
        return (await send_result(sim, msgid))["wmC1"]

    assert [await send_one() for _ in range(3)] == [1, 1, 3]
    clock.set(cn_time(2026, 4, 1, 0, 0))  # still March 31 in UTC
    assert [await send_one() for _ in range(3)] == [1, 1, 3]


async def test_tag_filter_and_no_target(sim):
    await sim.control("tags", {"group_name": "Level", "tags": [{"name": "VIP", "id": "etVIP"}]})
    await sim.add("alice", "wmC1")
    await sim.add("alice", "wmC2")
    await sim.control(
        "contact/edit", {"userid": "alice", "external_userid": "wmC2", "add_tag": ["etVIP"]}
    )
    created = await create(sim, tag_filter={"group_list": [{"tag_list": ["etVIP"]}]})
    assert await send_result(sim, created["msgid"]) == {"wmC2": 0}
    nobody = await sim.api(
        "externalcontact/add_msg_template", {"sender": "bob", "external_userid": ["wmC1"], **TEXT}
    )
    assert nobody["errcode"] == 41048


async def test_list_v2_remind_and_cancel(sim):
    await sim.add("alice", "wmC1")
    msgid = (await create(sim, external_userid=["wmC1"]))["msgid"]
    now = int(sim.clock.time())
    listed = await sim.api(
        "externalcontact/get_groupmsg_list_v2",
        {"chat_type": "single", "start_time": now - 60, "end_time": now + 60},
    )
    assert [(m["msgid"], m["create_type"], m["text"]) for m in listed["group_msg_list"]] == [
        (msgid, 0, TEXT["text"])
    ]
    too_wide = await sim.api(
        "externalcontact/get_groupmsg_list_v2",
        {"chat_type": "single", "start_time": now - 40 * 86400, "end_time": now},
    )
    assert too_wide["errcode"] == 40058

    reminders = [
        (await sim.api("externalcontact/remind_groupmsg_send", {"msgid": msgid}))["errcode"]
        for _ in range(4)
    ]
    assert reminders == [0, 0, 0, 41094]
    assert (await sim.api("externalcontact/cancel_groupmsg_send", {"msgid": msgid}))["errcode"] == 0
    canceled = await sim.control(
        "groupmsg/confirm", {"msgid": msgid, "userid": "alice"}, status=409
    )
    assert "canceled" in canceled["error"]
    unknown = await sim.api("externalcontact/get_groupmsg_task", {"msgid": "msgNope"})
    assert unknown["errcode"] == 41047


# ---- chat_type group: doc 92135 (add_msg_template), doc 93338 (get_groupmsg_send_result) ----


async def groups_of(sim, owner: str, *names: str) -> list[str]:
    made = []
    for name in names:
        answer = await sim.control("groups", {"owner": owner, "name": name, "members": []})
        made.append(answer["chat_id"])
    return made


async def test_a_group_send_needs_its_sender_and_takes_chat_ids_only(sim):
    """doc 92135 创建企业群发: chat_type group 时 sender 必填; external_userid 仅 single;
    chat_id_list 仅 group, 最多 2000 个群."""
    await sim.seed_guides("bob")
    await groups_of(sim, "alice", "VIP群")
    api = "externalcontact/add_msg_template"
    assert (await sim.api(api, {"chat_type": "group", **TEXT}))["errcode"] == 40058
    body = {"chat_type": "group", "sender": "alice", **TEXT}
    assert (await sim.api(api, {**body, "external_userid": ["wmC1"]}))["errcode"] == 40058
    too_many = [f"wr{n}" for n in range(2001)]
    assert (await sim.api(api, {**body, "chat_id_list": too_many}))["errcode"] == 40058
    assert (await sim.api(api, {**TEXT, "sender": "alice", "chat_id_list": ["wr1"]}))[
        "errcode"
    ] == 40058  # chat_id_list on a single send
    assert (await sim.api(api, {**body, "chat_type": "room"}))["errcode"] == 40058
    # bob owns no group: nothing to send to
    assert (await sim.api(api, {**body, "sender": "bob"}))["errcode"] == 41048


async def test_a_group_send_goes_to_the_senders_groups_when_confirmed(sim):
    """doc 92135: 创建群发任务并不发送, 成员确认后才发出; chat_id_list 指定的群;
    doc 93338 获取企业群发成员执行结果: 群发只返回已发送的群, 给出 chat_id 而无 external_userid."""
    vip, flash, other = await groups_of(sim, "alice", "VIP群", "快闪群", "老客群")
    await sim.seed_guides("bob")
    [bobs] = await groups_of(sim, "bob", "bob的群")
    created = await create(sim, chat_type="group", chat_id_list=[vip, flash, bobs])
    msgid = created["msgid"]
    assert created["fail_list"] == []
    before = await sim.api(
        "externalcontact/get_groupmsg_send_result", {"msgid": msgid, "userid": "alice"}
    )
    assert before["send_list"] == []  # nothing sent, nothing listed
    listed = await sim.api(
        "externalcontact/get_groupmsg_list_v2",
        {
            "chat_type": "group",
            "start_time": int(sim.clock.time()) - 60,
            "end_time": int(sim.clock.time()) + 60,
        },
    )
    assert [m["msgid"] for m in listed["group_msg_list"]] == [msgid]
    sim.clock.advance(30)
    confirmed = await sim.control("groupmsg/confirm", {"msgid": msgid, "userid": "alice"})
    assert {r["chat_id"]: r["status"] for r in confirmed["send_list"]} == {vip: 1, flash: 1}
    rows = (
        await sim.api(
            "externalcontact/get_groupmsg_send_result", {"msgid": msgid, "userid": "alice"}
        )
    )["send_list"]
    assert rows == [
        {"chat_id": vip, "userid": "alice", "status": 1, "send_time": int(sim.clock.time())},
        {"chat_id": flash, "userid": "alice", "status": 1, "send_time": int(sim.clock.time())},
    ]
    assert other not in {r["chat_id"] for r in rows}  # not in chat_id_list
    task = await sim.api("externalcontact/get_groupmsg_task", {"msgid": msgid})
    assert task["task_list"] == [
        {"userid": "alice", "status": 2, "send_time": int(sim.clock.time())}
    ]
    everything = await create(sim, chat_type="group")  # no list: all of alice's live groups
    confirmed = await sim.control(
        "groupmsg/confirm", {"msgid": everything["msgid"], "userid": "alice"}
    )
    assert {r["chat_id"] for r in confirmed["send_list"]} == {vip, flash, other}


async def test_the_monthly_cap_counts_per_customer_group_too(make_sim, clock):
    """doc 92135: the cap (as many per month as the month has days) applies to each customer
    and each customer group; a capped group is not listed as sent (doc 93338)."""
    clock.set(cn_time(2026, 2, 3, 10, 0))
    sim = await make_sim()
    await sim.seed_guides("alice")
    [vip] = await groups_of(sim, "alice", "VIP群")
    statuses = []
    for _ in range(29):
        msgid = (await create(sim, chat_type="group", chat_id_list=[vip]))["msgid"]
        confirmed = await sim.control("groupmsg/confirm", {"msgid": msgid, "userid": "alice"})
        statuses.append(confirmed["send_list"][0]["status"])
    assert statuses == [1] * 28 + [3]
    rows = await sim.api(
        "externalcontact/get_groupmsg_send_result", {"msgid": msgid, "userid": "alice"}
    )
    assert rows["send_list"] == []
