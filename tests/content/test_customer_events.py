"""The playbook events the sidebar and the tracked links are the source of.

WeCom pushes nothing to an app when a customer writes back, so the guide marks a reply in the
sidebar (`customer.replied`); a customer opening a link their guide sent is `content.opened`.
Either reaches only the playbooks of that guide and customer.
"""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select

from guidebot.content import links
from guidebot.content.service import record_forward
from guidebot.sop.models import SopEnrollment, SopTask
from tests import factories
from tests.content.test_sidebar_api import login, post

REPLIED = "customer.replied"


async def enroll(
    h,
    guide: str,
    ext: str,
    playbook: str,
    *,
    stop_when: tuple[str, ...] = (),
    goal: str | None = None,
) -> int:
    """An active enrollment as the engine leaves it, with one step still pending."""
    now = h.clock.now()
    async with h.sessions() as session, session.begin():
        enrollment = factories.enrollment(
            guide,
            ext,
            playbook,
            now,
            settings={"name": playbook, "stop_when": list(stop_when)},
            goal=goal,
        )
        session.add(enrollment)
        await session.flush()
        session.add(
            factories.task(
                enrollment,
                "day1",
                now,
                action="remind",
                due_at=now + timedelta(days=1),
                status="pending",
            )
        )
        return enrollment.id


async def state(h, enrollment_id: int) -> tuple[str, str | None, object, list[str]]:
    """(status, stop reason, goal met at, its tasks' statuses)"""
    async with h.sessions() as session:
        e = await session.get(SopEnrollment, enrollment_id, populate_existing=True)
        statuses = await session.scalars(
            select(SopTask.status).where(SopTask.enrollment_id == enrollment_id)
        )
        return e.status, e.stop_reason, e.goal_met_at, list(statuses)


async def test_a_marked_reply_ends_only_that_pairs_waiting_playbooks(h):
    await h.add("g1", "wmc1")
    await h.add("g3", "wmc1")  # the same customer with a second guide
    await h.add("g1", "wmc2")
    waiting = await enroll(h, "g1", "wmc1", "first_contact", stop_when=(REPLIED,), goal=REPLIED)
    unmoved = await enroll(h, "g1", "wmc1", "birthday")
    other_guide = await enroll(h, "g3", "wmc1", "first_contact", stop_when=(REPLIED,), goal=REPLIED)
    other_customer = await enroll(h, "g1", "wmc2", "first_contact", stop_when=(REPLIED,))
    h.advance(3600)

    await login(h, "g1")
    status, result = await post(h, "/sidebar/api/replied", {"external_userid": "wmc1"})
    assert status == 200 and result == {"stopped": 1, "goals_met": 1}
    assert await state(h, waiting) == ("stopped", REPLIED, h.clock.now(), ["skipped"])
    assert await state(h, unmoved) == ("active", None, None, ["pending"])
    assert await state(h, other_guide) == ("active", None, None, ["pending"])
    assert await state(h, other_customer) == ("active", None, None, ["pending"])

    # Marked again: nothing left to stop, the goal is not credited twice.
    status, again = await post(h, "/sidebar/api/replied", {"external_userid": "wmc1"})
    assert status == 200 and again == {"stopped": 0, "goals_met": 0}


async def test_a_reply_is_marked_only_by_the_customers_own_guide(h):
    await h.add("g1", "wmc1")
    await h.add("g2", "wmc2")
    theirs = await enroll(h, "g2", "wmc2", "first_contact", stop_when=(REPLIED,))
    status, _ = await post(h, "/sidebar/api/replied", {"external_userid": "wmc1"})
    assert status == 401
    await login(h, "g1")
    for body, expected in [
        ({}, 400),
        ({"external_userid": 7}, 400),
        ({"external_userid": ""}, 400),
    ]:
        status, answer = await post(h, "/sidebar/api/replied", body)
        assert status == expected and answer["error"]["reason"], body
    status, _ = await post(h, "/sidebar/api/replied", {"external_userid": "wmc2"})
    assert status == 403
    status, _ = await post(
        h, "/sidebar/api/replied", {"external_userid": "wmc1"}, Origin="https://evil.example.com"
    )
    assert status == 403
    assert await state(h, theirs) == ("active", None, None, ["pending"])


async def test_a_customer_opening_their_guides_link_meets_the_content_opened_goal(h):
    await h.add("g1", "wmc1")
    await h.add("g3", "wmc1")
    mine = await enroll(h, "g1", "wmc1", "new_arrivals", goal="content.opened")
    item = await h.item(kind="link", title="春季新品", url="https://example.com/spring")

    def link(guide: str, customer: str | None) -> str:
        token, _ = links.mint(
            h.settings.secret_key,
            item_id=item["id"],
            guide=guide,
            customer=customer,
            now=h.clock.now(),
        )
        return f"/r/{token}"

    # Another guide's link, and the guide's customer-less card: not this enrollment's goal.
    for path in (link("g3", "wmc1"), link("g1", None)):
        assert (await h.client.get(path, allow_redirects=False)).status == 302
    assert (await state(h, mine))[2] is None

    # The guide's own link for the customer, prepared but never sent: opening it is not the
    # customer's doing (the guide tried it out).
    prepared = link("g1", "wmc1")
    assert (await h.client.get(prepared, allow_redirects=False)).status == 302
    assert (await state(h, mine))[2] is None

    h.advance(600)
    claims = links.verify(h.settings.secret_key, prepared.removeprefix("/r/"))
    async with h.sessions() as session, session.begin():
        await record_forward(
            session,
            ref=f"l:{claims.nonce}",
            item_id=item["id"],
            guide="g1",
            customer="wmc1",
            via="sidebar",
            sent_at=h.clock.now(),
            now=h.clock.now(),
        )
    h.advance(600)
    assert (await h.client.get(prepared, allow_redirects=False)).status == 302
    assert await state(h, mine) == ("active", None, h.clock.now(), ["pending"])


async def test_an_open_after_the_goals_window_is_not_credited(h):
    await h.add("g1", "wmc1")
    late = await enroll(h, "g1", "wmc1", "new_arrivals", goal="content.opened")
    item = await h.item(kind="link", title="春季新品", url="https://example.com/spring")
    h.advance(4 * 86400)  # the goal's window is three days
    token, claims = links.mint(
        h.settings.secret_key, item_id=item["id"], guide="g1", customer="wmc1", now=h.clock.now()
    )
    async with h.sessions() as session, session.begin():
        await record_forward(
            session,
            ref=f"l:{claims.nonce}",
            item_id=item["id"],
            guide="g1",
            customer="wmc1",
            via="sidebar",
            sent_at=h.clock.now(),
            now=h.clock.now(),
        )
    assert (await h.client.get(f"/r/{token}", allow_redirects=False)).status == 302
    assert (await state(h, late))[2] is None


async def test_a_link_a_playbook_sent_the_customer_meets_the_goal_a_reminders_does_not(h):
    await h.add("g1", "wmc1")
    mine = await enroll(h, "g1", "wmc1", "new_arrivals", goal="content.opened")
    item = await h.item(kind="link", title="春季新品", url="https://example.com/spring")
    now = h.clock.now()
    async with h.sessions() as session, session.begin():
        tasks = {}
        for action in ("remind", "guide_task"):
            task = factories.task(
                mine,
                action,
                now,
                action=action,
                due_at=now,
                status="sent",  # the reminder reached the guide; the mass-send task, WeCom
                playbook_id="new_arrivals",
                guide_userid="g1",
                external_userid="wmc1",
            )
            session.add(task)
            await session.flush()
            tasks[action] = task.id

    def link(action: str) -> str:
        token, _ = links.mint(
            h.settings.secret_key,
            item_id=item["id"],
            guide="g1",
            customer="wmc1",
            task_id=tasks[action],
            now=h.clock.now(),
        )
        return f"/r/{token}"

    h.advance(60)
    assert (await h.client.get(link("remind"), allow_redirects=False)).status == 302
    assert (await state(h, mine))[2] is None  # the guide's reminder: in the guide's hands
    h.advance(60)
    assert (await h.client.get(link("guide_task"), allow_redirects=False)).status == 302
    assert (await state(h, mine))[2] == h.clock.now()
