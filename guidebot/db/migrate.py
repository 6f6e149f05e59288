"""Bring a database up to date with the Alembic migrations shipped in the package."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import inspect, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from guidebot.db.engine import create_engine, create_session_factory, is_sqlite
from guidebot.db.errors import DatabaseNotReady

if TYPE_CHECKING:
    from alembic.config import Config

MIGRATIONS = Path(__file__).parent / "migrations"
VERSIONS = MIGRATIONS / "versions"


# PostgreSQL's trigram indexes for customer search (migration 0026; the ids' over lower() since
# 0031): built only where pg_trgm may be created, and not in the models (SQLite has no such
# index), so schema comparisons leave them out.
OPTIONAL_INDEXES = frozenset(
    {"ix_customers_name_trgm", "ix_customers_userid_lower_trgm", "ix_relations_remark_trgm"}
)


# PostgreSQL's indexes of one- and two-character pieces for customer search (migration 0030;
# the customers' of their names alone since 0032; guidebot.contacts.grams): GIN indexes of an
# expression, a function of our own, which the models do not describe (SQLite has FTS5 tables
# instead).
GRAM_INDEXES = frozenset({"ix_customers_name_grams", "ix_relations_remark_grams"})


# SQLite's full-text indexes for customer search (migrations 0028 and 0030;
# guidebot.contacts.word_index): FTS5 tables and their shadow tables, which no model describes.
WORD_TABLES = ("customer_words", "relation_remarks_fts", "relation_remarks_grams")


def compared(obj, name, type_, reflected, compare_to) -> bool:
    """Alembic's include_object: every object but the optional indexes, the gram indexes and
    SQLite's word index tables."""
    if type_ == "table" and name and name.startswith(WORD_TABLES):
        return False
    return not (type_ == "index" and name in OPTIONAL_INDEXES | GRAM_INDEXES)


def alembic_config(database_url: str) -> Config:
    # Alembic and its scripts load only to migrate: an offline command at the head needs
    # neither, and loading them was half of its start-up.
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", database_url)
    return config


def upgrade_sync(database_url: str, revision: str = "head") -> None:
    from alembic import command

    command.upgrade(alembic_config(database_url), revision)


async def upgrade(database_url: str, revision: str = "head") -> None:
    # env.py runs its own event loop (asyncio.run), so it must not run on ours.
    await asyncio.to_thread(upgrade_sync, database_url, revision)


def _version_of(sync_conn) -> str | None:
    if not inspect(sync_conn).has_table("alembic_version"):
        return None
    return sync_conn.execute(text("SELECT version_num FROM alembic_version")).scalar()


async def current_revision(database_url: str) -> str | None:
    """The revision Alembic recorded in the database; None before the first migration."""
    engine = create_engine(database_url)
    try:
        async with engine.connect() as conn:
            return await conn.run_sync(_version_of)
    finally:
        await engine.dispose()


def head_revision() -> str:
    """The newest migration's revision, read from the file names: each migration's revision is
    its file's four-digit prefix and the chain is one line in that order (a test holds every
    script to both), so the newest file is the head."""
    return max(path.name[:4] for path in VERSIONS.glob("[0-9][0-9][0-9][0-9]_*.py"))


def prepare_database(database_url: str) -> None:
    """SQLite (one machine) is migrated in place; a shared PostgreSQL must be migrated on purpose.

    Several instances starting at once must not race to migrate one PostgreSQL database, so
    there the operator runs `guidebot db upgrade` and `serve` only checks.
    """
    current, head = asyncio.run(current_revision(database_url)), head_revision()
    if current == head:
        return
    if is_sqlite(database_url):
        upgrade_sync(database_url)
        return
    raise DatabaseNotReady(
        f"database schema is at revision {current or 'none'}, this guidebot needs {head}: "
        "run `guidebot db upgrade`"
    )


@asynccontextmanager
async def open_database(
    database_url: str, *, prepare: bool = True, pool_size: int = 10
) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    """Sessions on the database for a one-off command, disposed of after; with `prepare`,
    migrated in place on SQLite (and checked on PostgreSQL) first, as `serve` does. The one
    way an offline command opens the database (guidebot.runtime builds on it)."""
    if prepare:
        await asyncio.to_thread(prepare_database, database_url)
    engine = create_engine(database_url, pool_size=pool_size)
    try:
        yield create_session_factory(engine)
    finally:
        await engine.dispose()
