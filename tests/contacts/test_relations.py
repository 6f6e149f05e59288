"""Contact events through the real HTTP path change the guide↔customer graph as specified."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from guidebot.contacts.models import EARLY, Guide, Relation
from guidebot.contacts.relations import end_relation, lock_relation
from guidebot.intake.models import InboxEvent
from tests.harness import START, contact_xml

SECOND = timedelta(seconds=1)


async def test_add_records_profile_relation_and_one_log_entry(h):
    await h.add("g1", "wmc1", state="teststate")

    customer = await h.customer("wmc1")
    assert (customer.name, customer.gender, customer.unionid, customer.type) == (
        "陈女士",
        2,
        "u-wmc1",
        1,
    )
    assert customer.profile_fetched_at == START
    relation = await h.relation("g1", "wmc1")
    assert relation.status == "active" and relation.confirmed
    assert relation.created_at == START  # WeCom's createtime
    # An unknown state is kept as-is and counts for the guide's store at the time.
    assert (relation.state, relation.store_id, relation.channel) == ("teststate", 11, None)
    [entry] = await h.log("wmc1")
    assert (entry.kind, entry.guide_userid, entry.store_id, entry.source) == (
        "added",
        "g1",
        11,
        "callback",
    )
    assert entry.occurred_at == START and entry.inbox_id is not None
    assert entry.previous_status is None


async def test_add_half_is_active_until_confirmed_and_logged_once(h):
    await h.act("contact/add_half", {"userid": "g1", "external_userid": "wmc1"})
    relation = await h.relation("g1", "wmc1")
    assert relation.status == "active" and not relation.confirmed

    h.advance(30)
    await h.add("g1", "wmc1")  # the guide confirms: WeCom sends the full add
    relation = await h.relation("g1", "wmc1")
    assert relation.status == "active" and relation.confirmed
    assert [e.kind for e in await h.log()] == ["added"]


async def test_edit_refreshes_profile_remark_tags_and_mobiles(h):
    tags = await h.control("tags", {"group_name": "客户等级", "tags": ["VIP"]})
    [vip] = tags["tag_group"]["tag"]
    await h.add("g1", "wmc1")
    await h.control("customers", {"external_userid": "wmc1", "name": "陈小姐", "gender": 2})
    h.advance(60)
    await h.act(
        "contact/edit",
        {
            "userid": "g1",
            "external_userid": "wmc1",
            "remark": "老客户",
            "description": "喜欢连衣裙",
            "remark_mobiles": ["13800000001"],
            "add_tag": [vip["id"]],
        },
    )

    assert (await h.customer("wmc1")).name == "陈小姐"
    relation = await h.relation("g1", "wmc1")
    assert (relation.remark, relation.description) == ("老客户", "喜欢连衣裙")
    assert relation.remark_mobiles == ["13800000001"]
    assert relation.tags == [{"id": vip["id"], "name": "VIP", "group": "客户等级"}]
    assert relation.status == "active"
    kinds = [(e.kind, e.reason) for e in await h.log("wmc1")]
    assert kinds == [("added", None), ("edited", "remark,description,remark_mobiles,tags")]


async def test_del_follow_user_marks_the_pair_lost(h):
    await h.add("g1", "wmc1")
    h.advance(60)
    await h.act("contact/delete_by_customer", {"userid": "g1", "external_userid": "wmc1"})

    relation = await h.relation("g1", "wmc1")
    assert relation.status == "lost"
    assert relation.ended_at == START + 60 * SECOND
    assert relation.end_reason == "deleted_by_customer"
    lost = (await h.log("wmc1"))[-1]
    assert (lost.kind, lost.previous_status, lost.store_id) == ("lost", "active", 11)


async def test_an_end_for_a_guide_not_yet_synced_records_a_placeholder_and_keeps_known_names(h):
    """The end of a pair makes sure of its guide in one statement: a guide the address book
    has not told of yet goes in named by userid, a known guide keeps its name."""
    at = h.advance(60)
    await h.deliver(contact_xml("del_follow_user", "gnew", "wmc1", at))
    await h.deliver(contact_xml("del_follow_user", "g1", "wmc2", at))
    async with h.sessions() as session:
        names = dict((await session.execute(select(Guide.userid, Guide.name))).all())
    assert names["gnew"] == "gnew"
    assert names["g1"] == "王芳"
    assert (await h.relation("gnew", "wmc1")).status == "lost"


async def test_an_end_leaves_no_stale_relation_in_the_session(h):
    """The end writes the relation with a plain UPDATE: an object of it the session already
    holds (an earlier event of the same transaction read it) reads the end, not what it held."""
    await h.add("g1", "wmc1")
    at = h.advance(60)
    async with h.sessions() as session, session.begin():
        held = await lock_relation(session, "g1", "wmc1")
        assert held is not None and held.status == "active"
        relation_id = held.id
        ended = await end_relation(
            session,
            userid="g1",
            external_userid="wmc1",
            status="lost",
            at=at,
            now=at,
            source="test",
            reason="deleted_by_customer",
        )
        again = await session.get(Relation, relation_id)
        assert ended == "lost"
        assert (again.status, again.ended_at, again.end_reason) == (
            "lost",
            at,
            "deleted_by_customer",
        )


async def test_del_external_contact_marks_the_pair_removed(h):
    await h.add("g1", "wmc1")
    h.advance(60)
    await h.act("contact/delete_by_guide", {"userid": "g1", "external_userid": "wmc1"})

    relation = await h.relation("g1", "wmc1")
    assert (relation.status, relation.end_reason) == ("removed", "deleted_by_guide")
    assert [e.kind for e in await h.log("wmc1")] == ["added", "removed"]


async def test_one_add_delivered_three_times_gives_one_relation_and_one_log_entry(h):
    await h.act(
        "contact/add",
        {"userid": "g1", "external_userid": "wmc1", "state": "s1", "deliver": False},
    )
    xml = contact_xml("add_external_contact", "g1", "wmc1", START, State="s1")
    for _ in range(3):  # WeCom's retries: the same plaintext, encrypted afresh each time
        await h.deliver(xml)
    # A replay the inbox cannot recognise as a copy (it carries an extra field) is harmless too.
    await h.deliver(xml.replace("</xml>", "<Replayed>1</Replayed></xml>"))

    assert [(r.guide_userid, r.external_userid) for r in await h.relations()] == [("g1", "wmc1")]
    assert [e.kind for e in await h.log()] == ["added"]
    async with h.sessions() as session:
        statuses = list(await session.scalars(select(InboxEvent.status)))
    assert statuses == ["done", "done"]


async def test_two_events_from_sys_in_the_same_second_both_land(h):
    # The clock stands still: every event has the same FromUserName and CreateTime.
    await h.act("contact/add", {"userid": "g1", "external_userid": "wmc1"}, drain=False)
    await h.act("contact/add", {"userid": "g2", "external_userid": "wmc1"}, drain=False)
    await h.act("contact/add", {"userid": "g2", "external_userid": "wmc2"}, drain=False)
    await h.drain()

    pairs = {(r.guide_userid, r.external_userid, r.status) for r in await h.relations()}
    assert pairs == {("g1", "wmc1", "active"), ("g2", "wmc1", "active"), ("g2", "wmc2", "active")}
    assert len(await h.log()) == 3


@pytest.mark.parametrize(
    ("delete", "status"),
    [("contact/delete_by_customer", "lost"), ("contact/delete_by_guide", "removed")],
)
async def test_a_delete_that_arrives_before_its_add_ends_right(h, delete, status):
    await h.act(
        "contact/add",
        {"userid": "g1", "external_userid": "wmc1", "state": "s11:poster", "deliver": False},
    )
    late_add = contact_xml("add_external_contact", "g1", "wmc1", START, State="s11:poster")
    h.advance(10)
    await h.act(delete, {"userid": "g1", "external_userid": "wmc1"})
    relation = await h.relation("g1", "wmc1")
    assert relation.status == status and relation.created_at is None

    h.advance(5)
    await h.deliver(late_add)
    relation = await h.relation("g1", "wmc1")
    assert relation.status == status  # the older add does not reactivate
    assert relation.ended_at == START + 10 * SECOND
    assert (relation.created_at, relation.state, relation.store_id) == (START, "s11:poster", 11)
    assert [(e.kind, e.occurred_at) for e in await h.log("wmc1")] == [
        ("added", START),
        (status, START + 10 * SECOND),
    ]

    await h.deliver(late_add.replace("</xml>", "<Replayed>1</Replayed></xml>"))
    assert len(await h.log("wmc1")) == 2


async def test_a_late_delete_older_than_a_readd_leaves_the_relation_active(h):
    await h.add("g1", "wmc1")
    h.advance(10)
    await h.act(
        "contact/delete_by_customer",
        {"userid": "g1", "external_userid": "wmc1", "deliver": False},
    )
    stale_delete = contact_xml("del_follow_user", "g1", "wmc1", START + 10 * SECOND)
    h.advance(10)
    await h.add("g1", "wmc1")  # the customer adds the guide again
    await h.deliver(stale_delete)  # the delete shows up only now

    assert (await h.relation("g1", "wmc1")).status == "active"


async def test_readd_after_an_end_reactivates_with_the_new_attribution(h):
    await h.add("g1", "wmc1", state="first")
    h.advance(60)
    await h.act("contact/delete_by_customer", {"userid": "g1", "external_userid": "wmc1"})
    h.advance(60)
    await h.add("g1", "wmc1", state="second")

    relation = await h.relation("g1", "wmc1")
    assert (relation.status, relation.state, relation.ended_at) == ("active", "second", None)
    assert relation.created_at == START + 120 * SECOND
    log = await h.log("wmc1")
    assert [(e.kind, e.previous_status) for e in log] == [
        ("added", None),
        ("lost", "active"),
        ("reactivated", "lost"),
    ]


async def test_deleting_one_pair_leaves_the_customers_other_guide_alone(h):
    await h.add("g1", "wmc1")
    h.advance(1)
    await h.add("g2", "wmc1")
    before = await h.relation("g2", "wmc1")
    h.advance(60)
    await h.act("contact/delete_by_guide", {"userid": "g1", "external_userid": "wmc1"})

    assert (await h.relation("g1", "wmc1")).status == "removed"
    after = await h.relation("g2", "wmc1")
    assert after.status == "active"
    assert (after.updated_at, after.last_event_at) == (before.updated_at, before.last_event_at)
    assert [(e.guide_userid, e.kind) for e in await h.log("wmc1")] == [
        ("g1", "added"),
        ("g2", "added"),
        ("g1", "removed"),
    ]


async def test_events_count_for_the_store_the_guide_was_in_at_the_time(h):
    await h.add("g1", "wmc1")  # g1 is in store 11
    moved_at = h.advance(3600)
    await h.act(
        "users", {"userid": "g1", "name": "王芳", "department": [12], "notify": True}
    )  # update_user: g1 moves to store 12
    assert [(m.store_id, m.valid_from, m.valid_to) for m in await h.memberships("g1")] == [
        (11, EARLY, moved_at),
        (12, moved_at, None),
    ]
    h.advance(60)
    await h.add("g1", "wmc2")
    h.advance(60)
    await h.act("contact/delete_by_customer", {"userid": "g1", "external_userid": "wmc1"})

    assert (await h.relation("g1", "wmc1")).store_id == 11
    assert (await h.relation("g1", "wmc2")).store_id == 12
    # wmc1 was won in store 11, so its loss counts there too, not where g1 works today.
    assert [(e.external_userid, e.kind, e.store_id) for e in await h.log()] == [
        ("wmc1", "added", 11),
        ("wmc2", "added", 12),
        ("wmc1", "lost", 11),
    ]


async def test_a_transient_wecom_failure_rolls_back_and_the_retry_lands(h):
    await h.control("faults", {"api": "externalcontact/get", "errcode": 45009, "times": 1})
    await h.add("g1", "wmc1")
    assert await h.relation("g1", "wmc1") is None
    async with h.sessions() as session:
        [row] = list(await session.scalars(select(InboxEvent)))
    assert row.status == "pending" and "45009" in row.last_error

    h.advance(120)  # past the worker's backoff and the client's 45009 cool-down
    await h.drain()
    assert (await h.relation("g1", "wmc1")).status == "active"
    assert [e.kind for e in await h.log()] == ["added"]


async def test_84061_from_externalcontact_get_still_records_the_event(h):
    await h.control("faults", {"api": "externalcontact/get", "errcode": 84061, "times": 1})
    await h.add("g1", "wmc9", state="s12:poster")

    relation = await h.relation("g1", "wmc9")
    assert relation.status == "active" and relation.created_at == START
    assert relation.state == "s12:poster"
    customer = await h.customer("wmc9")
    assert customer.name is None and customer.profile_fetched_at is None
    assert [e.kind for e in await h.log()] == ["added"]


async def test_a_replayed_delete_changes_nothing_the_second_time(h):
    await h.add("g1", "wmc1")
    deleted_at = h.advance(60)
    await h.act("contact/delete_by_customer", {"userid": "g1", "external_userid": "wmc1"})
    before = await h.relation("g1", "wmc1")
    h.advance(60)
    await h.deliver(
        contact_xml("del_follow_user", "g1", "wmc1", deleted_at).replace(
            "</xml>", "<Replayed>1</Replayed></xml>"
        )
    )
    after = await h.relation("g1", "wmc1")
    assert (after.status, after.ended_at, after.updated_at) == (
        "lost",
        deleted_at,
        before.updated_at,
    )
    assert [e.kind for e in await h.log()] == ["added", "lost"]


async def test_an_expired_token_is_refreshed_before_a_handler_takes_the_database(h):
    import time

    await h.add("g1", "wmc1")
    h.advance(7200 + 1)  # the access token has expired by the time the edit arrives
    started = time.monotonic()
    await h.act("contact/edit", {"userid": "g1", "external_userid": "wmc1", "remark": "老客户"})
    assert (await h.relation("g1", "wmc1")).remark == "老客户"
    # Refreshing inside the handler's SQLite transaction would wait out the busy timeout.
    assert time.monotonic() - started < 5
    assert len(await h.calls("gettoken")) == 2
