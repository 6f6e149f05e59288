"""Lifecycle stages: where each customer is, computed from the domains' facts and logged.

A customer's stage (customer_stages), decided by the facts the domains announce
(guidebot.events), each change logged (customer_stage_log) and announced (StageChanged):

* 新客 new — added, no open, reply or order yet;
* 互动中 engaged — opened a guide's tracked link (ContentOpened) or replied (CustomerReplied),
  no order yet;
* 首购 first_purchase — one counted order; 复购 repeat_buyer — two or more. A counted order is
  one guidebot was told of (OrderPaid), whenever paid, and not refunded (OrderRefunded takes
  it back: a refund of the only order returns the customer to engaged or new);
* 沉睡 dormant — no open, reply or order (nor add) for GUIDEBOT_DORMANT_DAYS days (the hourly
  `lifecycle-stages` job); the next open, reply or order wakes them to the stage above;
* 流失 lost — no relation left with any guide: the last one ended lost or removed
  (RelationEnded). A transfer is no loss: the customer follows the takeover guide. A new add
  brings a lost customer back to the stage their orders and engagement say.

`guide_userid` / `store_id` are the customer's latest guide (the last add or transfer) and
that relation's store, for the counts per guide and store. Only customers who added a guide
have a stage; orders of others are kept until they do.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import (
    Integer,
    String,
    bindparam,
    case,
    delete,
    false,
    func,
    select,
    true,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm.util import identity_key

from guidebot import i18n
from guidebot.contacts.models import (
    CustomerStage,
    CustomerStageChange,
    CustomerStageDaily,
    CustomerStageOrder,
    Relation,
    RelationStatus,
    Stage,
)
from guidebot.db.base import UTCDateTime, constant, only_filters
from guidebot.db.direct import Direct
from guidebot.db.engine import upsert_insert
from guidebot.events import (
    ContentOpened,
    CustomerReplied,
    OrderPaid,
    OrderRefunded,
    RelationAdded,
    RelationEnded,
    RelationTransferred,
    StageChanged,
    Subscribers,
    publish,
)

log = logging.getLogger(__name__)

BUYER = (Stage.FIRST_PURCHASE, Stage.REPEAT_BUYER)
DORMANCY_BATCH = 1000


def stage_name(stage: str | None) -> str:
    """What people read: Chinese first, then English (新客 / new)."""
    if stage is None:
        return i18n.both("Unknown", " / ")
    return f"{i18n.label('stage', stage, i18n.ZH)} / {i18n.label('stage', stage, i18n.EN)}"


def earned_stage(orders: int, engaged: bool) -> str:
    """The stage a customer's orders and engagement give them (when not dormant or lost).
    A first add's row says the same in SQL (_first_stage_insert)."""
    if orders >= 2:
        return Stage.REPEAT_BUYER
    if orders == 1:
        return Stage.FIRST_PURCHASE
    return Stage.ENGAGED if engaged else Stage.NEW


async def move(
    session: AsyncSession, row: CustomerStage, stage: str, at: datetime, reason: str, now: datetime
) -> None:
    """Put the customer in `stage` (logged and announced when it changes)."""
    row.updated_at = now
    if row.stage == stage:
        return
    before = row.stage or None  # "": the customer's first stage
    row.stage, row.since = stage, at
    await _log_change(
        session, row.external_userid, row.guide_userid, row.store_id, before, stage, at, reason, now
    )


_STAGES = CustomerStage.__table__
_STAGE_LOG = CustomerStageChange.__table__
_TOLD = CustomerStageOrder.__table__
# Built once: every first add logs its customer's stage (on the driver: db.direct).
_LOG_CHANGE = Direct(_STAGE_LOG.insert())


async def _log_change(
    session: AsyncSession,
    ext: str,
    guide: str | None,
    store: int | None,
    before: str | None,
    stage: str,
    at: datetime,
    reason: str,
    now: datetime,
) -> None:
    await _LOG_CHANGE.execute(
        session,
        {
            "external_userid": ext,
            "guide_userid": guide,
            "store_id": store,
            "from_stage": before,
            "to_stage": stage,
            "at": at,
            "reason": reason,
        },
    )
    await publish(
        session,
        StageChanged(
            external_userid=ext,
            guide_userid=guide,
            from_stage=before,
            to_stage=stage,
            at=at,
            reason=reason,
            now=now,
        ),
    )


def _first_stage_insert(dialect: str):
    """A first add's stage row, with the orders told of before it counted in (earned_stage's
    rule for a customer not yet engaged, in SQL): one statement, returning the stage, or
    nothing when the customer has a row already."""
    told = (
        select(func.count().label("n"))
        .where(_TOLD.c.external_userid == bindparam("ext"))
        .subquery("told")
    )
    stage = case(
        (told.c.n >= 2, Stage.REPEAT_BUYER),
        (told.c.n == 1, Stage.FIRST_PURCHASE),
        else_=Stage.NEW,
    )
    at = bindparam("at", type_=UTCDateTime)
    row = select(
        bindparam("ext", type_=String),
        stage,
        at,
        bindparam("guide", type_=String),
        bindparam("store", type_=Integer),
        false(),
        told.c.n,
        at,
        bindparam("now", type_=UTCDateTime),
    ).where(true())  # SQLite: an upsert's SELECT needs a WHERE (its parsing ambiguity)
    columns = (
        "external_userid",
        "stage",
        "since",
        "guide_userid",
        "store_id",
        "engaged",
        "orders",
        "last_active_at",
        "updated_at",
    )
    return (
        upsert_insert(dialect)(_STAGES)
        .from_select(columns, row)
        .on_conflict_do_nothing()
        .returning(_STAGES.c.stage)
    )


_FIRST_STAGE = {name: Direct(_first_stage_insert(name)) for name in ("sqlite", "postgresql")}


async def _row(session: AsyncSession, ext: str) -> CustomerStage | None:
    return await session.get(CustomerStage, ext, populate_existing=True, with_for_update=True)


async def _store_of(session: AsyncSession, guide: str, ext: str) -> int | None:
    return await session.scalar(
        select(Relation.store_id).where(
            Relation.guide_userid == guide, Relation.external_userid == ext
        )
    )


async def _orders(session: AsyncSession, ext: str) -> int:
    return await session.scalar(
        select(func.count())
        .select_from(CustomerStageOrder)
        .where(CustomerStageOrder.external_userid == ext)
    )


# ---- what moves a stage ----------------------------------------------------------------------


async def on_relation_added(session: AsyncSession, event: RelationAdded) -> None:
    ext, guide = event.external_userid, event.guide_userid
    if event.store is not None:  # read with the add: no read here
        store = event.store.id
    elif event.relation is not None:  # as the emitter wrote it: likewise
        store = event.relation.store_id
    else:
        store = await _store_of(session, guide, ext)
    # Most adds are a customer's first: their row goes in with its stage in one statement
    # (orders told of before the add count), logged and announced like any later change.
    first = _FIRST_STAGE[session.bind.dialect.name]
    stage = (
        await first.execute(
            session, {"ext": ext, "at": event.at, "guide": guide, "store": store, "now": event.now}
        )
    ).scalar()
    if stage is not None:
        await _log_change(
            session, ext, guide, store, None, stage, event.at, "relation.added", event.now
        )
        return
    orders = await _orders(session, ext)
    row = await _row(session, ext)
    assert row is not None
    row.guide_userid, row.store_id = guide, store
    row.last_active_at = max(row.last_active_at, event.at)
    row.orders = orders
    if row.stage in (Stage.LOST, Stage.DORMANT):
        await move(
            session,
            row,
            earned_stage(row.orders, row.engaged),
            event.at,
            "relation.added",
            event.now,
        )
    else:
        row.updated_at = event.now


def _ended_look() -> Direct:
    """The customer's stage row (locked on PostgreSQL) with their relations still active."""
    relations = Relation.__table__
    live = (
        select(func.count())
        .where(
            relations.c.external_userid == bindparam("ext"),
            # The customer's relations: the status only filters (PostgreSQL without
            # statistics read every active relation through the stores' index).
            only_filters(relations.c.status, constant(RelationStatus.ACTIVE)),
        )
        .scalar_subquery()
    )
    return Direct(
        select(_STAGES.c.stage, _STAGES.c.store_id, live.label("live"))
        .where(_STAGES.c.external_userid == bindparam("ext"))
        .with_for_update(of=_STAGES)
    )


# Built once: every lost or removed customer asks, then writes (on the driver: db.direct)
# the guide they left last and, unless lost already, the stage and since when.
_ENDED_LOOK = _ended_look()
_LEFT = Direct(
    update(_STAGES)
    .where(_STAGES.c.external_userid == bindparam("ext"))
    .values(guide_userid=bindparam("guide"), updated_at=bindparam("now"))
)
_LOST = Direct(
    update(_STAGES)
    .where(_STAGES.c.external_userid == bindparam("ext"))
    .values(
        guide_userid=bindparam("guide"),
        stage=Stage.LOST,
        since=bindparam("at"),
        updated_at=bindparam("now"),
    )
)


async def on_relation_ended(session: AsyncSession, event: RelationEnded) -> None:
    """No relation left with any guide: lost (what move() does, in Core statements)."""
    if event.status not in (RelationStatus.LOST, RelationStatus.REMOVED):
        return  # a transfer's handover side: the customer stays, with the takeover guide
    ext, guide = event.external_userid, event.guide_userid
    row = (await _ENDED_LOOK.execute(session, {"ext": ext})).first()
    if row is None or row.live:
        return
    asked = {"ext": ext, "guide": guide, "at": event.at, "now": event.now}
    await (_LEFT if row.stage == Stage.LOST else _LOST).execute(session, asked)
    # A stage object the session holds (an earlier event of the batch read it) reads anew.
    held = session.sync_session.identity_map.get(identity_key(CustomerStage, ext))
    if held is not None:
        session.expire(held)
    if row.stage != Stage.LOST:
        before = row.stage or None  # "": the customer's first stage
        await _log_change(
            session,
            ext,
            guide,
            row.store_id,
            before,
            Stage.LOST,
            event.at,
            "relation.ended",
            event.now,
        )


async def on_transferred(session: AsyncSession, event: RelationTransferred) -> None:
    row = await _row(session, event.external_userid)
    if row is not None:
        row.guide_userid = event.to_guide
        row.store_id = await _store_of(session, event.to_guide, event.external_userid)
        row.updated_at = event.now


async def _engaged(session: AsyncSession, ext: str, at: datetime, reason: str, now: datetime):
    row = await _row(session, ext)
    if row is None:
        return
    row.engaged = True
    row.last_active_at = max(row.last_active_at, at)
    if row.stage in (Stage.NEW, Stage.ENGAGED, Stage.DORMANT):
        await move(session, row, earned_stage(row.orders, True), at, reason, now)
    else:
        row.updated_at = now


async def on_opened(session: AsyncSession, event: ContentOpened) -> None:
    await _engaged(session, event.external_userid, event.at, "content.opened", event.now)


async def on_replied(session: AsyncSession, event: CustomerReplied) -> None:
    await _engaged(session, event.external_userid, event.at, "customer.replied", event.now)


async def on_order_paid(session: AsyncSession, event: OrderPaid) -> None:
    if event.external_userid is None:
        return
    insert = upsert_insert(session.bind.dialect.name)(CustomerStageOrder)
    await session.execute(
        insert.values(
            order_id=event.order_id, external_userid=event.external_userid, paid_at=event.paid_at
        ).on_conflict_do_nothing()
    )
    await _orders_changed(session, event.external_userid, event.paid_at, "order.paid", event.now)


async def on_order_refunded(session: AsyncSession, event: OrderRefunded) -> None:
    if event.external_userid is None:
        return
    await session.execute(
        delete(CustomerStageOrder).where(CustomerStageOrder.order_id == event.order_id)
    )
    await _orders_changed(
        session, event.external_userid, event.refunded_at, "order.refunded", event.now
    )


async def _orders_changed(
    session: AsyncSession, ext: str, at: datetime, reason: str, now: datetime
) -> None:
    row = await _row(session, ext)
    if row is None:
        return
    row.orders = await _orders(session, ext)
    if reason == "order.paid":
        row.last_active_at = max(row.last_active_at, at)
    if row.stage == Stage.LOST or (row.stage == Stage.DORMANT and reason != "order.paid"):
        row.updated_at = now
        return
    await move(session, row, earned_stage(row.orders, row.engaged), at, reason, now)


def subscribe(subscribers: Subscribers) -> None:
    subscribers.subscribe(RelationAdded, on_relation_added)
    subscribers.subscribe(RelationEnded, on_relation_ended)
    subscribers.subscribe(RelationTransferred, on_transferred)
    subscribers.subscribe(ContentOpened, on_opened)
    subscribers.subscribe(CustomerReplied, on_replied)
    subscribers.subscribe(OrderPaid, on_order_paid)
    subscribers.subscribe(OrderRefunded, on_order_refunded)


# ---- dormancy, and what the faces read ---------------------------------------------------------


async def mark_dormant(sessions: async_sessionmaker[AsyncSession], now: datetime, days: int) -> int:
    """Customers with no open, reply, order or add for `days` days become dormant. The number
    moved; a batch per transaction."""
    cutoff = now - timedelta(days=days)
    moved = 0
    while True:
        async with sessions() as session, session.begin():
            rows = list(
                await session.scalars(
                    select(CustomerStage)
                    .where(
                        CustomerStage.stage.not_in((Stage.LOST, Stage.DORMANT)),
                        CustomerStage.last_active_at < cutoff,
                    )
                    .limit(DORMANCY_BATCH)
                )
            )
            for row in rows:
                quiet_since = row.last_active_at + timedelta(days=days)
                await move(session, row, Stage.DORMANT, quiet_since, "dormancy", now)
        moved += len(rows)
        if len(rows) < DORMANCY_BATCH:
            return moved


async def snapshot_stages(session: AsyncSession, day: date) -> int:
    """Rewrite the day's counts per stage per store and per guide (customer_stage_daily)."""
    await session.execute(delete(CustomerStageDaily).where(CustomerStageDaily.day == day))
    rows = []
    for dim in ("store", "guide"):
        for key, stage, n in await stage_counts(session, dim):
            key = "" if key is None else str(key)
            rows.append({"day": day, "dim": dim, "key": key, "stage": stage, "customers": n})
    if rows:
        await session.execute(CustomerStageDaily.__table__.insert(), rows)
    return len(rows)


async def stage_history(
    session: AsyncSession, by: str, first: date, last: date
) -> list[tuple[date, str, str, int]]:
    """(day, store id or guide userid ("" none), stage, customers) from the daily snapshots."""
    c = CustomerStageDaily
    rows = await session.execute(
        select(c.day, c.key, c.stage, c.customers)
        .where(c.dim == by, c.day >= first, c.day <= last)
        .order_by(c.day, c.key)
    )
    return [tuple(r) for r in rows.all()]


async def stage_word(session: AsyncSession, ext: str, english: bool = False) -> str:
    """The customer's stage as a guide reads it (首购, or "first purchase"); 无 / none."""
    lang = i18n.EN if english else i18n.ZH
    row = await session.get(CustomerStage, ext)
    if row is None:
        return i18n.pgettext("bot", "none", lang)
    return i18n.label("stage", row.stage, lang)


async def stage_of(session: AsyncSession, ext: str) -> dict[str, Any] | None:
    row = await session.get(CustomerStage, ext)
    if row is None:
        return None
    return {
        "stage": row.stage,
        "name": i18n.label("stage", row.stage, i18n.ZH),
        "label": stage_name(row.stage),
        "since": row.since,
    }


async def stage_counts(
    session: AsyncSession, by: str, stores: Sequence[int] | None = None
) -> list[tuple[Any, str, int]]:
    """(store id or guide userid, stage, customers) now; `stores` narrows to those stores."""
    column = CustomerStage.store_id if by == "store" else CustomerStage.guide_userid
    query = select(column, CustomerStage.stage, func.count()).group_by(column, CustomerStage.stage)
    if stores is not None:
        query = query.where(CustomerStage.store_id.in_(list(stores)))
    return [tuple(r) for r in (await session.execute(query)).all()]
