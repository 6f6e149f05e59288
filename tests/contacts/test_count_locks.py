"""Each guide's active customers (`guide_customer_counts`) under concurrent writers.

Two opposite transfers at once, customer A from g1 to g2 while customer B goes from g2 to g1,
interleaved so that each transaction has changed its first guide's relation before the other
changes its second. When the triggers updated a guide's counts row in each statement (0028),
each transaction held one guide's row and waited for the other's: PostgreSQL found the
deadlock after a second and aborted one of them. The counts are now changed at commit, in
one order for every transaction (0029), so both commit and the counts are right.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest
from sqlalchemy import func, insert, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from guidebot.contacts import counts
from guidebot.contacts.models import Customer, Department, Guide, GuideCustomerCount, Relation
from guidebot.db.engine import create_engine

NOW = datetime(2026, 5, 1, 4, 0, tzinfo=UTC)


@pytest.fixture
async def engine(database_url):
    engine = create_engine(database_url)
    if engine.dialect.name == "sqlite":
        await engine.dispose()
        pytest.skip("SQLite has one writer: two transactions never hold row locks at once")
    yield engine
    await engine.dispose()


def _relation(guide: str, ext: str, status: str = "active") -> dict:
    return dict(
        guide_userid=guide,
        external_userid=ext,
        status=status,
        store_id=11,
        created_at=NOW,
        last_event_at=NOW,
        updated_at=NOW,
    )


async def _scene(engine) -> None:
    """g1 has customer A, g2 customer B, both in store 11."""
    async with engine.begin() as conn:
        await conn.execute(
            insert(Department),
            [
                dict(id=1, name="总部", parent_id=None, is_store=False, code="HQ", updated_at=NOW),
                dict(id=11, name="张江店", parent_id=1, is_store=True, code="S11", updated_at=NOW),
            ],
        )
        await conn.execute(
            insert(Guide),
            [dict(userid=g, name=g, main_department=11, updated_at=NOW) for g in ("g1", "g2")],
        )
        await conn.execute(
            insert(Customer),
            [dict(external_userid=e, created_at=NOW, updated_at=NOW) for e in ("wmA", "wmB")],
        )
        await conn.execute(insert(Relation), [_relation("g1", "wmA"), _relation("g2", "wmB")])


async def _counts(engine) -> dict[str, int]:
    async with engine.connect() as conn:
        rows = await conn.execute(
            select(GuideCustomerCount.guide_userid, GuideCustomerCount.active)
        )
        return {guide: active for guide, active in rows if active}


def _hand_over(guide: str, ext: str):
    """The handover's relation ends `transferred` (handover.complete_transfer's first write)."""
    return (
        update(Relation)
        .where(Relation.guide_userid == guide, Relation.external_userid == ext)
        .values(status="transferred")
    )


async def test_two_opposite_transfers_at_once_both_commit(engine):
    await _scene(engine)
    assert await _counts(engine) == {"g1": 1, "g2": 1}
    async with engine.connect() as one, engine.connect() as two, asyncio.timeout(30):
        for conn in (one, two):  # no waiting a second for the deadlock detector either way
            await conn.execute(text("SET deadlock_timeout = '100ms'"))
            await conn.commit()
        await one.execute(_hand_over("g1", "wmA"))  # g1's count
        await two.execute(_hand_over("g2", "wmB"))  # g2's count
        # Each now takes its customer to the other guide: under 0028, one waited on g2's
        # counts row, held by two, and two then on g1's, held by one.
        first = asyncio.create_task(one.execute(insert(Relation), [_relation("g2", "wmA")]))
        await asyncio.sleep(0.3)  # one is at its second statement (or waiting in it)
        second = asyncio.create_task(two.execute(insert(Relation), [_relation("g1", "wmB")]))
        await asyncio.gather(first, second)
        await asyncio.gather(one.commit(), two.commit())
    assert await _counts(engine) == {"g1": 1, "g2": 1}


async def test_many_transfers_both_ways_at_once_keep_the_counts(engine):
    """Twenty pairs of opposite transfers, each pair's transactions committing together: the
    counts end equal to a count of the relations."""
    await _scene(engine)
    async with engine.begin() as conn:
        await conn.execute(
            insert(Customer),
            [dict(external_userid=f"wm{n}", created_at=NOW, updated_at=NOW) for n in range(40)],
        )
        await conn.execute(
            insert(Relation),
            [_relation("g1" if n % 2 else "g2", f"wm{n}") for n in range(40)],
        )

    async def transfer(ext: str, source: str, target: str) -> None:
        async with engine.begin() as conn:
            await conn.execute(_hand_over(source, ext))
            await asyncio.sleep(0.01)  # the other transfer of the pair writes meanwhile
            await conn.execute(insert(Relation), [_relation(target, ext)])

    async with asyncio.timeout(60):
        for n in range(0, 40, 2):
            await asyncio.gather(transfer(f"wm{n + 1}", "g1", "g2"), transfer(f"wm{n}", "g2", "g1"))
    truth = await _truth(engine)
    assert truth == {"g1": 21, "g2": 21}
    assert await _counts(engine) == truth


@pytest.fixture
async def any_engine(database_url):
    engine = create_engine(database_url)
    yield engine
    await engine.dispose()


async def _truth(engine) -> dict[str, int]:
    async with engine.connect() as conn:
        rows = await conn.execute(
            select(Relation.guide_userid, func.count())
            .where(Relation.status == "active")
            .group_by(Relation.guide_userid)
        )
        return dict(rows.all())


async def test_a_rolled_back_savepoint_and_a_recount_count_nothing_twice(any_engine):
    engine = any_engine
    await _scene(engine)
    async with engine.begin() as conn:
        await conn.execute(_hand_over("g1", "wmA"))
        await conn.execute(insert(Relation), [_relation("g2", "wmA")])
        savepoint = await conn.begin_nested()
        await conn.execute(_hand_over("g2", "wmB"))
        await savepoint.rollback()
    assert await _counts(engine) == await _truth(engine) == {"g2": 2}
    async with engine.begin() as conn:
        await conn.execute(_hand_over("g2", "wmB"))
        await conn.execute(insert(Relation), [_relation("g1", "wmB")])
        async with AsyncSession(bind=conn) as session:
            await counts.recount(session)
        await conn.execute(
            insert(Customer), [dict(external_userid="wmC", created_at=NOW, updated_at=NOW)]
        )
        await conn.execute(insert(Relation), [_relation("g1", "wmC")])
    assert await _counts(engine) == await _truth(engine) == {"g1": 2, "g2": 1}
