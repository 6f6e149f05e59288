"""WeCom's figures for each owner's customer groups (群聊数据统计, doc 92133).

WeCom counts, per group owner and China day, the groups and their members (new and in total),
and the chat activity guidebot never sees: groups with messages, members who sent one, and
messages (each "as of that day"). These are WeCom's numbers, kept as WeCom gave them and shown
labelled as WeCom's; our own group KPIs come from the membership log (guidebot.metrics.kpis).

`sync_group_stats` (the daily `group-stats-sync` job) asks statistic_group_by_day for one owner
per call (several owners come back summed), at most 30 days per call, for the days WeCom still
answers (yesterday back to 180 days): an owner's first run reads them all, later runs the days
since the last one read plus the REREAD_DAYS before it. Rows are upserts keyed on (owner, day),
written only when WeCom's answer differs, so running it twice changes nothing. An owner WeCom
refuses, or whose answer does not parse, is parked and the others go on; WeCom unreachable or
refusing the app fails the run, which the next day repeats.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from guidebot.contacts.behavior import NOT_THE_GUIDE, WECOM_ZONE, china_epoch, china_today, spans
from guidebot.db.daily_figures import keep_days
from guidebot.db.parking import is_row_error, park_apart
from guidebot.groups.models import CustomerGroup, GroupChatStat
from guidebot.wecom.client import WeComClient, WeComError, WeComTransportError

log = logging.getLogger(__name__)

Sessions = async_sessionmaker[AsyncSession]

JOB = "group-stats-sync"
RETENTION_DAYS = 180  # doc 92133: yesterday back to 180 days ago
REREAD_DAYS = 3  # WeCom may complete a day after it ends
FIGURES = (
    "new_chat_cnt",
    "chat_total",
    "chat_has_msg",
    "new_member_cnt",
    "member_total",
    "member_has_msg",
    "msg_total",
)


def _figures(data: Any) -> dict[str, int]:
    """One day of WeCom's answer as stored; anything but a non-negative integer is refused."""
    if not isinstance(data, dict):
        raise ValueError("WeCom's data is not an object")
    out = {}
    for name in FIGURES:
        value = data.get(name, 0)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"WeCom's {name} is {value!r}, not a count")
        out[name] = value
    return out


async def read_owner(
    wecom: WeComClient, owner: str, first: date, last: date
) -> dict[date, dict[str, int]]:
    """WeCom's figures for one owner per China day first..last: one owner, 30 days a call."""
    found: dict[date, dict[str, int]] = {}
    for start, end in spans(first, last):
        for item in await wecom.groupchat_statistic_by_day(
            owner, china_epoch(start), china_epoch(end)
        ):
            day = datetime.fromtimestamp(int(item["stat_time"]), WECOM_ZONE).date()
            found[day] = _figures(item.get("data"))
    return found


async def store_owner(
    session: AsyncSession, owner: str, days: dict[date, dict[str, int]], now: datetime
) -> int:
    """Keep these days of the owner's figures; only rows new or different are written."""
    return await keep_days(session, GroupChatStat.owner_userid, owner, days, "synced_at", now)


@dataclass
class GroupStatsReport:
    owners: int = 0
    days_read: int = 0
    written: int = 0
    parked: int = 0


async def _first_day(sessions: Sessions, owner: str, now: datetime) -> date:
    async with sessions() as session:
        last = await session.scalar(
            select(func.max(GroupChatStat.day)).where(GroupChatStat.owner_userid == owner)
        )
    oldest = china_today(now) - timedelta(days=RETENTION_DAYS)
    return oldest if last is None else max(oldest, last - timedelta(days=REREAD_DAYS - 1))


async def sync_group_stats(
    sessions: Sessions, wecom: WeComClient, now: datetime
) -> GroupStatsReport:
    """Read every group owner's figures up to yesterday (China) and keep what changed."""
    report = GroupStatsReport()
    async with sessions() as session:
        owners = list(
            await session.scalars(
                select(CustomerGroup.owner_userid)
                .where(CustomerGroup.owner_userid.is_not(None))
                .distinct()
                .order_by(CustomerGroup.owner_userid)
            )
        )
    yesterday = china_today(now) - timedelta(days=1)
    for owner in owners:
        first = await _first_day(sessions, owner, now)
        if first > yesterday:
            continue
        try:
            # Outside any transaction: SQLite's write lock is not held while WeCom answers.
            days = await read_owner(wecom, owner, first, yesterday)
        except (WeComError, ValueError, KeyError, TypeError) as exc:
            not_the_owner = isinstance(exc, WeComTransportError) or (
                isinstance(exc, WeComError) and exc.errcode in NOT_THE_GUIDE
            )
            if not_the_owner or not is_row_error(exc):
                raise  # WeCom unreachable or refusing the app: the run fails and is repeated
            await park_apart(
                sessions,
                exc,
                job=JOB,
                table=GroupChatStat.__tablename__,
                key=owner,
                now=now,
                detail=f"WeCom group chat statistics of {owner}",
            )
            report.parked += 1
            continue
        async with sessions() as session, session.begin():
            report.written += await store_owner(session, owner, days, now)
        report.owners += 1
        report.days_read += len(days)
    if report.written or report.parked:
        log.info(
            "group-stats-sync: %d owners read, %d days written, %d parked",
            report.owners,
            report.written,
            report.parked,
        )
    return report


@dataclass(frozen=True, slots=True)
class ChatActivity:
    """WeCom's figures over a period: the new_* counts summed over its days, the others as of
    its last day WeCom reported (summed over the owners)."""

    days: int
    figures: dict[str, int]


async def chat_activity(
    session: AsyncSession, owners: list[str] | None, first: date, last: date
) -> ChatActivity:
    """WeCom's figures of these owners' groups (every owner's when None) over first..last."""
    query = select(GroupChatStat).where(GroupChatStat.day >= first, GroupChatStat.day <= last)
    if owners is not None:
        query = query.where(GroupChatStat.owner_userid.in_(owners))
    rows = list(await session.scalars(query))
    figures = dict.fromkeys(FIGURES, 0)
    latest: dict[str, GroupChatStat] = {}
    for row in rows:
        figures["new_chat_cnt"] += row.new_chat_cnt
        figures["new_member_cnt"] += row.new_member_cnt
        if row.owner_userid not in latest or latest[row.owner_userid].day < row.day:
            latest[row.owner_userid] = row
    for row in latest.values():
        for name in ("chat_total", "chat_has_msg", "member_total", "member_has_msg", "msg_total"):
            figures[name] += getattr(row, name)
    return ChatActivity(len({r.day for r in rows}), figures)
