"""best_time end to end: opens through the real /r/ route and a reply through POST /api/v1/replies
teach each customer's hour (guidebot.contacts.reading_hours), orders through POST /api/v1/orders,
the `sop-behaviour` scan enrolls a repurchase playbook whose step says `best_time: true`, and the
real tick sends it at that hour on the fake clock; a customer with no history gets their store's
customers' hour; the daily cap defers a placed step to the same hour the next day; the customer
API shows the learned hour."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from guidebot.clock import FakeClock
from guidebot.contacts.models import CustomerReadHours, ReadHourCount
from guidebot.contacts.reading_hours import ALL_STORES
from guidebot.events import ContentOpened, publish
from guidebot.sop.behaviour_scan import sop_behaviour
from guidebot.sop.models import SopTask, TaskStatus
from guidebot.web.keys import SOP
from tests.harness import deploy_dir, write_playbook
from tests.metrics.conftest import MetricsHarness, at, make_harness
from tests.sop_engine.conftest import local

BEST = """
playbook: reorder_best
version: 1
trigger: {event: repurchase_due, after: 1d}
timezone: Asia/Shanghai
send_window: {hours: "10:00-22:00"}
max_messages_per_day: 1
steps:
  - {id: nudge, at: enroll, action: guide_task, template: follow_up_day3.j2, expire_after: 1d,
     best_time: true}
"""

PLAIN = """
playbook: reorder_plain
version: 1
trigger: {event: repurchase_due, after: 1d}
timezone: Asia/Shanghai
send_window: {hours: "10:00-22:00"}
max_messages_per_day: 1
steps:
  - {id: hello, at: enroll, action: guide_task, template: follow_up_day3.j2, expire_after: 1d}
"""


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(at(9, 9, 0))


@pytest.fixture
async def h(aiohttp_client, database_url, clock, sop_dir) -> MetricsHarness:
    return await make_harness(aiohttp_client, database_url, clock, sop_dir)


@pytest.fixture
def sop_dir(tmp_path) -> Path:
    sop_dir = deploy_dir(tmp_path / "deploy")
    write_playbook(sop_dir, BEST)
    return sop_dir


async def nudge(h: MetricsHarness, ext: str, step: str = "nudge") -> SopTask:
    async with h.sessions() as session:
        return await session.scalar(
            select(SopTask).where(SopTask.external_userid == ext, SopTask.step_id == step)
        )


async def teach(h: MetricsHarness) -> None:
    """wmc01 (g1, 张江店) reads at 20:xx, wmc04 (g3, 张江店) at 11:xx, wmc05 (g2, 徐汇店) at
    15:xx; wmc02 (g1) and wmc03 (g2) never read."""
    for guide, ext in (("g1", "wmc01"), ("g1", "wmc02"), ("g2", "wmc03")):
        await h.add(guide, ext)
    await h.add("g3", "wmc04")
    await h.add("g2", "wmc05")
    item = await h.item("新品")
    links = {ext: await h.forward(g, ext, item) for g, ext in (("g1", "wmc01"), ("g3", "wmc04"))}
    links["wmc05"] = await h.forward("g2", "wmc05", item)
    for day in (10, 11, 12):
        for hour, minute, ext in ((11, 10, "wmc04"), (11, 50, "wmc04"), (15, 10, "wmc05")):
            h.set_time(at(day, hour, minute))
            await h.open(links[ext])
        h.set_time(at(day, 20, 10))
        await h.open(links["wmc01"])
        h.set_time(at(day, 20, 25))
        await h.open(links["wmc01"])  # 15 minutes after the last counted: the same reading
    h.set_time(at(12, 21, 0))
    status, _ = await h.api("POST", "/replies", json={"external_userid": "wmc01", "guide": "g1"})
    assert status == 200
    h.set_time(at(12, 23, 0))
    status, _ = await h.api("POST", "/replies", json={"external_userid": "wmc05", "guide": "g2"})
    assert status == 200


async def test_each_customer_is_placed_at_their_hour_or_their_store_s(h) -> None:
    await teach(h)
    async with h.sessions() as session:
        mine = await session.get(CustomerReadHours, "wmc01")
    # Three opens at 20:10 (the 20:25 ones within 30 minutes of them) and the 21:00 reply.
    assert mine.observations == 4 and sum(mine.counts) == 4
    assert mine.counts[12] == 3 and mine.counts[13] == 1  # UTC 12 and 13: 20:00 and 21:00

    h.set_time(at(13, 9, 30))
    for n, ext in enumerate(("wmc01", "wmc02", "wmc03", "wmc04", "wmc05"), start=1):
        await h.order(
            {
                "order_id": f"B-{n}",
                "external_userid": ext,
                "amount": "99.00",
                "paid_at": at(13, 9, 30).isoformat(),
            },
            status=201,
        )
    h.set_time(at(14, 9, 31))
    assert (await sop_behaviour(h.app[SOP], h.clock.now())).enrolled == 5
    due = {
        ext: local((await nudge(h, ext)).due_at)
        for ext in ("wmc01", "wmc02", "wmc03", "wmc04", "wmc05")
    }
    assert due == {
        "wmc01": at(14, 20, 0),  # their own readings
        "wmc04": at(14, 11, 0),
        "wmc05": at(14, 15, 0),
        "wmc02": at(14, 11, 0),  # no history: 张江店's customers read most at 11
        "wmc03": at(14, 15, 0),  # no history: 徐汇店's at 15
    }

    # Nothing goes before the hour; at 20:00 wmc01's goes.
    h.set_time(at(14, 19, 59))
    await h.tick()
    assert (await nudge(h, "wmc01")).status == TaskStatus.PENDING
    h.set_time(at(14, 20, 0))
    await h.tick()
    assert (await nudge(h, "wmc01")).status == TaskStatus.SENT

    # The customer API: the hour on the store's clock, and where it comes from.
    status, answer = await h.api("GET", "/customers/wmc01")
    assert status == 200
    assert answer["best_hour"]["hour"] == 20 and answer["best_hour"]["source"] == "own"
    assert answer["best_hour"]["timezone"] == "Asia/Shanghai"
    assert "20:00" in answer["best_hour"]["label"]
    _, other = await h.api("GET", "/customers/wmc02")
    assert other["best_hour"]["hour"] == 11 and other["best_hour"]["source"] == "store"


async def test_a_capped_best_time_step_waits_for_the_same_hour_the_next_day(
    aiohttp_client, database_url, clock, sop_dir
) -> None:
    write_playbook(sop_dir, PLAIN)
    h = await make_harness(aiohttp_client, database_url, clock, sop_dir)
    await teach(h)
    h.set_time(at(13, 9, 30))
    await h.order(
        {
            "order_id": "C-1",
            "external_userid": "wmc01",
            "amount": "99.00",
            "paid_at": at(13, 9, 30).isoformat(),
        },
        status=201,
    )
    h.set_time(at(14, 10, 0))
    await sop_behaviour(h.app[SOP], h.clock.now())
    await h.tick()  # the plain playbook's message goes at 10:00: the day's one
    assert (await nudge(h, "wmc01", "hello")).status == TaskStatus.SENT
    h.set_time(at(14, 20, 0))
    await h.tick()
    capped = await nudge(h, "wmc01")
    assert capped.status == TaskStatus.PENDING
    assert local(capped.due_at) == at(14, 20, 0) + timedelta(days=1)  # 20:00, not 10:00
    assert "cap 1" in capped.reason


async def test_a_replayed_or_late_fact_counts_once_and_a_store_s_prior_adds_up(h) -> None:
    await h.add("g1", "wmc06")
    await h.add("g3", "wmc07")

    async def opened(ext: str, guide: str, when) -> None:
        fact = ContentOpened(
            guide_userid=guide,
            external_userid=ext,
            item_id=1,
            link_nonce="n",
            task_id=None,
            at=when,
            now=h.clock.now(),
        )
        async with h.sessions() as session, session.begin():
            await publish(session, fact)

    h.set_time(at(10, 21, 0))
    await opened("wmc06", "g1", at(10, 20, 0))
    await opened("wmc06", "g1", at(10, 20, 0))  # the same fact again
    await opened("wmc06", "g1", at(10, 9, 0))  # a late fact, earlier in the day: counted
    await opened("wmc06", "g1", at(10, 19, 45))  # late, within 30 minutes of the latest: not
    await opened("wmc07", "g3", at(10, 20, 40))
    async with h.sessions() as session:
        row = await session.get(CustomerReadHours, "wmc06")
        assert row.observations == 2 and row.counts[12] == 1 and row.counts[1] == 1
        assert local(row.last_counted_at) == at(10, 20, 0)
        prior = dict(
            (store, count)
            for store, count in (
                await session.execute(
                    select(ReadHourCount.store_id, ReadHourCount.count).where(
                        ReadHourCount.hour == 12
                    )
                )
            ).all()
        )
    assert prior == {ALL_STORES: 2, 11: 2}  # wmc06 and wmc07, both of 张江店
