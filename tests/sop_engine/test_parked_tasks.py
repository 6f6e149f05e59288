"""One task row the tick cannot decide never stops the other customers' tasks again.

The row: an enrollment whose stored send window no version of guidebot can read (written by
hand, or by an older version). Deciding its task raises; that used to roll back the whole
batch, every tick, so every task behind it waited for good.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select, update

from guidebot.db.parking import ParkedRow, retry
from guidebot.sop.models import SopEnrollment
from tests.sop_engine.conftest import SHANGHAI


def at(day: int, hour: int, minute: int) -> datetime:
    return datetime(2026, 3, day, hour, minute, tzinfo=SHANGHAI)


async def parked(h) -> list[ParkedRow]:
    async with h.sessions() as session:
        return list(await session.scalars(select(ParkedRow).order_by(ParkedRow.id)))


async def test_a_task_the_tick_cannot_decide_is_parked_and_the_others_run(h):
    for guide, customer in (("g1", "wmc1"), ("g2", "wmc2"), ("g3", "wmc3")):
        await h.add(guide, customer, welcome_code=False)
    [broken] = await h.enrollments(guide_userid="g2", playbook_id="first_contact")
    async with h.sessions() as session, session.begin():
        await session.execute(
            update(SopEnrollment)
            .where(SopEnrollment.id == broken.id)
            .values(settings={**broken.settings, "send_window": {"start": "25:00", "end": "x"}})
        )

    h.set_time(at(14, 20, 55))  # the day-1 reminders are due
    report = await h.tick()
    assert (report.sent, report.parked) == (2, 1)
    assert len(await h.app_messages("g1")) == 1 and len(await h.app_messages("g3")) == 1
    assert await h.app_messages("g2") == []
    task = await h.task("g2", "wmc2", "day1_intro")
    assert (task.status, task.lease_owner) == ("pending", None)  # its claim is let go
    [row] = await parked(h)
    assert (row.job, row.table_name, row.row_key) == ("sop-tick", "sop_tasks", str(task.id))
    assert row.reason.startswith("ValueError")
    assert row.detail == "first_contact step day1_intro for g2/wmc2"

    # The next ticks leave it where it is and cost nothing.
    h.set_time(at(14, 21, 56))
    report = await h.tick()
    assert (report.claimed, report.parked) == (0, 0)
    # Prometheus shows it parked, not as a task the tick is falling behind on.
    metrics = await (await h.client.get("/metrics")).text()
    assert 'guidebot_parked_rows{job="sop-tick"} 1.0' in metrics
    assert "guidebot_sop_task_lag_seconds 0.0" in metrics

    # Handed back by the operator, it is tried again: still unreadable, parked again.
    async with h.sessions() as session, session.begin():
        assert await retry(session, ids=[row.id]) == 1
    metrics = await (await h.client.get("/metrics")).text()
    assert 'guidebot_parked_rows{job="sop-tick"} 0.0' in metrics
    report = await h.tick()
    assert (report.claimed, report.parked) == (1, 1)
    assert [r.count for r in await parked(h)] == [1]  # a new record: retry forgot the old one
