"""The benchmarks' databases: a SQLite file by default, or PostgreSQL when given a URL."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import Iterator

import asyncpg
from sqlalchemy.engine import make_url


def is_postgres(url: str) -> bool:
    return make_url(url).get_backend_name() == "postgresql"


def on_this_machine(url: str) -> bool:
    """A PostgreSQL URL whose server runs here (a loopback address or a socket directory)."""
    if not is_postgres(url):
        return False
    parsed = make_url(url)
    host = parsed.host or parsed.query.get("host") or ""
    if isinstance(host, tuple):
        host = host[0]
    return host in ("", "localhost", "127.0.0.1", "::1") or host.startswith("/")


def asyncpg_dsn(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


async def _execute(url: str, sql: str) -> None:
    conn = await asyncpg.connect(asyncpg_dsn(url))
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


async def fresh_postgres(url: str) -> None:
    """Empty the database: the benchmark migrates it from nothing."""
    await _execute(url, "DROP SCHEMA public CASCADE; CREATE SCHEMA public;")


@contextlib.contextmanager
def sibling_database(url: str, suffix: str) -> Iterator[str]:
    """A scratch PostgreSQL database next to `url`'s (the role must be allowed to create
    databases), dropped afterwards."""
    name = f"{make_url(url).database}_{suffix}"
    asyncio.run(_execute(url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    asyncio.run(_execute(url, f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(url).set(database=name).render_as_string(hide_password=False)
    finally:
        asyncio.run(_execute(url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def fetch_row(url: str, sql: str) -> tuple:
    """One row of a query, through the plain driver of either database."""
    if not is_postgres(url):
        with contextlib.closing(sqlite3.connect(make_url(url).database)) as conn:
            return tuple(conn.execute(sql).fetchone())

    async def fetch() -> tuple:
        conn = await asyncpg.connect(asyncpg_dsn(url))
        try:
            return tuple(await conn.fetchrow(sql))
        finally:
            await conn.close()

    return asyncio.run(fetch())
