"""One row the SOP jobs cannot handle never stops the others again: a send that raises what
nothing expects settles its own rows only, and `sop-results` and `sop-reconcile` park a row
they cannot settle, with its reason, and settle the rest."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select, update

from guidebot.db.parking import ParkedRow
from guidebot.sop.models import SopTask
from tests.sop_engine.conftest import SHANGHAI

CHECK_IN = """
playbook: check_in
version: 1
trigger:
  event: customer.added
enroll:
  once_per: relation
timezone: Asia/Shanghai
send_window:
  hours: "10:00-21:00"
  days: mon-sun
steps:
  - id: day1
    at: enroll + 1d
    action: guide_task
    template: check_in.j2
    expire_after: 1d
"""
# HQ's text says nothing to 刘先生 (wmc2): his task's message is empty, which WeCom's
# add_msg_template cannot take (the client refuses it before any call).
CHECK_IN_TEXT = '{% if customer.name != "刘先生" %}{{ customer.name }}您好，最近怎么样？{% endif %}'
YEAR_10000 = 253402300800  # an epoch second no datetime holds


def at(day: int, hour: int, minute: int) -> datetime:
    return datetime(2026, 3, day, hour, minute, tzinfo=SHANGHAI)


@pytest.fixture
def playbooks() -> list[str]:
    return []


async def start(h, text: str = CHECK_IN_TEXT) -> None:
    (h.sop_dir.parent / "templates" / "messages" / "check_in.j2").write_text(text, encoding="utf-8")
    h.write_playbook(CHECK_IN)
    h.reload()
    for guide, customer in (("g1", "wmc1"), ("g2", "wmc2"), ("g3", "wmc3")):
        await h.add(guide, customer, welcome_code=False)


async def parked(h) -> list[ParkedRow]:
    async with h.sessions() as session:
        return list(await session.scalars(select(ParkedRow).order_by(ParkedRow.id)))


async def statuses(h) -> dict[str, str]:
    return {t.guide_userid: t.status for t in await h.tasks(step_id="day1")}


async def test_a_send_that_raises_settles_its_own_row_and_the_others_are_recorded(h):
    await start(h)
    h.set_time(at(14, 20, 55))
    report = await h.tick()

    assert (report.sent, report.unknown) == (2, 1)
    calls = await h.calls("externalcontact/add_msg_template")
    assert sorted(c["body"]["sender"] for c in calls) == ["g1", "g3"]
    tasks = {t.guide_userid: t for t in await h.tasks(step_id="day1")}
    assert {g: t.status for g, t in tasks.items()} == {"g1": "sent", "g2": "unknown", "g3": "sent"}
    assert tasks["g1"].wecom_msgid and tasks["g3"].wecom_msgid
    assert "ValueError" in tasks["g2"].reason and "not resent" in tasks["g2"].reason

    # Nothing is sent again: not by the tick, not by the reconciliation after the lease.
    h.advance(timedelta(minutes=10))
    await h.tick()
    assert (await h.reconcile()).checked == 0
    assert len(await h.calls("externalcontact/add_msg_template")) == 2


async def test_sop_results_parks_a_task_it_cannot_settle_and_settles_the_rest(h):
    await start(h, "您好")
    h.set_time(at(14, 20, 55))
    assert (await h.tick()).sent == 3
    tasks = {t.guide_userid: t for t in await h.tasks(step_id="day1")}
    for guide, task in tasks.items():
        await h.confirm(task.wecom_msgid, guide)
    # WeCom reports g2's send at an instant no datetime holds.
    [result] = h.sim_state.tasks[tasks["g2"].wecom_msgid].results
    result.send_time = YEAR_10000

    report = await h.poll()
    assert report.done == 2 and report.parked == 1
    assert await statuses(h) == {"g1": "done", "g2": "sent", "g3": "done"}
    [row] = await parked(h)
    assert (row.job, row.table_name, row.row_key) == (
        "sop-results",
        "sop_tasks",
        str(tasks["g2"].id),
    )
    assert row.reason.startswith(("ValueError", "OverflowError"))
    assert row.detail == f"check_in step day1 for g2/wmc2 (msgid {tasks['g2'].wecom_msgid})"

    # The next polls leave it where it is, and ask WeCom nothing for it.
    before = len(await h.calls("externalcontact/get_groupmsg_send_result"))
    report = await h.poll()
    assert (report.msgids, report.parked) == (0, 0)
    assert len(await h.calls("externalcontact/get_groupmsg_send_result")) == before


async def test_sop_reconcile_parks_a_guide_it_cannot_check_and_settles_the_others(h):
    await start(h, "您好")
    h.set_time(at(14, 20, 55))
    # A crash right after the rows were marked `sending`: g2's row says it went out in 9999.
    from tests.sop_engine.test_reliability import _crash_after_marking_sending

    assert len(await _crash_after_marking_sending(h)) == 3
    tasks = {t.guide_userid: t for t in await h.tasks(step_id="day1")}
    async with h.sessions() as session, session.begin():
        await session.execute(
            update(SopTask)
            .where(SopTask.id == tasks["g2"].id)
            .values(sent_at=datetime(9999, 12, 31, 23, 59, tzinfo=UTC))
        )
    h.advance(timedelta(minutes=10))

    report = await h.reconcile()
    assert (report.unknown, report.parked) == (2, 1)
    assert await statuses(h) == {"g1": "unknown", "g2": "sending", "g3": "unknown"}
    [row] = await parked(h)
    assert (row.job, row.table_name, row.row_key) == (
        "sop-reconcile",
        "sop_tasks",
        str(tasks["g2"].id),
    )
    assert row.reason.startswith("OverflowError")
    # The next run skips it; nothing was sent again.
    report = await h.reconcile()
    assert (report.checked, report.parked) == (0, 0)
    assert await h.calls("externalcontact/add_msg_template") == []
