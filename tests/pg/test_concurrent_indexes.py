"""Migration 0026 builds its indexes with CREATE INDEX CONCURRENTLY, outside a transaction; a
build that failed half way (an INVALID index left behind) is dropped and built anew when the
upgrade runs again."""

from __future__ import annotations

import asyncpg
import pytest

from guidebot.db.migrate import OPTIONAL_INDEXES, upgrade
from tests.conftest import _asyncpg_dsn, reset_pg

pytestmark = pytest.mark.pg

VALIDITY = (
    "SELECT c.relname, i.indisvalid, i.indexrelid::int FROM pg_index i "
    "JOIN pg_class c ON c.oid = i.indexrelid WHERE c.relname = ANY($1::text[])"
)


async def indexes(conn) -> dict[str, tuple[bool, int]]:
    rows = await conn.fetch(VALIDITY, sorted(OPTIONAL_INDEXES))
    return {name: (valid, oid) for name, valid, oid in rows}


async def test_an_invalid_index_left_by_a_failed_build_is_rebuilt(pg_url):
    await reset_pg(pg_url)
    await upgrade(pg_url, "0026")  # the migration under test, whatever comes after it
    conn = await asyncpg.connect(_asyncpg_dsn(pg_url))
    try:
        built = await indexes(conn)
        assert set(built) == OPTIONAL_INDEXES
        assert all(valid for valid, _ in built.values())
        # What a cancelled concurrent build leaves: the index, marked invalid, and the
        # migration not recorded.
        await conn.execute(
            "UPDATE pg_index SET indisvalid = false "
            "WHERE indexrelid = 'ix_customers_name_trgm'::regclass"
        )
        await conn.execute("UPDATE alembic_version SET version_num = '0025'")
        await upgrade(pg_url, "0026")
        rebuilt = await indexes(conn)
        assert all(valid for valid, _ in rebuilt.values())
        assert rebuilt["ix_customers_name_trgm"][1] != built["ix_customers_name_trgm"][1]
        assert rebuilt["ix_relations_remark_trgm"] == built["ix_relations_remark_trgm"]
    finally:
        await conn.close()
        await reset_pg(pg_url)
