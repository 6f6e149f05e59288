"""Stop conditions act when the event arrives, for the pair concerned only; transfers move."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import select

from guidebot.sop.enrollment import stop_enrollments
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


NURTURE = """
playbook: nurture
version: 1
trigger: {event: customer.added}
enroll: {once_per: relation}
timezone: Asia/Shanghai
send_window: {hours: "10:00-21:00", days: mon-sun}
stop_when: [contact.lost, contact.removed, customer.replied]
goal: {event: customer.replied, within: 3d}
steps:
  - {id: day3, at: enroll + 3d, action: guide_task, template: follow_up_day3.j2, expire_after: 1d}
"""


async def test_a_reply_posted_by_a_chat_archive_pipeline_stops_and_scores_that_pair(h):
    h.write_playbook(NURTURE)
    h.reload()
    await h.add("g1", "wmc1")
    await h.add("g3", "wmc1")
    h.set_time(at(14, 9, 30))
    status, answer = await h.api(
        "POST",
        "/replies",
        json={"external_userid": "wmc1", "guide": "g1", "at": "2026-03-14T01:00:00Z"},
    )
    assert status == 200 and answer == {"stopped": 1, "goals_met": 1}
    [mine] = await h.enrollments(playbook_id="nurture", guide_userid="g1")
    assert (mine.status, mine.stop_reason) == ("stopped", "customer.replied")
    assert mine.goal_met_at == datetime(2026, 3, 14, 1, 0, tzinfo=UTC)
    [day3] = await h.tasks(guide_userid="g1", playbook_id="nurture")
    assert (day3.status, day3.reason) == ("skipped", "stopped: customer.replied")
    # The customer's other guide, and playbooks that do not stop on a reply, go on.
    assert [t.status for t in await h.tasks(guide_userid="g3", playbook_id="nurture")] == [
        "pending"
    ]
    [theirs] = await h.enrollments(playbook_id="nurture", guide_userid="g3")
    assert theirs.status == "active" and theirs.goal_met_at is None
    assert {e.status for e in await h.enrollments(playbook_id="follow_up_7d")} == {"active"}

    # HQ reads the goal's numbers per playbook: g1's met, g3's window still open, then missed.
    async def goal() -> dict:
        _, listing = await h.api("GET", "/playbooks")
        return next(p["goal"] for p in listing["playbooks"] if p["id"] == "nurture")

    assert await goal() == {
        "event": "customer.replied",
        "within_seconds": 3 * 86400,
        "met": 1,
        "open": 1,
        "missed": 0,
    }
    h.advance(timedelta(days=3))
    assert (await goal())["open"] == 0 and (await goal())["missed"] == 1


async def test_a_reply_reported_late_leaves_enrollments_begun_after_it(h):
    h.write_playbook(NURTURE)
    h.reload()
    h.set_time(at(14, 9, 30))
    await h.add("g1", "wmc1")
    # The pipeline reports a reply from the evening before this enrollment began.
    status, answer = await h.api(
        "POST",
        "/replies",
        json={"external_userid": "wmc1", "guide": "g1", "at": "2026-03-13T20:00:00+08:00"},
    )
    assert status == 200 and answer == {"stopped": 0, "goals_met": 0}
    [nurture] = await h.enrollments(playbook_id="nurture")
    assert nurture.status == "active" and nurture.goal_met_at is None


async def test_a_bad_reply_is_refused_with_a_reason_and_changes_nothing(h):
    h.write_playbook(NURTURE)
    h.reload()
    await h.add("g1", "wmc1")
    h.set_time(at(14, 9, 30))
    for body, expected, reason in [
        ({"guide": "g1"}, 400, "'external_userid' is required"),
        ({"external_userid": "wmc1", "guide": " "}, 400, "'guide' must be a guide's userid"),
        ({"external_userid": "wmc1", "guide": "g1", "at": "2026-03-14T09:00"}, 400, "no UTC"),
        ({"external_userid": "wmc1", "guide": "g1", "at": "yesterday"}, 400, "not an ISO 8601"),
        ({"external_userid": "wmc1", "guide": "g1", "at": 1773450000}, 400, "'at' must be"),
        # Fits the schema; it is what the clock says that refuses it.
        ({"external_userid": "wmc1", "guide": "g1", "at": "2026-03-15T00:00:00Z"}, 422, "future"),
        ({"external_userid": "wmc1", "guide": "g2"}, 404, "has no customer"),
    ]:
        status, answer = await h.api("POST", "/replies", json=body)
        assert status == expected and reason in answer["error"]["reason"], (body, answer)
    assert {e.status for e in await h.enrollments()} == {"active"}
