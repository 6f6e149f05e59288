"""SQLite statements in one trip to aiosqlite's thread instead of four.

SQLAlchemy's aiosqlite adapter makes a statement four round trips between the event loop and
the connection's thread: open a cursor, execute, fetch the rows, close. Each trip is a future,
a wake-up of the thread and a wake-up of the loop, and the two threads then contend for the
GIL; on the add path, where one add runs about forty statements, those trips were most of the
server's CPU (bench.welcome, py-spy and cProfile). This adapter keeps SQLAlchemy's dialect and
aiosqlite's connection and thread, and changes only the cursor: execute, fetch every row and
close run as one function on the thread, and the cursor answers `description`, `rowcount` and
`lastrowid` from what that function saw. Server-side cursors (which SQLite never needs here)
stay SQLAlchemy's own.

Inline statements. Even one trip is a wake-up of the thread (a futex), a future, a wake-up of
the loop through its self-pipe and a GIL hand-over: about 30 µs of CPU on a quiet machine and
far more on a busy one (py-spy at 80 adds/s: a quarter of the loop's samples were the thread's
wake-up), against a few µs for the statement itself. Inside `inline_statements()` a statement of
the main engine's connection, in a transaction it already holds, runs on the event loop's own
thread instead. That is safe only where it cannot wait: the main engine begins IMMEDIATE, so
inside its transaction the write lock is held and no statement meets the busy handler; BEGIN,
COMMIT (the WAL's fsync) and ROLLBACK still go to the thread, as does anything outside a
transaction or on the side engine (deferred: its first write may wait). Only paths that run
short point statements ask for it (the inbox worker's batches of events, the welcome lane, the
directory sync, the demo's backfill); a long statement there would hold up the loop for as
long as it runs, and a long run of short ones must let the loop in between (the sync does,
every hundred stores or guides).
"""

from __future__ import annotations

import sqlite3
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

import aiosqlite
from sqlalchemy.dialects.sqlite.aiosqlite import (
    AsyncAdapt_aiosqlite_connection,
    AsyncAdapt_aiosqlite_cursor,
    AsyncAdapt_aiosqlite_dbapi,
)
from sqlalchemy.util import EMPTY_DICT
from sqlalchemy.util.concurrency import await_


def _execute(conn: sqlite3.Connection, operation: str, parameters: Any) -> tuple:
    """On the connection's thread: the statement, all its rows, and what the cursor knew."""
    cursor = conn.cursor()
    try:
        if parameters is None:
            cursor.execute(operation)
        else:
            cursor.execute(operation, parameters)
        description = cursor.description
        rows = cursor.fetchall() if description else ()
        return description, rows, cursor.rowcount, cursor.lastrowid
    finally:
        cursor.close()


def _execute_many(conn: sqlite3.Connection, operation: str, seq_of_parameters: Any) -> tuple:
    cursor = conn.cursor()
    try:
        cursor.executemany(operation, seq_of_parameters)
        return cursor.rowcount, cursor.lastrowid
    finally:
        cursor.close()


_INLINE: ContextVar[bool] = ContextVar("guidebot_sqlite_inline", default=False)


@contextmanager
def inline_statements() -> Iterator[None]:
    """Run the main SQLite engine's statements inside a transaction on the loop's thread
    (module docstring); SQLAlchemy's greenlets carry the context into the session's work."""
    token = _INLINE.set(True)
    try:
        yield
    finally:
        _INLINE.reset(token)


def inlining() -> bool:
    """Whether the calling task is inside inline_statements()."""
    return _INLINE.get()


def inline_driver(dbapi_connection: Any) -> sqlite3.Connection | None:
    """The sqlite3 connection behind a main-engine connection inline_statements() may use
    (db.direct runs its statements there), None for any other."""
    if not getattr(dbapi_connection, "inline", False):
        return None
    return dbapi_connection._connection._connection


class OneHopCursor(AsyncAdapt_aiosqlite_cursor):
    """A buffered cursor whose statement is one call on the connection's thread."""

    __slots__ = ("_arraysize", "_description", "_lastrowid", "_rowcount")

    def __init__(self, adapt_connection: AsyncAdapt_aiosqlite_connection) -> None:
        # No cursor is opened here: the thread opens and closes one per statement.
        self._adapt_connection = adapt_connection
        self._connection = adapt_connection._connection
        self._cursor = None
        self._soft_closed_memoized = EMPTY_DICT
        self._rows = deque()
        self._description = None
        self._rowcount = -1
        self._lastrowid = None
        self._arraysize = 1

    @property
    def description(self) -> Any:
        return self._description

    @property
    def rowcount(self) -> int:
        return self._rowcount

    @property
    def lastrowid(self) -> Any:
        return self._lastrowid

    @property
    def arraysize(self) -> int:
        return self._arraysize

    @arraysize.setter
    def arraysize(self, value: int) -> None:
        self._arraysize = value

    async def _async_soft_close(self) -> None:
        return  # nothing stays open on the thread

    def close(self) -> None:
        self._rows.clear()

    def _inline(self) -> sqlite3.Connection | None:
        """The sqlite3 connection, when this statement may run on the calling thread."""
        if not (_INLINE.get() and self._adapt_connection.inline):
            return None
        conn = self._connection._connection  # None once closed: the thread says so
        return conn if conn is not None and conn.in_transaction else None

    def execute(self, operation: Any, parameters: Any = None) -> Any:
        conn = self._inline()
        if conn is None:
            return super().execute(operation, parameters)
        try:
            # Awaited, though it never suspends: SQLAlchemy's AsyncConnection checks that a
            # statement awaited something (a greenlet switch, no trip through the loop).
            return await_(self._execute_inline(conn, operation, parameters))
        except Exception as error:
            self._adapt_connection._handle_exception(error)

    def executemany(self, operation: Any, seq_of_parameters: Any) -> Any:
        conn = self._inline()
        if conn is None:
            return super().executemany(operation, seq_of_parameters)
        try:
            return await_(self._executemany_inline(conn, operation, seq_of_parameters))
        except Exception as error:
            self._adapt_connection._handle_exception(error)

    async def _execute_inline(self, conn: sqlite3.Connection, operation: Any, parameters: Any):
        self._description, rows, self._rowcount, self._lastrowid = _execute(
            conn, operation, parameters
        )
        self._rows = deque(rows)
        return self

    async def _executemany_inline(self, conn: sqlite3.Connection, operation: Any, seq: Any):
        self._rowcount, self._lastrowid = _execute_many(conn, operation, seq)
        self._description = None
        self._rows = deque()
        return self

    async def _execute_async(self, operation: Any, parameters: Any) -> Any:
        async with self._adapt_connection._execute_mutex:
            outcome = await self._connection._execute(
                _execute, self._connection._conn, operation, parameters
            )
            self._description, rows, self._rowcount, self._lastrowid = outcome
            self._rows = deque(rows)
            return self

    async def _executemany_async(self, operation: Any, seq_of_parameters: Any) -> Any:
        async with self._adapt_connection._execute_mutex:
            self._rowcount, self._lastrowid = await self._connection._execute(
                _execute_many, self._connection._conn, operation, seq_of_parameters
            )
            self._description = None
            self._rows = deque()
            return self


class OneHopConnection(AsyncAdapt_aiosqlite_connection):
    __slots__ = ()
    _cursor_cls = OneHopCursor
    inline = False  # whether inline_statements() applies (the main engine's connections)


class InlineOneHopConnection(OneHopConnection):
    __slots__ = ()
    inline = True


class OneHopDBAPI(AsyncAdapt_aiosqlite_dbapi):
    """SQLAlchemy's aiosqlite DBAPI shim, handing out one-hop connections.

    Given to `create_async_engine(module=...)`; connections come from the engine's
    `async_creator`, which SQLAlchemy passes here as `async_creator_fn`.
    """

    def __init__(self, *, inline: bool = False) -> None:
        super().__init__(aiosqlite, sqlite3)
        # The main engine's connections (opened with check_same_thread=False) may run
        # inline_statements() on the loop's thread.
        self._connection_cls = InlineOneHopConnection if inline else OneHopConnection

    def connect(self, *arg: Any, **kw: Any) -> OneHopConnection:
        creator_fn = kw.pop("async_creator_fn")
        return self._connection_cls(self, await_(creator_fn(*arg, **kw)))
