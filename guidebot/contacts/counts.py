"""Each guide's active customers per store (`guide_customer_counts`).

Triggers on `relations` keep the counts in the transaction of each change (migration 0028), so
the guide and store lists read a row per guide and store instead of counting every relation
(contacts/queries.py). On PostgreSQL the changes are tallied and applied when the transaction
commits, each guide's row in one order for every transaction (0029: two opposite transfers
at once deadlocked), so a transaction does not see its own changes in the counts. `recount`
counts them again from the relations: after rows were loaded with the triggers off
(bench.scale), or to repair.
"""

from __future__ import annotations

from sqlalchemy import delete, func, insert, literal, select
from sqlalchemy.ext.asyncio import AsyncSession

from guidebot.contacts.models import NO_STORE, GuideCustomerCount, Relation, RelationStatus


async def recount(session: AsyncSession) -> None:
    """Every guide's counts from the relations, in the caller's transaction."""
    store = func.coalesce(Relation.store_id, literal(NO_STORE))
    if session.bind.dialect.name == "postgresql":
        # The count below holds this transaction's changes: its tally must not add them again.
        await session.execute(select(func.set_config("guidebot.count_changes", "", True)))
    await session.execute(delete(GuideCustomerCount))
    await session.execute(
        insert(GuideCustomerCount).from_select(
            ["guide_userid", "store_id", "active"],
            select(Relation.guide_userid, store, func.count())
            .where(Relation.status == RelationStatus.ACTIVE)
            .group_by(Relation.guide_userid, store),
        )
    )
