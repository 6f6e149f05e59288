"""Tags round trip: whatever puts a tag on a pair (a playbook's tag step, a guide's edit in
WeCom, the nightly reconciliation) lands in guidebot's one record of the pair's tags, which the
tag triggers, the customer filters, the sidebar and the bot all read."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from guidebot.contacts.jobs import nightly_reconcile
from guidebot.contacts.models import Relation, RelationEvent
from guidebot.web.keys import CLOCK, WECOM

TAGGER = """
playbook: tagger
version: 1
trigger:
  event: customer.added
enroll:
  once_per: relation
timezone: Asia/Shanghai
send_window:
  hours: "10:00-21:00"
steps:
  - id: mark_vip
    at: enroll
    action: tag
    tag: VIP
"""

VIP_CARE = """
playbook: vip_care
version: 1
name: VIP 关怀
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
"""


@pytest.fixture
def playbooks():
    return [TAGGER, VIP_CARE]


async def seed_tags(h) -> dict[str, str]:
    answer = await h.control("tags", {"group_name": "客户等级", "tags": ["VIP", "普通"]})
    return {t["name"]: t["id"] for t in answer["tag_group"]["tag"]}


async def relation_tags(h, guide: str, ext: str) -> list[dict]:
    async with h.sessions() as session:
        relation = await session.scalar(
            select(Relation).where(Relation.guide_userid == guide, Relation.external_userid == ext)
        )
    return relation.tags


async def test_a_tag_step_starts_a_tag_triggered_playbook_and_shows_everywhere(h):
    ids = await seed_tags(h)
    await h.add("g1", "wmc1")
    await h.add("g2", "wmc2")
    report = await h.tick()
    assert report.done == 2, report

    # WeCom has the tag (mark_tag), and so does guidebot's record of the pair, with its name.
    [call, _] = await h.calls("externalcontact/mark_tag")
    assert call["body"]["add_tag"] == [ids["VIP"]]
    assert await relation_tags(h, "g1", "wmc1") == [
        {"id": ids["VIP"], "name": "VIP", "group": "客户等级"}
    ]
    # The tag-triggered playbook started for both pairs.
    started = {e.external_userid for e in await h.enrollments(playbook_id="vip_care")}
    assert started == {"wmc1", "wmc2"}

    # The sidebar shows the tag.
    response = await h.client.get("/sidebar/login?userid=g1", allow_redirects=False)
    assert response.status == 302
    card = await (
        await h.client.get("/sidebar/api/customer", params={"external_userid": "wmc1"})
    ).json()
    assert card["relation"]["tags"] == ["VIP"]
    assert {e["name"] for e in card["enrollments"]} >= {"VIP 关怀"}

    # Marking the same tag again changes nothing and starts nothing twice.
    h.advance(timedelta(minutes=1))
    await h.act(
        "contact/edit", {"userid": "g1", "external_userid": "wmc1", "add_tag": [ids["VIP"]]}
    )
    assert len(await h.enrollments(playbook_id="vip_care")) == 2


async def test_customer_lists_filter_by_tag_by_id_or_name(h):
    ids = await seed_tags(h)
    for guide, ext in (("g1", "wmc1"), ("g2", "wmc2"), ("g3", "wmc3")):
        await h.add(guide, ext)
    await h.tick()  # tagger marks VIP on all three
    h.advance(timedelta(minutes=1))
    await h.act(
        "contact/edit",
        {"userid": "g2", "external_userid": "wmc2", "remove_tag": [ids["VIP"]]},
    )
    await h.act(
        "contact/edit", {"userid": "g3", "external_userid": "wmc3", "add_tag": [ids["普通"]]}
    )

    async def listed(**query: str) -> list[str]:
        status, body = await h.api("GET", "/customers", params=query)
        assert status == 200, body
        return sorted(c["external_userid"] for c in body["customers"])

    assert await listed(tag="VIP") == ["wmc1", "wmc3"]
    assert await listed(tag=ids["VIP"]) == ["wmc1", "wmc3"]
    assert await listed(tag="普通") == ["wmc3"]
    assert await listed(tag="VIP", guide="g1") == ["wmc1"]
    assert await listed(tag="没有这个标签") == []
    assert await listed() == ["wmc1", "wmc2", "wmc3"]


async def test_reconciliation_repairs_tags_edits_never_reported(h):
    """A guide's tag edits whose callbacks WeCom dropped: the nightly walk finds WeCom's tags
    (batch/get_by_user tag ids, named from get_corp_tag_list) and records them; the tag gained
    starts its playbook like an edit would have."""
    # The tag step marks 普通 here, so only the dropped edit gives VIP.
    h.write_playbook(TAGGER.replace("version: 1", "version: 2").replace("tag: VIP", "tag: 普通"))
    h.reload()
    ids = await seed_tags(h)
    await h.add("g1", "wmc1")
    await h.add("g2", "wmc2")
    await h.tick()
    h.advance(timedelta(minutes=1))
    await h.act(
        "contact/edit",
        {"userid": "g1", "external_userid": "wmc1", "add_tag": [ids["VIP"]], "deliver": False},
    )
    await h.act(
        "contact/edit",
        {"userid": "g2", "external_userid": "wmc2", "remove_tag": [ids["普通"]], "deliver": False},
    )
    assert await h.enrollments(playbook_id="vip_care") == []
    h.advance(timedelta(hours=3))

    report = await nightly_reconcile(h.sessions, h.app[WECOM], h.app[CLOCK])
    assert sorted(report.retagged) == [("g1", "wmc1"), ("g2", "wmc2")], report
    assert await relation_tags(h, "g1", "wmc1") == [
        {"id": ids["普通"], "name": "普通", "group": "客户等级"},
        {"id": ids["VIP"], "name": "VIP", "group": "客户等级"},
    ]
    assert await relation_tags(h, "g2", "wmc2") == []
    [care] = await h.enrollments(playbook_id="vip_care")
    assert care.external_userid == "wmc1"
    async with h.sessions() as session:
        logged = list(
            await session.scalars(
                select(RelationEvent.guide_userid).where(
                    RelationEvent.kind == "edited", RelationEvent.source == "reconcile"
                )
            )
        )
    assert sorted(logged) == ["g1", "g2"]

    # Nothing left to repair the second time.
    again = await nightly_reconcile(h.sessions, h.app[WECOM], h.app[CLOCK])
    assert again.retagged == [] and again.repairs == 0


async def test_the_corp_tag_events_keep_the_recorded_tags_named_and_current(h):
    """change_external_tag: a tag renamed in the console keeps its customers under its new name
    (the filter finds them by it); a tag deleted there leaves them."""
    ids = await seed_tags(h)
    await h.add("g1", "wmc1")
    await h.tick()  # VIP
    h.advance(timedelta(minutes=1))
    await h.act(
        "contact/edit", {"userid": "g1", "external_userid": "wmc1", "add_tag": [ids["普通"]]}
    )
    h.advance(timedelta(minutes=1))
    await h.act("tags/console", {"id": ids["VIP"], "name": "金卡"})
    assert await relation_tags(h, "g1", "wmc1") == [
        {"id": ids["VIP"], "name": "金卡", "group": "客户等级"},
        {"id": ids["普通"], "name": "普通", "group": "客户等级"},
    ]
    _, body = await h.api("GET", "/customers", params={"tag": "金卡"})
    assert [c["external_userid"] for c in body["customers"]] == ["wmc1"]

    h.advance(timedelta(minutes=1))
    await h.act("tags/console", {"id": ids["普通"], "delete": True})
    assert await relation_tags(h, "g1", "wmc1") == [
        {"id": ids["VIP"], "name": "金卡", "group": "客户等级"}
    ]


async def test_a_mass_send_filtered_on_a_tag_a_playbook_set_finds_the_pair(h):
    """The issue's case: a tag step's tag reached WeCom only, and a mass send filtered on it
    found nobody (422). Now the tag is in guidebot's record and the send goes to the pair."""
    await seed_tags(h)
    await h.add("g1", "wmc1")
    await h.add("g1", "wmc2")
    await h.tick()  # tagger marks VIP on both
    h.advance(timedelta(minutes=1))
    status, item = await h.api(
        "POST", "/content", json={"kind": "text", "title": "会员日", "body": "满减"}
    )
    assert status == 201, item
    status, created = await h.api(
        "POST",
        "/mass-sends",
        json={"guide": "g1", "item": item["id"], "filter": {"tags": ["VIP"], "status": "active"}},
    )
    assert status == 201, created
    assert created["recipients"] == ["wmc1", "wmc2"]
    [call] = await h.calls("externalcontact/add_msg_template")
    assert call["body"]["external_userid"] == ["wmc1", "wmc2"]
