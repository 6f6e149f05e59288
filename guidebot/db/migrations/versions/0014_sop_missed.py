"""sop_missed: pairs that matched a broken playbook's trigger, caught up when it is fixed

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-05 21:30:00.000000

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0014"
down_revision: str | Sequence[str] | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Upgrade schema."""
    op.create_table(
        "sop_missed",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("playbook_id", sa.String(length=64), nullable=False),
        sa.Column("guide_userid", sa.String(length=64), nullable=False),
        sa.Column("external_userid", sa.String(length=64), nullable=False),
        sa.Column("trigger", sa.String(length=64), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.String(length=255), nullable=True),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("resolved_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sop_missed")),
        sa.UniqueConstraint(
            "playbook_id",
            "guide_userid",
            "external_userid",
            "trigger",
            "at",
            name="uq_sop_missed_fact",
        ),
    )
    op.create_index("ix_sop_missed_playbook_status", "sop_missed", ["playbook_id", "status", "at"])


def downgrade() -> None:
    """Downgrade schema."""
    op.drop_index("ix_sop_missed_playbook_status", table_name="sop_missed")
    op.drop_table("sop_missed")
