"""The planner's statistics of the tables that are filling up (PostgreSQL).

PostgreSQL plans a prepared statement once it has run it a few times, then keeps that plan
until a table it reads gets new statistics. A new database (a first install, a restore) has
none, and autovacuum's ANALYZE comes a minute later at the soonest (`autovacuum_naptime`), or
never where autovacuum is off. Plans made for empty tables then outlive them while a
livestream fills them: at 166 adds a second (bench.welcome) the inbox claim's check for an
earlier event of the same customer read the whole inbox for each event it claimed (5 ms a
claim, 1,900 pages), the completion of runs read every pending task (20-40 ms), and the two
were a third of PostgreSQL's time.

So every few seconds each table that has seen as many changes as it had rows when last
analysed (and at least `FEWEST_CHANGES`) is analysed again: a table is analysed about log2 of
its size times while it grows from nothing, and after that autovacuum's own thresholds (a
tenth of the table) come first. One instance does it at a time (an advisory lock); SQLite has
no such plans and is left alone.
"""

from __future__ import annotations

import logging

from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from guidebot.periodic import PeriodicJob

log = logging.getLogger(__name__)

Sessions = async_sessionmaker[AsyncSession]

EVERY_SECONDS = 5
# Below this a table is small enough that any plan reads it quickly.
FEWEST_CHANGES = 1_000
# At most this many tables a run: the rest wait for the next.
MOST_TABLES = 4
# An arbitrary key of guidebot's own: the instance holding it analyses, the others skip the run.
_LOCK_KEY = 0x6775_6964_6562_6F74 & 0x7FFF_FFFF_FFFF_FFFF

# Tables of the current schema whose changes since their last ANALYZE reach the rows it saw
# (reltuples is -1 before the first one).
_GROWN = text(
    "SELECT s.relname FROM pg_stat_user_tables AS s JOIN pg_class AS c ON c.oid = s.relid "
    "WHERE s.schemaname = current_schema() AND s.n_mod_since_analyze >= :fewest "
    "AND s.n_mod_since_analyze >= greatest(c.reltuples, 0) "
    "ORDER BY s.n_mod_since_analyze DESC LIMIT :most"
)


async def analyse_grown_tables(sessions: Sessions) -> list[str]:
    """ANALYZE the tables that grew (see the module's text); the names analysed."""
    async with sessions() as session:
        if session.bind.dialect.name != "postgresql":
            return []
        if not await session.scalar(
            text("SELECT pg_try_advisory_xact_lock(:key)"), {"key": _LOCK_KEY}
        ):
            return []
        grown = list(await session.scalars(_GROWN, {"fewest": FEWEST_CHANGES, "most": MOST_TABLES}))
        quote = session.bind.dialect.identifier_preparer.quote
        # Behind a migration's or a VACUUM's lock, wait for the next run rather than queue.
        await session.execute(text("SET LOCAL lock_timeout = '1s'"))
        for name in grown:
            await session.execute(text(f"ANALYZE {quote(name)}"))
        await session.commit()
    if grown:
        log.info("planner statistics refreshed for %s", ", ".join(grown))
    return grown


async def refresh_statistics(sessions: Sessions) -> None:
    try:
        await analyse_grown_tables(sessions)
    except SQLAlchemyError as exc:  # the next run tries again
        log.warning("planner statistics not refreshed: %s", exc)


JOBS = [PeriodicJob("db-statistics", refresh_statistics, every_seconds=EVERY_SECONDS)]
