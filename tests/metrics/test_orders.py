"""The order webhook: idempotency, conflicts, refunds, attribution and its window's edges."""

from __future__ import annotations

from datetime import timedelta

import pytest

from guidebot.metrics.orders import (
    OrderInvalid,
    attribute_order,
    normalize_mobile,
    parse_amount,
    parse_instant,
)
from tests.content.test_sidebar_api import login, post
from tests.metrics.conftest import at


def order(order_id: str, paid_at, **extra) -> dict:
    return {
        "order_id": order_id,
        "external_userid": "wmc01",
        "amount": "100.00",
        "paid_at": paid_at.isoformat(),
        **extra,
    }


async def guide_orders(h, guide: str, first: str, last: str) -> tuple[int, str]:
    await h.settle()
    status, body = await h.api(
        "GET", f"/guides/{guide}/metrics", params={"from": first, "to": last}
    )
    assert status == 200, body
    return body["metrics"]["orders"], body["metrics"]["gmv"]


async def test_posted_twice_counts_once_a_conflict_is_409_a_refund_counts_negative(h):
    h.set_time(at(9, 10))
    await h.add("g1", "wmc01")
    h.set_time(at(9, 12))
    first = await h.order(order("A-1", at(9, 12), amount=199.9), status=201)
    assert (first["amount"], first["amount_fen"], first["status"]) == ("199.90", 19990, "paid")
    assert (first["guide_userid"], first["attribution"]["rule"]) == ("g1", "recent_guide")
    # The webhook retries: the same order again is the same order, counted once.
    assert await h.order(order("A-1", at(9, 12), amount="199.90"), status=200) == first
    assert await guide_orders(h, "g1", "2026-03-09", "2026-03-09") == (1, "199.90")

    # The same order_id with other content is refused, with the reason.
    status, body = await h.api("POST", "/orders", json=order("A-1", at(9, 12), amount="200"))
    assert status == 409
    assert "amount 199.90, not 200.00" in body["error"]["reason"]
    status, body = await h.api("POST", "/orders", json=order("A-1", at(9, 13), amount="199.9"))
    assert status == 409 and "paid_at" in body["error"]["reason"]

    # A refund on Wednesday takes it back on Wednesday; Monday keeps the sale.
    h.set_time(at(11, 9))
    refunded = await h.order(order("A-1", at(9, 12), amount="199.90", status="refunded"), 200)
    assert refunded["status"] == "refunded"
    assert refunded["refunded_at"] == "2026-03-11T01:00:00+00:00"
    # Refunding again, or replaying the original paid post, changes nothing.
    status, again = await h.api("POST", "/orders/A-1/refund")
    assert (status, again) == (200, refunded)
    assert await h.order(order("A-1", at(9, 12), amount="199.90"), status=200) == refunded
    assert await guide_orders(h, "g1", "2026-03-09", "2026-03-09") == (1, "199.90")
    assert await guide_orders(h, "g1", "2026-03-11", "2026-03-11") == (-1, "-199.90")
    assert await guide_orders(h, "g1", "2026-03-09", "2026-03-15") == (0, "0.00")

    # The refund call for an order never posted is a 404; GET shows a stored order.
    status, body = await h.api("POST", "/orders/NOPE/refund")
    assert status == 404 and "NOPE" in body["error"]["reason"]
    status, body = await h.api("GET", "/orders/A-1")
    assert (status, body) == (200, refunded)


async def test_attribution_window_edges_and_fallbacks(h):
    h.set_time(at(9, 10))
    await h.add("g1", "wmc01")  # g1 is in store 11
    h.set_time(at(9, 11))
    await h.add("g2", "wmc01")  # g2 (store 12) is the customer's most recent guide
    item = await h.item("新品")
    h.set_time(at(9, 12))
    await h.forward("g1", "wmc01", item)

    # Exactly 7 days after g1's forward: still inside the window.
    edge = at(16, 12)
    h.set_time(edge)
    inside = await h.order(order("W-1", edge), status=201)
    assert (inside["guide_userid"], inside["attribution"]["rule"]) == ("g1", "forward")
    assert inside["attribution"]["at"] == "2026-03-09T04:00:00+00:00"

    # One second later it is not: the customer's guide at the order's store, else the newest.
    late = edge + timedelta(seconds=1)
    at_store = await h.order(order("W-2", late, store="11"), status=201)
    assert (at_store["guide_userid"], at_store["attribution"]["rule"]) == ("g1", "store_guide")
    newest = await h.order(order("W-3", late), status=201)
    assert (newest["guide_userid"], newest["attribution"]["rule"]) == ("g2", "recent_guide")

    # The window is configurable (GUIDEBOT_ATTRIBUTION_DAYS): 3 days misses a 4-day-old forward.
    async with h.sessions() as session:
        touch = await attribute_order(
            session, external_userid="wmc01", store_id=None, paid_at=at(13, 12), window=timedelta(3)
        )
        assert (touch.rule, touch.guide) == ("recent_guide", "g2")
        touch = await attribute_order(
            session, external_userid="wmc01", store_id=None, paid_at=at(12, 12), window=timedelta(3)
        )
        assert (touch.rule, touch.guide) == ("forward", "g1")

    # An open of g2's link after g1's forward is the later touch: the order is g2's.
    h.set_time(at(17, 9))
    await h.forward("g1", "wmc01", item)
    token = await h.forward("g2", "wmc01", item)  # sent at the same instant as g1's
    h.set_time(at(17, 10))
    await h.open(token)
    h.set_time(at(17, 11))
    opened = await h.order(order("W-5", at(17, 11)), status=201)
    assert (opened["guide_userid"], opened["attribution"]["rule"]) == ("g2", "open")

    # A customer nobody knows: kept, counted for no guide.
    nobody = await h.order(order("W-6", at(17, 11), external_userid="stranger"), status=201)
    assert (nobody["guide_userid"], nobody["attribution"]["rule"]) == (None, "none")

    # Each order counts for its guide on its local day.
    assert await guide_orders(h, "g1", "2026-03-16", "2026-03-16") == (2, "200.00")
    assert await guide_orders(h, "g2", "2026-03-09", "2026-03-17") == (2, "200.00")


async def test_only_opens_of_forwarded_links_take_an_order(h):
    h.set_time(at(9, 10))
    await h.add("g1", "wmc01")
    await h.add("g2", "wmc01")
    item = await h.item("新品")
    h.set_time(at(9, 11))
    await h.forward("g1", "wmc01", item)
    # g2 prepares a message for c01 in the sidebar, never sends it, and opens the link himself.
    await login(h, "g2")
    status, prepared = await post(
        h, "/sidebar/api/prepare", {"item_id": item, "external_userid": "wmc01"}
    )
    assert status == 200, prepared
    h.set_time(at(9, 12))
    await h.open(prepared["ref"])
    h.set_time(at(9, 13))
    taken = await h.order(order("P-1", at(9, 13), amount="999.00"), status=201)
    assert (taken["guide_userid"], taken["attribution"]["rule"]) == ("g1", "forward")

    # Once g2 sends it, the customer's open of it is the latest touch.
    status, _ = await post(h, "/sidebar/api/forwards", {"ref": prepared["ref"]})
    assert status == 201
    h.set_time(at(9, 14))
    await h.open(prepared["ref"])
    h.set_time(at(9, 15))
    taken = await h.order(order("P-2", at(9, 15)), status=201)
    assert (taken["guide_userid"], taken["attribution"]["rule"]) == ("g2", "open")


async def test_a_paid_order_stops_that_guides_enrollments_only(h):
    h.set_time(at(9, 10))
    await h.add("g1", "wmc01")
    h.set_time(at(9, 11))
    await h.add("g2", "wmc01")
    item = await h.item("新品")
    await h.forward("g2", "wmc01", item)
    h.set_time(at(9, 12))
    await h.order(order("S-1", at(9, 12)), status=201)
    stopped = await h.task("g2", "wmc01", "call")
    kept = await h.task("g1", "wmc01", "call")
    assert (stopped.status, stopped.reason) == ("skipped", "stopped: order.paid")
    assert kept.status == "pending"


async def test_orders_by_mobile_and_bad_bodies(h):
    h.set_time(at(9, 10))
    await h.add("g2", "wmc04")
    await h.edit("g2", "wmc04", remark_mobiles=["138-0000-0004"])
    found = await h.order(
        {"order_id": "M-1", "mobile": "13800000004", "amount": 5, "paid_at": "2026-03-09T03:00Z"},
        status=201,
    )
    assert (found["external_userid"], found["guide_userid"]) == ("wmc04", "g2")
    assert found["paid_at"] == "2026-03-09T03:00:00+00:00"

    # 400: the body does not fit the order's schema; 422: it fits, but names no customer or a
    # store no store has.
    bad = [
        ({"order_id": "B", "external_userid": "wmc04", "amount": "1.005", "paid_at": "2026-03-09T03:00Z"}, 400, "at most 2 decimals"),  # noqa: E501
        ({"order_id": "B", "external_userid": "wmc04", "amount": 1.005, "paid_at": "2026-03-09T03:00Z"}, 400, "multiple of 0.01"),  # noqa: E501
        ({"order_id": "B", "external_userid": "wmc04", "amount": "-1", "paid_at": "2026-03-09T03:00Z"}, 400, "'amount'"),  # noqa: E501
        ({"order_id": "B", "external_userid": "wmc04", "amount": -1, "paid_at": "2026-03-09T03:00Z"}, 400, "between 0 and"),  # noqa: E501
        ({"order_id": "B", "external_userid": "wmc04", "amount": True, "paid_at": "2026-03-09T03:00Z"}, 400, "amount"),  # noqa: E501
        ({"order_id": "B", "external_userid": "wmc04", "amount": "1", "paid_at": "2026-03-09 11:00"}, 400, "UTC offset"),  # noqa: E501
        ({"order_id": "B", "amount": "1", "paid_at": "2026-03-09T03:00Z"}, 422, "external_userid"),
        ({"order_id": "B", "external_userid": "wmc04", "amount": "1", "paid_at": "2026-03-09T03:00Z", "store": "nowhere"}, 422, "no store"),  # noqa: E501
        ({"order_id": "B", "external_userid": "wmc04", "amount": "1", "paid_at": "2026-03-09T03:00Z", "status": "void"}, 400, "status"),  # noqa: E501
        ({"order_id": "has space", "external_userid": "wmc04", "amount": "1", "paid_at": "2026-03-09T03:00Z"}, 400, "order_id"),  # noqa: E501
    ]  # fmt: skip
    for body, expected, reason in bad:
        status, answer = await h.api("POST", "/orders", json=body)
        assert status == expected, (body, answer)
        assert reason in answer["error"]["reason"], (body, answer)
    status, answer = await h.api("POST", "/orders", data="not json")
    assert status == 400
    status, answer = await h.api("POST", "/orders", json={}, auth=False)
    assert status == 401


def test_amounts_instants_and_mobiles_parse_strictly():
    assert parse_amount("199.9") == 19990
    assert parse_amount(0) == 0
    assert parse_amount(12.34) == 1234
    assert parse_amount(" 7 ") == 700
    for bad in ("1e400", "NaN", "abc", "0.001", None, [], "-0.01"):
        with pytest.raises(OrderInvalid):
            parse_amount(bad)
    assert parse_instant("2026-03-09T12:00:00+08:00", "paid_at").isoformat() == (
        "2026-03-09T04:00:00+00:00"
    )
    for bad in ("2026-03-09T12:00:00", "0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00"):
        with pytest.raises(OrderInvalid):
            parse_instant(bad, "paid_at")
    assert normalize_mobile("+86 138-0000-0004") == "13800000004"
    assert normalize_mobile("8613800000004") == "13800000004"
