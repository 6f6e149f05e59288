"""Holdouts (sop_enrollments.treatment_group), cohort rollups and lifecycle stages

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-06 00:30:00.000000

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0020"
down_revision: str | Sequence[str] | None = "0019"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


RETENTION = ("d1", "d7", "d30", "d90")
REPURCHASE = ("r90", "r180", "r365")
COUNTERS = (
    "members",
    *(f"{d}_{part}" for d in RETENTION for part in ("due", "kept")),
    "buyers",
    *(f"{r}_{part}" for r in REPURCHASE for part in ("due", "yes")),
    "orders",
)
WHEN = sa.DateTime(timezone=True)


def upgrade() -> None:
    """Upgrade schema."""
    # Plain ADD COLUMN on both engines (a batch copy on SQLite would drop the table's triggers).
    op.add_column("sop_enrollments", sa.Column("treatment_group", sa.String(16), nullable=True))
    op.create_table(
        "sop_goal_counts",
        sa.Column("playbook_id", sa.String(length=64), nullable=False),
        sa.Column("treatment_group", sa.String(length=16), nullable=False),
        sa.Column("deadline_day", sa.Date(), nullable=False),
        sa.Column("enrolled", sa.Integer(), nullable=False),
        sa.Column("met", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint(
            "playbook_id", "treatment_group", "deadline_day", name=op.f("pk_sop_goal_counts")
        ),
    )
    # What the cohorts job reads since it last looked.
    op.create_index("ix_relation_events_recorded", "relation_events", ["recorded_at"])
    op.create_index("ix_orders_updated", "orders", ["updated_at"])
    op.create_table(
        "cohort_members",
        sa.Column("external_userid", sa.String(length=64), nullable=False),
        sa.Column("added_at", WHEN, nullable=False),
        sa.Column("add_day", sa.Date(), nullable=False),
        sa.Column("store_id", sa.Integer(), nullable=False),
        sa.Column("guide_userid", sa.String(length=64), nullable=False),
        sa.Column("channel", sa.String(length=64), nullable=False),
        sa.Column("campaign", sa.String(length=64), nullable=False),
        sa.Column("playbook", sa.String(length=64), nullable=False),
        *(sa.Column(name, sa.Boolean(), nullable=True) for name in RETENTION),
        sa.Column("first_order_at", WHEN, nullable=True),
        *(sa.Column(name, sa.Boolean(), nullable=True) for name in REPURCHASE),
        sa.Column("orders", sa.Integer(), nullable=False),
        sa.Column("gmv_fen", sa.BigInteger(), nullable=False),
        sa.Column("next_due_at", WHEN, nullable=True),
        sa.Column("refreshed_at", WHEN, nullable=False),
        sa.PrimaryKeyConstraint("external_userid", name=op.f("pk_cohort_members")),
    )
    op.create_index("ix_cohort_members_day", "cohort_members", ["add_day"])
    op.create_index("ix_cohort_members_due", "cohort_members", ["next_due_at"])
    op.create_table(
        "cohort_periods",
        sa.Column("period", sa.String(length=8), nullable=False),
        sa.Column("dim", sa.String(length=16), nullable=False),
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("start", sa.Date(), nullable=False),
        *(sa.Column(name, sa.Integer(), nullable=False) for name in COUNTERS),
        sa.Column("gmv_fen", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("period", "dim", "key", "start", name=op.f("pk_cohort_periods")),
    )
    op.create_index("ix_cohort_periods_read", "cohort_periods", ["period", "dim", "start"])
    _lifecycle()


def _lifecycle() -> None:
    op.create_table(
        "customer_stages",
        sa.Column("external_userid", sa.String(length=64), nullable=False),
        sa.Column("stage", sa.String(length=16), nullable=False),
        sa.Column("since", WHEN, nullable=False),
        sa.Column("guide_userid", sa.String(length=64), nullable=False),
        sa.Column("store_id", sa.Integer(), nullable=True),
        sa.Column("engaged", sa.Boolean(), nullable=False),
        sa.Column("orders", sa.Integer(), nullable=False),
        sa.Column("last_active_at", WHEN, nullable=False),
        sa.Column("updated_at", WHEN, nullable=False),
        sa.PrimaryKeyConstraint("external_userid", name=op.f("pk_customer_stages")),
    )
    op.create_index("ix_customer_stages_guide", "customer_stages", ["guide_userid", "stage"])
    op.create_index("ix_customer_stages_store", "customer_stages", ["store_id", "stage"])
    op.create_index("ix_customer_stages_active", "customer_stages", ["stage", "last_active_at"])
    op.create_table(
        "customer_stage_orders",
        sa.Column("order_id", sa.String(length=128), nullable=False),
        sa.Column("external_userid", sa.String(length=64), nullable=False),
        sa.Column("paid_at", WHEN, nullable=False),
        sa.PrimaryKeyConstraint("order_id", name=op.f("pk_customer_stage_orders")),
    )
    op.create_index(
        "ix_customer_stage_orders_customer", "customer_stage_orders", ["external_userid"]
    )
    op.create_table(
        "customer_stage_log",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("external_userid", sa.String(length=64), nullable=False),
        sa.Column("guide_userid", sa.String(length=64), nullable=False),
        sa.Column("store_id", sa.Integer(), nullable=True),
        sa.Column("from_stage", sa.String(length=16), nullable=True),
        sa.Column("to_stage", sa.String(length=16), nullable=False),
        sa.Column("at", WHEN, nullable=False),
        sa.Column("reason", sa.String(length=32), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_customer_stage_log")),
    )
    op.create_index(
        "ix_customer_stage_log_customer", "customer_stage_log", ["external_userid", "at"]
    )
    op.create_index("ix_customer_stage_log_at", "customer_stage_log", ["at"])
    op.create_table(
        "customer_stage_daily",
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("dim", sa.String(length=8), nullable=False),
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("stage", sa.String(length=16), nullable=False),
        sa.Column("customers", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("day", "dim", "key", "stage", name=op.f("pk_customer_stage_daily")),
    )


def downgrade() -> None:
    """Downgrade schema."""
    stages = ("customer_stage_daily", "customer_stage_log", "customer_stage_orders")
    for table in (*stages, "customer_stages"):
        op.drop_table(table)
    op.drop_table("cohort_periods")
    op.drop_table("sop_goal_counts")
    op.drop_table("cohort_members")
    op.drop_index("ix_orders_updated", table_name="orders")
    op.drop_index("ix_relation_events_recorded", table_name="relation_events")
    op.execute("ALTER TABLE sop_enrollments DROP COLUMN treatment_group")
