"""customer groups: groups, members, the membership log, join ways, store group welcomes;
the group figures in guide_daily and guide_profile_daily, and the triggers marking them dirty

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-06 00:00:00.000000

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0019"
down_revision: str | Sequence[str] | None = "0018"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
WHEN = sa.DateTime(timezone=True)
FIGURES = (
    ("guide_daily", ("group_joined", "group_left")),
    ("guide_profile_daily", ("groups_owned", "in_group")),
)
DIRTY = "INSERT INTO metrics_dirty (source, guide_userid, at, external_userid, kind)"


def _triggers(postgres: bool) -> list[tuple[str, str, str, str, list[tuple[str | None, str]]]]:
    """(name, table, event, WHEN condition, [(IF condition, VALUES row)]), as 0006 writes them:
    a customer's join or departure dirties the owner's day (and the snapshots of the customer's
    guides); a group's owner or status change dirties the snapshots of its owners and of its
    customers' guides."""
    differs = "IS DISTINCT FROM" if postgres else "IS NOT"
    owner_moved = f"OLD.owner_userid {differs} NEW.owner_userid"
    return [
        (
            "metrics_dirty_group_member_events",
            "group_member_events",
            "INSERT",
            "NEW.member_type = 'customer' AND NEW.owner_userid IS NOT NULL",
            [(None, "'group', NEW.owner_userid, NEW.occurred_at, NEW.member_id, NEW.kind")],
        ),
        (
            "metrics_dirty_customer_groups",
            "customer_groups",
            "UPDATE",
            f"{owner_moved} OR OLD.status {differs} NEW.status",
            [
                (
                    f"{owner_moved} AND OLD.owner_userid IS NOT NULL",
                    "'profile', OLD.owner_userid, NEW.updated_at, NULL, NULL",
                ),
                (
                    # kind: the group, whose customers' 入群 share may change with it
                    "NEW.owner_userid IS NOT NULL",
                    "'group', NEW.owner_userid, NEW.updated_at, NULL, NEW.chat_id",
                ),
            ],
        ),
    ]


def create_triggers() -> None:
    postgres = op.get_bind().dialect.name == "postgresql"
    for name, table, event, when, rows in _triggers(postgres):
        if postgres:
            body = " ".join(
                f"IF {condition} THEN {DIRTY} VALUES ({values}); END IF;"
                if condition
                else f"{DIRTY} VALUES ({values});"
                for condition, values in rows
            )
            op.execute(
                f"CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
                f"{body} RETURN NULL; END $$"
            )
            op.execute(
                f"CREATE TRIGGER {name} AFTER {event} ON {table} FOR EACH ROW WHEN ({when})"
                f" EXECUTE FUNCTION {name}()"
            )
        else:
            body = " ".join(
                f"{DIRTY} SELECT {values}" + (f" WHERE {condition};" if condition else ";")
                for condition, values in rows
            )
            op.execute(
                f"CREATE TRIGGER {name} AFTER {event} ON {table} FOR EACH ROW WHEN {when}"
                f" BEGIN {body} END"
            )


def drop_triggers() -> None:
    postgres = op.get_bind().dialect.name == "postgresql"
    for name, table, *_ in _triggers(postgres):
        if postgres:
            op.execute(f"DROP TRIGGER IF EXISTS {name} ON {table}")
            op.execute(f"DROP FUNCTION IF EXISTS {name}()")
        else:
            op.execute(f"DROP TRIGGER IF EXISTS {name}")


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
    # Plain ADD COLUMN on both engines: a batch copy would drop guide_daily's neighbours'
    # triggers (0006). Existing rows hold no group figures: 0.
    for table, columns in FIGURES:
        for column in columns:
            op.add_column(
                table, sa.Column(column, sa.Integer(), server_default="0", nullable=False)
            )
    create_triggers()


def downgrade() -> None:
    """Downgrade schema."""
    drop_triggers()
    for table, columns in FIGURES:
        for column in columns:  # in place on both (SQLite 3.35+)
            op.execute(f"ALTER TABLE {table} DROP COLUMN {column}")
    op.drop_table("store_group_welcomes")
    op.drop_table("group_join_ways")
    op.drop_table("group_member_events")
    op.drop_table("customer_group_members")
    op.drop_table("customer_groups")
