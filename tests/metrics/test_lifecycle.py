"""Lifecycle stages (guidebot.contacts.lifecycle) moved by the real facts: adds and deletes
through the simulator, opens through /r/, replies and orders through the API, a transfer's
fact, and the dormancy job on the fake clock; shown in the API, the sidebar and the bot."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select, update

from guidebot.contacts.jobs import lifecycle_stages
from guidebot.contacts.models import CustomerStage, CustomerStageChange, Relation
from guidebot.events import RelationEnded, RelationTransferred, StageChanged, publish
from tests.content.test_sidebar_api import login
from tests.metrics.conftest import at


async def stage(h, ext: str) -> str | None:
    async with h.sessions() as session:
        row = await session.get(CustomerStage, ext, populate_existing=True)
        return row.stage if row else None


async def log(h, ext: str) -> list[tuple[str | None, str, str]]:
    async with h.sessions() as session:
        rows = await session.execute(
            select(
                CustomerStageChange.from_stage,
                CustomerStageChange.to_stage,
                CustomerStageChange.reason,
            )
            .where(CustomerStageChange.external_userid == ext)
            .order_by(CustomerStageChange.id)
        )
        return [tuple(r) for r in rows]


def order(order_id: str, paid_at, **extra) -> dict:
    return {
        "order_id": order_id,
        "external_userid": "wmc01",
        "amount": "100.00",
        "paid_at": paid_at.isoformat(),
        **extra,
    }


async def test_a_customer_moves_through_every_stage_and_each_change_is_logged(h):
    heard: list[StageChanged] = []
    subscribers = h.sessions.kw["info"]["guidebot.events.subscribers"]

    async def hear(session, event: StageChanged) -> None:
        heard.append(event)

    subscribers.subscribe(StageChanged, hear)

    h.set_time(at(9, 10))
    await h.add("g1", "wmc01")
    assert await stage(h, "wmc01") == "new"

    token = await h.forward("g1", "wmc01", await h.item("春季新品"))
    h.set_time(at(9, 12))
    await h.open(token)
    assert await stage(h, "wmc01") == "engaged"

    h.set_time(at(10, 12))
    await h.order(order("L-1", at(10, 12)), status=201)
    assert await stage(h, "wmc01") == "first_purchase"
    h.set_time(at(10, 14))
    await h.order(order("L-2", at(10, 13)), status=201)
    assert await stage(h, "wmc01") == "repeat_buyer"
    await h.order(order("L-2", at(10, 13)), status=200)  # the webhook's retry changes nothing
    # A refund takes the order back: one counted order left.
    await h.order(order("L-2", at(10, 13), status="refunded"), status=200)
    assert await stage(h, "wmc01") == "first_purchase"

    # Quiet for GUIDEBOT_DORMANT_DAYS (60): the daily job marks the customer dormant.
    h.set_time(at(10, 12) + timedelta(days=59))
    await lifecycle_stages(h.sessions, h.clock, h.settings)
    assert await stage(h, "wmc01") == "first_purchase"
    h.set_time(at(10, 12) + timedelta(days=61))
    await lifecycle_stages(h.sessions, h.clock, h.settings)
    assert await stage(h, "wmc01") == "dormant"
    # A reply wakes them to what their orders say.
    status, _ = await h.api("POST", "/replies", json={"external_userid": "wmc01", "guide": "g1"})
    assert status in (200, 201)
    assert await stage(h, "wmc01") == "first_purchase"

    # The customer deletes their only guide: lost.
    await h.lose("g1", "wmc01")
    assert await stage(h, "wmc01") == "lost"
    assert await log(h, "wmc01") == [
        (None, "new", "relation.added"),
        ("new", "engaged", "content.opened"),
        ("engaged", "first_purchase", "order.paid"),
        ("first_purchase", "repeat_buyer", "order.paid"),
        ("repeat_buyer", "first_purchase", "order.refunded"),
        ("first_purchase", "dormant", "dormancy"),
        ("dormant", "first_purchase", "customer.replied"),
        ("first_purchase", "lost", "relation.ended"),
    ]
    assert [(e.from_stage, e.to_stage) for e in heard][-1] == ("first_purchase", "lost")
    assert len(heard) == 8

    # Adding a guide again brings them back to what their orders say.
    await h.add("g2", "wmc01")
    assert await stage(h, "wmc01") == "first_purchase"


async def test_orders_told_of_before_the_first_add_give_its_first_stage(h):
    """The first add's stage row counts, in its own insert, the orders guidebot was told of
    before (earned_stage's rule, in SQL): none new, one first purchase, two a repeat buyer."""
    h.set_time(at(9, 10))
    for ext, paid in (("wmc02", 1), ("wmc03", 2)):
        for n in range(paid):
            await h.order(order(f"{ext}-{n}", at(9, 9), external_userid=ext), status=201)
    assert await stage(h, "wmc02") is None  # no guide added yet: no stage
    for ext in ("wmc01", "wmc02", "wmc03"):
        await h.add("g1", ext)
    assert [await stage(h, ext) for ext in ("wmc01", "wmc02", "wmc03")] == [
        "new",
        "first_purchase",
        "repeat_buyer",
    ]
    async with h.sessions() as session:
        rows = {r.external_userid: r for r in await session.scalars(select(CustomerStage))}
    assert [rows[ext].orders for ext in ("wmc01", "wmc02", "wmc03")] == [0, 1, 2]
    assert await log(h, "wmc03") == [(None, "repeat_buyer", "relation.added")]


async def test_losing_one_of_two_guides_or_a_transfer_is_no_loss(h):
    h.set_time(at(9, 10))
    await h.add("g1", "wmc02")
    await h.add("g2", "wmc02")
    await h.lose("g1", "wmc02")
    assert await stage(h, "wmc02") == "new"  # still g2's customer

    # A transfer from g2 to g3: the handover's end is no loss, the customer follows g3.
    now = h.clock.now()
    async with h.sessions() as session, session.begin():
        ended = RelationEnded(
            guide_userid="g2",
            external_userid="wmc02",
            status="transferred",
            at=now,
            source="api",
            now=now,
        )
        await publish(session, ended)
        moved = RelationTransferred(
            external_userid="wmc02", from_guide="g2", to_guide="g3", at=now, now=now
        )
        await publish(session, moved)
    async with h.sessions() as session:
        row = await session.get(CustomerStage, "wmc02")
    assert (row.stage, row.guide_userid) == ("new", "g3")


async def test_a_stage_the_session_holds_reads_lost_after_the_last_guide_goes(h):
    """The end writes the stage in Core statements: an object for it that an earlier event of
    the same batch (the same session) read must not keep reading what it was."""
    h.set_time(at(9, 10))
    await h.add("g1", "wmc03")
    now = h.clock.now()
    async with h.sessions() as session, session.begin():
        held = await session.get(CustomerStage, "wmc03")
        assert held.stage == "new"
        await session.execute(
            update(Relation)
            .where(Relation.external_userid == "wmc03")
            .values(status="lost", ended_at=now)
        )
        ended = RelationEnded(
            guide_userid="g1", external_userid="wmc03", status="lost", at=now, source="api", now=now
        )
        await publish(session, ended)
        assert (await session.get(CustomerStage, "wmc03")).stage == "lost"
    assert await stage(h, "wmc03") == "lost"
    assert await log(h, "wmc03") == [
        (None, "new", "relation.added"),
        ("new", "lost", "relation.ended"),
    ]


async def test_the_stage_in_the_api_the_counts_and_the_sidebar(h):
    h.set_time(at(9, 10))
    await h.add("g1", "wmc01")
    await h.add("g2", "wmc02")
    await h.order(order("S-1", at(9, 11)), status=201)

    status, body = await h.api("GET", "/customers/wmc01")
    assert status == 200
    assert body["stage"]["stage"] == "first_purchase"
    assert body["stage"]["label"] == "首购 / First purchase"

    status, body = await h.api("GET", "/stages", params={"by": "store"})
    assert status == 200
    rows = {row["label"]: row["counts"] for row in body["rows"]}
    assert rows["张江店"]["first_purchase"] == 1 and rows["张江店"]["new"] == 0
    assert rows["徐汇店"]["new"] == 1
    assert body["names"]["dormant"] == "沉睡 / Dormant"
    status, body = await h.api("GET", "/stages", params={"by": "guide"})
    assert {row["label"] for row in body["rows"]} == {"王芳", "李娜"}

    # Over time: the hourly job snapshots each local day's counts.
    await lifecycle_stages(h.sessions, h.clock, h.settings)  # Monday 9 March
    h.set_time(at(10, 12))
    await h.order(order("S-2", at(10, 11)), status=201)  # wmc01 buys again on Tuesday
    await lifecycle_stages(h.sessions, h.clock, h.settings)
    await lifecycle_stages(h.sessions, h.clock, h.settings)  # rewritten, not added to
    status, body = await h.api(
        "GET", "/stages", params={"by": "store", "from": "2026-03-09", "to": "2026-03-10"}
    )
    assert status == 200
    days = {d["day"]: {r["label"]: r["counts"] for r in d["rows"]} for d in body["days"]}
    assert days["2026-03-09"]["张江店"]["first_purchase"] == 1
    assert days["2026-03-10"]["张江店"]["first_purchase"] == 0
    assert days["2026-03-10"]["张江店"]["repeat_buyer"] == 1
    status, body = await h.api("GET", "/stages", params={"from": "2026-03-10", "to": "2026-03-01"})
    assert status == 422 and body["error"]["reason"].startswith("from 须不晚于 to")

    await login(h, "g1")
    response = await h.client.get("/sidebar/api/customer", params={"external_userid": "wmc01"})
    profile = await response.json()
    assert profile["stage"]["name"] == "复购"
