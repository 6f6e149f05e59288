"""Figures someone else counts per person per day (WeCom's), kept as one row per (person, day).

A sync reads a span of days again and again (WeCom completes a day late, and a run that failed
is retried), so `keep_days` writes only the rows that are new or whose figures differ, and
stamps those with the sync's time.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute


async def keep_days(
    session: AsyncSession,
    person: InstrumentedAttribute,
    who: str,
    days: dict[date, dict[str, Any]],
    stamp: str,
    now: datetime,
) -> int:
    """Keep `who`'s figures of these days in `person`'s table (its `day` column, and `stamp`
    set to `now` on each row written). The rows written."""
    if not days:
        return 0
    model = person.class_
    existing = {
        row.day: row
        for row in await session.scalars(
            select(model).where(person == who, model.day >= min(days), model.day <= max(days))
        )
    }
    written = 0
    for day, values in sorted(days.items()):
        row = existing.get(day)
        if row is None:
            session.add(model(**{person.key: who, "day": day, stamp: now}, **values))
        elif any(getattr(row, name) != value for name, value in values.items()):
            for name, value in values.items():
                setattr(row, name, value)
            setattr(row, stamp, now)
        else:
            continue
        written += 1
    await session.flush()
    return written
