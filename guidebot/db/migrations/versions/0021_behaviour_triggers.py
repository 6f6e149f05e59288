"""Behaviour triggers: the indexes the sop-behaviour scan reads by time

Revision ID: 0021
Revises: 0020
Create Date: 2026-12-06 01:50:00.000000

"""

from collections.abc import Sequence

from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0021"
down_revision: str | Sequence[str] | None = "0020"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Upgrade schema."""
    # opened_no_order: the opens of the scan's window; repurchase_due: the orders of its window.
    op.create_index("ix_content_opens_opened", "content_opens", ["opened_at"])
    op.create_index("ix_customer_stage_orders_paid", "customer_stage_orders", ["paid_at"])


def downgrade() -> None:
    """Downgrade schema."""
    op.drop_index("ix_customer_stage_orders_paid", table_name="customer_stage_orders")
    op.drop_index("ix_content_opens_opened", table_name="content_opens")
