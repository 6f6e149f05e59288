"""The groups API: 「加入群聊」 join ways whose joins are attributed to store, channel and
campaign; a store's group welcome kept in WeCom; the groups, one group, a customer's groups."""

from __future__ import annotations

from guidebot.groups.models import MemberEventKind


async def trail(h) -> list[tuple[int, str, str, str]]:
    """The audit trail: (id, role, action, target), oldest first."""
    status, answer = await h.api("GET", "/audit")
    assert status == 200, answer
    return sorted((e["id"], e["role"], e["action"], e["target"]) for e in answer["entries"])


async def actions(h) -> list[tuple[str, str, str]]:
    return [entry[1:] for entry in await trail(h)]


async def two_groups(h) -> list[str]:
    return [
        await h.create_group("g1", "张江VIP群"),
        await h.create_group("g3", "张江体验官群"),
    ]


async def new_way(h, chats, **extra) -> tuple[int, dict]:
    body = {"store": "11", "channel": "poster", "campaign": "vip26", "chat_ids": chats, **extra}
    return await h.api("POST", "/group-join-ways", json=body)


async def test_a_join_through_a_store_code_is_attributed_to_it(h):
    chats = await two_groups(h)
    status, way = await new_way(h, chats, remark="门店海报")
    assert status == 201, way
    assert way["state"] == "s11:poster:vip26"
    assert way["qr_code"].startswith("https://")
    target = f"group_join_way:{way['config_id']}"
    assert ("hq", "group_join_way.create", target) in await actions(h)
    in_wecom = h.sim_state.join_ways[way["config_id"]]
    assert (in_wecom["state"], in_wecom["chat_id_list"]) == ("s11:poster:vip26", chats)
    assert in_wecom["remark"] == "门店海报"
    await h.add("g3", "wmc2")  # a customer of the store's guide, who then scans the code
    h.advance(60)
    await h.join(chats[1], "wmc2", config_id=way["config_id"])
    member = await h.member(chats[1], "wmc2")
    assert (member.join_scene, member.state) == (3, "s11:poster:vip26")
    assert (member.config_id, member.store_id) == (way["config_id"], 11)
    assert (member.channel, member.campaign) == ("poster", "vip26")
    [fact] = [r for r in await h.log_rows() if r.member_id == "wmc2"]
    assert (fact.kind, fact.scene, fact.config_id, fact.channel) == (
        MemberEventKind.JOINED,
        3,
        way["config_id"],
        "poster",
    )
    status, listed = await h.api("GET", "/group-join-ways", params={"store": "11"})
    assert [w["config_id"] for w in listed["join_ways"]] == [way["config_id"]]
    status, detail = await h.api("GET", "/customers/wmc2")
    assert status == 200
    assert detail["groups"] == [
        {
            "chat_id": chats[1],
            "name": "张江体验官群",
            "owner_userid": "g3",
            "store_id": 11,
            "joined_at": detail["groups"][0]["joined_at"],
            "join_scene": 3,
            "channel": "poster",
            "campaign": "vip26",
        }
    ]
    status, group = await h.api("GET", f"/groups/{chats[1]}")
    assert (group["group"]["customers"], group["group"]["members"]) == (1, 2)
    assert [f["kind"] for f in group["history"] if f["member_id"] == "wmc2"] == ["joined"]


async def test_a_join_way_is_refused_with_a_reason_and_nothing_made(h):
    chats = await two_groups(h)
    status, answer = await new_way(h, chats * 3)
    assert status == 400 and "chat_ids" in answer["error"]["reason"]
    status, answer = await new_way(h, ["wrNOSUCH"])
    assert status == 404 and "wrNOSUCH" in answer["error"]["reason"]
    status, answer = await new_way(h, chats, campaign="a-very-long-campaign-name")
    assert status == 422 and "最多 30 字" in answer["error"]["reason"]  # Chinese, then English
    assert "WeCom allows 30" in answer["error"]["reason"]
    status, answer = await new_way(h, chats, store="99")
    assert status == 404
    assert await h.calls("externalcontact/groupchat/add_join_way") == []
    status, first = await new_way(h, chats)
    status, again = await new_way(h, chats)
    assert status == 409 and first["state"] in again["error"]["reason"]


async def test_a_deleted_join_way_is_gone_in_wecom_too(h):
    chats = await two_groups(h)
    _, way = await new_way(h, chats)
    status, _ = await h.api("DELETE", f"/group-join-ways/{way['config_id']}")
    assert status == 200
    assert ("hq", "group_join_way.delete", f"group_join_way:{way['config_id']}") in await actions(h)
    assert h.sim_state.join_ways == {}
    status, listed = await h.api("GET", "/group-join-ways")
    assert listed["join_ways"] == []
    status, _ = await h.api("DELETE", f"/group-join-ways/{way['config_id']}")
    assert status == 404


async def test_a_store_group_welcome_is_rendered_kept_edited_and_removed(h):
    status, set_ = await h.api(
        "PUT", "/stores/11/group-welcome", json={"template": "group_welcome.j2"}
    )
    assert status == 200, set_
    assert "%NICKNAME%" in set_["text"] and "张江店" in set_["text"]
    kept = h.sim_state.group_welcome_templates[set_["template_id"]]
    assert kept["content"] == {"text": {"content": set_["text"]}}
    (h.sop_dir.parent / "templates" / "messages" / "vip.j2").write_text(
        "{{ store.name }}VIP群欢迎{{ customer.name }}", encoding="utf-8"
    )
    status, edited = await h.api("PUT", "/stores/11/group-welcome", json={"template": "vip.j2"})
    assert status == 200 and edited["template_id"] == set_["template_id"]
    assert kept["content"] == {"text": {"content": "张江店VIP群欢迎%NICKNAME%"}}
    status, got = await h.api("GET", "/stores/11/group-welcome")
    assert (got["template"], got["text"]) == ("vip.j2", "张江店VIP群欢迎%NICKNAME%")
    status, _ = await h.api("DELETE", "/stores/11/group-welcome")
    assert status == 200
    assert [a for a in await actions(h) if a[1].startswith("group_welcome")] == [
        ("hq", "group_welcome.save", "store:11"),
        ("hq", "group_welcome.save", "store:11"),
        ("hq", "group_welcome.delete", "store:11"),
    ]
    assert h.sim_state.group_welcome_templates == {}
    status, _ = await h.api("GET", "/stores/11/group-welcome")
    assert status == 404


async def test_a_welcome_template_that_does_not_render_is_refused(h):
    (h.sop_dir.parent / "templates" / "messages" / "guide.j2").write_text(
        "{{ guide.name }}欢迎你", encoding="utf-8"
    )
    for template in ("guide.j2", "missing.j2"):
        status, answer = await h.api("PUT", "/stores/11/group-welcome", json={"template": template})
        assert status == 422, answer
        assert "模板" in answer["error"]["reason"] and template in answer["error"]["reason"]
    assert h.sim_state.group_welcome_templates == {}


async def test_groups_are_listed_by_store_and_owner(h):
    chats = await two_groups(h)
    other = await h.create_group("g2", "徐汇群", ["wmc1"])
    status, by_store = await h.api("GET", "/groups", params={"store": "11"})
    assert status == 200 and sorted(g["chat_id"] for g in by_store["groups"]) == sorted(chats)
    status, by_owner = await h.api("GET", "/groups", params={"owner": "g2"})
    assert [(g["chat_id"], g["customers"]) for g in by_owner["groups"]] == [(other, 1)]
    status, _ = await h.api("GET", "/groups/wrNOSUCH")
    assert status == 404


async def test_erasing_a_customer_clears_their_names_in_groups_and_keeps_the_counts(h):
    await h.add("g1", "wmc1")
    chat_id = await h.create_group("g1", "张江VIP群", ["wmc1"])
    assert (await h.member(chat_id, "wmc1")).name == "陈女士"
    status, export = await h.api("GET", "/privacy/customers/wmc1")
    assert status == 200 and "陈女士" in str(export)
    status, done = await h.api(
        "POST", "/privacy/customers/wmc1/erase", json={"reason": "客户要求删除"}
    )
    assert status == 200, done
    member = await h.member(chat_id, "wmc1")
    assert (member.name, member.unionid, member.status) == (None, None, "member")
    assert ("wmc1", "joined") in await h.group_log(chat_id)  # the figures' rows stay
