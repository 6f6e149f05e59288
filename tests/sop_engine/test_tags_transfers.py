"""Tags stop and enroll; a transfer moves a running enrollment to the successor guide."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from guidebot.contacts.models import Transfer


@pytest.fixture
def playbooks():
    return [
        """
        playbook: nurture
        version: 1
        trigger:
          event: customer.added
        enroll:
          once_per: relation
        timezone: Asia/Shanghai
        send_window:
          hours: "10:00-21:00"
        stop_when: [contact.lost, "tag.added:已购"]
        steps:
          - id: day2
            at: enroll + 2d
            action: remind
            template: remind_day1_intro.j2
            expire_after: 1d
        """,
        """
        playbook: vip_care
        version: 1
        trigger:
          event: tag.added
          tag: VIP
        enroll:
          once_per: relation
        timezone: Asia/Shanghai
        send_window:
          hours: "10:00-21:00"
        steps:
          - id: hello
            at: enroll + 1h
            action: remind
            template: remind_day1_intro.j2
            expire_after: 1d
        """,
    ]


async def test_tag_added_stops_and_enrolls(h):
    tags = await h.control("tags", {"group_name": "客户", "tags": ["VIP", "已购"]})
    ids = {t["name"]: t["id"] for t in tags["tag_group"]["tag"]}
    await h.add("g1", "wmc1")
    await h.add("g3", "wmc1")

    await h.act(
        "contact/edit", {"userid": "g1", "external_userid": "wmc1", "add_tag": [ids["VIP"]]}
    )
    [vip] = await h.enrollments(playbook_id="vip_care")
    assert vip.guide_userid == "g1"
    # Editing again without a new tag enrolls nobody twice. (Edit events carry only the
    # pair: the same second's edits are one callback to the inbox, so time moves on.)
    h.advance(timedelta(seconds=5))
    await h.act("contact/edit", {"userid": "g1", "external_userid": "wmc1", "remark": "老客"})
    assert len(await h.enrollments(playbook_id="vip_care")) == 1

    h.advance(timedelta(seconds=5))
    await h.act(
        "contact/edit", {"userid": "g1", "external_userid": "wmc1", "add_tag": [ids["已购"]]}
    )
    nurture = {e.guide_userid: e for e in await h.enrollments(playbook_id="nurture")}
    assert (nurture["g1"].status, nurture["g1"].stop_reason) == ("stopped", "tag.added:已购")
    assert nurture["g3"].status == "active"


async def test_transfer_moves_enrollments_to_the_successor(h):
    await h.add("g1", "wmc1")
    status, body = await h.api(
        "POST",
        "/transfers",
        json={
            "kind": "in_service",
            "handover_userid": "g1",
            "takeover_userid": "g3",
            "external_userids": ["wmc1"],
        },
    )
    assert status == 202, body
    h.advance(timedelta(hours=1))
    answer = await h.control(
        "contact/transfer",
        {"handover_userid": "g1", "takeover_userid": "g3", "external_userid": "wmc1"},
    )
    assert answer["delivered"], answer
    await h.drain()
    async with h.sessions() as session:
        transfer = await session.scalar(select(Transfer))
    assert transfer.status == "accepted"
    [enrollment] = await h.enrollments(playbook_id="nurture")
    assert (enrollment.guide_userid, enrollment.status) == ("g3", "active")
    [task] = await h.tasks(step_id="day2")
    assert (task.guide_userid, task.status) == ("g3", "pending")
    # No second enrollment for the takeover: a transfer is not a new customer.
    assert len(await h.enrollments()) == 1
