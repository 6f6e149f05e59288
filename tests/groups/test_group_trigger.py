"""`group.joined` playbooks end to end: change_external_chat callbacks delivered encrypted
(doc 96361; twice, too) enroll the customer with the group's owner in the same transaction
as the join is logged; the trigger's filter (group name, join way, first join) picks the joins;
joins a sync finds, joins of another guide's customers and joins older than a departure do
not enroll. `sop check` and `sop simulate` know the trigger."""

from __future__ import annotations

import io

import pytest
from sqlalchemy import select

from guidebot.sop.check_language import translate
from guidebot.sop.cli import simulate_command
from guidebot.sop.loader import load_playbook
from guidebot.sop.models import SopEnrollment, SopTask
from guidebot.sop.studio import timeline
from tests.groups.conftest import GroupsHarness
from tests.harness import deploy_dir, start_harness, write_playbook

VIP_FIRST = """
playbook: vip_first
version: 1
name: 首次入VIP群
trigger:
  event: group.joined
  first_join: true
  group_name: "*VIP*"
timezone: Asia/Shanghai
send_window:
  hours: "10:00-21:00"
steps:
  - id: hello
    at: enroll + 1h
    action: remind
    template: remind_day1_intro.j2
    expire_after: 1d
"""

POSTER = """
playbook: poster_join
version: 1
trigger:
  event: group.joined
  join_way: poster
timezone: Asia/Shanghai
send_window:
  hours: "10:00-21:00"
steps:
  - id: hello
    at: enroll + 1h
    action: remind
    template: remind_day1_intro.j2
    expire_after: 1d
"""


@pytest.fixture
async def h(aiohttp_client, database_url, clock, tmp_path) -> GroupsHarness:
    sop_dir = deploy_dir(tmp_path / "deploy")
    write_playbook(sop_dir, VIP_FIRST)
    write_playbook(sop_dir, POSTER)
    return await start_harness(
        aiohttp_client, database_url, clock, kind=GroupsHarness, sop_dir=sop_dir
    )


async def enrolled(h, playbook: str) -> list[tuple[str, str]]:
    async with h.sessions() as session:
        rows = await session.scalars(
            select(SopEnrollment)
            .where(SopEnrollment.playbook_id == playbook)
            .order_by(SopEnrollment.id)
        )
        return [(e.guide_userid, e.external_userid) for e in rows]


async def test_a_customers_first_join_of_a_vip_group_enrolls_them_with_the_owner_once(h):
    await h.add("g1", "wmc1")
    vip = await h.create_group("g1", "张江VIP群")
    h.advance(60)
    joined = await h.join(vip, "wmc1", invitor="g1")
    assert await enrolled(h, "vip_first") == [("g1", "wmc1")]
    async with h.sessions() as session:
        [task] = list(await session.scalars(select(SopTask).where(SopTask.step_id == "hello")))
    assert (task.guide_userid, task.external_userid, task.status) == ("g1", "wmc1", "pending")
    # WeCom delivers the same callback again: the join is logged once, nobody enrolls twice.
    await h.deliver(joined["plaintext"])
    assert await enrolled(h, "vip_first") == [("g1", "wmc1")]
    assert [k for m, k in await h.group_log(vip) if m == "wmc1"] == ["joined"]
    # Not a VIP group, nor the poster's join way: nothing enrolls.
    await h.add("g1", "wmc3")
    flash = await h.create_group("g1", "张江快闪群")
    h.advance(60)
    await h.join(flash, "wmc3", invitor="g1")
    assert await enrolled(h, "vip_first") == [("g1", "wmc1")]
    assert await enrolled(h, "poster_join") == []


async def test_only_the_first_join_of_a_picked_group_enrolls(h):
    vip = await h.create_group("g1", "张江VIP群")
    h.advance(60)
    await h.join(vip, "wmc2", invitor="g1")  # not yet g1's customer: nobody to enroll with
    assert await enrolled(h, "vip_first") == []
    h.advance(60)
    await h.leave(vip, "wmc2")
    await h.add("g1", "wmc2")
    second = await h.create_group("g1", "张江VIP二群")
    h.advance(60)
    await h.join(second, "wmc2", invitor="g1")
    assert await enrolled(h, "vip_first") == []  # their second VIP group: not a first join
    flash = await h.create_group("g1", "张江快闪群")
    await h.add("g1", "wmc3")
    h.advance(60)
    await h.join(flash, "wmc3", invitor="g1")  # a group the filter does not pick first...
    vip3 = await h.create_group("g1", "VIP三群")
    h.advance(60)
    await h.join(vip3, "wmc3", invitor="g1")  # ...so this is their first VIP join
    assert await enrolled(h, "vip_first") == [("g1", "wmc3")]


async def test_a_join_through_the_posters_join_way_enrolls(h):
    group = await h.create_group("g3", "张江体验官群")
    body = {"store": "11", "channel": "poster", "chat_ids": [group]}
    status, way = await h.api("POST", "/group-join-ways", json=body)
    assert status == 201, way
    await h.add("g3", "wmc2")
    h.advance(60)
    await h.join(group, "wmc2", config_id=way["config_id"])
    assert await enrolled(h, "poster_join") == [("g3", "wmc2")]
    assert await enrolled(h, "vip_first") == []


async def test_joins_nobody_announced_or_of_another_guides_customer_do_not_enroll(h):
    await h.add("g1", "wmc1")
    await h.add("g2", "wmc2")
    vip = await h.create_group("g1", "张江VIP群")
    h.advance(60)
    await h.join(vip, "wmc2", invitor="g1")  # g2's customer, not the owner's
    h.advance(60)
    await h.join(vip, "wmc1", invitor="g1", deliver=False)  # the callback never came
    await h.sync_groups()
    assert (await h.member(vip, "wmc1")).status == "member"  # the sync found the join
    assert await enrolled(h, "vip_first") == []


def test_sop_check_and_simulate_know_the_trigger(tmp_path):
    sop_dir = deploy_dir(tmp_path / "deploy")
    path = write_playbook(sop_dir, VIP_FIRST)
    loaded = load_playbook(path, sop_dir.parent / "templates" / "messages")
    assert not loaded.errors and loaded.playbook is not None
    group = loaded.playbook.trigger.group
    assert (group.first_join, group.group_names) == (True, ("*VIP*",))
    assert group.picks("张江VIP群", None, None) and not group.picks("快闪群", None, None)
    [entry] = [e for e in timeline(loaded.playbook) if e["kind"] == "trigger"]
    assert (entry["event"], entry["value"]) == (
        "group.joined",
        "first join only, group named “*VIP*”",
    )
    out, err = io.StringIO(), io.StringIO()
    code = simulate_command(
        str(path), added_at="2026-03-10 12:00", out=out, err=err, store_code=None
    )
    assert code == 0, err.getvalue()
    text = out.getvalue()
    assert "group.joined: when the customer joins a customer group" in text
    assert "first join only, group name *VIP*" in text
    bad = "'first_join' is only for trigger event 'group.joined'"
    assert translate(bad, "zh_CN") == ("E218", "'first_join' 只用于触发事件 'group.joined'")
    code, zh = translate("expected true or false, got string 'yes'", "zh_CN")
    assert code != "E000" and "true 或 false" in zh
    code, zh = translate(
        "expected a join way's channel or config_id or a list of them, got a mapping", "zh_CN"
    )
    assert code != "E000" and "加入群聊方式的渠道或 config_id" in zh


async def test_a_join_delivered_after_the_departure_does_not_enroll(h):
    """Out of order: the customer joined and left; WeCom delivers the departure first. The
    join is logged (older than the departure) but no longer stands: nobody enrolls."""
    await h.add("g1", "wmc1")
    vip = await h.create_group("g1", "张江VIP群")
    h.advance(60)
    joined = await h.join(vip, "wmc1", invitor="g1", deliver=False)
    h.advance(30)
    left = await h.leave(vip, "wmc1", deliver=False)
    await h.deliver(left["plaintext"])
    await h.deliver(joined["plaintext"])
    await h.deliver(joined["plaintext"])
    assert [k for m, k in await h.group_log(vip) if m == "wmc1"] == ["joined", "left"]
    assert await enrolled(h, "vip_first") == []
