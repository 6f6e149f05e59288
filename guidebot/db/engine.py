"""Async engine and session factory for SQLite (embedded, WAL) and PostgreSQL from one URL."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import weakref
from functools import partial
from threading import Thread
from typing import Any

import aiosqlite
from sqlalchemy import event
from sqlalchemy.dialects.sqlite.aiosqlite import SQLiteDialect_aiosqlite
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, DisconnectionError
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.util.concurrency import await_only, in_greenlet

from guidebot.db.one_hop import OneHopDBAPI

log = logging.getLogger(__name__)

SQLITE_BUSY_TIMEOUT_MS = 10_000
SIDE_BUSY_TIMEOUT_MS = 2_000
SQLITE_CACHE_KIB = 64 * 1024  # per connection, at most: pages are cached as they are read
# How long disposing of an engine waits for one aiosqlite thread to finish its last call.
THREAD_JOIN_SECONDS = 10.0


class SQLiteHintsCompiler(SQLiteDialect_aiosqlite.statement_compiler):
    """SQLite's compiler, writing a table's hint after it (`select(...).with_hint(Model,
    "INDEXED BY ix_name", "sqlite")`), which SQLAlchemy's leaves out: a query that must read
    a partial index says so, rather than trust a planner without statistics (guidebot never
    runs ANALYZE) to see that it is the cheap way. SQLite refuses the query if it cannot."""

    def get_from_hint_text(self, table, text):
        return text


def is_sqlite(url: str) -> bool:
    return url.startswith("sqlite")


def create_engine(url: str, *, pool_size: int = 10, side: bool = False) -> AsyncEngine:
    """The engine for `url`.

    On SQLite the main engine has one connection per process, so transactions queue in
    asyncio, first come first served; with several connections they would contend for
    SQLite's single write lock inside its busy handler, which sleeps in coarse steps and
    collapses under load. Its transactions take the write lock at BEGIN.

    `side=True` gives a second, small engine for work that may run while the main connection
    is held (the WeCom token cache, consulted by any code that calls WeCom): its transactions
    begin deferred, so its reads never wait, and its rare writes wait in the busy handler.
    """
    if is_sqlite(url):
        # The side engine waits less for the lock: its caller may be the one holding it.
        busy_ms = SIDE_BUSY_TIMEOUT_MS if side else SQLITE_BUSY_TIMEOUT_MS
        args, kwargs = SQLiteDialect_aiosqlite().create_connect_args(make_url(url))
        connect_kwargs = {**kwargs, "timeout": busy_ms / 1000}
        if not side:  # its statements may run on the loop's thread (one_hop.inline_statements)
            connect_kwargs["check_same_thread"] = False
        threads = AiosqliteThreads(args, connect_kwargs)
        engine = create_async_engine(
            url,
            async_creator=threads.connect,
            module=OneHopDBAPI(inline=not side),
            pool_size=2 if side else 1,
            max_overflow=0,
            pool_timeout=30,
        )
        engine.sync_engine.dialect.statement_compiler = SQLiteHintsCompiler
        event.listen(engine.sync_engine, "engine_disposed", threads.on_dispose)
        event.listen(engine.sync_engine, "connect", partial(_sqlite_pragmas, busy_ms=busy_ms))
        event.listen(
            engine.sync_engine, "begin", _sqlite_begin_deferred if side else _sqlite_begin_immediate
        )
        return engine
    if side:
        pool_size = 2
    engine = create_async_engine(url, pool_size=pool_size, max_overflow=pool_size)
    event.listen(engine.sync_engine, "checkout", _closed_by_the_server)
    return engine


def _closed_by_the_server(dbapi_connection, _record, _proxy) -> None:
    """The pool's look at a PostgreSQL connection before handing it out, instead of its
    pre-ping: a restarted or stopped server ends its backends and closes their sockets, which
    asyncpg sees on the event loop at once, so a look at the driver's connection tells what
    the ping's three round trips did (BEGIN, an empty statement, ROLLBACK, for every
    transaction). The pool replaces a closed one. A connection that breaks while in use fails
    its statement, and SQLAlchemy drops it then, as it did with the ping."""
    if dbapi_connection.driver_connection.is_closed():
        raise DisconnectionError("the database server closed the connection")


async def open_first_connection(engine: AsyncEngine) -> None:
    """On SQLite, open the pool's first connection now, before any background task can.

    aiosqlite connects on its own thread; a task cancelled while that is under way (a
    start-up job stopped at shutdown) leaves the thread to answer a future on an event loop
    that may be closed by then. Opened here, the connection is reused instead. A database
    that cannot be opened is not fatal here: /readyz reports it, and each use tries again.
    """
    if engine.dialect.name != "sqlite":
        return
    try:
        async with engine.connect():
            pass
    except DBAPIError as exc:
        log.warning("database not reachable at start-up: %s", exc.orig)


class AiosqliteThreads:
    """The aiosqlite connections one SQLite engine opened, and the thread each one runs on.

    aiosqlite stops a connection's thread without waiting for it when a connect fails or is
    cancelled (an unreachable database, a start-up task stopped at shutdown), when SQLAlchemy
    terminates a connection whose close was cancelled, and when an unclosed one is garbage
    collected. The thread's last act is to answer a future on the event loop; if the loop has
    closed by then, the thread raises "Event loop is closed" into whatever runs next. So a
    failed connect waits for its thread, and disposing of the engine (every way the app, a
    CLI command or a test stops) closes what is still open and waits for every thread.
    """

    def __init__(self, args: list[Any], kwargs: dict[str, Any]) -> None:
        self._args, self._kwargs = args, kwargs
        self._connections: weakref.WeakSet[aiosqlite.Connection] = weakref.WeakSet()
        self._threads: set[Thread] = set()

    async def connect(self) -> aiosqlite.Connection:
        connection = aiosqlite.connect(*self._args, **self._kwargs)
        thread = _thread_of(connection)
        thread.daemon = True  # as SQLAlchemy's own connect does: never hold up the exit
        self._threads = {t for t in self._threads if t.is_alive()}
        self._threads.add(thread)
        self._connections.add(connection)
        try:
            return await connection
        except BaseException:
            await _joined(thread)
            raise

    async def close(self) -> None:
        """Close the connections still open (checked out when the engine was disposed of) and
        wait for every thread to finish."""
        for connection in list(self._connections):
            # Private, but the only way to tell: close() on a stopped connection never returns.
            if getattr(connection, "_running", False) and getattr(connection, "_connection", None):
                with contextlib.suppress(Exception):
                    await connection.close()
        for thread in list(self._threads):
            if thread.is_alive():
                await _joined(thread)
        self._threads = {t for t in self._threads if t.is_alive()}

    def on_dispose(self, _engine) -> None:
        # AsyncEngine.dispose() runs Engine.dispose() in a greenlet, where this may await.
        if in_greenlet():
            await_only(self.close())


def _thread_of(connection: aiosqlite.Connection) -> Thread:
    # aiosqlite before 0.22 made the connection itself the thread.
    return connection if isinstance(connection, Thread) else connection._thread


async def _joined(thread: Thread) -> None:
    """Wait (off the loop) until the thread has finished, even if we are cancelled meanwhile."""
    if thread.ident is None:
        return  # never started
    await asyncio.shield(asyncio.to_thread(thread.join, THREAD_JOIN_SECONDS))


def _sqlite_pragmas(dbapi_connection, _record, *, busy_ms: int) -> None:
    cursor = dbapi_connection.cursor()
    # WAL lets readers run beside the one writer. FULL syncs the WAL on every commit: an
    # acknowledged callback must survive a power cut, and intake batches many per commit.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute("PRAGMA foreign_keys=ON")
    # SQLite's page cache is 2 MB by default: a year's indexes are far bigger, and every page
    # missed is a read from the OS, so an add cost more the longer guidebot ran.
    cursor.execute(f"PRAGMA cache_size=-{SQLITE_CACHE_KIB}")
    cursor.execute(f"PRAGMA busy_timeout={busy_ms}")
    cursor.close()
    # We issue BEGIN ourselves (below) instead of the driver's implicit deferred BEGIN.
    dbapi_connection.isolation_level = None


def _sqlite_begin_deferred(conn) -> None:
    conn.exec_driver_sql("BEGIN")


def _sqlite_begin_immediate(conn) -> None:
    # A deferred transaction that reads and then writes fails at once with "database is
    # locked" when another writer got in between; the busy timeout does not help it.
    # Taking the write lock up front makes concurrent writers wait their turn instead.
    conn.exec_driver_sql("BEGIN IMMEDIATE")


def create_session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


def upsert_insert(dialect_name: str):
    """The dialect's INSERT, which has on_conflict_do_nothing / on_conflict_do_update."""
    if dialect_name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    return insert
