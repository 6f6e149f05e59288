"""The planner's statistics of tables that fill up (guidebot.db.statistics), on PostgreSQL:
a table is analysed once it has seen as many changes as it had rows, and not before."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest
from sqlalchemy import insert, text

from guidebot.db import statistics
from guidebot.db.engine import create_engine, create_session_factory
from guidebot.intake.models import InboxEvent, InboxStatus

NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)


@pytest.fixture
async def sessions(database_url):
    engine = create_engine(database_url)
    yield create_session_factory(engine)
    await engine.dispose()


async def add_events(sessions, first: int, count: int) -> None:
    async with sessions() as session, session.begin():
        await session.execute(
            insert(InboxEvent.__table__),
            [
                {
                    "dedupe_key": f"k{n}",
                    "kind": "test",
                    "payload": "<xml/>",
                    "received_at": NOW,
                    "status": InboxStatus.PENDING,
                    "attempts": 0,
                    "next_attempt_at": NOW,
                }
                for n in range(first, first + count)
            ],
        )
        if session.bind.dialect.name == "postgresql":
            # The counts reach pg_stat_user_tables when the backend next reports: now, not in
            # up to 10 s.
            await session.execute(text("SELECT pg_stat_force_next_flush()"))


async def changes_seen(sessions, table: str) -> int:
    async with sessions() as session:
        return await session.scalar(
            text("SELECT n_mod_since_analyze FROM pg_stat_user_tables WHERE relname = :t"),
            {"t": table},
        )


async def until_seen(sessions, table: str, changes: int) -> None:
    async with asyncio.timeout(20):
        while await changes_seen(sessions, table) < changes:  # noqa: ASYNC110 (a count in PostgreSQL)
            await asyncio.sleep(0.05)


async def analysed(sessions, table: str) -> int:
    async with sessions() as session:
        return await session.scalar(
            text("SELECT analyze_count FROM pg_stat_user_tables WHERE relname = :t"), {"t": table}
        )


async def settled(sessions) -> None:
    """Every table other tests' rows left grown is analysed, so only this test's show."""
    while await statistics.analyse_grown_tables(sessions):
        pass


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
async def test_a_table_is_analysed_once_it_has_seen_as_many_changes_as_it_had_rows(sessions):
    await settled(sessions)
    few = statistics.FEWEST_CHANGES - 1
    await add_events(sessions, 0, few)
    await until_seen(sessions, "inbox_events", few)
    assert await statistics.analyse_grown_tables(sessions) == []

    await add_events(sessions, few, 1)
    await until_seen(sessions, "inbox_events", few + 1)
    before = await analysed(sessions, "inbox_events")
    assert await statistics.analyse_grown_tables(sessions) == ["inbox_events"]
    assert await analysed(sessions, "inbox_events") == before + 1
    async with sessions() as session:  # the planner now knows the rows
        rows = await session.scalar(
            text("SELECT reltuples FROM pg_class WHERE relname = 'inbox_events'")
        )
    assert rows == statistics.FEWEST_CHANGES

    # As many rows again (less one) is not yet as many changes as the table had rows.
    more = statistics.FEWEST_CHANGES - 1
    await add_events(sessions, 2 * statistics.FEWEST_CHANGES, more)
    await until_seen(sessions, "inbox_events", more)
    assert await statistics.analyse_grown_tables(sessions) == []


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
async def test_one_instance_analyses_at_a_time(sessions):
    await settled(sessions)
    await add_events(sessions, 0, statistics.FEWEST_CHANGES)
    await until_seen(sessions, "inbox_events", statistics.FEWEST_CHANGES)
    async with sessions() as other, other.begin():  # another instance's run, holding the lock
        await other.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": statistics._LOCK_KEY})
        assert await statistics.analyse_grown_tables(sessions) == []
    assert await statistics.analyse_grown_tables(sessions) == ["inbox_events"]


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_sqlite_is_left_alone(sessions):
    await add_events(sessions, 0, 2 * statistics.FEWEST_CHANGES)
    assert await statistics.analyse_grown_tables(sessions) == []
    async with sessions() as session:  # no ANALYZE ran: SQLite keeps no statistics table
        found = await session.scalar(
            text("SELECT count(*) FROM sqlite_master WHERE name = 'sqlite_stat1'")
        )
    assert found == 0
