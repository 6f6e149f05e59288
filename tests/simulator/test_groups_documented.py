"""Customer groups as WeCom documents them: groupchat/list (doc 93414), groupchat/get (doc
96338), the 「加入群聊」 join ways (doc 99547), the group welcome templates (doc 96357) and the
change_external_chat callback (doc 96361)."""

from __future__ import annotations

import re

from guidebot.wecom.simulator.records import Member

LIST = "externalcontact/groupchat/list"
GET = "externalcontact/groupchat/get"


async def group(sim, owner="alice", members=(), **extra) -> str:
    answer = await sim.control(
        "groups", {"owner": owner, "name": "VIP群", "members": list(members), **extra}
    )
    return answer["chat_id"]


async def customers(sim, *ids: str, unionid: bool = False) -> None:
    for ext in ids:
        body = {"external_userid": ext, "name": f"客户{ext}"}
        if unionid:
            body["unionid"] = f"u-{ext}"
        await sim.control("customers", body)


def field(xml: str, name: str) -> str | None:
    found = re.search(rf"<{name}>(?:<!\[CDATA\[)?(.*?)(?:\]\]>)?</{name}>", xml, re.S)
    return found.group(1) if found else None


# ---- doc 93414 groupchat/list -----------------------------------------------------------------


async def test_list_requires_a_limit_of_1_to_1000(sim):
    """doc 93414 获取客户群列表: limit 必填, 取值范围 1 ~ 1000."""
    assert (await sim.api(LIST, {}))["errcode"] == 40058
    assert (await sim.api(LIST, {"limit": 0}))["errcode"] == 40058
    assert (await sim.api(LIST, {"limit": 1001}))["errcode"] == 40058
    assert (await sim.api(LIST, {"limit": 1000}))["errcode"] == 0


async def test_list_pages_with_an_opaque_cursor_that_is_empty_at_the_end(sim):
    """doc 93414: next_cursor 分页游标, 为空时表示没有更多数据."""
    made = [await group(sim) for _ in range(5)]
    seen, cursor, pages = [], "", 0
    while True:
        body = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        answer = await sim.api(LIST, body)
        pages += 1
        seen += [row["chat_id"] for row in answer["group_chat_list"]]
        assert all(row["status"] == 0 for row in answer["group_chat_list"])
        cursor = answer["next_cursor"]
        if not cursor:
            break
    assert pages == 3
    assert sorted(seen) == sorted(made)


async def test_owner_filter_takes_at_most_100_owners(sim):
    """doc 93414: owner_filter.userid_list 用户ID列表, 最多100个."""
    owners = {"userid_list": ["alice"] * 101}
    assert (await sim.api(LIST, {"limit": 10, "owner_filter": owners}))["errcode"] == 40058


async def test_without_owner_filter_a_visible_range_over_1000_is_refused(sim):
    """doc 93414: 如果不指定 owner_filter, 会拉取应用可见范围内的所有群主的数据, 但是不建议
    这么用; 如果可见范围人数超过1000人, 为了防止数据包过大, 会报错 81017."""
    for n in range(1000):
        sim.state.upsert_member(Member(f"m{n:04d}", f"成员{n}", [2]))
    answer = await sim.api(LIST, {"limit": 10})
    assert answer["errcode"] == 81017
    named = await sim.api(LIST, {"limit": 10, "owner_filter": {"userid_list": ["alice"]}})
    assert named["errcode"] == 0


async def test_a_resigned_owners_groups_are_listed_only_when_named(sim):
    """doc 93414 (2025/01/13): 离职成员的客户群, 仅在 owner_filter 指定该成员时返回."""
    chat_id = await group(sim, owner="bob")
    await sim.control("users/delete", {"userid": "bob"})
    assert (await sim.api(LIST, {"limit": 10}))["group_chat_list"] == []
    named = await sim.api(LIST, {"limit": 10, "owner_filter": {"userid_list": ["bob"]}})
    assert named["group_chat_list"] == [{"chat_id": chat_id, "status": 1}]


# ---- doc 96338 groupchat/get ------------------------------------------------------------------


async def test_get_gives_members_with_their_join_scene_inviter_and_names_on_request(sim):
    """doc 96338 获取客户群详情: name 仅 need_name=1 时返回; invitor 仅当邀请者为本企业成员;
    unionid 仅微信用户且企业绑定了开发者 ID."""
    await customers(sim, "wmA", unionid=True)
    await customers(sim, "wmB")
    chat_id = await group(sim, members=["wmA"])
    await sim.control(
        "groups/join", {"chat_id": chat_id, "members": ["wmB"], "scene": 2, "invitor": "wmA"}
    )
    plain = (await sim.api(GET, {"chat_id": chat_id}))["group_chat"]
    assert plain["owner"] == "alice" and plain["name"] == "VIP群"
    by_id = {m["userid"]: m for m in plain["member_list"]}
    assert all("name" not in m for m in by_id.values())
    assert by_id["alice"]["type"] == 1 and by_id["wmA"]["type"] == 2
    assert by_id["wmA"]["invitor"] == {"userid": "alice"} and by_id["wmA"]["join_scene"] == 1
    assert by_id["wmA"]["unionid"] == "u-wmA"
    assert "invitor" not in by_id["wmB"]  # invited by a customer: not a member of the corp
    assert "unionid" not in by_id["wmB"] and "state" not in by_id["wmB"]
    assert by_id["wmB"]["join_scene"] == 2
    named = (await sim.api(GET, {"chat_id": chat_id, "need_name": 1}))["group_chat"]
    assert {m["userid"]: m["name"] for m in named["member_list"]}["wmA"] == "客户wmA"


async def test_get_of_a_dismissed_or_unknown_group_is_refused(sim):
    """doc 96338 names no errcode for these; the simulator answers from the global table
    (doc 90313): 49008 群已经解散, 90501 该群不是客户群."""
    chat_id = await group(sim)
    await sim.control("groups/dismiss", {"chat_id": chat_id})
    assert (await sim.api(GET, {"chat_id": chat_id}))["errcode"] == 49008
    assert (await sim.api(GET, {"chat_id": "wrNOSUCHGROUP"}))["errcode"] == 90501


async def test_member_version_changes_with_membership_and_matches_the_callback(sim, receiver):
    """doc 96361 客户群变更事件: LastMemVer 变更前的群成员版本号, CurMemVer 变更后的版本号;
    doc 96338: member_version 当前群成员版本号."""
    await customers(sim, "wmA", "wmB")
    chat_id = await group(sim)
    before = (await sim.api(GET, {"chat_id": chat_id}))["group_chat"]["member_version"]
    await sim.control("groups/join", {"chat_id": chat_id, "members": ["wmA", "wmB"]})
    after = (await sim.api(GET, {"chat_id": chat_id}))["group_chat"]["member_version"]
    xml = receiver.plaintexts[-1]
    assert (field(xml, "LastMemVer"), field(xml, "CurMemVer")) == (before, after)
    assert before != after
    assert xml.count("<Item>") == 2 and field(xml, "MemChangeCnt") == "2"
    assert field(xml, "JoinScene") == "0"  # invited by a member: 0 in the event


# ---- doc 96361 change_external_chat -----------------------------------------------------------


async def test_create_and_dismiss_carry_only_the_chat_id(sim, receiver):
    """doc 96361: 客户群创建事件 / 客户群解散事件 carry ChatId and ChangeType only."""
    chat_id = await group(sim)
    await sim.control("groups/dismiss", {"chat_id": chat_id})
    for xml, change in zip(receiver.plaintexts, ("create", "dismiss"), strict=True):
        assert field(xml, "Event") == "change_external_chat"
        assert field(xml, "ChatId") == chat_id and field(xml, "ChangeType") == change
        for absent in ("UpdateDetail", "JoinScene", "QuitScene", "MemChangeList", "CurMemVer"):
            assert field(xml, absent) is None


async def test_a_removal_says_quit_scene_1_and_a_departure_0(sim, receiver):
    """doc 96361: QuitScene 0 - 自己退群, 1 - 群主/群管理员移出."""
    await customers(sim, "wmA", "wmB")
    chat_id = await group(sim, members=["wmA", "wmB"])
    await sim.control("groups/leave", {"chat_id": chat_id, "members": ["wmA"]})
    await sim.control("groups/leave", {"chat_id": chat_id, "members": ["wmB"], "removed": True})
    left, removed = receiver.plaintexts[-2:]
    assert (field(left, "UpdateDetail"), field(left, "QuitScene")) == ("del_member", "0")
    assert field(removed, "QuitScene") == "1" and field(removed, "JoinScene") is None
    assert field(removed, "MemChangeList") == "<Item><![CDATA[wmB]]></Item>"


async def test_name_notice_and_owner_changes_carry_no_member_fields(sim, receiver):
    """doc 96361: change_name / change_notice / change_owner, without member fields."""
    chat_id = await group(sim)
    await sim.control("groups/change", {"chat_id": chat_id, "owner": "bob"})
    xml = receiver.plaintexts[-1]
    assert field(xml, "UpdateDetail") == "change_owner"
    assert field(xml, "MemChangeCnt") is None
    assert (await sim.api(GET, {"chat_id": chat_id}))["group_chat"]["owner"] == "bob"


# ---- doc 99547 「加入群聊」 join ways -----------------------------------------------------------


async def test_a_join_way_links_at_most_5_groups(sim):
    """doc 99547: chat_id_list 最多支持5个 (41091 配置客户群进群方式最多只能关联5个群)."""
    chats = [await group(sim) for _ in range(6)]
    answer = await sim.api(
        "externalcontact/groupchat/add_join_way", {"scene": 2, "chat_id_list": chats}
    )
    assert answer["errcode"] == 41091


async def test_join_way_remark_is_cut_state_is_bounded_and_qr_only_for_scene_2(sim):
    """doc 99547: remark 超过30个字符将被截断; state 不超过30个UTF-8字符; qr_code 仅在
    scene 为 2 时返回."""
    chat_id = await group(sim)
    too_long = await sim.api(
        "externalcontact/groupchat/add_join_way",
        {"scene": 2, "chat_id_list": [chat_id], "state": "s" * 31},
    )
    assert too_long["errcode"] == 40058
    made = await sim.api(
        "externalcontact/groupchat/add_join_way",
        {"scene": 2, "chat_id_list": [chat_id], "remark": "备" * 40, "state": "s11:poster"},
    )
    way = (
        await sim.api("externalcontact/groupchat/get_join_way", {"config_id": made["config_id"]})
    )["join_way"]
    assert way["remark"] == "备" * 30 and way["state"] == "s11:poster"
    assert way["qr_code"].startswith("https://") and way["auto_create_room"] == 1
    plugin = await sim.api(
        "externalcontact/groupchat/add_join_way", {"scene": 1, "chat_id_list": [chat_id]}
    )
    got = await sim.api(
        "externalcontact/groupchat/get_join_way", {"config_id": plugin["config_id"]}
    )
    assert "qr_code" not in got["join_way"]
    await sim.api("externalcontact/groupchat/del_join_way", {"config_id": plugin["config_id"]})
    gone = await sim.api(
        "externalcontact/groupchat/get_join_way", {"config_id": plugin["config_id"]}
    )
    assert gone["errcode"] == 41044


async def test_a_join_through_a_way_gives_scene_3_and_the_state(sim, receiver):
    """doc 99547 / 96338: 通过「加入群聊」进群的成员, join_scene 为 3 且带 state;
    doc 96361: JoinScene 3 - 扫描群二维码入群."""
    await customers(sim, "wmA")
    chat_id = await group(sim)
    made = await sim.api(
        "externalcontact/groupchat/add_join_way",
        {"scene": 2, "chat_id_list": [chat_id], "state": "s11:poster:vip"},
    )
    await sim.control(
        "groups/join", {"chat_id": chat_id, "members": ["wmA"], "config_id": made["config_id"]}
    )
    assert field(receiver.plaintexts[-1], "JoinScene") == "3"
    assert field(receiver.plaintexts[-1], "State") is None  # the event carries no state
    members = (await sim.api(GET, {"chat_id": chat_id}))["group_chat"]["member_list"]
    joined = next(m for m in members if m["userid"] == "wmA")
    assert (joined["join_scene"], joined["state"]) == (3, "s11:poster:vip")
    assert "invitor" not in joined


# ---- doc 96357 group welcome templates --------------------------------------------------------

WELCOME = "externalcontact/group_welcome_template/"


async def test_a_template_keeps_text_and_one_attachment_by_priority(sim):
    """doc 96357 入群欢迎语素材: text 之外仅一种附件生效, 优先级 图片 > 链接 > 小程序 > 文件
    > 视频; get 返回图片的 pic_url."""
    made = await sim.api(
        WELCOME + "add",
        {
            "text": {"content": "欢迎 %NICKNAME% 入群"},
            "link": {"title": "新品", "url": "https://example.com"},
            "image": {"media_id": "MEDIA1"},
        },
    )
    got = await sim.api(WELCOME + "get", {"template_id": made["template_id"]})
    assert got["text"] == {"content": "欢迎 %NICKNAME% 入群"}
    assert set(got["image"]) == {"pic_url"} and "link" not in got
    assert (await sim.api(WELCOME + "add", {}))["errcode"] == 40058


async def test_template_text_is_3000_bytes_on_add_and_4000_on_edit(sim):
    """doc 96357: add 的 text.content 最长为3000个字节; edit 的最长为4000个字节."""
    too_long = "好" * 1001  # 3003 bytes
    assert (await sim.api(WELCOME + "add", {"text": {"content": too_long}}))["errcode"] == 40058
    made = await sim.api(WELCOME + "add", {"text": {"content": "欢迎"}})
    edited = await sim.api(
        WELCOME + "edit", {"template_id": made["template_id"], "text": {"content": too_long}}
    )
    assert edited["errcode"] == 0


async def test_the_library_holds_100_templates(sim):
    """doc 96357: 企业最多可创建100个群欢迎语模板 (41055)."""
    for _ in range(100):
        assert (await sim.api(WELCOME + "add", {"text": {"content": "欢迎"}}))["errcode"] == 0
    assert (await sim.api(WELCOME + "add", {"text": {"content": "欢迎"}}))["errcode"] == 41055


async def test_only_the_apps_own_templates_may_be_edited_or_deleted(sim):
    """doc 96357: 仅可编辑/删除本应用创建的模板 (41058 无此群欢迎语模板的编辑权限)."""
    console = await sim.control("group_welcome_templates/console", {"text": "管理后台的欢迎语"})
    template_id = console["template_id"]
    edit = await sim.api(WELCOME + "edit", {"template_id": template_id, "text": {"content": "x"}})
    assert edit["errcode"] == 41058
    assert (await sim.api(WELCOME + "del", {"template_id": template_id}))["errcode"] == 41058
    assert (await sim.api(WELCOME + "get", {"template_id": template_id}))["errcode"] == 0
