"""Morning reports: yesterday's numbers to each guide daily, last week's to store managers.

The job runs every hour. A guide's report goes out when it is 09:xx in their store's time zone
(the store's override, else GUIDEBOT_TIMEZONE); if that hour's run was missed (a restart), a
later run up to 11:59 local sends it. The weekly report goes to store managers on Monday in the
same window and covers Monday..Sunday of the week before, for the store the manager belongs
to. Managers are the userids in GUIDEBOT_STORE_MANAGERS (WeCom's address book, as guidebot
reads it, names no department leaders).

Each report is claimed in `metrics_reports` (kind, userid, period) and committed before the
WeCom call, so two instances or two runs never send it twice; a report WeCom refused is tried
again by the next run inside the window. Numbers come from the rollups; today's open tasks come
from sop_tasks (the guide's to-do list, not a metric).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from guidebot.clock import Clock
from guidebot.config import Settings
from guidebot.contacts.models import Department, Guide, GuideStatus
from guidebot.db.engine import upsert_insert
from guidebot.db.parking import describe_error, is_row_error, park_apart
from guidebot.metrics.models import NO_STORE, MetricsReport
from guidebot.metrics.placer import Placer
from guidebot.metrics.report import Period, Scope, leaderboard, metrics
from guidebot.sop.models import SopTask
from guidebot.sop.queries import actionable_by_guide
from guidebot.wecom.client import WeComClient, WeComError

log = logging.getLogger(__name__)

Sessions = async_sessionmaker[AsyncSession]

REPORT_HOUR = 9
LAST_HOUR = 11  # a missed 09:xx run is made up until 11:59 local
TEXTCARD_LIMIT = 512  # bytes of a textcard description
DAILY, WEEKLY = "daily", "weekly"
JOB = "metrics-reports"  # as guidebot.app names the job; the guides it parks are filed under it


@dataclass
class ReportsReport:
    daily: int = 0
    weekly: int = 0
    failed: int = 0
    parked: int = 0  # reports it could not make (guidebot.db.parking)


def _pct(value: Any) -> str:
    return "-" if value is None else f"{value * 100:.0f}%"


def _minutes(value: Any) -> str:
    return "-" if value is None else f"{value:g} 分钟"


def service_line(values: dict[str, Any]) -> str:
    """WeCom's service figures (联系客户统计), as the reports show them."""
    return (
        f"服务 聊天 {values['chats']} · 消息 {values['messages']} · 回复率 "
        f"{_pct(values['reply_rate'])} · 首次回复 {_minutes(values['avg_reply_minutes'])} · "
        f"删除/拉黑 {values['negative_feedback']}"
    )


def group_line(values: dict[str, Any]) -> str | None:
    """The customer groups' figures (the group KPIs), for a guide or store that has any."""
    shown = ("groups_owned", "group_new_members", "group_members_left", "group_opens")
    if not any(values.get(name) for name in shown) and not values.get("group_join_rate"):
        return None
    return (
        f"社群 群数 {values['groups_owned']} · 新入群 {values['group_new_members']} · "
        f"退群 {values['group_members_left']} · 入群率 {_pct(values['group_join_rate'])} · "
        f"群链接 打开 {values['group_opens']} 订单 {values['group_orders']}"
    )


def _fit(lines: list[str]) -> str:
    """A textcard description within WeCom's 512 bytes: styled, else plain, else cut."""
    styled = f'<div class="gray">{lines[0]}</div>' + "".join(
        f'<div class="normal">{line}</div>' for line in lines[1:-1]
    )
    styled += f'<div class="highlight">{lines[-1]}</div>'
    if len(styled.encode()) <= TEXTCARD_LIMIT:
        return styled
    plain = "\n".join(lines)
    while len(plain.encode()) > TEXTCARD_LIMIT:
        plain = plain[:-1]
    return plain


def daily_message(
    name: str, store: str | None, day: date, values: dict[str, Any], open_tasks: int
) -> tuple[str, str]:
    """(title, description) of a guide's morning report."""
    title = f"{name}，昨日业绩 {day.month}月{day.day}日"
    lines = [
        f"{store or '未分配门店'} · {day.isoformat()}",
        f"新客 {values['new_customers']} · 流失 {values['lost_customers']} · "
        f"删除 {values['removed_customers']} · 净增 {values['net_growth']}",
        f"任务 完成 {values['tasks_done']}/{values['tasks_due']}（按时 {values['tasks_on_time']}）"
        f" · 欢迎语送达 {_pct(values['welcome_rate'])}",
        f"转发 {values['forwards']} · 打开 {values['unique_opens']} · "
        f"订单 {values['orders']} · GMV ¥{values['gmv']}",
        service_line(values),
        group_line(values),
        f"今日待办 {open_tasks} 项",
    ]
    return title, _fit([line for line in lines if line])


def weekly_message(
    store: str, period: Period, values: dict[str, Any], top: list[dict[str, Any]]
) -> tuple[str, str]:
    first, last = period.first, period.last
    title = f"{store} 周报 {first.month}/{first.day}–{last.month}/{last.day}"
    leaders = "、".join(f"{row['name']} {row['value']}" for row in top) or "无"
    lines = [
        f"{first.isoformat()} ~ {last.isoformat()}",
        f"新客 {values['new_customers']} · 流失 {values['lost_customers']} · "
        f"删除 {values['removed_customers']} · 净增 {values['net_growth']}",
        f"次日留存 {_pct(values['day1_retention'])} · 7日留存 {_pct(values['day7_retention'])}",
        f"任务 完成 {values['tasks_done']}/{values['tasks_due']} · 转发 {values['forwards']} · "
        f"打开率 {_pct(values['open_rate'])}",
        f"订单 {values['orders']} · GMV ¥{values['gmv']} · 留资率 "
        f"{_pct(values['profile_completeness'])}",
        service_line(values),
        group_line(values),
        f"新客前三：{leaders}",
    ]
    return title, _fit([line for line in lines if line])


async def open_tasks_today(session: AsyncSession, guide: str, local_now: datetime) -> int:
    """Guide-facing tasks due by the end of the guide's local today and not yet done/settled."""
    end = datetime.combine(local_now.date() + timedelta(days=1), time(0), tzinfo=local_now.tzinfo)
    return int(
        await session.scalar(
            select(func.count())
            .select_from(SopTask)
            .where(*actionable_by_guide(guide), SopTask.due_at < end)
        )
        or 0
    )


async def claim_report(
    sessions: Sessions, kind: str, userid: str, period: str, now: datetime
) -> bool:
    """Take the report (or take back one WeCom refused); committed before any WeCom call."""
    async with sessions() as session, session.begin():
        insert = upsert_insert(session.bind.dialect.name)
        inserted = (
            await session.execute(
                insert(MetricsReport)
                .values(kind=kind, userid=userid, period=period, status="sending", created_at=now)
                .on_conflict_do_nothing()
                .returning(MetricsReport.userid)
            )
        ).scalar()
        if inserted is not None:
            return True
        retried = await session.execute(
            update(MetricsReport)
            .where(
                MetricsReport.kind == kind,
                MetricsReport.userid == userid,
                MetricsReport.period == period,
                MetricsReport.status == "failed",
            )
            .values(status="sending", error=None)
        )
        return retried.rowcount == 1


async def settle_report(
    sessions: Sessions,
    kind: str,
    userid: str,
    period: str,
    *,
    message: str,
    error: str | None,
    now: datetime,
) -> None:
    async with sessions() as session, session.begin():
        await session.execute(
            update(MetricsReport)
            .where(
                MetricsReport.kind == kind,
                MetricsReport.userid == userid,
                MetricsReport.period == period,
            )
            .values(
                status="failed" if error else "sent",
                message=message,
                error=error,
                sent_at=None if error else now,
            )
        )


async def _send(
    sessions: Sessions,
    wecom: WeComClient,
    kind: str,
    userid: str,
    period: str,
    title: str,
    description: str,
    url: str,
    now: datetime,
    report: ReportsReport,
) -> None:
    if not await claim_report(sessions, kind, userid, period, now):
        return
    error = None
    try:
        # Reports to guides may arrive twice (architecture rule 6), never to customers.
        await wecom.send_textcard(
            userid, title, description, url, btntxt="查看", at_least_once=True
        )
    except WeComError as exc:
        error = str(exc)
        log.warning("%s report to %s for %s not sent: %s", kind, userid, period, exc)
    except Exception as exc:
        if not is_row_error(exc):
            raise
        # Claimed already: settled as failed (tried again next hour), not left `sending`.
        error = f"unexpected error: {describe_error(exc)}"
        log.exception("%s report to %s for %s not sent", kind, userid, period)
    await settle_report(
        sessions, kind, userid, period, message=f"{title}\n{description}", error=error, now=now
    )
    if error:
        report.failed += 1
    elif kind == DAILY:
        report.daily += 1
    else:
        report.weekly += 1


async def _isolated(
    sessions: Sessions,
    job: Awaitable[None],
    userid: str,
    what: str,
    now: datetime,
    report: ReportsReport,
) -> None:
    try:
        await job
    except Exception as exc:
        await park_apart(
            sessions,
            exc,
            job=JOB,
            table=Guide.__tablename__,
            key=userid,
            now=now,
            detail=f"{what} to {userid}",
        )
        report.parked += 1


@dataclass(slots=True)
class _Round:
    """One hour's reports: what each of them reads, and the tally they add to."""

    sessions: Sessions
    wecom: WeComClient
    settings: Settings
    now: datetime
    placer: Placer
    stores: dict[int, Department]
    report: ReportsReport

    def local(self, userid: str) -> tuple[int, datetime]:
        store = self.placer.store(userid, self.now)
        return store, self.now.astimezone(self.placer.zone(store))

    async def daily(self, userid: str, name: str) -> None:
        store, local_now = self.local(userid)
        if not REPORT_HOUR <= local_now.hour <= LAST_HOUR:
            return
        yesterday = local_now.date() - timedelta(days=1)
        async with self.sessions() as session:
            values, _ = await metrics(session, Scope(guide=userid), Period(yesterday, yesterday))
            tasks = await open_tasks_today(session, userid, local_now)
        dept = self.stores.get(store) if store != NO_STORE else None
        title, description = daily_message(
            name, dept.name if dept else None, yesterday, values, tasks
        )
        await _send(
            self.sessions,
            self.wecom,
            DAILY,
            userid,
            yesterday.isoformat(),
            title,
            description,
            f"{self.settings.public_url}/sidebar",
            self.now,
            self.report,
        )

    async def weekly(self, userid: str) -> None:
        store, local_now = self.local(userid)
        dept = self.stores.get(store)
        if dept is None or local_now.weekday() != 0:
            return
        if not REPORT_HOUR <= local_now.hour <= LAST_HOUR:
            return
        last = local_now.date() - timedelta(days=1)
        period = Period(last - timedelta(days=6), last)
        async with self.sessions() as session:
            values, _ = await metrics(session, Scope(store_id=store), period)
            top = await leaderboard(session, period, "new_customers", store_id=store, limit=3)
        title, description = weekly_message(dept.name, period, values, top)
        iso_year, iso_week, _ = period.first.isocalendar()
        await _send(
            self.sessions,
            self.wecom,
            WEEKLY,
            userid,
            f"{iso_year}-W{iso_week:02d}:{dept.code}",
            title,
            description,
            f"{self.settings.public_url}/admin",
            self.now,
            self.report,
        )


async def send_reports(
    sessions: Sessions, wecom: WeComClient, clock: Clock, settings: Settings
) -> ReportsReport:
    """The hourly job: daily reports to guides, weekly to managers, where it is 09:xx local."""
    now = clock.now()
    report = ReportsReport()
    async with sessions() as session:
        guides = {
            g.userid: g.name
            for g in await session.scalars(select(Guide).where(Guide.status == GuideStatus.ACTIVE))
        }
        placer = await Placer.load(session, guides, settings.timezone)
        stores = {d.id: d for d in await session.scalars(select(Department))}
    hour = _Round(sessions, wecom, settings, now, placer, stores, report)

    # One guide whose report cannot be made (their store's time zone unreadable, say) is
    # parked with the reason, and the others get theirs; the next hour meets it again.
    for userid, name in sorted(guides.items()):
        await _isolated(sessions, hour.daily(userid, name), userid, "daily report", now, report)
    for userid in settings.store_managers:
        if userid in guides:
            await _isolated(sessions, hour.weekly(userid), userid, "weekly report", now, report)
    if report.daily or report.weekly or report.failed or report.parked:
        log.info(
            "reports: %d daily, %d weekly sent, %d failed, %d parked",
            report.daily,
            report.weekly,
            report.failed,
            report.parked,
        )
    return report
