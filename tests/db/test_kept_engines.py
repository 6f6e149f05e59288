"""The PostgreSQL engines tests/conftest.py keeps from one test's app to the next (`_KeptEngines`):
the next app is served by the same backends, and an engine that did not come back as it went out
is closed as before, so no test sees what another left behind."""

from __future__ import annotations

import asyncio

from sqlalchemy import event, text

from guidebot.db.engine import create_engine
from tests.conftest import _KeptEngines, _LentEngine


async def _backend(engine) -> int:
    async with engine.connect() as conn:
        return await conn.scalar(text("SELECT pg_backend_pid()"))


def _keeping(url: str) -> _KeptEngines:
    kept = _KeptEngines()
    kept.urls.add(url)
    kept.loop = asyncio.get_running_loop()
    return kept


async def test_an_engine_given_back_as_it_came_serves_the_next_app_on_its_backend(
    empty_migrated_pg,
):
    url = empty_migrated_pg()
    kept = _keeping(url)
    try:
        first = kept.create(create_engine, url)
        assert isinstance(first, _LentEngine)
        backend = await _backend(first)
        await first.dispose()  # as the app's runtime does at its end
        second = kept.create(create_engine, url)
        assert await _backend(second) == backend
        await second.dispose()
        # The token cache's side engine is kept apart from the main one.
        side = kept.create(create_engine, url, side=True)
        assert await _backend(side) != backend
        await side.dispose()
    finally:
        await kept.close()


async def test_a_watched_engine_or_one_with_a_connection_out_is_closed(empty_migrated_pg):
    url = empty_migrated_pg()
    kept = _keeping(url)
    try:
        watched = kept.create(create_engine, url)
        backend = await _backend(watched)
        event.listen(watched.sync_engine, "before_cursor_execute", lambda *args: None)
        await watched.dispose()
        held = kept.create(create_engine, url)
        assert await _backend(held) != backend  # the watched one was closed, not lent again
        backend = await _backend(held)
        conn = await held.connect()
        await held.dispose()
        await conn.invalidate()  # closed now: the disposed engine's pool would keep it
        await conn.close()
        after = kept.create(create_engine, url)
        assert await _backend(after) != backend
        await after.dispose()
    finally:
        await kept.close()


async def test_only_the_emptied_database_on_the_tests_loop_is_kept(empty_migrated_pg, tmp_path):
    url = empty_migrated_pg()
    kept = _keeping(url)
    other = kept.create(create_engine, f"sqlite+aiosqlite:///{tmp_path / 'other.db'}")
    assert not isinstance(other, _LentEngine)
    await other.dispose()
    sized = kept.create(create_engine, url, pool_size=2)
    assert not isinstance(sized, _LentEngine)
    await sized.dispose()
    kept.loop = None  # another loop's engine would be useless on this one
    elsewhere = kept.create(create_engine, url)
    assert not isinstance(elsewhere, _LentEngine)
    await elsewhere.dispose()
