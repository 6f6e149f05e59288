"""The corp's tags in the simulator, each rule as WeCom's documents state it: marking a
customer (doc 92118 编辑客户企业标签), the tag library (doc 92117 管理企业标签), and the callbacks
a guide's edit and the admin's console make (doc 92130 客户联系变更回调)."""

from __future__ import annotations

import xml.etree.ElementTree as ET

VIP = {
    "group_name": "客户等级",
    "tags": [{"name": "VIP", "id": "etVIP"}, {"name": "普通", "id": "etN"}],
}


def fields(xml: str) -> dict[str, str]:
    return {child.tag: child.text or "" for child in ET.fromstring(xml)}


async def test_mark_tag_makes_no_callback_and_shows_in_both_reads(sim, receiver):
    """doc 92130 (header): "通过API进行的操作不会产生回调" — mark_tag (doc 92118) changes the
    customer's tags without an edit_external_contact; externalcontact/get names them in
    follow_user.tags (doc 92114), batch/get_by_user gives only their ids (follow_info.tag_id)."""
    await sim.control("tags", VIP)
    await sim.add("alice", "wmC1")
    before = len(receiver.posts)
    answer = await sim.api(
        "externalcontact/mark_tag",
        {"userid": "alice", "external_userid": "wmC1", "add_tag": ["etVIP"]},
    )
    assert answer["errcode"] == 0
    assert len(receiver.posts) == before
    [follow] = (await sim.api("externalcontact/get", external_userid="wmC1"))["follow_user"]
    assert follow["tags"] == [
        {"group_name": "客户等级", "tag_name": "VIP", "type": 1, "tag_id": "etVIP"}
    ]
    listed = await sim.api("externalcontact/batch/get_by_user", {"userid_list": ["alice"]})
    [item] = listed["external_contact_list"]
    assert item["follow_info"]["tag_id"] == ["etVIP"]


async def test_mark_tag_needs_add_or_remove_and_known_tags(sim):
    """doc 92118 编辑客户企业标签: add_tag and remove_tag may not both be empty; a tag id the corp
    does not have is 40068 "不合法的标签ID" (doc 90313), and nothing changes."""
    await sim.control("tags", VIP)
    await sim.add("alice", "wmC1")
    empty = await sim.api(
        "externalcontact/mark_tag", {"userid": "alice", "external_userid": "wmC1"}
    )
    assert empty["errcode"] != 0
    mixed = await sim.api(
        "externalcontact/mark_tag",
        {"userid": "alice", "external_userid": "wmC1", "add_tag": ["etVIP", "etNope"]},
    )
    assert mixed["errcode"] == 40068
    [follow] = (await sim.api("externalcontact/get", external_userid="wmC1"))["follow_user"]
    assert follow["tags"] == []


async def test_get_corp_tag_list_group_id_wins_over_tag_id(sim):
    """doc 92117 管理企业标签, 获取企业标签库: "若tag_id和group_id均为空，则返回所有标签。同时传递
    tag_id和group_id时，忽略tag_id，仅以group_id作为过滤条件"."""
    levels = await sim.control("tags", VIP)
    await sim.control("tags", {"group_name": "兴趣", "tags": [{"name": "连衣裙", "id": "etDress"}]})
    group = levels["tag_group"]["group_id"]
    everything = await sim.api("externalcontact/get_corp_tag_list", {})
    assert sorted(g["group_name"] for g in everything["tag_group"]) == ["兴趣", "客户等级"]
    by_tag = await sim.api("externalcontact/get_corp_tag_list", {"tag_id": ["etDress"]})
    assert [[t["id"] for t in g["tag"]] for g in by_tag["tag_group"]] == [["etDress"]]
    both = await sim.api(
        "externalcontact/get_corp_tag_list", {"tag_id": ["etDress"], "group_id": [group]}
    )
    assert [g["group_name"] for g in both["tag_group"]] == ["客户等级"]


async def test_a_guides_tag_edit_calls_back_edit_external_contact_with_the_pair_only(sim, receiver):
    """doc 92130 编辑企业客户事件: a member's edit of a customer's remark, description or corp
    tags in the client calls back change_external_contact / edit_external_contact with UserID
    and ExternalUserID; what changed is read back with externalcontact/get."""
    await sim.control("tags", VIP)
    await sim.add("alice", "wmC1")
    await sim.control(
        "contact/edit", {"userid": "alice", "external_userid": "wmC1", "add_tag": ["etVIP"]}
    )
    event = fields(receiver.plaintexts[-1])
    assert event["Event"] == "change_external_contact"
    assert event["ChangeType"] == "edit_external_contact"
    assert set(event) == {
        "ToUserName",
        "FromUserName",
        "CreateTime",
        "MsgType",
        "Event",
        "ChangeType",
        "UserID",
        "ExternalUserID",
    }


async def test_the_admins_console_edits_call_back_change_external_tag(sim, receiver):
    """doc 92130 企业客户标签变更事件 / 删除事件: renaming a tag or group in the console calls back
    change_external_tag with ChangeType update, deleting one with delete; Id is the tag's or
    group's id and TagType says which (tag | tag_group). A deleted tag leaves its customers."""
    levels = await sim.control("tags", VIP)
    await sim.add("alice", "wmC1")
    await sim.api(
        "externalcontact/mark_tag",
        {"userid": "alice", "external_userid": "wmC1", "add_tag": ["etVIP", "etN"]},
    )
    await sim.control("tags/console", {"id": "etVIP", "name": "金卡"})
    event = fields(receiver.plaintexts[-1])
    assert (event["Event"], event["ChangeType"], event["Id"], event["TagType"]) == (
        "change_external_tag",
        "update",
        "etVIP",
        "tag",
    )
    group = levels["tag_group"]["group_id"]
    await sim.control("tags/console", {"id": group, "name": "会员等级"})
    assert fields(receiver.plaintexts[-1])["TagType"] == "tag_group"
    await sim.control("tags/console", {"id": "etN", "delete": True})
    event = fields(receiver.plaintexts[-1])
    assert (event["ChangeType"], event["Id"], event["TagType"]) == ("delete", "etN", "tag")
    [follow] = (await sim.api("externalcontact/get", external_userid="wmC1"))["follow_user"]
    assert follow["tags"] == [
        {"group_name": "会员等级", "tag_name": "金卡", "type": 1, "tag_id": "etVIP"}
    ]
    # The same change through the API calls back nothing (doc 92130 header).
    before = len(receiver.posts)
    await sim.api("externalcontact/edit_corp_tag", {"id": "etVIP", "name": "白金卡"})
    assert len(receiver.posts) == before
