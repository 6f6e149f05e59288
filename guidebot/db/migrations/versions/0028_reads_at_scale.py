"""Scale: each guide's active customers kept as they change, an index of open guide tasks, the
newest customers first, and customer search from full-text indexes on SQLite

Revision ID: 0028
Revises: 0027
Create Date: 2026-12-07 04:00:00.000000

Three HQ reads grew with the brand (README, "At scale"):

* `guide_customer_counts`: each guide's active relations per store, kept by triggers on
  `relations` in the same transaction as each change (insert, status, guide or store changed,
  delete), on both databases; the guide and store lists read it instead of counting every
  relation. It is filled here from the relations: on SQLite in the migration's transaction
  (the service waits for its migrations), on PostgreSQL one guide per short transaction while
  the service writes (GUIDE_FILL says why no change is missed or counted twice).
* `ix_sop_tasks_guide_open`: a partial index of the guide-facing tasks still open, so counting
  every guide's open and overdue tasks reads those, not every task ever sent. Its predicate
  must be the one the query writes (guidebot.sop.queries.actionable_by_guide, inline).
* `ix_customers_newest`: HQ's customer list reads the newest customers from an index instead
  of sorting them all.

On PostgreSQL both indexes are built CONCURRENTLY, as in 0026 (a failed build's INVALID index
is dropped and built again on the next upgrade).

On SQLite, customer search (a substring of a name, an external_userid or a remark) reads FTS5
trigram indexes (SQLite 3.34 or newer): `customer_words` gives each customer a stable integer
key (a rowid that VACUUM never renumbers), `customer_words_fts` indexes customers' names and
ids, and `relation_remarks_fts` relations' remarks by relation id. Both are contentless (no
second copy of the words) and kept by triggers; guidebot.contacts.word_index reads them.
Without FTS5's trigram tokenizer they are skipped with a warning and search scans, as before.
PostgreSQL has pg_trgm's indexes (0026) instead. guidebot.db.migrate leaves these SQLite-only
tables out of schema comparisons.
"""

import importlib
import logging
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0028"
down_revision: str | Sequence[str] | None = "0027"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

log = logging.getLogger("alembic.runtime.migration")

# Action.GUIDE_FACING and TaskStatus.ACTIONABLE, in the order the query writes them.
OPEN_GUIDE_TASKS = (
    "action IN ('guide_task', 'remind') AND status IN ('pending', 'claimed', 'sent', 'snoozed')"
)
INDEXES = (
    ("ix_customers_newest", "customers", "(created_at DESC, external_userid)"),
    (
        "ix_sop_tasks_guide_open",
        "sop_tasks",
        f"(guide_userid, due_at, external_userid) WHERE {OPEN_GUIDE_TASKS}",
    ),
)

COUNT_KEY = "NEW.guide_userid, COALESCE(NEW.store_id, 0)"
COUNTS_UP = (
    "INSERT INTO guide_customer_counts (guide_userid, store_id, active) "
    f"{{head}} {COUNT_KEY}, 1 {{tail}} ON CONFLICT (guide_userid, store_id) "
    "DO UPDATE SET active = guide_customer_counts.active + 1"
)
COUNTS_DOWN = (
    "UPDATE guide_customer_counts SET active = active - 1 "
    "WHERE guide_userid = OLD.guide_userid AND store_id = COALESCE(OLD.store_id, 0)"
)
# PostgreSQL fills the counts one guide at a time while the service writes, the triggers already
# on: the guide's relations are locked FOR SHARE (their writers wait a moment), then its counts
# are replaced by a count taken after that (plpgsql takes a snapshot per statement). A change
# committed before the count is in it; one not yet committed added its delta to the counts
# row, which the DELETE waits for, or adds it once the new row commits (an upsert waits on it).
GUIDE_FILL = (
    "CREATE OR REPLACE FUNCTION guide_customer_counts_fill(guide text) RETURNS void "
    "LANGUAGE plpgsql AS $$ BEGIN "
    "PERFORM 1 FROM relations WHERE guide_userid = guide FOR SHARE; "
    "DELETE FROM guide_customer_counts WHERE guide_userid = guide; "
    "INSERT INTO guide_customer_counts (guide_userid, store_id, active) "
    "SELECT guide_userid, COALESCE(store_id, 0), count(*) FROM relations "
    "WHERE guide_userid = guide AND status = 'active' "
    "GROUP BY guide_userid, COALESCE(store_id, 0); "
    "END $$"
)
COUNTS_FILL = (
    "INSERT INTO guide_customer_counts (guide_userid, store_id, active) "
    "SELECT guide_userid, COALESCE(store_id, 0), count(*) FROM relations "
    "WHERE status = 'active' GROUP BY guide_userid, COALESCE(store_id, 0)"
)


def upgrade() -> None:
    """Upgrade schema."""
    op.create_table(
        "guide_customer_counts",
        sa.Column("guide_userid", sa.String(length=64), nullable=False),
        sa.Column("store_id", sa.Integer(), nullable=False),
        sa.Column("active", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("guide_userid", "store_id", name=op.f("pk_guide_customer_counts")),
        # PostgreSQL commits what comes before the concurrent builds: after a failed build
        # the upgrade runs this again (every step here may run twice).
        if_not_exists=True,
    )
    if op.get_bind().dialect.name == "postgresql":
        _postgres_counts()
        op.execute(GUIDE_FILL)
        with op.get_context().autocommit_block():
            guides = op.get_bind().execute(sa.text("SELECT userid FROM guides")).scalars().all()
            for guide in guides:  # each its own short transaction
                op.get_bind().execute(
                    sa.text("SELECT guide_customer_counts_fill(:g)"), {"g": guide}
                )
            for index in INDEXES:
                _build_concurrently(*index)
        op.execute("DROP FUNCTION IF EXISTS guide_customer_counts_fill(text)")
        return
    _sqlite_counts()
    op.execute(COUNTS_FILL)
    for name, table, how in INDEXES:
        op.execute(f"CREATE INDEX {name} ON {table} {how}")
    if _trigrams_available():
        _sqlite_words()


def _postgres_counts() -> None:
    op.execute(
        "CREATE OR REPLACE FUNCTION guide_customer_counts_follow() RETURNS trigger "
        "LANGUAGE plpgsql AS $$ BEGIN "
        "IF TG_OP <> 'INSERT' THEN IF OLD.status = 'active' THEN "
        f"{COUNTS_DOWN}; END IF; END IF; "
        "IF TG_OP <> 'DELETE' THEN IF NEW.status = 'active' THEN "
        f"{COUNTS_UP.format(head='VALUES (', tail=')')}; END IF; END IF; "
        "RETURN NULL; END $$"
    )
    changed = (
        "OLD.status IS DISTINCT FROM NEW.status OR OLD.guide_userid IS DISTINCT FROM "
        "NEW.guide_userid OR OLD.store_id IS DISTINCT FROM NEW.store_id"
    )
    for event, when in (("INSERT", None), ("UPDATE", changed), ("DELETE", None)):
        op.execute(f"DROP TRIGGER IF EXISTS guide_customer_counts_{event.lower()} ON relations")
        op.execute(
            f"CREATE TRIGGER guide_customer_counts_{event.lower()} AFTER {event} ON relations "
            f"FOR EACH ROW {f'WHEN ({when}) ' if when else ''}"
            "EXECUTE FUNCTION guide_customer_counts_follow()"
        )


def _sqlite_counts() -> None:
    # SQLite needs a WHERE in an upsert's SELECT (its parser would read ON as a join's).
    up = COUNTS_UP.format(head="SELECT", tail="WHERE NEW.status = 'active'")
    op.execute(
        "CREATE TRIGGER guide_customer_counts_insert AFTER INSERT ON relations "
        f"WHEN NEW.status = 'active' BEGIN {up}; END"
    )
    op.execute(
        "CREATE TRIGGER guide_customer_counts_update "
        "AFTER UPDATE OF status, guide_userid, store_id ON relations "
        "WHEN OLD.status IS NOT NEW.status OR OLD.guide_userid IS NOT NEW.guide_userid "
        "OR OLD.store_id IS NOT NEW.store_id BEGIN "
        f"{COUNTS_DOWN} AND OLD.status = 'active'; {up}; END"
    )
    op.execute(
        "CREATE TRIGGER guide_customer_counts_delete AFTER DELETE ON relations "
        f"WHEN OLD.status = 'active' BEGIN {COUNTS_DOWN}; END"
    )


def _trigrams_available() -> bool:
    bind = op.get_bind()
    version = tuple(
        int(p) for p in bind.execute(sa.text("SELECT sqlite_version()")).scalar_one().split(".")
    )
    fts5 = bind.execute(sa.text("SELECT sqlite_compileoption_used('ENABLE_FTS5')")).scalar_one()
    if version < (3, 34) or not fts5:
        log.warning(
            "SQLite %s without FTS5's trigram tokenizer: customer search will scan, as before",
            ".".join(map(str, version)),
        )
        return False
    return True


# The FTS5 'delete' command takes the values the row was indexed with: OLD's.
CUSTOMER_WORDS = (
    "CREATE TABLE customer_words (id INTEGER PRIMARY KEY, external_userid VARCHAR(64) NOT NULL)",
    "CREATE UNIQUE INDEX uq_customer_words ON customer_words (external_userid)",
    "CREATE VIRTUAL TABLE customer_words_fts USING fts5"
    "(name, external_userid, content='', tokenize='trigram')",
    "CREATE VIRTUAL TABLE relation_remarks_fts USING fts5(remark, content='', tokenize='trigram')",
    "CREATE TRIGGER customer_words_insert AFTER INSERT ON customers BEGIN "
    "INSERT INTO customer_words (external_userid) VALUES (NEW.external_userid); "
    "INSERT INTO customer_words_fts (rowid, name, external_userid) SELECT id, NEW.name, "
    "NEW.external_userid FROM customer_words WHERE external_userid = NEW.external_userid; END",
    "CREATE TRIGGER customer_words_update AFTER UPDATE OF name, external_userid ON customers "
    "WHEN OLD.name IS NOT NEW.name OR OLD.external_userid IS NOT NEW.external_userid BEGIN "
    "INSERT INTO customer_words_fts (customer_words_fts, rowid, name, external_userid) "
    "SELECT 'delete', id, OLD.name, OLD.external_userid FROM customer_words "
    "WHERE external_userid = OLD.external_userid; "
    "UPDATE customer_words SET external_userid = NEW.external_userid "
    "WHERE external_userid = OLD.external_userid; "
    "INSERT INTO customer_words_fts (rowid, name, external_userid) SELECT id, NEW.name, "
    "NEW.external_userid FROM customer_words WHERE external_userid = NEW.external_userid; END",
    "CREATE TRIGGER customer_words_delete AFTER DELETE ON customers BEGIN "
    "INSERT INTO customer_words_fts (customer_words_fts, rowid, name, external_userid) "
    "SELECT 'delete', id, OLD.name, OLD.external_userid FROM customer_words "
    "WHERE external_userid = OLD.external_userid; "
    "DELETE FROM customer_words WHERE external_userid = OLD.external_userid; END",
    "CREATE TRIGGER relation_remarks_insert AFTER INSERT ON relations "
    "WHEN NEW.remark IS NOT NULL BEGIN "
    "INSERT INTO relation_remarks_fts (rowid, remark) VALUES (NEW.id, NEW.remark); END",
    "CREATE TRIGGER relation_remarks_update AFTER UPDATE OF remark ON relations "
    "WHEN OLD.remark IS NOT NEW.remark BEGIN "
    "INSERT INTO relation_remarks_fts (relation_remarks_fts, rowid, remark) "
    "SELECT 'delete', OLD.id, OLD.remark WHERE OLD.remark IS NOT NULL; "
    "INSERT INTO relation_remarks_fts (rowid, remark) "
    "SELECT NEW.id, NEW.remark WHERE NEW.remark IS NOT NULL; END",
    "CREATE TRIGGER relation_remarks_delete AFTER DELETE ON relations "
    "WHEN OLD.remark IS NOT NULL BEGIN "
    "INSERT INTO relation_remarks_fts (relation_remarks_fts, rowid, remark) "
    "VALUES ('delete', OLD.id, OLD.remark); END",
    # What is there already (guidebot.contacts.word_index.rebuild does the same).
    "INSERT INTO customer_words (external_userid) SELECT external_userid FROM customers",
    "INSERT INTO customer_words_fts (rowid, name, external_userid) SELECT w.id, c.name, "
    "c.external_userid FROM customer_words w JOIN customers c USING (external_userid)",
    "INSERT INTO relation_remarks_fts (rowid, remark) "
    "SELECT id, remark FROM relations WHERE remark IS NOT NULL",
)
WORD_OBJECTS = (
    ("TRIGGER", "customer_words_insert"),
    ("TRIGGER", "customer_words_update"),
    ("TRIGGER", "customer_words_delete"),
    ("TRIGGER", "relation_remarks_insert"),
    ("TRIGGER", "relation_remarks_update"),
    ("TRIGGER", "relation_remarks_delete"),
    ("TABLE", "relation_remarks_fts"),
    ("TABLE", "customer_words_fts"),
    ("TABLE", "customer_words"),
)


def _sqlite_words() -> None:
    for statement in CUSTOMER_WORDS:
        op.execute(statement)


def _build_concurrently(name: str, table: str, how: str) -> None:
    """0026's: inside autocommit_block, a leftover INVALID index of a failed build is dropped
    first."""
    scale = importlib.import_module("guidebot.db.migrations.versions.0026_scale_indexes")
    scale._build_concurrently(name, table, how)


def downgrade() -> None:
    """Downgrade schema."""
    if op.get_bind().dialect.name == "postgresql":
        with op.get_context().autocommit_block():
            for name, _, _ in INDEXES:
                op.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {name}")
        for event in ("insert", "update", "delete"):
            op.execute(f"DROP TRIGGER IF EXISTS guide_customer_counts_{event} ON relations")
        op.execute("DROP FUNCTION IF EXISTS guide_customer_counts_follow()")
    else:
        for kind, name in WORD_OBJECTS:
            op.execute(f"DROP {kind} IF EXISTS {name}")
        for name, _, _ in INDEXES:
            op.execute(f"DROP INDEX IF EXISTS {name}")
        for event in ("insert", "update", "delete"):
            op.execute(f"DROP TRIGGER IF EXISTS guide_customer_counts_{event}")
    op.drop_table("guide_customer_counts")
