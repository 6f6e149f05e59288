"""The customer-group KPIs (guidebot.metrics.kpis): groups owned, new members, members left,
net, 入群率 — from the membership log and the snapshots, per guide, store and HQ, with joins and
departures driven through the simulated client and the encrypted change_external_chat callback.

Cast as in tests/metrics/conftest.py: store 11 (g1, g3), store 12 (g2), customers wmc01...
"""

from __future__ import annotations

from tests.metrics.conftest import at
from tests.metrics.test_kpi_definitions import figures

GROUP_KPIS = ("groups_owned", "group_new_members", "group_members_left", "group_net")


async def group(h, owner: str, name: str) -> str:
    return (await h.act("groups", {"owner": owner, "name": name}))["chat_id"]


async def members(h, path: str, chat_id: str, *ids: str, **extra) -> None:
    await h.act(path, {"chat_id": chat_id, "members": list(ids), **extra})


async def test_joins_departures_and_groups_owned_count_for_the_owner(h):
    h.set_time(at(9, 10))
    for ext in ("wmc01", "wmc02", "wmc03"):
        await h.add("g1", ext)
    vip = await group(h, "g1", "张江VIP群")
    await group(h, "g1", "快闪群")
    await group(h, "g2", "徐汇群")
    h.set_time(at(9, 11))
    await members(h, "groups/join", vip, "wmc01", "wmc02", "wmc04", "g3")  # g3: an employee
    h.set_time(at(10, 15))
    await members(h, "groups/leave", vip, "wmc02")
    await members(h, "groups/leave", vip, "wmc04", removed=True)
    mine = await figures(h, first=9, last=10)
    assert {k: mine[k] for k in GROUP_KPIS} == {
        "groups_owned": 2,
        "group_new_members": 3,
        "group_members_left": 2,
        "group_net": 1,
    }
    # 入群率: of g1's 3 active customers, wmc01 is in a group now (wmc04 is no customer of g1).
    assert mine["group_join_rate"] == round(1 / 3, 4)
    day9 = await figures(h, first=9, last=9)
    assert (day9["group_new_members"], day9["group_members_left"]) == (3, 0)
    store = await figures(h, "/stores/11/metrics", first=9, last=10)
    assert (store["groups_owned"], store["group_net"]) == (2, 1)
    g2 = await figures(h, "/guides/g2/metrics", first=9, last=10)
    assert (g2["groups_owned"], g2["group_new_members"]) == (1, 0)


async def test_the_join_rate_follows_a_customer_into_another_guides_group(h):
    h.set_time(at(9, 10))
    await h.add("g1", "wmc05")
    await h.add("g1", "wmc06")
    assert (await figures(h, first=9, last=9))["group_join_rate"] == 0
    other = await group(h, "g2", "徐汇群")
    h.set_time(at(9, 12))
    await members(h, "groups/join", other, "wmc05")  # a group g1 does not own
    mine = await figures(h, first=9, last=9)
    assert mine["group_join_rate"] == 0.5
    assert mine["group_new_members"] == 0  # counted for the owner, g2
    await h.act("groups/dismiss", {"chat_id": other})
    assert (await figures(h, first=9, last=9))["group_join_rate"] == 0
