"""Each guide's active customers changed at commit, in one order (PostgreSQL)

Revision ID: 0029
Revises: 0028
Create Date: 2026-12-08 04:00:00.000000

0028's triggers updated a guide's `guide_customer_counts` row in the statement that changed
the relation, and so held that row's lock until commit. Two transactions touching two guides
in opposite orders (customer A from g1 to g2 while customer B goes from g2 to g1; two workers'
batches of adds) each held one guide's row and waited for the other's: PostgreSQL aborted
one of them as a deadlock (tests/contacts/test_count_locks.py).

Now each change only adds its +1 or -1 to the transaction's own tally, a setting local to the
transaction (`guidebot.count_changes`, a JSON object keyed by [guide, store]), which a rolled
back savepoint rolls back with it. A deferred constraint trigger applies the tally when the
transaction commits, its rows in (guide, store) order: the first to fire applies everything
and empties the tally, the rest find it empty. Every transaction then locks counts rows in
the same order, holding none before, so none waits for another in a cycle. A transaction does
not see its own changes in the counts before it commits.

SQLite has one writer: its triggers stay as 0028 made them. Every step may run twice.
"""

from collections.abc import Sequence

from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0029"
down_revision: str | Sequence[str] | None = "0028"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TALLY = "COALESCE(NULLIF(current_setting('guidebot.count_changes', true), ''), '{}')::jsonb"
# 0028's WHEN for updates: only a change of status, guide or store moves a count.
CHANGED = (
    "OLD.status IS DISTINCT FROM NEW.status OR OLD.guide_userid IS DISTINCT FROM "
    "NEW.guide_userid OR OLD.store_id IS DISTINCT FROM NEW.store_id"
)
WHEN = {
    "insert": "NEW.status = 'active'",
    "update": CHANGED,
    "delete": "OLD.status = 'active'",
}


def _tally(row: str, sign: str) -> str:
    return (
        f"pair := jsonb_build_array({row}.guide_userid, COALESCE({row}.store_id, 0))::text; "
        f"changes := changes || jsonb_build_object(pair, "
        f"COALESCE((changes ->> pair)::int, 0) {sign} 1); "
    )


FOLLOW = (
    "CREATE OR REPLACE FUNCTION guide_customer_counts_follow() RETURNS trigger "
    f"LANGUAGE plpgsql AS $$ DECLARE changes jsonb := {TALLY}; pair text; BEGIN "
    f"IF TG_OP <> 'INSERT' THEN IF OLD.status = 'active' THEN {_tally('OLD', '-')}"
    "END IF; END IF; "
    f"IF TG_OP <> 'DELETE' THEN IF NEW.status = 'active' THEN {_tally('NEW', '+')}"
    "END IF; END IF; "
    "PERFORM set_config('guidebot.count_changes', changes::text, true); "
    "RETURN NULL; END $$"
)
APPLY = (
    "CREATE OR REPLACE FUNCTION guide_customer_counts_apply() RETURNS trigger "
    "LANGUAGE plpgsql AS $$ DECLARE change record; BEGIN "
    "FOR change IN SELECT k::jsonb ->> 0 AS guide, (k::jsonb ->> 1)::int AS store, "
    f"v::int AS delta FROM jsonb_each_text({TALLY}) AS e(k, v) ORDER BY 1, 2 LOOP "
    "IF change.delta > 0 THEN "
    "INSERT INTO guide_customer_counts (guide_userid, store_id, active) "
    "VALUES (change.guide, change.store, change.delta) "
    "ON CONFLICT (guide_userid, store_id) "
    "DO UPDATE SET active = guide_customer_counts.active + EXCLUDED.active; "
    "ELSIF change.delta < 0 THEN "
    "UPDATE guide_customer_counts SET active = active + change.delta "
    "WHERE guide_userid = change.guide AND store_id = change.store; "
    "END IF; END LOOP; "
    "PERFORM set_config('guidebot.count_changes', '', true); "
    "RETURN NULL; END $$"
)

# 0028's function, for the downgrade: the counts row changed in the relation's statement.
FOLLOW_0028 = (
    "CREATE OR REPLACE FUNCTION guide_customer_counts_follow() RETURNS trigger "
    "LANGUAGE plpgsql AS $$ BEGIN "
    "IF TG_OP <> 'INSERT' THEN IF OLD.status = 'active' THEN "
    "UPDATE guide_customer_counts SET active = active - 1 "
    "WHERE guide_userid = OLD.guide_userid AND store_id = COALESCE(OLD.store_id, 0); "
    "END IF; END IF; "
    "IF TG_OP <> 'DELETE' THEN IF NEW.status = 'active' THEN "
    "INSERT INTO guide_customer_counts (guide_userid, store_id, active) "
    "VALUES (NEW.guide_userid, COALESCE(NEW.store_id, 0), 1) "
    "ON CONFLICT (guide_userid, store_id) "
    "DO UPDATE SET active = guide_customer_counts.active + 1; "
    "END IF; END IF; "
    "RETURN NULL; END $$"
)


def upgrade() -> None:
    """Upgrade schema."""
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(APPLY)
    # 0028's row triggers stay; their function now only tallies.
    op.execute(FOLLOW)
    for event, when in WHEN.items():
        op.execute(f"DROP TRIGGER IF EXISTS guide_customer_counts_apply_{event} ON relations")
        op.execute(
            f"CREATE CONSTRAINT TRIGGER guide_customer_counts_apply_{event} "
            f"AFTER {event.upper()} ON relations DEFERRABLE INITIALLY DEFERRED "
            f"FOR EACH ROW WHEN ({when}) EXECUTE FUNCTION guide_customer_counts_apply()"
        )


def downgrade() -> None:
    """Downgrade schema."""
    if op.get_bind().dialect.name != "postgresql":
        return
    for event in WHEN:
        op.execute(f"DROP TRIGGER IF EXISTS guide_customer_counts_apply_{event} ON relations")
    op.execute("DROP FUNCTION IF EXISTS guide_customer_counts_apply()")
    op.execute(FOLLOW_0028)
