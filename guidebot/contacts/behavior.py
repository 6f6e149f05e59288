"""Each guide's service figures as WeCom counts them (联系客户统计, get_user_behavior_data).

WeCom computes, per member and China day (00:00 Asia/Shanghai), the one-to-one chats the member
took part in, the messages they sent, the share of chats a customer started that they answered
the same day, the average time to the first answer, and the customers who deleted or blocked
them (doc 92132). guidebot sees none of those chats, so these are WeCom's numbers, never
computed from our log. Its rules shape how we ask: several userids come back summed (so one
guide per call), at most 30 days per call (a closed interval, split here into 30-day spans),
and only the last 180 days.

`sync_behavior` (the daily `behavior-sync` job) keeps them in `guide_behavior_daily`, one row
per guide and day: a guide's first run reads the 180 days WeCom still has, later runs the days
since the last one read plus the REREAD_DAYS before it (WeCom may finish a day late). A row is
written only when WeCom's answer differs, so running it twice changes nothing; each written row
marks the day dirty for the metrics rollups (a trigger, guidebot.metrics.models). One guide WeCom
refuses (no longer visible to the app, say) is parked and the others go on; an unreachable or
busy WeCom, or one refusing the app itself, fails the run, which the next day repeats.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from guidebot.contacts.models import Guide, GuideBehaviorDaily, GuideStatus
from guidebot.db.daily_figures import keep_days
from guidebot.db.parking import park_apart
from guidebot.wecom.client import WeComClient, WeComError, WeComTransportError

log = logging.getLogger(__name__)

Sessions = async_sessionmaker[AsyncSession]

JOB = "behavior-sync"  # as the job is declared (guidebot.contacts.jobs); its parked guides
WECOM_ZONE = ZoneInfo("Asia/Shanghai")
SPAN_DAYS = 30  # days per call (WeCom: at most 30; the interval is closed)
RETENTION_DAYS = 180  # WeCom keeps today and the 179 days before it
REREAD_DAYS = 3  # the last days read are read again: WeCom may complete a day after it ends
# Refusals about WeCom or the app, not the guide (busy, rate limits, credentials, no permission,
# untrusted IP): the run fails rather than parking every guide.
NOT_THE_GUIDE = frozenset({-1, 40001, 40014, 41001, 42001, 45009, 45033, 48002, 60020})
COUNTS = ("chat_cnt", "message_cnt", "negative_feedback_cnt", "new_contact_cnt", "new_apply_cnt")
FIELDS = (*COUNTS, "reply_percentage", "avg_reply_time")


def spans(first: date, last: date, size: int = SPAN_DAYS) -> list[tuple[date, date]]:
    """first..last as consecutive closed spans of at most `size` days."""
    out = []
    while first <= last:
        end = min(last, first + timedelta(days=size - 1))
        out.append((first, end))
        first = end + timedelta(days=1)
    return out


def china_epoch(day: date) -> int:
    return int(datetime.combine(day, time(0), tzinfo=WECOM_ZONE).timestamp())


def china_today(now: datetime) -> date:
    return now.astimezone(WECOM_ZONE).date()


def oldest_day(now: datetime) -> date:
    """The oldest China day WeCom still answers for."""
    return china_today(now) - timedelta(days=RETENTION_DAYS - 1)


def _figures(item: dict[str, Any]) -> dict[str, Any]:
    """One day of WeCom's answer as stored: counts as integers, the two reply figures as
    WeCom gave them or None where it gave none."""
    values: dict[str, Any] = {name: int(item.get(name) or 0) for name in COUNTS}
    percentage, minutes = item.get("reply_percentage"), item.get("avg_reply_time")
    values["reply_percentage"] = None if percentage is None else float(percentage)
    values["avg_reply_time"] = None if minutes is None else int(minutes)
    return values


async def read_days(
    wecom: WeComClient, userid: str, first: date, last: date
) -> dict[date, dict[str, Any]]:
    """WeCom's figures for one guide, per China day first..last (the caller keeps them inside
    the last 180 days): one userid per call, 30 days per call."""
    found: dict[date, dict[str, Any]] = {}
    for start, end in spans(first, last):
        for item in await wecom.get_user_behavior_data(
            [userid], china_epoch(start), china_epoch(end)
        ):
            day = datetime.fromtimestamp(int(item["stat_time"]), WECOM_ZONE).date()
            found[day] = _figures(item)
    return found


async def store_days(
    session: AsyncSession, userid: str, days: dict[date, dict[str, Any]], now: datetime
) -> int:
    """Keep these days of the guide's figures; only rows that are new or differ are written.
    The rows written."""
    return await keep_days(
        session, GuideBehaviorDaily.guide_userid, userid, days, "fetched_at", now
    )


@dataclass
class BehaviorReport:
    guides: int = 0
    days_read: int = 0  # days WeCom answered for
    written: int = 0  # rows new or changed
    parked: int = 0


async def _first_day(sessions: Sessions, userid: str, now: datetime) -> date:
    async with sessions() as session:
        last = await session.scalar(
            select(func.max(GuideBehaviorDaily.day)).where(
                GuideBehaviorDaily.guide_userid == userid
            )
        )
    oldest = oldest_day(now)
    if last is None:
        return oldest
    return max(oldest, last - timedelta(days=REREAD_DAYS - 1))


async def sync_behavior(
    sessions: Sessions, wecom: WeComClient, now: datetime, *, guides: Iterable[str] | None = None
) -> BehaviorReport:
    """Read each active guide's figures up to yesterday (China) and keep what changed."""
    report = BehaviorReport()
    if guides is None:
        async with sessions() as session:
            guides = list(
                await session.scalars(
                    select(Guide.userid)
                    .where(Guide.status == GuideStatus.ACTIVE)
                    .order_by(Guide.userid)
                )
            )
    yesterday = china_today(now) - timedelta(days=1)
    for userid in guides:
        first = await _first_day(sessions, userid, now)
        if first > yesterday:
            continue
        try:
            # Asked outside any transaction: on SQLite a transaction held open while WeCom
            # answers would hold the write lock a token refresh needs.
            days = await read_days(wecom, userid, first, yesterday)
        except WeComError as exc:
            if isinstance(exc, WeComTransportError) or exc.errcode in NOT_THE_GUIDE:
                raise  # WeCom unreachable or refusing the app: the run fails and is repeated
            await park_apart(
                sessions,
                exc,
                job=JOB,
                table=Guide.__tablename__,
                key=userid,
                now=now,
                detail=f"WeCom contact statistics of {userid}",
            )
            report.parked += 1
            continue
        async with sessions() as session, session.begin():
            report.written += await store_days(session, userid, days, now)
        report.guides += 1
        report.days_read += len(days)
    if report.written or report.parked:
        log.info(
            "behavior-sync: %d guides read, %d days written, %d parked",
            report.guides,
            report.written,
            report.parked,
        )
    return report


async def guide_figures(
    session: AsyncSession, guides: Iterable[str], first: date, last: date
) -> dict[str, dict[str, Any]]:
    """Per guide, WeCom's figures summed over the China days first..last: chats, messages,
    negative_feedback, and the reply rate and first-reply minutes averaged over the days WeCom
    gave one (None when it gave none); a guide with no day kept is left out. For faces that
    read no rollups (the bot)."""
    wanted = sorted(set(guides))
    out: dict[str, dict[str, Any]] = {}
    sums: dict[str, list[float]] = {}
    for i in range(0, len(wanted), 500):
        rows = await session.execute(
            select(
                GuideBehaviorDaily.guide_userid,
                func.sum(GuideBehaviorDaily.chat_cnt),
                func.sum(GuideBehaviorDaily.message_cnt),
                func.sum(GuideBehaviorDaily.negative_feedback_cnt),
                func.sum(GuideBehaviorDaily.reply_percentage),
                func.count(GuideBehaviorDaily.reply_percentage),
                func.sum(GuideBehaviorDaily.avg_reply_time),
                func.count(GuideBehaviorDaily.avg_reply_time),
            )
            .where(
                GuideBehaviorDaily.guide_userid.in_(wanted[i : i + 500]),
                GuideBehaviorDaily.day >= first,
                GuideBehaviorDaily.day <= last,
            )
            .group_by(GuideBehaviorDaily.guide_userid)
        )
        for guide, *values in rows:
            sums[guide] = [v or 0 for v in values]
    for guide, (chats, messages, negative, pct, pct_days, minutes, minute_days) in sums.items():
        out[guide] = {
            "chats": int(chats),
            "messages": int(messages),
            "negative_feedback": int(negative),
            "reply_rate": round(pct / pct_days / 100, 4) if pct_days else None,
            "avg_reply_minutes": round(minutes / minute_days, 1) if minute_days else None,
        }
    return out


__all__ = [
    "BehaviorReport",
    "china_epoch",
    "guide_figures",
    "oldest_day",
    "read_days",
    "spans",
    "store_days",
    "sync_behavior",
]
