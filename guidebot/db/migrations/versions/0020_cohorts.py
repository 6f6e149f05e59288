"""Holdouts (sop_enrollments.treatment_group), cohort rollups and lifecycle stages

Revision ID: 0020
Revises: 0015
Create Date: 2026-12-06 00:30:00.000000

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0020"
down_revision: str | Sequence[str] | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Upgrade schema."""
    # Plain ADD COLUMN on both engines (a batch copy on SQLite would drop the table's triggers).
    op.add_column("sop_enrollments", sa.Column("treatment_group", sa.String(16), nullable=True))


def downgrade() -> None:
    """Downgrade schema."""
    op.execute("ALTER TABLE sop_enrollments DROP COLUMN treatment_group")
