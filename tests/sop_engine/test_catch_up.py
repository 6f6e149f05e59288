"""A playbook broken by a typo catches up: the customers added while it was disabled are
enrolled once it is fixed within its catch_up horizon, with the steps already due expired, and
the admin page lists them while it is broken."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from guidebot.sop.jobs import sop_catch_up
from guidebot.sop.models import SopMissed
from tests.harness import ADMIN

NURTURE = """
playbook: nurture
version: 1
name: 新客培育
trigger:
  event: customer.added
enroll:
  once_per: relation
timezone: Asia/Shanghai
send_window:
  hours: "10:00-21:00"
steps:
  - id: hello
    at: enroll
    action: remind
    template: remind_day1_intro.j2
    expire_after: 1d
  - id: day2
    at: enroll + 2d
    action: remind
    template: remind_day1_intro.j2
    expire_after: 1d
"""


@pytest.fixture
def playbooks():
    return [NURTURE]


def broken(text: str) -> str:
    return text.replace("    action: remind\n", "    action: remnd\n", 1)  # the typo


def reload_any(h) -> None:
    h.runtime.registry.reload()


async def test_a_fixed_playbook_catches_up_the_customers_it_missed(h):
    h.write_playbook(broken(NURTURE))
    reload_any(h)
    assert [p.id for p in h.runtime.registry.broken()] == ["nurture"]

    await h.add("g1", "wmc1")
    h.advance(timedelta(seconds=20))
    await h.add("g2", "wmc2")
    assert await h.enrollments() == []

    # While it is broken, the admin page and the API list whom it missed.
    page = await h.client.get("/admin/playbooks", headers=ADMIN)
    html = await page.text()
    assert page.status == 200
    assert "停用期间错过的客户：2 位" in html and "陈女士" in html and "刘先生" in html
    # Who and what, in words: the guide's name and the trigger, not their ids.
    assert "· 王芳 · 客户添加导购 · 2026" in html and "· g1 ·" not in html
    _, body = await h.api("GET", "/playbooks")
    [listed] = body["playbooks"]
    assert (listed["status"], listed["missed"]["count"]) == ("disabled", 2)
    assert [m["external_userid"] for m in listed["missed"]["customers"]] == ["wmc1", "wmc2"]

    # Fixed 34 s after it broke (the version bumped, as a fix should).
    h.advance(timedelta(seconds=14))
    h.write_playbook(NURTURE.replace("version: 1", "version: 2"))
    h.reload()
    report = await sop_catch_up(h.runtime)
    assert (report.enrolled, report.too_late, report.skipped) == (2, 0, 0)
    enrolled = {e.external_userid: e for e in await h.enrollments(playbook_id="nurture")}
    assert set(enrolled) == {"wmc1", "wmc2"}
    assert enrolled["wmc1"].playbook_version == 2
    # Planned from when they were added: the steps already due expired, the later ones wait.
    hello = {t.external_userid: t for t in await h.tasks(step_id="hello")}
    assert hello["wmc1"].status == "expired" and "fixed" in hello["wmc1"].reason
    assert hello["wmc2"].status == "expired"
    assert {t.status for t in await h.tasks(step_id="day2")} == {"pending"}
    await h.tick()
    assert await h.app_messages("g1") == []  # no burst of late reminders

    # Nothing is waiting any more: the page shows no missed customers, a second run does none.
    page = await h.client.get("/admin/playbooks", headers=ADMIN)
    assert "停用期间错过的客户" not in await page.text()
    assert (await sop_catch_up(h.runtime)).enrolled == 0


async def test_a_fix_after_the_horizon_enrolls_nobody(h):
    h.write_playbook(broken(NURTURE.replace("version: 1", "version: 2\ncatch_up: 1h")))
    reload_any(h)
    await h.add("g1", "wmc1")
    h.advance(timedelta(hours=2))
    h.write_playbook(NURTURE.replace("version: 1", "version: 3\ncatch_up: 1h"))
    h.reload()
    report = await sop_catch_up(h.runtime)
    assert (report.enrolled, report.too_late) == (0, 1)
    assert await h.enrollments() == []
    async with h.sessions() as session:
        [missed] = list(await session.scalars(select(SopMissed)))
    assert (missed.status, missed.external_userid) == ("too_late", "wmc1")


async def test_catch_up_is_a_playbook_key_checked_by_sop_check(h):
    h.write_playbook(NURTURE.replace("version: 1", "version: 2\ncatch_up: 30d"))
    [loaded] = h.runtime.registry.reload()
    assert not loaded.enabled and "catch_up is at most 7d" in loaded.reason
    h.write_playbook(NURTURE.replace("version: 1", "version: 2\ncatch_up: soon"))
    [loaded] = h.runtime.registry.reload()
    assert not loaded.enabled and "catch_up" in loaded.reason
    h.write_playbook(NURTURE.replace("version: 1", "version: 2\ncatch_up: 0s"))
    [loaded] = h.runtime.registry.reload()
    assert loaded.enabled and loaded.playbook.catch_up == timedelta(0)
