"""Scale: customer search of one or two characters from an index, on both databases

Revision ID: 0030
Revises: 0029
Create Date: 2026-12-09 04:00:00.000000

Customer search matches a substring of a customer's name, their external_userid or a
relation's remark (contacts/queries.py). Three characters or more are looked up in trigram
indexes (PostgreSQL's pg_trgm, 0026; SQLite's FTS5, 0028), but neither holds a piece shorter
than three characters, so a word of one or two (a surname, 陈; a name, 张伟; a remark, 老客)
read every customer: 1.5-2.2 s at 430,000, growing with the brand (README, "At scale").

This indexes every piece of one and two characters of each text, lower-cased as the search
lowers it; a word of one or two characters is in a text exactly when its lower-cased self is
one of the text's pieces (guidebot.contacts.grams reads them):

* PostgreSQL: `search_grams(text)`, an IMMUTABLE function, gives a text's pieces as a text[]
  (of `lower()`, which ILIKE applies to both sides in a UTF-8 database); a GIN index of
  the pieces of each customer's name and id together (`ix_customers_grams`) and one of each
  relation's remark (`ix_relations_remark_grams`), built CONCURRENTLY, as in 0026, so the
  tables keep taking writes while they are built (a failed build's INVALID index is dropped
  and built again on the next upgrade). GIN's own array operator class: no extension needed.
* SQLite (where 0028 built its word tables): FTS5 tables of the pieces, `customer_words_grams`
  (keyed like `customer_words_fts`, names and ids) and `relation_remarks_grams` (by relation
  id), contentless and without positions (`detail=none`: one list of rows per piece). Each
  piece is stored as the hex of its UTF-8 (FTS5's ascii tokenizer keeps that whole, whatever
  the characters: a space, a quote, 陈) of `lower()`, which folds ASCII only as SQLite's LIKE
  does. 0028's triggers are replaced by ones that keep both indexes in the same statement
  (SQLite gives no order between two triggers of one event, and the pieces are keyed by
  `customer_words`, which 0028's insert trigger fills). A trigger may not hold a common
  table expression, so the positions of a text come from `json_each` over an array of as many
  zeros (no bound on the length). An erasure merges these tables too
  (guidebot.contacts.word_index.forget).

At 430,000 customers PostgreSQL built both indexes in 21 s, SQLite filled its tables in 25 s
(in the migration's transaction). Every step may run twice (PostgreSQL commits before its
concurrent builds).
"""

import importlib
import logging
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0030"
down_revision: str | Sequence[str] | None = "0029"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

log = logging.getLogger("alembic.runtime.migration")

# ---- PostgreSQL ---------------------------------------------------------------------------

# lower() once, then each piece starting at i, of one character and of two. PL/pgSQL: five
# times faster than SQL's generate_series (an index build, each insert and ANALYZE run it on
# every row). A piece may come twice; GIN keeps each once.
SEARCH_GRAMS = (
    "CREATE OR REPLACE FUNCTION search_grams(words text) RETURNS text[] "
    "LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE AS $$ "
    "DECLARE low text := lower(words); n int := char_length(low); pieces text[] := '{}'; "
    "BEGIN FOR i IN 1..n LOOP pieces := pieces || substr(low, i, 1); "
    "IF i < n THEN pieces := pieces || substr(low, i, 2); END IF; END LOOP; "
    "RETURN pieces; END $$"
)
GRAM_INDEXES = (
    (
        "ix_customers_grams",
        "customers",
        "USING gin ((search_grams(name) || search_grams(external_userid)))",
    ),
    ("ix_relations_remark_grams", "relations", "USING gin (search_grams(remark))"),
)


def _build_concurrently(name: str, table: str, how: str) -> None:
    """0026's: inside autocommit_block, a leftover INVALID index of a failed build is dropped
    first."""
    scale = importlib.import_module("guidebot.db.migrations.versions.0026_scale_indexes")
    scale._build_concurrently(name, table, how)


# ---- SQLite -------------------------------------------------------------------------------


def pieces(value: str) -> str:
    """SQLite: the pieces of one and two characters of `value` (an expression; NULL gives
    NULL), lower-cased, each the hex of its UTF-8, separated by spaces. `json_each` over
    '[0,0,...]' numbers the positions 0..length-1."""
    low = f"lower({value})"
    positions = f"'[0' || replace(hex(zeroblob(length({value}) - 1)), '00', ',0') || ']'"
    return (
        f"(SELECT group_concat(hex(substr({low}, key + 1, 1)) || ' ' || "
        f"hex(substr({low}, key + 1, 2)), ' ') FROM json_each({positions}))"
    )


def _customer_pieces(row: str) -> str:
    return f"coalesce({pieces(f'{row}.name')}, '') || ' ' || {pieces(f'{row}.external_userid')}"


GRAM_TABLES = (
    "CREATE VIRTUAL TABLE IF NOT EXISTS customer_words_grams USING fts5"
    "(grams, content='', detail=none, tokenize='ascii')",
    "CREATE VIRTUAL TABLE IF NOT EXISTS relation_remarks_grams USING fts5"
    "(grams, content='', detail=none, tokenize='ascii')",
)
# 0028's triggers, each with the same for the pieces; FTS5's 'delete' takes what was indexed.
CUSTOMER_GRAMS_ADD = (
    "INSERT INTO customer_words_grams (rowid, grams) SELECT id, {pieces} FROM customer_words "
    "WHERE external_userid = NEW.external_userid; "
)
CUSTOMER_GRAMS_DROP = (
    "INSERT INTO customer_words_grams (customer_words_grams, rowid, grams) "
    "SELECT 'delete', id, {pieces} FROM customer_words "
    "WHERE external_userid = OLD.external_userid; "
)
TRIGGERS = {
    "customer_words_insert": "CREATE TRIGGER customer_words_insert AFTER INSERT ON customers "
    "BEGIN INSERT INTO customer_words (external_userid) VALUES (NEW.external_userid); "
    "INSERT INTO customer_words_fts (rowid, name, external_userid) SELECT id, NEW.name, "
    "NEW.external_userid FROM customer_words WHERE external_userid = NEW.external_userid; "
    f"{CUSTOMER_GRAMS_ADD.format(pieces=_customer_pieces('NEW'))}END",
    "customer_words_update": "CREATE TRIGGER customer_words_update "
    "AFTER UPDATE OF name, external_userid ON customers "
    "WHEN OLD.name IS NOT NEW.name OR OLD.external_userid IS NOT NEW.external_userid BEGIN "
    "INSERT INTO customer_words_fts (customer_words_fts, rowid, name, external_userid) "
    "SELECT 'delete', id, OLD.name, OLD.external_userid FROM customer_words "
    "WHERE external_userid = OLD.external_userid; "
    f"{CUSTOMER_GRAMS_DROP.format(pieces=_customer_pieces('OLD'))}"
    "UPDATE customer_words SET external_userid = NEW.external_userid "
    "WHERE external_userid = OLD.external_userid; "
    "INSERT INTO customer_words_fts (rowid, name, external_userid) SELECT id, NEW.name, "
    "NEW.external_userid FROM customer_words WHERE external_userid = NEW.external_userid; "
    f"{CUSTOMER_GRAMS_ADD.format(pieces=_customer_pieces('NEW'))}END",
    "customer_words_delete": "CREATE TRIGGER customer_words_delete AFTER DELETE ON customers "
    "BEGIN INSERT INTO customer_words_fts (customer_words_fts, rowid, name, external_userid) "
    "SELECT 'delete', id, OLD.name, OLD.external_userid FROM customer_words "
    "WHERE external_userid = OLD.external_userid; "
    f"{CUSTOMER_GRAMS_DROP.format(pieces=_customer_pieces('OLD'))}"
    "DELETE FROM customer_words WHERE external_userid = OLD.external_userid; END",
    "relation_remarks_insert": "CREATE TRIGGER relation_remarks_insert AFTER INSERT ON "
    "relations WHEN NEW.remark IS NOT NULL BEGIN "
    "INSERT INTO relation_remarks_fts (rowid, remark) VALUES (NEW.id, NEW.remark); "
    "INSERT INTO relation_remarks_grams (rowid, grams) "
    f"VALUES (NEW.id, {pieces('NEW.remark')}); END",
    "relation_remarks_update": "CREATE TRIGGER relation_remarks_update "
    "AFTER UPDATE OF remark ON relations WHEN OLD.remark IS NOT NEW.remark BEGIN "
    "INSERT INTO relation_remarks_fts (relation_remarks_fts, rowid, remark) "
    "SELECT 'delete', OLD.id, OLD.remark WHERE OLD.remark IS NOT NULL; "
    "INSERT INTO relation_remarks_grams (relation_remarks_grams, rowid, grams) "
    f"SELECT 'delete', OLD.id, {pieces('OLD.remark')} WHERE OLD.remark IS NOT NULL; "
    "INSERT INTO relation_remarks_fts (rowid, remark) "
    "SELECT NEW.id, NEW.remark WHERE NEW.remark IS NOT NULL; "
    "INSERT INTO relation_remarks_grams (rowid, grams) "
    f"SELECT NEW.id, {pieces('NEW.remark')} WHERE NEW.remark IS NOT NULL; END",
    "relation_remarks_delete": "CREATE TRIGGER relation_remarks_delete AFTER DELETE ON "
    "relations WHEN OLD.remark IS NOT NULL BEGIN "
    "INSERT INTO relation_remarks_fts (relation_remarks_fts, rowid, remark) "
    "VALUES ('delete', OLD.id, OLD.remark); "
    "INSERT INTO relation_remarks_grams (relation_remarks_grams, rowid, grams) "
    f"VALUES ('delete', OLD.id, {pieces('OLD.remark')}); END",
}
# What is there already (guidebot.contacts.word_index.rebuild does the same).
FILL = (
    "INSERT INTO customer_words_grams (customer_words_grams) VALUES ('delete-all')",
    "INSERT INTO relation_remarks_grams (relation_remarks_grams) VALUES ('delete-all')",
    "INSERT INTO customer_words_grams (rowid, grams) SELECT w.id, "
    f"{_customer_pieces('c')} FROM customer_words w JOIN customers c USING (external_userid)",
    f"INSERT INTO relation_remarks_grams (rowid, grams) SELECT id, {pieces('remark')} "
    "FROM relations WHERE remark IS NOT NULL",
)


def _words_0028() -> dict[str, str]:
    """0028's trigger statements, by name: what the downgrade puts back."""
    words = importlib.import_module("guidebot.db.migrations.versions.0028_reads_at_scale")
    return {
        statement.split()[2]: statement
        for statement in words.CUSTOMER_WORDS
        if statement.startswith("CREATE TRIGGER")
    }


def _has_word_tables() -> bool:
    """SQLite: 0028 built its word tables (it skips them without FTS5's trigram tokenizer)."""
    found = op.get_bind().execute(
        sa.text("SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = :name"),
        {"name": "customer_words"},
    )
    return bool(found.scalar_one())


# ---- both ---------------------------------------------------------------------------------


def upgrade() -> None:
    """Upgrade schema."""
    if op.get_bind().dialect.name == "postgresql":
        op.execute(SEARCH_GRAMS)
        with op.get_context().autocommit_block():
            for index in GRAM_INDEXES:
                _build_concurrently(*index)
        return
    if not _has_word_tables():
        log.warning("no word tables (0028): customer search of one or two characters scans")
        return
    for statement in GRAM_TABLES:
        op.execute(statement)
    for name, statement in TRIGGERS.items():
        op.execute(f"DROP TRIGGER IF EXISTS {name}")
        op.execute(statement)
    for statement in FILL:
        op.execute(statement)


def downgrade() -> None:
    """Downgrade schema."""
    if op.get_bind().dialect.name == "postgresql":
        with op.get_context().autocommit_block():
            for name, _, _ in GRAM_INDEXES:
                op.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {name}")
        op.execute("DROP FUNCTION IF EXISTS search_grams(text)")
        return
    if not _has_word_tables():
        return
    for name, statement in _words_0028().items():
        op.execute(f"DROP TRIGGER IF EXISTS {name}")
        op.execute(statement)
    for table in ("relation_remarks_grams", "customer_words_grams"):
        op.execute(f"DROP TABLE IF EXISTS {table}")
