"""Hot statements of the inbox worker and the welcome lane, run on the database's driver.

At a livestream's rate an add runs about fifteen short statements, and SQLAlchemy's Python
around each one (the session, the connection, the compiled cache, the execution context, the
result) cost 100-140 µs of CPU, against 10-20 µs for the statement on sqlite3 itself (README,
Benchmarks: welcome). A `Direct` keeps SQLAlchemy where it is worth it: the statement is a Core
construct, compiled by SQLAlchemy's compiler with its dialect's types; what it leaves out is the
machinery of running it. Once per dialect it keeps the SQL, the order of the parameters with each
one's bind processor, and the result columns with each one's result processor; a run binds,
executes on the driver's connection of the session's transaction and processes the rows.

It runs directly only where that is the same as SQLAlchemy running it. On SQLite: inside
`inline_statements()` (db.one_hop), on the main engine's connection, in a transaction the
session already holds (so the write lock is held and nothing can wait). On PostgreSQL: in any
transaction of the session, on asyncpg as SQLAlchemy's own adapter runs it (db.on_asyncpg).
Anywhere else it is `session.execute` of the same statement. Core statements only (an ORM
statement's rows are the ORM's to load). Like `session.execute`, a run first flushes what the
session holds pending (an autoflushing session does so before Core statements too). The
engine's `before_cursor_execute` listeners hear a direct statement as they hear SQLAlchemy's
(the tests that count an add's statements listen there), and a driver error is raised as
SQLAlchemy's wrapped error (an IntegrityError is an IntegrityError).
"""

from __future__ import annotations

import itertools
import logging
import re
import sqlite3
from collections import namedtuple
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from contextlib import asynccontextmanager, contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.engine import Dialect
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql import Executable

from guidebot.db import on_asyncpg
from guidebot.db.one_hop import inline_driver, inlining

log = logging.getLogger(__name__)

# session.info: the transaction and savepoint it was found in, the sqlite3 connection, and
# SQLAlchemy's connection over it
_DRIVER = "guidebot.db.direct"
_TOKEN = "__[POSTCOMPILE_{}]"
_MOST_ARGUMENTS = 32_000  # SQLite's limit on a statement's parameters is 32,766


class Rows:
    """What a run gave: its rows (tuples with the columns' names) and the rows it changed."""

    __slots__ = ("rowcount", "rows")

    def __init__(self, rows: list[Any], rowcount: int) -> None:
        self.rows = rows
        self.rowcount = rowcount

    def __iter__(self) -> Iterator[Any]:
        return iter(self.rows)

    def all(self) -> list[Any]:
        return self.rows

    def one(self) -> Any:
        if len(self.rows) != 1:
            raise LookupError(f"expected one row, got {len(self.rows)}")
        return self.rows[0]

    def one_or_none(self) -> Any:
        if len(self.rows) > 1:
            raise LookupError(f"expected at most one row, got {len(self.rows)}")
        return self.rows[0] if self.rows else None

    def first(self) -> Any:
        return self.rows[0] if self.rows else None

    def scalar(self) -> Any:
        return self.rows[0][0] if self.rows else None


@dataclass(slots=True)
class _Plan:
    """A statement as one dialect runs it: SQL, parameters in order, result columns."""

    sql: str
    steps: tuple[tuple[str, Callable[[Any], Any] | None], ...]  # each `?`/`$n`: name, processor
    fixed: dict[str, Any]  # values the statement carries itself (a coalesce's '')
    expanding: frozenset[str]  # lists (IN): their parameters are laid out per run
    row: Callable[..., Any] | None  # the result row's type; None: no rows
    results: tuple[Callable[[Any], Any] | None, ...]
    values: str | None  # an INSERT's one row of VALUES, to write several rows in one statement
    compiled: Any  # SQLAlchemy's compiled statement: it lays out the lists of a run
    # (SQL, steps) for each count of the lists' items, each step (name, item or None,
    # processor); and ("rows", n): the SQL of an insert of n rows
    layouts: dict[tuple, Any] = field(default_factory=dict)
    # PostgreSQL: the result processors for the columns' type oids the server said
    typed_results: dict[tuple[int, ...], tuple] = field(default_factory=dict)


_PARAMSTYLES = frozenset({"qmark", "numeric_dollar"})  # sqlite3's and asyncpg's
_NUMBERED = re.compile(r"\$(\d+)")


def _plan(statement: Executable, dialect: Dialect, keys: tuple[str, ...]) -> _Plan:
    compiled = statement.compile(dialect=dialect, column_keys=list(keys) or None)
    if not compiled.positional or dialect.paramstyle not in _PARAMSTYLES:
        raise ValueError(f"db.direct runs qmark or $n statements, not {dialect.paramstyle}")
    if getattr(statement, "_propagate_attrs", {}).get("compile_state_plugin") == "orm":
        raise ValueError("db.direct runs Core statements only (an ORM one's rows are the ORM's)")
    sql, names = compiled.string, list(compiled.positiontup or ())
    binds = compiled.binds
    for bind in compiled.literal_execute_params:  # LIMIT 1: written into the SQL, once
        literal = compiled.render_literal_value(bind.effective_value, bind.type)
        sql = sql.replace(_TOKEN.format(compiled.bind_names[bind]), literal)
        names.remove(compiled.bind_names[bind])
    expanding = frozenset(
        compiled.bind_names[b] for b in compiled.post_compile_params if b.expanding
    )
    fixed, bind_processors = {}, {}
    for name in set(names):
        bind = binds[name]
        if not bind.required:
            fixed[name] = bind.effective_value
        process = bind.type.dialect_impl(dialect).bind_processor(dialect)
        if process is not None:
            bind_processors[name] = process
    result_columns = compiled._result_columns  # the names and types SQLAlchemy's rows have
    if result_columns:
        fields = [column.keyname for column in result_columns]
        row = namedtuple("Row", fields, rename=True)  # type: ignore[misc]
        # PostgreSQL's wait for the oids its server says at the first run (_run_on_asyncpg)
        results = (
            ()
            if dialect.paramstyle != "qmark"
            else _result_processors(compiled, dialect, [None] * len(result_columns))
        )
    else:
        row, results = None, ()
    values = None
    if keys and not expanding:  # the row of VALUES SQLAlchemy repeats for an executemany
        for_many = statement.compile(dialect=dialect, column_keys=list(keys), for_executemany=True)
        many = getattr(for_many, "_insertmanyvalues", None)
        if many is not None and for_many.string == sql:
            values = many.single_values_expr
    if values is not None and sql.count(f"({values})") != 1:
        values = None
    if values is not None and dialect.paramstyle == "numeric_dollar":
        # each row's $n numbered on from the last row's: only where every one is in VALUES
        numbered = [int(n) for n in _NUMBERED.findall(values)]
        if sorted(numbered) != list(range(1, len(names) + 1)) or _NUMBERED.findall(
            sql.replace(f"({values})", "")
        ):
            values = None
    steps = tuple((name, bind_processors.get(name)) for name in names)
    return _Plan(sql, steps, fixed, expanding, row, results, values, compiled)


def _result_processors(compiled: Any, dialect: Dialect, oids: Any) -> tuple:
    """What SQLAlchemy does to each column's value as it reads it (a type's coltype is the
    oid PostgreSQL says for the column; SQLite says none)."""
    return tuple(
        column.type.dialect_impl(dialect).result_processor(dialect, oid)
        for column, oid in zip(compiled._result_columns, oids, strict=True)
    )


class Direct:
    """A Core statement run on the driver where that is safe (module docstring)."""

    __slots__ = ("_insert", "_plans", "statement")

    def __init__(self, statement: Executable) -> None:
        self.statement = statement
        self._insert = bool(getattr(statement, "is_insert", False))
        self._plans: dict[tuple, _Plan | None] = {}

    def plan(self, dialect: Dialect, params: Mapping[str, Any]) -> _Plan | None:
        """How the driver runs it; None: SQLAlchemy runs it (what it could not plan, say after
        an upgrade of SQLAlchemy changed what a compiled statement keeps, is told once)."""
        # An INSERT without .values() writes the columns its parameters name, as SQLAlchemy's
        # own cache keys it; every other statement has one plan.
        keys = tuple(params) if self._insert else ()
        try:
            return self._plans[(dialect.name, keys)]
        except KeyError:
            pass
        try:
            plan = _plan(self.statement, dialect, keys)
        except Exception as exc:
            log.warning("db.direct: SQLAlchemy runs %s (%s)", _first_line(self.statement), exc)
            plan = None
        self._plans[(dialect.name, keys)] = plan
        return plan

    async def _on_driver(
        self, session: AsyncSession, params: Mapping[str, Any]
    ) -> tuple[_OnDriver, _Plan] | None:
        """(the transaction's driver, the plan) where the driver may run it; None where
        SQLAlchemy must."""
        found = await _driver(session)
        if found is None:
            return None
        if session.sync_session.autoflush:  # as session.execute's (no_autoflush sets it)
            await flush_pending(session)
        plan = self.plan(found.dialect, params)
        return None if plan is None else (found, plan)

    async def execute(self, session: AsyncSession, params: Mapping[str, Any]) -> Rows:
        on_driver = await self._on_driver(session, params)
        bound = None if on_driver is None else _bound(on_driver[1], params)
        if bound is None:
            return _rows_of(await session.execute(self.statement, params))
        on, plan = on_driver
        if on.adapter is not None:
            return await _run_on_asyncpg(on, plan, *bound)
        return self._run(on, plan, *bound)

    @staticmethod
    def _run(on: _OnDriver, plan: _Plan, sql: str, args: tuple) -> Rows:
        """On sqlite3: the statement, its rows as SQLAlchemy would read them. (_sent written
        out, without a generator's context: this runs for every statement of the add path.)"""
        _hear(on, sql, args, False)
        try:
            cursor = on.driver.execute(sql, args)
            try:
                found = cursor.fetchall() if cursor.description else []
                rowcount = cursor.rowcount
            finally:
                cursor.close()
        except sqlite3.Error as error:
            raise _wrapped(on, sql, args, error) from error
        if plan.row is None:
            return Rows([], rowcount)
        return Rows(_read(plan.row, plan.results, found), rowcount)

    async def insert_rows(self, session: AsyncSession, rows: list[Mapping[str, Any]]) -> Rows:
        """An INSERT of several rows (each with the same columns) as one statement, with what
        its RETURNING gives, in no particular order: SQLAlchemy's executemany of an INSERT
        ... RETURNING does the same ("insertmanyvalues")."""
        on_driver = await self._on_driver(session, rows[0]) if rows else None
        plan = None if on_driver is None else on_driver[1]
        if plan is None or plan.values is None or len(rows) * len(plan.steps) > _MOST_ARGUMENTS:
            return _rows_of(await session.execute(self.statement, rows))
        on, sql = on_driver[0], _rows_sql(plan, len(rows))
        args: list[Any] = []
        for row in rows:
            args += _bound(plan, row)[1]
        if on.adapter is not None:
            return await _run_on_asyncpg(on, plan, sql, tuple(args))
        return self._run(on, plan, sql, tuple(args))

    async def execute_many(self, session: AsyncSession, rows: list[Mapping[str, Any]]) -> int:
        """The statement once for each of `rows` (no RETURNING); the rows it changed."""
        on_driver = await self._on_driver(session, rows[0]) if rows else None
        plan = None if on_driver is None else on_driver[1]
        # Lists and RETURNING are not for executemany: SQLAlchemy's way for those, and for
        # PostgreSQL's (asyncpg's executemany is a round trip a row all the same).
        if plan is None or plan.expanding or plan.row is not None or on_driver[0].adapter:
            return (await session.execute(self.statement, rows)).rowcount
        on = on_driver[0]
        sql, many = plan.sql, [_bound(plan, row)[1] for row in rows]
        with _sent(on, sql, many, True):
            cursor = on.driver.executemany(sql, many)
            try:
                return cursor.rowcount
            finally:
                cursor.close()


def _rows_sql(plan: _Plan, count: int) -> str:
    """The INSERT with `count` rows of VALUES: SQLite's `?`s repeated, PostgreSQL's $1..$k,
    then $k+1..$2k for the second row, and so on. Kept per count, with the lists' layouts."""
    key = ("rows", count)
    known = plan.layouts.get(key)
    if known is not None:
        return known
    one, width = f"({plan.values})", len(plan.steps)
    if _NUMBERED.search(plan.values):  # PostgreSQL's $n
        laid_out = [
            _NUMBERED.sub(lambda n, at=at: f"${int(n.group(1)) + at}", one)
            for at in range(0, width * count, width)
        ]
    else:
        laid_out = [one] * count
    sql = plan.sql.replace(one, ", ".join(laid_out))
    if len(plan.layouts) < _MOST_LAYOUTS:
        plan.layouts[key] = sql
    return sql


def _rows_of(result: Any) -> Rows:
    """SQLAlchemy's result as a Rows (an ORM statement's result has no row count)."""
    returns_rows = getattr(result, "returns_rows", True)
    return Rows(result.all() if returns_rows else [], getattr(result, "rowcount", -1))


def _read(make: Callable[..., Any], results: tuple, found: Any) -> list[Any]:
    """The driver's rows as SQLAlchemy's: each value through its column's result processor."""
    return [
        make(*[v if p is None else p(v) for p, v in zip(results, found_row, strict=True)])
        for found_row in found
    ]


async def _run_on_asyncpg(on: _OnDriver, plan: _Plan, sql: str, args: tuple) -> Rows:
    """On asyncpg (db.on_asyncpg): the statement, its rows as SQLAlchemy would read them."""
    _hear(on, sql, args, False)
    records, oids, rowcount = await on_asyncpg.fetch(
        on.adapter, on.connection, on.dialect, sql, args
    )
    if plan.row is None:
        return Rows([], rowcount)
    results = plan.typed_results.get(oids)
    if results is None:
        results = plan.typed_results[oids] = _result_processors(plan.compiled, on.dialect, oids)
    return Rows(_read(plan.row, results, records), rowcount)


def _first_line(statement: Executable) -> str:
    return str(statement).strip().splitlines()[0][:80]


@contextmanager
def _sent(on: _OnDriver, sql: str, args: Any, many: bool) -> Iterator[None]:
    """Around a statement sent on the driver: the engine's before_cursor_execute listeners
    hear it first, as they hear SQLAlchemy's, and a driver error is SQLAlchemy's wrapped one."""
    _hear(on, sql, args, many)
    try:
        yield
    except sqlite3.Error as error:
        raise _wrapped(on, sql, args, error) from error


def _hear(on: _OnDriver, sql: str, args: Any, many: bool) -> None:
    """The engine's before_cursor_execute listeners hear a statement sent on the driver."""
    listeners = on.dispatch.before_cursor_execute
    if listeners:
        for listen in listeners:
            listen(on.connection, None, sql, args, None, many)


def _wrapped(on: _OnDriver, sql: str, args: Any, error: sqlite3.Error) -> DBAPIError:
    return DBAPIError.instance(sql, args, error, sqlite3.Error, dialect=on.dialect)


async def flush_pending(session: AsyncSession) -> None:
    """Flush what the session holds pending; looked at first, as a flush costs a greenlet's
    switch even when there is nothing to write."""
    if not session.sync_session._is_clean():  # (`new` and `deleted` copy what they hold)
        await session.flush()


def _bound(plan: _Plan, params: Mapping[str, Any]) -> tuple[str, tuple[Any, ...]] | None:
    """The SQL and its arguments; None for an empty list (SQLAlchemy writes its own SQL)."""
    values = plan.fixed | dict(params) if plan.fixed else params
    if not plan.expanding:  # most statements: one `?` (or `$n`) a parameter
        return plan.sql, tuple(
            [
                values[name] if process is None else process(values[name])
                for name, process in plan.steps
            ]
        )
    lists = {name: list(values[name]) for name in plan.expanding}
    if not all(lists.values()):
        return None
    sql, steps = _layout(plan, values, lists)
    args = []
    for name, item, process in steps:
        value = values[name] if item is None else lists[name][item]
        args.append(value if process is None else process(value))
    return sql, tuple(args)


_MOST_LAYOUTS = 64  # a plan's remembered layouts of its lists (a batch's ids: up to its size)


def _layout(plan: _Plan, values: Mapping[str, Any], lists: dict[str, list]) -> tuple[str, tuple]:
    """The SQL of a run whose lists have these counts of items, and its parameters in order,
    as SQLAlchemy lays them out (its `?`s, or its `$n`s numbered again after each list)."""
    key = tuple(map(len, lists.values()))  # in the plan's own order of its lists, each run
    known = plan.layouts.get(key)
    if known is not None:
        return known
    compiled = plan.compiled
    params = compiled.construct_params({**values, **lists}, _check=False)
    state = compiled._process_parameters_for_postcompile(params, _populate_self=False)
    items = {
        expanded: (name, n)
        for name, names in state.parameter_expansion.items()
        for n, expanded in enumerate(names)
    }
    processors = dict(plan.steps)
    steps = []
    for expanded in state.positiontup:
        name, item = items.get(expanded, (expanded, None))
        steps.append((name, item, processors.get(name)))
    layout = state.statement, tuple(steps)
    if len(plan.layouts) < _MOST_LAYOUTS:
        plan.layouts[key] = layout
    return layout


_SAVEPOINT_NAMES = itertools.count(1)
_SAVEPOINTS_SKIPPED: ContextVar[bool] = ContextVar("guidebot_savepoints_skipped", default=False)


class SavepointSkipped(BaseException):
    """A block that would have had a savepoint failed inside without_savepoints(): the
    transaction holds the block's partial writes, so the whole of it must roll back. Not an
    Exception, so that the block's own handlers (a fallback, a log-and-go-on) cannot take it
    for a failure they recovered from."""


@contextmanager
def without_savepoints() -> Iterator[None]:
    """savepoint() takes none inside, on the driver: for a transaction that is rolled back and
    run again with them if anything in it fails (the inbox worker's optimistic batches). A
    savepoint costs two statements, and SQLite's full-text index flushes its pending words at
    each."""
    token = _SAVEPOINTS_SKIPPED.set(True)
    try:
        yield
    finally:
        _SAVEPOINTS_SKIPPED.reset(token)


@asynccontextmanager
async def savepoint(session: AsyncSession) -> AsyncIterator[None]:
    """A savepoint around a block that writes through Direct statements and Core statements
    only (no ORM object added or changed in it): if the block raises, its writes are taken
    back and the error goes on. On the driver where a Direct would run there (SAVEPOINT and
    RELEASE cost about 2 µs, against 65 µs through begin_nested()); elsewhere
    `session.begin_nested()`. SQLAlchemy does not know of a savepoint on the driver, so it
    could not expire an object the block changed: hence Core only. What the session holds
    pending is flushed first, so the savepoint never takes back a change made before it."""
    on = await _driver(session)
    if on is None:
        async with session.begin_nested():
            yield
        return
    if _SAVEPOINTS_SKIPPED.get():
        try:
            yield
        except Exception as exc:
            raise SavepointSkipped(f"{type(exc).__name__}: {exc}") from exc
        return
    await flush_pending(session)
    name = f"guidebot_{next(_SAVEPOINT_NAMES)}"
    await _plain(on, f"SAVEPOINT {name}")
    try:
        yield
    except BaseException:
        if on.in_transaction:  # an I/O error may have ended the transaction itself
            await _plain(on, f"ROLLBACK TO SAVEPOINT {name}")
            await _plain(on, f"RELEASE SAVEPOINT {name}")
        raise
    await _plain(on, f"RELEASE SAVEPOINT {name}")


async def _plain(on: _OnDriver, sql: str) -> None:
    if on.adapter is not None:
        _hear(on, sql, (), False)
        await on_asyncpg.run_plain(on.adapter, on.connection, sql)
        return
    with _sent(on, sql, (), False):
        on.driver.execute(sql).close()


@dataclass(frozen=True, slots=True)
class _OnDriver:
    """A session's transaction as its statements run on the driver: the sqlite3 connection
    or SQLAlchemy's asyncpg adapter, SQLAlchemy's connection over it and its engine's events
    (for the listeners), the dialect; looked up once a transaction, not per statement."""

    root: Any  # the session's transaction, and its savepoint when it has one
    nested: Any
    driver: sqlite3.Connection | None  # SQLite
    adapter: Any  # PostgreSQL (db.on_asyncpg)
    connection: Any
    dispatch: Any
    dialect: Dialect

    @property
    def in_transaction(self) -> bool:
        if self.adapter is not None:
            return on_asyncpg.in_transaction(self.adapter)
        return self.driver is not None and self.driver.in_transaction


async def _driver(session: AsyncSession) -> _OnDriver | None:
    """The session's transaction on the driver, where a statement may run on it from here;
    None where SQLAlchemy must run it. SQLite: inside inline_statements() only (db.one_hop);
    PostgreSQL: in any transaction, as asyncpg runs it on the loop either way. (Every statement
    of the add path asks: the transaction it knows is looked at first.)"""
    sync = session.sync_session
    root = sync.get_transaction()
    if root is None:
        return None
    known: _OnDriver | None = sync.info.get(_DRIVER)
    nested = sync.get_nested_transaction()
    if known is None or known.root is not root or known.nested is not nested:
        sqlite = session.bind.dialect.name == "sqlite"
        if sqlite and not inlining():
            return None
        # The session's connection for this transaction: SQLAlchemy begins it here if it has
        # not, and emits a savepoint begun since (begin_nested() waits for a statement).
        connection = await session.connection()
        if known is None or known.root is not root:
            raw = (await connection.get_raw_connection()).dbapi_connection
            driver = inline_driver(raw) if sqlite else None
            adapter = None if sqlite else on_asyncpg.adapted(raw)
        else:
            driver, adapter = known.driver, known.adapter
        engine = session.bind.sync_engine
        known = sync.info[_DRIVER] = _OnDriver(
            root,
            nested,
            driver,
            adapter,
            connection.sync_connection,
            engine.dispatch,
            engine.dialect,
        )
    if known.adapter is not None:  # asyncpg begins it at the first statement (on_asyncpg)
        return known
    return known if known.in_transaction and inlining() else None


__all__ = [
    "Direct",
    "Rows",
    "SavepointSkipped",
    "flush_pending",
    "savepoint",
    "without_savepoints",
]
