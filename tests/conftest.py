"""Shared fixtures: settings, a migrated database on SQLite and (when configured) PostgreSQL."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import shutil
import sqlite3
import tempfile
import threading
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path

import asyncpg
import pytest
import pytest_asyncio
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from guidebot.db.migrate import upgrade, upgrade_sync
from guidebot.web import passwords
from tests import fuzzing

fuzzing.load_profile()  # before the test modules, whose decorators read the counts

PG_ENV = "GUIDEBOT_TEST_DATABASE_URL"


def _asyncpg_dsn(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def _in_a_thread(call, *args):
    """Run a blocking call that may start its own event loop, from wherever we are."""
    # Session fixtures may be first requested from inside a running event loop.
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(call, *args).result()


async def _pg_admin(url: str, sql: str) -> None:
    conn = await asyncpg.connect(_asyncpg_dsn(url))
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@contextlib.contextmanager
def _private_pg_database(suffix: str = "") -> Iterator[str]:
    base = os.environ.get(PG_ENV)
    if not base:
        pytest.skip(f"{PG_ENV} is not set; PostgreSQL tests skipped")
    name = f"guidebot_test_{os.getpid()}_{uuid.uuid4().hex[:6]}{suffix}"
    _in_a_thread(asyncio.run, _pg_admin(base, f'CREATE DATABASE "{name}"'))
    try:
        # A commit returns once its WAL is written, not flushed to disk (half a millisecond
        # each here): what every session sees is the same, and no test crashes the server.
        _in_a_thread(
            asyncio.run, _pg_admin(base, f'ALTER DATABASE "{name}" SET synchronous_commit = off')
        )
        yield make_url(base).set(database=name).render_as_string(hide_password=False)
    finally:
        _in_a_thread(asyncio.run, _pg_admin(base, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    """A private PostgreSQL database for this test session, dropped at the end.

    Tests that take it whole (process tests, schema checks) drop and migrate it themselves.
    """
    with _private_pg_database() as url:
        yield url


async def reset_pg(url: str) -> None:
    await _pg_admin(url, "DROP SCHEMA public CASCADE; CREATE SCHEMA public;")


async def migrated_to(request, tmp_path: Path, revision: str) -> str:
    """A new database of the engine `request.param` names, migrated up to `revision` only: a
    migration test puts rows in before the next revision runs."""
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path / 'old.db'}"
    else:
        url = request.getfixturevalue("pg_url")
        await reset_pg(url)
    await upgrade(url, revision)
    return url


@pytest.fixture(scope="session")
def migrated_pg() -> Iterator[tuple[str, str]]:
    """A second private database, migrated once: (url, the SQL that empties it again).

    Migrating costs a quarter of a second; emptying 30 tables costs a few milliseconds, and
    the database_url tests never change the schema, so each starts from an emptied copy.
    """
    with _private_pg_database("_m") as url:
        _in_a_thread(upgrade_sync, url)
        yield url, _in_a_thread(asyncio.run, _emptying_sql(url))


async def _emptying_sql(url: str) -> str:
    conn = await asyncpg.connect(_asyncpg_dsn(url))
    try:
        tables = await conn.fetch(
            "SELECT tablename FROM pg_tables "
            "WHERE schemaname = 'public' AND tablename <> 'alembic_version'"
        )
    finally:
        await conn.close()
    # As a replica, foreign keys and the metrics triggers stay quiet while rows go, in any order.
    # Each sequence a test drew from starts again where it started: setval on those alone, as
    # ALTER SEQUENCE ... RESTART on all of them gave each a new file, most of the emptying's time.
    return "; ".join(
        [
            "SET session_replication_role = replica",
            *(f'DELETE FROM "{row[0]}"' for row in tables),
            "SET session_replication_role = DEFAULT",
            "SELECT setval(format('%I', sequencename)::regclass, start_value, false) "
            "FROM pg_sequences WHERE schemaname = 'public' AND last_value IS NOT NULL",
        ]
    )


# A table whose file is still bigger than this once emptied held a big test's rows. DELETE
# leaves them as dead rows until autovacuum comes by, and every scan of the next tests reads
# them (the fuzz test's snapshots after 100,000 rows: 4 s became 33 s); VACUUM gives the
# pages back.
EMPTIED_BUT_BIG = 1 << 20  # bytes


async def _empty_pg(url: str, emptying_sql: str) -> None:
    conn = await asyncpg.connect(_asyncpg_dsn(url))
    try:
        await _empty_over(conn, emptying_sql)
    finally:
        await conn.close()


async def _empty_over(conn: asyncpg.Connection, emptying_sql: str) -> None:
    await conn.execute(emptying_sql)
    big = await conn.fetch(
        "SELECT relname FROM pg_class WHERE relnamespace = 'public'::regnamespace "
        "AND relkind = 'r' AND pg_relation_size(oid) > $1",
        EMPTIED_BUT_BIG,
    )
    if big:
        await conn.execute("VACUUM " + ", ".join(f'"{row[0]}"' for row in big))


@pytest.fixture(scope="session")
def empty_migrated_pg(migrated_pg) -> Iterator[Callable[[], str]]:
    """Empties `migrated_pg` for the next test and gives its URL, over one connection kept for
    the session on an event loop of its own thread (each test has its own loop). A connection
    opened for each test cost the server about 20 ms (a backend started, its catalog caches
    filled for every table); the emptying itself takes 2."""
    url, emptying_sql = migrated_pg
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="empty-migrated-pg", daemon=True)
    thread.start()

    def run(coroutine):
        return asyncio.run_coroutine_threadsafe(coroutine, loop).result()

    async def connect() -> asyncpg.Connection:
        return await asyncpg.connect(_asyncpg_dsn(url))

    kept = [run(connect())]
    _KEPT.urls.add(url)

    async def empty() -> None:
        if kept[0].is_closed():  # the server closed it meanwhile: a new one
            kept[0] = await connect()
        await _empty_over(kept[0], emptying_sql)

    def empty_it() -> str:
        run(empty())
        return url

    try:
        yield empty_it
    finally:
        run(kept[0].close())
        loop.call_soon_threadsafe(loop.stop)
        thread.join()
        loop.close()


@pytest.fixture(scope="session")
def migrated_sqlite(tmp_path_factory) -> Path:
    """A SQLite database migrated once; each test gets a copy of the file."""
    path = tmp_path_factory.mktemp("migrated") / "guidebot.db"
    _in_a_thread(upgrade_sync, f"sqlite+aiosqlite:///{path}")
    with sqlite3.connect(path) as conn:  # fold the WAL into the file, so the file is all of it
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return path


@pytest.fixture(params=["sqlite", "postgresql"])
async def database_url(request, tmp_path) -> AsyncIterator[str]:
    """A migrated, empty database: every DB test runs on SQLite, and again on PostgreSQL."""
    if request.param == "sqlite":
        yield request.getfixturevalue("migrated_sqlite_url")
    else:
        yield request.getfixturevalue("empty_migrated_pg")()


@pytest.fixture(scope="session")
def shared_pg() -> Iterator[tuple[str, str]]:
    """A third private database, migrated once, for the harnesses a module's tests share
    (`module_database_url`): apart from `migrated_pg`, which each test empties."""
    with _private_pg_database("_s") as url:
        _in_a_thread(upgrade_sync, url)
        yield url, _in_a_thread(asyncio.run, _emptying_sql(url))


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def module_database_url(request, tmp_path_factory) -> str:
    """`database_url` for a whole module: a migrated, empty database on SQLite, then one on
    PostgreSQL, each shared by the module's tests that take it. Only tests that read (and
    write nothing another test could see) may share one: the harness a module builds on it is
    built once instead of once a test."""
    if request.param == "sqlite":
        path = tmp_path_factory.mktemp("module") / "guidebot.db"
        shutil.copyfile(request.getfixturevalue("migrated_sqlite"), path)
        return f"sqlite+aiosqlite:///{path}"
    url, emptying_sql = request.getfixturevalue("shared_pg")
    _in_a_thread(asyncio.run, _empty_pg(url, emptying_sql))
    return url


@pytest.fixture
def migrated_sqlite_url(tmp_path, migrated_sqlite) -> str:
    """A migrated, empty SQLite database of the test's own: a copy, not a migration per test."""
    path = tmp_path / "guidebot.db"
    shutil.copyfile(migrated_sqlite, path)
    return f"sqlite+aiosqlite:///{path}"


@pytest.fixture
def sqlite_url(tmp_path) -> str:
    return f"sqlite+aiosqlite:///{tmp_path / 'guidebot.db'}"


# scrypt at its real cost takes about 50 ms of CPU a hash or a check: with every sign-in of the
# page tests it was a fifth of their time. Each hash names its own cost, so one made cheap here
# verifies as any other; tests marked `real_password_cost` (the hashes' format, the sign-in
# throttle and flood, which need sign-ins that take time) keep the real one.
CHEAP_SCRYPT = {"n": 2**4, "r": 8, "p": 1}


@pytest.fixture(autouse=True)
def _cheap_password_hashes(request, monkeypatch) -> None:
    if request.node.get_closest_marker("real_password_cost") is None:
        monkeypatch.setattr(passwords, "SCRYPT_COST", CHEAP_SCRYPT)


@pytest.fixture(autouse=True)
def _forget_finished_apps() -> Iterator[None]:
    """aiohttp memoises each app's middleware chain (an lru_cache of 1,024 entries keyed by the
    app), so every test's app, engine and compiled statements would stay alive for the rest of
    the run; a heap that only grows makes every garbage collection slower. One app per process
    in production keeps that cache tiny; here it is emptied after each test."""
    yield
    from aiohttp import web_app

    cache = getattr(web_app, "_cached_build_middleware", None)
    if cache is not None:
        cache.cache_clear()


# Each SQLite commit waits for its fsync (guidebot runs synchronous=FULL), about 0.4 ms on a
# disk here and nothing on a RAM file system; a test's databases and files are thrown away after
# it, so when /dev/shm is a roomy RAM file system and no other place was asked for (--basetemp,
# TMPDIR), the tests' temporary directories go there. A process killed mid-write loses nothing
# either way: only the machine's crash would, and no test crashes the machine.
RAM_TEMP = Path("/dev/shm")
RAM_TEMP_FREE = 4 << 30  # bytes: several runs' directories (pytest keeps the last three)


def pytest_configure(config) -> None:
    if config.option.basetemp or os.environ.get("TMPDIR"):
        return
    with contextlib.suppress(OSError):
        usable = os.access(RAM_TEMP, os.W_OK) and not os.statvfs(RAM_TEMP).f_flag & os.ST_NOEXEC
        if usable and shutil.disk_usage(RAM_TEMP).free >= RAM_TEMP_FREE:
            tempfile.tempdir = str(RAM_TEMP)  # (tests run programs they install there)


# The modules whose tests take longest (the demo's month, separate processes, load on
# PostgreSQL), longest first: they start before the rest, so that pytest-xdist's workers end
# on short tests together, not one of them on a minute-long test while the other waits.
# Only the order changes; a module left out just runs in its place.
LONG_FIRST = (
    "tests/web/test_demo_week.py",
    "tests/pg/test_kill_instance.py",
    "tests/pg/test_image.py",
    "tests/pg/test_instances.py",
    "tests/integration/test_cli.py",
    "tests/pg/test_database_outage.py",
    "tests/integration/test_bench_welcome.py",
    "tests/integration/test_serve_processes.py",
    "tests/integration/test_demo.py",
    "tests/sop_engine/test_kill9.py",
    "tests/pg/test_sop_claim.py",
    "tests/integration/test_bench_scale.py",
    "tests/integration/test_bench_add_path.py",
    "tests/fuzz/test_openapi_agreement.py",
    "tests/fuzz/test_api_fuzz.py",
    "tests/contacts/test_search_grams.py",
)


def pytest_collection_modifyitems(items) -> None:
    def rank(item) -> int:
        path = item.nodeid.split("::", 1)[0]
        return LONG_FIRST.index(path) if path in LONG_FIRST else len(LONG_FIRST)

    items.sort(key=rank)  # stable: each module's tests keep their order
    # `make test` finds the serial tests' files as test_*.py saying "mark.serial" (Makefile).
    for path in {item.path for item in items if item.get_closest_marker("serial")}:
        if not path.name.startswith("test_") or "mark.serial" not in path.read_text("utf-8"):
            raise pytest.UsageError(
                f"{path}: `make test` finds serial tests in test_*.py files "
                "by the words pytest.mark.serial"
            )


def pytest_collection_finish(session) -> None:
    """Everything imported by now lives for the whole run: freeze it out of the collector's
    sight, and collect the young generation less often. Each test allocates hundreds of
    thousands of short-lived objects (statements, rows, requests); with CPython's defaults a
    fifth of the suite's CPU went to re-scanning the long-lived heap."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)


class _CompiledAcrossEngines:
    """SQLAlchemy caches each compiled statement per engine, keyed by the engine's dialect
    object; a test builds a new engine, so every test recompiled every statement it ran (a
    tenth of the suite's CPU). Every engine a test process builds has the same configuration
    and talks to the same SQLite library or PostgreSQL server, so a statement compiled for one
    is right for the next: this cache keys by the dialect's class and server version instead."""

    def __init__(self, size: int) -> None:
        from sqlalchemy.util import LRUCache

        self._cache = LRUCache(size)

    @staticmethod
    def _key(key: tuple) -> tuple:
        dialect = key[0]
        return (type(dialect), dialect.server_version_info, *key[1:])

    def get(self, key: tuple, default=None):
        return self._cache.get(self._key(key), default)

    def __setitem__(self, key: tuple, value) -> None:
        self._cache[self._key(key)] = value


_COMPILED = _CompiledAcrossEngines(10_000)


@pytest.fixture(autouse=True, scope="session")
def _compile_each_statement_once() -> Iterator[None]:
    from guidebot.db import engine as engines

    create = engines.create_async_engine

    def create_sharing(*args, **kwargs):
        engine = create(*args, **kwargs)
        engine.sync_engine._compiled_cache = _COMPILED
        return engine

    engines.create_async_engine = create_sharing
    # The unit of work's INSERT/UPDATE/DELETE statements are cached on each mapper, keyed the
    # same way.
    from sqlalchemy.orm import configure_mappers

    import guidebot.models  # noqa: F401  (every table's mapper)
    from guidebot.db.base import Base

    configure_mappers()
    for mapper in Base.registry.mappers:
        mapper.__dict__["_compiled_cache"] = _CompiledAcrossEngines(200)
    yield
    engines.create_async_engine = create


class _LentEngine(AsyncEngine):
    """A kept engine lent to one app: the app's dispose at its end hands it back. It carries
    what the keeper needs then: the engine itself, its key, and its listeners as lent."""

    keeper: _KeptEngines
    kept: AsyncEngine
    key: tuple[str, bool]
    listeners: tuple[int, ...]

    async def dispose(self, close: bool = True) -> None:
        await self.keeper.give_back(self)


class _KeptEngines:
    """The app's engines on the database each test empties (`empty_migrated_pg`), kept from one
    test to the next on the event loop all of a process's tests run on, instead of closed with
    each app. A new engine's connections were new backends, which read every table's catalog
    entries and planned every statement again: about 30 ms of the server's CPU for each
    harness's start (20 starts in one process). An engine is kept only as it came back:
    no connection still out, no listener added (a test that watches the statements), a few
    connections idle (the server allows 100 in all); otherwise it is closed, as before."""

    KEEP_IDLE = 3  # connections an engine may hold idle to be kept

    def __init__(self) -> None:
        self.urls: set[str] = set()  # the databases emptied between tests
        self.loop: asyncio.AbstractEventLoop | None = None  # the tests' own loop
        self._free: dict[tuple[str, bool], list[AsyncEngine]] = {}

    def create(self, make: Callable[..., AsyncEngine], url: str, **options) -> AsyncEngine:
        if url not in self.urls or set(options) - {"side"} or not self._on_the_tests_loop():
            return make(url, **options)
        key = (url, bool(options.get("side")))
        free = self._free.get(key)
        engine = free.pop() if free else make(url, **options)
        lent = _LentEngine(engine.sync_engine)
        lent.keeper, lent.kept, lent.key, lent.listeners = self, engine, key, _listeners(engine)
        return lent

    async def give_back(self, lent: _LentEngine) -> None:
        pool = lent.sync_engine.pool
        as_it_came = pool.checkedout() == 0 and _listeners(lent) == lent.listeners
        if as_it_came and pool.checkedin() <= self.KEEP_IDLE:
            self._free.setdefault(lent.key, []).append(lent.kept)
        else:
            await lent.kept.dispose()

    async def close(self) -> None:
        while self._free:
            for engine in self._free.popitem()[1]:
                await engine.dispose()

    def _on_the_tests_loop(self) -> bool:
        try:
            return asyncio.get_running_loop() is self.loop
        except RuntimeError:
            return False


def _listeners(engine: AsyncEngine) -> tuple[int, ...]:
    sync = engine.sync_engine
    return tuple(
        len(getattr(dispatch, name))
        for dispatch in (sync.dispatch, sync.pool.dispatch)
        for name in dispatch._event_names
    )


_KEPT = _KeptEngines()


@pytest_asyncio.fixture(autouse=True, scope="session", loop_scope="session")
async def _keep_engines() -> AsyncIterator[None]:
    from guidebot import runtime

    create = runtime.create_engine
    _KEPT.loop = asyncio.get_running_loop()
    runtime.create_engine = partial(_KEPT.create, create)
    try:
        yield
    finally:
        runtime.create_engine = create
        await _KEPT.close()
