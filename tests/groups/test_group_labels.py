"""HQ's labels on customer groups (WeCom keeps no tags on groups): set and removed through the
API, the admin group page and `guidebot groups label`, each change audited once; a
`group_message` step's `groups: {labels: [..]}` picks the labelled groups, end to end against
the simulator; `sop simulate` names the groups it picks from the database."""

from __future__ import annotations

import asyncio
import io
import re

import pytest
from sqlalchemy import select

from guidebot.audit.models import AuditEntry
from guidebot.cli import main
from guidebot.content.service import create_item
from guidebot.sop.cli import simulate_command
from guidebot.sop.jobs import sop_group_steps, sop_triggers
from guidebot.web.keys import SOP
from tests.groups.conftest import GroupsHarness
from tests.groups.test_group_steps import FRIDAY_10, rows
from tests.harness import deploy_dir, start_harness, write_playbook
from tests.web.conftest import Sessions, admin_cookie

LABELLED = """
playbook: vip_by_label
version: 1
trigger: {event: cron, cron: "0 10 * * fri"}
timezone: Asia/Shanghai
send_window: {hours: "10:00-21:00"}
steps:
  - id: weekly
    at: enroll
    action: group_message
    content: weekly-picks
    groups: {labels: [VIP, 老客]}
"""


@pytest.fixture
async def h(aiohttp_client, database_url, clock, tmp_path) -> GroupsHarness:
    sop_dir = deploy_dir(tmp_path / "deploy")
    write_playbook(sop_dir, LABELLED)
    h = await start_harness(
        aiohttp_client, database_url, clock, kind=GroupsHarness, sop_dir=sop_dir
    )
    async with h.sessions() as session, session.begin():
        await create_item(
            session,
            {"key": "weekly-picks", "kind": "link", "title": "本周精选", "url": "https://x.cn/w"},
            h.clock.now(),
        )
    return h


async def _groups(h) -> dict[str, str]:
    return {
        "vip": await h.create_group("g1", "张江一群", ["wmc1"]),
        "old": await h.create_group("g3", "张江二群"),
        "plain": await h.create_group("g1", "张江三群"),
        "xuhui": await h.create_group("g2", "徐汇群"),
    }


async def _trail(h) -> list[tuple[str, str, dict | None, dict | None]]:
    async with h.sessions() as session:
        found = await session.scalars(
            select(AuditEntry)
            .where(AuditEntry.action.startswith("group_label."))
            .order_by(AuditEntry.id)
        )
        return [(e.action, e.target, e.before, e.after) for e in found]


async def test_hq_labels_a_group_through_the_api_audited_once_per_change(h):
    groups = await _groups(h)
    vip = groups["vip"]
    status, body = await h.api("PUT", f"/groups/{vip}/labels/VIP")
    assert (status, body) == (200, {"chat_id": vip, "labels": ["VIP"], "changed": True})
    status, body = await h.api("PUT", f"/groups/{vip}/labels/VIP")  # again: nothing changes
    assert (status, body["changed"]) == (200, False)
    status, body = await h.api("PUT", f"/groups/{vip}/labels/会员")
    assert body["labels"] == ["VIP", "会员"]
    status, listed = await h.api("GET", "/groups", params={"label": "VIP"})
    assert [g["chat_id"] for g in listed["groups"]] == [vip]
    assert listed["groups"][0]["labels"] == ["VIP", "会员"]
    status, one = await h.api("GET", f"/groups/{vip}")
    assert one["group"]["labels"] == ["VIP", "会员"]

    status, body = await h.api("PUT", f"/groups/{vip}/labels/VIP,老客")
    assert status == 422 and "群标签" in body["error"]["reason"]
    assert "1 to 32 characters" in body["error"]["reason"]
    status, body = await h.api("PUT", "/groups/wrNOSUCH/labels/VIP")
    assert status == 404, body
    status, body = await h.api("PUT", f"/groups/{vip}/labels/{'长' * 33}")
    assert status == 404, body  # longer than the path declares: no such label

    status, body = await h.api("DELETE", f"/groups/{vip}/labels/会员")
    assert (status, body["labels"], body["changed"]) == (200, ["VIP"], True)
    status, body = await h.api("DELETE", f"/groups/{vip}/labels/会员")
    assert (status, body["changed"]) == (200, False)
    assert await _trail(h) == [
        ("group_label.add", f"group:{vip}", {"labels": []}, {"labels": ["VIP"]}),
        ("group_label.add", f"group:{vip}", {"labels": ["VIP"]}, {"labels": ["VIP", "会员"]}),
        ("group_label.remove", f"group:{vip}", {"labels": ["VIP", "会员"]}, {"labels": ["VIP"]}),
    ]


async def test_hq_sets_and_removes_labels_on_the_admin_group_page_a_manager_cannot(h):
    vip = (await _groups(h))["vip"]
    sessions = Sessions(h)
    boss = await sessions.account("boss", "hq", [])
    cookie = admin_cookie(boss)
    page = await (await h.client.get(f"/admin/groups/{vip}", headers=cookie)).text()
    assert 'id="add-label"' in page and "添加标签" in page
    form = {"csrf": sessions.csrf(boss), "action": "add", "label": "VIP"}
    url = f"/admin/groups/{vip}/labels"
    response = await h.client.post(url, data=form, headers=cookie, allow_redirects=False)
    assert response.status == 303, await response.text()
    page = await (await h.client.get(f"/admin/groups/{vip}", headers=cookie)).text()
    assert 'data-label="VIP"' in page
    bad = await h.client.post(url, data={**form, "label": "a,b"}, headers=cookie)
    assert bad.status == 422 and "群标签为 1 到 32 个字符" in await bad.text()
    forged = await h.client.post(url, data={**form, "csrf": "x"}, headers=cookie)
    assert forged.status == 403
    removed = {**form, "action": "remove"}
    response = await h.client.post(url, data=removed, headers=cookie, allow_redirects=False)
    assert response.status == 303
    page = await (await h.client.get(f"/admin/groups/{vip}", headers=cookie)).text()
    assert 'data-label="VIP"' not in page

    manager = await sessions.account("m11", "manager", ["11"])
    mine = admin_cookie(manager)
    page = await (await h.client.get(f"/admin/groups/{vip}", headers=mine)).text()
    assert 'id="add-label"' not in page  # a manager reads labels, never sets them
    attempt = {"csrf": sessions.csrf(manager), "action": "add", "label": "VIP"}
    response = await h.client.post(url, data=attempt, headers=mine, allow_redirects=False)
    assert response.status == 404
    assert [a for a, *_ in await _trail(h)] == ["group_label.add", "group_label.remove"]


async def test_the_groups_command_puts_and_takes_labels(h, monkeypatch, capsys):
    vip = (await _groups(h))["vip"]
    for key, value in h.settings.as_env().items():
        monkeypatch.setenv(key, value)

    async def cli(*args: str) -> tuple[int, str, str]:
        code = await asyncio.to_thread(main, list(args))
        out = capsys.readouterr()
        return code, out.out, out.err

    code, out, err = await cli("groups", "label", "add", "--chat", vip, "VIP")
    assert code == 0, err
    assert "labels: VIP" in out and "changed: True" in out
    code, out, _ = await cli("groups", "label", "list", "VIP")
    assert code == 0 and f"chat_id: {vip}" in out and "name: 张江一群" in out
    code, out, err = await cli("groups", "label", "add", "--chat", vip, "a,b")
    assert code == 1 and "群标签" in err
    code, out, err = await cli("groups", "label", "remove", "--chat", vip, "VIP")
    assert code == 0 and "labels: -" in out
    trail = await _trail(h)
    assert [a for a, *_ in trail] == ["group_label.add", "group_label.remove"]
    async with h.sessions() as session:
        roles = set(await session.scalars(select(AuditEntry.role)))
    assert roles == {"cli"}


async def test_a_group_message_by_label_sends_to_the_labelled_groups_only(h):
    groups = await _groups(h)
    for key, label in (("vip", "VIP"), ("old", "老客"), ("xuhui", "VIP")):
        status, _ = await h.api("PUT", f"/groups/{groups[key]}/labels/{label}")
        assert status == 200
    await h.api("PUT", f"/groups/{groups['plain']}/labels/快闪")
    h.set_time(FRIDAY_10)
    await sop_triggers(h.app[SOP])
    planned = await rows(h)
    assert sorted(planned) == [("weekly", "g1"), ("weekly", "g2"), ("weekly", "g3")]
    await sop_group_steps(h.app[SOP])
    sent = {
        c["body"]["sender"]: c["body"] for c in await h.calls("externalcontact/add_msg_template")
    }
    assert sent["g1"]["chat_id_list"] == [groups["vip"]]  # not 张江三群, labelled 快闪
    assert sent["g3"]["chat_id_list"] == [groups["old"]]
    assert sent["g2"]["chat_id_list"] == [groups["xuhui"]]


async def test_sop_simulate_names_the_groups_a_label_filter_picks(h, tmp_path, monkeypatch):
    groups = await _groups(h)
    await h.api("PUT", f"/groups/{groups['vip']}/labels/VIP")
    await h.api("PUT", f"/groups/{groups['old']}/labels/老客")
    monkeypatch.setenv("GUIDEBOT_DATABASE_URL", h.settings.database_url)
    path = write_playbook(deploy_dir(tmp_path / "elsewhere"), LABELLED)
    out, err = io.StringIO(), io.StringIO()
    code = await asyncio.to_thread(
        simulate_command, str(path), added_at="2026-03-13 09:00", out=out, err=err
    )
    text = out.getvalue()
    assert code == 0, err.getvalue()
    assert "groups   labels VIP or 老客 (live groups)" in text
    assert "picks    现在选中 2 个群（2 位群主）/ 2 group(s) of 2 owner(s) now:" in text
    assert re.search(rf"picks    g1: 张江一群 {groups['vip']} \[VIP\]", text)
    assert re.search(rf"picks    g3: 张江二群 {groups['old']} \[老客\]", text)
    assert "张江三群" not in text and "徐汇群" not in text
