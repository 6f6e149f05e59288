"""Scale: the indexes bench.scale's slow reads called for, built without stopping writes

Revision ID: 0026
Revises: 0021
Create Date: 2026-12-06 04:00:00.000000

On PostgreSQL each index is built with CREATE INDEX CONCURRENTLY, outside a transaction
(Alembic's autocommit_block): the table keeps taking inserts and updates while it is built,
so a live brand's tables are never locked for the minutes a build takes. A concurrent build
that fails (a deadlock, a cancelled deploy) leaves an INVALID index behind; running the upgrade
again drops it and builds it anew. On SQLite (one machine, small data) an ordinary build.

* customers (created_at, external_userid): the customer list, newest first (HQ's
  /admin/customers and GET /api/v1/customers), read the whole table and sorted it for every
  page; with the index it walks the newest customers and stops at the page.
* PostgreSQL only, pg_trgm: trigram indexes on customers.name, customers.external_userid and
  relations.remark, the three columns customer search matches with ILIKE '%words%'
  (contacts/queries.py looks them up one arm per column). Without the extension (a role that
  may not create it) the indexes are skipped with a warning: search then scans, as before.
"""

import logging
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0026"
down_revision: str | Sequence[str] | None = "0021"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

log = logging.getLogger("alembic.runtime.migration")

CUSTOMERS_NEWEST = ("ix_customers_created", "customers", "(created_at, external_userid)")
TRIGRAMS = (
    ("ix_customers_name_trgm", "customers", "USING gin (name gin_trgm_ops)"),
    ("ix_customers_userid_trgm", "customers", "USING gin (external_userid gin_trgm_ops)"),
    ("ix_relations_remark_trgm", "relations", "USING gin (remark gin_trgm_ops)"),
)


def _build_concurrently(name: str, table: str, how: str) -> None:
    """Inside autocommit_block: a leftover INVALID index of a failed build is dropped first."""
    bind = op.get_bind()
    invalid = bind.execute(
        sa.text(
            "SELECT 1 FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
            "WHERE c.relname = :name AND NOT i.indisvalid"
        ),
        {"name": name},
    ).first()
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
        op.create_index("ix_customers_created", "customers", ["created_at", "external_userid"])
        return
    with op.get_context().autocommit_block():
        _build_concurrently(*CUSTOMERS_NEWEST)
        if _trigrams_available():
            for index in TRIGRAMS:
                _build_concurrently(*index)


def downgrade() -> None:
    """Downgrade schema."""
    if op.get_bind().dialect.name != "postgresql":
        op.drop_index("ix_customers_created", table_name="customers")
        return
    with op.get_context().autocommit_block():
        for name, _, _ in (*TRIGRAMS, CUSTOMERS_NEWEST):
            op.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {name}")
