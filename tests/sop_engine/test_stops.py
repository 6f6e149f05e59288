"""Stop conditions act when the event arrives, for the pair concerned only; transfers move."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select

from guidebot.sop.engine import stop_enrollments
from tests.sop_engine.conftest import SHANGHAI


def at(day: int, hour: int, minute: int) -> datetime:
    return datetime(2026, 3, day, hour, minute, tzinfo=SHANGHAI)


async def test_customer_deleting_one_guide_on_day2_cancels_only_that_guides_steps(h):
    await h.add("g1", "wmc1")
    await h.add("g3", "wmc1")  # a second guide of the same customer
    h.set_time(at(15, 11, 0))  # day 2
    await h.act("contact/delete_by_customer", {"userid": "g1", "external_userid": "wmc1"})

    mine = {t.step_id: t for t in await h.tasks(guide_userid="g1")}
    assert mine["welcome"].status == "sent"
    for step in ("day3", "day7"):
        assert mine[step].status == "skipped"
        assert mine[step].reason == "stopped: contact.lost"
    g1 = await h.enrollments(guide_userid="g1")
    assert {(e.status, e.stop_reason) for e in g1 if e.playbook_id == "follow_up_7d"} == {
        ("stopped", "contact.lost")
    }
    theirs = {t.step_id: t.status for t in await h.tasks(guide_userid="g3")}
    assert theirs["day3"] == theirs["day7"] == "pending"

    h.set_time(at(16, 20, 55))
    await h.tick()
    [call] = await h.calls("externalcontact/add_msg_template")
    assert call["body"]["sender"] == "g3"


async def test_guide_deleting_the_customer_stops_with_contact_removed(h):
    await h.add("g1", "wmc1")
    await h.act("contact/delete_by_guide", {"userid": "g1", "external_userid": "wmc1"})
    reasons = {t.reason for t in await h.tasks(guide_userid="g1") if t.status == "skipped"}
    assert reasons == {"stopped: contact.removed"}


async def test_send_time_recheck_skips_when_the_relation_ended_without_an_event(h):
    await h.add("g1", "wmc1")
    # WeCom never told us (a missed callback the nightly reconciliation found): the relation
    # is ended in the database while the tasks are still pending.
    from guidebot.contacts.models import Relation

    async with h.sessions() as session, session.begin():
        relation = await session.scalar(
            select(Relation).where(
                Relation.guide_userid == "g1", Relation.external_userid == "wmc1"
            )
        )
        relation.status = "lost"
    h.set_time(at(14, 20, 55))
    report = await h.tick()
    assert report.skipped == 1 and await h.app_messages("g1") == []
    intro = await h.task("g1", "wmc1", "day1_intro")
    assert intro.reason == "stopped: contact.lost (checked at send time)"
    # The rest of the pair's enrollments stopped too, at once.
    assert (await h.task("g1", "wmc1", "day3")).status == "skipped"


async def test_order_paid_stops_only_playbooks_listing_it(h):
    await h.add("g1", "wmc1")
    async with h.sessions() as session, session.begin():
        stopped = await stop_enrollments(
            session, external_userid="wmc1", reason="order.paid", now=h.clock.now()
        )
    [enrollment] = await h.enrollments(playbook_id="follow_up_7d")
    assert stopped == [enrollment.id] and enrollment.stop_reason == "order.paid"
    assert (await h.task("g1", "wmc1", "day1_intro")).status == "pending"  # first_contact goes on
