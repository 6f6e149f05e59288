"""Behaviour triggers end to end (guidebot.sop.behaviour, behaviour_scan): adds through the
simulated WeCom, opens through the real /r/ route, orders through POST /api/v1/orders, the
stage moved by those facts, the `sop-behaviour` scan on the fake clock, and the tasks sent by
the real tick. Each fires once per occurrence: a duplicate fact, a second scan and a restart
(a new app on the same database) enroll nobody twice; steps keep the send window and the
per-customer daily cap."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from guidebot import i18n
from guidebot.content.service import create_item
from guidebot.db.parking import ParkedRow
from guidebot.events import ContentOpened, StageChanged, publish
from guidebot.sop.behaviour_scan import sop_behaviour
from guidebot.sop.holdout import HOLDOUT, TREATED, assign
from guidebot.sop.jobs import JOBS
from guidebot.sop.loader import load_directory, templates_dir_for
from guidebot.sop.models import SopEnrollment, SopTask
from guidebot.sop.playbook import Trigger
from guidebot.sop.studio import timeline
from guidebot.sop.trigger_words import trigger_summary
from guidebot.web.keys import SOP
from tests import factories
from tests.harness import REPO, deploy_dir, write_playbook
from tests.metrics.conftest import CUSTOMERS, MetricsHarness, at, make_harness
from tests.sop_engine.conftest import local

WINDOW = """
timezone: Asia/Shanghai
send_window:
  hours: "10:00-21:00"
  days: mon-sun
stop_when: [contact.lost, contact.removed]
max_messages_per_day: 1
steps:
  - id: nudge
    at: enroll
    action: guide_task
    template: follow_up_day3.j2
    expire_after: 1d
"""

OPENED = (
    """
playbook: opened_new
version: 1
trigger:
  event: content.opened
  tag: 新品
"""
    + WINDOW
)

ENGAGED = (
    """
playbook: now_engaged
version: 1
trigger:
  event: stage.changed
  from: new
  to: engaged
"""
    + WINDOW
)

NO_ORDER = (
    """
playbook: opened_no_buy
version: 1
trigger:
  event: opened_no_order
  after: 3d
"""
    + WINDOW
)

SILENT = (
    """
playbook: quiet_14d
version: 1
trigger:
  event: silent
  after: 14d
enroll:
  once_per: customer
  reenter_after: 30d
"""
    + WINDOW
)


@pytest.fixture
def sop_dir(tmp_path) -> Path:
    sop_dir = deploy_dir(tmp_path / "deploy")
    for text in (OPENED, ENGAGED, NO_ORDER, SILENT):
        write_playbook(sop_dir, text)
    write_playbook(sop_dir, (REPO / "sop" / "repurchase_30d.yaml").read_text(encoding="utf-8"))
    return sop_dir


async def scan(h: MetricsHarness):
    return await sop_behaviour(h.app[SOP], h.clock.now())


async def enrollments(h: MetricsHarness, playbook: str) -> list[SopEnrollment]:
    async with h.sessions() as session:
        return list(
            await session.scalars(
                select(SopEnrollment)
                .where(SopEnrollment.playbook_id == playbook)
                .order_by(SopEnrollment.id)
            )
        )


async def tasks(h: MetricsHarness, playbook: str) -> list[SopTask]:
    [*ids] = [e.id for e in await enrollments(h, playbook)]
    async with h.sessions() as session:
        return list(
            await session.scalars(
                select(SopTask).where(SopTask.enrollment_id.in_(ids)).order_by(SopTask.id)
            )
        )


async def tagged_item(h: MetricsHarness, key: str, tags: list[str]) -> int:
    async with h.sessions() as session, session.begin():
        item = await create_item(
            session,
            {"key": key, "kind": "link", "title": key, "url": f"https://brand.example/{key}"},
            h.clock.now(),
        )
        item.tags = tags
        return item.id


def order(order_id: str, ext: str, paid_at, **extra) -> dict:
    return {
        "order_id": order_id,
        "external_userid": ext,
        "amount": "100.00",
        "paid_at": paid_at.isoformat(),
        **extra,
    }


async def restart(aiohttp_client, database_url, clock, sop_dir) -> MetricsHarness:
    """A new app (empty memory, its own registry) on the same database."""
    return await make_harness(aiohttp_client, database_url, clock, sop_dir)


def test_the_scan_is_a_registered_job() -> None:
    assert any(job.id == "sop-behaviour" and job.run is sop_behaviour for job in JOBS)


async def test_an_open_enrolls_once_per_link_in_the_window_and_under_the_cap(
    h, aiohttp_client, database_url, clock, sop_dir
):
    await h.add("g1", "wmc01")
    await h.add("g2", "wmc02")
    new_item = await tagged_item(h, "spring-new", ["新品"])
    old_item = await tagged_item(h, "classics", ["经典"])
    token = await h.forward("g1", "wmc01", new_item)
    other = await h.forward("g2", "wmc02", old_item)

    h.set_time(at(9, 22, 30))  # after the window closed
    await h.open(token)
    await h.open(other)  # an item without the tag: nothing
    [opened] = await enrollments(h, "opened_new")
    assert (opened.guide_userid, opened.external_userid) == ("g1", "wmc01")
    assert opened.cycle.startswith("opened:") and opened.trigger == "content.opened"
    # Each open made its customer engaged: stage.changed new → engaged enrolled them too, in
    # the same transaction (whatever the item's tags).
    engaged = await enrollments(h, "now_engaged")
    assert [e.external_userid for e in engaged] == ["wmc01", "wmc02"]
    assert all(e.cycle.startswith("stage:engaged:") for e in engaged)

    # Quiet hours: both steps wait for 10:00 the next morning.
    [nudge] = await tasks(h, "opened_new")
    assert local(nudge.due_at) == at(10, 10, 0)

    # The same link opened again, and the fact delivered twice: the same occurrence.
    h.set_time(at(9, 22, 40))
    await h.open(token)
    replay = ContentOpened(
        guide_userid="g1",
        external_userid="wmc01",
        item_id=new_item,
        link_nonce=opened.cycle.removeprefix("opened:"),
        task_id=None,
        at=at(9, 22, 30),
        now=h.clock.now(),
    )
    async with h.sessions() as session, session.begin():
        await publish(session, replay)
    assert len(await enrollments(h, "opened_new")) == 1

    # A restart: a new app on the same database hears the replay again, and still once.
    again = await restart(aiohttp_client, database_url, clock, sop_dir)
    async with again.sessions() as session, session.begin():
        await publish(session, replay)
    assert len(await enrollments(again, "opened_new")) == 1

    # The cap: one customer message a day; the second playbook's waits a day.
    h.set_time(at(10, 10, 0))
    report = await h.tick()
    # wmc01: one of its two messages, the other deferred; wmc02: its one.
    assert report.sent == 2 and report.deferred == 1
    senders = [c["body"]["sender"] for c in await h.calls("externalcontact/add_msg_template")]
    assert sorted(senders) == ["g1", "g2"]
    h.set_time(at(11, 10, 0))
    assert (await h.tick()).sent == 1
    senders = [c["body"]["sender"] for c in await h.calls("externalcontact/add_msg_template")]
    assert sorted(senders) == ["g1", "g1", "g2"]


async def test_a_stage_change_fires_once_for_a_duplicate_and_after_a_restart(
    h, aiohttp_client, database_url, clock, sop_dir
):
    await h.add("g1", "wmc03")
    change = StageChanged(
        external_userid="wmc03",
        guide_userid="g1",
        from_stage="new",
        to_stage="engaged",
        at=at(9, 12, 0),
        reason="customer.replied",
        now=at(9, 12, 0),
    )
    for _ in range(2):
        async with h.sessions() as session, session.begin():
            await publish(session, change)
    again = await restart(aiohttp_client, database_url, clock, sop_dir)
    async with again.sessions() as session, session.begin():
        await publish(session, change)
    [enrollment] = await enrollments(h, "now_engaged")
    assert enrollment.external_userid == "wmc03"
    # Another change (engaged → first_purchase) is not the playbook's `from`/`to`.
    async with h.sessions() as session, session.begin():
        await publish(
            session,
            StageChanged(
                external_userid="wmc03",
                guide_userid="g1",
                from_stage="engaged",
                to_stage="first_purchase",
                at=at(9, 13, 0),
                reason="order.paid",
                now=at(9, 13, 0),
            ),
        )
    assert len(await enrollments(h, "now_engaged")) == 1


async def test_repurchase_due_reminds_first_time_buyers_30_days_on_once(
    h, aiohttp_client, database_url, clock, sop_dir
):
    # wmc04 is in the playbook's 10% holdout, wmc11 is treated (sha256 of playbook, customer).
    assert assign("repurchase_30d", "wmc04", 0.1) == HOLDOUT
    assert assign("repurchase_30d", "wmc11", 0.1) == TREATED
    for guide, ext in (("g1", "wmc04"), ("g1", "wmc05"), ("g2", "wmc06"), ("g2", "wmc11")):
        await h.add(guide, ext)
    h.set_time(at(9, 22, 30))
    await h.order(order("R-1", "wmc04", at(9, 22, 30)), status=201)  # first-time buyers
    await h.order(order("R-5", "wmc11", at(9, 22, 30)), status=201)
    await h.order(order("R-2", "wmc05", at(9, 22, 0)), status=201)  # a repeat buyer
    await h.order(order("R-3", "wmc05", at(9, 22, 10)), status=201)
    await h.order(order("R-4", "wmc06", at(9, 22, 0)), status=201)  # refunded: no order counts
    await h.order(order("R-4", "wmc06", at(9, 22, 0), status="refunded"), status=200)

    h.set_time(at(9, 22, 29) + timedelta(days=30))
    assert (await scan(h)).enrolled == 0  # not yet 30 days
    h.set_time(at(9, 22, 35) + timedelta(days=30))
    assert (await scan(h)).enrolled == 2
    found = await enrollments(h, "repurchase_30d")
    assert [(e.external_userid, e.treatment_group) for e in found] == [
        ("wmc04", HOLDOUT),
        ("wmc11", TREATED),
    ]
    assert all(e.cycle.startswith("repurchase:") for e in found)
    assert local(found[1].enrolled_at) == at(9, 22, 30) + timedelta(days=30)
    # The next scan, and a restarted app's, find the same occurrences done.
    assert (await scan(h)).enrolled == 0
    again = await restart(aiohttp_client, database_url, clock, sop_dir)
    assert (await scan(again)).enrolled == 0
    assert len(await enrollments(h, "repurchase_30d")) == 2

    # The holdout is enrolled and sent nothing; the treated customer's reminder was due at
    # 22:30, past the window: it waits for 10:00 the next morning.
    [reminder] = await tasks(h, "repurchase_30d")
    assert reminder.external_userid == "wmc11"
    assert local(reminder.due_at) == at(9, 10, 0) + timedelta(days=31)
    h.set_time(at(9, 10, 0) + timedelta(days=31))
    await h.tick()
    [call] = await h.calls("externalcontact/add_msg_template")
    assert call["body"]["sender"] == "g2" and "上次购买" in call["body"]["text"]["content"]


async def test_opened_no_order_fires_for_the_open_nobody_bought_after(h):
    await h.add("g1", "wmc07")
    await h.add("g2", "wmc08")
    item = await tagged_item(h, "lookbook", [])
    first = await h.forward("g1", "wmc07", item)
    second = await h.forward("g2", "wmc08", item)
    h.set_time(at(9, 12, 0))
    await h.open(first)
    await h.open(second)
    h.set_time(at(10, 12, 0))
    await h.order(order("N-1", "wmc08", at(10, 12, 0)), status=201)

    h.set_time(at(12, 11, 59))
    assert (await scan(h)).enrolled == 0
    h.set_time(at(12, 12, 1))
    assert (await scan(h)).enrolled == 1
    [enrollment] = await enrollments(h, "opened_no_buy")
    assert (enrollment.guide_userid, enrollment.external_userid) == ("g1", "wmc07")
    assert enrollment.cycle.startswith("no_order:")
    assert (await scan(h)).enrolled == 0
    [nudge] = await tasks(h, "opened_no_buy")
    assert local(nudge.due_at) == at(12, 12, 0)  # inside the window: at once
    await h.tick()
    [call] = await h.calls("externalcontact/add_msg_template")
    assert call["body"]["sender"] == "g1"


async def test_silent_fires_once_per_silence_with_two_instances_scanning(
    h, aiohttp_client, database_url, clock, sop_dir
):
    h.set_time(at(9, 10, 0))
    await h.add("g1", "wmc09")
    h.set_time(at(9, 10, 0) + timedelta(days=13))
    assert (await scan(h)).enrolled == 0
    h.set_time(at(9, 10, 1) + timedelta(days=14))
    other = await restart(aiohttp_client, database_url, clock, sop_dir)
    # Two instances' scans at once: the occurrence's unique cycle lets one of them enroll.
    reports = await asyncio.gather(scan(h), scan(other))
    assert sum(r.enrolled for r in reports) == 1 and sum(r.parked for r in reports) == 0
    [enrollment] = await enrollments(h, "quiet_14d")
    assert enrollment.external_userid == "wmc09" and enrollment.cycle.startswith("silent:")
    h.set_time(at(9, 11, 0) + timedelta(days=14))
    assert (await scan(h)).enrolled == 0


async def test_a_customer_the_scan_cannot_enroll_is_parked_and_the_others_are(h):
    """wmc10's last quiet_14d enrollment says it began in year 9999 (a hand edit, an import):
    no instant is 30 days after it. The scan parks wmc10 and enrolls wmc09 all the same."""
    h.set_time(at(9, 10, 0))
    await h.add("g1", "wmc09")
    await h.add("g1", "wmc10")
    year_9999 = datetime(9999, 12, 31, tzinfo=UTC)
    async with h.sessions() as session, session.begin():
        session.add(
            factories.enrollment(
                "g1",
                "wmc10",
                "quiet_14d",
                h.clock.now(),
                scope="*",
                store_id=None,
                trigger="silent",
                cycle="silent:99991231T000000.000000",
                status="completed",
                enrolled_at=year_9999,
                ended_at=year_9999,
            )
        )
    h.set_time(at(9, 10, 1) + timedelta(days=14))
    report = await scan(h)
    assert (report.enrolled, report.parked) == (1, 1)
    assert [e.external_userid for e in await enrollments(h, "quiet_14d")] == ["wmc10", "wmc09"]
    async with h.sessions() as session:
        [row] = list(await session.scalars(select(ParkedRow)))
    assert (row.job, row.table_name, row.row_key) == ("sop-behaviour", "customer_stages", "wmc10")
    assert row.reason.startswith("OverflowError")


@pytest.fixture
async def h(aiohttp_client, database_url, clock, sop_dir) -> MetricsHarness:
    assert len(CUSTOMERS) >= 11
    return await make_harness(aiohttp_client, database_url, clock, sop_dir)


def test_the_studio_timeline_names_what_narrows_each_trigger() -> None:
    loaded = load_directory(REPO / "sop", templates_dir_for(REPO / "sop"))
    [book] = [item.playbook for item in loaded if item.id == "repurchase_30d"]
    [trigger] = [e for e in timeline(book, i18n.ZH) if e["kind"] == "trigger"]
    assert (trigger["event"], trigger["value"]) == ("repurchase_due", "上次下单 30d 后 · 恰好 1 单")
    [trigger] = [e for e in timeline(book, i18n.EN) if e["kind"] == "trigger"]
    assert trigger["value"] == "30d after the last order · exactly 1 order"
    stage = Trigger(event="stage.changed", from_stage=None, to_stage="first_purchase")
    assert trigger_summary(stage, i18n.ZH) == "任意阶段 → 首购"
    assert trigger_summary(stage, i18n.EN) == "any stage → First purchase"
