"""No aiosqlite thread outlives the app (or engine) that started it, whichever way it stops.

aiosqlite runs each connection on its own thread, whose last act is to answer a future on the
event loop. Where aiosqlite stops a thread without waiting for it (a connect that fails or is
cancelled, a connection still checked out), a loop closed first makes the thread raise
"Event loop is closed" into the next test: test_health.py failed so about 1 run in 13.

A logging handler on aiosqlite's own debug line holds the thread as it starts to stop, as a
loaded machine would; each test then checks that no thread is left once the app has stopped.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Iterator

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from guidebot.app import create_app
from guidebot.db.engine import create_engine
from tests.support import make_settings


def aiosqlite_threads() -> set[threading.Thread]:
    return {t for t in threading.enumerate() if "_connection_worker_thread" in t.name}


class _SlowStop(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        if "close_and_stop" in record.getMessage():
            time.sleep(0.3)


@pytest.fixture
def slow_stop() -> Iterator[None]:
    logger = logging.getLogger("aiosqlite")
    handler, level = _SlowStop(), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


async def test_an_unreachable_database_leaves_no_thread_after_the_app_stops(
    aiohttp_client, tmp_path, slow_stop
):
    before = aiosqlite_threads()
    missing = tmp_path / "no-such-dir" / "guidebot.db"  # SQLite cannot create it here
    client = await aiohttp_client(
        create_app(make_settings(f"sqlite+aiosqlite:///{missing}"), run_workers=False)
    )
    assert (await client.get("/readyz")).status == 503
    assert (await client.get("/readyz")).status == 503
    await client.close()
    assert aiosqlite_threads() - before == set()


async def test_a_connect_cancelled_at_shutdown_leaves_no_thread(tmp_path, slow_stop):
    before = aiosqlite_threads()
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'guidebot.db'}")

    async def use() -> None:
        async with engine.connect() as conn:
            await conn.execute(text("SELECT 1"))

    task = asyncio.create_task(use())
    await asyncio.sleep(0)  # the connect is under way on aiosqlite's thread
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await engine.dispose()
    assert aiosqlite_threads() - before == set()


async def test_a_connection_still_checked_out_is_closed_when_the_engine_goes(tmp_path, slow_stop):
    before = aiosqlite_threads()
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'guidebot.db'}")
    conn = await engine.connect()  # a task that never gave its connection back
    await conn.execute(text("SELECT 1"))
    await engine.dispose()
    assert aiosqlite_threads() - before == set()
    with pytest.raises(DBAPIError):  # what is left of it no longer works, and says so
        await conn.execute(text("SELECT 1"))
    await conn.close()
