"""A new customer's journey: the welcome within seconds, then day 1, 3 and 7 on local time."""

from __future__ import annotations

from datetime import datetime, timedelta

from tests.sop_engine.conftest import FOLLOW_UP as FOLLOW_UP_WITH_CONTENT
from tests.sop_engine.conftest import SHANGHAI, local


def at(day: int, hour: int, minute: int) -> datetime:
    return datetime(2026, 3, day, hour, minute, tzinfo=SHANGHAI)


async def test_friday_2055_add_gets_welcome_then_day1_day3_day7_in_window(h):
    await h.add("g1", "wmc1")

    # The welcome went on the fast path, right after the add's transaction committed.
    [welcome] = await h.welcomes()
    assert welcome["external_userid"] == "wmc1" and welcome["userid"] == "g1"
    assert welcome["text"]["content"].startswith("陈女士您好，我是张江店的导购王芳")
    row = await h.task("g1", "wmc1", "welcome")
    assert row.status == "sent" and row.welcome_code is None

    # Every step was planned at enroll, on Shanghai's wall clock, inside 10:00-21:00.
    planned = {t.step_id: local(t.due_at) for t in await h.tasks(external_userid="wmc1")}
    assert planned == {
        "welcome": at(13, 20, 55),
        "day1_intro": at(14, 20, 55),  # Saturday
        "day3": at(16, 20, 55),  # Monday
        "day7": at(20, 20, 55),  # next Friday
    }

    # Nothing is sent early.
    h.set_time(at(14, 20, 54))
    assert (await h.tick()).claimed == 0
    assert await h.app_messages("g1") == []

    # Day 1: an app message (textcard) to the guide, linking to the task.
    h.set_time(at(14, 20, 55))
    report = await h.tick()
    assert report.sent == 1
    [card] = await h.app_messages("g1")
    intro = await h.task("g1", "wmc1", "day1_intro")
    assert card["msgtype"] == "textcard"
    assert card["textcard"]["url"].endswith(f"/sidebar?task={intro.id}")
    assert "陈女士" in card["textcard"]["description"]
    assert intro.status == "sent"

    # Day 3: one mass-send task for the guide, then a reminder to confirm it.
    h.set_time(
        at(
            16,
            20,
            55,
        )
    )
    await h.tick()
    [call] = await h.calls("externalcontact/add_msg_template")
    assert call["body"]["sender"] == "g1"
    assert call["body"]["external_userid"] == ["wmc1"]
    day3 = await h.task("g1", "wmc1", "day3")
    assert day3.status == "sent" and day3.wecom_msgid == call["answer"]["msgid"]
    assert len(await h.app_messages("g1")) == 2

    # The guide confirms in WeCom; the poll marks the task done.
    await h.confirm(day3.wecom_msgid, "g1")
    report = await h.poll()
    assert report.done == 1
    day3 = await h.task("g1", "wmc1", "day3")
    assert (day3.status, day3.completed_by) == ("done", "poll")

    # Day 7, the next Friday at 20:55.
    h.set_time(at(20, 20, 54))
    await h.tick()
    assert len(await h.calls("externalcontact/add_msg_template")) == 1
    h.set_time(at(20, 20, 55))
    await h.tick()
    assert len(await h.calls("externalcontact/add_msg_template")) == 2
    assert (await h.task("g1", "wmc1", "day7")).status == "sent"

    # Enrollments end when nothing is left to run.
    statuses = {e.playbook_id: e.status for e in await h.enrollments(external_userid="wmc1")}
    assert statuses == {"first_contact": "completed", "follow_up_7d": "completed"}


async def test_same_add_delivered_three_times_welcomes_once(h):
    answer = await h.control(
        "contact/add",
        {"userid": "g1", "external_userid": "wmc1", "welcome_code": True, "deliver": False},
    )
    code = answer["welcome_code"]
    from tests.harness import contact_xml

    xml = contact_xml("add_external_contact", "g1", "wmc1", h.clock.now(), WelcomeCode=code)
    for _ in range(3):
        await h.deliver(xml)
    await h.drain()
    assert len(await h.welcomes()) == 1
    assert len(await h.calls("externalcontact/send_welcome_msg")) == 1
    assert len(await h.enrollments(external_userid="wmc1", playbook_id="first_contact")) == 1
    assert len(await h.tasks(step_id="welcome")) == 1


async def test_add_without_welcome_code_skips_the_welcome_with_a_reason(h):
    await h.add("g1", "wmc1", welcome_code=False)
    row = await h.task("g1", "wmc1", "welcome")
    assert row.status == "skipped" and "no WelcomeCode" in row.reason
    assert await h.calls("externalcontact/send_welcome_msg") == []


async def test_welcome_41051_is_done_already_welcomed(h):
    await h.control(
        "faults", {"api": "externalcontact/send_welcome_msg", "errcode": 41051, "times": 1}
    )
    await h.add("g1", "wmc1")
    row = await h.task("g1", "wmc1", "welcome")
    assert row.status == "done" and "already welcomed" in row.reason
    assert len(await h.calls("externalcontact/send_welcome_msg")) == 1


async def test_welcome_41096_retries_within_the_window(h, monkeypatch):
    from guidebot.sop.actions import welcome as actions

    monkeypatch.setattr(actions, "WELCOME_BACKOFF", (0.01, 0.01, 0.01, 0.01))
    await h.control(
        "faults", {"api": "externalcontact/send_welcome_msg", "errcode": 41096, "times": 2}
    )
    await h.add("g1", "wmc1")
    row = await h.task("g1", "wmc1", "welcome")
    assert row.status == "sent"
    assert len(await h.calls("externalcontact/send_welcome_msg")) == 3
    assert len(await h.welcomes()) == 1


async def test_welcome_code_expired_41050_and_late_handling(h):
    await h.control(
        "faults", {"api": "externalcontact/send_welcome_msg", "errcode": 41050, "times": 1}
    )
    await h.add("g1", "wmc1")
    assert (await h.task("g1", "wmc1", "welcome")).status == "expired"

    # An add handled 30 s after it happened: the code is dead, nothing is tried.
    answer = await h.control(
        "contact/add", {"userid": "g2", "external_userid": "wmc2", "welcome_code": True}
    )
    assert answer["delivered"]
    h.advance(timedelta(seconds=30))
    await h.drain()
    row = await h.task("g2", "wmc2", "welcome")
    assert row.status == "expired" and "expired" in row.reason
    assert len(await h.calls("externalcontact/send_welcome_msg")) == 1


async def test_welcome_uncertain_is_unknown_and_never_resent(h):
    await h.control(
        "faults", {"api": "externalcontact/send_welcome_msg", "http_status": 502, "times": 1}
    )
    await h.add("g1", "wmc1")
    row = await h.task("g1", "wmc1", "welcome")
    assert row.status == "unknown" and "not resent" in row.reason
    await h.tick()
    assert len(await h.calls("externalcontact/send_welcome_msg")) == 1


async def test_a_steps_content_goes_out_as_a_tracked_link_for_that_guide_customer_and_task(h):
    from urllib.parse import urlsplit

    from guidebot.content.links import verify
    from guidebot.content.service import create_item
    from guidebot.web.keys import SETTINGS

    async with h.sessions() as session, session.begin():
        item = await create_item(
            session,
            {
                "key": "weekly-lookbook",
                "kind": "link",
                "title": "本周搭配推荐",
                "url": "https://example.com/lookbook",
            },
            h.clock.now(),
        )
    with_content = FOLLOW_UP_WITH_CONTENT.replace("version: 1", "version: 2").replace(
        "template: follow_up_day7.j2", "template: follow_up_day7.j2\n    content: weekly-lookbook"
    )
    h.write_playbook(with_content)
    h.reload()
    await h.add("g1", "wmc1")
    h.set_time(at(20, 20, 55))
    await h.tick()
    day7 = await h.task("g1", "wmc1", "day7")
    [call] = [
        c
        for c in await h.calls("externalcontact/add_msg_template")
        if "/r/" in c["body"]["text"]["content"]
    ]
    url = call["body"]["text"]["content"].split("推荐：")[1].split()[0]
    claims = verify(h.app[SETTINGS].secret_key, urlsplit(url).path.removeprefix("/r/"))
    assert claims is not None
    assert (claims.item_id, claims.guide, claims.customer, claims.task_id, claims.step) == (
        item.id,
        "g1",
        "wmc1",
        day7.id,
        "day7",
    )
    opened = await h.client.get(urlsplit(url).path, allow_redirects=False)
    assert opened.status == 302 and opened.headers["Location"] == "https://example.com/lookbook"
