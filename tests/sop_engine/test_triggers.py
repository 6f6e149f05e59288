"""Date and cron playbooks enroll matching relations once per occurrence."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from guidebot.contacts.models import Relation
from guidebot.db.parking import ParkedRow
from tests import factories
from tests.sop_engine.conftest import SHANGHAI, local


def at(day: int, hour: int, minute: int) -> datetime:
    return datetime(2026, 3, day, hour, minute, tzinfo=SHANGHAI)


@pytest.fixture
def playbooks():
    root = __import__("pathlib").Path(__file__).resolve().parents[2] / "sop"
    return [
        (root / "birthday.yaml").read_text(encoding="utf-8"),
        (root / "weekly_new_arrivals.yaml").read_text(encoding="utf-8"),
    ]


async def test_birthday_from_the_guides_description_enrolls_once_on_the_day(h):
    await h.add("g1", "wmc1")
    await h.add("g2", "wmc2")
    h.advance(timedelta(seconds=5))
    await h.act(
        "contact/edit",
        {"userid": "g1", "external_userid": "wmc1", "description": "生日:03-16 喜欢连衣裙"},
    )
    await h.act(
        "contact/edit", {"userid": "g2", "external_userid": "wmc2", "description": "生日：4-1"}
    )

    h.set_time(at(15, 23, 0))  # the day before: nothing
    assert (await h.triggers()).enrolled == 0
    h.set_time(at(16, 0, 5))
    report = await h.triggers()
    assert report.enrolled == 1
    [enrollment] = await h.enrollments(playbook_id="birthday")
    assert (enrollment.guide_userid, enrollment.external_userid) == ("g1", "wmc1")
    assert local(enrollment.enrolled_at) == at(16, 0, 0)
    [greeting] = await h.tasks(step_id="greeting")
    assert local(greeting.due_at) == at(16, 10, 0)  # snapped into the window
    # The occurrence is done: later runs that day scan nothing and enroll nobody.
    h.set_time(at(16, 9, 0))
    assert (await h.triggers()).enrolled == 0
    assert len(await h.enrollments(playbook_id="birthday")) == 1

    h.set_time(at(16, 10, 0))
    await h.tick()
    [call] = await h.calls("externalcontact/add_msg_template")
    assert "生日快乐" in call["body"]["text"]["content"]


async def test_weekly_cron_enrolls_tagged_customers_once_per_occurrence(h):
    tags = await h.control("tags", {"group_name": "兴趣", "tags": ["新品关注"]})
    [tag] = tags["tag_group"]["tag"]
    for guide, ext in (("g1", "wmc1"), ("g2", "wmc2"), ("g1", "wmc3")):
        await h.add(guide, ext)
    h.advance(timedelta(seconds=5))
    await h.act("contact/edit", {"userid": "g1", "external_userid": "wmc1", "add_tag": [tag["id"]]})
    h.advance(timedelta(seconds=5))
    await h.act("contact/edit", {"userid": "g2", "external_userid": "wmc2", "add_tag": [tag["id"]]})

    h.set_time(at(16, 9, 59))  # Monday, before 10:00: last week's occurrence is too old
    assert (await h.triggers()).enrolled == 0
    h.set_time(
        at(
            16,
            10,
            0,
        )
    )
    report = await h.triggers()
    assert report.enrolled == 2 and report.occurrences == [
        "weekly_new_arrivals:cron:2026-03-16T10:00"
    ]
    h.set_time(at(16, 10, 1))
    assert (await h.triggers()).enrolled == 0
    await h.tick()
    senders = sorted(c["body"]["sender"] for c in await h.calls("externalcontact/add_msg_template"))
    assert senders == ["g1", "g2"]

    # A week later, the next occurrence enrolls them again (reenter_after 6d).
    h.set_time(at(23, 10, 0))
    assert (await h.triggers()).enrolled == 2


async def test_a_relation_the_trigger_cannot_enroll_is_parked_and_the_others_are(h):
    """wmc2's last birthday enrollment says it began in year 9999 (a hand edit, an import):
    when it may enroll again (300 days on) no instant holds. That used to fail the whole
    occurrence, every minute, and nobody got a birthday greeting."""
    for guide, ext in (("g1", "wmc1"), ("g2", "wmc2"), ("g3", "wmc3")):
        await h.add(guide, ext)
        await h.act(
            "contact/edit", {"userid": guide, "external_userid": ext, "description": "生日:03-16"}
        )
    year_9999 = datetime(9999, 12, 31, tzinfo=UTC)
    async with h.sessions() as session, session.begin():
        session.add(
            factories.enrollment(
                "g2",
                "wmc2",
                "birthday",
                h.clock.now(),
                scope="*",
                store_id=None,
                trigger="date",
                cycle="date:9999-12-31",
                status="completed",
                enrolled_at=year_9999,
                ended_at=year_9999,
            )
        )

    h.set_time(at(16, 0, 5))
    report = await h.triggers()
    assert (report.enrolled, report.parked) == (2, 1)
    enrolled = await h.enrollments(playbook_id="birthday", status="active")
    assert sorted(e.external_userid for e in enrolled) == ["wmc1", "wmc3"]
    async with h.sessions() as session:
        [row] = list(await session.scalars(select(ParkedRow)))
        relation = await session.scalar(select(Relation).where(Relation.external_userid == "wmc2"))
    assert (row.job, row.table_name, row.row_key) == ("sop-triggers", "relations", str(relation.id))
    assert row.reason.startswith("OverflowError")
    assert row.detail == "playbook birthday occurrence date:2026-03-16 for g2/wmc2"
    # The occurrence is finished: the next runs that day scan nothing.
    h.set_time(at(16, 0, 6))
    assert (await h.triggers()).occurrences == []


async def test_a_birthday_written_on_the_day_itself_enrols_that_day_in_the_window(h):
    """The day's scan ran at midnight, before the guide wrote the birthday at 14:00: the edit
    enrols the customer then, and the greeting goes out that afternoon (the window is open)."""
    await h.add("g1", "wmc1")
    await h.add("g2", "wmc2")
    h.set_time(at(16, 0, 5))
    assert (await h.triggers()).enrolled == 0  # nobody has a birthday written yet

    h.set_time(at(16, 14, 0))
    await h.act(
        "contact/edit", {"userid": "g1", "external_userid": "wmc1", "remark": "生日:3-16 王姐"}
    )
    [enrollment] = await h.enrollments(playbook_id="birthday")
    assert (enrollment.external_userid, enrollment.cycle) == ("wmc1", "date:2026-03-16")
    assert local(enrollment.enrolled_at) == at(16, 0, 0)  # planned as the scan plans it
    await h.tick()
    [call] = await h.calls("externalcontact/add_msg_template")
    assert call["body"]["external_userid"] == ["wmc1"]
    assert "生日快乐" in call["body"]["text"]["content"]

    # Edited again the same day, or the scan meeting it later: one enrolment for the date.
    h.advance(timedelta(minutes=5))
    await h.act(
        "contact/edit", {"userid": "g1", "external_userid": "wmc1", "remark": "生日:03-16 王姐姐"}
    )
    h.set_time(at(17, 0, 5))
    await h.triggers()
    assert len(await h.enrollments(playbook_id="birthday")) == 1

    # A birthday changed to another day of the same year enrols nobody again that year.
    h.set_time(at(20, 11, 0))
    await h.act("contact/edit", {"userid": "g1", "external_userid": "wmc1", "remark": "生日:03-20"})
    assert len(await h.enrollments(playbook_id="birthday")) == 1

    # A birthday written on the day after the window closed expires rather than wishing late.
    h.set_time(at(20, 21, 30))
    await h.act(
        "contact/edit", {"userid": "g2", "external_userid": "wmc2", "description": "生日:03-20"}
    )
    [late] = await h.enrollments(playbook_id="birthday", external_userid="wmc2")
    await h.tick()
    [greeting] = await h.tasks(enrollment_id=late.id)
    assert greeting.status == "expired"
    assert len(await h.calls("externalcontact/add_msg_template")) == 1
