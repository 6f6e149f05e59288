"""The address book: the start-up and nightly sync, and change_contact callbacks."""

from __future__ import annotations

import asyncio
from typing import Any

from sqlalchemy import event, select

from guidebot.contacts.directory_sync import SYNC_CHUNK
from guidebot.contacts.models import EARLY, Department, Guide
from guidebot.db.parking import ParkedRow
from guidebot.wecom.simulator.records import Member
from tests.harness import change_contact_xml


async def departments(h) -> dict[int, Department]:
    async with h.sessions() as session:
        return {d.id: d for d in await session.scalars(select(Department))}


async def guides(h) -> dict[str, Guide]:
    async with h.sessions() as session:
        return {g.userid: g for g in await session.scalars(select(Guide))}


async def test_the_startup_sync_builds_regions_stores_guides_and_memberships(h):
    depts = await departments(h)
    assert {i: (d.name, d.is_store, d.code) for i, d in depts.items() if i != 1} == {
        10: ("华东", False, "10"),
        11: ("张江店", True, "11"),
        12: ("徐汇店", True, "12"),
    }
    assert not depts[1].is_store  # the corp root has children: a region
    found = await guides(h)
    assert {u: (g.name, g.status, g.main_department) for u, g in found.items()} == {
        "g1": ("王芳", "active", 11),
        "g2": ("李娜", "active", 12),
        "g3": ("张伟", "active", 11),
    }
    # We cannot know when they joined before guidebot existed: the first sync says "always".
    assert [(m.store_id, m.valid_from, m.valid_to) for m in await h.memberships("g1")] == [
        (11, EARLY, None)
    ]

    report = await h.sync()  # the nightly run changes nothing
    assert (report.joined, report.moved, report.left) == ([], [], [])
    assert len(await h.memberships("g1")) == 1


async def test_the_nightly_sync_notices_moves_and_departures(h):
    await h.control("users", {"userid": "g1", "name": "王芳", "department": [12]})
    await h.control("users/delete", {"userid": "g3"})
    night = h.advance(86400)

    report = await h.sync()
    assert (report.moved, report.left, report.joined) == (["g1"], ["g3"], [])
    assert [(m.store_id, m.valid_to) for m in await h.memberships("g1")] == [
        (11, night),
        (12, None),
    ]
    assert [(m.store_id, m.valid_to) for m in await h.memberships("g3")] == [(11, night)]
    found = await guides(h)
    assert (found["g3"].status, found["g3"].left_at) == ("left", night)


async def test_member_callbacks_fetch_user_get_and_date_memberships_at_the_event(h):
    joined_at = h.advance(3600)
    await h.act(
        "users", {"userid": "g4", "name": "周杰", "department": [12], "notify": True}
    )  # create_user carries only ids since 2022: the name comes from user/get
    assert (await guides(h))["g4"].name == "周杰"
    assert [(m.store_id, m.valid_from) for m in await h.memberships("g4")] == [(12, joined_at)]
    assert [c["query"]["userid"] for c in await h.calls("user/get")] == ["g4"]

    left_at = h.advance(3600)
    await h.act("users/delete", {"userid": "g2", "notify": True})
    g2 = (await guides(h))["g2"]
    assert (g2.status, g2.left_at) == ("left", left_at)
    assert [m.valid_to for m in await h.memberships("g2")] == [left_at]

    # A stale delete_user for someone WeCom still has is not applied.
    await h.deliver(change_contact_xml("delete_user", left_at, UserID="g4"))
    assert (await guides(h))["g4"].status == "active"


async def test_a_userid_rename_moves_relations_and_memberships(h):
    await h.add("g1", "wmc1")
    renamed_at = h.advance(3600)
    await h.control("users", {"userid": "wangfang", "name": "王芳", "department": [11]})
    await h.control("users/delete", {"userid": "g1"})
    await h.deliver(
        change_contact_xml(
            "update_user", renamed_at, UserID="g1", NewUserID="wangfang", Department="11"
        )
    )

    found = await guides(h)
    assert "g1" not in found and found["wangfang"].status == "active"
    assert await h.relation("g1", "wmc1") is None
    assert (await h.relation("wangfang", "wmc1")).status == "active"
    assert [(m.store_id, m.valid_from) for m in await h.memberships("wangfang")] == [(11, EARLY)]
    # The log is append-only: the add stays recorded under the id of its time.
    assert [(e.guide_userid, e.kind) for e in await h.log()] == [("g1", "added")]


async def test_a_rename_wecom_does_not_confirm_moves_nothing(h):
    await h.add("g1", "wmc1")
    at = h.advance(3600)
    # WeCom still answers user/get for g1, and 60111 for wangfang: a stale or stray event.
    await h.deliver(
        change_contact_xml("update_user", at, UserID="g1", NewUserID="wangfang", Department="11")
    )

    found = await guides(h)
    assert "wangfang" not in found and found["g1"].status == "active"
    assert (await h.relation("g1", "wmc1")).status == "active"
    assert await h.relation("wangfang", "wmc1") is None
    assert [(m.store_id, m.valid_to) for m in await h.memberships("g1")] == [(11, None)]
    assert [c["query"]["userid"] for c in await h.calls("user/get")] == ["wangfang"]

    # Both ids are members in WeCom: wangfang is someone else, and g1 keeps what is theirs.
    await h.control("users", {"userid": "wangfang", "name": "王芳二", "department": [12]})
    await h.deliver(
        change_contact_xml("update_user", at, UserID="g1", NewUserID="wangfang", Department="12")
    )
    found = await guides(h)
    assert (found["g1"].status, found["wangfang"].name) == ("active", "王芳二")
    assert (await h.relation("g1", "wmc1")).status == "active"
    assert [m.store_id for m in await h.memberships("wangfang")] == [12]
    assert [c["query"]["userid"] for c in await h.calls("user/get")][1:] == ["wangfang", "g1"]


async def test_party_callbacks_turn_stores_into_regions_and_back(h):
    at = h.advance(60)
    await h.control("departments", {"id": 13, "name": "徐汇一店", "parentid": 12})
    await h.deliver(change_contact_xml("create_party", at, Id=13, Name="徐汇一店", ParentId=12))
    depts = await departments(h)
    assert (depts[13].name, depts[13].is_store) == ("徐汇一店", True)
    assert not depts[12].is_store  # it has a child now: a region

    _, stores = await h.api("GET", "/stores")
    assert [(s["id"], s["region"]["id"]) for s in stores["stores"]] == [(11, 10), (13, 12)]

    gone_at = h.advance(60)
    del h.sim_state.departments[13]  # the simulator has no control endpoint to delete one
    await h.deliver(change_contact_xml("delete_party", gone_at, Id=13))
    depts = await departments(h)
    assert depts[13].deleted_at == gone_at
    assert depts[12].is_store


async def test_syncs_running_at_once_take_turns_instead_of_colliding(h):
    # Several instances start together, each syncing the address book; a new store and its
    # guides appear to all of them at the same moment.
    await h.control("departments", {"id": 13, "name": "静安店", "parentid": 10})
    for userid, name in (("g4", "赵敏"), ("g5", "周杰")):
        await h.control("users", {"userid": userid, "name": name, "department": [13]})

    reports = await asyncio.gather(h.sync(), h.sync(), h.sync())

    assert [r.guides for r in reports] == [5, 5, 5]
    depts = await departments(h)
    assert (depts[13].name, depts[13].is_store) == ("静安店", True)
    found = await guides(h)
    assert {u: g.main_department for u, g in found.items() if u in ("g4", "g5")} == {
        "g4": 13,
        "g5": 13,
    }
    assert [(m.store_id, m.valid_to) for m in await h.memberships("g4")] == [(13, None)]


async def test_a_department_order_up_to_two_to_the_32_syncs_on_every_engine(h):
    """WeCom's order runs over [0, 2^32) (doc 90205 创建部门); a 32-bit column refused
    anything from 2^31 on PostgreSQL, and the whole sync with it."""
    await h.control("departments", {"id": 13, "name": "静安店", "parentid": 10, "order": 2**32 - 1})
    await h.control("departments", {"id": 11, "name": "张江店", "parentid": 10, "order": 2**31})
    await h.control("users", {"userid": "g5", "name": "孙丽", "department": [13]})

    report = await h.sync()
    assert report.joined == ["g5"]
    depts = await departments(h)
    assert (depts[13].sort_order, depts[13].is_store) == (4294967295, True)
    assert depts[11].sort_order == 2**31
    # A change_contact for the department re-reads it the same way.
    await h.control("departments", {"id": 12, "name": "徐汇店", "parentid": 10, "order": 2**32 - 2})
    await h.deliver(change_contact_xml("update_party", h.clock.now(), Id=12))
    assert (await departments(h))[12].sort_order == 4294967294
    # The simulator keeps WeCom's bound.
    answer = await h.control(
        "departments", {"id": 14, "name": "x", "parentid": 10, "order": 2**32}, status=400
    )
    assert "order" in answer["error"]


async def test_a_department_or_member_the_sync_cannot_take_is_parked_and_the_rest_syncs(h):
    """A department whose id departments.id cannot hold (2^31), and a member in it: each used
    to fail the whole sync (on PostgreSQL), every night, so nothing after it synced either."""
    await h.control("departments", {"id": 2**31, "name": "虹口店", "parentid": 10})
    await h.control("departments", {"id": 13, "name": "静安店", "parentid": 10})
    await h.control("users", {"userid": "g5", "name": "孙丽", "department": [2**31]})
    await h.control("users", {"userid": "g6", "name": "周杰", "department": [13]})
    await h.control("users", {"userid": "g1", "name": "王芳", "department": [12]})

    report = await h.sync()
    assert (report.joined, report.moved) == (["g6"], ["g1"])
    assert report.parked == ["department 2147483648", "member g5"]
    assert (await departments(h))[13].is_store
    assert "g5" not in await guides(h)
    async with h.sessions() as session:
        rows = list(await session.scalars(select(ParkedRow).order_by(ParkedRow.id)))
    assert [(r.job, r.table_name, r.row_key) for r in rows] == [
        ("directory-sync", "departments", "2147483648"),
        ("directory-sync", "guides", "g5"),
    ]
    assert rows[0].reason == (
        "ValueError: department id 2147483648 is past departments.id's 2147483647"
    )
    assert rows[0].detail == "department '虹口店' (parent 10)"
    # The next sync meets them again and counts them; the rest is left as it is.
    report = await h.sync()
    assert (report.joined, report.moved, report.left) == ([], [], [])
    async with h.sessions() as session:
        assert [r.count for r in await session.scalars(select(ParkedRow))] == [2, 2]


async def test_a_new_store_finds_a_free_code_when_its_own_are_taken(h):
    """An operator gave 张江店 the code "13" and 徐汇店 "d13": department 13 used to take
    neither and fail the sync on the codes' unique key."""
    for store, code in (("11", "13"), ("12", "d13")):
        status, _ = await h.api("PATCH", f"/stores/{store}", json={"code": code})
        assert status == 200
    await h.control("departments", {"id": 13, "name": "静安店", "parentid": 10})
    await h.sync()
    assert (await departments(h))[13].code == "d13-2"


async def _sync_statements(h) -> tuple[list[str], Any]:
    """The statements a sync ran (an executemany is one), and its report."""
    seen: list[str] = []

    def count(conn, cursor, statement, parameters, context, executemany) -> None:
        seen.append(statement)

    engine = h.sessions.kw["bind"].sync_engine
    event.listen(engine, "before_cursor_execute", count)
    try:
        report = await h.sync()
    finally:
        event.remove(engine, "before_cursor_execute", count)
    return seen, report


async def _statements_of_a_sync(h) -> int:
    seen, report = await _sync_statements(h)
    assert (report.joined, report.moved, report.left) == ([], [], [])
    return len(seen)


async def test_a_sync_that_changes_nothing_costs_the_same_for_three_guides_or_thirty_three(h):
    """The nightly (and start-up) sync of a brand with thousands of guides: it read each guide
    and its memberships with a statement each, two a guide, holding SQLite's one writer."""
    await h.sync()
    few = await _statements_of_a_sync(h)
    for n in range(30):
        await h.control("users", {"userid": f"g{100 + n}", "name": f"导购{n}", "department": [12]})
    await h.sync()
    assert await _statements_of_a_sync(h) == few


async def test_new_guides_and_stores_are_not_asked_for_one_by_one(h):
    """A brand's first sync (500 stores, 3,000 guides) asked the database, for each new store
    and each new guide, whether it was there, and wrote each guide with a flush of its own:
    7.7 s on SQLite, holding its one writer; each new store also asked whether its code was
    taken, and was written with a flush of its own. What the sync read for a batch says what is
    new, one read says which codes are taken, and the batch's stores and guides are written
    together: three new guides in three new stores cost the same reads and inserts as thirty in
    thirty."""

    async def first_sync_of(first: int, count: int) -> list[str]:
        for n in range(first, first + count):
            await h.control("departments", {"id": n, "name": f"新店{n}", "parentid": 10})
            await h.control("users", {"userid": f"g{n}", "name": f"导购{n}", "department": [n]})
        seen, report = await _sync_statements(h)
        assert sorted(report.joined) == sorted(f"g{n}" for n in range(first, first + count))
        return seen

    await h.sync()
    few, many = await first_sync_of(100, 3), await first_sync_of(200, 30)
    kinds = ("SELECT guides", "SELECT departments", "SELECT count(*)", "INSERT INTO guides")
    for kind in (*kinds, "INSERT INTO departments"):
        assert sum(s.startswith(kind) for s in few) == sum(s.startswith(kind) for s in many), kind


async def test_a_large_sync_lets_the_event_loop_serve_while_it_writes(h):
    """On SQLite the sync's statements run on the event loop's own thread (the write lock is
    held until it commits): a brand's thousands of stores and guides in one go held the loop,
    and every request the server had, for most of a second. The loop runs between chunks.
    Counted in rows and statements, not seconds: the most any one turn of the loop saw."""
    state = h.sim_state
    for n in range(6 * SYNC_CHUNK):
        state.upsert_department(1000 + n, f"新店{n}", 10)
        state.upsert_member(Member(userid=f"m{n}", name=f"导购{n}", department=[1000 + n]))
    work = 0

    def count(conn, cursor, statement, parameters, context, executemany) -> None:
        nonlocal work
        rows = executemany and parameters and isinstance(parameters[0], (tuple, dict))
        work += len(parameters) if rows else 1  # an executemany of rows: one each

    most = 0

    async def turns() -> None:
        nonlocal most
        seen = work
        while True:
            await asyncio.sleep(0)
            most, seen = max(most, work - seen), work

    engine = h.sessions.kw["bind"].sync_engine
    event.listen(engine, "before_cursor_execute", count)
    watching = asyncio.create_task(turns())
    try:
        report = await h.sync()
    finally:
        watching.cancel()
        event.remove(engine, "before_cursor_execute", count)
    assert (report.stores, len(report.joined)) == (2 + 6 * SYNC_CHUNK, 6 * SYNC_CHUNK)
    assert most <= 3 * SYNC_CHUNK, (most, work)
