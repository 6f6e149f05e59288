"""The group steps end to end against the simulator, on a fake clock: a cron playbook's
occurrence plans one row per owner (group_message) and per guide (moment_task), never per
customer; each is sent once (add_msg_template chat_type group, doc 92135; add_moment_task, doc
95094) with the library item and a tracked link carrying the send; WeCom's answers (the owner
confirming, get_groupmsg_send_result per group, doc 93338; the guide publishing,
get_moment_task, doc 93333) make them done. A crash between the `sending` commit and the
answer never sends twice; a repeated or out-of-order result poll changes nothing."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta

import pytest
from sqlalchemy import select

from guidebot.bot.replies import build_reply
from guidebot.content.links import verify
from guidebot.content.models import ContentOpen
from guidebot.content.service import create_item
from guidebot.db.parking import parked_rows
from guidebot.metrics.rollup import refresh
from guidebot.sop import group_sends
from guidebot.sop.group_models import SopGroupSend, SopGroupSendChat
from guidebot.sop.group_results import poll, record_group_results
from guidebot.sop.jobs import sop_group_steps, sop_triggers
from guidebot.sop.restored import reconcile_restored
from guidebot.web.keys import SOP
from tests.groups.conftest import GroupsHarness
from tests.harness import SHANGHAI, deploy_dir, start_harness, write_playbook

WEEKLY = """
playbook: weekly_vip
version: 1
name: 每周VIP群内容
trigger: {event: cron, cron: "0 10 * * fri"}
timezone: Asia/Shanghai
send_window: {hours: "10:00-21:00"}
steps:
  - id: weekly
    at: enroll
    action: group_message
    content: weekly-picks
    groups: {stores: "11", name: "*VIP*"}
  - id: post
    at: enroll + 1h
    action: moment_task
    content: weekly-picks
    guides: {stores: "11"}
"""
COMMUNITY = (
    "group_sends",
    "group_send_rate",
    "moments_assigned",
    "moments_published",
    "moment_publish_rate",
    "group_link_opens",
    "moment_link_opens",
)
FRIDAY_10 = datetime(2026, 3, 13, 10, 0, 30, tzinfo=SHANGHAI)


@pytest.fixture
async def h(aiohttp_client, database_url, clock, tmp_path) -> GroupsHarness:
    sop_dir = deploy_dir(tmp_path / "deploy")
    write_playbook(sop_dir, WEEKLY)
    h = await start_harness(
        aiohttp_client, database_url, clock, kind=GroupsHarness, sop_dir=sop_dir
    )
    async with h.sessions() as session, session.begin():
        await create_item(
            session,
            {
                "key": "weekly-picks",
                "kind": "link",
                "title": "本周精选",
                "summary": "新品到店",
                "url": "https://shop.example.com/weekly",
            },
            h.clock.now(),
        )
    return h


async def seed_groups(h) -> dict[str, str]:
    await h.add("g1", "wmc1")
    await h.add("g1", "wmc2")
    groups = {
        "vip1": await h.create_group("g1", "张江VIP群", ["wmc1"]),
        "vip2": await h.create_group("g1", "张江VIP二群"),
        "flash": await h.create_group("g1", "张江快闪群"),
        "vip3": await h.create_group("g3", "张江VIP三群"),
        "xuhui": await h.create_group("g2", "徐汇VIP群"),
    }
    h.advance(60)
    return groups


async def rows(h) -> dict[tuple[str, str], SopGroupSend]:
    async with h.sessions() as session:
        found = await session.scalars(select(SopGroupSend).order_by(SopGroupSend.id))
        return {(r.step_id, r.userid): r for r in found}


async def chats(h, send_id: int) -> dict[str, int]:
    async with h.sessions() as session:
        found = await session.scalars(
            select(SopGroupSendChat).where(SopGroupSendChat.send_id == send_id)
        )
        return {c.chat_id: c.status for c in found}


async def test_a_weekly_group_message_and_moments_task_run_once_per_owner_and_guide(h):
    groups = await seed_groups(h)
    sop = h.app[SOP]
    h.set_time(FRIDAY_10)
    await sop_triggers(sop)
    await sop_triggers(sop)  # the same occurrence again: nothing more is planned
    planned = await rows(h)
    # Store 11's VIP groups by owner; store 11's guides (g1, g3) for Moments; never g2.
    assert sorted(planned) == [("post", "g1"), ("post", "g3"), ("weekly", "g1"), ("weekly", "g3")]
    weekly = planned[("weekly", "g1")]
    assert await chats(h, weekly.id) == {groups["vip1"]: 0, groups["vip2"]: 0}

    report = await sop_group_steps(sop)
    assert report.sent == 2  # the weekly sends; the Moments posts are due at 11:00
    [g1_call, g3_call] = sorted(
        (c["body"] for c in await h.calls("externalcontact/add_msg_template")),
        key=lambda b: b["sender"],
    )
    assert g1_call["chat_type"] == "group"
    assert sorted(g1_call["chat_id_list"]) == sorted([groups["vip1"], groups["vip2"]])
    assert g3_call["chat_id_list"] == [groups["vip3"]]
    link = g1_call["attachments"][0]["link"]
    token = link["url"].rsplit("/r/", 1)[1]
    claims = verify(h.settings.secret_key, token)
    assert (claims.guide, claims.via) == ("g1", f"group:{weekly.id}")
    assert link["title"] == "本周精选"

    # The owner has not confirmed: still sent, no group got it.
    h.advance(timedelta(minutes=6))
    await sop_group_steps(sop)
    weekly = (await rows(h))[("weekly", "g1")]
    assert weekly.status == "sent" and weekly.wecom_msgid
    await h.control("groupmsg/confirm", {"msgid": weekly.wecom_msgid, "userid": "g1"})
    h.advance(timedelta(minutes=6))
    await sop_group_steps(sop)
    after = await rows(h)
    assert after[("weekly", "g1")].status == "done"
    assert after[("weekly", "g3")].status == "sent"
    assert await chats(h, weekly.id) == {groups["vip1"]: 1, groups["vip2"]: 1}

    # A customer opens the group's link: the open carries the group send.
    response = await h.client.get(f"/r/{token}", allow_redirects=False)
    assert response.status in (200, 302)
    async with h.sessions() as session:
        [opened] = list(await session.scalars(select(ContentOpen)))
    assert (opened.guide_userid, opened.via) == ("g1", f"group:{weekly.id}")

    # 11:00: the Moments posts, one task per guide; done when WeCom says they published.
    h.set_time(FRIDAY_10 + timedelta(hours=1))
    await sop_group_steps(sop)
    posts = [c["body"] for c in await h.calls("externalcontact/add_moment_task")]
    assert sorted(p["visible_range"]["sender_list"]["user_list"][0] for p in posts) == ["g1", "g3"]
    assert all("/r/" in p["text"]["content"] for p in posts)
    h.advance(timedelta(minutes=6))
    await sop_group_steps(sop)
    post = (await rows(h))[("post", "g1")]
    assert post.status == "sent" and post.moment_id
    await h.control("moments/publish", {"moment_id": post.moment_id, "userid": "g1"})
    h.advance(timedelta(minutes=6))
    await sop_group_steps(sop)
    final = await rows(h)
    assert (final[("post", "g1")].status, final[("post", "g1")].reach) == ("done", 2)
    assert final[("post", "g3")].status == "sent"  # g3 has not published
    # Nothing was sent twice over all those runs.
    assert len(await h.calls("externalcontact/add_msg_template")) == 2
    assert len(await h.calls("externalcontact/add_moment_task")) == 2
    await check_figures(h)
    # HQ's playbook list counts the group steps' rows per step.
    status, body = await h.api("GET", "/playbooks")
    assert status == 200, body
    [weekly_vip] = [p for p in body["playbooks"] if p["id"] == "weekly_vip"]
    counts = {s["id"]: s["counts"] for s in weekly_vip["steps"]}
    assert (counts["weekly"]["done"], counts["weekly"]["sent"]) == (1, 1)
    assert (counts["post"]["done"], counts["post"]["sent"]) == (1, 1)
    # The guide's 业绩 in the bot: this month's group sends and Moments tasks.
    async with h.sessions() as session:
        reply = await build_reply(session, "g1", "业绩", now=h.clock.now(), settings=h.settings)
    assert "本月社群与朋友圈：群发到群 已发送 1/1 | 朋友圈 已发表 1/1" in reply.text


async def figures(h, path: str) -> dict:
    await refresh(h.sessions, h.settings.timezone, h.clock.now())
    params = {"from": "2026-03-13", "to": "2026-03-13"}
    status, body = await h.api("GET", path, params=params)
    assert status == 200, body
    return {k: body["metrics"][k] for k in COMMUNITY}


async def check_figures(h) -> None:
    """g1 sent and published; g3 got both and did neither: per guide, store and HQ."""
    assert await figures(h, "/guides/g1/metrics") == {
        "group_sends": 1,
        "group_send_rate": 1.0,
        "moments_assigned": 1,
        "moments_published": 1,
        "moment_publish_rate": 1.0,
        "group_link_opens": 1,
        "moment_link_opens": 0,
    }
    g3 = await figures(h, "/guides/g3/metrics")
    assert (g3["group_sends"], g3["group_send_rate"], g3["moment_publish_rate"]) == (1, 0, 0)
    store = await figures(h, "/stores/11/metrics")
    assert (store["group_sends"], store["group_send_rate"]) == (2, 0.5)
    assert (store["moments_assigned"], store["moments_published"]) == (2, 1)
    hq = await figures(h, "/metrics")
    assert (hq["group_sends"], hq["moment_publish_rate"], hq["group_link_opens"]) == (2, 0.5, 1)


async def test_a_crash_after_the_sending_commit_never_sends_twice(h):
    await seed_groups(h)
    sop = h.app[SOP]
    h.set_time(FRIDAY_10)
    await sop_triggers(sop)
    planned = await rows(h)
    now = h.clock.now()
    report = group_sends.GroupStepReport()
    # g1's process marked the row `sending`, committed, reached WeCom and died before the
    # answer was recorded; g3's died before the call.
    g1 = await group_sends._claim(sop, planned[("weekly", "g1")].id, now, report)
    _action, _user, _n, text, attachments, chat_ids = g1
    created = await sop.wecom.add_msg_template(
        chat_type="group", sender="g1", chat_ids=chat_ids, text=text, attachments=attachments
    )
    await group_sends._claim(sop, planned[("weekly", "g3")].id, now, report)
    # Restarted: a tick before the claims are stale leaves them alone...
    await sop_group_steps(sop)
    assert {k: r.status for k, r in (await rows(h)).items() if k[0] == "weekly"} == {
        ("weekly", "g1"): "sending",
        ("weekly", "g3"): "sending",
    }
    # ...and once stale, g1's is found in WeCom by its text, g3's is unknown: neither resent.
    h.advance(timedelta(minutes=3))
    await sop_group_steps(sop)
    after = await rows(h)
    assert (after[("weekly", "g1")].status, after[("weekly", "g1")].wecom_msgid) == (
        "sent",
        created.msgid,
    )
    assert after[("weekly", "g3")].status == "unknown"
    h.advance(timedelta(hours=1))
    await sop_group_steps(sop)
    assert len(await h.calls("externalcontact/add_msg_template")) == 1


async def test_two_runners_at_once_send_each_row_once_and_a_lost_answer_is_unknown(h):
    await seed_groups(h)
    sop = h.app[SOP]
    h.set_time(FRIDAY_10)
    await sop_triggers(sop)
    # g1's call is answered with a 502: WeCom may have acted, so it is unknown, not resent.
    await h.control(
        "faults", {"api": "externalcontact/add_msg_template", "http_status": 502, "times": 1}
    )
    await asyncio.gather(group_sends.run_due(sop), group_sends.run_due(sop))
    calls = await h.calls("externalcontact/add_msg_template")
    assert sorted(c["body"]["sender"] for c in calls) == ["g1", "g3"]
    statuses = sorted(r.status for k, r in (await rows(h)).items() if k[0] == "weekly")
    assert statuses == ["sent", "unknown"]
    h.advance(timedelta(hours=2))
    await sop_group_steps(sop)
    assert len(await h.calls("externalcontact/add_msg_template")) == 2


async def test_a_repeated_or_older_result_poll_changes_nothing(h):
    groups = await seed_groups(h)
    sop = h.app[SOP]
    h.set_time(FRIDAY_10)
    await sop_triggers(sop)
    await sop_group_steps(sop)
    weekly = (await rows(h))[("weekly", "g1")]
    sent_at = int(h.clock.time())
    newer = [{"chat_id": groups["vip1"], "userid": "g1", "status": 1, "send_time": sent_at}]
    older = [{"chat_id": groups["vip1"], "userid": "g1", "status": 0}]
    assert await record_group_results(sop, weekly.id, newer) == 1
    assert await record_group_results(sop, weekly.id, newer) == 0  # the same answer again
    assert await record_group_results(sop, weekly.id, older) == 0  # an older answer
    assert (await chats(h, weekly.id))[groups["vip1"]] == 1
    # The real poll, twice, after the owner confirmed: done once, the groups unchanged.
    await h.control("groupmsg/confirm", {"msgid": weekly.wecom_msgid, "userid": "g1"})
    h.advance(timedelta(minutes=6))
    first = await poll(sop)
    h.advance(timedelta(minutes=6))
    second = await poll(sop)
    assert (first.done, second.done) == (1, 0)
    assert await chats(h, weekly.id) == {groups["vip1"]: 1, groups["vip2"]: 1}


async def test_a_group_handed_to_another_owner_is_not_sent_by_the_old_one(h):
    groups = await seed_groups(h)
    sop = h.app[SOP]
    await h.act("groups/change", {"chat_id": groups["vip3"], "owner": "g1"})
    h.set_time(FRIDAY_10)
    await sop_triggers(sop)
    planned = await rows(h)
    assert ("weekly", "g3") not in planned
    assert set(await chats(h, planned[("weekly", "g1")].id)) == {
        groups["vip1"],
        groups["vip2"],
        groups["vip3"],
    }


async def test_after_a_restore_a_due_group_row_is_held_not_sent_again(h):
    """A backup showing a due group row pending cannot tell whether it went out after the
    backup: it is unknown, and nothing is sent; a row due later stays pending."""
    await seed_groups(h)
    sop = h.app[SOP]
    h.set_time(FRIDAY_10)
    await sop_triggers(sop)  # weekly due now, post due at 11:00
    report = await reconcile_restored(sop, h.clock.now() - timedelta(hours=1), h.clock.now())
    assert report.group_rows_held == 2
    after = await rows(h)
    assert {k: r.status for k, r in after.items()} == {
        ("weekly", "g1"): "unknown",
        ("weekly", "g3"): "unknown",
        ("post", "g1"): "pending",
        ("post", "g3"): "pending",
    }
    await sop_group_steps(sop)
    assert await h.calls("externalcontact/add_msg_template") == []


async def test_the_moments_frequency_limit_puts_a_row_back_without_spending_an_attempt(h):
    """doc 95094: 10 add_moment_task a minute per corp; WeCom's 45009 refuses the call."""
    await seed_groups(h)
    sop = h.app[SOP]
    h.set_time(FRIDAY_10 + timedelta(hours=1))
    await sop_triggers(sop)
    await h.fault("externalcontact/add_moment_task", 45009, times=1)
    await group_sends.run_due(sop)
    posts = {k: r for k, r in (await rows(h)).items() if k[0] == "post"}
    held = [r for r in posts.values() if r.status == "pending"]
    assert held and all(r.attempts == 0 for r in held)
    assert all(r.due_at > h.clock.now() for r in held)
    h.advance(timedelta(minutes=2))
    await group_sends.run_due(sop)
    assert {r.status for k, r in (await rows(h)).items() if k[0] == "post"} == {"sent"}
    senders = [
        c["body"]["visible_range"]["sender_list"]["user_list"]
        for c in await h.calls("externalcontact/add_moment_task")
        if c["answer"]["errcode"] == 0
    ]
    assert sorted(senders) == [["g1"], ["g3"]]


async def test_a_moments_task_created_before_a_crash_is_found_by_its_link_not_resent(h):
    await seed_groups(h)
    sop = h.app[SOP]
    h.set_time(FRIDAY_10 + timedelta(hours=1))
    await sop_triggers(sop)
    post = (await rows(h))[("post", "g1")]
    # The process claimed g1's post, WeCom created it, and the process died before recording.
    claimed = await group_sends._claim(sop, post.id, h.clock.now(), group_sends.GroupStepReport())
    await sop.wecom.add_moment_task(text=claimed[3], users=["g1"])
    h.advance(timedelta(minutes=3))
    await group_sends.settle_stale(sop)
    found = (await rows(h))[("post", "g1")]
    assert found.status == "sent" and found.moment_id and found.wecom_msgid is None
    # get_moment_list named it (doc 93333); the poll then reads who published.
    await h.control("moments/publish", {"moment_id": found.moment_id, "userid": "g1"})
    await poll(sop)
    assert (await rows(h))[("post", "g1")].status == "done"
    g1_posts = [
        c
        for c in await h.calls("externalcontact/add_moment_task")
        if c["body"]["visible_range"]["sender_list"]["user_list"] == ["g1"]
    ]
    assert len(g1_posts) == 1


async def test_a_row_that_fails_alone_is_parked_and_the_others_go(h):
    await seed_groups(h)
    sop = h.app[SOP]
    h.set_time(FRIDAY_10)
    await sop_triggers(sop)
    broken = (await rows(h))[("weekly", "g1")]
    async with h.sessions() as session, session.begin():
        row = await session.get(SopGroupSend, broken.id)
        row.userid = ""  # add_msg_template refuses a group send without a sender
    await group_sends.run_due(sop)
    async with h.sessions() as session:
        parked = await parked_rows(session, group_sends.JOB)
    assert [(p.table_name, p.row_key) for p in parked] == [("sop_group_sends", str(broken.id))]
    assert (await rows(h))[("weekly", "g3")].status == "sent"
    assert [c["body"]["sender"] for c in await h.calls("externalcontact/add_msg_template")] == [
        "g3"
    ]
