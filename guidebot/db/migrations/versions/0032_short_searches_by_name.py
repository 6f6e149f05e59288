"""Search: words of one or two characters are looked up in names and remarks, not in ids

Revision ID: 0032
Revises: 0031
Create Date: 2026-12-08 02:00:00.000000

0030 indexed every piece of one and two characters of each customer's name and id together.
An external_userid is WeCom's opaque id (`wmqfE4CAAA…`, 32 letters and digits): a piece of one
or two characters of it says nothing about a customer, and one is in a large share of all ids
(a letter or digit in nearly half of them; `li`, folded, in about one in thirty), so a search
for `Li` found the customers named or remarked so and then a crowd of unrelated ids. An id is
searched by three characters or more, as anyone looking for one pastes it, and the trigram
indexes (0026, 0028, 0031) still find those. The pieces of a 32-character id were also 63 of
the index's entries for each new customer, most of SQLite's cost of recording one (about 0.08
of its 0.12 ms: a customer's first-seen deletion, a livestream's adds).

* SQLite: the triggers index the pieces of a customer's name only, and only of a name (an
  unnamed customer, as a first-seen deletion records one, has no row in
  `customer_words_grams`); the index is filled again from what is there. The insert, the
  delete and the update decide alike from the same expression of the name, so FTS5's
  'delete' always takes out exactly what was put in.
* PostgreSQL: `ix_customers_name_grams`, a GIN index of `search_grams(name)`, is built
  CONCURRENTLY before 0030's `ix_customers_grams` (name and id together) is dropped
  CONCURRENTLY, so search keeps an index and the table keeps taking writes; an INVALID index
  left by a failed build is dropped and built again when the upgrade runs again.

The downgrade puts 0030's back on both (its triggers and a refill; its index).
"""

import importlib
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0032"
down_revision: str | Sequence[str] | None = "0031"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OLD = (
    "ix_customers_grams",
    "customers",
    "USING gin ((search_grams(name) || search_grams(external_userid)))",
)
NEW = ("ix_customers_name_grams", "customers", "USING gin (search_grams(name))")


def _grams_0030():
    return importlib.import_module("guidebot.db.migrations.versions.0030_search_grams")


def _named(row: str) -> str:
    """SQLite: the row has a name with a piece in it (NULL and '' have none)."""
    return f"length({row}.name) > 0"


def _add(row: str) -> str:
    return (
        "INSERT INTO customer_words_grams (rowid, grams) "
        f"SELECT id, {_grams_0030().pieces(f'{row}.name')} FROM customer_words "
        f"WHERE external_userid = {row}.external_userid AND {_named(row)}; "
    )


def _drop(row: str) -> str:
    return (
        "INSERT INTO customer_words_grams (customer_words_grams, rowid, grams) "
        f"SELECT 'delete', id, {_grams_0030().pieces(f'{row}.name')} FROM customer_words "
        f"WHERE external_userid = {row}.external_userid AND {_named(row)}; "
    )


def triggers() -> dict[str, str]:
    """0030's three triggers on customers, with the pieces of the name alone."""
    return {
        "customer_words_insert": "CREATE TRIGGER customer_words_insert AFTER INSERT ON "
        "customers BEGIN INSERT INTO customer_words (external_userid) "
        "VALUES (NEW.external_userid); "
        "INSERT INTO customer_words_fts (rowid, name, external_userid) SELECT id, NEW.name, "
        "NEW.external_userid FROM customer_words WHERE external_userid = NEW.external_userid; "
        f"{_add('NEW')}END",
        "customer_words_update": "CREATE TRIGGER customer_words_update "
        "AFTER UPDATE OF name, external_userid ON customers "
        "WHEN OLD.name IS NOT NEW.name OR OLD.external_userid IS NOT NEW.external_userid BEGIN "
        "INSERT INTO customer_words_fts (customer_words_fts, rowid, name, external_userid) "
        "SELECT 'delete', id, OLD.name, OLD.external_userid FROM customer_words "
        f"WHERE external_userid = OLD.external_userid; {_drop('OLD')}"
        "UPDATE customer_words SET external_userid = NEW.external_userid "
        "WHERE external_userid = OLD.external_userid; "
        "INSERT INTO customer_words_fts (rowid, name, external_userid) SELECT id, NEW.name, "
        "NEW.external_userid FROM customer_words WHERE external_userid = NEW.external_userid; "
        f"{_add('NEW')}END",
        "customer_words_delete": "CREATE TRIGGER customer_words_delete AFTER DELETE ON "
        "customers BEGIN "
        "INSERT INTO customer_words_fts (customer_words_fts, rowid, name, external_userid) "
        "SELECT 'delete', id, OLD.name, OLD.external_userid FROM customer_words "
        f"WHERE external_userid = OLD.external_userid; {_drop('OLD')}"
        "DELETE FROM customer_words WHERE external_userid = OLD.external_userid; END",
    }


def fill() -> tuple[str, ...]:
    """The customers' pieces indexed anew from what is there (word_index.rebuild's)."""
    return (
        "INSERT INTO customer_words_grams (customer_words_grams) VALUES ('delete-all')",
        "INSERT INTO customer_words_grams (rowid, grams) SELECT w.id, "
        f"{_grams_0030().pieces('c.name')} FROM customer_words w "
        f"JOIN customers c USING (external_userid) WHERE {_named('c')}",
    )


def _has_gram_tables() -> bool:
    """SQLite: 0030 built its tables (0028 skips the word tables without FTS5's trigram
    tokenizer, and 0030 with them)."""
    found = op.get_bind().execute(
        sa.text("SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = :name"),
        {"name": "customer_words_grams"},
    )
    return bool(found.scalar_one())


def _swap(build: tuple[str, str, str], drop: tuple[str, str, str]) -> None:
    """PostgreSQL: the one built before the other is dropped, both concurrently."""
    scale = importlib.import_module("guidebot.db.migrations.versions.0026_scale_indexes")
    with op.get_context().autocommit_block():
        scale._build_concurrently(*build)
        op.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {drop[0]}")


def _customers_0030() -> tuple[dict[str, str], tuple[str, ...]]:
    """0030's triggers on customers and its refill of their pieces."""
    grams = _grams_0030()
    kept = {name: sql for name, sql in grams.TRIGGERS.items() if name.startswith("customer")}
    refill = tuple(sql for sql in grams.FILL if "customer_words_grams" in sql)
    return kept, refill


def _put(kept: dict[str, str], refill: tuple[str, ...]) -> None:
    """SQLite: these triggers in place of the ones of the same names, then the refill."""
    for name, statement in kept.items():
        op.execute(f"DROP TRIGGER IF EXISTS {name}")
        op.execute(statement)
    for statement in refill:
        op.execute(statement)


def upgrade() -> None:
    """Upgrade schema."""
    if op.get_bind().dialect.name == "postgresql":
        _swap(NEW, OLD)
    elif _has_gram_tables():
        _put(triggers(), fill())


def downgrade() -> None:
    """Downgrade schema."""
    if op.get_bind().dialect.name == "postgresql":
        _swap(OLD, NEW)
    elif _has_gram_tables():
        _put(*_customers_0030())
