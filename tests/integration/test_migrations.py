"""The Alembic migrations build exactly the schema the models describe, on both databases."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from guidebot.db.engine import create_engine
from guidebot.db.migrate import compared
from guidebot.models import Base


async def test_the_migrated_schema_is_the_models_schema(database_url):
    engine = create_engine(database_url)
    try:
        async with engine.connect() as conn:
            differences = await conn.run_sync(
                lambda sync: compare_metadata(
                    MigrationContext.configure(sync, opts={"include_object": compared}),
                    Base.metadata,
                )
            )
    finally:
        await engine.dispose()
    assert differences == [], differences
