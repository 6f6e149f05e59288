"""service quality: WeCom's contact statistics per guide and day, their rollup counters, and
lost-customer alerts

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-10 09:00:00.000000

guide_behavior_daily gets a metrics_dirty trigger like the other source tables (migration
0006): an insert or a change of WeCom's figures marks the guide's day for the rollups; `kind`
carries the China day. The new guide_daily counters are plain ADD COLUMNs (no batch copy).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0013"
down_revision: str | Sequence[str] | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

COUNTERS = (
    "chats",
    "messages",
    "negative_feedback",
    "reply_days",
    "reply_pct_x100",
    "reply_time_days",
    "reply_minutes",
)
FIGURES = (
    "chat_cnt",
    "message_cnt",
    "reply_percentage",
    "avg_reply_time",
    "negative_feedback_cnt",
    "new_contact_cnt",
    "new_apply_cnt",
)
_COLUMNS = "(source, guide_userid, at, external_userid, kind)"
_ROW = "'behavior', NEW.guide_userid, NEW.fetched_at, NULL, CAST(NEW.day AS TEXT)"


def upgrade() -> None:
    """Upgrade schema."""
    op.create_table(
        "guide_behavior_daily",
        sa.Column("guide_userid", sa.String(length=64), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("chat_cnt", sa.Integer(), nullable=False),
        sa.Column("message_cnt", sa.Integer(), nullable=False),
        sa.Column("reply_percentage", sa.Float(), nullable=True),
        sa.Column("avg_reply_time", sa.Integer(), nullable=True),
        sa.Column("negative_feedback_cnt", sa.Integer(), nullable=False),
        sa.Column("new_contact_cnt", sa.Integer(), nullable=False),
        sa.Column("new_apply_cnt", sa.Integer(), nullable=False),
        sa.Column("fetched_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("guide_userid", "day", name=op.f("pk_guide_behavior_daily")),
    )
    with op.batch_alter_table("guide_behavior_daily", schema=None) as batch_op:
        batch_op.create_index("ix_guide_behavior_daily_day", ["day"], unique=False)
    op.create_table(
        "lost_alerts",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("guide_userid", sa.String(length=64), nullable=False),
        sa.Column("external_userid", sa.String(length=64), nullable=False),
        sa.Column("store_id", sa.Integer(), nullable=True),
        sa.Column("customer_name", sa.String(length=255), nullable=True),
        sa.Column("together_since", sa.DateTime(timezone=True), nullable=True),
        sa.Column("lost_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_sent", sa.Text(), nullable=True),
        sa.Column("last_sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("batch", sa.String(length=32), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_lost_alerts")),
        sa.UniqueConstraint(
            "guide_userid",
            "external_userid",
            "lost_at",
            name=op.f("uq_lost_alerts_guide_userid_external_userid_lost_at"),
        ),
    )
    with op.batch_alter_table("lost_alerts", schema=None) as batch_op:
        batch_op.create_index("ix_lost_alerts_batch", ["guide_userid", "batch"], unique=False)
        batch_op.create_index("ix_lost_alerts_store", ["store_id", "lost_at"], unique=False)
    # Plain ADD COLUMN: nothing copies guide_daily.
    for column in COUNTERS:
        op.add_column(
            "guide_daily",
            sa.Column(column, sa.Integer(), nullable=False, server_default="0"),
        )
    _create_triggers()


def downgrade() -> None:
    """Downgrade schema."""
    _drop_triggers()
    for column in reversed(COUNTERS):
        op.drop_column("guide_daily", column)
    with op.batch_alter_table("lost_alerts", schema=None) as batch_op:
        batch_op.drop_index("ix_lost_alerts_store")
        batch_op.drop_index("ix_lost_alerts_batch")
    op.drop_table("lost_alerts")
    with op.batch_alter_table("guide_behavior_daily", schema=None) as batch_op:
        batch_op.drop_index("ix_guide_behavior_daily_day")
    op.drop_table("guide_behavior_daily")


def _triggers(postgres: bool) -> list[tuple[str, str, str | None]]:
    """(name, event, WHEN condition) on guide_behavior_daily."""
    if postgres:
        changed = " OR ".join(f"OLD.{c} IS DISTINCT FROM NEW.{c}" for c in FIGURES)
    else:
        changed = " OR ".join(f"OLD.{c} IS NOT NEW.{c}" for c in FIGURES)
    return [
        ("metrics_dirty_guide_behavior_insert", "INSERT", None),
        ("metrics_dirty_guide_behavior_update", "UPDATE", changed),
    ]


def _create_triggers() -> None:
    postgres = op.get_bind().dialect.name == "postgresql"
    for name, event, when in _triggers(postgres):
        if postgres:
            op.execute(
                f"CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
                f"INSERT INTO metrics_dirty {_COLUMNS} VALUES ({_ROW}); RETURN NULL; END $$"
            )
            op.execute(
                f"CREATE TRIGGER {name} AFTER {event} ON guide_behavior_daily FOR EACH ROW"
                + (f" WHEN ({when})" if when else "")
                + f" EXECUTE FUNCTION {name}()"
            )
        else:
            op.execute(
                f"CREATE TRIGGER {name} AFTER {event} ON guide_behavior_daily FOR EACH ROW"
                + (f" WHEN {when}" if when else "")
                + f" BEGIN INSERT INTO metrics_dirty {_COLUMNS} SELECT {_ROW}; END"
            )


def _drop_triggers() -> None:
    postgres = op.get_bind().dialect.name == "postgresql"
    for name, _event, _when in _triggers(postgres):
        if postgres:
            op.execute(f"DROP TRIGGER IF EXISTS {name} ON guide_behavior_daily")
            op.execute(f"DROP FUNCTION IF EXISTS {name}()")
        else:
            op.execute(f"DROP TRIGGER IF EXISTS {name}")
