"""Group faces: links forwarded into groups, their figures, WeCom's group chat statistics

Revision ID: 0024
Revises: 0022
Create Date: 2026-12-06 04:00:00.000000

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0024"
down_revision: str | Sequence[str] | None = "0022"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

CHAT_COLUMNS = ("content_forwards", "content_opens", "content_open_visitors")
FIGURES = ("group_opens", "group_orders")
WHEN = sa.DateTime(timezone=True)


def upgrade() -> None:
    """Upgrade schema."""
    op.create_table(
        "group_chat_stats",
        sa.Column("owner_userid", sa.String(length=64), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("new_chat_cnt", sa.Integer(), nullable=False),
        sa.Column("chat_total", sa.Integer(), nullable=False),
        sa.Column("chat_has_msg", sa.Integer(), nullable=False),
        sa.Column("new_member_cnt", sa.Integer(), nullable=False),
        sa.Column("member_total", sa.Integer(), nullable=False),
        sa.Column("member_has_msg", sa.Integer(), nullable=False),
        sa.Column("msg_total", sa.Integer(), nullable=False),
        sa.Column("synced_at", WHEN, nullable=False),
        sa.PrimaryKeyConstraint("owner_userid", "day", name=op.f("pk_group_chat_stats")),
    )
    op.create_index("ix_group_chat_stats_day", "group_chat_stats", ["day"])
    # Plain ADD COLUMN on both engines: a batch copy would drop these tables' triggers.
    for table in CHAT_COLUMNS:
        op.add_column(table, sa.Column("chat_id", sa.String(length=64), nullable=True))
    op.create_index("ix_content_forwards_chat", "content_forwards", ["chat_id", "sent_at"])
    for column in FIGURES:
        op.add_column(
            "guide_daily", sa.Column(column, sa.Integer(), server_default="0", nullable=False)
        )


def downgrade() -> None:
    """Downgrade schema."""
    for column in FIGURES:  # in place on both (SQLite 3.35+)
        op.execute(f"ALTER TABLE guide_daily DROP COLUMN {column}")
    op.drop_index("ix_content_forwards_chat", table_name="content_forwards")
    for table in CHAT_COLUMNS:
        op.execute(f"ALTER TABLE {table} DROP COLUMN chat_id")
    op.drop_index("ix_group_chat_stats_day", table_name="group_chat_stats")
    op.drop_table("group_chat_stats")
