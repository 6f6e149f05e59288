"""Profile snapshots: each guide's active customers, those with profile data and those in a
customer group, and the groups the guide owns, per local day.

A snapshot records a stock as it was; no log can rebuild it.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from sqlalchemy import String, case, cast, delete, func, insert, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from guidebot.contacts.models import Relation, RelationStatus
from guidebot.groups.queries import guide_group_counts
from guidebot.metrics.models import GuideProfileDaily
from guidebot.metrics.placer import Placer


def profile_filled():
    """True for a relation with profile data: a remark mobile or a description."""
    mobiles = func.coalesce(cast(Relation.remark_mobiles, String), "[]")
    described = func.length(func.trim(func.coalesce(Relation.description, ""))) > 0
    return or_(mobiles.not_in(("[]", "null", "")), described)


async def snapshot_profiles(
    session: AsyncSession, placer: Placer, guides: Iterable[str], now: datetime
) -> int:
    """Today's (local) snapshot of each guide's active customers, those with profile data and
    those in a customer group, and the groups the guide owns."""
    wanted = sorted(set(guides))
    counts: dict[str, tuple[int, int]] = {}
    groups: dict[str, tuple[int, int]] = {}
    for i in range(0, len(wanted), 500):
        chunk = wanted[i : i + 500]
        for guide, active, filled in await session.execute(
            select(
                Relation.guide_userid,
                func.count(),
                func.sum(case((profile_filled(), 1), else_=0)),
            )
            .where(Relation.guide_userid.in_(chunk), Relation.status == RelationStatus.ACTIVE)
            .group_by(Relation.guide_userid)
        ):
            counts[guide] = (int(active), int(filled or 0))
        groups.update(await guide_group_counts(session, chunk))
    rows = []
    for guide in wanted:
        store, day = placer.place(guide, now)
        active, filled = counts.get(guide, (0, 0))
        owned, in_group = groups.get(guide, (0, 0))
        await session.execute(
            delete(GuideProfileDaily).where(
                GuideProfileDaily.guide_userid == guide, GuideProfileDaily.day == day
            )
        )
        rows.append(
            {
                "guide_userid": guide,
                "day": day,
                "store_id": store,
                "active": active,
                "filled": filled,
                "groups_owned": owned,
                "in_group": in_group,
                "computed_at": now,
            }
        )
    if rows:
        await session.execute(insert(GuideProfileDaily), rows)
    return len(rows)
