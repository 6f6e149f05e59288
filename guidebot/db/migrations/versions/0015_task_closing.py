"""sop_tasks: who closed a task, and when an overdue one is escalated to the store's manager

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-12 09:00:00.000000

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0015"
down_revision: str | Sequence[str] | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

COLUMNS = (
    ("completed_by_user", sa.String(length=100)),
    ("escalate_at", sa.DateTime(timezone=True)),
    ("escalated_at", sa.DateTime(timezone=True)),
)


def upgrade() -> None:
    """Upgrade schema."""
    # Plain ADD COLUMN on both engines: a batch copy of sop_tasks on SQLite would drop its
    # metrics_dirty triggers (0006). The new `snoozed` status needs no change: status is text.
    for name, type_ in COLUMNS:
        op.add_column("sop_tasks", sa.Column(name, type_, nullable=True))
    op.create_index("ix_sop_tasks_escalate", "sop_tasks", ["escalate_at"], unique=False)


def downgrade() -> None:
    """Downgrade schema."""
    op.drop_index("ix_sop_tasks_escalate", table_name="sop_tasks")
    # Snoozed rows come back as pending at the time they were put off to.
    op.execute("UPDATE sop_tasks SET status = 'pending' WHERE status = 'snoozed'")
    # In place on both (SQLite 3.35+), keeping the table and its triggers.
    for name, _ in COLUMNS:
        op.execute(f"ALTER TABLE sop_tasks DROP COLUMN {name}")
