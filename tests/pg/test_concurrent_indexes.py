"""Migrations 0026, 0028, 0030, 0031 and 0032 build their indexes with CREATE INDEX
CONCURRENTLY, outside a transaction; a build that failed half way (an INVALID index left
behind, the migration not recorded) is dropped and built anew when the upgrade runs again."""

from __future__ import annotations

import asyncio
import importlib

import asyncpg
import pytest
from alembic import command

from guidebot.db.migrate import GRAM_INDEXES, OPTIONAL_INDEXES, alembic_config, upgrade
from tests.conftest import _asyncpg_dsn, reset_pg

TRIGRAMS_0026 = frozenset(
    name
    for name, _, _ in importlib.import_module(
        "guidebot.db.migrations.versions.0026_scale_indexes"
    ).TRIGRAMS
)

GRAMS_0030 = frozenset(
    name
    for name, _, _ in importlib.import_module(
        "guidebot.db.migrations.versions.0030_search_grams"
    ).GRAM_INDEXES
)

pytestmark = pytest.mark.pg

VALIDITY = (
    "SELECT c.relname, i.indisvalid, i.indexrelid::int FROM pg_index i "
    "JOIN pg_class c ON c.oid = i.indexrelid WHERE c.relname = ANY($1::text[])"
)


async def as_if_a_build_failed(conn, index: str, parent: str) -> None:
    """What a cancelled concurrent build leaves: the index, marked invalid, and the migration
    not recorded (the database at `parent`, the migration's parent)."""
    await conn.execute(
        f"UPDATE pg_index SET indisvalid = false WHERE indexrelid = '{index}'::regclass"
    )
    await conn.execute(f"UPDATE alembic_version SET version_num = '{parent}'")


async def indexes(conn, names=TRIGRAMS_0026) -> dict[str, tuple[bool, int]]:
    rows = await conn.fetch(VALIDITY, sorted(names))
    return {name: (valid, oid) for name, valid, oid in rows}


async def test_an_invalid_index_left_by_a_failed_build_is_rebuilt(pg_url):
    await reset_pg(pg_url)
    await upgrade(pg_url, "0026")  # the migration under test, whatever comes after it
    conn = await asyncpg.connect(_asyncpg_dsn(pg_url))
    try:
        built = await indexes(conn)
        assert set(built) == TRIGRAMS_0026
        assert all(valid for valid, _ in built.values())
        await as_if_a_build_failed(conn, "ix_customers_name_trgm", "0025")
        await upgrade(pg_url, "0026")
        rebuilt = await indexes(conn)
        assert all(valid for valid, _ in rebuilt.values())
        assert rebuilt["ix_customers_name_trgm"][1] != built["ix_customers_name_trgm"][1]
        assert rebuilt["ix_relations_remark_trgm"] == built["ix_relations_remark_trgm"]
    finally:
        await conn.close()
        await reset_pg(pg_url)


async def test_migration_0028_runs_again_after_a_failed_index_build(pg_url):
    """0028 commits its counts table, triggers and counts before building its indexes; a build
    that failed leaves them there, and the upgrade run again completes with the same counts."""
    await reset_pg(pg_url)
    await upgrade(pg_url)
    conn = await asyncpg.connect(_asyncpg_dsn(pg_url))
    try:
        await conn.execute(
            "INSERT INTO departments (id, name, is_store, code, sort_order, updated_at) "
            "VALUES (11, '张江店', true, 'S11', 0, now())"
        )
        await conn.execute(
            "INSERT INTO guides (userid, name, status, updated_at) "
            "VALUES ('g1', '王芳', 'active', now())"
        )
        for ext in ("wm1", "wm2"):
            await conn.execute(
                "INSERT INTO customers (external_userid, created_at, updated_at) "
                "VALUES ($1, now(), now())",
                ext,
            )
            await conn.execute(
                "INSERT INTO relations (guide_userid, external_userid, status, confirmed, "
                "store_id, tags, remark_mobiles, last_event_at, updated_at) "
                "VALUES ('g1', $1, 'active', true, 11, '[]', '[]', now(), now())",
                ext,
            )
        await as_if_a_build_failed(conn, "ix_customers_newest", "0027")
        await upgrade(pg_url)
        valid = await conn.fetchval(
            "SELECT i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
            "WHERE c.relname = 'ix_customers_newest'"
        )
        counts = await conn.fetch(
            "SELECT guide_userid, store_id, active FROM guide_customer_counts"
        )
        assert valid is True
        assert [tuple(r) for r in counts] == [("g1", 11, 2)]
        await conn.execute("UPDATE relations SET status = 'lost' WHERE external_userid = 'wm1'")
        assert await conn.fetchval("SELECT active FROM guide_customer_counts") == 1
    finally:
        await conn.close()
        await reset_pg(pg_url)


async def test_migration_0030_rebuilds_an_invalid_index_of_pieces(pg_url):
    """0030 creates its function, then builds its indexes concurrently: an INVALID one left
    by a failed build is built anew when the upgrade runs again, the other kept as it was."""
    await reset_pg(pg_url)
    await upgrade(pg_url, "0030")  # the migration under test, whatever comes after it
    conn = await asyncpg.connect(_asyncpg_dsn(pg_url))
    try:
        built = await indexes(conn, GRAMS_0030)
        assert set(built) == GRAMS_0030 and all(v for v, _ in built.values())
        await as_if_a_build_failed(conn, "ix_customers_grams", "0029")
        await upgrade(pg_url, "0030")
        rebuilt = await indexes(conn, GRAMS_0030)
        assert all(valid for valid, _ in rebuilt.values())
        assert rebuilt["ix_customers_grams"][1] != built["ix_customers_grams"][1]
        assert rebuilt["ix_relations_remark_grams"] == built["ix_relations_remark_grams"]
    finally:
        await conn.close()
        await reset_pg(pg_url)


# A migration that replaces an index (the revision before it, the index it builds and how it
# reads, the indexes at head, those its downgrade leaves).
SWAPS = {
    "0031 the ids' trigrams over lower()": (
        "0030",
        "ix_customers_userid_lower_trgm",
        "lower((external_userid)::text) gin_trgm_ops",
        OPTIONAL_INDEXES,
        TRIGRAMS_0026,
    ),
    "0032 the pieces of names alone": (
        "0031",
        "ix_customers_name_grams",
        "gin (search_grams((name)::text))",
        GRAM_INDEXES,
        GRAMS_0030,
    ),
}


@pytest.mark.parametrize("swap", SWAPS.values(), ids=list(SWAPS))
async def test_a_migration_builds_its_index_before_dropping_the_old_and_downgrades_back(
    pg_url, swap
):
    """0031 (the ids' trigram index over lower(external_userid), which no lookup by id can
    take, for 0026's) and 0032 (the index of the pieces of names alone, for 0030's of names and
    ids together) build the new index concurrently before they drop the old one; run again
    after a failed build, each rebuilds the INVALID one; each downgrade puts the old one back."""
    parent, new, reads, at_head, before = swap
    both = at_head | before
    await reset_pg(pg_url)
    await upgrade(pg_url)
    conn = await asyncpg.connect(_asyncpg_dsn(pg_url))
    try:
        built = await indexes(conn, both)
        assert set(built) == at_head and all(v for v, _ in built.values())
        definition = await conn.fetchval(
            "SELECT indexdef FROM pg_indexes WHERE indexname = $1", new
        )
        assert reads in definition, definition
        await as_if_a_build_failed(conn, new, parent)
        await upgrade(pg_url)
        rebuilt = await indexes(conn, both)
        assert set(rebuilt) == at_head and all(v for v, _ in rebuilt.values())
        assert rebuilt[new][1] != built[new][1]
        await asyncio.to_thread(command.downgrade, alembic_config(pg_url), parent)
        assert set(await indexes(conn, both)) == before
    finally:
        await conn.close()
        await reset_pg(pg_url)
