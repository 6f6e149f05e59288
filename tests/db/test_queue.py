"""The leased queue (guidebot.db.queue) on both engines: claim under a lease, release, reap.

It runs over the inbox's table, the simplest of the two it serves; the inbox worker and the
SOP engine have their own tests of what they build on it.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import insert, select

from guidebot.db.engine import create_engine, create_session_factory
from guidebot.db.queue import LeasedQueue, Strays
from guidebot.intake.models import InboxEvent, InboxStatus

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
LEASE = timedelta(minutes=2)
TABLE = InboxEvent.__table__
QUEUE = LeasedQueue(TABLE, pending=InboxStatus.PENDING, claimed=InboxStatus.PROCESSING)


@pytest.fixture
async def sessions(database_url):
    engine = create_engine(database_url)
    yield create_session_factory(engine)
    await engine.dispose()


async def add_rows(sessions, count: int, *, due: datetime = NOW) -> list[int]:
    async with sessions() as session, session.begin():
        await session.execute(
            insert(TABLE),
            [
                {
                    "dedupe_key": f"k{n}",
                    "kind": "test",
                    "payload": "<xml/>",
                    "received_at": due,
                    "status": InboxStatus.PENDING,
                    "attempts": 0,
                    "next_attempt_at": due,
                }
                for n in range(count)
            ],
        )
        return list(await session.scalars(select(TABLE.c.id).order_by(TABLE.c.id)))


async def rows(sessions) -> dict[int, tuple]:
    async with sessions() as session:
        found = await session.execute(
            select(
                TABLE.c.id,
                TABLE.c.status,
                TABLE.c.lease_owner,
                TABLE.c.lease_until,
                TABLE.c.attempts,
            )
        )
        return {
            row.id: (row.status, row.lease_owner, row.lease_until, row.attempts) for row in found
        }


async def claim(sessions, owner: str, *, now: datetime = NOW, **kwargs) -> list[int]:
    async with sessions() as session, session.begin():
        claimed = await QUEUE.claim(session, owner=owner, now=now, lease=LEASE, **kwargs)
    return sorted(row[0] for row in claimed)


async def test_claim_takes_due_pending_rows_under_a_lease_and_counts_an_attempt(sessions):
    ids = await add_rows(sessions, 5)
    got = await claim(sessions, "a", order_by=(TABLE.c.id,), limit=3)
    assert got == ids[:3]
    state = await rows(sessions)
    for id_ in got:
        assert state[id_] == (InboxStatus.PROCESSING, "a", NOW + LEASE, 1)
    assert state[ids[4]] == (InboxStatus.PENDING, None, None, 0)
    # Claimed rows are nobody else's; the rest are.
    assert await claim(sessions, "b") == ids[3:]
    assert await claim(sessions, "c") == []


async def test_claim_keeps_to_the_where_clause_and_returns_what_is_asked(sessions):
    ids = await add_rows(sessions, 3)
    async with sessions() as session, session.begin():
        claimed = await QUEUE.claim(
            session,
            owner="a",
            now=NOW,
            lease=LEASE,
            where=(TABLE.c.id == ids[1],),
            returning=(TABLE.c.id, TABLE.c.attempts, TABLE.c.lease_until),
        )
    assert [tuple(row) for row in claimed] == [(ids[1], 1, NOW + LEASE)]


async def test_release_gives_back_only_the_owners_rows(sessions):
    ids = await add_rows(sessions, 3)
    await claim(sessions, "a")
    async with sessions() as session, session.begin():
        assert await QUEUE.release(session, ids[:2], owner="b", now=NOW) == 0
        assert await QUEUE.release(session, [ids[0]], owner="a", now=NOW) == 1
        assert await QUEUE.release(session, [ids[1]], owner="a", now=NOW, undo_attempt=True) == 1
        assert await QUEUE.release(session, [], owner="a", now=NOW) == 0
    state = await rows(sessions)
    assert state[ids[0]] == (InboxStatus.PENDING, None, None, 1)
    assert state[ids[1]] == (InboxStatus.PENDING, None, None, 0)
    assert state[ids[2]][:2] == (InboxStatus.PROCESSING, "a")


async def test_release_writes_the_values_given(sessions):
    ids = await add_rows(sessions, 1)
    await claim(sessions, "a")
    later = NOW + timedelta(minutes=5)
    async with sessions() as session, session.begin():
        await QUEUE.release(session, ids, owner="a", now=NOW, values={"next_attempt_at": later})
    async with sessions() as session:
        assert await session.scalar(select(TABLE.c.next_attempt_at)) == later


async def test_reap_takes_back_lapsed_claims_only(sessions):
    ids = await add_rows(sessions, 2)
    await claim(sessions, "a", where=(TABLE.c.id == ids[0],))
    await claim(sessions, "b", where=(TABLE.c.id == ids[1],), now=NOW + timedelta(minutes=1))
    async with sessions() as session, session.begin():
        assert await QUEUE.reap(session, NOW + LEASE) == 0  # not yet lapsed: lease_until == now
        assert await QUEUE.reap(session, NOW + LEASE + timedelta(seconds=1)) == 1
    state = await rows(sessions)
    assert state[ids[0]] == (InboxStatus.PENDING, None, None, 1)
    assert state[ids[1]][:2] == (InboxStatus.PROCESSING, "b")


async def test_reap_everything_takes_back_every_claim(sessions):
    await add_rows(sessions, 3)
    await claim(sessions, "a", limit=2)
    async with sessions() as session, session.begin():
        assert await QUEUE.reap(session, NOW, everything=True) == 2
    assert {state[0] for state in (await rows(sessions)).values()} == {InboxStatus.PENDING}


async def test_reap_stranded_takes_back_an_owners_old_claims(sessions):
    ids = await add_rows(sessions, 3)
    await claim(sessions, "a", where=(TABLE.c.id == ids[0],))
    await claim(sessions, "a", where=(TABLE.c.id == ids[1],), now=NOW + timedelta(seconds=8))
    await claim(sessions, "b", where=(TABLE.c.id == ids[2],))
    stranded = (LEASE, timedelta(seconds=10))
    async with sessions() as session, session.begin():
        now = NOW + timedelta(seconds=12)
        assert await QUEUE.reap(session, now, owner="a", stranded=stranded) == 1
    state = await rows(sessions)
    assert state[ids[0]][0] == InboxStatus.PENDING
    assert state[ids[1]][:2] == (InboxStatus.PROCESSING, "a")  # only 4 s old
    assert state[ids[2]][:2] == (InboxStatus.PROCESSING, "b")  # someone else's


async def test_concurrent_claimers_never_take_one_row_twice(sessions):
    ids = await add_rows(sessions, 200)

    async def claimer(owner: str) -> list[int]:
        taken: list[int] = []
        while got := await claim(sessions, owner, order_by=(TABLE.c.id,), limit=7):
            taken += got
            await asyncio.sleep(0)
        return taken

    results = await asyncio.gather(*(claimer(f"c{n}") for n in range(4)))
    every = [id_ for taken in results for id_ in taken]
    assert sorted(every) == ids


def test_strays_hand_back_what_was_taken_and_keep_what_came_since():
    strays = Strays()
    assert not strays
    strays.add("a", [1, 2])
    strays.add("a", [3], attempted=False)
    strays.add("b", [4])
    taken = strays.take()
    assert taken == {"a": {1: True, 2: True, 3: False}, "b": {4: True}}
    strays.add("a", [5])  # a failure while handing back
    strays.forget(taken)
    assert strays.take() == {"a": {5: True}}
    strays.forget(strays.take())
    assert not strays


async def test_on_sqlite_what_is_named_by_id_is_found_by_id(sessions):
    """SQLite without statistics would find `id IN (a, b) AND status = 'pending'` through the
    status index, walking every pending row: for sop_tasks, every future step of every
    customer. Claims and releases by id say NOT INDEXED, which leaves SQLite the rowid."""
    if sessions.kw["bind"].dialect.name != "sqlite":
        pytest.skip("PostgreSQL plans by its statistics")
    from sqlalchemy import event

    ids = await add_rows(sessions, 6)
    seen: list[tuple[str, tuple]] = []

    def record(conn, cursor, statement, parameters, context, executemany):
        if "inbox_events" in statement and "id IN" in statement:
            seen.append((statement, parameters))

    engine = sessions.kw["bind"]
    event.listen(engine.sync_engine, "before_cursor_execute", record)
    try:
        assert await claim(sessions, "a", ids=ids[:3]) == ids[:3]
        async with sessions() as session, session.begin():
            assert await QUEUE.release(session, ids[:2], owner="a", now=NOW) == 2
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", record)
    assert len(seen) == 3  # the claim's pick and update, the release
    async with engine.connect() as connection:
        for statement, parameters in seen:
            plan = await connection.exec_driver_sql(f"EXPLAIN QUERY PLAN {statement}", parameters)
            steps = [row[3] for row in plan]
            assert steps[0].startswith("SEARCH inbox_events USING INTEGER PRIMARY KEY"), (
                statement,
                steps,
            )
