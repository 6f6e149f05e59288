"""One guide's daily rows: the counters per (store, local day) read from the source logs, and
their replacement in guide_daily.

`compute` reads one guide's source rows over a range of days and buckets them into (store, day)
counters, one reader per source (relation changes, SOP tasks, content, orders, WeCom's contact
statistics, customers joining and leaving the guide's groups); `write` deletes
the guide's rows in that range and inserts the new ones. Both run in the caller's transaction, so
recomputing a day gives the same numbers, never more.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta

from sqlalchemy import and_, delete, insert, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from guidebot.contacts.behavior import WECOM_ZONE
from guidebot.contacts.models import EventKind, GuideBehaviorDaily, RelationEvent
from guidebot.content.models import ContentForward, ContentOpen, ContentOpenVisitor
from guidebot.content.service import first_forward
from guidebot.groups.models import MemberEventKind
from guidebot.groups.queries import owner_member_facts
from guidebot.metrics import kpis
from guidebot.metrics.models import (
    COUNTERS,
    Attribution,
    GuideDaily,
    MetricsState,
    Order,
    OrderStatus,
)
from guidebot.metrics.placer import Placer, utc_midnight
from guidebot.sop.actions import STEP_ACTIONS, actions_where
from guidebot.sop.group_models import GroupSendStatus, SopGroupSend
from guidebot.sop.models import SopTask

# Days this close together are recomputed as one range.
MERGE_GAP = 2

FLOW_COLUMN = {
    EventKind.ADDED: "added",
    EventKind.REACTIVATED: "reactivated",
    EventKind.LOST: "lost",
    EventKind.REMOVED: "removed",
    EventKind.TRANSFERRED_IN: "transferred_in",
    EventKind.TRANSFERRED_OUT: "transferred_out",
}
NEW_KINDS = (EventKind.ADDED, EventKind.REACTIVATED)
END_KINDS = (EventKind.LOST, EventKind.REMOVED, EventKind.TRANSFERRED_OUT)
# The SOP actions whose task rows count in the guide's figures.
COUNTED_ACTIONS = actions_where(counted=True)
LONGEST_WINDOW = max(kpis.RETENTION_WINDOWS.values())
# Orders attributed to a group or a Moments post also count in these figures.
COMMUNITY_ORDERS = {Attribution.GROUP: "group_orders", Attribution.MOMENTS: "moment_orders"}


Buckets = dict[tuple[int, date], Counter]


@dataclass(slots=True)
class _Tally:
    """One guide's buckets for the days first..last, and the instants that may land in them."""

    placer: Placer
    guide: str
    first: date
    last: date
    buckets: Buckets = field(default_factory=lambda: defaultdict(Counter))

    @property
    def start(self) -> datetime:
        return utc_midnight(self.first) - timedelta(days=1)  # wide enough for UTC-12 .. UTC+14

    @property
    def end(self) -> datetime:
        return utc_midnight(self.last) + timedelta(days=2)

    def put(self, at: datetime, column: str, amount: int = 1) -> None:
        store, day = self.placer.place(self.guide, at)
        if self.first <= day <= self.last:
            self.buckets[(store, day)][column] += amount


async def compute(
    session: AsyncSession, placer: Placer, guide: str, first: date, last: date, now: datetime
) -> Buckets:
    """The guide's counters per (store, local day) for the days first..last, from the logs."""
    tally = _Tally(placer, guide, first, last)
    await _count_relations(session, tally, now)
    await _count_tasks(session, tally)
    await _count_content(session, tally)
    await _count_orders(session, tally)
    await _count_behavior(session, tally)
    await _count_groups(session, tally)
    await _count_group_steps(session, tally)
    return tally.buckets


async def _count_group_steps(session: AsyncSession, tally: _Tally) -> None:
    """The guide's group sends and Moments tasks on the day they were due (those that reached
    WeCom, and those WeCom says were sent or published), and the opens of their links."""
    for at, action, status in await session.execute(
        select(SopGroupSend.due_at, SopGroupSend.action, SopGroupSend.status).where(
            SopGroupSend.userid == tally.guide,
            SopGroupSend.status.in_(GroupSendStatus.REACHED),
            SopGroupSend.due_at >= tally.start,
            SopGroupSend.due_at < tally.end,
        )
    ):
        group = action == "group_message"
        tally.put(at, "group_sends" if group else "moments_assigned")
        if status == GroupSendStatus.DONE:
            tally.put(at, "group_sends_done" if group else "moments_published")
    for at, via in await session.execute(
        select(ContentOpen.opened_at, ContentOpen.via).where(
            ContentOpen.guide_userid == tally.guide,
            ContentOpen.via.is_not(None),
            ContentOpen.opened_at >= tally.start,
            ContentOpen.opened_at < tally.end,
        )
    ):
        tally.put(at, "group_link_opens" if via.startswith("group:") else "moment_link_opens")


async def _count_groups(session: AsyncSession, tally: _Tally) -> None:
    """Customers joining and leaving the groups the guide owned at the time."""
    for at, kind in await owner_member_facts(session, tally.guide, tally.start, tally.end):
        tally.put(at, "group_joined" if kind == MemberEventKind.JOINED else "group_left")


async def _count_relations(session: AsyncSession, tally: _Tally, now: datetime) -> None:
    """Relation changes, and how long each new customer stayed."""
    start, end, guide, put = tally.start, tally.end, tally.guide, tally.put
    adds: list[tuple[datetime, str]] = []
    for at, kind, customer in await session.execute(
        select(RelationEvent.occurred_at, RelationEvent.kind, RelationEvent.external_userid).where(
            RelationEvent.guide_userid == guide,
            RelationEvent.occurred_at >= start,
            RelationEvent.occurred_at < end,
            RelationEvent.kind.in_(tuple(FLOW_COLUMN)),
        )
    ):
        put(at, FLOW_COLUMN[kind])
        if kind in NEW_KINDS:
            adds.append((at, customer))
    if adds:
        ends: dict[str, list[datetime]] = defaultdict(list)
        for at, customer in await session.execute(
            select(RelationEvent.occurred_at, RelationEvent.external_userid).where(
                RelationEvent.guide_userid == guide,
                RelationEvent.kind.in_(END_KINDS),
                RelationEvent.occurred_at > min(a for a, _ in adds),
                RelationEvent.occurred_at <= max(a for a, _ in adds) + LONGEST_WINDOW,
            )
        ):
            ends[customer].append(at)
        for at, customer in adds:
            for key, window in kpis.RETENTION_WINDOWS.items():
                if at + window > now:
                    continue  # the window is still running: in neither part yet
                put(at, f"{key}_cohort")
                if not any(at < e <= at + window for e in ends.get(customer, ())):
                    put(at, f"{key}_kept")


async def _count_tasks(session: AsyncSession, tally: _Tally) -> None:
    """SOP tasks: each action says what its rows count in (guidebot.sop.actions)."""
    start, end, guide, put = tally.start, tally.end, tally.guide, tally.put
    for due, action, status, completed_at, completed_by, reason in await session.execute(
        select(
            SopTask.due_at,
            SopTask.action,
            SopTask.status,
            SopTask.completed_at,
            SopTask.completed_by,
            SopTask.reason,
        ).where(
            SopTask.guide_userid == guide,
            SopTask.due_at >= start,
            SopTask.due_at < end,
            SopTask.action.in_(COUNTED_ACTIONS),
        )
    ):
        for counter in STEP_ACTIONS[action].metric(status, reason, completed_by, due, completed_at):
            put(due, counter)


async def _count_content(session: AsyncSession, tally: _Tally) -> None:
    """A forward counts once per item and customer (the first), however often resent."""
    start, end, guide, put = tally.start, tally.end, tally.guide, tally.put
    for (at,) in await session.execute(
        select(ContentForward.sent_at).where(
            ContentForward.guide_userid == guide,
            ContentForward.sent_at >= start,
            ContentForward.sent_at < end,
            first_forward(),
        )
    ):
        put(at, "forwards")
    for at, chat_id in await session.execute(
        select(ContentOpenVisitor.first_opened_at, ContentOpenVisitor.chat_id).where(
            ContentOpenVisitor.guide_userid == guide,
            ContentOpenVisitor.first_opened_at >= start,
            ContentOpenVisitor.first_opened_at < end,
        )
    ):
        put(at, "unique_opens")
        if chat_id is not None:
            put(at, "group_opens")


async def _count_orders(session: AsyncSession, tally: _Tally) -> None:
    """Attributed orders: paid counts on its day, a refund takes it back on its own day."""
    start, end, guide, put = tally.start, tally.end, tally.guide, tally.put
    for paid_at, refunded_at, status, amount, rule in await session.execute(
        select(
            Order.paid_at, Order.refunded_at, Order.status, Order.amount_fen, Order.attribution
        ).where(
            Order.guide_userid == guide,
            or_(
                and_(Order.paid_at >= start, Order.paid_at < end),
                and_(Order.refunded_at >= start, Order.refunded_at < end),
            ),
        )
    ):
        if start <= paid_at < end:
            put(paid_at, "orders_paid")
            put(paid_at, "gmv_paid_fen", amount)
            if rule in COMMUNITY_ORDERS:
                put(paid_at, COMMUNITY_ORDERS[rule])
        if (
            status == OrderStatus.REFUNDED
            and refunded_at is not None
            and start <= refunded_at < end
        ):
            put(refunded_at, "orders_refunded")
            put(refunded_at, "gmv_refunded_fen", amount)
            if rule in COMMUNITY_ORDERS:
                put(refunded_at, COMMUNITY_ORDERS[rule], -1)


def china_noon(day: date) -> datetime:
    return datetime.combine(day, time(12), tzinfo=WECOM_ZONE)


async def _count_behavior(session: AsyncSession, tally: _Tally) -> None:
    """WeCom's contact statistics: a China day counts on the same date, for the store the
    guide belonged to at that day's noon (WeCom has no finer time to place it by)."""
    for row in await session.scalars(
        select(GuideBehaviorDaily).where(
            GuideBehaviorDaily.guide_userid == tally.guide,
            GuideBehaviorDaily.day >= tally.first,
            GuideBehaviorDaily.day <= tally.last,
        )
    ):
        bucket = tally.buckets[(tally.placer.store(tally.guide, china_noon(row.day)), row.day)]
        bucket["chats"] += row.chat_cnt
        bucket["messages"] += row.message_cnt
        bucket["negative_feedback"] += row.negative_feedback_cnt
        if row.reply_percentage is not None:
            bucket["reply_days"] += 1
            bucket["reply_pct_x100"] += round(row.reply_percentage * 100)
        if row.avg_reply_time is not None:
            bucket["reply_time_days"] += 1
            bucket["reply_minutes"] += row.avg_reply_time


async def write(
    session: AsyncSession,
    guide: str,
    first: date,
    last: date,
    buckets: Buckets,
    now: datetime,
) -> int:
    """Replace the guide's rows for first..last with these buckets. The rows written."""
    await session.execute(
        delete(GuideDaily).where(
            GuideDaily.guide_userid == guide, GuideDaily.day >= first, GuideDaily.day <= last
        )
    )
    rows = [
        {
            "guide_userid": guide,
            "store_id": store,
            "day": day,
            **{c: counts.get(c, 0) for c in COUNTERS},
            "computed_at": now,
        }
        for (store, day), counts in sorted(buckets.items())
        if any(counts.values())
    ]
    if rows:
        await session.execute(insert(GuideDaily), rows)
    return len(rows)


# metrics_state: days before this one are frozen. The retention job (guidebot.privacy) prunes
# source rows (settled SOP tasks) only of days it froze first, so their rollups, never
# recomputed again, keep the figures the pruned rows gave them.
FROZEN_BEFORE = "retention.frozen_before"


async def frozen_before(session: AsyncSession) -> date | None:
    """The first day whose rollups may still be recomputed (None: every day may)."""
    at = await session.scalar(select(MetricsState.at).where(MetricsState.name == FROZEN_BEFORE))
    return None if at is None else at.date()


async def drop_rows(session: AsyncSession, guide: str) -> None:
    """Delete the guide's rows of every day not frozen."""
    floor = await frozen_before(session)
    await session.execute(
        delete(GuideDaily).where(
            GuideDaily.guide_userid == guide, GuideDaily.day >= (floor or date.min)
        )
    )


async def recompute(
    session: AsyncSession,
    placer: Placer,
    guide: str,
    ranges: Sequence[tuple[date, date]],
    now: datetime,
) -> int:
    """Recompute the guide's days in `ranges`, past the frozen ones."""
    floor = await frozen_before(session)
    if floor is not None:
        ranges = [(max(first, floor), last) for first, last in ranges if last >= floor]
    written = 0
    for first, last in ranges:
        buckets = await compute(session, placer, guide, first, last, now)
        written += await write(session, guide, first, last, buckets, now)
    return written


def merge_days(days: Iterable[date], from_day: date | None, far: date) -> list[tuple[date, date]]:
    """Single days and an open "from this day on" as few ranges as possible."""
    ranges: list[tuple[date, date]] = []
    for day in sorted(d for d in set(days) if from_day is None or d < from_day):
        if ranges and (day - ranges[-1][1]).days <= MERGE_GAP:
            ranges[-1] = (ranges[-1][0], day)
        else:
            ranges.append((day, day))
    if from_day is not None:
        if ranges and (from_day - ranges[-1][1]).days <= MERGE_GAP:
            ranges[-1] = (ranges[-1][0], far)
        else:
            ranges.append((from_day, far))
    return ranges
