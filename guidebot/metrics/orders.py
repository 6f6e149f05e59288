"""The order webhook: idempotent orders, refunds, and the guide each order is attributed to.

Attribution, decided once when the order first arrives and stored with it:

1. the guide whose content reached this customer LAST within the attribution window before the
   order was paid (GUIDEBOT_ATTRIBUTION_DAYS days, default 7), among four kinds of touch:
   - `open`: the customer opened a tracked link naming them (content_opens.opened_at). Only
     opens of links that were forwarded count (sop.queries.link_reached_customer): a link a
     guide prepared and opened but never sent is no touch;
   - `forward`: a guide forwarded content to the customer (content_forwards.sent_at);
   - `group` / `moments`: a group mass send's or a Moments post's link, which names nobody,
     opened in a browser tied to this customer alone (guidebot.metrics.community), for the
     groups' owner or the guide who posted;
   - `group`: a forward into a customer group the customer was in when it was sent.
   The latest wins; at the same instant the customer's own touch of a link naming them comes
   first, then a forward to them, then a community link opened in their browser, then a
   forward into a group (what names the customer outranks what is inferred);
2. else the customer's active guide at the order's store (the guide's store at paid_at), the
   most recently added if several;
3. else the customer's most recently added active guide;
4. else nobody: the order is kept, and counts for no guide.

An order is identified by its order_id: the same content posted again answers the stored order;
different content under the same id is a conflict. A refund (status "refunded", or the refund
call) takes the order back on the day of the refund. A new paid order is announced (OrderPaid):
the SOP engine stops the customer's enrollments with the attributed guide whose playbooks stop
on order.paid, and credits their order.paid goals. A refund is announced too (OrderRefunded),
once per order, for whoever hears it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

from sqlalchemy import String, cast, desc, insert, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from guidebot import clock
from guidebot.config import DEFAULT_ATTRIBUTION_DAYS
from guidebot.contacts.directory import find_store, store_at
from guidebot.contacts.models import Department, Relation, RelationStatus
from guidebot.content.models import ContentForward, ContentOpen
from guidebot.db.engine import upsert_insert
from guidebot.events import OrderPaid, OrderRefunded, publish
from guidebot.groups.models import GroupMember
from guidebot.metrics.community import community_open, rule_of
from guidebot.metrics.kpi_model import yuan
from guidebot.metrics.models import Attribution, DirtySource, MetricsDirty, Order, OrderStatus
from guidebot.sop.queries import link_reached_customer

MAX_AMOUNT_FEN = 10**13  # 100 billion yuan: anything above is a typo
_ORDER_ID = re.compile(r"[\x21-\x7e]{1,128}")


def attribution_window(days: int = DEFAULT_ATTRIBUTION_DAYS) -> timedelta:
    return timedelta(days=days)


class OrderError(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class OrderInvalid(OrderError):
    pass


class OrderConflict(OrderError):
    pass


class OrderNotFound(OrderError):
    pass


@dataclass(frozen=True, slots=True)
class OrderInput:
    order_id: str
    external_userid: str | None
    mobile: str | None
    amount_fen: int
    paid_at: datetime
    store: str | None
    status: str
    refunded_at: datetime | None


# ---- parsing ----------------------------------------------------------------------------------


def parse_amount(value: Any) -> int:
    """Yuan, as a decimal string or a JSON number, to integer fen; at most 2 decimal places."""
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise OrderInvalid("'amount' must be a yuan amount, as a decimal string or a number")
    try:
        amount = Decimal(str(value).strip())
    except InvalidOperation:
        raise OrderInvalid(f"'amount' {value!r} is not a decimal number") from None
    if not amount.is_finite() or amount < 0:
        raise OrderInvalid(f"'amount' {value!r} must be a non-negative number of yuan")
    fen = amount * 100
    if fen != fen.to_integral_value():
        raise OrderInvalid(f"'amount' {value!r} has more than 2 decimal places")
    if fen > MAX_AMOUNT_FEN:
        raise OrderInvalid(f"'amount' {value!r} is too large")
    return int(fen)


def parse_instant(value: Any, name: str) -> datetime:
    """An ISO 8601 instant with a UTC offset ("Z" or "+08:00"); a naive time is ambiguous."""
    try:
        return clock.parse_instant(value, name)
    except ValueError as exc:
        raise OrderInvalid(str(exc)) from None


def normalize_mobile(value: str) -> str:
    """A Chinese mobile as 11 digits: spaces, dashes and a +86 / 86 prefix are dropped."""
    digits = re.sub(r"\D", "", value)
    if len(digits) == 13 and digits.startswith("86"):
        digits = digits[2:]
    return digits


def _text(body: Mapping[str, Any], name: str) -> str | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool) and name == "store":
        return str(value)
    if not isinstance(value, str) or not value.strip():
        raise OrderInvalid(f"{name!r} must be a non-empty string")
    return value.strip()


def parse_order(body: Mapping[str, Any]) -> OrderInput:
    order_id = body.get("order_id")
    if not isinstance(order_id, str) or not _ORDER_ID.fullmatch(order_id):
        raise OrderInvalid("'order_id' must be 1-128 printable ASCII characters without spaces")
    external_userid = _text(body, "external_userid")
    mobile = _text(body, "mobile")
    if mobile is not None:
        mobile = normalize_mobile(mobile)
        if not 5 <= len(mobile) <= 20:
            raise OrderInvalid(f"'mobile' {body.get('mobile')!r} is not a phone number")
    if external_userid is None and mobile is None:
        raise OrderInvalid("give the customer's 'external_userid' or 'mobile'")
    if "amount" not in body:
        raise OrderInvalid("'amount' is required (yuan)")
    status = body.get("status", OrderStatus.PAID)
    if status not in OrderStatus.ALL:
        raise OrderInvalid(f"'status' must be one of {', '.join(OrderStatus.ALL)}")
    refunded_at = body.get("refunded_at")
    return OrderInput(
        order_id=order_id,
        external_userid=external_userid,
        mobile=mobile,
        amount_fen=parse_amount(body["amount"]),
        paid_at=parse_instant(body.get("paid_at"), "paid_at"),
        store=_text(body, "store"),
        status=status,
        refunded_at=parse_instant(refunded_at, "refunded_at") if refunded_at is not None else None,
    )


# ---- the customer and the guide ----------------------------------------------------------------


async def customer_by_mobile(session: AsyncSession, mobile: str) -> str | None:
    """The customer whose relation lists this mobile (active relations first, newest first)."""
    # Guides type mobiles as they like ("138 0000 0006"): the LIKE finds candidates whatever
    # the separators, and each candidate's mobiles are compared as digits.
    pattern = "%" + "%".join(mobile) + "%"
    rows = [
        row
        for row in (
            await session.execute(
                select(
                    Relation.external_userid,
                    Relation.status,
                    Relation.created_at,
                    Relation.id,
                    Relation.remark_mobiles,
                )
                .where(cast(Relation.remark_mobiles, String).like(pattern))
                .limit(1000)
            )
        ).all()
        if any(normalize_mobile(str(m)) == mobile for m in row.remark_mobiles or ())
    ]
    if not rows:
        return None
    epoch = datetime.min.replace(tzinfo=UTC)
    rows.sort(
        key=lambda r: (r.status == RelationStatus.ACTIVE, r.created_at or epoch, r.id), reverse=True
    )
    return rows[0].external_userid


@dataclass(frozen=True, slots=True)
class Touch:
    rule: str
    guide: str | None = None
    ref: str | None = None
    at: datetime | None = None


async def attribute_order(
    session: AsyncSession,
    *,
    external_userid: str | None,
    store_id: int | None,
    paid_at: datetime,
    window: timedelta,
) -> Touch:
    """The guide an order counts for, by the rule in the module docstring."""
    if external_userid is None:
        return Touch(Attribution.NONE)
    touches = await _touches(session, external_userid, paid_at - window, paid_at)
    if touches:
        # The latest; at one instant, the first listed (max keeps the first of equals).
        return max(touches, key=lambda t: t.at or paid_at)

    epoch = datetime.min.replace(tzinfo=UTC)
    active = sorted(
        await session.scalars(
            select(Relation).where(
                Relation.external_userid == external_userid,
                Relation.status == RelationStatus.ACTIVE,
            )
        ),
        key=lambda r: (r.created_at or epoch, r.id),
        reverse=True,
    )
    if store_id is not None:
        for relation in active:
            if await store_at(session, relation.guide_userid, paid_at) == store_id:
                return Touch(
                    Attribution.STORE_GUIDE, relation.guide_userid, f"relation:{relation.id}"
                )
    if active:
        return Touch(Attribution.RECENT_GUIDE, active[0].guide_userid, f"relation:{active[0].id}")
    return Touch(Attribution.NONE)


async def _touches(
    session: AsyncSession, customer: str, since: datetime, paid_at: datetime
) -> list[Touch]:
    """The last touch of each kind in [since, paid_at], in the order that breaks a tie."""
    touches = []
    opened = (
        await session.execute(
            select(ContentOpen.id, ContentOpen.guide_userid, ContentOpen.opened_at)
            .where(
                ContentOpen.external_userid == customer,
                ContentOpen.opened_at >= since,
                ContentOpen.opened_at <= paid_at,
                link_reached_customer(ContentOpen.link_nonce, ContentOpen.task_id),
            )
            .order_by(desc(ContentOpen.opened_at), desc(ContentOpen.id))
            .limit(1)
        )
    ).first()
    if opened is not None:
        touches.append(
            Touch(Attribution.OPEN, opened.guide_userid, f"open:{opened.id}", opened.opened_at)
        )
    forward = (
        await session.execute(
            select(ContentForward.id, ContentForward.guide_userid, ContentForward.sent_at)
            .where(
                ContentForward.external_userid == customer,
                ContentForward.sent_at >= since,
                ContentForward.sent_at <= paid_at,
            )
            .order_by(desc(ContentForward.sent_at), desc(ContentForward.id))
            .limit(1)
        )
    ).first()
    if forward is not None:
        touches.append(
            Touch(
                Attribution.FORWARD, forward.guide_userid, f"forward:{forward.id}", forward.sent_at
            )
        )
    community = await community_open(session, customer, since, paid_at)
    if community is not None:
        touches.append(
            Touch(
                rule_of(community.via),
                community.guide_userid,
                f"open:{community.id}",
                community.opened_at,
            )
        )
    grouped = await _group_forward(session, customer, since, paid_at)
    if grouped is not None:
        touches.append(
            Touch(Attribution.GROUP, grouped.guide_userid, f"forward:{grouped.id}", grouped.sent_at)
        )
    return touches


async def _group_forward(
    session: AsyncSession, customer: str, since: datetime, paid_at: datetime
) -> Any:
    """The last forward into a group the customer was in when it was sent, within the window."""
    return (
        await session.execute(
            select(ContentForward.id, ContentForward.guide_userid, ContentForward.sent_at)
            .join(GroupMember, GroupMember.chat_id == ContentForward.chat_id)
            .where(
                GroupMember.member_id == customer,
                GroupMember.joined_at <= ContentForward.sent_at,
                or_(GroupMember.left_at.is_(None), GroupMember.left_at > ContentForward.sent_at),
                ContentForward.sent_at >= since,
                ContentForward.sent_at <= paid_at,
            )
            .order_by(desc(ContentForward.sent_at), desc(ContentForward.id))
            .limit(1)
        )
    ).first()


# ---- posting ----------------------------------------------------------------------------------


async def _dirty(session: AsyncSession, guide: str | None, at: datetime | None) -> None:
    if guide is not None and at is not None:
        await session.execute(
            insert(MetricsDirty).values(source=DirtySource.ORDER, guide_userid=guide, at=at)
        )


def _differences(order: Order, data: OrderInput) -> list[str]:
    found = []
    pairs = (
        ("external_userid", order.posted_external_userid, data.external_userid),
        ("mobile", order.posted_mobile, data.mobile),
        ("store", order.posted_store, data.store),
    )
    for name, stored, posted in pairs:
        if stored != posted:
            found.append(f"{name} {stored!r}, not {posted!r}")
    if order.amount_fen != data.amount_fen:
        found.append(f"amount {yuan(order.amount_fen)}, not {yuan(data.amount_fen)}")
    if order.paid_at != data.paid_at:
        found.append(f"paid_at {order.paid_at.isoformat()}, not {data.paid_at.isoformat()}")
    return found


async def _refund(session: AsyncSession, order: Order, at: datetime, now: datetime) -> None:
    if at < order.paid_at:
        raise OrderInvalid(
            f"refunded_at {at.isoformat()} is before paid_at {order.paid_at.isoformat()}"
        )
    order.status = OrderStatus.REFUNDED
    order.refunded_at = at
    order.updated_at = now
    await _dirty(session, order.guide_userid, at)
    await session.flush()
    await _announce_refund(
        session, order.order_id, order.external_userid, order.guide_userid, order.paid_at, at, now
    )


async def _announce_refund(
    session: AsyncSession,
    order_id: str,
    customer: str | None,
    guide: str | None,
    paid_at: datetime,
    refunded_at: datetime,
    now: datetime,
) -> None:
    refunded = OrderRefunded(
        order_id=order_id,
        external_userid=customer,
        guide_userid=guide,
        paid_at=paid_at,
        refunded_at=refunded_at,
        now=now,
    )
    await publish(session, refunded)


async def post_order(
    session: AsyncSession, data: OrderInput, *, now: datetime, window: timedelta
) -> tuple[Order, bool]:
    """Record the order (or recognise it); (order, created). Does not commit."""
    existing = await _find(session, data.order_id)
    if existing is not None:
        return await _repeat(session, existing, data, now), False

    store_id = None
    if data.store is not None:
        store = await find_store(session, data.store)
        if store is None or not store.is_store:
            raise OrderInvalid(f"no store {data.store!r}")
        store_id = store.id
    customer = data.external_userid
    if customer is None and data.mobile is not None:
        customer = await customer_by_mobile(session, data.mobile)
    touch = await attribute_order(
        session, external_userid=customer, store_id=store_id, paid_at=data.paid_at, window=window
    )
    refunded_at = None
    if data.status == OrderStatus.REFUNDED:
        refunded_at = data.refunded_at or now
        if refunded_at < data.paid_at:
            raise OrderInvalid("refunded_at is before paid_at")
    values = {
        "order_id": data.order_id,
        "posted_external_userid": data.external_userid,
        "posted_mobile": data.mobile,
        "posted_store": data.store,
        "external_userid": customer,
        "store_id": store_id,
        "amount_fen": data.amount_fen,
        "paid_at": data.paid_at,
        "status": data.status,
        "refunded_at": refunded_at,
        "guide_userid": touch.guide,
        "attribution": touch.rule,
        "attribution_ref": touch.ref,
        "attribution_at": touch.at,
        "created_at": now,
        "updated_at": now,
    }
    insert_order = upsert_insert(session.bind.dialect.name)
    inserted = (
        await session.execute(
            insert_order(Order)
            .values(**values)
            .on_conflict_do_nothing(index_elements=[Order.order_id])
            .returning(Order.id)
        )
    ).scalar()
    if inserted is None:
        # A concurrent post of the same order_id won the insert: this one is a repeat.
        existing = await _find(session, data.order_id)
        assert existing is not None
        return await _repeat(session, existing, data, now), False
    await _dirty(session, touch.guide, data.paid_at)
    await _dirty(session, touch.guide, refunded_at)
    if data.status == OrderStatus.PAID:
        paid = OrderPaid(
            order_id=data.order_id,
            external_userid=customer,
            guide_userid=touch.guide,
            paid_at=data.paid_at,
            now=now,
        )
        await publish(session, paid)
    elif refunded_at is not None:
        await _announce_refund(
            session, data.order_id, customer, touch.guide, data.paid_at, refunded_at, now
        )
    order = await _find(session, data.order_id)
    assert order is not None
    return order, True


async def _find(session: AsyncSession, order_id: str) -> Order | None:
    return await session.scalar(
        select(Order)
        .where(Order.order_id == order_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )


async def _repeat(session: AsyncSession, order: Order, data: OrderInput, now: datetime) -> Order:
    differences = _differences(order, data)
    if differences:
        raise OrderConflict(
            f"order {data.order_id!r} was already posted with " + "; ".join(differences)
        )
    if data.status == OrderStatus.REFUNDED and order.status == OrderStatus.PAID:
        await _refund(session, order, data.refunded_at or now, now)
    # A paid repeat of a refunded order is the original post arriving again: nothing changes.
    return order


async def refund_order(
    session: AsyncSession, order_id: str, *, at: datetime | None, now: datetime
) -> Order:
    order = await _find(session, order_id)
    if order is None:
        raise OrderNotFound(f"no order {order_id!r}")
    if order.status != OrderStatus.REFUNDED:
        await _refund(session, order, at or now, now)
    return order


async def get_order(session: AsyncSession, order_id: str) -> Order:
    order = await session.scalar(select(Order).where(Order.order_id == order_id))
    if order is None:
        raise OrderNotFound(f"no order {order_id!r}")
    return order


async def customer_orders(session: AsyncSession, customer: str, *, limit: int = 100) -> list[Order]:
    """A customer's orders, latest paid first (refunded ones too, marked by their status)."""
    return list(
        await session.scalars(
            select(Order)
            .where(Order.external_userid == customer)
            .order_by(Order.paid_at.desc(), Order.id.desc())
            .limit(limit)
        )
    )


async def render_order(session: AsyncSession, order: Order) -> dict[str, Any]:
    store = await session.get(Department, order.store_id) if order.store_id is not None else None
    return {
        "order_id": order.order_id,
        "external_userid": order.external_userid,
        "mobile": order.posted_mobile,
        "amount": yuan(order.amount_fen),
        "amount_fen": order.amount_fen,
        "paid_at": order.paid_at.isoformat(),
        "store": store.code if store is not None else order.posted_store,
        "status": order.status,
        "refunded_at": order.refunded_at.isoformat() if order.refunded_at else None,
        "guide_userid": order.guide_userid,
        "attribution": {
            "rule": order.attribution,
            "ref": order.attribution_ref,
            "at": order.attribution_at.isoformat() if order.attribution_at else None,
        },
    }
