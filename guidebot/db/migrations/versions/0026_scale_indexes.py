"""Scale: trigram indexes for customer search on PostgreSQL, built without stopping writes

Revision ID: 0026
Revises: 0025
Create Date: 2026-12-06 04:00:00.000000

Customer search matches ILIKE '%words%' on customers.name, customers.external_userid and
relations.remark (contacts/queries.py, one arm of a union per column): without an index each
search read every customer and relation (bench.scale: 1.15 s at 430,000 customers on
PostgreSQL, growing with them); pg_trgm's GIN indexes answer it from the index (4.5 ms).

Each index is built with CREATE INDEX CONCURRENTLY, outside a transaction (Alembic's
autocommit_block): the tables keep taking inserts and updates while it is built, so a live
brand's tables are never locked for the minutes a build takes. A concurrent build that fails
(a deadlock, a cancelled deploy) leaves an INVALID index behind; running the upgrade again
drops it and builds it anew. Without the extension (a role that may not create it) the indexes
are skipped with a warning and search scans, as before. SQLite has no trigram index: nothing
changes there (guidebot.db.migrate.OPTIONAL_INDEXES keeps them out of schema comparisons).
"""

import logging
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0026"
down_revision: str | Sequence[str] | None = "0025"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

log = logging.getLogger("alembic.runtime.migration")

TRIGRAMS = (
    ("ix_customers_name_trgm", "customers", "USING gin (name gin_trgm_ops)"),
    ("ix_customers_userid_trgm", "customers", "USING gin (external_userid gin_trgm_ops)"),
    ("ix_relations_remark_trgm", "relations", "USING gin (remark gin_trgm_ops)"),
)


def _build_concurrently(name: str, table: str, how: str) -> None:
    """Inside autocommit_block: a leftover INVALID index of a failed build is dropped first."""
    invalid = (
        op.get_bind()
        .execute(
            sa.text(
                "SELECT 1 FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
                "WHERE c.relname = :name AND NOT i.indisvalid"
            ),
            {"name": name},
        )
        .first()
    )
    if invalid:
        op.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {name}")
    op.execute(f"CREATE INDEX CONCURRENTLY IF NOT EXISTS {name} ON {table} {how}")


def _trigrams_available() -> bool:
    try:  # autocommit: a refusal spoils no transaction
        op.get_bind().execute(sa.text("CREATE EXTENSION IF NOT EXISTS pg_trgm"))
    except sa.exc.DBAPIError as exc:
        log.warning("pg_trgm unavailable (%s): customer search will scan, as before", exc.orig)
        return False
    return True


def upgrade() -> None:
    """Upgrade schema."""
    if op.get_bind().dialect.name != "postgresql":
        return
    with op.get_context().autocommit_block():
        if _trigrams_available():
            for index in TRIGRAMS:
                _build_concurrently(*index)


def downgrade() -> None:
    """Downgrade schema."""
    if op.get_bind().dialect.name != "postgresql":
        return
    with op.get_context().autocommit_block():
        for name, _, _ in TRIGRAMS:
            op.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {name}")
