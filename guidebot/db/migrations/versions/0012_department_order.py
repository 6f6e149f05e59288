"""departments.sort_order is BIGINT: WeCom's department order runs to 2^32 - 1

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-05 09:00:00.000000

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0012"
down_revision: str | Sequence[str] | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Upgrade schema."""
    # SQLite's INTEGER holds 64 bits already (the model keeps it INTEGER there), and a batch
    # copy of departments would drop its metrics_dirty trigger: only PostgreSQL changes.
    if op.get_bind().dialect.name == "postgresql":
        op.alter_column(
            "departments",
            "sort_order",
            existing_type=sa.Integer(),
            type_=sa.BigInteger(),
            existing_nullable=False,
        )


def downgrade() -> None:
    """Downgrade schema."""
    if op.get_bind().dialect.name == "postgresql":
        # Orders past 2^31 - 1 do not fit back: they are clipped to the largest that does.
        op.execute("UPDATE departments SET sort_order = 2147483647 WHERE sort_order > 2147483647")
        op.alter_column(
            "departments",
            "sort_order",
            existing_type=sa.BigInteger(),
            type_=sa.Integer(),
            existing_nullable=False,
        )
