"""Community steps: group_message and moment_task send rows, the groups of each send, the
`via` of a tracked link's open (a group send or a Moments post), and their figures in
guide_daily with the triggers marking them dirty

Revision ID: 0022
Revises: 0021
Create Date: 2026-12-06 03:40:00.000000

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0022"
down_revision: str | Sequence[str] | None = "0021"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
WHEN = sa.DateTime(timezone=True)
FIGURES = (
    "group_sends",
    "group_sends_done",
    "moments_assigned",
    "moments_published",
    "group_link_opens",
    "moment_link_opens",
)
DIRTY = "INSERT INTO metrics_dirty (source, guide_userid, at, external_userid, kind)"


def _triggers(postgres: bool) -> list[tuple[str, str, str, str, list[tuple[str | None, str]]]]:
    """(name, table, event, WHEN condition, [(IF condition, VALUES row)]), as 0019 writes
    them: a send row's status change dirties its owner's (or guide's) due day; an open of a
    link minted for a group send or a Moments post dirties the guide's day of the open."""
    differs = "IS DISTINCT FROM" if postgres else "IS NOT"
    return [
        (
            "metrics_dirty_sop_group_sends",
            "sop_group_sends",
            "UPDATE",
            f"OLD.status {differs} NEW.status",
            [(None, "'task', NEW.userid, NEW.due_at, NULL, NEW.action")],
        ),
        (
            "metrics_dirty_content_opens_via",
            "content_opens",
            "INSERT",
            "NEW.via IS NOT NULL",
            [(None, "'open', NEW.guide_userid, NEW.opened_at, NEW.external_userid, NULL")],
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
        "sop_group_sends",
        sa.Column("id", BIG_ID, autoincrement=True, nullable=False),
        sa.Column("playbook_id", sa.String(length=64), nullable=False),
        sa.Column("playbook_version", sa.Integer(), nullable=False),
        sa.Column("step_id", sa.String(length=64), nullable=False),
        sa.Column("action", sa.String(length=16), nullable=False),
        sa.Column("occurrence", sa.String(length=64), nullable=False),
        sa.Column("userid", sa.String(length=64), nullable=False),
        sa.Column("store_id", sa.Integer(), nullable=True),
        sa.Column("content", sa.String(length=255), nullable=True),
        sa.Column("due_at", WHEN, nullable=False),
        sa.Column("expires_at", WHEN, nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("message", sa.Text(), nullable=True),
        sa.Column("link_url", sa.Text(), nullable=True),
        sa.Column("wecom_msgid", sa.String(length=128), nullable=True),
        sa.Column("moment_id", sa.String(length=128), nullable=True),
        sa.Column("reach", sa.Integer(), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("sent_at", WHEN, nullable=True),
        sa.Column("completed_at", WHEN, nullable=True),
        sa.Column("polled_at", WHEN, nullable=True),
        sa.Column("created_at", WHEN, nullable=False),
        sa.Column("updated_at", WHEN, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sop_group_sends")),
        sa.UniqueConstraint(
            "playbook_id",
            "step_id",
            "occurrence",
            "userid",
            name=op.f("uq_sop_group_sends_playbook_id_step_id_occurrence_userid"),
        ),
    )
    op.create_index("ix_sop_group_sends_status_due", "sop_group_sends", ["status", "due_at"])
    op.create_index("ix_sop_group_sends_user", "sop_group_sends", ["userid", "due_at"])
    op.create_table(
        "sop_group_send_chats",
        sa.Column("send_id", BIG_ID, nullable=False),
        sa.Column("chat_id", sa.String(length=64), nullable=False),
        sa.Column("status", sa.Integer(), nullable=False),
        sa.Column("send_time", WHEN, nullable=True),
        sa.ForeignKeyConstraint(
            ["send_id"],
            ["sop_group_sends.id"],
            name=op.f("fk_sop_group_send_chats_send_id_sop_group_sends"),
        ),
        sa.PrimaryKeyConstraint("send_id", "chat_id", name=op.f("pk_sop_group_send_chats")),
    )
    # Plain ADD COLUMN on both engines (a batch copy would drop the tables' triggers).
    op.add_column("content_opens", sa.Column("via", sa.String(length=32), nullable=True))
    for column in FIGURES:
        op.add_column(
            "guide_daily", sa.Column(column, sa.Integer(), server_default="0", nullable=False)
        )
    create_triggers()


def downgrade() -> None:
    """Downgrade schema."""
    drop_triggers()
    for column in FIGURES:  # in place on both (SQLite 3.35+)
        op.execute(f"ALTER TABLE guide_daily DROP COLUMN {column}")
    op.execute("ALTER TABLE content_opens DROP COLUMN via")
    op.drop_table("sop_group_send_chats")
    op.drop_index("ix_sop_group_sends_user", table_name="sop_group_sends")
    op.drop_index("ix_sop_group_sends_status_due", table_name="sop_group_sends")
    op.drop_table("sop_group_sends")
