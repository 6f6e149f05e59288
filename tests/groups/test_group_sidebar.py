"""The sidebar opened in a customer group (entry group_chat_tools): the group as its guide sees
it, content forwarded into it with a link that carries the group, opens and orders through that
link counted for the group, and nobody else's groups.

Joins reach guidebot as WeCom's change_external_chat callbacks, encrypted; one test delivers
them out of order and twice.
"""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select

from guidebot.content import links
from guidebot.content.models import ContentForward, ContentOpen, ContentOpenVisitor
from guidebot.metrics.models import Order
from tests.content.test_sidebar_api import login, post


async def vip_group(h) -> str:
    """g1's 张江VIP群 with two of g1's customers, one customer of g2's only, and g3."""
    await h.add("g1", "wmc1")
    await h.add("g1", "wmc2")
    await h.add("g2", "wmc3")
    chat_id = await h.create_group("g1", "张江VIP群")
    await h.join(chat_id, "wmc1", "wmc3", "g3")
    h.advance(60)
    await h.join(chat_id, "wmc2")
    return chat_id


async def an_item(h) -> dict:
    status, item = await h.api(
        "POST",
        "/content",
        json={"key": "spring", "kind": "link", "title": "春季新品", "url": "http://a.test/s"},
    )
    assert status == 201, item
    return item


async def open_as_a_browser(h, url: str) -> None:
    """Someone in the group taps the link: the first request gets a visitor id, the browser
    comes back with it (guidebot.web.links) and becomes a unique visitor."""
    token = url.rsplit("/r/", 1)[1]
    first = await h.client.get(f"/r/{token}", allow_redirects=False)
    seen = first.headers["Location"]
    assert first.status == 302 and seen.startswith("?seen=")
    again = await h.client.get(f"/r/{token}{seen}", allow_redirects=False)
    assert again.status == 302


async def test_the_owner_sees_the_group_and_which_members_are_their_customers(h):
    chat_id = await vip_group(h)
    await login(h, "g1")
    response = await h.client.get("/sidebar/api/group", params={"chat_id": chat_id})
    assert response.status == 200
    body = await response.json()
    assert body["group"]["name"] == "张江VIP群"
    assert body["group"]["owner"] == {"userid": "g1", "name": "王芳"}
    assert body["group"]["mine"] is True
    assert (body["group"]["members"], body["group"]["customers"]) == (5, 3)  # g1, g3 and three
    # wmc3 is in the group but is g2's customer, not g1's.
    assert [c["external_userid"] for c in body["my_customers"]] == ["wmc1", "wmc2"]
    assert body["my_customers"][0]["name"] == "陈女士"


async def test_a_guide_sees_only_groups_they_own_or_are_in(h):
    chat_id = await vip_group(h)
    await login(h, "g2")  # owns nothing, is not in it (their customer wmc3 is)
    response = await h.client.get("/sidebar/api/group", params={"chat_id": chat_id})
    assert response.status == 403
    assert (await response.json())["error"]["code"] == "not_your_group"
    item = await an_item(h)
    status, answer = await post(
        h, "/sidebar/api/group/prepare", {"item_id": item["id"], "chat_id": chat_id}
    )
    assert status == 403 and answer["error"]["code"] == "not_your_group"
    response = await h.client.get("/sidebar/api/groups")
    assert (await response.json())["groups"] == []
    # g3 is a member: sees it, and none of the group's customers is theirs.
    await login(h, "g3")
    response = await h.client.get("/sidebar/api/group", params={"chat_id": chat_id})
    body = await response.json()
    assert response.status == 200 and body["group"]["mine"] is False
    assert body["my_customers"] == []
    response = await h.client.get("/sidebar/api/groups")
    assert [g["chat_id"] for g in (await response.json())["groups"]] == [chat_id]
    # Once g3 leaves, the group is not theirs to see.
    await h.leave(chat_id, "g3")
    response = await h.client.get("/sidebar/api/group", params={"chat_id": chat_id})
    assert response.status == 403


async def test_bad_input_is_refused_and_changes_nothing(h):
    chat_id = await vip_group(h)
    await login(h, "g1")
    response = await h.client.get("/sidebar/api/group")
    assert response.status == 400
    assert "chat_id" in (await response.json())["error"]["reason"]
    status, _ = await post(h, "/sidebar/api/group/prepare", {"item_id": "1", "chat_id": chat_id})
    assert status == 400
    status, _ = await post(h, "/sidebar/api/group/forwards", {"ref": "forged.token"})
    assert status == 400
    # A customer's (one-to-one) link is no group forward.
    item = await an_item(h)
    status, prepared = await post(
        h, "/sidebar/api/prepare", {"item_id": item["id"], "external_userid": "wmc1"}
    )
    status, _ = await post(h, "/sidebar/api/group/forwards", {"ref": prepared["ref"]})
    assert status == 400
    async with h.sessions() as session:
        assert list(await session.scalars(select(ContentForward))) == []


async def test_a_forward_into_the_group_is_recorded_once_and_its_link_carries_the_group(h):
    chat_id = await vip_group(h)
    item = await an_item(h)
    await login(h, "g1")
    status, prepared = await post(
        h, "/sidebar/api/group/prepare", {"item_id": item["id"], "chat_id": chat_id}
    )
    assert status == 200, prepared
    assert prepared["message"]["msgtype"] == "news"
    assert prepared["message"]["news"]["link"] == prepared["url"]
    claims = links.verify(h.settings.secret_key, prepared["ref"])
    assert claims is not None and claims.chat_id == chat_id and claims.customer is None
    status, recorded = await post(h, "/sidebar/api/group/forwards", {"ref": prepared["ref"]})
    assert status == 201 and recorded == {"recorded": True}
    status, again = await post(h, "/sidebar/api/group/forwards", {"ref": prepared["ref"]})
    assert status == 200 and again == {"recorded": False}
    async with h.sessions() as session:
        (forward,) = await session.scalars(select(ContentForward))
    assert (forward.chat_id, forward.external_userid, forward.guide_userid) == (
        chat_id,
        None,
        "g1",
    )
    # Someone in the group opens it: the open and the unique open carry the group.
    await open_as_a_browser(h, prepared["url"])
    async with h.sessions() as session:
        (opened,) = await session.scalars(select(ContentOpen))
        (visitor,) = await session.scalars(select(ContentOpenVisitor))
    assert opened.chat_id == chat_id
    assert (visitor.chat_id, visitor.guide_userid, visitor.external_userid) == (chat_id, "g1", None)


async def test_an_order_by_a_member_after_a_group_forward_comes_through_the_group(h):
    chat_id = await vip_group(h)
    item = await an_item(h)
    await login(h, "g1")
    status, prepared = await post(
        h, "/sidebar/api/group/prepare", {"item_id": item["id"], "chat_id": chat_id}
    )
    await post(h, "/sidebar/api/group/forwards", {"ref": prepared["ref"]})
    h.advance(timedelta(hours=2))
    paid = h.clock.now().isoformat()
    for order_id, customer in (("o-member", "wmc3"), ("o-outsider", "wmc9")):
        status, body = await h.api(
            "POST",
            "/orders",
            json={
                "order_id": order_id,
                "external_userid": customer,
                "amount": "99",
                "paid_at": paid,
            },
        )
        assert status in (200, 201), body
    async with h.sessions() as session:
        orders = {o.order_id: o for o in await session.scalars(select(Order))}
    # wmc3 (g2's customer) was in g1's group when g1 sent it: the order came through the group.
    assert (orders["o-member"].attribution, orders["o-member"].guide_userid) == ("group", "g1")
    assert orders["o-outsider"].attribution == "none"


async def test_joins_delivered_out_of_order_and_twice_still_show_the_members(h):
    await h.add("g1", "wmc1")
    await h.add("g1", "wmc2")
    chat_id = await h.create_group("g1", "张江VIP群")
    first = await h.join(chat_id, "wmc1", deliver=False)
    h.advance(30)
    second = await h.join(chat_id, "wmc2", deliver=False)
    for plaintext in (second["plaintext"], first["plaintext"], second["plaintext"]):
        await h.deliver(plaintext)
    await login(h, "g1")
    response = await h.client.get("/sidebar/api/group", params={"chat_id": chat_id})
    body = await response.json()
    assert [c["external_userid"] for c in body["my_customers"]] == ["wmc1", "wmc2"]
    assert body["group"]["members"] == 3


async def test_a_guide_who_left_the_group_cannot_record_a_forward_into_it(h):
    chat_id = await vip_group(h)
    item = await an_item(h)
    await login(h, "g3")  # a member, not the owner
    status, prepared = await post(
        h, "/sidebar/api/group/prepare", {"item_id": item["id"], "chat_id": chat_id}
    )
    assert status == 200, prepared
    await h.leave(chat_id, "g3")
    status, answer = await post(h, "/sidebar/api/group/forwards", {"ref": prepared["ref"]})
    assert status == 403 and answer["error"]["code"] == "not_your_group"
    async with h.sessions() as session:
        assert list(await session.scalars(select(ContentForward))) == []
