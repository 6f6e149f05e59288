"""Crashes, outages and caps: nothing to a customer twice, nothing in a burst, nothing lost."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta

import pytest
from sqlalchemy import select, update

from guidebot.app import create_app
from guidebot.db.credentials import WeComCredential
from guidebot.sop.actions.base import TickReport
from guidebot.sop.jobs import sop_tick
from guidebot.sop.models import SopTask
from guidebot.sop.prepare import prepare
from guidebot.sop.queue import STRANDED_CLAIM, claim, release_stranded_claims
from guidebot.sop.tick import run_tasks
from guidebot.web.keys import SETTINGS
from tests.sop_engine.conftest import SHANGHAI, local


def at(day: int, hour: int, minute: int) -> datetime:
    return datetime(2026, 3, day, hour, minute, tzinfo=SHANGHAI)


async def _crash_after_marking_sending(h) -> list[int]:
    """Run a tick up to the commit of `sending`, then "die" before WeCom answers."""
    runtime = h.runtime
    ids = await claim(runtime, h.clock.now())
    ready = await prepare(runtime, ids, h.clock.now(), TickReport())
    return [r.id for r in ready]


async def test_crash_before_the_call_leaves_unknown_and_never_resends(h):
    await h.add("g1", "wmc1")
    h.set_time(at(16, 20, 55))
    await _crash_after_marking_sending(h)
    assert (await h.task("g1", "wmc1", "day3")).status == "sending"

    # The restart (SQLite: one process owns the queue) reconciles everything in `sending`.
    h.advance(timedelta(minutes=1))
    report = await h.reconcile(everything=True)
    assert report.unknown == 1
    day3 = await h.task("g1", "wmc1", "day3")
    assert day3.status == "unknown" and "not resent" in day3.reason
    for _ in range(3):
        h.advance(timedelta(minutes=10))
        await h.tick()
    assert await h.calls("externalcontact/add_msg_template") == []


async def test_crash_after_the_call_is_found_in_wecom_and_marked_sent(h):
    await h.add("g1", "wmc1")
    h.set_time(at(16, 20, 55))
    await _crash_after_marking_sending(h)
    row = await h.task("g1", "wmc1", "day3")
    # The call reached WeCom just before the process died.
    answer = await h.runtime.wecom.add_msg_template(
        external_userids=["wmc1"], sender="g1", text=row.message
    )
    # Not yet past the lease: the periodic job leaves it to its (maybe live) owner.
    assert (await h.reconcile()).checked == 0
    h.advance(timedelta(minutes=6))
    report = await h.reconcile()
    assert report.sent == 1
    day3 = await h.task("g1", "wmc1", "day3")
    assert (day3.status, day3.wecom_msgid) == ("sent", answer.msgid)
    await h.tick()
    assert len(await h.calls("externalcontact/add_msg_template")) == 1


async def test_crash_mid_welcome_is_unknown_and_reminder_is_sent_again(h):
    await h.add("g1", "wmc1", welcome_code=False)
    h.set_time(at(14, 20, 55))
    await _crash_after_marking_sending(h)  # the day-1 reminder to the guide
    report = await h.reconcile(everything=True)
    assert report.requeued == 1
    await h.tick()
    assert len(await h.app_messages("g1")) == 1  # reminders may repeat; this one was never sent


async def test_claimed_rows_of_a_dead_claimer_come_back_after_the_lease(h):
    await h.add("g1", "wmc1")
    h.set_time(at(14, 20, 55))
    claimed = await claim(h.runtime, h.clock.now())
    assert claimed
    assert (await h.tick()).claimed == 0  # still leased
    h.advance(timedelta(minutes=3))
    report = await h.tick()
    assert report.reaped == 1 and report.sent == 1


async def test_claims_left_by_a_dead_process_are_released_at_start_up_on_sqlite_only(
    h, aiohttp_client
):
    """SQLite has one process: a claim found at start-up died with the last one and must not
    wait out its lease (a welcome's code lives 20 s), nor may a token refresh lease. On
    PostgreSQL another instance may be holding them: they keep their leases."""
    await h.add("g1", "wmc1", welcome_code=False)
    h.set_time(at(14, 20, 55))
    dead = replace(h.runtime, owner="dead-host:4242:0badc0de")
    [claimed] = await claim(dead, h.clock.now())
    async with h.sessions() as session, session.begin():
        await session.execute(
            update(WeComCredential).values(
                lease_owner=dead.owner, lease_until=h.clock.now() + timedelta(seconds=15)
            )
        )

    settings = h.app[SETTINGS]
    await aiohttp_client(create_app(settings, clock=h.clock))  # the process starts again

    [task] = await h.tasks(id=claimed)
    async with h.sessions() as session:
        leases = set(await session.scalars(select(WeComCredential.lease_owner)))
    if settings.is_sqlite:
        assert (task.status, task.lease_owner, task.lease_until) == ("pending", None, None)
        assert dead.owner not in leases  # (the new process may be refreshing a token itself)
    else:
        assert (task.status, task.lease_owner) == ("claimed", dead.owner)
        assert leases == {dead.owner}


async def test_our_claim_stranded_by_a_database_error_comes_back_at_the_next_tick(h):
    """The database went away between claiming and preparing: the claim is this instance's
    own and nobody holds it, so the scheduler's tick makes it due again well before the lease
    lapses; a claim in hand (younger) is left to its claimer, and is prepared only once."""
    await h.add("g1", "wmc1")
    h.set_time(at(14, 20, 55))
    stranded = await claim(h.runtime, h.clock.now())  # then prepare() met a dead connection
    assert stranded
    assert await release_stranded_claims(h.runtime, h.clock.now()) == 0  # maybe still in hand
    h.advance(STRANDED_CLAIM + timedelta(seconds=1))
    report = await sop_tick(h.runtime)
    assert report.claimed == len(stranded) and report.sent == 1 and report.reaped == 0
    # The stale claimer waking up finds nothing of its own left to prepare.
    assert await prepare(h.runtime, stranded, h.clock.now(), TickReport()) == []
    assert len(await h.app_messages("g1")) == 1


async def test_three_day_outage_expires_steps_instead_of_bursting(h):
    await h.add("g1", "wmc1")
    # The server was down from Friday night until Tuesday 22:00.
    h.set_time(at(17, 22, 0))
    report = await h.tick()
    assert report.expired == 2  # the day-1 reminder (expire 1d) and day 3 (expire 1d)
    intro = await h.task("g1", "wmc1", "day1_intro")
    day3 = await h.task("g1", "wmc1", "day3")
    assert intro.status == day3.status == "expired"
    assert intro.reason.startswith("overdue by 3d1h after an outage")
    assert day3.reason.startswith("overdue by 1d1h after an outage")
    assert await h.app_messages("g1") == []
    assert await h.calls("externalcontact/add_msg_template") == []
    assert (await h.task("g1", "wmc1", "day7")).status == "pending"


async def test_back_at_3am_holds_a_live_step_until_the_window_opens(h):
    await h.add("g1", "wmc1")
    # Down from Friday night until Tuesday 03:00: day 3 (due Monday 20:55) has not expired
    # yet, but nothing goes out at 3 am.
    h.set_time(at(17, 3, 0))
    report = await h.tick()
    assert report.expired == 1 and report.deferred == 1 and report.sent == 0
    day3 = await h.task("g1", "wmc1", "day3")
    assert day3.status == "pending" and local(day3.due_at) == at(17, 10, 0)
    assert await h.calls("externalcontact/add_msg_template") == []
    h.set_time(at(17, 10, 0))
    await h.tick()
    assert len(await h.calls("externalcontact/add_msg_template")) == 1


async def test_frequency_cap_defers_to_the_next_window_not_dropped(h):
    h.write_playbook(
        """
        playbook: second_opinion
        version: 1
        trigger:
          event: customer.added
        enroll:
          once_per: relation
        timezone: Asia/Shanghai
        send_window:
          hours: "10:00-21:00"
        steps:
          - id: d3
            at: enroll + 3d
            action: guide_task
            template: follow_up_day3.j2
            expire_after: 1d
        """
    )
    h.reload()
    await h.add("g1", "wmc1")
    h.set_time(at(16, 20, 55))
    report = await h.tick()
    assert report.sent == 1 and report.deferred == 1
    assert len(await h.calls("externalcontact/add_msg_template")) == 1
    [deferred] = [
        t
        for t in await h.tasks(action="guide_task")
        if t.step_id in ("day3", "d3") and t.status == "pending"
    ]
    assert local(deferred.due_at) == at(17, 10, 0)  # tomorrow, when the window opens
    assert "cap 1" in deferred.reason
    assert local(deferred.expires_at) == at(18, 10, 0)  # expiry moves with it

    h.set_time(at(17, 10, 0))
    report = await h.tick()
    assert report.sent == 1
    assert len(await h.calls("externalcontact/add_msg_template")) == 2
    assert {t.status for t in await h.tasks(action="guide_task") if t.step_id != "day7"} == {"sent"}


async def test_monthly_cap_status_3_is_recorded_not_retried(h):
    await h.control("config", {"monthly_cap": 0})
    await h.add("g1", "wmc1")
    h.set_time(at(16, 20, 55))
    await h.tick()
    day3 = await h.task("g1", "wmc1", "day3")
    await h.confirm(day3.wecom_msgid, "g1")
    report = await h.poll()
    assert report.failed == 1
    day3 = await h.task("g1", "wmc1", "day3")
    assert (day3.status, day3.reason) == ("failed", "customer's monthly cap")
    assert day3.result["send_status"] == 3
    for _ in range(3):
        h.advance(timedelta(hours=1))
        await h.tick()
        await h.poll()
    assert len(await h.calls("externalcontact/add_msg_template")) == 1


async def test_not_a_friend_status_2_fails_the_task(h):
    await h.add("g1", "wmc1")
    h.set_time(at(16, 20, 55))
    await h.tick()
    day3 = await h.task("g1", "wmc1", "day3")
    # The customer deletes the guide after the task was created, before the guide confirms.
    await h.control(
        "contact/delete_by_customer", {"userid": "g1", "external_userid": "wmc1", "deliver": False}
    )
    await h.confirm(day3.wecom_msgid, "g1")
    await h.poll()
    day3 = await h.task("g1", "wmc1", "day3")
    assert (day3.status, day3.reason) == ("failed", "not a friend")


async def test_wecom_busy_retries_later_then_sends_once(h):
    await h.add("g1", "wmc1")
    h.set_time(at(16, 20, 55))
    await h.control(
        "faults", {"api": "externalcontact/add_msg_template", "errcode": 45009, "times": 1}
    )
    report = await h.tick()
    assert report.retried == 1
    day3 = await h.task("g1", "wmc1", "day3")
    assert day3.status == "pending" and "retrying" in day3.reason
    h.advance(timedelta(minutes=2))
    await h.tick()
    assert (await h.task("g1", "wmc1", "day3")).status == "sent"
    ok = [c for c in await h.calls("externalcontact/add_msg_template") if "msgid" in c["answer"]]
    assert len(ok) == 1


async def test_one_call_per_guide_and_step_for_many_customers(h):
    for ext in ("wmc1", "wmc2", "wmc3"):
        await h.add("g1", ext)
    h.set_time(at(16, 20, 55))
    # Same text for everyone: render without the name by editing the template.
    template = h.sop_dir.parent / "templates" / "messages" / "follow_up_day3.j2"
    template.write_text("本周新品已到店，欢迎来看看。——{{ guide.name }}", encoding="utf-8")
    await h.tick()
    [call] = await h.calls("externalcontact/add_msg_template")
    assert sorted(call["body"]["external_userid"]) == ["wmc1", "wmc2", "wmc3"]
    cards = [m for m in await h.app_messages("g1") if "群发" in m["textcard"]["title"]]
    assert len(cards) == 1 and "3 位客户" in cards[0]["textcard"]["description"]


async def test_stop_while_claimed_is_not_sent(h):
    await h.add("g1", "wmc1")
    h.set_time(at(16, 20, 55))
    ids = await claim(h.runtime, h.clock.now())
    async with h.sessions() as session, session.begin():
        await session.execute(
            update(SopTask).where(SopTask.id.in_(ids)).values(status="skipped", reason="by hand")
        )
    ready = await prepare(h.runtime, ids, h.clock.now(), TickReport())
    assert ready == []


class DatabaseGoneAfter:
    """The runtime's session factory, until the database goes away after `opened` sessions."""

    def __init__(self, sessions, opened: int) -> None:
        self.sessions, self.left = sessions, opened
        self.kw = sessions.kw

    def __call__(self):
        self.left -= 1
        if self.left < 0:
            raise ConnectionRefusedError("the database went away")
        return self.sessions()


async def test_rows_a_failed_run_left_claimed_are_given_back_at_the_next_tick(h):
    await h.add("g1", "wmc1")
    h.set_time(at(16, 20, 55))
    # Claimed, decided and committed; the database goes away before its template's text is
    # written (the second transaction of prepare), so the row is left claimed under a lease.
    failing = replace(h.runtime, sessions=DatabaseGoneAfter(h.runtime.sessions, opened=2))
    with pytest.raises(ConnectionRefusedError):
        await run_tasks(failing, h.clock.now())
    assert (await h.task("g1", "wmc1", "day3")).status == "claimed"

    # Well inside the lease: the next tick gives the row back and sends it, once.
    h.advance(timedelta(seconds=5))
    await h.tick()
    assert (await h.task("g1", "wmc1", "day3")).status == "sent"
    assert len(await h.calls("externalcontact/add_msg_template")) == 1
