"""A Moments task of a playbook HQ stops (paused, retired, replaced by a new version) while a
guide has not published it and its end is still ahead: cancelled in WeCom (cancel_moment_task,
doc 97612: only the executors who have not published) and closed `cancelled`, out of the
guide's figures, not missed. A guide who published keeps their post; a task past its end stays
missed; a pending row is cancelled without a call; a file broken by an error cancels nothing;
WeCom refusing the id leaves the row as it was, asked once."""

from __future__ import annotations

from datetime import timedelta

import pytest

from guidebot.content.service import create_item
from guidebot.metrics.rollup import refresh
from guidebot.sop.jobs import sop_group_steps, sop_triggers
from guidebot.web.keys import SOP
from tests.groups.conftest import GroupsHarness
from tests.groups.test_group_steps import FRIDAY_10, rows
from tests.harness import deploy_dir, reload_playbooks, start_harness, write_playbook

POSTS = """
playbook: weekly_post
version: {version}
trigger: {{event: cron, cron: "0 10 * * fri"}}
timezone: Asia/Shanghai
send_window: {{hours: "10:00-21:00"}}
{extra}
steps:
  - id: post
    at: enroll
    action: moment_task
    content: weekly-picks
    guides: {{stores: "11"}}
"""


def posts(version: int = 1, extra: str = "") -> str:
    return POSTS.format(version=version, extra=extra)


@pytest.fixture
async def h(aiohttp_client, database_url, clock, tmp_path) -> GroupsHarness:
    sop_dir = deploy_dir(tmp_path / "deploy")
    write_playbook(sop_dir, posts())
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


async def _sent(h) -> dict[str, object]:
    """Friday's tasks reached WeCom for g1 and g3 (store 11), their jobs finished; g1 published."""
    await h.add("g1", "wmc1")
    sop = h.app[SOP]
    h.set_time(FRIDAY_10)
    await sop_triggers(sop)
    await sop_group_steps(sop)  # sent
    h.advance(timedelta(minutes=6))
    await sop_group_steps(sop)  # the jobs finished: each row has its moment_id
    found = await rows(h)
    assert {k: r.status for k, r in found.items()} == {
        ("post", "g1"): "sent",
        ("post", "g3"): "sent",
    }
    await h.control(
        "moments/publish", {"moment_id": found[("post", "g1")].moment_id, "userid": "g1"}
    )
    h.advance(timedelta(minutes=6))
    await sop_group_steps(sop)  # the poll: g1's is done
    assert (await rows(h))[("post", "g1")].status == "done"
    return {userid: r for (_, userid), r in found.items()}


async def _moments(h) -> dict:
    await refresh(h.sessions, h.settings.timezone, h.clock.now())
    status, body = await h.api(
        "GET", "/stores/11/metrics", params={"from": "2026-03-13", "to": "2026-03-13"}
    )
    assert status == 200, body
    return {k: body["metrics"][k] for k in ("moments_assigned", "moments_published")}


async def test_a_retired_playbooks_unpublished_task_is_cancelled_in_wecom_not_missed(h):
    sent = await _sent(h)
    (h.sop_dir / "weekly_post.yaml").unlink()  # HQ retires the playbook
    reload_playbooks(h)
    report = await sop_group_steps(h.app[SOP])
    assert report.cancelled == 1
    [call] = await h.calls("externalcontact/cancel_moment_task")
    assert call["body"] == {"moment_id": sent["g3"].moment_id}
    after = await rows(h)
    g3, g1 = after[("post", "g3")], after[("post", "g1")]
    assert g3.status == "cancelled" and g3.completed_at is not None
    assert g3.reason.startswith("stopped: playbook.retired")
    assert g1.status == "done"  # g1 published before: the post stays theirs
    # In WeCom the task is gone for g3: publishing it is refused.
    refused = await h.control(
        "moments/publish", {"moment_id": g3.moment_id, "userid": "g3"}, status=409
    )
    assert "cancelled" in str(refused)
    # Out of the figures: g3's task is neither assigned nor missed.
    assert await _moments(h) == {"moments_assigned": 1, "moments_published": 1}
    # Nothing more is asked of WeCom about it.
    h.advance(timedelta(minutes=10))
    await sop_group_steps(h.app[SOP])
    assert len(await h.calls("externalcontact/cancel_moment_task")) == 1
    _, body = await h.api("GET", "/playbooks")
    assert all(p["id"] != "weekly_post" for p in body["playbooks"])  # its file is gone


async def test_pausing_or_replacing_the_playbook_cancels_likewise(h):
    await _sent(h)
    write_playbook(h.sop_dir, posts(2, "paused: true"))
    reload_playbooks(h)
    _, body = await h.api("GET", "/playbooks")
    [listed] = [p for p in body["playbooks"] if p["id"] == "weekly_post"]
    assert listed["status"] == "paused"
    await sop_group_steps(h.app[SOP])
    g3 = (await rows(h))[("post", "g3")]
    assert (g3.status, g3.reason.split(" (")[0]) == ("cancelled", "stopped: playbook.paused")
    # A paused playbook's next Friday plans nothing.
    h.set_time(FRIDAY_10 + timedelta(days=7))
    await sop_triggers(h.app[SOP])
    assert len(await rows(h)) == 2


async def test_a_new_version_that_keeps_the_step_keeps_the_task(h):
    await _sent(h)
    write_playbook(h.sop_dir, posts(2).replace("Asia/Shanghai", "Asia/Shanghai\nname: 每周精选"))
    reload_playbooks(h)
    await sop_group_steps(h.app[SOP])
    g3 = (await rows(h))[("post", "g3")]
    assert (g3.status, g3.reason) == ("sent", None)
    assert await h.calls("externalcontact/cancel_moment_task") == []


async def test_a_new_version_without_the_step_replaces_the_old_ones_open_tasks(h):
    await _sent(h)
    write_playbook(h.sop_dir, posts(2).replace("- id: post", "- id: post_v2"))
    reload_playbooks(h)
    await sop_group_steps(h.app[SOP])
    g3 = (await rows(h))[("post", "g3")]
    assert g3.status == "cancelled" and "playbook.replaced" in g3.reason
    _, body = await h.api("GET", "/playbooks")
    [listed] = [p for p in body["playbooks"] if p["id"] == "weekly_post"]
    counts = {s["id"]: s["counts"] for s in listed["steps"]}
    assert (counts["post"]["done"], counts["post"]["skipped"], counts["post"]["sent"]) == (1, 1, 0)


async def test_a_task_past_its_end_stays_missed_and_a_broken_file_cancels_nothing(h):
    await _sent(h)
    write_playbook(h.sop_dir, posts(2).replace("moment_task", "moment_tsk"))  # an error
    h.app[SOP].registry.reload()
    await sop_group_steps(h.app[SOP])
    assert (await rows(h))[("post", "g3")].status == "sent"  # a broken file is no decision
    h.advance(timedelta(days=1, minutes=1))  # past expire_after (1d): g3 missed it
    (h.sop_dir / "weekly_post.yaml").unlink()
    reload_playbooks(h)
    await sop_group_steps(h.app[SOP])
    assert (await rows(h))[("post", "g3")].status == "sent"
    assert await h.calls("externalcontact/cancel_moment_task") == []
    assert await _moments(h) == {"moments_assigned": 2, "moments_published": 1}


async def test_a_pending_row_of_a_stopped_playbook_is_never_sent(h):
    await h.add("g1", "wmc1")
    write_playbook(h.sop_dir, posts(2).replace("at: enroll", "at: enroll + 2h"))
    reload_playbooks(h)
    h.set_time(FRIDAY_10)
    await sop_triggers(h.app[SOP])
    assert {r.status for r in (await rows(h)).values()} == {"pending"}  # due at 12:00
    (h.sop_dir / "weekly_post.yaml").unlink()
    reload_playbooks(h)
    h.advance(timedelta(hours=3))
    report = await sop_group_steps(h.app[SOP])
    assert report.cancelled == 2 and report.sent == 0
    found = (await rows(h)).values()
    assert {r.status for r in found} == {"cancelled"}
    assert all(r.reason.startswith("stopped: playbook.retired") for r in found)
    assert await h.calls("externalcontact/add_moment_task") == []
    assert await h.calls("externalcontact/cancel_moment_task") == []


async def test_wecom_refusing_the_id_leaves_the_task_and_a_busy_wecom_is_asked_again(h):
    await _sent(h)
    (h.sop_dir / "weekly_post.yaml").unlink()
    reload_playbooks(h)
    await h.fault("externalcontact/cancel_moment_task", -1, times=4)  # busy past the retries
    await sop_group_steps(h.app[SOP])
    assert (await rows(h))[("post", "g3")].status == "sent"
    await h.fault("externalcontact/cancel_moment_task", 41060, times=1)  # unknown id
    await sop_group_steps(h.app[SOP])
    g3 = (await rows(h))[("post", "g3")]
    assert g3.status == "sent" and g3.reason.startswith("not cancelled: WeCom says unknown")
    await sop_group_steps(h.app[SOP])
    assert len(await h.calls("externalcontact/cancel_moment_task")) == 5  # not asked again
