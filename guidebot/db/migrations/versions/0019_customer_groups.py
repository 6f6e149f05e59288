"""customer groups: groups, members, the membership log, join ways, store group welcomes

Revision ID: 0019
Revises: 0015
Create Date: 2026-12-06 00:00:00.000000

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0019"
down_revision: str | Sequence[str] | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
WHEN = sa.DateTime(timezone=True)


def upgrade() -> None:
    """Upgrade schema."""
    op.create_table(
        "customer_groups",
        sa.Column("chat_id", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=True),
        sa.Column("owner_userid", sa.String(length=64), nullable=True),
        sa.Column("store_id", sa.Integer(), nullable=True),
        sa.Column("notice", sa.Text(), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("owner_status", sa.Integer(), nullable=False),
        sa.Column("member_version", sa.String(length=64), nullable=True),
        sa.Column("created_at", WHEN, nullable=True),
        sa.Column("dismissed_at", WHEN, nullable=True),
        sa.Column("synced_at", WHEN, nullable=True),
        sa.Column("first_seen_at", WHEN, nullable=False),
        sa.Column("updated_at", WHEN, nullable=False),
        sa.ForeignKeyConstraint(
            ["store_id"], ["departments.id"], name=op.f("fk_customer_groups_store_id_departments")
        ),
        sa.PrimaryKeyConstraint("chat_id", name=op.f("pk_customer_groups")),
    )
    op.create_index("ix_customer_groups_owner", "customer_groups", ["owner_userid", "status"])
    op.create_index("ix_customer_groups_store", "customer_groups", ["store_id", "status"])
    op.create_table(
        "customer_group_members",
        sa.Column("id", BIG_ID, autoincrement=True, nullable=False),
        sa.Column("chat_id", sa.String(length=64), nullable=False),
        sa.Column("member_id", sa.String(length=64), nullable=False),
        sa.Column("member_type", sa.String(length=16), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=True),
        sa.Column("group_nickname", sa.String(length=255), nullable=True),
        sa.Column("unionid", sa.String(length=64), nullable=True),
        sa.Column("joined_at", WHEN, nullable=True),
        sa.Column("join_scene", sa.Integer(), nullable=True),
        sa.Column("invitor_userid", sa.String(length=64), nullable=True),
        sa.Column("state", sa.String(length=64), nullable=True),
        sa.Column("config_id", sa.String(length=64), nullable=True),
        sa.Column("store_id", sa.Integer(), nullable=True),
        sa.Column("channel", sa.String(length=64), nullable=True),
        sa.Column("campaign", sa.String(length=64), nullable=True),
        sa.Column("left_at", WHEN, nullable=True),
        sa.Column("changed_at", WHEN, nullable=False),
        sa.Column("updated_at", WHEN, nullable=False),
        sa.ForeignKeyConstraint(
            ["chat_id"],
            ["customer_groups.chat_id"],
            name=op.f("fk_customer_group_members_chat_id_customer_groups"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_customer_group_members")),
        sa.UniqueConstraint(
            "chat_id", "member_id", name=op.f("uq_customer_group_members_chat_id_member_id")
        ),
    )
    op.create_index(
        "ix_customer_group_members_member", "customer_group_members", ["member_id", "status"]
    )
    op.create_table(
        "group_member_events",
        sa.Column("id", BIG_ID, autoincrement=True, nullable=False),
        sa.Column("chat_id", sa.String(length=64), nullable=False),
        sa.Column("member_id", sa.String(length=64), nullable=False),
        sa.Column("member_type", sa.String(length=16), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("occurred_at", WHEN, nullable=False),
        sa.Column("recorded_at", WHEN, nullable=False),
        sa.Column("scene", sa.Integer(), nullable=True),
        sa.Column("owner_userid", sa.String(length=64), nullable=True),
        sa.Column("store_id", sa.Integer(), nullable=True),
        sa.Column("state", sa.String(length=64), nullable=True),
        sa.Column("config_id", sa.String(length=64), nullable=True),
        sa.Column("channel", sa.String(length=64), nullable=True),
        sa.Column("campaign", sa.String(length=64), nullable=True),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("inbox_id", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_group_member_events")),
        sa.UniqueConstraint(
            "chat_id",
            "member_id",
            "kind",
            "occurred_at",
            name=op.f("uq_group_member_events_chat_id_member_id_kind_occurred_at"),
        ),
    )
    for name, columns in (
        ("ix_group_member_events_occurred", ["occurred_at"]),
        ("ix_group_member_events_owner", ["owner_userid", "occurred_at"]),
        ("ix_group_member_events_store", ["store_id", "occurred_at"]),
        ("ix_group_member_events_member", ["member_id", "occurred_at"]),
    ):
        op.create_index(name, "group_member_events", columns)
    op.create_table(
        "group_join_ways",
        sa.Column("config_id", sa.String(length=64), nullable=False),
        sa.Column("state", sa.String(length=30), nullable=False),
        sa.Column("store_id", sa.Integer(), nullable=False),
        sa.Column("channel", sa.String(length=30), nullable=False),
        sa.Column("campaign", sa.String(length=30), nullable=True),
        sa.Column("scene", sa.Integer(), nullable=False),
        sa.Column("chat_ids", sa.JSON(), nullable=False),
        sa.Column("remark", sa.String(length=30), nullable=True),
        sa.Column("auto_create_room", sa.Boolean(), nullable=False),
        sa.Column("room_base_name", sa.String(length=40), nullable=True),
        sa.Column("room_base_id", sa.Integer(), nullable=True),
        sa.Column("qr_code", sa.Text(), nullable=True),
        sa.Column("created_at", WHEN, nullable=False),
        sa.ForeignKeyConstraint(
            ["store_id"], ["departments.id"], name=op.f("fk_group_join_ways_store_id_departments")
        ),
        sa.PrimaryKeyConstraint("config_id", name=op.f("pk_group_join_ways")),
        sa.UniqueConstraint("state", name=op.f("uq_group_join_ways_state")),
    )
    op.create_table(
        "store_group_welcomes",
        sa.Column("store_id", sa.Integer(), nullable=False),
        sa.Column("template", sa.String(length=255), nullable=False),
        sa.Column("template_id", sa.String(length=64), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("created_at", WHEN, nullable=False),
        sa.Column("updated_at", WHEN, nullable=False),
        sa.ForeignKeyConstraint(
            ["store_id"],
            ["departments.id"],
            name=op.f("fk_store_group_welcomes_store_id_departments"),
        ),
        sa.PrimaryKeyConstraint("store_id", name=op.f("pk_store_group_welcomes")),
    )


def downgrade() -> None:
    """Downgrade schema."""
    op.drop_table("store_group_welcomes")
    op.drop_table("group_join_ways")
    op.drop_table("group_member_events")
    op.drop_table("customer_group_members")
    op.drop_table("customer_groups")
