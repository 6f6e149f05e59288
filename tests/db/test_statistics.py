"""The planner's statistics of tables that fill up (guidebot.db.statistics), on PostgreSQL:
a table is analysed once it has seen as many changes as it had rows, and not before.

The PostgreSQL tests work in a schema of their own, so that no other test's rows (nor the
emptying between tests, whose counts reach the statistics up to 10 s later) count."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from guidebot.db import statistics
from guidebot.db.engine import create_engine, create_session_factory

FEWEST = statistics.FEWEST_CHANGES


@pytest.fixture
async def sessions(database_url):
    """Sessions on a schema holding one empty table, `filled`."""
    if database_url.startswith("sqlite"):
        engine = create_engine(database_url)
        schema = None
    else:
        schema = f"statistics_{uuid.uuid4().hex[:8]}"
        settings = {"server_settings": {"search_path": schema}}
        engine = create_async_engine(database_url, connect_args=settings)
    async with engine.begin() as conn:
        if schema:
            await conn.execute(text(f"CREATE SCHEMA {schema}"))
        await conn.execute(text("CREATE TABLE filled (n integer)"))
    try:
        yield create_session_factory(engine)
    finally:
        if schema:
            async with engine.begin() as conn:
                await conn.execute(text(f"DROP SCHEMA {schema} CASCADE"))
        await engine.dispose()


async def fill(sessions, count: int) -> None:
    async with sessions() as session, session.begin():
        await session.execute(
            text("INSERT INTO filled (n) VALUES (:n)"), [{"n": n} for n in range(count)]
        )
        if session.bind.dialect.name == "postgresql":
            # The counts reach pg_stat_user_tables when the backend next reports: now, not in
            # up to 10 s.
            await session.execute(text("SELECT pg_stat_force_next_flush()"))


CHANGES = (
    "SELECT n_mod_since_analyze FROM pg_stat_user_tables "
    "WHERE relname = 'filled' AND schemaname = current_schema()"
)
ROWS = "SELECT reltuples FROM pg_class WHERE oid = format('%I.filled', current_schema())::regclass"


async def scalar(sessions, sql: str):
    async with sessions() as session:
        return await session.scalar(text(sql))


async def changes_seen(sessions) -> int:
    return await scalar(sessions, CHANGES)


async def filled(sessions, count: int) -> None:
    """`count` more rows, once the statistics count them."""
    before = await changes_seen(sessions)
    await fill(sessions, count)
    async with asyncio.timeout(20):
        while await changes_seen(sessions) < before + count:  # noqa: ASYNC110 (a count in PostgreSQL)
            await asyncio.sleep(0.05)


async def rows_known(sessions) -> float:
    return await scalar(sessions, ROWS)


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
async def test_a_table_is_analysed_once_it_has_seen_as_many_changes_as_it_had_rows(sessions):
    await filled(sessions, FEWEST - 1)
    assert await statistics.analyse_grown_tables(sessions) == []
    assert await rows_known(sessions) == -1  # never analysed

    await filled(sessions, 1)
    assert await statistics.analyse_grown_tables(sessions) == ["filled"]
    assert await rows_known(sessions) == FEWEST
    assert await changes_seen(sessions) == 0

    # As many rows again, less one, is not yet as many changes as the table had rows...
    await filled(sessions, FEWEST - 1)
    assert await statistics.analyse_grown_tables(sessions) == []
    # ...and one more is.
    await filled(sessions, 1)
    assert await statistics.analyse_grown_tables(sessions) == ["filled"]
    assert await rows_known(sessions) == 2 * FEWEST


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
async def test_one_instance_analyses_at_a_time(sessions):
    await filled(sessions, FEWEST)
    async with sessions() as other, other.begin():  # another instance's run, holding the lock
        await other.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": statistics._LOCK_KEY})
        assert await statistics.analyse_grown_tables(sessions) == []
    assert await statistics.analyse_grown_tables(sessions) == ["filled"]


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_sqlite_is_left_alone(sessions):
    await fill(sessions, 2 * FEWEST)
    assert await statistics.analyse_grown_tables(sessions) == []
    async with sessions() as session:  # no ANALYZE ran: SQLite keeps no statistics table
        found = await session.scalar(
            text("SELECT count(*) FROM sqlite_master WHERE name = 'sqlite_stat1'")
        )
    assert found == 0
