"""The inbox writer answers in time even when the database hangs, and never holds too much;
one entry the database refuses fails alone, never the callbacks batched with it.

The hang is real: another connection holds SQLite's write lock (a backup, a stray `sqlite3`
session), so the writer's commit waits in SQLite's busy handler.
"""

from __future__ import annotations

import asyncio
import dataclasses
import shutil
import sqlite3
import time
from datetime import UTC, datetime

import pytest
from sqlalchemy import event, func, select

from guidebot.clock import FakeClock
from guidebot.db.engine import create_engine
from guidebot.intake.inbox import InboxEntry, InboxRefused, InboxUnavailable, InboxWriter
from guidebot.intake.models import InboxEvent
from guidebot.wecom.events import parse_event
from tests.support import event_xml

START = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)


def entry(customer: str) -> InboxEntry:
    xml = event_xml("add_external_contact", "g1", customer, 100)
    return InboxEntry.of(parse_event(xml), xml)


@pytest.fixture
async def sqlite_db(tmp_path, migrated_sqlite):
    path = tmp_path / "inbox.db"
    shutil.copyfile(migrated_sqlite, path)  # migrated once per run, not per test
    engine = create_engine(f"sqlite+aiosqlite:///{path}")
    yield engine, path
    await engine.dispose()


class WriteLock:
    """Another process's transaction holding SQLite's write lock until released."""

    def __init__(self, path) -> None:
        self.connection = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self.connection.execute("BEGIN IMMEDIATE")

    def release(self) -> None:
        self.connection.execute("ROLLBACK")
        self.connection.close()


async def rows(engine) -> int:
    async with engine.connect() as conn:
        return await conn.scalar(select(func.count()).select_from(InboxEvent))


@pytest.mark.serial  # holds an ack to a real-time bound
async def test_a_hung_database_gets_unavailable_in_time_and_wecoms_retry_is_folded(sqlite_db):
    engine, path = sqlite_db
    writer = InboxWriter(engine, FakeClock(START), store_timeout=0.3)
    writer.start()
    lock = WriteLock(path)
    try:
        started = time.monotonic()
        with pytest.raises(InboxUnavailable, match=r"not committed within 0\.3 s"):
            await writer.store(entry("wmc1"))
        assert time.monotonic() - started < 2  # well inside WeCom's 5 s
        # The writer still waits on the lock; the worker's turn waits with it, briefly.
        started = time.monotonic()
        await writer.quiet(patience=0.2)
        assert 0.15 < time.monotonic() - started < 1
    finally:
        lock.release()
    # The database is back: the entry waiting in the writer lands, and WeCom's retry of the
    # callback that got 503 is folded into it.
    await writer.store(entry("wmc1"))
    await writer.store(entry("wmc2"))
    await writer.stop()
    assert await rows(engine) == 2


@pytest.mark.serial  # holds an ack to a real-time bound
async def test_callbacks_beyond_the_backlog_are_refused_at_once(sqlite_db):
    engine, path = sqlite_db
    writer = InboxWriter(engine, FakeClock(START), max_batch=1, max_backlog=2, store_timeout=5)
    writer.start()
    lock = WriteLock(path)
    try:
        # One in the writer's hands (waiting on the lock), two queued behind it: then full.
        waiting = [asyncio.create_task(writer.store(entry("wmc0")))]
        await asyncio.sleep(0.1)
        waiting += [asyncio.create_task(writer.store(entry(f"wmc{i}"))) for i in (1, 2)]
        await asyncio.sleep(0.05)
        started = time.monotonic()
        with pytest.raises(InboxUnavailable, match="2 callbacks already wait"):
            await writer.store(entry("wmc9"))
        assert time.monotonic() - started < 0.1
    finally:
        lock.release()
    await asyncio.gather(*waiting)  # nothing accepted into the queue was dropped
    await writer.stop()
    assert await rows(engine) == 3


@pytest.mark.serial  # holds an ack to a real-time bound
async def test_an_idle_writer_does_not_hold_the_worker_up(sqlite_db):
    engine, _ = sqlite_db
    writer = InboxWriter(engine, FakeClock(START))
    writer.start()
    await writer.store(entry("wmc1"))
    started = time.monotonic()
    await writer.quiet(patience=5)
    assert time.monotonic() - started < 0.5
    await writer.stop()


async def test_quiet_waits_for_the_callbacks_in_hand_not_for_the_stream_to_stop(sqlite_db):
    """The worker gives way before each batch until the callbacks already handed in are
    committed. Waiting instead for no callback at all to wait, a steady stream (a livestream's
    adds) held every batch for the whole patience: quiet must return while the stream goes on,
    with what was handed in before it committed.

    The stream keeps pace with the writer, not with the clock: every statement the writer runs
    hands in three more callbacks, so none of the writer's batches ends with nothing waiting,
    however fast or slow this machine is, until the stream has run its 200 statements."""
    engine, _ = sqlite_db
    writer = InboxWriter(engine, FakeClock(START), max_backlog=100_000)
    stored: list[asyncio.Task[None]] = []
    statements, streaming = [0], [True]

    def hand_in(count: int) -> None:
        for _ in range(count):
            stored.append(asyncio.create_task(writer.store(entry(f"wms{len(stored)}"))))

    def stream(*_args) -> None:
        if streaming[0] and statements[0] < 200:
            statements[0] += 1
            hand_in(3)

    event.listen(engine.sync_engine, "before_cursor_execute", stream)
    writer.start()
    hand_in(300)
    await asyncio.sleep(0)  # the 300 are in the writer's hands
    async with asyncio.timeout(30):
        await writer.quiet(patience=30)
    at_return = statements[0]
    committed = await rows(engine)
    streaming[0] = False
    await asyncio.gather(*stored)
    await writer.stop()
    assert at_return < 200, "quiet waited for the stream to stop"
    assert committed >= 300
    assert await rows(engine) == len(stored)


@pytest.fixture
async def engine(database_url):
    engine = create_engine(database_url)
    yield engine
    await engine.dispose()


@pytest.mark.parametrize("fault", ["null-payload", "long-kind"])
async def test_an_entry_the_database_refuses_fails_alone_not_its_batch(engine, fault):
    if fault == "long-kind" and engine.dialect.name == "sqlite":
        pytest.skip("SQLite keeps a string of any length in a VARCHAR(80)")
    commits: list[int] = []
    writer = InboxWriter(engine, FakeClock(START), on_commit=lambda: commits.append(1))
    writer.start()
    good = [entry(f"wmc{i:02d}") for i in range(29)]
    bad = dataclasses.replace(
        entry("wmbad"),
        # NOT NULL on both engines; on PostgreSQL, a kind over its 80 characters.
        **({"payload": None} if fault == "null-payload" else {"kind": "k" * 81}),
    )
    entries = [*good[:15], bad, *good[15:]]
    # Queued before the flusher runs: the 30 are one batch, as a burst of callbacks is.
    results = await asyncio.gather(*(writer.store(e) for e in entries), return_exceptions=True)
    await writer.stop()

    assert [type(r).__name__ for r in results] == ["NoneType"] * 15 + ["InboxRefused"] + [
        "NoneType"
    ] * 14
    assert isinstance(results[15], InboxRefused)
    assert commits == [1]  # the 29 in one commit
    async with engine.connect() as conn:
        stored = set(await conn.scalars(select(InboxEvent.customer_key)))
    assert stored == {e.customer_key for e in good}


async def test_a_batch_that_cannot_be_committed_at_all_is_unavailable_for_everyone(engine):
    writer = InboxWriter(engine, FakeClock(START))
    writer.start()
    async with engine.begin() as conn:
        await conn.exec_driver_sql("ALTER TABLE inbox_events RENAME TO inbox_events_away")
    try:
        results = await asyncio.gather(
            *(writer.store(entry(f"wmc{i}")) for i in range(5)), return_exceptions=True
        )
    finally:
        async with engine.begin() as conn:
            await conn.exec_driver_sql("ALTER TABLE inbox_events_away RENAME TO inbox_events")
    await writer.stop()
    # Not one entry's fault: every caller answers 503, and WeCom retries them all.
    assert [type(r) for r in results] == [InboxUnavailable] * 5
    assert await rows(engine) == 0
