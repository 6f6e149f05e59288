"""Lost customers: an alert to the guide, batched per hour, and the store manager's daily list.

When a customer deletes a guide (del_follow_user: contacts ends the relation as lost and
announces RelationEnded), `on_relation_ended` records a `lost_alerts` row in the same
transaction: the customer's name as the guide knows them (their remark, else their WeCom name,
never an id), how long they were together, and what the guide sent them last (content they
forwarded, or a message a playbook sent). A replayed deletion adds nothing (one row per pair
and end).

The hourly `lost-alerts` job sends each guide one app message with the losses not yet sent.
Like the morning reports (guidebot.metrics.daily_report), the batch is claimed in
`metrics_reports` (kind "lost", the guide, the hour) and its rows marked with it, committed
before the WeCom call, which is made unsafe (no blind retry): a crash, or an answer that never
came, leaves the batch `sending`, never sent twice. WeCom refusing the message puts the rows
back for the next hour.

`store_losses` lists a store's losses of a local day; the morning job sends it to the store's
manager (GUIDEBOT_STORE_MANAGERS) as the daily digest of losses (kind "losses"), when there
were any. Every text is Chinese first, English second.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any

from sqlalchemy import bindparam, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from guidebot.clock import Clock
from guidebot.config import Settings
from guidebot.contacts.directory import store_at_query
from guidebot.contacts.models import Customer, Department, Guide, Relation, RelationStatus
from guidebot.content.models import ContentForward, ContentItem
from guidebot.db.base import only_filters
from guidebot.db.direct import Direct, savepoint
from guidebot.db.engine import upsert_insert
from guidebot.db.parking import is_row_error
from guidebot.events import RelationEnded, Subscribers
from guidebot.metrics.daily_report import LAST_HOUR, REPORT_HOUR, claim_report, settle_report
from guidebot.metrics.models import LostAlert
from guidebot.metrics.placer import Placer
from guidebot.sop.models import SopTask, TaskStatus
from guidebot.wecom.client import WeComClient, WeComError, WeComUncertain

log = logging.getLogger(__name__)

Sessions = async_sessionmaker[AsyncSession]

LOST, LOSSES = "lost", "losses"  # metrics_reports kinds: a guide's hour, a manager's day
TEXT_LIMIT = 2000  # bytes of a text app message (WeCom: 2048)
SNIPPET = 24  # characters of a message sent last


# ---- recording -------------------------------------------------------------------------------


# Built once, Core: every deletion by a customer runs them in the callback's transaction.
_FORWARDS, _ITEMS, _TASKS = ContentForward.__table__, ContentItem.__table__, SopTask.__table__
_RELATIONS, _CUSTOMERS = Relation.__table__, Customer.__table__
_ENDED_AT = _RELATIONS.c.ended_at


def _last_forward(column: Any) -> Any:
    """`column` of the guide's last forward to the customer by the pair's end. Found through
    the customer's forwards, never the guide's (hundreds a week): SQLite picked the guide's
    index by its shape, PostgreSQL without statistics may (the guide only filters)."""
    return (
        select(column)
        .select_from(_FORWARDS)
        .join(_ITEMS, _ITEMS.c.id == _FORWARDS.c.item_id)
        .where(
            only_filters(_FORWARDS.c.guide_userid, bindparam("guide")),
            _FORWARDS.c.external_userid == bindparam("customer"),
            _FORWARDS.c.sent_at <= _ENDED_AT,
        )
        .with_hint(_FORWARDS, "INDEXED BY ix_content_forwards_customer", "sqlite")
        .order_by(_FORWARDS.c.sent_at.desc())
        .limit(1)
        .scalar_subquery()
    )


def _last_message(column: Any) -> Any:
    """`column` of the last playbook message the guide sent the customer by the pair's end."""
    return (
        select(column)
        .where(
            only_filters(_TASKS.c.guide_userid, bindparam("guide")),
            _TASKS.c.external_userid == bindparam("customer"),
            _TASKS.c.status.in_((TaskStatus.SENT, TaskStatus.DONE)),
            _TASKS.c.message.is_not(None),
            _TASKS.c.sent_at.is_not(None),
            _TASKS.c.sent_at <= _ENDED_AT,
        )
        .order_by(_TASKS.c.sent_at.desc())
        .limit(1)
        .scalar_subquery()
    )


# The pair as the deletion left it, with the customer's WeCom name and, as of the end, the
# guide's store and what they sent last: one statement (five, each read on its own, cost a
# delete more than their reads).
_ENDED_LOOK = Direct(
    select(
        _RELATIONS.c.status,
        _ENDED_AT,
        _RELATIONS.c.created_at,
        _RELATIONS.c.remark,
        _CUSTOMERS.c.name,
        store_at_query(bindparam("guide"), _ENDED_AT).scalar_subquery().label("store_id"),
        _last_forward(_ITEMS.c.title).label("forward"),
        _last_forward(_FORWARDS.c.sent_at).label("forward_at"),
        _last_message(_TASKS.c.message).label("message"),
        _last_message(_TASKS.c.sent_at).label("message_at"),
    )
    .outerjoin(_CUSTOMERS, _CUSTOMERS.c.external_userid == _RELATIONS.c.external_userid)
    .where(
        only_filters(_RELATIONS.c.guide_userid, bindparam("guide")),  # as _last_forward
        _RELATIONS.c.external_userid == bindparam("customer"),
    )
)
_RECORD_LOSS = {
    name: Direct(upsert_insert(name)(LostAlert.__table__).on_conflict_do_nothing())
    for name in ("sqlite", "postgresql")
}


def _last_sent(look: Any) -> tuple[str | None, datetime | None]:
    """What the guide sent the customer last: a forwarded item's title or a playbook's text."""
    forward_at, message_at = look.forward_at, look.message_at
    if forward_at is not None and (message_at is None or forward_at >= message_at):
        return f"《{look.forward}》", forward_at
    if message_at is not None:
        text = " ".join(str(look.message).split())
        return (text if len(text) <= SNIPPET else text[:SNIPPET] + "…"), message_at
    return None, None


async def on_relation_ended(session: AsyncSession, event: RelationEnded) -> None:
    """RelationEnded: a customer who deleted the guide is recorded for the guide's alert. A
    failure of ours costs contacts nothing: it is logged and the deletion is recorded."""
    if event.status != RelationStatus.LOST:
        return
    try:
        async with savepoint(session):  # Core statements only: db.direct's savepoint
            await _record_loss(session, event)
    except Exception as exc:
        if not is_row_error(exc):
            raise
        log.exception("lost-customer alert for %s not recorded", event.guide_userid)


async def _record_loss(session: AsyncSession, event: RelationEnded) -> None:
    guide, customer = event.guide_userid, event.external_userid
    look = (await _ENDED_LOOK.execute(session, {"guide": guide, "customer": customer})).first()
    # Only the end that made it lost (a stale repeat leaves the status as it was).
    if look is None or look.status != RelationStatus.LOST or look.ended_at is None:
        return
    last_sent, last_sent_at = _last_sent(look)
    await _RECORD_LOSS[session.bind.dialect.name].execute(
        session,
        {
            "guide_userid": guide,
            "external_userid": customer,
            "store_id": look.store_id,
            "customer_name": look.remark or look.name,
            "together_since": look.created_at,
            "lost_at": look.ended_at,
            "last_sent": last_sent,
            "last_sent_at": last_sent_at,
            "created_at": event.now,
        },
    )


def subscribe(subscribers: Subscribers) -> None:
    subscribers.subscribe(RelationEnded, on_relation_ended)


# ---- wording ---------------------------------------------------------------------------------


def together(since: datetime | None, until: datetime) -> tuple[str, str]:
    """How long the pair were together, (Chinese, English)."""
    if since is None or since > until:
        return "时长不详", "for an unknown time"
    hours = int((until - since).total_seconds() // 3600)
    if hours < 1:
        return "不到 1 小时", "less than an hour"
    if hours < 24:
        return f"{hours} 小时", f"{hours} hour{'s' if hours > 1 else ''}"
    days = hours // 24
    return f"{days} 天", f"{days} day{'s' if days > 1 else ''}"


def _names(alert: LostAlert) -> tuple[str, str]:
    name = alert.customer_name
    return (name or "一位客户"), (name or "a customer")


def _sent(alert: LostAlert, zone: Any) -> tuple[str, str]:
    if not alert.last_sent or alert.last_sent_at is None:
        return "未发送过内容", "nothing sent"
    day = alert.last_sent_at.astimezone(zone).date()
    return f"{alert.last_sent}（{day.month}月{day.day}日）", f"{alert.last_sent} ({day})"


def alert_text(alerts: list[LostAlert], zone: Any) -> str:
    """The guide's message: each customer who left, Chinese first, then English."""
    zh = [f"客户流失提醒：{len(alerts)} 位客户删除了你"]
    en = [f"{len(alerts)} customer{'s' if len(alerts) > 1 else ''} deleted you"]
    for alert in alerts:
        name_zh, name_en = _names(alert)
        long_zh, long_en = together(alert.together_since, alert.lost_at)
        sent_zh, sent_en = _sent(alert, zone)
        zh.append(f"· {name_zh}：相处 {long_zh}，最后发送 {sent_zh}")
        en.append(f"· {name_en}: together {long_en}, last sent {sent_en}")
    return _clip("\n".join(zh) + "\n\n" + "\n".join(en))


def _clip(text: str) -> str:
    while len(text.encode()) > TEXT_LIMIT:
        text = text[:-2] + "…"
    return text


# ---- the hourly alerts -----------------------------------------------------------------------


@dataclass
class LostReport:
    sent: int = 0  # guides alerted
    customers: int = 0
    failed: int = 0
    digests: int = 0  # managers' daily lists


async def _take_batch(sessions: Sessions, guide: str, batch: str, now: datetime) -> list[int]:
    """Claim the guide's hour and mark their unsent losses with it, in one commit."""
    if not await claim_report(sessions, LOST, guide, batch, now):
        return []
    async with sessions() as session, session.begin():
        ids = list(
            await session.scalars(
                select(LostAlert.id).where(
                    LostAlert.guide_userid == guide, LostAlert.batch.is_(None)
                )
            )
        )
        if ids:
            await session.execute(
                update(LostAlert).where(LostAlert.id.in_(ids)).values(batch=batch)
            )
    return ids


async def _alert_guide(
    sessions: Sessions, wecom: WeComClient, placer: Placer, guide: str, now: datetime
) -> tuple[int, bool]:
    """(customers in the guide's alert, whether WeCom refused it)."""
    batch = now.strftime("%Y-%m-%dT%H")
    ids = await _take_batch(sessions, guide, batch, now)
    if not ids:
        await settle_report(sessions, LOST, guide, batch, message="", error=None, now=now)
        return 0, False
    async with sessions() as session:
        alerts = list(
            await session.scalars(
                select(LostAlert).where(LostAlert.id.in_(ids)).order_by(LostAlert.lost_at)
            )
        )
    text = alert_text(alerts, placer.zone(placer.store(guide, now)))
    error = None
    try:
        await wecom.send_text(guide, text)  # unsafe: an unknown outcome is not resent
    except WeComUncertain:
        log.warning("lost-customer alert to %s may or may not have arrived: not resent", guide)
        return len(ids), False  # the batch stays `sending`
    except WeComError as exc:
        error = str(exc)
        log.warning("lost-customer alert to %s not sent: %s", guide, exc)
    await settle_report(sessions, LOST, guide, batch, message=text, error=error, now=now)
    if error:
        async with sessions() as session, session.begin():  # back in the next hour's batch
            await session.execute(update(LostAlert).where(LostAlert.id.in_(ids)).values(batch=None))
    return len(ids), error is not None


async def send_lost_alerts(
    sessions: Sessions, wecom: WeComClient, clock: Clock, settings: Settings
) -> LostReport:
    """The hourly job: each guide's unsent losses in one message; managers' daily lists."""
    now = clock.now()
    report = LostReport()
    async with sessions() as session:
        guides = sorted(
            set(
                await session.scalars(
                    select(LostAlert.guide_userid).where(LostAlert.batch.is_(None)).distinct()
                )
            )
        )
        placer = await Placer.load(session, [*guides, *settings.store_managers], settings.timezone)
    for guide in guides:
        customers, failed = await _alert_guide(sessions, wecom, placer, guide, now)
        report.customers += customers
        report.sent += 1 if customers and not failed else 0
        report.failed += 1 if failed else 0
    for manager in settings.store_managers:
        report.digests += await _manager_digest(sessions, wecom, placer, manager, now)
    if report.sent or report.failed or report.digests:
        log.info("lost-alerts: %s", report)
    return report


# ---- the manager's daily list ----------------------------------------------------------------


async def store_losses(
    session: AsyncSession, store_id: int, first: datetime, end: datetime
) -> list[tuple[LostAlert, str]]:
    """The store's losses in [first, end), each with the guide's name, oldest first."""
    rows = await session.execute(
        select(LostAlert, Guide.name)
        .join(Guide, Guide.userid == LostAlert.guide_userid, isouter=True)
        .where(LostAlert.store_id == store_id, LostAlert.lost_at >= first, LostAlert.lost_at < end)
        .order_by(LostAlert.lost_at)
    )
    return [(alert, name or "") for alert, name in rows]


def digest_text(store: str, day: date, losses: list[tuple[LostAlert, str]], zone: Any) -> str:
    """The manager's list of the store's losses on `day`, Chinese first, then English."""
    zh = [f"{store} {day.month}月{day.day}日 流失客户 {len(losses)} 位"]
    en = [f"{store}: {len(losses)} customer(s) left on {day}"]
    for alert, guide in losses:
        name_zh, name_en = _names(alert)
        long_zh, long_en = together(alert.together_since, alert.lost_at)
        sent_zh, sent_en = _sent(alert, zone)
        zh.append(f"· {name_zh}（导购 {guide}）：相处 {long_zh}，最后发送 {sent_zh}")
        en.append(f"· {name_en} (guide {guide}): together {long_en}, last sent {sent_en}")
    return _clip("\n".join(zh) + "\n\n" + "\n".join(en))


async def _manager_digest(
    sessions: Sessions, wecom: WeComClient, placer: Placer, manager: str, now: datetime
) -> int:
    """Yesterday's losses of the manager's store, in their 09:00-11:59 window, once."""
    store_id = placer.store(manager, now)
    zone = placer.zone(store_id)
    local = now.astimezone(zone)
    if not REPORT_HOUR <= local.hour <= LAST_HOUR:
        return 0
    day = local.date() - timedelta(days=1)
    first = datetime.combine(day, time(0), tzinfo=zone)
    async with sessions() as session:
        store = await session.get(Department, store_id)
        if store is None:
            return 0
        losses = await store_losses(session, store_id, first, first + timedelta(days=1))
    if not losses:
        return 0
    period = f"{day.isoformat()}:{store.code}"
    if not await claim_report(sessions, LOSSES, manager, period, now):
        return 0
    text = digest_text(store.name, day, losses, zone)
    error = None
    try:
        await wecom.send_text(manager, text)
    except WeComUncertain:
        return 0  # stays `sending`: not sent twice
    except WeComError as exc:
        error = str(exc)
    await settle_report(sessions, LOSSES, manager, period, message=text, error=error, now=now)
    return 0 if error else 1


__all__ = [
    "LostReport",
    "alert_text",
    "digest_text",
    "on_relation_ended",
    "send_lost_alerts",
    "store_losses",
    "subscribe",
    "together",
]
