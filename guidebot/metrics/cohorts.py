"""Cohorts: customers grouped by the local day (week, month) of their first add, defined once.

The README's "Cohorts" section repeats these definitions.

* **Member.** A customer joins a cohort at their first add (the earliest relation_events
  `added` or `reactivated` of the customer, with any guide). The cohort's day is that add's
  local day in the store's time zone (the guide's store at that instant, as the guide KPIs
  place events: guidebot.metrics.placer; else GUIDEBOT_TIMEZONE). The splits are fixed at the
  add and never move: the store (the guide's store then), the guide who was added, the
  channel and campaign of the contact way the add came through, and the playbook (the first
  `customer.added` playbook that enrolled the customer; none when none did). A later
  transfer, a store move of the guide or a re-add with another guide changes none of them.
* **Retention at day N** (N = 1, 7, 30, 90). Due once N × 24 hours have passed since the add;
  kept when, at that instant, the customer has at least one live relation with any of our
  guides (replaying relation_events: added, reactivated, transferred_in make a guide's
  relation live; lost, removed, transferred_out end it). A customer transferred to another
  guide is kept; one who left and came back before the checkpoint is kept.
* **Orders, GMV.** Orders paid at or after the add and not refunded (an OrderRefunded order
  leaves every figure); GMV their amounts. Per customer: over the cohort's members.
* **Repurchase within W days** (W = 90, 180, 365). Of the members with a first order (the
  earliest counted order) whose W days have passed, the share with a second counted order
  paid within W × 24 hours of the first. A refund of the first order makes the next one first.

Incremental: the `cohorts-refresh` job reads what was recorded since it last looked
(relation_events by recorded_at, orders by updated_at, a few minutes of overlap) and members
whose next checkpoint came due, recomputes those customers from their own log rows (a pure
function of the logs and the instant), and rebuilds the rollup rows (cohort_periods) of the
weeks and months whose members they are. A request reads only cohort_periods.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import case, delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from guidebot.contacts.models import EventKind, RelationEvent
from guidebot.db.engine import upsert_insert
from guidebot.db.parking import describe_error, park
from guidebot.metrics.models import (
    COHORT_COUNTERS,
    CohortMember,
    CohortPeriod,
    MetricsState,
    Order,
    OrderStatus,
)
from guidebot.metrics.placer import Placer
from guidebot.periodic import take_turn
from guidebot.sop.models import SopEnrollment

log = logging.getLogger(__name__)

RETENTION_DAYS = (1, 7, 30, 90)
REPURCHASE_DAYS = (90, 180, 365)
DIMS = ("all", "store", "guide", "channel", "campaign", "playbook")
PERIODS = ("week", "month")
NEW_KINDS = (EventKind.ADDED, EventKind.REACTIVATED)
LIVE_KINDS = (EventKind.ADDED, EventKind.REACTIVATED, EventKind.TRANSFERRED_IN)
END_KINDS = (EventKind.LOST, EventKind.REMOVED, EventKind.TRANSFERRED_OUT)
SEEN_UNTIL = "cohorts_seen_until"  # metrics_state: how far the job has read the logs
OVERLAP = timedelta(minutes=5)  # rows recorded by a transaction that committed late
CHUNK = 500
JOB = "cohorts-refresh"  # as the scheduler names it and parked rows are filed under


@dataclass(frozen=True, slots=True)
class Event:
    at: datetime
    kind: str
    guide: str
    channel: str | None = None
    campaign: str | None = None


def first_add(events: Sequence[Event]) -> Event | None:
    adds = [e for e in events if e.kind in NEW_KINDS]
    return min(adds, key=lambda e: e.at) if adds else None


def live_at(events: Sequence[Event], at: datetime) -> bool:
    """Whether the customer has a live relation with any guide at `at` (events in log order)."""
    live: dict[str, bool] = {}
    for event in events:
        if event.at > at:
            break
        if event.kind in LIVE_KINDS:
            live[event.guide] = True
        elif event.kind in END_KINDS:
            live[event.guide] = False
    return any(live.values())


def member_figures(
    events: Sequence[Event],
    orders: Sequence[tuple[datetime, int]],
    added_at: datetime,
    now: datetime,
) -> dict[str, Any]:
    """Every figure of one member as of `now`: the retention and repurchase flags (None until
    due), orders, GMV, the first order, and the next checkpoint. `events` in log order;
    `orders` the counted orders (paid, not refunded) as (paid_at, amount_fen)."""
    figures: dict[str, Any] = {}
    checkpoints: list[datetime] = []
    for n in RETENTION_DAYS:
        at = added_at + timedelta(days=n)
        figures[f"d{n}"] = live_at(events, at) if at <= now else None
        checkpoints.append(at)
    counted = sorted(o for o in orders if o[0] >= added_at)
    first = counted[0][0] if counted else None
    for w in REPURCHASE_DAYS:
        figures[f"r{w}"] = None
        if first is None:
            continue
        at = first + timedelta(days=w)
        checkpoints.append(at)
        if at <= now:
            figures[f"r{w}"] = len(counted) > 1 and counted[1][0] <= at
    figures["first_order_at"] = first
    figures["orders"] = len(counted)
    figures["gmv_fen"] = sum(amount for _, amount in counted)
    figures["next_due_at"] = min((c for c in checkpoints if c > now), default=None)
    return figures


# ---- the job ---------------------------------------------------------------------------------


@dataclass
class CohortReport:
    customers: int = 0
    days: int = 0


async def refresh_cohorts(
    sessions: async_sessionmaker[AsyncSession], timezone: str, now: datetime
) -> CohortReport:
    """Recompute the customers whose logs changed or whose checkpoint came due, then the
    rollup days they touch. One transaction; the watermark moves with it."""
    report = CohortReport()
    await take_turn()
    async with sessions() as session, session.begin():
        state = await session.get(MetricsState, SEEN_UNTIL)
        since = state.at - OVERLAP if state is not None and state.at is not None else None
        customers = await _changed_customers(session, since, now)
        placer = await Placer.load(session, None, timezone)
        days: set[date] = set()
        ordered = sorted(customers)
        for start in range(0, len(ordered), CHUNK):
            days |= await refresh_members(session, ordered[start : start + CHUNK], placer, now)
        await rebuild_periods(session, days)
        if state is None:
            session.add(MetricsState(name=SEEN_UNTIL, at=now, updated_at=now))
        else:
            state.at, state.updated_at = now, now
        report.customers, report.days = len(customers), len(days)
    if report.customers:
        log.info("cohorts: %d customer(s), %d day(s) recomputed", report.customers, report.days)
    return report


async def _changed_customers(
    session: AsyncSession, since: datetime | None, now: datetime
) -> set[str]:
    events = select(RelationEvent.external_userid).where(RelationEvent.kind != EventKind.EDITED)
    orders = select(Order.external_userid).where(Order.external_userid.is_not(None))
    if since is not None:
        events = events.where(RelationEvent.recorded_at >= since)
        orders = orders.where(Order.updated_at >= since)
    due = select(CohortMember.external_userid).where(CohortMember.next_due_at <= now)
    found: set[str] = set()
    for query in (events.distinct(), orders.distinct(), due):
        found.update(await session.scalars(query))
    return found


async def refresh_members(
    session: AsyncSession, customers: Sequence[str], placer: Placer, now: datetime
) -> set[date]:
    """Recompute these customers' member rows; the add days whose rollups must be rebuilt."""
    events: dict[str, list[Event]] = defaultdict(list)
    rows = await session.execute(
        select(
            RelationEvent.external_userid,
            RelationEvent.occurred_at,
            RelationEvent.kind,
            RelationEvent.guide_userid,
            RelationEvent.channel,
            RelationEvent.campaign,
        )
        .where(RelationEvent.external_userid.in_(customers), RelationEvent.kind != EventKind.EDITED)
        .order_by(RelationEvent.occurred_at, RelationEvent.id)
    )
    for ext, at, kind, guide, channel, campaign in rows:
        events[ext].append(Event(at, kind, guide, channel, campaign))
    orders: dict[str, list[tuple[datetime, int]]] = defaultdict(list)
    for ext, paid_at, amount in await session.execute(
        select(Order.external_userid, Order.paid_at, Order.amount_fen).where(
            Order.external_userid.in_(customers), Order.status == OrderStatus.PAID
        )
    ):
        orders[ext].append((paid_at, amount))
    playbooks = await _first_playbooks(session, customers)
    old_days = dict(
        (
            await session.execute(
                select(CohortMember.external_userid, CohortMember.add_day).where(
                    CohortMember.external_userid.in_(customers)
                )
            )
        ).all()
    )
    days = set(old_days.values())
    values = []
    for ext in customers:
        add = first_add(events.get(ext, ()))
        if add is None:
            continue
        try:  # a store whose time zone is no IANA name, an instant no zone can hold
            store, day = placer.place(add.guide, add.at)
            figures = member_figures(events[ext], orders.get(ext, ()), add.at, now)
        except (ValueError, OverflowError) as exc:  # the row's, not the run's: park it
            await park(
                session,
                job=JOB,
                table="cohort_members",
                key=ext,
                reason=describe_error(exc),
                now=now,
            )
            continue
        days.add(day)
        values.append(
            {
                "external_userid": ext,
                "added_at": add.at,
                "add_day": day,
                "store_id": store,
                "guide_userid": add.guide,
                "channel": add.channel or "",
                "campaign": add.campaign or "",
                "playbook": playbooks.get(ext, ""),
                **figures,
                "refreshed_at": now,
            }
        )
    if values:
        await _upsert_members(session, values)
    return days


async def _first_playbooks(session: AsyncSession, customers: Sequence[str]) -> dict[str, str]:
    """Each customer's first `customer.added` playbook (by enrollment time, then id)."""
    found: dict[str, str] = {}
    rows = await session.execute(
        select(SopEnrollment.external_userid, SopEnrollment.playbook_id)
        .where(
            SopEnrollment.external_userid.in_(customers),
            SopEnrollment.trigger == "customer.added",
        )
        .order_by(SopEnrollment.enrolled_at, SopEnrollment.id)
    )
    for ext, playbook in rows:
        found.setdefault(ext, playbook)
    return found


async def _upsert_members(session: AsyncSession, values: list[dict[str, Any]]) -> None:
    table = CohortMember.__table__
    statement = upsert_insert(session.bind.dialect.name)(table)
    columns = {c: statement.excluded[c] for c in values[0] if c != "external_userid"}
    await session.execute(
        statement.on_conflict_do_update(index_elements=["external_userid"], set_=columns),
        values,
    )


def _counted_columns() -> list[Any]:
    m = CohortMember
    columns: list[Any] = [func.count().label("members")]
    for n in RETENTION_DAYS:
        flag = getattr(m, f"d{n}")
        columns.append(func.count(flag).label(f"d{n}_due"))
        columns.append(func.sum(_one_if(flag)).label(f"d{n}_kept"))
    columns.append(func.count(m.first_order_at).label("buyers"))
    for w in REPURCHASE_DAYS:
        flag = getattr(m, f"r{w}")
        columns.append(func.count(flag).label(f"r{w}_due"))
        columns.append(func.sum(_one_if(flag)).label(f"r{w}_yes"))
    columns.append(func.sum(m.orders).label("orders"))
    columns.append(func.sum(m.gmv_fen).label("gmv_fen"))
    return columns


def _one_if(flag: Any) -> Any:
    return case((flag.is_(True), 1), else_=0)


def _dim_column(dim: str) -> Any:
    m = CohortMember
    return {
        "all": None,
        "store": m.store_id,
        "guide": m.guide_userid,
        "channel": m.channel,
        "campaign": m.campaign,
        "playbook": m.playbook,
    }[dim]


def period_start(day: date, period: str) -> date:
    """The first local day of the week (Monday) or month holding `day`."""
    return day - timedelta(days=day.weekday()) if period == "week" else day.replace(day=1)


def period_end(start: date, period: str) -> date:
    """The first day after the period beginning on `start`."""
    if period == "week":
        return start + timedelta(days=7)
    return (start.replace(day=28) + timedelta(days=4)).replace(day=1)


async def rebuild_periods(session: AsyncSession, days: Iterable[date]) -> None:
    """Replace the rollup rows of the weeks and months holding these add days with the sums
    of their members."""
    periods = sorted({(p, period_start(day, p)) for day in days for p in PERIODS})
    for period, start in periods:
        await session.execute(
            delete(CohortPeriod).where(CohortPeriod.period == period, CohortPeriod.start == start)
        )
        in_period = (
            CohortMember.add_day >= start,
            CohortMember.add_day < period_end(start, period),
        )
        rows: list[dict[str, Any]] = []
        for dim in DIMS:
            column = _dim_column(dim)
            keys = [column] if column is not None else []
            query = select(*keys, *_counted_columns()).where(*in_period).group_by(*keys)
            for row in (await session.execute(query)).mappings():
                if not row["members"]:
                    continue  # no member at all: an empty total
                key = "*" if column is None else str(row[column.key])
                counts = {c: int(row[c] or 0) for c in COHORT_COUNTERS}
                rows.append({"period": period, "dim": dim, "key": key, "start": start, **counts})
        if rows:
            await session.execute(CohortPeriod.__table__.insert(), rows)
