"""Where and when an event counts: the guide's store at the event's instant and that store's day.

The store is the guide's effective-dated store membership at that instant, as
`guidebot.contacts.directory.store_at` decides (NO_STORE when they had none); the day is that
store's local day (its time zone override, else GUIDEBOT_TIMEZONE). A guide who moved stores
keeps the days before the move with the old store.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from guidebot.contacts.models import Department, Guide, StoreMembership
from guidebot.metrics.models import NO_STORE


def utc_midnight(day: date) -> datetime:
    return datetime.combine(day, time(0), tzinfo=UTC)


@dataclass(slots=True)
class Placer:
    """(guide, instant) -> (store, local day), from store memberships and store time zones."""

    default_zone: ZoneInfo
    zones: dict[int, ZoneInfo] = field(default_factory=dict)
    memberships: dict[str, list[tuple[int, datetime, datetime | None]]] = field(
        default_factory=dict
    )
    mains: dict[str, int | None] = field(default_factory=dict)
    # Stores whose time zone no IANA name gives (an older version, a hand edit): only what is
    # placed in one of them fails (and is parked), not every guide's figures.
    unreadable: dict[int, str] = field(default_factory=dict)

    @classmethod
    async def load(
        cls, session: AsyncSession, guides: Iterable[str] | None, default_tz: str
    ) -> Placer:
        """Memberships of these guides (all guides when None) in store departments."""
        placer = cls(ZoneInfo(default_tz))
        for dept_id, tz in await session.execute(
            select(Department.id, Department.timezone).where(Department.timezone.is_not(None))
        ):
            try:
                placer.zones[dept_id] = ZoneInfo(tz)
            except (ZoneInfoNotFoundError, ValueError):
                placer.unreadable[dept_id] = tz
        query = (
            select(
                StoreMembership.guide_userid,
                StoreMembership.store_id,
                StoreMembership.valid_from,
                StoreMembership.valid_to,
            )
            .join(Department, Department.id == StoreMembership.store_id)
            .where(Department.is_store.is_(True))
        )
        main_query = select(Guide.userid, Guide.main_department)
        wanted = None if guides is None else sorted(set(guides))
        chunks = (
            [None] if wanted is None else [wanted[i : i + 500] for i in range(0, len(wanted), 500)]
        )
        for chunk in chunks:
            q, m = query, main_query
            if chunk is not None:
                q = q.where(StoreMembership.guide_userid.in_(chunk))
                m = m.where(Guide.userid.in_(chunk))
            for guide, store, start, end in await session.execute(q):
                placer.memberships.setdefault(guide, []).append((store, start, end))
            for guide, main in await session.execute(m):
                placer.mains[guide] = main
        return placer

    def store(self, guide: str, at: datetime) -> int:
        """The guide's store at `at`: as directory.store_at, the main department first."""
        main = self.mains.get(guide)
        best: tuple[Any, ...] | None = None
        for store, start, end in self.memberships.get(guide, ()):
            if start <= at and (end is None or end > at):
                key = (store != main, -start.timestamp(), store)
                if best is None or key < best:
                    best = key
        return best[2] if best is not None else NO_STORE

    def zone(self, store: int) -> ZoneInfo:
        if store in self.unreadable:
            raise ValueError(
                f"store {store}'s time zone {self.unreadable[store]!r} is not an IANA time zone"
            )
        return self.zones.get(store, self.default_zone)

    def place(self, guide: str, at: datetime) -> tuple[int, date]:
        store = self.store(guide, at)
        return store, at.astimezone(self.zone(store)).date()

    def day(self, guide: str, at: datetime) -> date:
        return self.place(guide, at)[1]
