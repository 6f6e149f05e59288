"""Each KPI's definition (guidebot/metrics/kpis.py) names what it leaves out; each test here drives
exactly that case through the real paths (simulated WeCom, the SOP engine, the sidebar, tracked
links, the order webhook) and checks the figure leaves it out.

Cast as in tests/metrics/conftest.py: store 11 (g1, g3), store 12 (g2), customers c01..c12,
playbook week_sop (a welcome at the add, a reminder to the guide a day later).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from guidebot.content import links
from guidebot.content.service import activity, record_forward
from tests.content.test_sidebar_api import login, post
from tests.metrics.conftest import at

DAY = timedelta(days=1)


async def figures(h, path: str = "/guides/g1/metrics", first=9, last=15, **query) -> dict:
    """The KPIs of a guide (or a store, or HQ) over March `first`..`last`, after the job ran."""
    await h.settle()
    params = {"from": f"2026-03-{first:02d}", "to": f"2026-03-{last:02d}", **query}
    status, body = await h.api("GET", path, params=params)
    assert status == 200, body
    return body if "by" in query else body["metrics"]


def by_day(body: dict[str, Any], name: str) -> dict[int, Any]:
    return {int(d["day"][-2:]): d["metrics"][name] for d in body["days"]}


async def transfer(h, handover: str, takeover: str, ext: str) -> None:
    status, answer = await h.api(
        "POST",
        "/transfers",
        json={
            "kind": "in_service",
            "handover_userid": handover,
            "takeover_userid": takeover,
            "external_userids": [ext],
        },
    )
    assert status == 202, answer
    await h.act(
        "contact/transfer",
        {"handover_userid": handover, "takeover_userid": takeover, "external_userid": ext},
    )


async def sidebar_send(h, guide: str, ext: str, item: int) -> str:
    """The guide prepares the item for the customer in the sidebar and confirms it was sent."""
    await login(h, guide)
    status, prepared = await post(
        h, "/sidebar/api/prepare", {"item_id": item, "external_userid": ext}
    )
    assert status == 200, prepared
    status, recorded = await post(h, "/sidebar/api/forwards", {"ref": prepared["ref"]})
    assert status == 201 and recorded["recorded"], recorded
    return prepared["ref"]


# ---- relations -----------------------------------------------------------------------------


async def test_new_customers_leave_out_customers_transferred_in(h):
    h.set_time(at(9, 10))
    await h.add("g1", "wmc01")
    h.set_time(at(10, 10))
    await transfer(h, "g1", "g3", "wmc01")
    assert (await figures(h, "/guides/g3/metrics"))["new_customers"] == 0
    assert (await figures(h))["new_customers"] == 1
    assert (await figures(h, "/metrics"))["new_customers"] == 1  # counted once, for g1


async def test_lost_customers_leave_out_customers_the_guide_deleted(h):
    h.set_time(at(9, 10))
    await h.add("g1", "wmc01")
    await h.add("g1", "wmc02")
    h.set_time(at(9, 12))
    await h.remove("g1", "wmc02")  # the guide deleted c02: removed, not lost
    assert (await figures(h))["lost_customers"] == 0
    await h.lose("g1", "wmc01")
    assert (await figures(h))["lost_customers"] == 1


async def test_removed_customers_leave_out_customers_who_deleted_the_guide(h):
    h.set_time(at(9, 10))
    await h.add("g1", "wmc01")
    await h.add("g1", "wmc02")
    h.set_time(at(9, 12))
    await h.lose("g1", "wmc01")  # c01 deleted the guide: lost, not removed
    assert (await figures(h))["removed_customers"] == 0
    await h.remove("g1", "wmc02")
    assert (await figures(h))["removed_customers"] == 1


async def test_net_growth_leaves_out_transfers_in_and_out(h):
    h.set_time(at(9, 10))
    await h.add("g1", "wmc01")
    await h.add("g1", "wmc02")
    h.set_time(at(10, 10))
    await transfer(h, "g1", "g3", "wmc02")
    mine, theirs = await figures(h), await figures(h, "/guides/g3/metrics")
    assert (mine["net_growth"], theirs["net_growth"]) == (2, 0)


async def test_day1_retention_leaves_out_customers_whose_24_hours_are_running(h):
    h.set_time(at(9, 10))
    await h.add("g1", "wmc01")
    h.set_time(at(9, 20))
    await h.add("g1", "wmc02")
    h.set_time(at(10, 19))
    await h.lose("g1", "wmc02")  # 23 h after the add: not kept, once its day has passed
    # 19:00 on Tuesday: c01's 24 hours are over, c02's still run (until 20:00).
    assert (await figures(h))["day1_retention"] == 1.0
    h.set_time(at(10, 20, 1))
    assert (await figures(h))["day1_retention"] == 0.5
    # A customer added today has no closed window at all: no rate for today.
    h.set_time(at(11, 9))
    await h.add("g1", "wmc03")
    assert (await figures(h, first=11, last=11))["day1_retention"] is None


async def test_day7_retention_leaves_out_customers_whose_7_days_are_running(h):
    h.set_time(at(9, 10))
    await h.add("g1", "wmc01")
    h.set_time(at(11, 10))
    await h.add("g1", "wmc02")
    h.set_time(at(14, 10))
    await h.lose("g1", "wmc01")  # 5 days after the add: not kept seven
    # Monday 03-16 11:00: c01's 7 days are over, c02's run until Wednesday.
    h.set_time(at(16, 11))
    assert (await figures(h))["day7_retention"] == 0.0
    h.set_time(at(18, 10, 1))
    assert (await figures(h))["day7_retention"] == 0.5


async def test_welcome_rate_leaves_out_adds_without_a_welcome_code(h):
    h.set_time(at(9, 10))
    await h.add("g1", "wmc01")
    await h.add("g1", "wmc02", code=False)  # no WelcomeCode: nothing could have been sent
    assert (await figures(h))["welcome_rate"] == 1.0
    await h.fault("externalcontact/send_welcome_msg", 40096)
    await h.add("g1", "wmc03")  # a code, and WeCom refused: in the denominator
    assert (await figures(h))["welcome_rate"] == 0.5


# ---- SOP tasks -------------------------------------------------------------------------------


async def test_tasks_due_leave_out_tasks_the_engine_settled(h):
    h.set_time(at(9, 10))
    await h.add("g1", "wmc01")
    await h.add("g1", "wmc02")
    h.set_time(at(9, 18))
    await h.lose("g1", "wmc02")  # c02's reminder stops: the engine settled it, not the guide
    h.set_time(at(10, 10, 5))
    await h.tick()
    assert (await h.task("g1", "wmc02", "call")).status == "skipped"
    assert (await figures(h))["tasks_due"] == 1


async def test_tasks_done_leave_out_skipped_tasks_and_count_on_the_due_day(h):
    h.set_time(at(9, 10))
    await h.add("g1", "wmc01")
    await h.add("g1", "wmc02")
    h.set_time(at(10, 10, 5))
    await h.tick()
    await h.skip("g1", "wmc02", "客户出差")  # reached the guide, not done
    h.set_time(at(11, 9))
    await h.complete("g1", "wmc01")  # due Tuesday, done Wednesday: Tuesday's
    body = await figures(h, by="day")
    assert (body["metrics"]["tasks_due"], body["metrics"]["tasks_done"]) == (2, 1)
    assert by_day(body, "tasks_done") == {9: 0, 10: 1, 11: 0, 12: 0, 13: 0, 14: 0, 15: 0}


async def test_tasks_on_time_leave_out_tasks_done_late(h):
    h.set_time(at(9, 10))
    await h.add("g1", "wmc01")
    await h.add("g1", "wmc02")
    h.set_time(at(10, 10, 5))
    await h.tick()  # both due Tuesday 10:00
    h.set_time(at(11, 10))
    await h.complete("g1", "wmc01")  # exactly 24 h after due: on time
    h.set_time(at(11, 10, 1))
    await h.complete("g1", "wmc02")  # a minute later: late
    found = await figures(h)
    assert (found["tasks_done"], found["tasks_on_time"]) == (2, 1)


# ---- content ----------------------------------------------------------------------------------


async def test_forwards_leave_out_sending_one_item_to_one_customer_again(h):
    h.set_time(at(9, 10))
    await h.add("g1", "wmc01")
    await h.add("g1", "wmc02")
    item, other = await h.item("春季新品"), await h.item("夏季新品")
    for _ in range(10):  # ten prepare + confirm rounds of one item to one customer
        await sidebar_send(h, "g1", "wmc01", item)
    assert (await figures(h))["forwards"] == 1
    await sidebar_send(h, "g1", "wmc02", item)  # another customer
    await sidebar_send(h, "g1", "wmc01", other)  # another item
    h.set_time(at(10, 10))
    await sidebar_send(h, "g1", "wmc01", item)  # again on another day: still nothing new
    body = await figures(h, by="day")
    assert body["metrics"]["forwards"] == 3
    assert by_day(body, "forwards")[10] == 0
    # The bot's "my numbers" (content.service.activity) counts the same way.
    async with h.sessions() as session:
        numbers = await activity(session, ["g1"], at(9, 0), at(11, 0))
    assert numbers["g1"].forwards == 3


async def test_a_send_logged_late_with_an_earlier_time_becomes_the_counted_one(h):
    h.set_time(at(10, 9))
    await h.add("g1", "wmc01")
    item = await h.item("春季新品")
    await sidebar_send(h, "g1", "wmc01", item)  # Tuesday 09:00
    assert by_day(await figures(h, by="day"), "forwards")[10] == 1
    # A mass send's result arrives later: c01 received the item on Monday at 23:00.
    async with h.sessions() as session, session.begin():
        await record_forward(
            session,
            ref="m:1:c01",
            item_id=item,
            guide="g1",
            customer="wmc01",
            via="mass_send",
            sent_at=at(9, 23),
            now=h.clock.now(),
            mass_send_id=1,
        )
    days = by_day(await figures(h, by="day"), "forwards")
    assert (days[9], days[10]) == (1, 0)


async def test_unique_opens_leave_out_opening_again_and_another_guides_link(h):
    h.set_time(at(9, 10))
    await h.add("g1", "wmc01")
    await h.add("g3", "wmc01")
    item = await h.item("春季新品")
    mine = await h.forward("g1", "wmc01", item)
    theirs = await h.forward("g3", "wmc01", item)
    h.set_time(at(9, 11))
    for token in (mine, mine, theirs):  # g1's link twice, then g3's link of the same item
        await h.open(token)
    assert (await figures(h))["unique_opens"] == 1
    assert (await figures(h, "/guides/g3/metrics"))["unique_opens"] == 0


async def test_unique_opens_leave_out_visitors_without_an_id_guidebot_signed(h):
    h.set_time(at(9, 10))
    item = await h.item("春季新品")
    # The bot's 素材 answer: a link naming the guide only, passed around.
    token, _ = links.mint(h.settings.secret_key, item_id=item, guide="g1", now=h.clock.now())
    forged = links.mint_visitor("a guessed key, not the server's")
    for n in range(50):  # a script: no cookie, or one it made up
        h.client.session.cookie_jar.clear()
        cookies = [None, {"gb_v": forged}, {"gb_v": f"made-up-{n:016d}"}][n % 3]
        response = await h.client.get(f"/r/{token}", allow_redirects=False, cookies=cookies)
        assert response.status == 302
    assert (await figures(h))["unique_opens"] == 0
    # A phone's browser keeps the id it was given and brings it back: one visitor.
    h.client.session.cookie_jar.clear()
    response = await h.client.get(f"/r/{token}", allow_redirects=False)
    seen = response.headers["Location"]
    assert seen.startswith("?seen=")
    await h.client.get(f"/r/{token}{seen}", allow_redirects=False)
    await h.client.get(f"/r/{token}", allow_redirects=False)
    assert (await figures(h))["unique_opens"] == 1


async def test_open_rate_leaves_out_repeated_forwards_and_opens(h):
    h.set_time(at(9, 10))
    await h.add("g1", "wmc01")
    item = await h.item("春季新品")
    refs = [await sidebar_send(h, "g1", "wmc01", item) for _ in range(5)]
    h.set_time(at(9, 11))
    for ref in refs:
        await h.open(ref)  # the tracked link's token is the reference
    assert (await figures(h))["open_rate"] == 1.0


# ---- orders ------------------------------------------------------------------------------------


def order(order_id: str, paid_at, customer: str = "wmc01", **extra) -> dict:
    return {
        "order_id": order_id,
        "external_userid": customer,
        "amount": "100.00",
        "paid_at": paid_at.isoformat(),
        **extra,
    }


async def test_orders_leave_out_an_order_posted_again(h):
    h.set_time(at(9, 10))
    await h.add("g1", "wmc01")
    h.set_time(at(9, 12))
    await h.order(order("A-1", at(9, 12)), status=201)
    await h.order(order("A-1", at(9, 12)), status=200)  # the webhook retried
    assert (await figures(h))["orders"] == 1
    h.set_time(at(10, 12))
    await h.order(order("A-1", at(9, 12), status="refunded"), status=200)
    await h.order(order("A-1", at(9, 12), status="refunded"), status=200)
    body = await figures(h, by="day")
    days = by_day(body, "orders")
    assert (days[9], days[10], body["metrics"]["orders"]) == (1, -1, 0)


async def test_gmv_leaves_out_orders_attributed_to_nobody(h):
    h.set_time(at(9, 10))
    await h.add("g1", "wmc01")
    h.set_time(at(9, 12))
    await h.order(order("B-1", at(9, 12), amount="299.00"), status=201)
    nobody = await h.order(order("B-2", at(9, 12), "stranger", amount="50.00"), status=201)
    assert nobody["attribution"]["rule"] == "none"
    assert (await figures(h, "/metrics"))["gmv"] == "299.00"
    h.set_time(at(10, 12))
    await h.api("POST", "/orders/B-1/refund")
    body = await figures(h, by="day")
    assert (by_day(body, "gmv")[9], by_day(body, "gmv")[10], body["metrics"]["gmv"]) == (
        "299.00",
        "-299.00",
        "0.00",
    )


async def test_profile_completeness_leaves_out_blank_profiles_and_customers_gone(h):
    h.set_time(at(9, 10))
    for ext in ("wmc01", "wmc02", "wmc03"):
        await h.add("g1", ext)
    await h.edit("g1", "wmc01", remark_mobiles=["13800000001"])
    await h.edit("g1", "wmc02", description="   ")  # blank: no profile data
    await h.edit("g1", "wmc03", remark_mobiles=["13800000003"])
    assert (await figures(h))["profile_completeness"] == 0.6667
    h.set_time(at(9, 11))
    await h.lose("g1", "wmc03")  # no longer an active customer: in neither part
    assert (await figures(h))["profile_completeness"] == 0.5
