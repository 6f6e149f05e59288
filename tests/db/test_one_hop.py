"""SQLite statements in one trip to aiosqlite's thread (guidebot.db.one_hop).

The cursor no longer holds a live sqlite3 cursor, so what SQLAlchemy reads from it (rows,
description, rowcount, lastrowid, executemany's rowcount, errors) is what the thread saw.
Inside `inline_statements()` the main engine's statements in a transaction run on the loop's
thread, and read the same; BEGIN (IMMEDIATE: it may wait for the lock), COMMIT (the WAL's
fsync), ROLLBACK and the side engine's statements stay on the thread.
"""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import Column, Integer, MetaData, String, Table, insert, select, text, update
from sqlalchemy.exc import IntegrityError

from guidebot.db.engine import create_engine
from guidebot.db.one_hop import OneHopConnection, inline_statements

metadata = MetaData()
items = Table(
    "items",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String(20), unique=True),
)


@pytest.fixture
async def engine(tmp_path):
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'one-hop.db'}")
    async with engine.begin() as conn:
        await conn.run_sync(metadata.create_all)
    yield engine
    await engine.dispose()


async def test_the_engine_uses_one_hop_connections(engine):
    async with engine.connect() as conn:
        raw = await conn.get_raw_connection()
        assert isinstance(raw.dbapi_connection, OneHopConnection)


async def test_rows_description_rowcount_and_lastrowid_are_the_statements(engine):
    async with engine.begin() as conn:
        first = await conn.execute(insert(items).values(name="a"))
        assert first.inserted_primary_key == (1,)
        returned = await conn.execute(insert(items).values(name="b").returning(items.c.id))
        assert returned.scalar_one() == 2
        many = await conn.execute(insert(items), [{"name": "c"}, {"name": "d"}, {"name": "e"}])
        assert many.rowcount == 3
        changed = await conn.execute(
            update(items).where(items.c.id > 3).values(name=items.c.name + "!")
        )
        assert changed.rowcount == 2
        rows = (await conn.execute(select(items.c.id, items.c.name).order_by(items.c.id))).all()
        assert [tuple(r) for r in rows] == [(1, "a"), (2, "b"), (3, "c"), (4, "d!"), (5, "e!")]
        result = await conn.execute(text("SELECT name AS label FROM items WHERE id = 1"))
        assert list(result.keys()) == ["label"]
        assert result.scalar_one() == "a"
        empty = await conn.execute(select(items).where(items.c.id == 99))
        assert empty.first() is None


async def test_an_error_on_the_thread_is_the_drivers_error_and_the_transaction_rolls_back(engine):
    with pytest.raises(IntegrityError):
        async with engine.begin() as conn:
            await conn.execute(insert(items).values(name="x"))
            await conn.execute(insert(items).values(name="x"))
    async with engine.connect() as conn:
        assert (await conn.execute(select(items))).all() == []


async def _thread_of_statements(conn) -> str:
    """Which thread runs this connection's statements: a SQL function that says."""
    raw = (await conn.get_raw_connection()).driver_connection

    def thread_name() -> str:
        return "loop" if threading.current_thread() is threading.main_thread() else "other"

    await raw.create_function("thread_name", 0, thread_name)
    return thread_name


async def _where(conn) -> str:
    return (await conn.execute(text("SELECT thread_name()"))).scalar_one()


async def test_inline_statements_run_in_a_transaction_on_the_loops_thread(engine):
    async with engine.connect() as conn:
        await _thread_of_statements(conn)
        await conn.commit()
        assert await _where(conn) == "other"  # not asked for: the thread, as always
        await conn.commit()
        with inline_statements():
            await conn.begin()  # BEGIN IMMEDIATE: on the thread (it may wait for the lock)
            assert await _where(conn) == "loop"
            # Rows, rowcount, lastrowid and errors read as they do from the thread.
            returned = await conn.execute(insert(items).values(name="a").returning(items.c.id))
            assert returned.scalar_one() == 1
            many = await conn.execute(insert(items), [{"name": "b"}, {"name": "c"}])
            assert many.rowcount == 2
            with pytest.raises(IntegrityError):
                await conn.execute(insert(items).values(name="a"))
            await conn.commit()  # the WAL's fsync: on the thread
        assert await _where(conn) == "other"  # no longer asked for
        await conn.rollback()
    async with engine.connect() as conn:
        names = (await conn.execute(select(items.c.name).order_by(items.c.id))).scalars()
        assert list(names) == ["a", "b", "c"]


async def test_the_side_engine_never_runs_inline(tmp_path):
    side = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'side.db'}", side=True)
    try:
        with inline_statements():
            async with side.begin() as conn:
                await _thread_of_statements(conn)
                assert await _where(conn) == "other"
    finally:
        await side.dispose()


async def test_each_connection_keeps_a_page_cache_sized_for_a_years_indexes(engine):
    from guidebot.db.engine import SQLITE_CACHE_KIB

    async with engine.connect() as conn:
        assert (await conn.exec_driver_sql("PRAGMA cache_size")).scalar() == -SQLITE_CACHE_KIB
