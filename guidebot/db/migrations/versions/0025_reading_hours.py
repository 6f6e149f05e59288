"""Each customer's reading hours (best_time) and the stores' prior

Revision ID: 0025
Revises: 0024
Create Date: 2026-12-06 03:50:00.000000

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0025"
down_revision: str | Sequence[str] | None = "0024"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

WHEN = sa.DateTime(timezone=True)


def upgrade() -> None:
    """Upgrade schema."""
    op.create_table(
        "customer_read_hours",
        sa.Column("external_userid", sa.String(length=64), nullable=False),
        sa.Column("store_id", sa.Integer(), nullable=True),
        sa.Column("counts", sa.JSON(), nullable=False),
        sa.Column("observations", sa.Integer(), nullable=False),
        sa.Column("best_hour", sa.Integer(), nullable=True),
        sa.Column("last_counted_at", WHEN, nullable=False),
        sa.Column("updated_at", WHEN, nullable=False),
        sa.PrimaryKeyConstraint("external_userid", name=op.f("pk_customer_read_hours")),
    )
    op.create_table(
        "read_hour_counts",
        sa.Column("store_id", sa.Integer(), nullable=False),
        sa.Column("hour", sa.Integer(), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("store_id", "hour", name=op.f("pk_read_hour_counts")),
    )


def downgrade() -> None:
    """Downgrade schema."""
    op.drop_table("read_hour_counts")
    op.drop_table("customer_read_hours")
