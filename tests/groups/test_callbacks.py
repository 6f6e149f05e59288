"""change_external_chat (doc 96361) through /wecom/callback, encrypted as WeCom sends it: the
group, its members and the membership log; duplicates and out-of-order deliveries."""

from __future__ import annotations

from guidebot.groups.models import GroupStatus, MemberStatus


async def test_a_created_group_is_recorded_with_its_owner_store_and_members(h):
    chat_id = await h.create_group("g1", "张江VIP群", ["wmc1", "wmc2"])
    group = await h.group(chat_id)
    assert group.name == "张江VIP群"
    assert group.owner_userid == "g1"
    assert group.store_id == 11  # g1's store when the group was created
    assert group.status == GroupStatus.ACTIVE
    assert await h.members(chat_id) == {"g1": "member", "wmc1": "member", "wmc2": "member"}
    wmc1 = await h.member(chat_id, "wmc1")
    assert wmc1.member_type == "customer"
    assert wmc1.name == "陈女士"  # need_name=1
    assert wmc1.invitor_userid == "g1"
    assert wmc1.join_scene == 1
    assert (await h.member(chat_id, "g1")).member_type == "employee"
    assert sorted(await h.group_log(chat_id)) == [
        ("g1", "joined"),
        ("wmc1", "joined"),
        ("wmc2", "joined"),
    ]


async def test_joins_and_departures_follow_the_callbacks(h):
    chat_id = await h.create_group("g2", "徐汇体验官群")
    h.advance(60)
    await h.join(chat_id, "wmc1", "wmc2", invitor="g2")
    h.advance(60)
    await h.leave(chat_id, "wmc1")
    h.advance(60)
    await h.leave(chat_id, "wmc2", removed=True)
    assert await h.members(chat_id) == {
        "g2": MemberStatus.MEMBER,
        "wmc1": MemberStatus.LEFT,
        "wmc2": MemberStatus.REMOVED,
    }
    rows = [r for r in await h.log_rows() if r.member_id != "g2"]
    assert [(r.member_id, r.kind, r.scene, r.source) for r in rows] == [
        ("wmc1", "joined", 1, "callback"),
        ("wmc2", "joined", 1, "callback"),
        ("wmc1", "left", 0, "callback"),
        ("wmc2", "removed", 1, "callback"),
    ]
    assert all(r.owner_userid == "g2" and r.store_id == 12 for r in rows)


async def test_each_callback_twice_leaves_one_fact_each(h):
    chat_id = await h.create_group("g1", "快闪群")
    h.advance(30)
    joined = await h.join(chat_id, "wmc1")
    h.advance(30)
    left = await h.leave(chat_id, "wmc1")
    await h.deliver(joined["plaintext"])
    await h.deliver(left["plaintext"])
    await h.deliver(joined["plaintext"])
    assert (await h.member(chat_id, "wmc1")).status == MemberStatus.LEFT
    assert [k for m, k in await h.group_log(chat_id) if m == "wmc1"] == ["joined", "left"]


async def test_a_departure_delivered_before_its_join_leaves_the_member_out(h):
    chat_id = await h.create_group("g1", "快闪群")
    h.advance(30)
    joined = await h.join(chat_id, "wmc3", deliver=False)
    h.advance(30)
    left = await h.leave(chat_id, "wmc3", deliver=False)
    await h.deliver(left["plaintext"])
    await h.deliver(joined["plaintext"])
    await h.deliver(left["plaintext"])
    member = await h.member(chat_id, "wmc3")
    assert member.status == MemberStatus.LEFT
    assert [k for m, k in await h.group_log(chat_id) if m == "wmc3"] == ["joined", "left"]


async def test_a_rejoin_delivered_before_the_departure_keeps_the_member_in(h):
    chat_id = await h.create_group("g1", "快闪群")
    h.advance(30)
    first = await h.join(chat_id, "wmc1")
    h.advance(30)
    left = await h.leave(chat_id, "wmc1", deliver=False)
    h.advance(30)
    again = await h.join(chat_id, "wmc1", deliver=False)
    await h.deliver(again["plaintext"])
    await h.deliver(left["plaintext"])
    await h.deliver(first["plaintext"])
    assert (await h.member(chat_id, "wmc1")).status == MemberStatus.MEMBER
    assert [k for m, k in await h.group_log(chat_id) if m == "wmc1"] == [
        "joined",
        "left",
        "joined",
    ]


async def test_name_notice_owner_and_dismiss(h):
    chat_id = await h.create_group("g1", "旧名字")
    await h.act("groups/change", {"chat_id": chat_id, "name": "新名字"})
    await h.act("groups/change", {"chat_id": chat_id, "notice": "周六闭店"})
    h.advance(60)
    await h.act("groups/change", {"chat_id": chat_id, "owner": "g2"})
    group = await h.group(chat_id)
    assert (group.name, group.notice, group.owner_userid) == ("新名字", "周六闭店", "g2")
    assert group.store_id == 12  # the new owner's store
    h.advance(60)
    dismissed = await h.act("groups/dismiss", {"chat_id": chat_id})
    group = await h.group(chat_id)
    assert group.status == GroupStatus.DISMISSED
    assert group.dismissed_at == h.clock.now()
    # A late update after the dismissal does not bring the group back.
    await h.deliver(dismissed["plaintext"].replace("dismiss", "update"))
    assert (await h.group(chat_id)).status == GroupStatus.DISMISSED


async def test_the_documents_quirky_shapes_are_read(h):
    """doc 96361's own sample carries JoinScene 1 (outside 0/3) and QuitScene on an add; a real
    change_name capture carries member fields and CDATA versions. Both are handled."""
    chat_id = await h.create_group("g1", "快闪群")
    h.advance(30)
    await h.control("groups/join", {"chat_id": chat_id, "members": ["wmc2"], "deliver": False})
    at = int(h.clock.now().timestamp())
    head = (
        "<xml><ToUserName><![CDATA[toUser]]></ToUserName><FromUserName><![CDATA[sys]]>"
        f"</FromUserName><CreateTime>{at}</CreateTime><MsgType><![CDATA[event]]></MsgType>"
        "<Event><![CDATA[change_external_chat]]></Event>"
        f"<ChatId><![CDATA[{chat_id}]]></ChatId><ChangeType><![CDATA[update]]></ChangeType>"
    )
    await h.deliver(
        head + "<UpdateDetail><![CDATA[add_member]]></UpdateDetail><JoinScene>1</JoinScene>"
        "<QuitScene>0</QuitScene><MemChangeCnt>1</MemChangeCnt>"
        "<MemChangeList><Item>wmc2</Item></MemChangeList>"
        "<LastMemVer>9c3f97c2ada667dfb5f6d03308d963e1</LastMemVer>"
        "<CurMemVer>71217227bbd112ecfe3a49c482195cb4</CurMemVer></xml>"
    )
    assert (await h.member(chat_id, "wmc2")).status == MemberStatus.MEMBER
    await h.control("groups/change", {"chat_id": chat_id, "name": "改名了", "deliver": False})
    await h.deliver(
        head + "<UpdateDetail><![CDATA[change_name]]></UpdateDetail><JoinScene>0</JoinScene>"
        "<QuitScene>0</QuitScene><MemChangeCnt>0</MemChangeCnt>"
        "<LastMemVer><![CDATA[71217227bbd112ecfe3a49c482195cb4]]></LastMemVer>"
        "<CurMemVer><![CDATA[71217227bbd112ecfe3a49c482195cb4]]></CurMemVer></xml>"
    )
    assert (await h.group(chat_id)).name == "改名了"
    assert [k for m, k in await h.group_log(chat_id) if m == "wmc2"] == ["joined"]
