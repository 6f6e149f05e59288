"""Customers and relations: welcome codes, 84061, reads, pagination, tags, transfers."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from .conftest import cn_time


def fields(xml: str) -> dict[str, str]:
    return {child.tag: child.text or "" for child in ET.fromstring(xml)}


WELCOME = {"text": {"content": "欢迎光临"}}


async def welcome(sim, code: str) -> dict:
    return await sim.api("externalcontact/send_welcome_msg", {"welcome_code": code, **WELCOME})


async def test_welcome_code_works_once(sim):
    code = (await sim.add("alice", "wmC1", welcome_code=True))["welcome_code"]
    assert (await welcome(sim, code))["errcode"] == 0
    assert (await welcome(sim, code))["errcode"] == 41051
    [sent] = (await sim.control("welcomes", method="GET"))["welcomes"]
    assert (sent["userid"], sent["external_userid"]) == ("alice", "wmC1")
    assert sent["text"] == {"content": "欢迎光临"}


async def test_a_welcome_records_when_its_code_was_issued_and_when_it_arrived(sim):
    code = (await sim.add("alice", "wmC1", welcome_code=True))["welcome_code"]
    issued = sim.clock.time()
    sim.clock.advance(3.5)
    assert (await welcome(sim, code))["errcode"] == 0
    [sent] = (await sim.control("welcomes", method="GET"))["welcomes"]
    assert (sent["issued_at"], sent["time"]) == (issued, issued + 3.5)


async def test_welcome_code_expires_after_20_seconds(sim):
    code = (await sim.add("alice", "wmC1", welcome_code=True))["welcome_code"]
    sim.clock.advance(20)
    fresh = (await sim.add("alice", "wmC2", welcome_code=True))["welcome_code"]
    assert (await welcome(sim, fresh))["errcode"] == 0
    sim.clock.advance(0.5)
    expired = await welcome(sim, code)
    assert expired["errcode"] == 41050
    assert "expired" in expired["errmsg"]
    assert [w["external_userid"] for w in sim.state.welcomes] == ["wmC2"]


async def test_unknown_welcome_code_and_bad_content_do_not_spend_the_code(sim):
    assert (await welcome(sim, "no-such-code"))["errcode"] == 41050
    code = (await sim.add("alice", "wmC1", welcome_code=True))["welcome_code"]
    empty = await sim.api("externalcontact/send_welcome_msg", {"welcome_code": code})
    assert empty["errcode"] == 44004
    bad_media = await sim.api(
        "externalcontact/send_welcome_msg",
        {
            "welcome_code": code,
            "attachments": [{"msgtype": "image", "image": {"media_id": "never-uploaded"}}],
        },
    )
    assert bad_media["errcode"] == 40007
    assert (await welcome(sim, code))["errcode"] == 0


async def test_84061_without_relation_and_after_the_guide_deletes(sim):
    await sim.control("customers", {"external_userid": "wmC1", "name": "Li"})
    remark = {"userid": "alice", "external_userid": "wmC1", "remark": "VIP"}
    assert (await sim.api("externalcontact/remark", remark))["errcode"] == 84061

    await sim.add("alice", "wmC1")
    assert (await sim.api("externalcontact/remark", remark))["errcode"] == 0
    await sim.control("contact/delete_by_guide", {"userid": "alice", "external_userid": "wmC1"})
    assert (await sim.api("externalcontact/remark", remark))["errcode"] == 84061
    assert (await sim.api("externalcontact/get", external_userid="wmC1"))["errcode"] == 84061


async def test_after_the_customer_deletes_the_guide_the_guides_apis_still_work(sim, receiver):
    await sim.add("alice", "wmC1")
    answer = await sim.control(
        "contact/delete_by_customer", {"userid": "alice", "external_userid": "wmC1"}
    )
    assert fields(receiver.plaintexts[-1])["ChangeType"] == "del_follow_user"
    assert answer["relation"]["status"] == "lost"
    remark = {"userid": "alice", "external_userid": "wmC1", "remark": "lost one"}
    assert (await sim.api("externalcontact/remark", remark))["errcode"] == 0
    got = await sim.api("externalcontact/get", external_userid="wmC1")
    assert [f["remark"] for f in got["follow_user"]] == ["lost one"]


async def test_unknown_customer_is_40096(sim):
    assert (await sim.api("externalcontact/get", external_userid="wmNobody"))["errcode"] == 40096


async def test_externalcontact_get_shape(sim):
    await sim.control(
        "customers", {"external_userid": "wmC1", "name": "Li", "gender": 2, "unionid": "u1"}
    )
    await sim.control("tags", {"group_name": "Level", "tags": [{"name": "VIP", "id": "etVIP"}]})
    await sim.add("alice", "wmC1", state="qr-store2")
    sim.clock.advance(5)
    await sim.add("bob", "wmC1")
    await sim.api(
        "externalcontact/mark_tag",
        {"userid": "alice", "external_userid": "wmC1", "add_tag": ["etVIP"]},
    )
    got = await sim.api("externalcontact/get", external_userid="wmC1")
    assert got["errcode"] == 0
    assert got["external_contact"] == {
        "external_userid": "wmC1",
        "name": "Li",
        "avatar": "",
        "type": 1,
        "gender": 2,
        "unionid": "u1",
    }
    alice, bob = got["follow_user"]
    assert alice == {
        "userid": "alice",
        "remark": "",
        "description": "",
        "createtime": int(sim.clock.time()) - 5,
        "tags": [{"group_name": "Level", "tag_name": "VIP", "type": 1, "tag_id": "etVIP"}],
        "remark_mobiles": [],
        "oper_userid": "wmC1",
        "add_way": 1,
        "state": "qr-store2",
    }
    assert bob["userid"] == "bob" and "state" not in bob


async def test_unknown_tag_is_40068(sim):
    await sim.add("alice", "wmC1")
    answer = await sim.api(
        "externalcontact/mark_tag",
        {"userid": "alice", "external_userid": "wmC1", "add_tag": ["etNope"]},
    )
    assert answer["errcode"] == 40068


async def test_batch_get_by_user_pages_through_everything(sim):
    for i in range(120):
        await sim.add("alice", f"wmA{i:03}", deliver=False)
        sim.clock.advance(1)
    for i in range(30):
        await sim.add("bob", f"wmB{i:03}", deliver=False)
    seen: list[tuple[str, str]] = []
    cursor, pages = "", 0
    for _ in range(10):  # bounded: a cursor that never advances must fail, not hang
        page = await sim.api(
            "externalcontact/batch/get_by_user",
            {"userid_list": ["alice", "bob"], "cursor": cursor, "limit": 70},
        )
        assert page["errcode"] == 0
        seen += [
            (e["follow_info"]["userid"], e["external_contact"]["external_userid"])
            for e in page["external_contact_list"]
        ]
        pages += 1
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert pages == 3
    assert len(seen) == len(set(seen)) == 150
    assert seen[0] == ("alice", "wmA000") and seen[-1][0] == "bob"


async def test_batch_get_by_user_cursor_survives_deletions_between_pages(sim):
    for i in range(10):
        await sim.add("alice", f"wmA{i}", deliver=False)
        sim.clock.advance(1)
    first = await sim.api(
        "externalcontact/batch/get_by_user", {"userid_list": ["alice"], "limit": 4}
    )
    await sim.control("contact/delete_by_guide", {"userid": "alice", "external_userid": "wmA1"})
    rest = await sim.api(
        "externalcontact/batch/get_by_user",
        {"userid_list": ["alice"], "limit": 100, "cursor": first["next_cursor"]},
    )
    ids = [e["external_contact"]["external_userid"] for e in rest["external_contact_list"]]
    assert ids == [f"wmA{i}" for i in range(4, 10)]


async def test_batch_get_by_user_limits(sim):
    too_many = {"userid_list": [f"u{i}" for i in range(101)]}
    assert (await sim.api("externalcontact/batch/get_by_user", too_many))["errcode"] == 40058
    negative_limit = {"userid_list": ["alice"], "limit": -1}
    assert (await sim.api("externalcontact/batch/get_by_user", negative_limit))["errcode"] == 40058
    bad_cursor = {"userid_list": ["alice"], "cursor": "garbage!"}
    assert (await sim.api("externalcontact/batch/get_by_user", bad_cursor))["errcode"] == 50100


async def test_list_and_follow_user_list(sim):
    await sim.add("alice", "wmC1")
    assert (await sim.api("externalcontact/list", userid="alice"))["external_userid"] == ["wmC1"]
    assert (await sim.api("externalcontact/list", userid="bob"))["errcode"] == 84061
    follow = await sim.api("externalcontact/get_follow_user_list")
    assert follow["follow_user"] == ["alice", "bob"]


async def test_deliver_false_changes_state_without_a_callback(sim, receiver):
    answer = await sim.add("alice", "wmC1", deliver=False, welcome_code=True)
    assert answer["delivered"] is False and answer["skipped"] is True
    assert receiver.posts == []
    got = await sim.api("externalcontact/get", external_userid="wmC1")
    assert [f["userid"] for f in got["follow_user"]] == ["alice"]
    await sim.control(
        "contact/delete_by_guide", {"userid": "alice", "external_userid": "wmC1", "deliver": False}
    )
    assert receiver.posts == []
    assert (await sim.api("externalcontact/get", external_userid="wmC1"))["errcode"] == 84061


async def test_add_half_needs_confirmation_before_pair_apis_work(sim, receiver):
    answer = await sim.control(
        "contact/add_half", {"userid": "alice", "external_userid": "wmC1", "welcome_code": True}
    )
    event = fields(receiver.plaintexts[-1])
    assert event["ChangeType"] == "add_half_external_contact"
    assert event["WelcomeCode"] == answer["welcome_code"]
    remark = {"userid": "alice", "external_userid": "wmC1", "remark": "x"}
    assert (await sim.api("externalcontact/remark", remark))["errcode"] == 84061
    assert (await welcome(sim, answer["welcome_code"]))["errcode"] == 0
    await sim.add("alice", "wmC1")
    assert (await sim.api("externalcontact/remark", remark))["errcode"] == 0


async def test_edit_delivers_edit_event_after_changing_the_relation(sim, receiver):
    await sim.control("tags", {"group_name": "Level", "tags": [{"name": "VIP", "id": "etVIP"}]})
    await sim.add("alice", "wmC1")
    await sim.control(
        "contact/edit",
        {"userid": "alice", "external_userid": "wmC1", "remark": "Ms Li", "add_tag": ["etVIP"]},
    )
    event = fields(receiver.plaintexts[-1])
    assert (event["ChangeType"], event["UserID"], event["ExternalUserID"]) == (
        "edit_external_contact",
        "alice",
        "wmC1",
    )
    [follow] = (await sim.api("externalcontact/get", external_userid="wmC1"))["follow_user"]
    assert follow["remark"] == "Ms Li"
    assert [t["tag_id"] for t in follow["tags"]] == ["etVIP"]


async def test_add_of_an_unknown_customer_creates_it(sim):
    await sim.add("alice", "wmNew", name="张三")
    got = await sim.api("externalcontact/get", external_userid="wmNew")
    assert got["external_contact"]["name"] == "张三"


async def test_transfer_accept_moves_the_customer_with_both_events(sim, receiver):
    await sim.add("alice", "wmC1", state="qr")
    answer = await sim.api(
        "externalcontact/transfer_customer",
        {"handover_userid": "alice", "takeover_userid": "bob", "external_userid": ["wmC1", "wmX"]},
    )
    assert answer["customer"] == [
        {"external_userid": "wmC1", "errcode": 0},
        {"external_userid": "wmX", "errcode": 40096},
    ]
    pending = await sim.api(
        "externalcontact/transfer_result", {"handover_userid": "alice", "takeover_userid": "bob"}
    )
    assert [c["status"] for c in pending["customer"]] == [2]
    receiver.posts.clear()

    done = await sim.control(
        "contact/transfer",
        {
            "handover_userid": "alice",
            "takeover_userid": "bob",
            "external_userid": "wmC1",
            "outcome": "accept",
        },
    )
    assert done["delivered"] is True and done["status"] == 1
    removed, added = (fields(p) for p in receiver.plaintexts)
    assert (removed["ChangeType"], removed["UserID"], removed["Source"]) == (
        "del_external_contact",
        "alice",
        "DELETE_BY_TRANSFER",
    )
    assert (added["ChangeType"], added["UserID"]) == ("add_external_contact", "bob")
    assert "WelcomeCode" not in added
    result = await sim.api(
        "externalcontact/transfer_result", {"handover_userid": "alice", "takeover_userid": "bob"}
    )
    assert result["customer"] == [
        {"external_userid": "wmC1", "status": 1, "takeover_time": int(sim.clock.time())}
    ]
    got = await sim.api("externalcontact/get", external_userid="wmC1")
    assert [f["userid"] for f in got["follow_user"]] == ["bob"]
    remark = {"userid": "alice", "external_userid": "wmC1", "remark": "x"}
    assert (await sim.api("externalcontact/remark", remark))["errcode"] == 84061


async def test_transfer_refused_sends_transfer_fail_to_the_takeover(sim, receiver):
    await sim.add("alice", "wmC1")
    await sim.api(
        "externalcontact/transfer_customer",
        {"handover_userid": "alice", "takeover_userid": "bob", "external_userid": ["wmC1"]},
    )
    receiver.posts.clear()
    done = await sim.control(
        "contact/transfer",
        {
            "handover_userid": "alice",
            "takeover_userid": "bob",
            "external_userid": "wmC1",
            "outcome": "refuse",
        },
    )
    assert done["status"] == 3
    [event] = (fields(p) for p in receiver.plaintexts)
    assert (event["ChangeType"], event["UserID"], event["FailReason"]) == (
        "transfer_fail",
        "bob",
        "customer_refused",
    )
    result = await sim.api(
        "externalcontact/transfer_result", {"handover_userid": "alice", "takeover_userid": "bob"}
    )
    assert result["customer"][0]["status"] == 3
    remark = {"userid": "alice", "external_userid": "wmC1", "remark": "still mine"}
    assert (await sim.api("externalcontact/remark", remark))["errcode"] == 0


async def test_transfer_rules(sim):
    await sim.add("alice", "wmC1")
    body = {"handover_userid": "alice", "takeover_userid": "bob", "external_userid": ["wmC1"]}
    transfer = "externalcontact/transfer_customer"
    assert (await sim.api(transfer, body))["customer"][0]["errcode"] == 0
    assert (await sim.api(transfer, body))["customer"][0]["errcode"] == 40129  # pending
    same = {**body, "takeover_userid": "alice"}
    assert (await sim.api(transfer, same))["errcode"] == 40130
    stranger = {**body, "handover_userid": "bob", "takeover_userid": "alice"}
    assert (await sim.api(transfer, stranger))["customer"][0]["errcode"] == 40131
    resigned = "externalcontact/resigned/transfer_customer"
    assert (await sim.api(resigned, body))["errcode"] == 40097  # alice has not left


async def test_resigned_transfer(sim, receiver):
    await sim.add("alice", "wmC1")
    await sim.control("users/delete", {"userid": "alice"})
    body = {"handover_userid": "alice", "takeover_userid": "bob", "external_userid": ["wmC1"]}
    answer = await sim.api("externalcontact/resigned/transfer_customer", body)
    assert answer["customer"] == [{"external_userid": "wmC1", "errcode": 0}]
    receiver.posts.clear()
    await sim.control(
        "contact/transfer",
        {"handover_userid": "alice", "takeover_userid": "bob", "external_userid": "wmC1"},
    )
    assert [fields(p)["ChangeType"] for p in receiver.plaintexts] == ["add_external_contact"]
    result = await sim.api(
        "externalcontact/resigned/transfer_result",
        {"handover_userid": "alice", "takeover_userid": "bob"},
    )
    assert result["customer"][0]["status"] == 1


async def test_contact_way_state_is_at_most_30_characters(sim, receiver):
    ok = await sim.api(
        "externalcontact/add_contact_way",
        {"type": 1, "scene": 2, "state": "s" * 30, "user": ["alice"]},
    )
    assert ok["errcode"] == 0 and ok["qr_code"]
    too_long = await sim.api(
        "externalcontact/add_contact_way",
        {"type": 1, "scene": 2, "state": "s" * 31, "user": ["alice"]},
    )
    assert too_long["errcode"] == 40058
    way = await sim.api("externalcontact/get_contact_way", {"config_id": ok["config_id"]})
    assert way["contact_way"]["state"] == "s" * 30
    update = {"config_id": ok["config_id"], "state": "store-2"}
    assert (await sim.api("externalcontact/update_contact_way", update))["errcode"] == 0
    listed = await sim.api("externalcontact/list_contact_way", {})
    assert listed["contact_way"] == [{"config_id": ok["config_id"]}]
    # A customer scanning that way brings its state along.
    await sim.control("contact/add", {"config_id": ok["config_id"], "external_userid": "wmC1"})
    assert fields(receiver.plaintexts[-1])["State"] == "store-2"
    gone = {"config_id": ok["config_id"]}
    assert (await sim.api("externalcontact/del_contact_way", gone))["errcode"] == 0
    assert (await sim.api("externalcontact/get_contact_way", gone))["errcode"] == 41044


async def test_corp_tags_add_list_and_delete(sim):
    added = await sim.api(
        "externalcontact/add_corp_tag",
        {"group_name": "Interest", "tag": [{"name": "Shoes"}, {"name": "Bags", "order": 5}]},
    )
    group = added["tag_group"]
    assert [t["name"] for t in group["tag"]] == ["Bags", "Shoes"]  # bigger order first
    duplicate = await sim.api(
        "externalcontact/add_corp_tag", {"group_id": group["group_id"], "tag": [{"name": "Bags"}]}
    )
    assert duplicate["errcode"] == 40071
    listed = await sim.api("externalcontact/get_corp_tag_list", {})
    assert [g["group_name"] for g in listed["tag_group"]] == ["Interest"]
    shoes = next(t["id"] for t in group["tag"] if t["name"] == "Shoes")
    await sim.add("alice", "wmC1")
    await sim.api(
        "externalcontact/mark_tag",
        {"userid": "alice", "external_userid": "wmC1", "add_tag": [shoes]},
    )
    assert (await sim.api("externalcontact/del_corp_tag", {"tag_id": [shoes]}))["errcode"] == 0
    [follow] = (await sim.api("externalcontact/get", external_userid="wmC1"))["follow_user"]
    assert follow["tags"] == []


async def test_user_behavior_data_sums_adds_and_deletes(make_sim, clock, receiver):
    clock.set(cn_time(2026, 3, 10, 9, 0))
    sim = await make_sim()
    await sim.seed_guides("alice", "bob")
    await sim.add("alice", "wmC1")
    await sim.add("bob", "wmC2")
    await sim.add("bob", "wmC3")
    clock.set(cn_time(2026, 3, 11, 10, 0))
    await sim.control("contact/delete_by_customer", {"userid": "bob", "external_userid": "wmC2"})
    await sim.control("contact/delete_by_guide", {"userid": "bob", "external_userid": "wmC3"})
    start, end = int(cn_time(2026, 3, 10)), int(cn_time(2026, 3, 11))
    both = await sim.api(
        "externalcontact/get_user_behavior_data",
        {"userid": ["alice", "bob"], "start_time": start, "end_time": end},
    )
    assert [
        (d["stat_time"], d["new_contact_cnt"], d["negative_feedback_cnt"])
        for d in both["behavior_data"]
    ] == [
        (start, 3, 0),
        (end, 0, 1),  # only the customer's deletion counts as negative feedback
    ]
    alice = await sim.api(
        "externalcontact/get_user_behavior_data",
        {"userid": ["alice"], "start_time": start, "end_time": end},
    )
    assert [d["new_contact_cnt"] for d in alice["behavior_data"]] == [1, 0]
    too_long = await sim.api(
        "externalcontact/get_user_behavior_data",
        {"userid": ["alice"], "start_time": start - 31 * 86400, "end_time": end},
    )
    assert too_long["errcode"] == 40058


async def test_address_book_reads(sim):
    await sim.control("departments", {"id": 3, "name": "Store B", "parentid": 2})
    await sim.control("users", {"userid": "carol", "name": "Carol", "department": [3]})
    depts = await sim.api("department/list")
    assert [(d["id"], d["parentid"]) for d in depts["department"]] == [(1, 0), (2, 1), (3, 2)]
    direct = await sim.api("user/list", department_id=2)
    assert [u["userid"] for u in direct["userlist"]] == ["alice", "bob"]
    nested = await sim.api("user/list", department_id=2, fetch_child=1)
    assert [u["userid"] for u in nested["userlist"]] == ["alice", "bob", "carol"]
    user = await sim.api("user/get", userid="carol")
    assert (user["name"], user["department"], user["main_department"]) == ("Carol", [3], 3)
    assert (await sim.api("user/get", userid="nobody"))["errcode"] == 60111
    assert (await sim.api("user/list", department_id=99))["errcode"] == 60123
