"""PostgreSQL statements on asyncpg's connection, as SQLAlchemy's asyncpg adapter runs them.

db.direct runs its planned statements here on PostgreSQL. SQLAlchemy's path for one statement
(the session, the connection, the execution context, a greenlet hop into the adapter's cursor,
the result) cost about 200 µs of CPU for each of an add's dozen statements, more than the
statement's own round trip (README, Benchmarks: add path). This does what the adapter's cursor
does and nothing around it: under the adapter's lock, BEGIN if the transaction has not begun,
the statement prepared through the adapter's own cache of prepared statements (so SQLAlchemy's
statements and these share it and its invalidation after DDL), executed, and the row count read
from the command's status. A failure goes through SQLAlchemy's own error handling, so an error is
the same wrapped error and a lost connection is invalidated as SQLAlchemy would.

What it uses of the adapter (`_execute_mutex`, `_transaction`, `_start_transaction`, `_prepare`,
`_handle_exception`) is not public: `adapted()` checks that it is there and db.direct leaves
the statement to SQLAlchemy where it is not (an upgrade that renamed them costs speed, not
correctness).
"""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy.engine import Connection, Dialect
from sqlalchemy.util import greenlet_spawn

_ADAPTER = ("_execute_mutex", "_transaction", "_start_transaction", "_prepare", "_connection")
_ROWCOUNT = re.compile(r"(?:SELECT|UPDATE|DELETE|INSERT \d+) (\d+)")


def adapted(dbapi_connection: Any) -> Any | None:
    """SQLAlchemy's asyncpg adapter behind a pooled connection, if it is one this module can
    run statements on; None for any other."""
    if all(hasattr(dbapi_connection, name) for name in _ADAPTER):
        return dbapi_connection
    return None


async def fetch(
    adapter: Any, connection: Connection, dialect: Dialect, sql: str, args: tuple
) -> tuple[list[Any], tuple[int, ...], int]:
    """The statement in the connection's transaction: its records, their columns' type oids
    (for SQLAlchemy's result processors) and the rows it counted (-1: none said)."""
    async with adapter._execute_mutex:
        try:
            if adapter._transaction is None:
                await adapter._start_transaction()
            prepared, attributes = await adapter._prepare(
                sql, dialect._invalidate_schema_cache_asof
            )
            records = await prepared.fetch(*args)
            status = _ROWCOUNT.match(prepared.get_statusmsg() or "")
        except Exception as error:
            await greenlet_spawn(_raise_as_sqlalchemy, adapter, connection, sql, args, error)
            raise  # not reached: the above raises
    oids = tuple(attribute.type.oid for attribute in attributes) if attributes else ()
    return records, oids, int(status.group(1)) if status else -1


async def run_plain(adapter: Any, connection: Connection, sql: str) -> None:
    """A statement without parameters or rows (SAVEPOINT and its kin)."""
    async with adapter._execute_mutex:
        try:
            await adapter._connection.execute(sql)
        except Exception as error:
            await greenlet_spawn(_raise_as_sqlalchemy, adapter, connection, sql, (), error)


def in_transaction(adapter: Any) -> bool:
    return adapter._transaction is not None and not adapter._connection.is_closed()


def _raise_as_sqlalchemy(
    adapter: Any, connection: Connection, sql: str, args: tuple, error: Exception
) -> None:
    """The adapter's translation to its DB-API error, then SQLAlchemy's handling of it: the
    wrapped error (an IntegrityError is an IntegrityError), handle_error events, and the
    connection invalidated when it was lost. In a greenlet: invalidating may close it."""
    try:
        adapter._handle_exception(error)
    except Exception as translated:
        dbapi = connection.dialect.loaded_dbapi
        if isinstance(translated, (dbapi.InvalidCachedStatementError, dbapi.InternalServerError)):
            connection.dialect._invalidate_schema_cache()  # as the adapter's context does
        connection._handle_dbapi_exception(translated, sql, args, None, None)
    raise error


__all__ = ["adapted", "fetch", "in_transaction", "run_plain"]
