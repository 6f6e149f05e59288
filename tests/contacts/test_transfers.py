"""Transfers through the API: accepted, refused, settled by polling, and after resigning."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from guidebot.db.parking import ParkedRow
from tests.harness import START, contact_xml

DAY = timedelta(days=1)


async def _transfer(h, handover: str, takeover: str, *customers: str, kind="in_service"):
    status, answer = await h.api(
        "POST",
        "/transfers",
        json={
            "kind": kind,
            "handover_userid": handover,
            "takeover_userid": takeover,
            "external_userids": list(customers),
        },
    )
    assert status == 202, answer
    return {t["external_userid"]: t for t in answer["transfers"]}


async def test_an_accepted_transfer_moves_the_relation_with_its_history(h):
    _, way = await h.api(
        "POST", "/contact-ways", json={"store": "11", "channel": "poster", "userids": ["g1"]}
    )
    await h.act("contact/add", {"config_id": way["config_id"], "external_userid": "wmc1"})
    h.advance(3600)

    outcomes = await _transfer(h, "g1", "g2", "wmc1", "wmc2")
    assert outcomes["wmc1"]["status"] == "pending"
    assert outcomes["wmc2"]["status"] == "skipped"  # not g1's customer: WeCom is not asked
    [call] = await h.calls("externalcontact/transfer_customer")
    assert call["body"]["external_userid"] == ["wmc1"]
    assert (await h.relation("g1", "wmc1")).status == "active"  # nothing moves until WeCom says
    again = await _transfer(h, "g1", "g2", "wmc1")
    assert again["wmc1"]["status"] == "skipped" and "pending" in again["wmc1"]["reason"]

    done_at = h.advance(DAY.total_seconds())
    # WeCom: del_external_contact (DELETE_BY_TRANSFER) for g1, then add_external_contact for g2.
    await h.act(
        "contact/transfer",
        {"handover_userid": "g1", "takeover_userid": "g2", "external_userid": "wmc1"},
    )
    old, new = await h.relation("g1", "wmc1"), await h.relation("g2", "wmc1")
    assert (old.status, old.successor_userid, old.ended_at) == ("transferred", "g2", done_at)
    assert (new.status, new.predecessor_userid) == ("active", "g1")
    # The takeover carries the same attribution and created time.
    assert (new.store_id, new.channel, new.config_id, new.created_at) == (
        11,
        "poster",
        way["config_id"],
        START,
    )
    assert [(e.guide_userid, e.kind, e.counterpart_userid) for e in await h.log("wmc1")] == [
        ("g1", "added", None),
        ("g1", "transferred_out", "g2"),
        ("g2", "transferred_in", "g1"),
    ]
    _, listed = await h.api("GET", "/transfers", params={"external_userid": "wmc1"})
    assert [t["status"] for t in listed["transfers"]] == ["accepted"]
    assert (await h.poll()).checked == 0  # nothing pending any more


@pytest.mark.parametrize(
    ("outcome", "status", "reason"),
    [
        ("refuse", "refused", "customer_refused"),
        ("limit", "limit_exceeded", "customer_limit_exceed"),
    ],
)
async def test_a_failed_transfer_leaves_the_customer_with_the_handover(h, outcome, status, reason):
    await h.add("g1", "wmc1")
    await _transfer(h, "g1", "g3", "wmc1")
    h.advance(3600)
    await h.act(
        "contact/transfer",
        {
            "handover_userid": "g1",
            "takeover_userid": "g3",
            "external_userid": "wmc1",
            "outcome": outcome,
        },
    )  # WeCom sends transfer_fail, whose UserID is the takeover

    _, listed = await h.api("GET", "/transfers", params={"guide": "g1"})
    [transfer] = listed["transfers"]
    assert (transfer["status"], transfer["fail_reason"]) == (status, reason)
    assert (await h.relation("g1", "wmc1")).status == "active"
    assert await h.relation("g3", "wmc1") is None
    assert [e.kind for e in await h.log()] == ["added"]


async def test_the_poll_settles_a_transfer_whose_callbacks_were_dropped(h):
    await h.add("g1", "wmc1")
    await _transfer(h, "g1", "g2", "wmc1")
    assert (await h.poll()).still_pending == 1
    done_at = h.advance(DAY.total_seconds())
    await h.act(
        "contact/transfer",
        {
            "handover_userid": "g1",
            "takeover_userid": "g2",
            "external_userid": "wmc1",
            "deliver": False,
        },
    )
    h.advance(600)

    report = await h.poll()
    assert len(report.accepted) == 1
    assert (await h.relation("g1", "wmc1")).status == "transferred"
    assert (await h.relation("g2", "wmc1")).status == "active"
    moves = [(e.kind, e.source, e.occurred_at) for e in await h.log()][1:]
    assert moves == [
        ("transferred_out", "reconcile", done_at),
        ("transferred_in", "reconcile", done_at),
    ]

    # The callbacks turning up late change nothing.
    await h.deliver(
        contact_xml("del_external_contact", "g1", "wmc1", done_at, Source="DELETE_BY_TRANSFER")
    )
    await h.deliver(contact_xml("add_external_contact", "g2", "wmc1", done_at))
    assert (await h.poll()).checked == 0
    assert len(await h.log()) == 3


async def test_reconciliation_completes_a_transfer_whose_callbacks_were_dropped(h):
    await h.add("g1", "wmc1")
    await _transfer(h, "g1", "g2", "wmc1")
    done_at = h.advance(DAY.total_seconds())
    await h.act(
        "contact/transfer",
        {
            "handover_userid": "g1",
            "takeover_userid": "g2",
            "external_userid": "wmc1",
            "deliver": False,
        },
    )
    h.advance(600)

    # WeCom lists wmc1 under g2 now, not under g1: that is the transfer, not a removal.
    report = await h.reconcile()
    assert report.ended == []
    assert (await h.relation("g1", "wmc1")).status == "transferred"
    assert [(e.guide_userid, e.kind, e.source) for e in await h.log()][1:] == [
        ("g1", "transferred_out", "reconcile"),
        ("g2", "transferred_in", "reconcile"),
    ]
    _, listed = await h.api("GET", "/transfers")
    assert [(t["status"], t["completed_at"]) for t in listed["transfers"]] == [
        ("accepted", done_at.isoformat())
    ]


async def test_a_resigned_guides_customers_go_to_the_takeover(h):
    await h.add("g3", "wmc3")
    h.advance(3600)
    await h.act("users/delete", {"userid": "g3", "notify": True})
    status, answer = await h.api(
        "POST",
        "/transfers",
        json={
            "kind": "in_service",
            "handover_userid": "g3",
            "takeover_userid": "g1",
            "external_userids": ["wmc3"],
        },
    )
    assert status == 422 and "use a resigned transfer" in answer["error"]["reason"]

    outcomes = await _transfer(h, "g3", "g1", "wmc3", kind="resigned")
    assert outcomes["wmc3"]["status"] == "pending"
    assert len(await h.calls("externalcontact/resigned/transfer_customer")) == 1
    h.advance(DAY.total_seconds())
    # A resigned member gets no delete event; only the takeover's add arrives.
    await h.act(
        "contact/transfer",
        {"handover_userid": "g3", "takeover_userid": "g1", "external_userid": "wmc3"},
    )
    assert (await h.relation("g3", "wmc3")).status == "transferred"
    new = await h.relation("g1", "wmc3")
    assert (new.status, new.predecessor_userid, new.store_id) == ("active", "g3", 11)
    assert [e.kind for e in await h.log()] == ["added", "transferred_out", "transferred_in"]


@pytest.mark.parametrize(
    ("body", "status", "reason"),
    [
        ({"kind": "sideways"}, 400, "'kind' must be one of"),
        ({"takeover_userid": "nobody"}, 404, "no active guide 'nobody'"),
        # Each field fits; together they name no transfer.
        ({"takeover_userid": "g1"}, 422, "the same guide"),
        ({"external_userids": []}, 400, "'external_userids'"),
    ],
)
async def test_bad_transfer_requests_are_refused(h, body, status, reason):
    request = {
        "kind": "in_service",
        "handover_userid": "g1",
        "takeover_userid": "g2",
        "external_userids": ["wmc1"],
        **body,
    }
    answer_status, answer = await h.api("POST", "/transfers", json=request)
    assert answer_status == status and reason in answer["error"]["reason"], answer
    assert await h.calls("externalcontact/transfer_customer") == []


async def test_a_transfer_the_poll_cannot_settle_is_parked_and_the_others_are_settled(h):
    """WeCom answers one accepted transfer with a takeover_time no instant holds (year 10000):
    that used to fail the whole poll, every time, and every transfer stayed pending."""
    await h.add("g1", "wmc1")
    await h.add("g1", "wmc2")
    await _transfer(h, "g1", "g2", "wmc1", "wmc2")
    _, listed = await h.api("GET", "/transfers")
    ids = {t["external_userid"]: t["id"] for t in listed["transfers"]}
    h.advance(DAY.total_seconds())
    for ext in ("wmc1", "wmc2"):
        await h.act(
            "contact/transfer",
            {"handover_userid": "g1", "takeover_userid": "g2", "external_userid": ext},
            drain=False,
        )
    bad = next(t for t in h.sim_state.transfers if t.external_userid == "wmc1")
    bad.takeover_time = 253402300800

    report = await h.poll()
    assert (report.accepted, report.parked) == ([ids["wmc2"]], [ids["wmc1"]])
    assert (await h.relation("g2", "wmc2")).status == "active"
    async with h.sessions() as session:
        [row] = list(await session.scalars(select(ParkedRow)))
    assert (row.job, row.table_name, row.row_key) == (
        "poll-transfers",
        "transfers",
        str(ids["wmc1"]),
    )
    assert row.reason.startswith("ValueError") and row.detail == "in_service g1 -> g2 of wmc1"
    assert (await h.poll()).checked == 0  # later polls skip it
