"""Nightly reconciliation against externalcontact/batch/get_by_user repairs dropped events."""

from __future__ import annotations

import logging
from datetime import timedelta

from sqlalchemy import select

from guidebot.db.parking import ParkedRow
from guidebot.wecom.simulator.records import Member
from tests.harness import START, contact_xml

MINUTE = timedelta(minutes=1)


async def test_reconciliation_repairs_a_dropped_add_and_a_dropped_delete(h, caplog):
    await h.add("g1", "wmc1")
    await h.add("g3", "wmc3")
    h.advance(60)
    await h.act(
        "contact/add",
        {"userid": "g2", "external_userid": "wmc2", "state": "s12:mall", "deliver": False},
    )
    h.advance(60)
    await h.act(
        "contact/delete_by_guide",
        {"userid": "g1", "external_userid": "wmc1", "deliver": False},
    )
    # A customer who deleted the guide stays in WeCom's list (one-way): not a missed add.
    await h.act("contact/delete_by_customer", {"userid": "g3", "external_userid": "wmc3"})
    night = h.advance(6 * 3600)

    caplog.set_level(logging.INFO, logger="guidebot.contacts.reconcile")
    report = await h.reconcile()
    assert report.added == [("g2", "wmc2")]
    assert report.ended == [("g1", "wmc1")]
    assert report.reactivated == [] and report.errors == []

    added = await h.relation("g2", "wmc2")
    assert (added.status, added.created_at, added.state, added.store_id) == (
        "active",
        START + MINUTE,
        "s12:mall",
        12,
    )
    assert (await h.customer("wmc2")).name == "刘先生"
    removed = await h.relation("g1", "wmc1")
    assert (removed.status, removed.end_reason, removed.ended_at) == (
        "removed",
        "reconciliation",
        night,
    )
    assert (await h.relation("g3", "wmc3")).status == "lost"
    repairs = [(e.guide_userid, e.kind, e.source, e.occurred_at) for e in await h.log()]
    assert ("g2", "added", "reconcile", START + MINUTE) in repairs
    assert ("g1", "removed", "reconcile", night) in repairs
    lines = [r.getMessage() for r in caplog.records if r.name == "guidebot.contacts.reconcile"]
    assert [line for line in lines if "g2/wmc2" in line] == [
        f"reconciliation: added g2/wmc2 (WeCom createtime {(START + MINUTE).isoformat()})"
    ]
    assert len([line for line in lines if "g1/wmc1" in line]) == 1
    assert "1 added, 0 reactivated, 1 ended" in lines[-1]

    log_size = len(await h.log())
    h.advance(3600)
    assert (await h.reconcile()).repairs == 0  # idempotent
    # The dropped add turning up late is harmless too.
    await h.deliver(
        contact_xml("add_external_contact", "g2", "wmc2", START + MINUTE, State="s12:mall")
    )
    assert len(await h.log()) == log_size


async def test_reconciliation_reactivates_a_readd_it_missed(h):
    await h.add("g1", "wmc1")
    h.advance(60)
    await h.act("contact/delete_by_guide", {"userid": "g1", "external_userid": "wmc1"})
    readded_at = h.advance(60)
    await h.act("contact/add", {"userid": "g1", "external_userid": "wmc1", "deliver": False})
    h.advance(3600)

    report = await h.reconcile()
    assert report.reactivated == [("g1", "wmc1")]
    relation = await h.relation("g1", "wmc1")
    assert (relation.status, relation.created_at) == ("active", readded_at)
    assert [e.kind for e in await h.log()] == ["added", "removed", "reactivated"]


async def test_reconciliation_walks_every_guide_100_at_a_time_and_every_page(h):
    sim = h.sim_state
    for n in range(98):  # a bigger corp, seeded straight into the fake
        sim.upsert_member(Member(userid=f"x{n:03}", name=f"X{n}", department=[12]))
    await h.sync()
    for n in range(101):  # g1's customers, all added while callbacks were lost
        sim.add_contact("g1", f"wmbulk{n:03}")
    h.advance(3600)

    report = await h.reconcile()
    assert report.guides == 101 and len(report.added) == 101
    calls = await h.calls("externalcontact/batch/get_by_user")
    chunks = {tuple(c["body"]["userid_list"]) for c in calls}
    assert sorted(len(chunk) for chunk in chunks) == [1, 100]
    assert len({userid for chunk in chunks for userid in chunk}) == 101
    assert [c["body"]["cursor"] != "" for c in calls] == [False, True, False]  # g1: two pages
    assert len([r for r in await h.relations() if r.guide_userid == "g1"]) == 101


async def test_a_guide_wecom_no_longer_knows_does_not_stop_the_others(h):
    await h.add("g3", "wmc3")
    await h.control("users/delete", {"userid": "g3"})  # left WeCom; the event was lost
    await h.act("contact/add", {"userid": "g1", "external_userid": "wmc1", "deliver": False})
    h.advance(3600)

    report = await h.reconcile()
    assert report.added == [("g1", "wmc1")]
    assert len(report.errors) == 1 and report.errors[0].startswith("g3:")
    assert (await h.relation("g3", "wmc3")).status == "active"  # not listed, but not ended


async def test_a_pair_it_cannot_repair_is_parked_and_the_others_are_repaired(h):
    """WeCom lists an add whose createtime is no instant (year 10000): that pair used to stop
    the whole night's reconciliation, for every guide after it, every night."""
    await h.act("contact/add", {"userid": "g1", "external_userid": "wmc1", "deliver": False})
    bad, _ = h.sim_state.add_contact("g1", "wmcbad")
    bad.createtime = 253402300800  # 10000-01-01T00:00:00Z
    await h.act("contact/add", {"userid": "g2", "external_userid": "wmc2", "deliver": False})
    h.advance(3600)

    report = await h.reconcile()
    assert report.added == [("g1", "wmc1"), ("g2", "wmc2")]
    assert report.parked == [("g1", "wmcbad")]
    assert await h.relation("g1", "wmcbad") is None  # nothing half-written for it
    async with h.sessions() as session:
        [row] = list(await session.scalars(select(ParkedRow)))
    assert (row.job, row.table_name, row.row_key) == (
        "reconcile-contacts",
        "relations",
        "g1/wmcbad",
    )
    assert row.reason.startswith("ValueError") and "253402300800" in row.detail

    # The next night meets it again: still parked, counted twice, the rest left alone.
    h.advance(86400)
    report = await h.reconcile()
    assert (report.repairs, report.parked) == (0, [("g1", "wmcbad")])
    async with h.sessions() as session:
        assert [r.count for r in await session.scalars(select(ParkedRow))] == [2]
