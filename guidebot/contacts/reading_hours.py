"""Each customer's best hour: when of the day they read, learned from their own opens and replies.

The estimate, per customer, over the 24 hours of the day (UTC hours; the customer's store's
zone turns them into local hours when read, so a store that changes zone keeps its history):

* observations: each tracked-link open (ContentOpened) and each reply we are told of
  (CustomerReplied) adds one to the hour it happened in, except within 30 minutes of the
  customer's latest counted one (a burst of opens is one reading; a fact delivered twice
  counts once);
* the prior: the store's customers' counted hours (read_hour_counts), shrunk toward every
  store's together with the weight of 8 observations while the store has few, flat when
  nothing is known at all;
* the posterior: (own count in the hour + 4 x the prior's share of the hour) / (own total + 4),
  the mean of a Dirichlet with the prior as its 4-observation base: a customer with no history
  reads like their store, and after about a dozen opens like themselves;
* the score of an hour: the posterior smoothed over its neighbours (1/4, 1/2, 1/4, round the
  clock, so 23:00 and 00:00 are neighbours): a reader at 20:50 and 21:10 has one hour, not two;
* the best hour: the highest score (the earliest on a tie). A `best_time: true` step takes the
  best hour among those its send window allows (guidebot.sop.planner.place_at_best_hour).

Computed incrementally: an open updates one customer row and two counters, never a rescan.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from guidebot import i18n
from guidebot.contacts.models import CustomerReadHours, Department, ReadHourCount, Relation
from guidebot.db.engine import upsert_insert
from guidebot.events import ContentOpened, CustomerReplied, Subscribers

HOURS = 24
PRIOR_WEIGHT = 4.0  # the store's prior counts as this many of the customer's own readings
STORE_SHRINK = 8.0  # a store's prior leans on all stores' until it has about this many
DEBOUNCE = timedelta(minutes=30)  # readings closer than this to the last counted are one
ALL_STORES = 0  # read_hour_counts.store_id of every store together


@dataclass(frozen=True)
class Reading:
    """What is known of when a customer reads, as a placement and a page use it."""

    scores: tuple[float, ...]  # 24, by UTC hour: the smoothed posterior
    observations: int  # the customer's own counted opens and replies
    prior: str  # where the prior came from: store | all_stores | none

    @property
    def best_utc_hour(self) -> int:
        return best(self.scores)

    def local_hour(self, zone: ZoneInfo, on: date | None = None) -> int:
        """The best hour on the zone's clock (on a given day, for a zone with DST)."""
        day = on or datetime.now(UTC).date()
        instant = datetime.combine(day, time(self.best_utc_hour, 30), tzinfo=UTC)
        return instant.astimezone(zone).hour

    @property
    def source(self) -> str:
        """own: mostly the customer's readings; otherwise the prior's origin."""
        return "own" if self.observations >= PRIOR_WEIGHT else self.prior


def shares(counts: Sequence[int | float]) -> list[float] | None:
    total = float(sum(counts))
    return [c / total for c in counts] if total > 0 else None


def prior_shares(store: Sequence[int], everyone: Sequence[int]) -> tuple[list[float] | None, str]:
    """The prior's share per UTC hour, and where it came from."""
    overall = shares(everyone)
    mine = float(sum(store))
    if mine <= 0:
        return overall, "all_stores" if overall else "none"
    base = overall or [1 / HOURS] * HOURS
    pairs = zip(store, base, strict=True)
    return [(s + STORE_SHRINK * b) / (mine + STORE_SHRINK) for s, b in pairs], "store"


def posterior(counts: Sequence[int], prior: Sequence[float] | None) -> list[float] | None:
    """The Dirichlet posterior mean per hour; None when nothing at all is known."""
    total = sum(counts)
    if prior is None:
        return shares(counts)
    pairs = zip(counts, prior, strict=True)
    return [(c + PRIOR_WEIGHT * p) / (total + PRIOR_WEIGHT) for c, p in pairs]


def smooth(values: Sequence[float]) -> tuple[float, ...]:
    """Each hour with its neighbours, round the clock (23 and 0 are neighbours)."""
    n = len(values)
    return tuple(
        values[(h - 1) % n] / 4 + values[h] / 2 + values[(h + 1) % n] / 4 for h in range(n)
    )


def best(scores: Sequence[float]) -> int:
    return max(range(len(scores)), key=lambda h: (scores[h], -h))


def estimate(
    counts: Sequence[int], store: Sequence[int], everyone: Sequence[int]
) -> Reading | None:
    """The reading from a customer's counts and the two priors; None when nothing is known."""
    prior, origin = prior_shares(store, everyone)
    mean = posterior(counts, prior)
    if mean is None:
        return None
    return Reading(smooth(mean), int(sum(counts)), origin)


def utc_hour(at: datetime) -> int:
    return at.astimezone(UTC).hour


# ---- storage -----------------------------------------------------------------------------


async def _prior_counts(session: AsyncSession, store_id: int | None) -> tuple[list[int], list[int]]:
    wanted = [ALL_STORES] + ([store_id] if store_id else [])
    store, everyone = [0] * HOURS, [0] * HOURS
    found = await session.execute(
        select(ReadHourCount.store_id, ReadHourCount.hour, ReadHourCount.count).where(
            ReadHourCount.store_id.in_(wanted)
        )
    )
    for store_of, hour, count in found:
        (everyone if store_of == ALL_STORES else store)[hour] = count
    return store, everyone


async def _count_for_stores(session: AsyncSession, store_id: int | None, hour: int) -> None:
    """One more reading at `hour` for the store and for all stores: an atomic increment, so
    two customers of one store reading at once never lose one."""
    insert = upsert_insert(session.bind.dialect.name)
    for store in {ALL_STORES, store_id or ALL_STORES}:
        statement = insert(ReadHourCount).values(store_id=store, hour=hour, count=1)
        statement = statement.on_conflict_do_update(
            index_elements=["store_id", "hour"], set_={"count": ReadHourCount.count + 1}
        )
        await session.execute(statement)


async def observe(session: AsyncSession, ext: str, guide: str, at: datetime, now: datetime) -> bool:
    """Count one reading of the customer at `at`; False when it falls within DEBOUNCE of the
    last counted one."""
    store_id = await session.scalar(
        select(Relation.store_id).where(
            Relation.guide_userid == guide, Relation.external_userid == ext
        )
    )
    # The row first, by an insert that yields to a racing one: two first opens at once on two
    # instances both count, one after the other, instead of one failing on the key.
    await session.execute(
        upsert_insert(session.bind.dialect.name)(CustomerReadHours)
        .values(
            external_userid=ext,
            counts=[0] * HOURS,
            observations=0,
            last_counted_at=at,
            updated_at=now,
        )
        .on_conflict_do_nothing(index_elements=["external_userid"])
    )
    row = await session.get(CustomerReadHours, ext, populate_existing=True, with_for_update=True)
    assert row is not None
    if row.observations and abs(at - row.last_counted_at) < DEBOUNCE:
        return False
    hour = utc_hour(at)
    counts = list(row.counts)
    counts[hour] += 1
    row.counts = counts  # a new list: the JSON column sees the change
    row.observations += 1
    row.store_id = store_id if store_id is not None else row.store_id
    row.last_counted_at = max(row.last_counted_at, at)
    row.updated_at = now
    await _count_for_stores(session, row.store_id, hour)
    reading = estimate(counts, *await _prior_counts(session, row.store_id))
    row.best_hour = reading.best_utc_hour if reading else None
    return True


async def reading_of(
    session: AsyncSession, ext: str, store_id: int | None = None
) -> Reading | None:
    """The customer's reading as of now (their counts with today's prior), or their store's
    alone when they have no history; None when nothing at all is known."""
    row = await session.get(CustomerReadHours, ext)
    counts = list(row.counts) if row is not None else [0] * HOURS
    store = row.store_id if row is not None and row.store_id is not None else store_id
    return estimate(counts, *await _prior_counts(session, store))


async def learned_hour(
    session: AsyncSession, ext: str, default_zone: str, today: date
) -> dict[str, Any] | None:
    """The customer page's and the API's view: the best hour on their store's clock (the
    default zone's when the store has none), how many of their own readings it rests on, and
    whether it is mostly theirs (own) or their store's or every store's prior."""
    row = await session.get(CustomerReadHours, ext)
    store_id = row.store_id if row is not None else None
    if store_id is None:
        store_id = await session.scalar(
            select(Relation.store_id)
            .where(Relation.external_userid == ext, Relation.store_id.is_not(None))
            .order_by(Relation.id.desc())
            .limit(1)
        )
    reading = await reading_of(session, ext, store_id)
    if reading is None:
        return None
    zone_name = None
    if store_id is not None:
        zone_name = await session.scalar(
            select(Department.timezone).where(Department.id == store_id)
        )
    try:
        zone = ZoneInfo(zone_name or default_zone)
    except (ValueError, ZoneInfoNotFoundError):
        zone = ZoneInfo(default_zone)
    hour = reading.local_hour(zone, today)
    return {
        "hour": hour,
        "timezone": zone.key,
        "observations": reading.observations,
        "source": reading.source,
        "label": hour_label(hour, reading),
    }


def hour_label(hour: int, reading: Reading) -> str:
    """What people read, Chinese then English: 20:00 前后（据 5 次打开或回复） / around ..."""
    at = f"{hour:02d}:00"
    if reading.source == "own":
        return i18n.both(
            "around %(hour)s (from %(n)s opens or replies)", " / ", hour=at, n=reading.observations
        )
    return i18n.both("around %(hour)s (as their store's customers)", " / ", hour=at)


async def on_opened(session: AsyncSession, event: ContentOpened) -> None:
    await observe(session, event.external_userid, event.guide_userid, event.at, event.now)


async def on_replied(session: AsyncSession, event: CustomerReplied) -> None:
    await observe(session, event.external_userid, event.guide_userid, event.at, event.now)


def subscribe(subscribers: Subscribers) -> None:
    subscribers.subscribe(ContentOpened, on_opened)
    subscribers.subscribe(CustomerReplied, on_replied)
