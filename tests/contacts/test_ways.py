"""「联系我」 contact ways: creation through WeCom, attribution by state."""

from __future__ import annotations

import pytest
from sqlalchemy import select, update

from guidebot.contacts.errors import Invalid
from guidebot.contacts.jobs import add_contact_way
from guidebot.contacts.models import CustomerStage, Department
from guidebot.contacts.ways import ParsedState, make_state, parse_state
from guidebot.sop.models import SopEnrollment
from guidebot.web.keys import CLOCK, WECOM


async def test_a_known_state_attributes_to_the_ways_store_channel_and_campaign(h):
    status, way = await h.api(
        "POST",
        "/contact-ways",
        json={"store": "12", "channel": "poster", "campaign": "spring26", "userids": ["g1"]},
    )
    assert status == 201, way
    assert way["state"] == "s12:poster:spring26" and way["store_id"] == 12
    assert way["qr_code"] and way["config_id"]
    [call] = await h.calls("externalcontact/add_contact_way")
    assert call["body"]["state"] == "s12:poster:spring26" and call["body"]["user"] == ["g1"]

    # The customer scans it: WeCom echoes the way's state in the add event.
    await h.act("contact/add", {"config_id": way["config_id"], "external_userid": "wmc1"})
    relation = await h.relation("g1", "wmc1")
    # g1 works in store 11, but the code hangs in store 12: the way decides.
    assert (relation.store_id, relation.channel, relation.campaign, relation.config_id) == (
        12,
        "poster",
        "spring26",
        way["config_id"],
    )
    [entry] = await h.log("wmc1")
    assert (entry.store_id, entry.channel, entry.campaign, entry.state) == (
        12,
        "poster",
        "spring26",
        "s12:poster:spring26",
    )

    status, listed = await h.api("GET", "/contact-ways")
    assert [w["config_id"] for w in listed["contact_ways"]] == [way["config_id"]]
    status, listed = await h.api("GET", "/contact-ways", params={"store": "11"})
    assert listed["contact_ways"] == []


async def test_what_hears_an_add_by_a_way_counts_it_for_the_ways_store(h):
    """The add's one look (guidebot.contacts.add_look) reads the way's store with its zone; the
    enrollment runs in that zone and the customer's stage counts for that store, not the
    guide's."""
    async with h.sessions() as session, session.begin():
        await session.execute(
            update(Department).where(Department.id == 12).values(timezone="Asia/Urumqi")
        )
    status, way = await h.api(
        "POST", "/contact-ways", json={"store": "12", "channel": "poster", "userids": ["g1"]}
    )
    assert status == 201, way
    await h.act("contact/add", {"config_id": way["config_id"], "external_userid": "wmc1"})
    async with h.sessions() as session:
        enrollments = list(await session.scalars(select(SopEnrollment)))
        stage = await session.get(CustomerStage, "wmc1")
    assert enrollments
    assert {(e.store_id, e.timezone) for e in enrollments} == {(12, "Asia/Urumqi")}
    assert (stage.store_id, stage.guide_userid, stage.stage) == (12, "g1", "new")


async def test_an_unknown_state_is_kept_and_counts_for_the_guides_store(h):
    await h.add("g2", "wmc1", state="s11:flyer")  # our format, but no such way was made
    relation = await h.relation("g2", "wmc1")
    assert (relation.state, relation.store_id, relation.channel) == ("s11:flyer", 12, None)


async def test_the_cli_function_creates_a_way(h):
    printed = await add_contact_way(
        h.sessions,
        h.app[WECOM],
        h.app[CLOCK],
        store="11",
        channel="mall",
        campaign=None,
        userids=["g1", "g3"],
    )
    assert printed["state"] == "s11:mall" and printed["userids"] == ["g1", "g3"]
    [call] = await h.calls("externalcontact/add_contact_way")
    assert call["body"]["type"] == 2  # several guides: a multi-person way


@pytest.mark.parametrize(
    ("body", "status", "reason"),
    [
        (
            {
                "store": "11",
                "channel": "wechat_moments",
                "campaign": "spring2026xy",
                "userids": ["g1"],
            },
            422,  # each part fits; together they are a state longer than WeCom takes
            "WeCom allows 30",
        ),
        ({"store": "11", "channel": "po:ster", "userids": ["g1"]}, 400, "'channel' must be"),
        ({"store": "99", "channel": "poster", "userids": ["g1"]}, 404, "no store '99'"),
        ({"store": "10", "channel": "poster", "userids": ["g1"]}, 404, "no store '10'"),  # region
        ({"store": "11", "channel": "poster", "userids": ["nobody"]}, 404, "'nobody'"),
        ({"store": "11", "channel": "poster", "userids": []}, 400, "'userids'"),
        ({"store": "11", "userids": ["g1"]}, 400, "'channel'"),
    ],
)
async def test_bad_contact_ways_are_refused_before_wecom_is_asked(h, body, status, reason):
    answer_status, answer = await h.api("POST", "/contact-ways", json=body)
    assert answer_status == status, answer
    assert reason in answer["error"]["reason"]
    assert await h.calls("externalcontact/add_contact_way") == []


async def test_a_state_can_be_used_once(h):
    body = {"store": "11", "channel": "poster", "userids": ["g1"]}
    assert (await h.api("POST", "/contact-ways", json=body))[0] == 201
    status, answer = await h.api("POST", "/contact-ways", json=body)
    assert status == 409 and "already used" in answer["error"]["reason"]
    assert len(await h.calls("externalcontact/add_contact_way")) == 1


def test_states_round_trip_and_stay_within_30_characters():
    assert make_state("12", "poster", "spring26") == "s12:poster:spring26"
    assert parse_state("s12:poster:spring26") == ParsedState("12", "poster", "spring26")
    assert parse_state("s12:poster") == ParsedState("12", "poster", None)
    for other in ("teststate", "", None, "x12:poster", "s12", "s12:a:b:c"):
        assert parse_state(other) is None
    with pytest.raises(Invalid, match=r"is 31 characters; WeCom allows 30: shorten .* by 1"):
        make_state("1234", "abcdefghijkl", "abcdefghijkl")
