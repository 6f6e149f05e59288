"""Customer search on SQLite from FTS5 trigram indexes (migration 0028).

Customer search matches a substring of a customer's name, their external_userid or a
relation's remark (contacts/queries.py). PostgreSQL answers it from pg_trgm's indexes
(migration 0026); on SQLite each column was a scan, 2.5-3 s at 430,000 customers. Here
`customer_words_fts` indexes names and ids (keyed by `customer_words.id`, a stable integer per
customer) and `relation_remarks_fts` remarks (keyed by relation id); triggers keep both in the
transaction of each insert, update and delete.

An index only narrows: what it finds is checked again with the search's own LIKE, so answers
are exactly the scan's. The trigram tokenizer folds case over all of Unicode and LIKE only
ASCII's, so the index finds a superset. It cannot look up fewer than three characters (a
two-character name, 张伟), nor can pg_trgm on PostgreSQL: those have indexes of their own.

Fewer than three characters are looked up in two more FTS5 tables (migration 0030), of each
text's pieces of one and two characters: `customer_words_grams` (names only, and only customers
with a name, since 0032: ids are searched by three characters or more) and
`relation_remarks_grams`, keyed like the two above and kept by the same triggers
(guidebot.contacts.grams reads them).

FTS5 removes a row by writing a delete marker in a newer segment; the old segment keeps the
words until segments merge. After an erasure `forget` merges them all (FTS5's `optimize`), so
an erased name or remark is no longer in the indexes at all (about a second at 430,000
customers).
"""

from __future__ import annotations

import weakref

from sqlalchemy import column, literal_column, select, table, text
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql import Select

INDEXED_FROM = 3  # characters: the trigram tokenizer has nothing to look up in fewer

_CUSTOMERS = table("customer_words", column("id"), column("external_userid"))
_CUSTOMER_FTS = table("customer_words_fts", column("rowid"))
_REMARK_FTS = table("relation_remarks_fts", column("rowid"))
GRAM_TABLES = ("customer_words_grams", "relation_remarks_grams")  # migration 0030
FTS_TABLES = ("customer_words_fts", "relation_remarks_fts", *GRAM_TABLES)

_present: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


async def available(session: AsyncSession) -> bool:
    """True on a SQLite database that has the indexes (a SQLite without FTS5's trigram
    tokenizer has none: migrations 0028 and 0030 skip them, and search scans)."""
    bind = session.bind
    if bind.dialect.name != "sqlite":
        return False
    engine = bind.sync_engine  # an AsyncEngine's or an AsyncConnection's
    if engine not in _present:
        names = ", ".join(f"'{name}'" for name in FTS_TABLES)
        found = await session.scalar(
            text(f"SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name IN ({names})")
        )
        _present[engine] = found == len(FTS_TABLES)
    return _present[engine]


def _phrase(words: str) -> str:
    """The words as one FTS5 phrase: a string, its quotes doubled; with the trigram
    tokenizer a phrase matches where its trigrams follow each other, a substring."""
    return '"' + words.replace('"', '""') + '"'


def customers_with(words: str) -> Select:
    """The external_userids whose name or id may contain `words` (a superset)."""
    matched = select(_CUSTOMER_FTS.c.rowid).where(
        literal_column("customer_words_fts").op("MATCH")(_phrase(words))
    )
    return select(_CUSTOMERS.c.external_userid).where(_CUSTOMERS.c.id.in_(matched))


def remarks_with(words: str) -> Select:
    """The ids of relations whose remark may contain `words` (a superset)."""
    return select(_REMARK_FTS.c.rowid).where(
        literal_column("relation_remarks_fts").op("MATCH")(_phrase(words))
    )


def pieces(value: str) -> str:
    """The SQL of the pieces of one and two characters of `value` (an expression) as the
    triggers of migration 0030 index them: of lower(value), each the hex of its UTF-8,
    separated by spaces; `json_each` over '[0,0,...]' numbers the positions."""
    low = f"lower({value})"
    positions = f"'[0' || replace(hex(zeroblob(length({value}) - 1)), '00', ',0') || ']'"
    return (
        f"(SELECT group_concat(hex(substr({low}, key + 1, 1)) || ' ' || "
        f"hex(substr({low}, key + 1, 2)), ' ') FROM json_each({positions}))"
    )


REBUILD = (
    *(f"INSERT INTO {name} ({name}) VALUES ('delete-all')" for name in FTS_TABLES),
    "DELETE FROM customer_words",
    "INSERT INTO customer_words (external_userid) SELECT external_userid FROM customers",
    "INSERT INTO customer_words_fts (rowid, name, external_userid) SELECT w.id, c.name, "
    "c.external_userid FROM customer_words w JOIN customers c USING (external_userid)",
    "INSERT INTO relation_remarks_fts (rowid, remark) "
    "SELECT id, remark FROM relations WHERE remark IS NOT NULL",
    f"INSERT INTO customer_words_grams (rowid, grams) SELECT w.id, {pieces('c.name')} "
    "FROM customer_words w JOIN customers c USING (external_userid) WHERE length(c.name) > 0",
    f"INSERT INTO relation_remarks_grams (rowid, grams) SELECT id, {pieces('remark')} "
    "FROM relations WHERE remark IS NOT NULL",
)


async def rebuild(session: AsyncSession) -> None:
    """Index every customer and remark anew, in the caller's transaction: after rows were
    loaded with the triggers off (bench.scale), or to repair. What migrations 0028, 0030 and
    0032 do."""
    if await available(session):
        for statement in REBUILD:
            await session.execute(text(statement))


async def forget(session: AsyncSession) -> None:
    """Merge each index into one segment, in the caller's transaction, so that words a
    delete or update removed are gone from it, not only hidden by a delete marker."""
    if await available(session):
        for name in FTS_TABLES:
            await session.execute(text(f"INSERT INTO {name} ({name}) VALUES ('optimize')"))
