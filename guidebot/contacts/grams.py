"""Customer search of one or two characters from indexes of each text's pieces of one and two
characters (migrations 0030 and 0032), on both databases.

Neither pg_trgm nor FTS5's trigram tokenizer holds a piece shorter than three characters, so
a search of one or two (a surname, 陈; a name, 张伟; a remark, 老客) read every customer. 0030
indexes every piece of one and two characters of each customer's name and each relation's
remark, lower-cased as the search's ILIKE lowers: PostgreSQL in GIN indexes of
`search_grams(text)`, SQLite in FTS5 tables of the pieces' hex (guidebot.contacts.word_index
keeps, rebuilds and merges those). A word of one or two characters is in a text exactly when
its lower-cased self is one of the text's pieces, so the indexes answer what the scan does.
Ids are not among those texts (0032): a piece of one or two characters of WeCom's opaque id
says nothing of a customer and is in a large share of all ids, so a word that short is looked
for in names and remarks, and an id from three characters on (guidebot.contacts.queries).

A common word is another matter: 陈 in a tenth of the names. The scan stops once the capped
count and the page are full (guidebot.contacts.queries), after about COUNT_UP_TO * N / M
customers of N when M match; the index reads all M, at a cost of k customers scanned for each
(FOUND_COST), so they meet at M = sqrt(COUNT_UP_TO * N / k): at 430,000 customers 38,000 on
SQLite, 54,000 on PostgreSQL. `lookup` first asks how many entries the indexes hold for the
word (SQLite counts them up to that bound, a list of row ids; PostgreSQL's planner estimates
them from ANALYZE's statistics of the indexes), and answers from the indexes only up to it;
beyond, the search scans as before. Relation filters
narrow the scan to the relations they keep (a guide's customers: the bot's search), not the
index: a word with more than AT_LEAST entries is scanned where they keep fewer relations.
"""

from __future__ import annotations

import json
import math
import weakref
from typing import Any

from sqlalchemy import (
    Text,
    any_,
    cast,
    column,
    func,
    literal_column,
    select,
    table,
    text,
    union,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql import Select

from guidebot.contacts import word_index
from guidebot.contacts.models import Customer, Relation
from guidebot.db.migrate import GRAM_INDEXES  # PostgreSQL's two (migrations 0030, 0032)

_CUSTOMERS = table("customer_words", column("id"), column("external_userid"))
_CUSTOMER_GRAMS = table("customer_words_grams", column("rowid"))
_REMARK_GRAMS = table("relation_remarks_grams", column("rowid"))

_present: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


async def available(session: AsyncSession) -> bool:
    """The indexes are there: PostgreSQL's two, valid (a failed concurrent build leaves an
    INVALID one); SQLite's word tables (guidebot.contacts.word_index)."""
    bind = session.bind
    if bind.dialect.name != "postgresql":
        return await word_index.available(session)
    engine = bind.sync_engine
    if engine not in _present:
        found = await session.scalar(
            text(
                "SELECT count(*) FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
                "WHERE c.relname = ANY(:names) AND i.indisvalid"
            ),
            {"names": sorted(GRAM_INDEXES)},
        )
        _present[engine] = found == len(GRAM_INDEXES)
    return _present[engine]


def _grams(value: Any) -> Any:
    return func.search_grams(value, type_=ARRAY(Text))


def _rows_with(fts: Any, words: str) -> Select:
    """SQLite: the rowids of one index of pieces that holds `words` as a piece: its hex, as
    the triggers wrote it (lower() folds ASCII, as SQLite's LIKE), a bareword to FTS5
    ([0-9A-F], none of its keywords)."""
    matched = literal_column(fts.name).op("MATCH")(func.hex(func.lower(words)))
    return select(fts.c.rowid).where(matched)


def _found(postgres: bool, words: str, conditions: list[Any]) -> Any:
    """The external_userids the indexes find: customers with `words` as a piece of their name,
    and those of relations matching `conditions` with it as a piece of the remark.

    Exact, so the search's ILIKE is not asked again: the index holds every piece of what
    ILIKE compares, lower-cased by the same lower() (on SQLite built in, ASCII only, as its
    LIKE). Asked again it would cost a read of each customer found on SQLite, and let
    PostgreSQL's planner add pg_trgm's indexes, which hold nothing of one or two characters,
    and work out each row's pieces once more."""
    if postgres:
        wanted = _grams(cast(words, Text))
        named = select(Customer.external_userid).where(_grams(Customer.name).bool_op("@>")(wanted))
        remarked = _grams(Relation.remark).bool_op("@>")(wanted)
    else:
        named = select(_CUSTOMERS.c.external_userid).where(
            _CUSTOMERS.c.id.in_(_rows_with(_CUSTOMER_GRAMS, words))
        )
        remarked = Relation.id.in_(_rows_with(_REMARK_GRAMS, words))
    return union(named, select(Relation.external_userid).where(remarked, *conditions))


# Index entries a word may have whatever the brand's size (PostgreSQL knows no row count for a
# table it has not analysed yet).
AT_LEAST = 10_000
# What each customer the index finds costs, in customers the scan checks meanwhile (bench.scale,
# 430,000 customers): SQLite's scan runs in the process and its index path reads each found
# customer through two lookups, for the count and again for the page; PostgreSQL's scan
# costs more per row.
FOUND_COST = {"sqlite": 3.0, "postgresql": 1.5}


async def _scale(session: AsyncSession, postgres: bool, words: str) -> tuple[int, int]:
    """(customers, the characters of the lower-cased word): the planner's row estimate on
    PostgreSQL (-1 before the table was first analysed), the last key given on SQLite."""
    if not postgres:  # lower() folds ASCII only: the same length
        return await session.scalar(text("SELECT max(id) FROM customer_words")) or 0, len(words)
    row = await session.execute(
        text(
            "SELECT reltuples, char_length(lower(CAST(:words AS text))) FROM pg_class "
            "WHERE oid = 'customers'::regclass"
        ),
        {"words": words},
    )
    customers, width = row.one()
    return int(customers), int(width)


# PostgreSQL: the planner's estimate of the rows the two indexes find for the word, from what
# ANALYZE keeps of each index's pieces (the commonest, with how often each is seen; any other
# piece is taken to be rare). Counting them would read every row found (GIN counts nothing by
# itself), and a planner asked for many rows of a common piece reads the table instead,
# working out each row's pieces: seconds. The expressions are the indexes' (migrations 0030,
# 0032).
ESTIMATE = text(
    "EXPLAIN (FORMAT JSON) SELECT 1 FROM customers WHERE "
    "search_grams(name) @> search_grams(:words) "
    "UNION ALL SELECT 1 FROM relations WHERE search_grams(remark) @> search_grams(:words)"
)


def _counted(fts: Any, words: str, bound: int) -> Any:
    """SQLite: the rows of one index of pieces for the word, counted up to bound + 1 (its
    list of rowids, read without the tables)."""
    found = _rows_with(fts, words).limit(bound + 1).subquery()
    return select(func.count()).select_from(found).scalar_subquery()


async def _entries(session: AsyncSession, words: str, bound: int) -> int:
    """How many entries the indexes hold for `words`: estimated on PostgreSQL, counted up to
    bound + 1 on SQLite."""
    if session.bind.dialect.name == "postgresql":
        plan = await session.scalar(ESTIMATE, {"words": words})
        plan = json.loads(plan) if isinstance(plan, str) else plan  # the driver may parse it
        return int(plan[0]["Plan"]["Plan Rows"])
    customers = await session.scalar(select(_counted(_CUSTOMER_GRAMS, words, bound))) or 0
    if customers > bound:  # the remarks need not be read
        return customers
    return customers + (await session.scalar(select(_counted(_REMARK_GRAMS, words, bound))) or 0)


async def _kept(session: AsyncSession, conditions: list[Any], entries: int) -> bool:
    """The relation filters keep fewer relations than the index has entries for the word:
    the scan reads those only (a guide's few thousand), the index every one found."""
    if not conditions:
        return False
    kept = select(literal_column("1")).select_from(Relation).where(*conditions).limit(entries)
    return (await session.scalar(select(func.count()).select_from(kept.subquery())) or 0) < entries


async def lookup(
    session: AsyncSession, words: str, conditions: list[Any], *, count_up_to: int
) -> Any:
    """A condition on customers: `words` (one or two characters, `%` and `_` taken out) in
    their name, or in the remark of a relation matching `conditions`, from the indexes;
    None where they cannot answer or the scan is the cheaper (a word too common, when the
    count stops at `count_up_to`: the module's docstring), and the search scans as before."""
    postgres = session.bind.dialect.name == "postgresql"
    # A NUL (PostgreSQL refuses it; SQLite's functions stop at it) and, on PostgreSQL, whose
    # LIKE reads a backslash as an escape (`\a` is `a`), a backslash: such words scan.
    if not 1 <= len(words) < word_index.INDEXED_FROM or "\x00" in words:
        return None
    if postgres and "\\" in words:
        return None
    if not await available(session):
        return None
    customers, width = await _scale(session, postgres, words)
    if width >= word_index.INDEXED_FROM:  # a lower() that lengthens: pieces do not tell
        return None
    cost = FOUND_COST[session.bind.dialect.name]
    bound = max(AT_LEAST, math.isqrt(int(count_up_to * max(0, customers) / cost)))
    entries = await _entries(session, words, bound)
    if entries > bound or (entries > AT_LEAST and await _kept(session, conditions, entries)):
        return None
    found = _found(postgres, words, conditions)
    if not postgres:
        return Customer.external_userid.in_(found)
    # Gathered once (an array, an InitPlan), then each customer looked up by key: the planner,
    # which cannot know how few a rare piece finds, would otherwise read every customer to
    # join them.
    return Customer.external_userid == any_(func.array(found.scalar_subquery(), type_=ARRAY(Text)))
