"""content_open_visitors.client_tag: one client's burst of new visitors is capped

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-04 18:40:00.000000

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0011"
down_revision: str | Sequence[str] | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Upgrade schema."""
    # A plain ADD COLUMN (no batch copy): SQLite keeps the table's metrics_dirty trigger.
    op.add_column(
        "content_open_visitors", sa.Column("client_tag", sa.String(length=32), nullable=True)
    )
    op.create_index(
        "ix_content_open_visitors_client",
        "content_open_visitors",
        ["item_id", "client_tag", "first_opened_at"],
        unique=False,
    )


def downgrade() -> None:
    """Downgrade schema."""
    op.drop_index("ix_content_open_visitors_client", table_name="content_open_visitors")
    # Plain DROP COLUMN (SQLite 3.35+), not a batch copy that would lose the trigger.
    op.drop_column("content_open_visitors", "client_tag")
