"""Daily rollups per guide per local day, rebuilt incrementally from the source logs.

Where an event counts is guidebot.metrics.placer's (the guide's store at the event's instant and
that store's local day); how one guide's rows over a range of days are counted and replaced is
guidebot.metrics.daily_rows'; the profile snapshots are guidebot.metrics.profiles'. This module
decides what to recompute, and when. Counting and writing run in one transaction, so recomputing
a day gives the same numbers, never more.

What gets recomputed: database triggers append a `metrics_dirty` row in the same transaction as
every change to a source table (see guidebot.metrics.models); `refresh` (the job, every few
seconds) reads a batch of them, turns them into (guide, day) work, recomputes, and deletes exactly
the rows it read, all in one transaction. On PostgreSQL a transaction-scoped advisory lock lets
one instance at a time do this; the others skip that tick. Two kinds of work are not tied to a
change: a customer's day-1 / day-7 window closing (`matured_until` in metrics_state marks how far
the job has looked), and the first run on an existing database (`backfill`).
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from functools import partial
from typing import Any, NamedTuple

from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from guidebot.contacts.models import (
    GuideBehaviorDaily,
    Relation,
    RelationEvent,
    RelationStatus,
    StoreMembership,
)
from guidebot.content.models import ContentForward, ContentOpenVisitor
from guidebot.db.parking import isolating, unparked
from guidebot.groups.models import GroupMember, MemberType
from guidebot.metrics import kpis
from guidebot.metrics.daily_rows import (
    END_KINDS,
    FROZEN_BEFORE,
    LONGEST_WINDOW,
    NEW_KINDS,
    china_noon,
    drop_rows,
    frozen_before,
    merge_days,
    recompute,
)
from guidebot.metrics.models import DirtySource, GuideDaily, MetricsDirty, MetricsState, Order
from guidebot.metrics.placer import Placer, utc_midnight
from guidebot.metrics.profiles import snapshot_profiles
from guidebot.periodic import take_turn
from guidebot.sop.models import SopTask

log = logging.getLogger(__name__)

Sessions = async_sessionmaker[AsyncSession]

# pg_try_advisory_xact_lock key of the rollup job ("guidebot" rollups).
ROLLUP_LOCK = 0x6762_726F_6C6C
# The job's name, as guidebot.app schedules it and as rows it parks are filed under.
JOB = "metrics-rollup"
# How far ahead a "from this day on" recompute reaches (tasks may be due in the future).
AHEAD = timedelta(days=400)

# ---- state ------------------------------------------------------------------------------------

MATURED_UNTIL = "matured_until"
BACKFILLED = "backfilled"


async def get_state(session: AsyncSession, name: str) -> MetricsState | None:
    return await session.get(MetricsState, name, populate_existing=True)


async def set_state(session: AsyncSession, name: str, at: datetime | None, now: datetime) -> None:
    row = await session.get(MetricsState, name)
    if row is None:
        session.add(MetricsState(name=name, at=at, updated_at=now))
    else:
        row.at = at
        row.updated_at = now
    await session.flush()


async def _locked(session: AsyncSession, *, wait: bool = False) -> bool:
    """On PostgreSQL, one rollup transaction at a time across instances; SQLite has one writer.

    The lock is transaction-scoped: it goes with the commit or the rollback."""
    if session.bind.dialect.name != "postgresql":
        return True
    if wait:
        await session.execute(select(func.pg_advisory_xact_lock(ROLLUP_LOCK)))
        return True
    return bool(await session.scalar(select(func.pg_try_advisory_xact_lock(ROLLUP_LOCK))))


async def freeze_before(session: AsyncSession, day: date, now: datetime) -> date:
    """Freeze every day before `day` (never thaws one); the floor now in force. It waits for
    the rollup's turn, so no rollup that read no floor is still reading the logs when the
    caller goes on to prune the frozen days' rows."""
    await _locked(session, wait=True)
    floor = await frozen_before(session)
    if floor is not None and floor >= day:
        return floor
    await set_state(session, FROZEN_BEFORE, utc_midnight(day), now)
    return day


# ---- the job ----------------------------------------------------------------------------------


@dataclass
class RefreshReport:
    dirty: int = 0
    matured: int = 0
    guides: int = 0
    rows: int = 0
    profiles: int = 0
    backfilled: int = 0
    busy: bool = False  # another instance held the lock
    parked: int = 0  # rows it could not handle, parked (guidebot.db.parking)

    def add(self, other: RefreshReport) -> None:
        for name in ("matured", "guides", "rows", "profiles"):
            setattr(self, name, getattr(self, name) + getattr(other, name))


@dataclass
class _Work:
    days: set[date] = field(default_factory=set)
    from_day: date | None = None
    profile: bool = False


# A refresh's transactions each take the dirty rows of this many guides (about ten statements a
# guide): on SQLite one writer serves everyone, and a callback's transaction waits behind
# whichever transaction holds it, so no transaction of the rollup's may be long.
GUIDES_PER_TRANSACTION = 8


async def refresh(
    sessions: Sessions,
    default_tz: str,
    now: datetime,
    *,
    chunk: int = 1000,
    guides_per_transaction: int = GUIDES_PER_TRANSACTION,
    max_transactions: int = 250,
) -> RefreshReport:
    """Bring the rollups up to date with every change committed so far (the periodic job).

    The oldest dirty rows are read (`chunk` at a time), then applied in short transactions:
    each recomputes the guides of the next `guides_per_transaction` among them and deletes
    exactly the rows it applied (a guide's figures are its own, so the order of guides does not
    change any number). A chunk is read once for all its transactions: read again for each, a
    thousand rows for one guide's handful made the rollup the busiest thing in a burst."""
    report = RefreshReport()
    async with sessions() as session:
        done = await get_state(session, BACKFILLED)
    if done is None:
        report.backfilled = await backfill(sessions, default_tz, now, batch=guides_per_transaction)
    transactions, first = 0, True
    while transactions < max_transactions:
        await take_turn()
        async with sessions() as session:
            found = list(
                await session.scalars(
                    select(MetricsDirty)
                    .where(unparked(JOB, DIRTY_TABLE, MetricsDirty.id))
                    .order_by(MetricsDirty.id)
                    .limit(chunk)
                )
            )
        groups = _by_guides(found, guides_per_transaction)
        if first and not groups:
            groups = [[]]  # the matured windows may need applying all the same
        for rows in groups:
            if transactions == max_transactions:
                break
            await take_turn()
            async with sessions() as session, session.begin():
                if not await _locked(session):
                    report.busy = True
                    return _logged(report)
                matured = await _matured(session, now) if first else []
                first = False
                if not rows and not matured:
                    break
                parked = await _apply_isolating(session, default_tz, rows, matured, now, report)
                # A parked dirty row stays, skipped, until `guidebot jobs retry` hands it back.
                ids = [r.id for r in rows if r not in parked]
                for i in range(0, len(ids), 500):
                    await session.execute(
                        delete(MetricsDirty).where(MetricsDirty.id.in_(ids[i : i + 500]))
                    )
                report.dirty += len(ids)
                report.parked += len(parked)
            transactions += 1
        if len(found) < chunk:
            break
    return _logged(report)


def _logged(report: RefreshReport) -> RefreshReport:
    if report.rows or report.dirty:
        log.debug("metrics rollup: %s", report)
    return report


def _by_guides(rows: list[MetricsDirty], guides: int) -> list[list[MetricsDirty]]:
    """The rows in groups of `guides` guides each, in the order of each guide's first row (a
    store's zone change counts as a guide of its own)."""
    group_of: dict[Any, int] = {}
    groups: list[list[MetricsDirty]] = []
    for row in rows:
        key = ("zone", row.id) if row.source == DirtySource.ZONE else row.guide_userid
        n = group_of.setdefault(key, len(group_of) // guides)
        if n == len(groups):
            groups.append([])
        groups[n].append(row)
    return groups


class Matured(NamedTuple):
    guide: str
    at: datetime
    event_id: int  # the relation_events row of the add


async def _matured(session: AsyncSession, now: datetime) -> list[Matured]:
    """New customers whose day-1 or day-7 window closed since the last run: their add days."""
    state = await get_state(session, MATURED_UNTIL)
    if state is None or state.at is None:
        await set_state(session, MATURED_UNTIL, now, now)
        return []
    since = state.at
    if now <= since:
        return []
    found: list[Matured] = []
    for window in kpis.RETENTION_WINDOWS.values():
        found += [
            Matured(guide, at, event_id)
            for guide, at, event_id in await session.execute(
                select(
                    RelationEvent.guide_userid, RelationEvent.occurred_at, RelationEvent.id
                ).where(
                    RelationEvent.kind.in_(NEW_KINDS),
                    RelationEvent.occurred_at > since - window,
                    RelationEvent.occurred_at <= now - window,
                )
            )
        ]
    await set_state(session, MATURED_UNTIL, now, now)
    return found


DIRTY_TABLE = MetricsDirty.__tablename__
EVENTS_TABLE = RelationEvent.__tablename__


def _work_table(item: MetricsDirty | Matured) -> str:
    return EVENTS_TABLE if isinstance(item, Matured) else DIRTY_TABLE


def _work_key(item: MetricsDirty | Matured) -> int:
    return item.event_id if isinstance(item, Matured) else item.id


def _work_detail(item: MetricsDirty | Matured) -> str:
    if isinstance(item, Matured):
        return f"retention window of {item.guide}'s add at {item.at.isoformat()}"
    who = "/".join(x for x in (item.guide_userid, item.external_userid) if x)
    what = " ".join(x for x in (item.source, item.kind) if x)
    return f"{what} of {who} at {item.at.isoformat()}"


async def _apply_isolating(
    session: AsyncSession,
    default_tz: str,
    rows: Sequence[MetricsDirty],
    matured: Sequence[Matured],
    now: datetime,
    report: RefreshReport,
) -> list[MetricsDirty | Matured]:
    """_apply, in one go; if a row breaks it, row by row, parking the rows that fail alone
    (one bad instant must not stop every guide's figures). The items parked."""

    async def apply(items: Sequence[MetricsDirty | Matured]) -> RefreshReport:
        part = RefreshReport()
        await _apply(
            session,
            default_tz,
            [i for i in items if isinstance(i, MetricsDirty)],
            [i for i in items if isinstance(i, Matured)],
            now,
            part,
        )
        return part

    done, parked = await isolating(
        session,
        [*rows, *matured],
        apply,
        job=JOB,
        table=_work_table,
        key=_work_key,
        now=now,
        detail=_work_detail,
    )
    for part in done:
        report.add(part)
    report.matured += len([m for m in matured if m not in parked])
    return parked


async def _apply(
    session: AsyncSession,
    default_tz: str,
    rows: Sequence[MetricsDirty],
    matured: Sequence[Matured],
    now: datetime,
    report: RefreshReport,
) -> None:
    work: dict[str, _Work] = defaultdict(_Work)
    rebuild: set[str] = set()
    for row in rows:
        if row.source == DirtySource.ZONE:
            # A store's time zone changed: every day of its guides moves.
            store = int(row.kind or 0)
            rebuild.update(
                await session.scalars(
                    select(StoreMembership.guide_userid)
                    .where(StoreMembership.store_id == store)
                    .distinct()
                )
            )
    guides = {r.guide_userid for r in rows if r.source != DirtySource.ZONE} | {
        m.guide for m in matured
    }
    in_groups = await _guides_of_group_customers(session, rows)  # their 入群 share changed
    guides |= rebuild | in_groups
    placer = await Placer.load(session, guides, default_tz)

    for guide in rebuild:
        work[guide].from_day = date.min
        work[guide].profile = True
    for row in rows:
        if row.source == DirtySource.ZONE:
            continue
        item = work[row.guide_userid]
        if row.source == DirtySource.PROFILE:
            item.profile = True
        elif row.source == DirtySource.BEHAVIOR:
            # WeCom's figures of a China day count on that date (daily_rows._count_behavior).
            item.days.add(date.fromisoformat(row.kind or ""))
        elif row.source == DirtySource.MEMBERSHIP:
            day = placer.day(row.guide_userid, row.at) - timedelta(days=1)
            item.from_day = day if item.from_day is None else min(item.from_day, day)
            item.profile = True
        else:
            item.days.add(placer.day(row.guide_userid, row.at))
            if row.source == DirtySource.RELATION and row.kind in END_KINDS:
                # An end within a new customer's window changes that add's day's retention.
                for (at,) in await session.execute(
                    select(RelationEvent.occurred_at).where(
                        RelationEvent.guide_userid == row.guide_userid,
                        RelationEvent.external_userid == row.external_userid,
                        RelationEvent.kind.in_(NEW_KINDS),
                        RelationEvent.occurred_at >= row.at - LONGEST_WINDOW,
                        RelationEvent.occurred_at < row.at,
                    )
                ):
                    item.days.add(placer.day(row.guide_userid, at))
            if row.source == DirtySource.FORWARD:
                item.days.update(await _later_forward_days(session, placer, row))
    for guide, at, _ in matured:
        work[guide].days.add(placer.day(guide, at))

    far = (now + AHEAD).date()
    for guide, item in sorted(work.items()):
        from_day = item.from_day
        if from_day == date.min:
            first = await _first_event(session, guide)
            from_day = placer.day(guide, first) - timedelta(days=1) if first else None
            if from_day is None and not item.days:
                # No history at all: drop whatever rows there were.
                await drop_rows(session, guide)
        ranges = merge_days(item.days, from_day, far)
        if ranges:
            report.guides += 1
            report.rows += await recompute(session, placer, guide, ranges, now)
    profiles = [g for g, item in work.items() if item.profile] + sorted(in_groups)
    if profiles:
        report.profiles += await snapshot_profiles(session, placer, profiles, now)


async def _guides_of_group_customers(
    session: AsyncSession, rows: Sequence[MetricsDirty]
) -> set[str]:
    """Whose snapshots a group change moves: the active guides of the customers who joined or
    left a group; for a group that was dismissed or changed owner (`kind` names it), its
    owner and the active guides of its customers."""
    groups = [r for r in rows if r.source == DirtySource.GROUP]
    customers = {r.external_userid for r in groups if r.external_userid}
    changed = {r.kind for r in groups if r.external_userid is None and r.kind}
    if not customers and not changed:
        return set()
    found = {r.guide_userid for r in groups if r.external_userid is None}
    if changed:
        customers.update(
            await session.scalars(
                select(GroupMember.member_id).where(
                    GroupMember.chat_id.in_(changed),
                    GroupMember.member_type == MemberType.CUSTOMER,
                )
            )
        )
    wanted = sorted(customers)
    for i in range(0, len(wanted), 500):
        found.update(
            await session.scalars(
                select(Relation.guide_userid).where(
                    Relation.external_userid.in_(wanted[i : i + 500]),
                    Relation.status == RelationStatus.ACTIVE,
                )
            )
        )
    return found


async def _later_forward_days(
    session: AsyncSession, placer: Placer, row: MetricsDirty
) -> set[date]:
    """A forward logged late with an earlier sent_at (a mass send's delivery time) becomes the
    first of its item to that customer: the days of the guide's later forwards to them move."""
    if row.external_userid is None:
        return set()
    found = await session.scalars(
        select(ContentForward.sent_at).where(
            ContentForward.guide_userid == row.guide_userid,
            ContentForward.external_userid == row.external_userid,
            ContentForward.sent_at > row.at,
        )
    )
    return {placer.day(row.guide_userid, at) for at in found}


# ---- backfill -----------------------------------------------------------------------------------


def _firsts() -> list[Any]:
    """Per source: (guide, its earliest instant) grouped by guide."""
    return [
        select(RelationEvent.guide_userid, func.min(RelationEvent.occurred_at)).group_by(
            RelationEvent.guide_userid
        ),
        select(SopTask.guide_userid, func.min(SopTask.due_at)).group_by(SopTask.guide_userid),
        select(ContentForward.guide_userid, func.min(ContentForward.sent_at)).group_by(
            ContentForward.guide_userid
        ),
        select(
            ContentOpenVisitor.guide_userid, func.min(ContentOpenVisitor.first_opened_at)
        ).group_by(ContentOpenVisitor.guide_userid),
        select(Order.guide_userid, func.min(Order.paid_at))
        .where(Order.guide_userid.is_not(None))
        .group_by(Order.guide_userid),
        select(GuideBehaviorDaily.guide_userid, func.min(GuideBehaviorDaily.day)).group_by(
            GuideBehaviorDaily.guide_userid
        ),
    ]


def _instant(value: datetime | date) -> datetime:
    """A source's earliest instant; WeCom's figures have a China day instead."""
    return value if isinstance(value, datetime) else china_noon(value)


async def _first_event(session: AsyncSession, guide: str) -> datetime | None:
    found: list[datetime] = []
    for query in _firsts():
        table_guide = query.selected_columns[0]
        value = (await session.execute(query.where(table_guide == guide))).first()
        if value is not None and value[1] is not None:
            found.append(_instant(value[1]))
    return min(found) if found else None


async def backfill(sessions: Sessions, default_tz: str, now: datetime, *, batch: int = 20) -> int:
    """Build every guide's rows from their whole history (the first run on existing data).

    One transaction per few guides (`batch`), each after the add in hand (take_turn), so
    callbacks and welcomes are not held up behind it on SQLite. Changes
    committed meanwhile leave dirty rows that the next refresh applies."""
    async with sessions() as session:
        firsts: dict[str, datetime] = {}
        for query in _firsts():
            for guide, value in await session.execute(query):
                at = None if value is None else _instant(value)
                if at is not None and (guide not in firsts or at < firsts[guide]):
                    firsts[guide] = at
        with_relations = set(await session.scalars(select(Relation.guide_userid).distinct()))
    guides = sorted(set(firsts) | with_relations)
    far = (now + AHEAD).date()
    for i in range(0, len(guides), batch):
        chunk = guides[i : i + batch]
        await take_turn()
        async with sessions() as session, session.begin():
            await _locked(session, wait=True)
            placer = await Placer.load(session, chunk, default_tz)
            build = partial(_build, session, placer, firsts, with_relations, far, now)
            later = partial(_build_later, session, firsts, now)
            await isolating(
                session, chunk, build, job=JOB, table="guides", key=str, now=now, on_failure=later
            )
    async with sessions() as session, session.begin():
        await set_state(session, BACKFILLED, now, now)
        if await get_state(session, MATURED_UNTIL) is None:
            await set_state(session, MATURED_UNTIL, now, now)
    if guides:
        log.info("metrics: built the rollups of %d guides from their history", len(guides))
    return len(guides)


async def _build(
    session: AsyncSession,
    placer: Placer,
    firsts: dict[str, datetime],
    with_relations: set[str],
    far: date,
    now: datetime,
    guides: Sequence[str],
) -> None:
    for guide in guides:
        if guide in firsts:
            first = placer.day(guide, firsts[guide]) - timedelta(days=1)
            await recompute(session, placer, guide, [(first, far)], now)
    await snapshot_profiles(session, placer, [g for g in guides if g in with_relations], now)


async def _build_later(
    session: AsyncSession, firsts: dict[str, datetime], now: datetime, guide: str, _exc: Exception
) -> None:
    """A guide whose history cannot be built goes to the dirty queue as "everything from its
    first instant on", where a row that still fails is parked with its reason."""
    session.add(
        MetricsDirty(
            source=DirtySource.MEMBERSHIP,
            guide_userid=guide,
            at=firsts.get(guide, now),
            kind="history",  # shown in the parked row's detail, read by nothing
        )
    )


async def recompute_all(sessions: Sessions, default_tz: str, now: datetime) -> int:
    """Rebuild every guide's daily rows from scratch (tests, benchmarks, repairs).

    Profile snapshots are kept: they record a stock as it was, which no log can rebuild."""
    async with sessions() as session, session.begin():
        floor = await frozen_before(session)  # frozen days' sources may be pruned: kept
        await session.execute(delete(GuideDaily).where(GuideDaily.day >= (floor or date.min)))
        await session.execute(delete(MetricsState).where(MetricsState.name == BACKFILLED))
    return await backfill(sessions, default_tz, now)


__all__ = ["RefreshReport", "backfill", "freeze_before", "recompute_all", "refresh"]
