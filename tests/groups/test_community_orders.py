"""Orders through group-send and Moments links, end to end against the simulator: those links
name nobody, so a browser carries the customer. A browser that opens a link naming a customer
(before or after) is tied to them; its open of the owner's group-send link or a guide's Moments
link, inside the attribution window before the customer's order, attributes the order to it
(`group`, `moments`), counted in group_orders and moment_orders per guide, store and HQ. The
latest touch wins; at one instant what names the customer wins; a browser tied to two
customers ties nobody; a tie learnt after the order was paid does not count."""

from __future__ import annotations

from datetime import timedelta

import pytest

from guidebot.content import links
from guidebot.content.service import create_item, record_forward
from guidebot.metrics.rollup import refresh
from guidebot.sop.jobs import sop_group_steps, sop_triggers
from guidebot.web.keys import SOP
from tests.groups.conftest import GroupsHarness
from tests.groups.test_group_steps import FRIDAY_10, WEEKLY, rows, seed_groups
from tests.harness import deploy_dir, start_harness, write_playbook

DAY = {"from": "2026-03-13", "to": "2026-03-13"}


@pytest.fixture
async def h(aiohttp_client, database_url, clock, tmp_path) -> GroupsHarness:
    """test_group_steps' weekly playbook: store 11's VIP groups, and its guides' Moments."""
    sop_dir = deploy_dir(tmp_path / "deploy")
    write_playbook(sop_dir, WEEKLY)
    h = await start_harness(
        aiohttp_client, database_url, clock, kind=GroupsHarness, sop_dir=sop_dir
    )
    async with h.sessions() as session, session.begin():
        item = {"key": "weekly-picks", "kind": "link", "title": "本周精选", "url": "https://x.cn/w"}
        await create_item(session, item, h.clock.now())
    return h


@pytest.fixture
async def community(h):
    """Friday's VIP group send (owner g1, confirmed) and g3's Moments post (published): the
    URL of each tracked link."""
    await seed_groups(h)
    await h.add("g3", "wmc3")
    sop = h.app[SOP]
    h.set_time(FRIDAY_10)
    await sop_triggers(sop)
    await sop_group_steps(sop)
    sent = {
        c["body"]["sender"]: c["body"] for c in await h.calls("externalcontact/add_msg_template")
    }
    group_url = sent["g1"]["attachments"][0]["link"]["url"]
    h.advance(timedelta(minutes=6))
    await sop_group_steps(sop)
    weekly = (await rows(h))[("weekly", "g1")]
    await h.control("groupmsg/confirm", {"msgid": weekly.wecom_msgid, "userid": "g1"})
    h.set_time(FRIDAY_10 + timedelta(hours=1))
    await sop_group_steps(sop)
    posts = {
        c["body"]["visible_range"]["sender_list"]["user_list"][0]: c["body"]["text"]["content"]
        for c in await h.calls("externalcontact/add_moment_task")
    }
    moment_url = posts["g3"].rsplit("\n", 1)[1]
    h.advance(timedelta(minutes=6))
    await sop_group_steps(sop)
    post = (await rows(h))[("post", "g3")]
    await h.control("moments/publish", {"moment_id": post.moment_id, "userid": "g3"})
    h.advance(timedelta(minutes=6))
    await sop_group_steps(sop)
    found = await rows(h)
    assert (found[("weekly", "g1")].status, found[("post", "g3")].status) == ("done", "done")
    return {"group": group_url, "moment": moment_url, "group_send": weekly.id, "post": post.id}


async def browse(h, url: str) -> None:
    """A browser that keeps cookies (the test client's jar) follows the link."""
    token = url.rsplit("/r/", 1)[1]
    response = await h.client.get(f"/r/{token}", allow_redirects=False)
    seen = response.headers.get("Location", "")
    if seen.startswith("?seen="):
        response = await h.client.get(f"/r/{token}{seen}", allow_redirects=False)
    assert response.status == 302


def new_browser(h) -> None:
    h.client.session.cookie_jar.clear()


async def personal(h, guide: str, customer: str, *, forwarded: bool = True) -> str:
    """The guide's link naming the customer (logged as forwarded, so its open is a touch)."""
    token, claims = links.mint(
        h.settings.secret_key, item_id=1, guide=guide, customer=customer, now=h.clock.now()
    )
    if forwarded:
        async with h.sessions() as session, session.begin():
            await record_forward(
                session,
                ref=f"l:{claims.nonce}",
                item_id=1,
                guide=guide,
                customer=customer,
                via="sidebar",
                sent_at=h.clock.now(),
                now=h.clock.now(),
            )
    return links.link_url(h.settings.public_url, token)


async def order(h, order_id: str, customer: str, **extra) -> dict:
    body = {
        "order_id": order_id,
        "external_userid": customer,
        "amount": "100",
        "paid_at": h.clock.now().isoformat(),
        **extra,
    }
    status, answer = await h.api("POST", "/orders", json=body)
    assert status == 201, answer
    return answer


async def figures(h, path: str) -> dict:
    await refresh(h.sessions, h.settings.timezone, h.clock.now())
    status, body = await h.api("GET", path, params=DAY)
    assert status == 200, body
    return {k: body["metrics"][k] for k in ("orders", "group_orders", "moment_orders")}


async def test_a_group_send_link_opened_in_the_customers_browser_attributes_the_order(
    h,
    community,
):
    # wmc1's phone opens g1's forward naming them (the tie), then the VIP group's link.
    new_browser(h)
    await browse(h, await personal(h, "g1", "wmc1"))
    h.advance(timedelta(minutes=10))
    await browse(h, community["group"])
    h.advance(timedelta(hours=2))
    placed = await order(h, "o-group", "wmc1")
    assert placed["guide_userid"] == "g1"
    assert placed["attribution"]["rule"] == "group"
    assert placed["attribution"]["ref"].startswith("open:")

    # wmc2's phone opens g3's Moments link first, and a link naming wmc2 only afterwards.
    new_browser(h)
    await browse(h, community["moment"])
    h.advance(timedelta(minutes=5))
    await browse(h, await personal(h, "g1", "wmc2", forwarded=False))  # named, never a touch
    h.advance(timedelta(hours=1))
    placed = await order(h, "o-moments", "wmc2")
    assert (placed["guide_userid"], placed["attribution"]["rule"]) == ("g3", "moments")

    assert await figures(h, "/guides/g1/metrics") == {
        "orders": 1,
        "group_orders": 1,
        "moment_orders": 0,
    }
    assert await figures(h, "/guides/g3/metrics") == {
        "orders": 1,
        "group_orders": 0,
        "moment_orders": 1,
    }
    assert await figures(h, "/stores/11/metrics") == {
        "orders": 2,
        "group_orders": 1,
        "moment_orders": 1,
    }
    # A refund takes the Moments order back.
    h.advance(timedelta(hours=1))
    status, _ = await h.api("POST", "/orders/o-moments/refund", json={})
    assert status == 200
    assert (await figures(h, "/metrics"))["moment_orders"] == 0


async def test_the_latest_touch_wins_and_at_one_instant_what_names_the_customer(
    h,
    community,
):
    new_browser(h)
    await browse(h, community["moment"])  # Moments first
    h.advance(timedelta(minutes=30))
    await browse(h, await personal(h, "g1", "wmc1"))  # then g1's own link: the later touch
    h.advance(timedelta(hours=1))
    placed = await order(h, "o-later-personal", "wmc1")
    assert (placed["guide_userid"], placed["attribution"]["rule"]) == ("g1", "open")

    # The same browser opens the group link and g1's link at one instant: the personal wins.
    h.advance(timedelta(hours=1))
    link = await personal(h, "g1", "wmc1")
    await browse(h, community["moment"])
    await browse(h, link)
    placed = await order(h, "o-same-instant", "wmc1")
    assert placed["attribution"]["rule"] == "open"
    # A community open after the personal one wins again.
    h.advance(timedelta(minutes=1))
    await browse(h, community["moment"])
    h.advance(timedelta(minutes=1))
    placed = await order(h, "o-community-last", "wmc1")
    assert (placed["guide_userid"], placed["attribution"]["rule"]) == ("g3", "moments")


async def test_a_shared_browser_or_a_tie_learnt_after_the_order_counts_for_nobody(
    h,
    community,
):
    # A counter tablet: links naming wmc1 and wmc3 were opened on it; then the Moments link.
    new_browser(h)
    await browse(h, await personal(h, "g1", "wmc1", forwarded=False))
    await browse(h, await personal(h, "g3", "wmc3", forwarded=False))
    await browse(h, community["moment"])
    h.advance(timedelta(hours=1))
    placed = await order(h, "o-shared", "wmc3")
    assert placed["attribution"]["rule"] != "moments"
    assert placed["attribution"]["rule"] == "recent_guide"  # wmc3's guide, not the post's

    # wmc2's phone: the Moments link, the order, and only then a link naming wmc2; the order
    # posted late is still decided as of its payment.
    new_browser(h)
    await browse(h, community["moment"])
    h.advance(timedelta(minutes=20))
    paid_at = h.clock.now()
    h.advance(timedelta(minutes=20))
    await browse(h, await personal(h, "g1", "wmc2", forwarded=False))
    placed = await order(h, "o-late-tie", "wmc2", paid_at=paid_at.isoformat())
    assert placed["attribution"]["rule"] != "moments"
    # Outside the window the open no longer counts either.
    h.advance(timedelta(days=8))
    placed = await order(h, "o-too-late", "wmc2")
    assert placed["attribution"]["rule"] != "moments"
