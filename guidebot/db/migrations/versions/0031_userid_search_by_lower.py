"""Scale: the trigram index of customer ids over lower(external_userid), on PostgreSQL

Revision ID: 0031
Revises: 0030
Create Date: 2026-12-06 16:00:00.000000

0026 built pg_trgm's GIN index on `customers.external_userid` itself, for search's ILIKE. But
pg_trgm's operator class answers `=` too, and an add's statements look customers up by id
(`external_userid IN (...)`): without statistics (a new database, a restore, a table a
livestream fills faster than autovacuum analyzes it) PostgreSQL's planner took the trigram
index for them, whose GIN pending list it then read whole, 1-5 ms a lookup and growing with
each add, where the primary key answers in microseconds
(tests/sop_engine/test_add_plans.py).

The index is now of `lower(external_userid)`, which no lookup by id names, and search matches
`lower(external_userid) LIKE lower(words)`: the same answers as ILIKE, which in a UTF-8
database lowers both sides exactly so (and pg_trgm folds case in its trigrams either way). The
new index is built CONCURRENTLY before the old one is dropped CONCURRENTLY, so search keeps
an index and the table keeps taking writes throughout; an INVALID index left by a failed build
is dropped and built again when the upgrade runs again. Without pg_trgm (0026 skipped its
indexes) nothing is built. SQLite searches ids through FTS5 (0028): nothing changes there.
"""

import importlib
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0031"
down_revision: str | Sequence[str] | None = "0030"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OLD = ("ix_customers_userid_trgm", "customers", "USING gin (external_userid gin_trgm_ops)")
NEW = (
    "ix_customers_userid_lower_trgm",
    "customers",
    "USING gin (lower(external_userid) gin_trgm_ops)",
)


def _scale_indexes():
    return importlib.import_module("guidebot.db.migrations.versions.0026_scale_indexes")


def _has_trigrams() -> bool:
    found = op.get_bind().execute(sa.text("SELECT 1 FROM pg_extension WHERE extname = 'pg_trgm'"))
    return found.first() is not None


def _swap(build: tuple[str, str, str], drop: tuple[str, str, str]) -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    with op.get_context().autocommit_block():
        if _has_trigrams():
            _scale_indexes()._build_concurrently(*build)
            op.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {drop[0]}")


def upgrade() -> None:
    """Upgrade schema."""
    _swap(NEW, OLD)


def downgrade() -> None:
    """Downgrade schema."""
    _swap(OLD, NEW)
