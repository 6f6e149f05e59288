"""The groups synced from WeCom (groupchat/list with its cursor, then groupchat/get): what the
callbacks never told us is found, and a late callback adds nothing the sync already knew."""

from __future__ import annotations

from guidebot.db.parking import parked_rows
from guidebot.groups.models import GroupStatus, MemberStatus
from guidebot.groups.sync import sync_groups
from guidebot.web.keys import WECOM


async def test_groups_whose_callbacks_were_lost_are_found_page_by_page(h):
    made = []
    for n in range(5):
        answer = await h.control(
            "groups",
            {"owner": "g1", "name": f"群{n}", "members": ["wmc1"], "deliver": False},
        )
        made.append(answer["chat_id"])
    at_startup = len(await h.calls("externalcontact/groupchat/list"))
    report = await sync_groups(h.sessions, h.app[WECOM], h.clock.now(), page_size=2)
    assert (report.listed, report.synced, report.joined) == (5, 5, 10)
    pages = [c["body"] for c in await h.calls("externalcontact/groupchat/list")][at_startup:]
    # one walk of three pages without owner_filter; the owners who left: none to ask about
    assert [bool(p.get("cursor")) for p in pages] == [False, True, True]
    for chat_id in made:
        assert await h.members(chat_id) == {"g1": "member", "wmc1": "member"}
        assert (await h.group(chat_id)).store_id == 11
    sources = {r.source for r in await h.log_rows()}
    assert sources == {"sync"}


async def test_the_sync_records_what_the_callbacks_missed_and_a_late_callback_adds_nothing(h):
    chat_id = await h.create_group("g1", "快闪群", ["wmc1"])
    h.advance(60)
    await h.join(chat_id, "wmc2", deliver=False)  # lost
    h.advance(60)
    lost_leave = await h.leave(chat_id, "wmc1", deliver=False)  # lost too
    h.advance(3600)
    report = await h.sync_groups()
    assert (report.joined, report.left) == (1, 1)
    assert await h.members(chat_id) == {
        "g1": MemberStatus.MEMBER,
        "wmc1": MemberStatus.LEFT,
        "wmc2": MemberStatus.MEMBER,
    }
    departure = (await h.member(chat_id, "wmc1")).left_at
    assert departure == h.clock.now()  # the sync knows only that they are gone by now
    await h.deliver(lost_leave["plaintext"])  # the callback arrives after all
    wmc1 = [k for m, k in await h.group_log(chat_id) if m == "wmc1"]
    assert wmc1 == ["joined", "left"]
    again = await h.sync_groups()
    assert (again.joined, again.left) == (0, 0)


async def test_a_group_dismissed_without_a_callback_is_marked_dismissed(h):
    chat_id = await h.create_group("g2", "徐汇群")
    await h.control("groups/dismiss", {"chat_id": chat_id, "deliver": False})
    report = await h.sync_groups()
    assert report.dismissed == 1
    assert (await h.group(chat_id)).status == GroupStatus.DISMISSED


async def test_a_resigned_owners_groups_are_asked_for_by_name(h):
    chat_id = await h.create_group("g3", "张伟的群", ["wmc3"])
    await h.act("users/delete", {"userid": "g3", "notify": True})
    await h.sync_groups()
    bodies = [c["body"] for c in await h.calls("externalcontact/groupchat/list")]
    assert {"userid_list": ["g3"]} in [b.get("owner_filter") for b in bodies]
    group = await h.group(chat_id)
    assert (group.status, group.owner_status) == (GroupStatus.ACTIVE, 1)


async def test_a_group_wecom_refuses_alone_is_parked_and_the_others_are_synced(h):
    made = [
        (await h.control("groups", {"owner": "g1", "name": f"群{n}", "deliver": False}))["chat_id"]
        for n in range(3)
    ]
    await h.fault("externalcontact/groupchat/get", 40058)  # the first group's read only
    report = await h.sync_groups()
    assert report.synced == 2 and len(report.parked) == 1
    async with h.sessions() as session:
        parked = await parked_rows(session, "group-sync")
    assert [(p.table_name, p.row_key) for p in parked] == [("customer_groups", report.parked[0])]
    assert {c for c in made if await h.group(c) is not None} == set(made) - set(report.parked)
    again = await h.sync_groups()  # the next run meets it again, and it goes through
    assert again.parked == [] and (await h.group(report.parked[0])) is not None
