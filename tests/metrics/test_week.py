"""A scripted week (Mon 2026-03-09 .. Sun 2026-03-15, Asia/Shanghai) with every KPI by hand.

Cast: store 11 张江店 (g1; g3 until Thursday 11:00), store 12 徐汇店 (g2; g3 from then on).
Playbook week_sop: a welcome at the add, a reminder to the guide one day later.

    Mon 10:00  c01 adds g1 (welcome sent)           Mon 15:00 g1 forwards A to c01, 15:10 c01 opens
    Mon 11:00  c02 adds g1 (welcome sent)           Mon 16:00 g1 forwards A to c02 (never opened)
    Mon 12:00  c03 adds g1 without a WelcomeCode
    Mon 13:00  c04 adds g2 (welcome sent)
    Mon 14:00  c05 adds g3; WeCom refuses the welcome (40096)
    Tue 10:30  c02 deletes g1 (23.5 h after the add: not kept one day); c02's reminder stops
    Tue 14:00  reminders go out: g1/c01 (due 10:00), g1/c03 (12:00), g2/c04 (13:00), g3/c05 (14:00)
    Tue 15:00  g1 marks c01 done, g2 marks c04 done (on time); g3 skips c05's reminder
    Wed 00:30  c06 adds g2 (16:30 UTC on Tuesday: it is Wednesday's customer)
    Wed 13:00  g1 marks c03 done: 25 h after due, late
    Wed 15:00  g1 deletes c03 (51 h after the add: kept one day, not seven)
    Thu 10:00  c06's reminder goes out (due Thu 09:00, the send window's opening)
    Thu 11:00  g3 moves to store 12
    Thu 12:00  c07 adds g3 (welcome sent; counts for store 12)
    Thu 12:30  c01 deletes g1; 13:00 c01 adds g1 again (reactivated; no new enrollment)
    Fri 10:00  c05 deletes g3 (store 12 now; c05's Monday add stays with store 11)
    Fri 11:00  g2 forwards A to c04; c04 opens 11:05 and again 11:10
    Fri 11:30  g2 notes c06's mobile (remark_mobiles)
    Fri 12:00  order O1 for c04, 299.00, posted twice: attributed to g2 (last open 11:10)
    Fri 12:30  c07's reminder goes out (due Fri 12:00)
    Fri 13:00  order O2 by c06's mobile at store 12, 88.5: no touch, g2 is the store's guide
    Sat 10:00  O1 refunded
    Sat 20:00  c09 adds g1 (welcome sent)
    Sun 10:00  g1 notes c01's mobile
    Sun 20:30  c09's reminder goes out (due Sun 20:00), never done

The figures are read a week later (Mon 03-23), when every day-7 window has closed.
"""

from __future__ import annotations

from sqlalchemy import func, select

from guidebot.metrics.kpis import KPI_NAMES
from guidebot.metrics.models import MetricsDirty
from guidebot.metrics.rollup import recompute_all
from tests.metrics.conftest import at

WEEK = {"from": "2026-03-09", "to": "2026-03-15"}

G1 = {
    "new_customers": 5,  # c01, c02, c03 Mon; c01 again Thu; c09 Sat
    "lost_customers": 2,  # c02 Tue, c01 Thu
    "removed_customers": 1,  # c03 Wed
    "net_growth": 2,
    "day1_retention": 0.8,  # 4 of 5: only c02 left within 24 h
    "day7_retention": 0.4,  # 2 of 5: c01 (Thu), c09
    "welcome_rate": 1.0,  # 3 of 3: c01, c02, c09 (c03 had no code; re-add no task)
    "tasks_due": 3,  # c01, c03, c09 (c02's stopped)
    "tasks_done": 2,  # c01, c03
    "tasks_on_time": 1,  # c01
    "forwards": 2,
    "unique_opens": 1,
    "open_rate": 0.5,
    "orders": 0,
    "gmv": "0.00",
    "profile_completeness": 0.5,  # c01 (mobile) of c01, c09
}
G2 = {
    "new_customers": 2,  # c04, c06
    "lost_customers": 0,
    "removed_customers": 0,
    "net_growth": 2,
    "day1_retention": 1.0,
    "day7_retention": 1.0,
    "welcome_rate": 1.0,  # 2 of 2
    "tasks_due": 2,  # c04, c06
    "tasks_done": 1,  # c04
    "tasks_on_time": 1,
    "forwards": 1,
    "unique_opens": 1,  # c04 opened twice, once counts
    "open_rate": 1.0,
    "orders": 1,  # O1 +1 Fri, O2 +1 Fri, O1 -1 Sat
    "gmv": "88.50",  # 299.00 + 88.50 - 299.00
    "profile_completeness": 0.5,  # c06 of c04, c06
}
G3 = {
    "new_customers": 2,  # c05 (store 11), c07 (store 12)
    "lost_customers": 1,  # c05 Fri
    "removed_customers": 0,
    "net_growth": 1,
    "day1_retention": 1.0,  # 2 of 2
    "day7_retention": 0.5,  # c07 of c05, c07
    "welcome_rate": 0.5,  # c07 of c05 (refused), c07
    "tasks_due": 2,  # c05 (skipped by the guide), c07
    "tasks_done": 0,
    "tasks_on_time": 0,
    "forwards": 0,
    "unique_opens": 0,
    "open_rate": None,
    "orders": 0,
    "gmv": "0.00",
    "profile_completeness": 0.0,  # c07 has nothing
}
STORE_11 = {  # g1 all week, g3 until Thursday 11:00
    "new_customers": 6,  # g1 5 + c05
    "lost_customers": 2,  # g1's; c05 left g3 on Friday, in store 12
    "removed_customers": 1,
    "net_growth": 3,
    "day1_retention": 0.8333,  # (4 + 1) / (5 + 1)
    "day7_retention": 0.3333,  # (2 + 0) / (5 + 1)
    "welcome_rate": 0.75,  # (3 + 0) / (3 + 1)
    "tasks_due": 4,  # g1 3 + c05's Tuesday reminder
    "tasks_done": 2,
    "tasks_on_time": 1,
    "forwards": 2,
    "unique_opens": 1,
    "open_rate": 0.5,
    "orders": 0,
    "gmv": "0.00",
    "profile_completeness": 0.5,  # g1 only: g3's last snapshot was taken in store 12
}
STORE_12 = {  # g2 all week, g3 from Thursday 11:00
    "new_customers": 3,  # c04, c06, c07
    "lost_customers": 1,  # c05 on Friday
    "removed_customers": 0,
    "net_growth": 2,
    "day1_retention": 1.0,
    "day7_retention": 1.0,  # c04, c06, c07
    "welcome_rate": 1.0,  # c04, c06, c07
    "tasks_due": 3,  # c04, c06, c07
    "tasks_done": 1,
    "tasks_on_time": 1,
    "forwards": 1,
    "unique_opens": 1,
    "open_rate": 1.0,
    "orders": 1,
    "gmv": "88.50",
    "profile_completeness": 0.3333,  # (1 + 0) / (2 + 1)
}
HQ = {
    "new_customers": 9,
    "lost_customers": 3,
    "removed_customers": 1,
    "net_growth": 5,
    "day1_retention": 0.8889,  # 8 / 9
    "day7_retention": 0.5556,  # 5 / 9, not the mean of 0.4, 1.0 and 0.5
    "welcome_rate": 0.8571,  # 6 / 7
    "tasks_due": 7,
    "tasks_done": 3,
    "tasks_on_time": 2,
    "forwards": 3,
    "unique_opens": 2,
    "open_rate": 0.6667,
    "orders": 1,
    "gmv": "88.50",
    "profile_completeness": 0.4,  # 2 / 5
}
# The scripted week reads no WeCom contact statistics (tests/metrics/test_service_quality.py).
NO_SERVICE = {
    "chats": 0,
    "messages": 0,
    "reply_rate": None,
    "avg_reply_minutes": None,
    "negative_feedback": 0,
}
NO_GROUPS = {"groups_owned": 0, "group_new_members": 0, "group_members_left": 0, "group_net": 0}
# Nor group steps: no group sends, no Moments tasks, no opens through their links.
NO_GROUP_STEPS = {
    "group_sends": 0,
    "group_send_rate": None,
    "moments_assigned": 0,
    "moments_published": 0,
    "moment_publish_rate": None,
    "group_link_opens": 0,
    "moment_link_opens": 0,
    "moment_orders": 0,
    "group_opens": 0,
    "group_orders": 0,
}
for figures in (G1, G2, G3, STORE_11, STORE_12, HQ):
    figures.update(NO_SERVICE)
    # No customer groups this week: 入群率 is 0 wherever there are active customers.
    no_customers = figures["profile_completeness"] is None
    figures.update(NO_GROUPS, group_join_rate=None if no_customers else 0.0)
    figures.update(NO_GROUP_STEPS)


async def play_the_week(h) -> None:
    item = await h.item("春季新品")

    async def step(instant):
        h.set_time(instant)

    # Monday
    await step(at(9, 10))
    await h.add("g1", "wmc01")
    await step(at(9, 11))
    await h.add("g1", "wmc02")
    await step(at(9, 12))
    await h.add("g1", "wmc03", code=False)
    await step(at(9, 13))
    await h.add("g2", "wmc04")
    await step(at(9, 14))
    await h.fault("externalcontact/send_welcome_msg", 40096)
    await h.add("g3", "wmc05")
    await step(at(9, 15))
    token_c01 = await h.forward("g1", "wmc01", item)
    await step(at(9, 15, 10))
    await h.open(token_c01)
    await step(at(9, 16))
    await h.forward("g1", "wmc02", item)
    await h.settle()

    # Tuesday
    await step(at(10, 10, 30))
    await h.lose("g1", "wmc02")
    await step(at(10, 14))
    await h.tick()
    await step(at(10, 15))
    await h.complete("g1", "wmc01")
    await h.complete("g2", "wmc04")
    await h.skip("g3", "wmc05", "客户出差，下周再联系")
    await h.settle()

    # Wednesday
    await step(at(11, 0, 30))
    await h.add("g2", "wmc06")
    await step(at(11, 13))
    await h.complete("g1", "wmc03")
    await step(at(11, 15))
    await h.remove("g1", "wmc03")
    await h.settle()

    # Thursday
    await step(at(12, 10))
    await h.tick()
    await step(at(12, 11))
    await h.move("g3", "张伟", 12)
    await step(at(12, 12))
    await h.add("g3", "wmc07")
    await step(at(12, 12, 30))
    await h.lose("g1", "wmc01")
    await step(at(12, 13))
    await h.add("g1", "wmc01")
    await h.settle()

    # Friday
    await step(at(13, 10))
    await h.lose("g3", "wmc05")
    await step(at(13, 11))
    token_c04 = await h.forward("g2", "wmc04", item)
    await step(at(13, 11, 5))
    await h.open(token_c04)
    await step(at(13, 11, 10))
    await h.open(token_c04)
    await step(at(13, 11, 30))
    await h.edit("g2", "wmc06", remark_mobiles=["138 0000 0006"])
    await step(at(13, 12))
    o1 = {"order_id": "O1", "external_userid": "wmc04", "amount": "299.00",
          "paid_at": at(13, 12).isoformat()}  # fmt: skip
    first = await h.order(o1, status=201)
    assert (first["guide_userid"], first["attribution"]["rule"]) == ("g2", "open")
    assert await h.order(o1, status=200) == first
    await step(at(13, 12, 30))
    await h.tick()
    await step(at(13, 13))
    o2 = await h.order(
        {
            "order_id": "O2",
            "mobile": "+86 138-0000-0006",
            "amount": 88.5,
            "store": "12",
            "paid_at": "2026-03-13T05:00:00Z",
        },
        status=201,
    )
    assert (o2["external_userid"], o2["guide_userid"]) == ("wmc06", "g2")
    assert o2["attribution"]["rule"] == "store_guide"
    await h.settle()

    # Saturday
    await step(at(14, 10))
    status, refunded = await h.api("POST", "/orders/O1/refund")
    assert (status, refunded["status"]) == (200, "refunded")
    await step(at(14, 20))
    await h.add("g1", "wmc09")
    await h.settle()

    # Sunday
    await step(at(15, 10))
    await h.edit("g1", "wmc01", remark_mobiles=["13900000001"])
    await step(at(15, 20, 30))
    await h.tick()
    await h.settle()


async def metrics_of(h, path: str, **query) -> dict:
    status, body = await h.api("GET", path, params={**WEEK, **query})
    assert status == 200, body
    return body


async def test_a_scripted_week_gives_the_hand_computed_numbers(h):
    await play_the_week(h)
    # A week later every day-7 window of the week's customers has closed.
    h.set_time(at(23, 10))
    await h.settle()

    assert (await metrics_of(h, "/guides/g1/metrics"))["metrics"] == G1
    assert (await metrics_of(h, "/guides/g2/metrics"))["metrics"] == G2
    assert (await metrics_of(h, "/guides/g3/metrics"))["metrics"] == G3
    assert (await metrics_of(h, "/stores/11/metrics"))["metrics"] == STORE_11
    assert (await metrics_of(h, "/stores/12/metrics"))["metrics"] == STORE_12
    assert (await metrics_of(h, "/metrics"))["metrics"] == HQ

    # Per day: the day each thing is credited to.
    g2 = await metrics_of(h, "/guides/g2/metrics", by="day")
    by_day = {d["day"]: d["metrics"] for d in g2["days"]}
    assert [by_day[f"2026-03-{d:02d}"]["new_customers"] for d in range(9, 16)] == [
        1, 0, 1, 0, 0, 0, 0  # c06 at 00:30 on Wednesday is Wednesday's, not Tuesday's (UTC)
    ]  # fmt: skip
    assert [by_day[f"2026-03-{d:02d}"]["orders"] for d in (13, 14)] == [2, -1]
    assert [by_day[f"2026-03-{d:02d}"]["gmv"] for d in (13, 14)] == ["387.50", "-299.00"]
    assert [by_day[f"2026-03-{d:02d}"]["tasks_due"] for d in range(9, 16)] == [
        0, 1, 0, 1, 0, 0, 0
    ]  # fmt: skip
    # The profile snapshot carries forward: none until Monday's first change, 0.5 from Friday.
    assert [by_day[f"2026-03-{d:02d}"]["profile_completeness"] for d in range(9, 16)] == [
        0.0, 0.0, 0.0, 0.0, 0.5, 0.5, 0.5
    ]  # fmt: skip
    g3 = await metrics_of(h, "/guides/g3/metrics", by="day")
    assert {d["day"]: d["metrics"]["lost_customers"] for d in g3["days"]}["2026-03-13"] == 1
    # The days before the move stay with store 11, the days after count for store 12.
    store11 = await metrics_of(h, "/stores/11/metrics", by="day")
    store12 = await metrics_of(h, "/stores/12/metrics", by="day")
    s11 = {d["day"]: d["metrics"] for d in store11["days"]}
    s12 = {d["day"]: d["metrics"] for d in store12["days"]}
    assert (s11["2026-03-09"]["new_customers"], s12["2026-03-09"]["new_customers"]) == (4, 1)
    assert (s11["2026-03-12"]["new_customers"], s12["2026-03-12"]["new_customers"]) == (1, 1)
    assert (s11["2026-03-13"]["lost_customers"], s12["2026-03-13"]["lost_customers"]) == (0, 1)

    # Asked by day, the period's figures are the same (summed from the days' there).
    for path in (
        "/guides/g1/metrics",
        "/guides/g2/metrics",
        "/guides/g3/metrics",
        "/stores/11/metrics",
        "/stores/12/metrics",
        "/metrics",
    ):
        daily = await metrics_of(h, path, by="day")
        assert daily["metrics"] == (await metrics_of(h, path))["metrics"], path

    # Rates are ratios of sums: HQ day-7 retention is not the mean of the guides' rates.
    mean = (G1["day7_retention"] + G2["day7_retention"] + G3["day7_retention"]) / 3
    assert round(mean, 4) != HQ["day7_retention"]

    # The incremental rollups equal a rebuild from scratch, and a second rebuild changes nothing.
    incremental = await h.rows()
    await recompute_all(h.sessions, h.settings.timezone, h.clock.now())
    assert await h.rows() == incremental
    await recompute_all(h.sessions, h.settings.timezone, h.clock.now())
    assert await h.rows() == incremental
    async with h.sessions() as session:
        assert await session.scalar(select(func.count()).select_from(MetricsDirty)) == 0

    # The leaderboard ranks guides by one KPI from the same rollups.
    status, board = await h.api("GET", "/leaderboard", params={**WEEK, "metric": "new_customers"})
    assert status == 200
    assert [(r["rank"], r["userid"], r["value"]) for r in board["guides"]] == [
        (1, "g1", 5), (2, "g2", 2), (3, "g3", 2)
    ]  # fmt: skip
    assert board["guides"][0]["metrics"] == G1
    status, board = await h.api(
        "GET", "/leaderboard", params={**WEEK, "metric": "gmv", "store": "12"}
    )
    assert [(r["userid"], r["value"]) for r in board["guides"]] == [("g2", "88.50"), ("g3", "0.00")]
    assert set(KPI_NAMES) == set(G1)
    # Ranked by any KPI (summing only what that one needs), each guide shown carries every
    # figure of its own, summed again for those shown; limit=2 leaves the third out.
    own = {"g1": G1, "g2": G2, "g3": G3}
    for name in KPI_NAMES:
        status, board = await h.api("GET", "/leaderboard", params={**WEEK, "metric": name})
        assert status == 200 and len(board["guides"]) == 3, name
        assert {r["userid"]: r["metrics"] for r in board["guides"]} == own, name
        assert [r["value"] for r in board["guides"]] == [
            own[r["userid"]][name] for r in board["guides"]
        ]
        _, top = await h.api("GET", "/leaderboard", params={**WEEK, "metric": name, "limit": "2"})
        assert top["guides"] == board["guides"][:2], name


async def test_day7_retention_waits_for_the_window_to_close(h):
    h.set_time(at(9, 10))
    await h.add("g1", "wmc01")
    await h.add("g1", "wmc02")
    await h.settle()
    body = await metrics_of(h, "/guides/g1/metrics")
    # Nobody's window has closed yet: the rates have no denominator.
    assert (body["metrics"]["day1_retention"], body["metrics"]["day7_retention"]) == (None, None)

    h.set_time(at(10, 9))
    await h.lose("g1", "wmc02")  # 23 h after the add
    h.set_time(at(10, 10))  # the day-1 windows close: the job notices without any new event
    await h.settle()
    body = await metrics_of(h, "/guides/g1/metrics")
    assert (body["metrics"]["day1_retention"], body["metrics"]["day7_retention"]) == (0.5, None)

    h.set_time(at(16, 10))
    await h.settle()
    body = await metrics_of(h, "/guides/g1/metrics")
    assert body["metrics"]["day7_retention"] == 0.5
