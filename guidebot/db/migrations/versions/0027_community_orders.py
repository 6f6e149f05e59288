"""Community links to orders and group labels: the browsers tied to a customer (the visitor id
that opened a link naming them), the Moments orders figure, and HQ's labels on customer groups

Revision ID: 0027
Revises: 0026
Create Date: 2026-12-06 08:00:00.000000

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0027"
down_revision: str | Sequence[str] | None = "0026"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

WHEN = sa.DateTime(timezone=True)


def upgrade() -> None:
    """Upgrade schema."""
    op.create_table(
        "content_visitor_customers",
        sa.Column("visitor_key", sa.String(length=160), nullable=False),
        sa.Column("external_userid", sa.String(length=64), nullable=False),
        sa.Column("first_at", WHEN, nullable=False),
        sa.Column("last_at", WHEN, nullable=False),
        sa.PrimaryKeyConstraint(
            "visitor_key", "external_userid", name=op.f("pk_content_visitor_customers")
        ),
    )
    op.create_index(
        "ix_content_visitor_customers_customer", "content_visitor_customers", ["external_userid"]
    )
    op.create_table(
        "customer_group_labels",
        sa.Column("chat_id", sa.String(length=64), nullable=False),
        sa.Column("label", sa.String(length=32), nullable=False),
        sa.Column("set_by", sa.String(length=100), nullable=False),
        sa.Column("set_at", WHEN, nullable=False),
        sa.ForeignKeyConstraint(
            ["chat_id"],
            ["customer_groups.chat_id"],
            name=op.f("fk_customer_group_labels_chat_id_customer_groups"),
        ),
        sa.PrimaryKeyConstraint("chat_id", "label", name=op.f("pk_customer_group_labels")),
    )
    op.create_index("ix_customer_group_labels_label", "customer_group_labels", ["label"])
    # Plain ADD COLUMN on both engines: a batch copy would drop guide_daily's triggers.
    op.add_column(
        "guide_daily",
        sa.Column("moment_orders", sa.Integer(), server_default="0", nullable=False),
    )


def downgrade() -> None:
    """Downgrade schema."""
    op.execute("ALTER TABLE guide_daily DROP COLUMN moment_orders")  # in place (SQLite 3.35+)
    op.drop_index("ix_customer_group_labels_label", table_name="customer_group_labels")
    op.drop_table("customer_group_labels")
    op.drop_index("ix_content_visitor_customers_customer", table_name="content_visitor_customers")
    op.drop_table("content_visitor_customers")
